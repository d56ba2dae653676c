"""The JSON form of executions: what is stored must come back exactly."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from multiagents_server.engine import (
    CancelRequested,
    Execution,
    Failure,
    RetryPolicy,
    State,
    StepCompleted,
    StepFailed,
    StepSpec,
    TimerFired,
    WorkflowSpec,
    apply,
    start,
)
from multiagents_server.engine.codec import (
    execution_from_json,
    execution_to_json,
    name_and_state,
    spec_from_json,
    spec_to_json,
)

T0 = 1_700_000_000_000

SPEC = WorkflowSpec(
    name="order",
    version=3,
    description="reserve, charge, ship",
    steps=(
        StepSpec("reserve", "inventory", compensation="release"),
        StepSpec(
            "charge",
            "payments",
            compensation="refund",
            retry=RetryPolicy(
                max_attempts=4,
                initial_interval_ms=250,
                backoff_coefficient=1.5,
                max_interval_ms=5_000,
                non_retryable_error_types=("ValueError", "CardDeclined"),
            ),
            compensation_retry=RetryPolicy(max_attempts=2, initial_interval_ms=10),
            timeout_ms=12_000,
            heartbeat_timeout_ms=3_000,
        ),
        StepSpec("ship", "shipping", retry=RetryPolicy(max_attempts=1)),
    ),
)

CRASH = Failure(
    "connection reset",
    "WorkerExecutionError",
    stack_trace='Traceback (most recent call last):\n  File "w.py", line 1\n',
)
DECLINED = Failure("card declined: «insufficient»", "CardDeclined", non_retryable=True)


def _command(ex: Execution) -> str:
    (attempt,) = ex.attempts.values()
    return ex.command_id(attempt)


def _fresh() -> Execution:
    return start(
        SPEC,
        transaction_id="tx-9",
        correlation_id="corr-9",
        input={"order": {"id": 7, "lines": [1, 2.5, None, True]}, "note": "été"},
        now_ms=T0,
        request_fingerprint="sha256:abc",
        metadata={"tenant": "acme", "trace": "t-1"},
    ).execution


def _reserved() -> Execution:
    ex = _fresh()
    return apply(ex, StepCompleted(_command(ex), {"resource_id": "r-1"}), T0 + 10).execution


def _mid_retry() -> Execution:
    ex = _reserved()
    return apply(ex, StepFailed(_command(ex), CRASH), T0 + 20).execution


def _second_attempt_running() -> Execution:
    ex = _mid_retry()
    return apply(ex, TimerFired(f"retry:{_command(ex)}"), T0 + 300).execution


def _compensating_after_decline() -> Execution:
    ex = _second_attempt_running()
    return apply(ex, StepFailed(_command(ex), DECLINED), T0 + 400).execution


def _compensating_cancel_requested() -> Execution:
    return apply(_compensating_after_decline(), CancelRequested("user"), T0 + 401).execution


def _compensated() -> Execution:
    ex = _compensating_after_decline()
    return apply(ex, StepCompleted(_command(ex), {"released": True}), T0 + 500).execution


def _failed_needing_a_person() -> Execution:
    ex = _fresh()
    ex = apply(ex, StepCompleted(_command(ex), {"resource_id": "r-1"}), T0 + 10).execution
    ex = apply(ex, StepCompleted(_command(ex), {"charge_id": "c-1"}), T0 + 20).execution
    ex = apply(ex, StepFailed(_command(ex), DECLINED), T0 + 30).execution  # ship fails
    refund = {"requires_manual_intervention": True, "error": "refund api gone"}
    ex = apply(ex, StepCompleted(_command(ex), refund), T0 + 40).execution
    return apply(ex, StepCompleted(_command(ex), {}), T0 + 50).execution


def _cancelled() -> Execution:
    ex = apply(_reserved(), CancelRequested("stop"), T0 + 30).execution  # compensating reserve
    return apply(ex, StepCompleted(_command(ex), {}), T0 + 40).execution


def _completed() -> Execution:
    ex = _fresh()
    for result in ({"resource_id": "r-1"}, {"charge_id": "c-1"}, {"tracking": ["a", "b"]}):
        ex = apply(ex, StepCompleted(_command(ex), result), T0 + 60).execution
    return ex


EXECUTIONS = pytest.mark.parametrize(
    ("build", "state"),
    [
        (_fresh, State.RUNNING),
        (_mid_retry, State.RUNNING),
        (_second_attempt_running, State.RUNNING),
        (_compensating_after_decline, State.COMPENSATING),
        (_compensating_cancel_requested, State.COMPENSATING),
        (_compensated, State.COMPENSATED),
        (_failed_needing_a_person, State.FAILED),
        (_cancelled, State.CANCELLED),
        (_completed, State.COMPLETED),
    ],
    ids=lambda v: getattr(v, "__name__", "").lstrip("_") or str(v),
)


def _round_trip(ex: Execution) -> Execution:
    return execution_from_json(json.loads(json.dumps(execution_to_json(ex))))


@EXECUTIONS
def test_execution_round_trips_exactly_through_json(
    build: Callable[[], Execution], state: State
) -> None:
    ex = build()
    assert ex.state is state

    assert _round_trip(ex) == ex


@EXECUTIONS
def test_a_listing_reads_name_and_state_without_the_whole_decode(
    build: Callable[[], Execution], state: State
) -> None:
    stored = json.loads(json.dumps(execution_to_json(build())))
    assert name_and_state(stored) == ("order", state.value)
    # An older stored form is decoded whole (it has no "v": 2).
    assert name_and_state({k: v for k, v in stored.items() if k != "v"}) is None


def test_round_trip_preserves_the_details_that_matter_mid_saga() -> None:
    ex = _round_trip(_failed_needing_a_person())

    assert ex.failure == DECLINED
    assert ex.requires_manual_intervention is True
    assert ex.node(1).last_failure is not None
    assert ex.node(1).last_failure.type == "CompensationFailed"
    assert ex.metadata == {"tenant": "acme", "trace": "t-1"}
    assert ex.request_fingerprint == "sha256:abc"

    waiting = _round_trip(_mid_retry())
    (attempt,) = waiting.attempts.values()
    assert attempt.dispatched is False
    assert waiting.node(1).last_failure == CRASH


@pytest.mark.parametrize(
    "build",
    [
        _fresh,
        _mid_retry,
        _second_attempt_running,
        _compensating_after_decline,
        _compensating_cancel_requested,
    ],
    ids=lambda f: f.__name__.lstrip("_"),
)
def test_decoded_execution_behaves_like_the_original(build: Callable[[], Execution]) -> None:
    ex = build()
    command = _command(ex)
    (attempt,) = ex.attempts.values()
    event = TimerFired(f"retry:{command}") if not attempt.dispatched else StepFailed(command, CRASH)

    assert apply(_round_trip(ex), event, T0 + 1_000) == apply(ex, event, T0 + 1_000)


def test_json_form_holds_only_plain_json_values() -> None:
    def plain(value: object) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, list):
            return all(plain(v) for v in value)
        # StrEnum members are str subclasses: they must be stored as plain str.
        return value is None or type(value) in (str, int, float, bool)

    for build in (_fresh, _mid_retry, _compensating_cancel_requested, _failed_needing_a_person):
        assert plain(execution_to_json(build()))


@pytest.mark.parametrize("spec", [SPEC, WorkflowSpec("one", 1, (StepSpec("a", "w"),))])
def test_workflow_spec_round_trips_through_json(spec: WorkflowSpec) -> None:
    assert spec_from_json(json.loads(json.dumps(spec_to_json(spec)))) == spec


def test_a_stack_trace_is_trimmed_to_its_last_8_kib_of_whole_characters() -> None:
    from multiagents_server.convert import MAX_STACK_TRACE_BYTES, trim_stack_trace

    short = "Traceback\n  File x\nValueError: é\n"
    assert trim_stack_trace(short) == short
    long = "é" * 10_000 + "\nValueError: the end"  # 2 bytes a character
    trimmed = trim_stack_trace(long)
    assert len(trimmed.encode()) <= MAX_STACK_TRACE_BYTES
    assert len(trimmed.encode()) >= MAX_STACK_TRACE_BYTES - 1
    assert trimmed.startswith("...(trimmed)\n") and trimmed.endswith("ValueError: the end")
    assert "\ufffd" not in trimmed
