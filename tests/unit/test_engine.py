"""The saga engine as a pure state machine: events in, transitions out, no I/O.

Each test drives a small workflow through `start()` and `apply()` and checks
what the engine answers: the new execution, the effects the caller must carry
out, and the history it must record.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from multiagents_server.engine import (
    Attempt,
    CancelCommand,
    CancelRequested,
    CancelTimer,
    CommandKind,
    CommandRecorded,
    DispatchCommand,
    ErrorRecorded,
    Event,
    Execution,
    Failure,
    InvalidTransition,
    NodeRecord,
    ResultRecorded,
    RetryPolicy,
    ScheduleTimer,
    State,
    StatusChanged,
    StepCompleted,
    StepFailed,
    StepSpec,
    StepStatus,
    TimerFired,
    Transition,
    WorkflowSpec,
    apply,
    start,
)

TX = "tx-1"
T0 = 1_700_000_000_000
TIMEOUT_MS = 30_000
NO_RETRY = RetryPolicy(max_attempts=1)
BOOM = Failure("boom", "WorkerExecutionError")
INVALID = Failure("bad input", "ValueError", non_retryable=True)

E = TypeVar("E")


# -- building specs ----------------------------------------------------------


def step(
    name: str,
    *,
    compensation: str = "",
    retry: RetryPolicy = NO_RETRY,
    compensation_retry: RetryPolicy | None = None,
    heartbeat_timeout_ms: int = 0,
) -> StepSpec:
    return StepSpec(
        name=name,
        worker=f"do_{name}",
        compensation=compensation,
        retry=retry,
        compensation_retry=compensation_retry,
        timeout_ms=TIMEOUT_MS,
        heartbeat_timeout_ms=heartbeat_timeout_ms,
    )


def undoable(name: str, **kwargs: Any) -> StepSpec:
    """A step whose compensation worker is `undo_<name>`."""
    return step(name, compensation=f"undo_{name}", **kwargs)


def workflow(*steps: StepSpec) -> WorkflowSpec:
    return WorkflowSpec(name="wf", version=1, steps=steps)


# -- command and timer ids, spelled out so the tests pin the format ---------


def xid(step_index: int, attempt: int) -> str:
    """Command id of an execute attempt."""
    return f"{TX}:x{step_index}:{attempt}"


def cid(step_index: int, attempt: int) -> str:
    """Command id of a compensate attempt."""
    return f"{TX}:c{step_index}:{attempt}"


def timeout_timer(command: str) -> str:
    return f"timeout:{command}"


def heartbeat_timer(command: str) -> str:
    return f"heartbeat:{command}"


def retry_timer(command: str) -> str:
    return f"retry:{command}"


# -- reading an execution (these workflows run one attempt at a time) --------


def current(ex: Execution) -> Attempt | None:
    """The one outstanding attempt, if any."""
    assert len(ex.attempts) <= 1
    return next(iter(ex.attempts.values()), None)


def records(ex: Execution) -> list[NodeRecord]:
    """The records of a flat workflow's steps, in order."""
    return [ex.node(i) for i in range(len(ex.spec.steps))]


# -- driving a workflow ------------------------------------------------------


def begin(spec: WorkflowSpec, input: dict[str, Any] | None = None, now: int = T0) -> Transition:
    return start(
        spec,
        transaction_id=TX,
        correlation_id="corr-1",
        input=input if input is not None else {"order": 7},
        now_ms=now,
    )


def current_command(ex: Execution) -> str:
    assert current(ex) is not None, "no outstanding attempt"
    return ex.command_id(current(ex))


def complete(ex: Execution, result: dict[str, Any] | None = None, now: int = T0) -> Transition:
    """The worker of the outstanding attempt answers with `result`."""
    return _changed(apply(ex, StepCompleted(current_command(ex), result or {}), now))


def fail(ex: Execution, failure: Failure = BOOM, now: int = T0) -> Transition:
    """The outstanding attempt fails with `failure`."""
    return _changed(apply(ex, StepFailed(current_command(ex), failure), now))


def fire(ex: Execution, timer: str, now: int = T0) -> Transition:
    return _changed(apply(ex, TimerFired(timer), now))


def fire_retry(ex: Execution, now: int = T0) -> Transition:
    """Fire the retry timer of the attempt waiting for its backoff."""
    assert current(ex) is not None and not current(ex).dispatched
    return fire(ex, retry_timer(current_command(ex)), now)


def cancel(ex: Execution, reason: str = "user asked", now: int = T0) -> Transition:
    return _changed(apply(ex, CancelRequested(reason), now))


def _changed(t: Transition) -> Transition:
    assert t.changed, "the event was expected to change the execution"
    return t


def of(effects: tuple[object, ...], kind: type[E]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def only_dispatch(t: Transition) -> DispatchCommand:
    (dispatch,) = of(t.effects, DispatchCommand)
    return dispatch


# -- start -------------------------------------------------------------------


def test_start_dispatches_first_step_with_input_as_context() -> None:
    t = begin(workflow(step("reserve"), step("charge")), {"order": 7, "amount": 12})

    ex = t.execution
    assert ex.state is State.RUNNING
    assert ex.transaction_id == TX and ex.correlation_id == "corr-1"
    assert ex.input == {"order": 7, "amount": 12}
    assert ex.context == {"order": 7, "amount": 12}
    assert current(ex) == Attempt(CommandKind.EXECUTE, "0", 1, dispatched=True)
    assert ex.current_step == "reserve"
    assert [s.status for s in records(ex)] == [StepStatus.RUNNING, StepStatus.PENDING]
    assert records(ex)[0].attempts == 1
    assert (ex.created_ms, ex.updated_ms, ex.completed_ms) == (T0, T0, 0)
    assert only_dispatch(t) == DispatchCommand(
        command_id=xid(0, 1),
        kind=CommandKind.EXECUTE,
        worker="do_reserve",
        step="reserve",
        attempt=1,
        context={"order": 7, "amount": 12},
        deadline_ms=T0 + TIMEOUT_MS,
        heartbeat_timeout_ms=0,
    )
    assert t.history == (
        StatusChanged(State.PENDING, ""),
        CommandRecorded(
            CommandKind.EXECUTE,
            "do_reserve",
            "reserve",
            xid(0, 1),
            1,
            {"order": 7, "amount": 12},
            path="reserve",
        ),
        StatusChanged(State.RUNNING, "reserve"),
    )


def test_start_copies_input_so_caller_mutation_does_not_leak() -> None:
    given = {"order": 7}
    ex = begin(workflow(step("a")), given).execution
    given["order"] = 8
    assert ex.input == {"order": 7} and ex.context == {"order": 7}


@pytest.mark.parametrize(
    ("heartbeat_timeout_ms", "expected_timers"),
    [
        (0, [ScheduleTimer(timeout_timer(xid(0, 1)), T0 + TIMEOUT_MS)]),
        (
            5_000,
            [
                ScheduleTimer(timeout_timer(xid(0, 1)), T0 + TIMEOUT_MS),
                ScheduleTimer(heartbeat_timer(xid(0, 1)), T0 + 5_000),
            ],
        ),
    ],
    ids=["no-heartbeat", "heartbeat"],
)
def test_start_schedules_timeout_and_heartbeat_only_when_configured(
    heartbeat_timeout_ms: int, expected_timers: list[ScheduleTimer]
) -> None:
    t = begin(workflow(step("a", heartbeat_timeout_ms=heartbeat_timeout_ms)))

    assert of(t.effects, ScheduleTimer) == expected_timers
    assert only_dispatch(t).heartbeat_timeout_ms == heartbeat_timeout_ms


def test_correlation_id_defaults_to_transaction_id() -> None:
    t = start(workflow(step("a")), transaction_id=TX, correlation_id="", input={}, now_ms=T0)
    assert t.execution.correlation_id == TX


def test_start_refuses_a_workflow_without_steps() -> None:
    with pytest.raises(InvalidTransition):
        begin(workflow())


# -- forward path ------------------------------------------------------------


def test_completed_step_stops_its_timers_and_dispatches_the_next_with_merged_context() -> None:
    ex = begin(workflow(step("a", heartbeat_timeout_ms=5_000), step("b")), {"k": 0}).execution

    t = complete(ex, {"r": 1}, now=T0 + 100)

    assert t.effects == (
        CancelTimer(timeout_timer(xid(0, 1))),
        CancelTimer(heartbeat_timer(xid(0, 1))),
        DispatchCommand(
            command_id=xid(1, 1),
            kind=CommandKind.EXECUTE,
            worker="do_b",
            step="b",
            attempt=1,
            context={"k": 0, "r": 1},
            deadline_ms=T0 + 100 + TIMEOUT_MS,
            heartbeat_timeout_ms=0,
        ),
        ScheduleTimer(timeout_timer(xid(1, 1)), T0 + 100 + TIMEOUT_MS),
    )
    assert t.history == (
        ResultRecorded(CommandKind.EXECUTE, "do_a", "a", xid(0, 1), {"r": 1}, path="a"),
        CommandRecorded(CommandKind.EXECUTE, "do_b", "b", xid(1, 1), 1, {"k": 0, "r": 1}, path="b"),
        StatusChanged(State.RUNNING, "b"),
    )
    assert t.execution.updated_ms == T0 + 100
    assert [s.status for s in records(t.execution)] == [StepStatus.COMPLETED, StepStatus.RUNNING]


def test_context_merges_forward_later_keys_win_and_results_are_kept_by_step_name() -> None:
    ex = begin(workflow(step("a"), step("b"), step("c")), {"k": "input", "i": 0}).execution
    results: dict[str, dict[str, Any]] = {
        "a": {"k": "a", "ra": 1},
        "b": {"k": "b", "rb": 2},
        "c": {"rc": 3},
    }
    seen_contexts = []

    for name in ("a", "b"):
        t = complete(ex, results[name])
        seen_contexts.append(only_dispatch(t).context)
        ex = t.execution
    t = complete(ex, results["c"], now=T0 + 5)

    assert seen_contexts == [
        {"k": "a", "i": 0, "ra": 1},
        {"k": "b", "i": 0, "ra": 1, "rb": 2},
    ]
    done = t.execution
    assert done.context == {"k": "b", "i": 0, "ra": 1, "rb": 2, "rc": 3}
    assert done.step_results == results
    assert done.input == {"k": "input", "i": 0}
    assert done.state is State.COMPLETED
    assert done.completed_ms == T0 + 5
    assert current(done) is None
    assert all(s.status is StepStatus.COMPLETED for s in records(done))
    assert t.effects == (CancelTimer(timeout_timer(xid(2, 1))),)
    assert t.history[-1] == StatusChanged(State.COMPLETED, "")


# -- stale and duplicate events ---------------------------------------------


def _dup_result_of_completed_step() -> tuple[Execution, Event]:
    ex = begin(workflow(step("a"), step("b"))).execution
    return complete(ex, {"r": 1}).execution, StepCompleted(xid(0, 1), {"r": 1})


def _failure_of_completed_step() -> tuple[Execution, Event]:
    ex = begin(workflow(step("a"), step("b"))).execution
    return complete(ex).execution, StepFailed(xid(0, 1), BOOM)


def _result_of_earlier_attempt() -> tuple[Execution, Event]:
    ex = begin(workflow(step("a", retry=RetryPolicy(max_attempts=3)))).execution
    ex = fire_retry(fail(ex).execution).execution
    return ex, StepCompleted(xid(0, 1), {})


def _failure_of_earlier_attempt() -> tuple[Execution, Event]:
    ex = begin(workflow(step("a", retry=RetryPolicy(max_attempts=3)))).execution
    ex = fire_retry(fail(ex).execution).execution
    return ex, StepFailed(xid(0, 1), BOOM)


def _result_while_waiting_for_retry() -> tuple[Execution, Event]:
    ex = begin(workflow(step("a", retry=RetryPolicy(max_attempts=3)))).execution
    return fail(ex).execution, StepCompleted(xid(0, 1), {})


def _result_for_undispatched_next_attempt() -> tuple[Execution, Event]:
    ex = begin(workflow(step("a", retry=RetryPolicy(max_attempts=3)))).execution
    return fail(ex).execution, StepCompleted(xid(0, 2), {})


def _result_for_unknown_command() -> tuple[Execution, Event]:
    return begin(workflow(step("a"))).execution, StepCompleted("other:x0:1", {})


def _result_after_completion() -> tuple[Execution, Event]:
    ex = complete(begin(workflow(step("a"))).execution).execution
    return ex, StepCompleted(xid(0, 1), {})


def _failure_after_failure() -> tuple[Execution, Event]:
    ex = fail(begin(workflow(step("a"))).execution).execution
    return ex, StepFailed(xid(0, 1), BOOM)


def _timeout_after_completion() -> tuple[Execution, Event]:
    ex = complete(begin(workflow(step("a"))).execution).execution
    return ex, TimerFired(timeout_timer(xid(0, 1)))


def _timeout_of_completed_step() -> tuple[Execution, Event]:
    ex = complete(begin(workflow(step("a"), step("b"))).execution).execution
    return ex, TimerFired(timeout_timer(xid(0, 1)))


def _heartbeat_of_earlier_attempt() -> tuple[Execution, Event]:
    ex = begin(
        workflow(step("a", retry=RetryPolicy(max_attempts=3), heartbeat_timeout_ms=5_000))
    ).execution
    ex = fire_retry(fail(ex).execution).execution
    return ex, TimerFired(heartbeat_timer(xid(0, 1)))


def _duplicate_retry_timer() -> tuple[Execution, Event]:
    ex = begin(workflow(step("a", retry=RetryPolicy(max_attempts=3)))).execution
    ex = fire_retry(fail(ex).execution).execution
    return ex, TimerFired(retry_timer(xid(0, 2)))


def _timeout_while_waiting_for_retry() -> tuple[Execution, Event]:
    ex = begin(workflow(step("a", retry=RetryPolicy(max_attempts=3)))).execution
    return fail(ex).execution, TimerFired(timeout_timer(xid(0, 2)))


def _retry_timer_after_cancel() -> tuple[Execution, Event]:
    ex = begin(workflow(step("a", retry=RetryPolicy(max_attempts=3)))).execution
    ex = cancel(fail(ex).execution).execution
    return ex, TimerFired(retry_timer(xid(0, 2)))


def _result_of_cancelled_command() -> tuple[Execution, Event]:
    ex = begin(workflow(undoable("a"), step("b"))).execution
    ex = cancel(complete(ex).execution).execution  # now compensating a
    return ex, StepCompleted(xid(1, 1), {})


def _unknown_timer_kind() -> tuple[Execution, Event]:
    return begin(workflow(step("a"))).execution, TimerFired(f"nonsense:{xid(0, 1)}")


@pytest.mark.parametrize(
    "scenario",
    [
        _dup_result_of_completed_step,
        _failure_of_completed_step,
        _result_of_earlier_attempt,
        _failure_of_earlier_attempt,
        _result_while_waiting_for_retry,
        _result_for_undispatched_next_attempt,
        _result_for_unknown_command,
        _result_after_completion,
        _failure_after_failure,
        _timeout_after_completion,
        _timeout_of_completed_step,
        _heartbeat_of_earlier_attempt,
        _duplicate_retry_timer,
        _timeout_while_waiting_for_retry,
        _retry_timer_after_cancel,
        _result_of_cancelled_command,
        _unknown_timer_kind,
    ],
    ids=lambda f: f.__name__.lstrip("_"),
)
def test_stale_or_duplicate_event_leaves_execution_unchanged(
    scenario: Callable[[], tuple[Execution, Event]],
) -> None:
    ex, event = scenario()

    t = apply(ex, event, T0 + 999)

    assert t.changed is False
    assert t.execution is ex
    assert t.effects == () and t.history == ()


# -- retries -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected_delays"),
    [
        (RetryPolicy(max_attempts=4, initial_interval_ms=1_000), [1_000, 2_000, 4_000]),
        (
            RetryPolicy(5, initial_interval_ms=500, backoff_coefficient=3.0, max_interval_ms=4_000),
            [500, 1_500, 4_000, 4_000],
        ),
        (RetryPolicy(3, initial_interval_ms=250, backoff_coefficient=1.0), [250, 250]),
    ],
    ids=["doubling", "tripling-capped", "constant"],
)
def test_retryable_failure_retries_with_exponential_backoff_then_fails_for_good(
    policy: RetryPolicy, expected_delays: list[int]
) -> None:
    ex = begin(workflow(step("a", retry=policy))).execution
    now = T0
    delays = []

    for attempt in range(1, policy.max_attempts):
        now += 10
        t = fail(ex, now=now)
        stop_timeout, schedule_retry = t.effects
        assert stop_timeout == CancelTimer(timeout_timer(xid(0, attempt)))
        assert isinstance(schedule_retry, ScheduleTimer)
        assert schedule_retry.timer_id == retry_timer(xid(0, attempt + 1))
        delays.append(schedule_retry.due_ms - now)
        assert t.history == (
            ErrorRecorded(
                CommandKind.EXECUTE, "do_a", "a", xid(0, attempt), attempt, BOOM, True, path="a"
            ),
        )
        assert current(t.execution) == Attempt(CommandKind.EXECUTE, "0", attempt + 1, False)
        assert t.execution.state is State.RUNNING
        assert records(t.execution)[0].last_failure == BOOM

        t = fire_retry(t.execution, now=now)
        assert only_dispatch(t).command_id == xid(0, attempt + 1)
        assert only_dispatch(t).attempt == attempt + 1
        assert t.history == (
            CommandRecorded(
                CommandKind.EXECUTE,
                "do_a",
                "a",
                xid(0, attempt + 1),
                attempt + 1,
                {"order": 7},
                path="a",
            ),
        )
        ex = t.execution
        assert records(ex)[0].attempts == attempt + 1

    assert delays == expected_delays

    t = fail(ex)
    assert t.history[0] == ErrorRecorded(
        CommandKind.EXECUTE,
        "do_a",
        "a",
        xid(0, policy.max_attempts),
        policy.max_attempts,
        BOOM,
        False,
        path="a",
    )
    assert of(t.effects, ScheduleTimer) == []
    assert t.execution.state is State.FAILED
    assert t.execution.failure == BOOM
    assert records(t.execution)[0].status is StepStatus.FAILED


def test_retry_dispatch_keeps_the_context_and_schedules_new_timers() -> None:
    ex = begin(
        workflow(step("a", retry=RetryPolicy(max_attempts=2), heartbeat_timeout_ms=5_000)),
        {"k": 1},
    ).execution

    t = fire_retry(fail(ex, now=T0 + 1).execution, now=T0 + 1_001)

    assert t.effects == (
        DispatchCommand(
            command_id=xid(0, 2),
            kind=CommandKind.EXECUTE,
            worker="do_a",
            step="a",
            attempt=2,
            context={"k": 1},
            deadline_ms=T0 + 1_001 + TIMEOUT_MS,
            heartbeat_timeout_ms=5_000,
        ),
        ScheduleTimer(timeout_timer(xid(0, 2)), T0 + 1_001 + TIMEOUT_MS),
        ScheduleTimer(heartbeat_timer(xid(0, 2)), T0 + 1_001 + 5_000),
    )
    assert current(t.execution) == Attempt(CommandKind.EXECUTE, "0", 2, True)


@pytest.mark.parametrize(
    ("failure", "non_retryable_types", "retried"),
    [
        (INVALID, (), False),
        (Failure("bad", "ValidationError"), ("ValidationError",), False),
        (Failure("bad", "ValidationError"), ("Other", "ValidationError"), False),
        (Failure("flaky", "ConnectionError"), ("ValidationError",), True),
        (BOOM, (), True),
    ],
    ids=["flagged-non-retryable", "listed-type", "listed-among-others", "unlisted-type", "plain"],
)
def test_non_retryable_failures_are_not_retried(
    failure: Failure, non_retryable_types: tuple[str, ...], retried: bool
) -> None:
    policy = RetryPolicy(max_attempts=5, non_retryable_error_types=non_retryable_types)
    ex = begin(workflow(step("a", retry=policy))).execution

    t = fail(ex, failure)

    (error,) = t.history[:1]
    assert isinstance(error, ErrorRecorded) and error.will_retry is retried
    assert bool(of(t.effects, ScheduleTimer)) is retried
    if retried:
        assert t.execution.state is State.RUNNING
    else:
        assert t.execution.state is State.FAILED
        assert t.execution.failure == failure
        assert records(t.execution)[0].attempts == 1


# -- compensation ------------------------------------------------------------


@pytest.mark.parametrize(
    "steps",
    [
        (undoable("a"),),
        (step("a"), step("b")),
        (step("a"), step("b"), undoable("c")),
    ],
    ids=["first-step-fails", "completed-step-has-no-compensation", "only-failed-step-undoable"],
)
def test_failure_with_nothing_to_compensate_ends_failed(steps: tuple[StepSpec, ...]) -> None:
    ex = begin(workflow(*steps)).execution
    for _ in steps[:-1]:
        ex = complete(ex).execution

    t = fail(ex, INVALID, now=T0 + 7)

    assert of(t.effects, DispatchCommand) == []
    assert t.history[-1] == StatusChanged(State.FAILED, "")
    done = t.execution
    assert done.state is State.FAILED
    assert done.failure == INVALID
    assert done.completed_ms == T0 + 7
    assert current(done) is None
    assert done.requires_manual_intervention is False
    assert records(done)[-1].status is StepStatus.FAILED
    assert all(s.status is StepStatus.COMPLETED for s in records(done)[:-1])


def test_failed_step_compensates_completed_steps_in_reverse() -> None:
    ex = begin(workflow(undoable("a"), undoable("b"), step("c")), {"order": 7}).execution
    ex = complete(ex, {"resource_id": "ra", "shared": "a"}).execution
    ex = complete(ex, {"resource_id": "rb", "shared": "b"}).execution
    at_failure = {"order": 7, "resource_id": "rb", "shared": "b"}

    t = fail(ex, INVALID, now=T0 + 1)

    assert t.history == (
        ErrorRecorded(CommandKind.EXECUTE, "do_c", "c", xid(2, 1), 1, INVALID, False, path="c"),
        CommandRecorded(CommandKind.COMPENSATE, "undo_b", "b", cid(1, 1), 1, at_failure, path="b"),
        StatusChanged(State.COMPENSATING, "b"),
    )
    assert t.effects == (
        CancelTimer(timeout_timer(xid(2, 1))),
        DispatchCommand(
            command_id=cid(1, 1),
            kind=CommandKind.COMPENSATE,
            worker="undo_b",
            step="b",
            attempt=1,
            context=at_failure,
            deadline_ms=T0 + 1 + TIMEOUT_MS,
            heartbeat_timeout_ms=0,
        ),
        ScheduleTimer(timeout_timer(cid(1, 1)), T0 + 1 + TIMEOUT_MS),
    )
    assert t.execution.state is State.COMPENSATING
    assert current(t.execution) == Attempt(CommandKind.COMPENSATE, "1", 1, True)
    assert t.execution.failure == INVALID

    t = complete(t.execution, {"released": "rb"})
    assert t.history[0] == ResultRecorded(
        CommandKind.COMPENSATE, "undo_b", "b", cid(1, 1), {"released": "rb"}, path="b"
    )
    second = only_dispatch(t)
    assert (second.command_id, second.worker, second.kind) == (
        cid(0, 1),
        "undo_a",
        CommandKind.COMPENSATE,
    )
    # Each compensation sees the context at the failure with its own step's
    # result on top: undo_a finds a's resource id, not b's.
    assert second.context == {**at_failure, "resource_id": "ra", "shared": "a"}

    t = complete(t.execution, {}, now=T0 + 2)
    done = t.execution
    assert done.state is State.COMPENSATED
    assert done.completed_ms == T0 + 2
    assert current(done) is None
    assert done.failure == INVALID
    assert done.requires_manual_intervention is False
    assert [s.status for s in records(done)] == [
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATED,
        StepStatus.FAILED,
    ]
    # Compensation results never feed the context.
    assert done.context == at_failure
    assert t.history[-1] == StatusChanged(State.COMPENSATED, "")


def test_steps_without_compensation_are_skipped_in_compensation() -> None:
    ex = begin(workflow(undoable("a"), step("b"), undoable("c"), step("d"))).execution
    for _ in range(3):
        ex = complete(ex).execution

    compensated = []
    t = fail(ex, INVALID)
    while current(t.execution) is not None:
        compensated.append(only_dispatch(t).worker)
        t = complete(t.execution)

    assert compensated == ["undo_c", "undo_a"]
    assert t.execution.state is State.COMPENSATED
    assert [s.status for s in records(t.execution)] == [
        StepStatus.COMPENSATED,
        StepStatus.COMPLETED,
        StepStatus.COMPENSATED,
        StepStatus.FAILED,
    ]


@pytest.mark.parametrize(
    ("step_retry", "compensation_retry", "compensation_attempts"),
    [
        (NO_RETRY, RetryPolicy(max_attempts=2, initial_interval_ms=10), 2),
        (RetryPolicy(max_attempts=3, initial_interval_ms=10), None, 3),
        (RetryPolicy(max_attempts=4), NO_RETRY, 1),
    ],
    ids=["own-compensation-policy", "falls-back-to-step-policy", "own-policy-wins"],
)
def test_compensation_failing_for_good_requires_manual_intervention_and_others_still_run(
    step_retry: RetryPolicy, compensation_retry: RetryPolicy | None, compensation_attempts: int
) -> None:
    spec = workflow(
        undoable("a"),
        undoable("b", retry=step_retry, compensation_retry=compensation_retry),
        step("c"),
    )
    ex = begin(spec).execution
    ex = complete(complete(ex).execution).execution
    ex = fail(ex, INVALID).execution  # compensating b
    failed_compensation = Failure("refund api down", "WorkerExecutionError")

    for attempt in range(1, compensation_attempts):
        t = fail(ex, failed_compensation)
        assert t.effects[-1] == ScheduleTimer(
            retry_timer(cid(1, attempt + 1)),
            T0 + (compensation_retry or step_retry).backoff_ms(attempt),
        )
        t = fire_retry(t.execution)
        assert only_dispatch(t).command_id == cid(1, attempt + 1)
        assert only_dispatch(t).worker == "undo_b"
        ex = t.execution

    t = fail(ex, failed_compensation)
    assert t.history[0] == ErrorRecorded(
        CommandKind.COMPENSATE,
        "undo_b",
        "b",
        cid(1, compensation_attempts),
        compensation_attempts,
        failed_compensation,
        False,
        path="b",
    )
    assert only_dispatch(t).command_id == cid(0, 1)  # a is still compensated
    assert t.execution.requires_manual_intervention is True
    assert records(t.execution)[1].status is StepStatus.COMPENSATION_FAILED
    assert records(t.execution)[1].compensation_attempts == compensation_attempts
    assert records(t.execution)[1].last_failure == failed_compensation

    done = complete(t.execution).execution
    assert done.state is State.FAILED
    assert done.requires_manual_intervention is True
    assert done.failure == INVALID  # the failure that started compensation stays recorded
    assert [s.status for s in records(done)] == [
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATION_FAILED,
        StepStatus.FAILED,
    ]


@pytest.mark.parametrize(
    ("result", "flagged"),
    [
        ({"requires_manual_intervention": True, "error": "refund refused"}, True),
        ({"requires_manual_intervention": False}, False),
        ({"requires_manual_intervention": "yes"}, False),
        ({"refunded": True}, False),
    ],
    ids=["flagged", "explicit-false", "not-a-bool", "absent"],
)
def test_compensation_result_can_ask_for_manual_intervention(
    result: dict[str, Any], flagged: bool
) -> None:
    ex = begin(workflow(undoable("a"), undoable("b"), step("c"))).execution
    ex = fail(complete(complete(ex).execution).execution, INVALID).execution

    t = complete(ex, result)  # b's compensation answers
    assert only_dispatch(t).command_id == cid(0, 1)  # a is compensated either way
    done = complete(t.execution).execution

    assert done.requires_manual_intervention is flagged
    b = records(done)[1]
    if flagged:
        assert done.state is State.FAILED
        assert b.status is StepStatus.COMPENSATION_FAILED
        assert b.last_failure is not None
        assert (b.last_failure.type, b.last_failure.message) == (
            "CompensationFailed",
            "refund refused",
        )
    else:
        assert done.state is State.COMPENSATED
        assert b.status is StepStatus.COMPENSATED
    assert records(done)[0].status is StepStatus.COMPENSATED


# -- timeouts and heartbeats ---------------------------------------------------


TIMER_KINDS = pytest.mark.parametrize(
    ("timer", "failure_type"),
    [(timeout_timer, "StepTimeout"), (heartbeat_timer, "HeartbeatTimeout")],
    ids=["timeout", "heartbeat"],
)


@TIMER_KINDS
def test_timer_of_running_step_cancels_command_and_retries(
    timer: Callable[[str], str], failure_type: str
) -> None:
    policy = RetryPolicy(max_attempts=2, initial_interval_ms=100)
    ex = begin(workflow(step("a", retry=policy, heartbeat_timeout_ms=5_000))).execution

    t = fire(ex, timer(xid(0, 1)), now=T0 + 50)

    cancel_effect, *rest = t.effects
    assert isinstance(cancel_effect, CancelCommand)
    assert cancel_effect.command_id == xid(0, 1)
    assert rest == [
        CancelTimer(timeout_timer(xid(0, 1))),
        CancelTimer(heartbeat_timer(xid(0, 1))),
        ScheduleTimer(retry_timer(xid(0, 2)), T0 + 50 + 100),
    ]
    (error,) = t.history
    assert isinstance(error, ErrorRecorded)
    assert (error.failure.type, error.failure.non_retryable, error.will_retry) == (
        failure_type,
        False,
        True,
    )
    assert cancel_effect.reason == error.failure.message

    t = fire_retry(t.execution, now=T0 + 150)
    assert only_dispatch(t).command_id == xid(0, 2)


@TIMER_KINDS
@pytest.mark.parametrize(
    ("first_step", "final_state"),
    [(undoable("a"), State.COMPENSATED), (step("a"), State.FAILED)],
    ids=["compensates", "nothing-to-compensate"],
)
def test_timer_with_no_retries_left_fails_the_step(
    timer: Callable[[str], str], failure_type: str, first_step: StepSpec, final_state: State
) -> None:
    ex = begin(workflow(first_step, step("b", heartbeat_timeout_ms=5_000))).execution
    ex = complete(ex).execution

    t = fire(ex, timer(xid(1, 1)))

    stop = t.effects[0]
    assert isinstance(stop, CancelCommand) and stop.command_id == xid(1, 1)
    assert records(t.execution)[1].status is StepStatus.FAILED
    assert t.execution.failure is not None and t.execution.failure.type == failure_type
    if final_state is State.COMPENSATED:
        assert only_dispatch(t).command_id == cid(0, 1)
        t = complete(t.execution)
    else:
        assert of(t.effects, DispatchCommand) == []
    assert t.execution.state is final_state


# -- cancellation ------------------------------------------------------------


def test_cancel_while_step_runs_cancels_it_and_compensates_completed_steps() -> None:
    spec = workflow(undoable("a"), undoable("b"), step("c", heartbeat_timeout_ms=5_000))
    ex = begin(spec).execution
    ex = complete(ex, {"ra": 1}).execution
    ex = complete(ex, {"rb": 2}).execution

    t = cancel(ex, "user asked", now=T0 + 3)

    assert t.effects[:3] == (
        CancelTimer(timeout_timer(xid(2, 1))),
        CancelTimer(heartbeat_timer(xid(2, 1))),
        CancelCommand(xid(2, 1), "user asked"),
    )
    compensation = only_dispatch(t)
    assert (compensation.command_id, compensation.worker) == (cid(1, 1), "undo_b")
    assert compensation.context == {"order": 7, "ra": 1, "rb": 2}
    assert t.execution.cancel_requested is True
    assert records(t.execution)[2].status is StepStatus.CANCELLED
    assert t.execution.state is State.COMPENSATING

    t = complete(t.execution)
    assert only_dispatch(t).command_id == cid(0, 1)
    t = complete(t.execution, now=T0 + 4)

    done = t.execution
    assert done.state is State.CANCELLED
    assert done.completed_ms == T0 + 4
    assert done.failure is None
    assert [s.status for s in records(done)] == [
        StepStatus.COMPENSATED,
        StepStatus.COMPENSATED,
        StepStatus.CANCELLED,
    ]
    assert t.history[-1] == StatusChanged(State.CANCELLED, "")


@pytest.mark.parametrize(
    "steps",
    [(undoable("a"),), (step("a"), undoable("b"))],
    ids=["first-step-running", "completed-step-has-no-compensation"],
)
def test_cancel_with_nothing_to_compensate_is_cancelled_at_once(
    steps: tuple[StepSpec, ...],
) -> None:
    ex = begin(workflow(*steps)).execution
    for _ in steps[:-1]:
        ex = complete(ex).execution
    running = len(steps) - 1

    t = cancel(ex, "stop", now=T0 + 9)

    assert t.effects == (
        CancelTimer(timeout_timer(xid(running, 1))),
        CancelCommand(xid(running, 1), "stop"),
    )
    # The request (with the step it stopped), then the end.
    assert t.history == (
        StatusChanged(State.RUNNING, steps[-1].name),
        StatusChanged(State.CANCELLED, ""),
    )
    assert t.execution.cancel_reason == "stop"
    assert t.execution.state is State.CANCELLED
    assert t.execution.completed_ms == T0 + 9
    assert current(t.execution) is None
    assert records(t.execution)[running].status is StepStatus.CANCELLED


def test_cancel_without_reason_uses_a_default_reason() -> None:
    ex = begin(workflow(step("a"))).execution
    t = cancel(ex, "")
    (command,) = of(t.effects, CancelCommand)
    assert command.reason == t.execution.cancel_reason == "workflow cancelled"


def test_cancel_while_waiting_for_retry_cancels_the_retry_timer() -> None:
    ex = begin(workflow(undoable("a"), step("b", retry=RetryPolicy(max_attempts=3)))).execution
    ex = fail(complete(ex).execution).execution  # b waits for attempt 2

    t = cancel(ex)

    assert t.effects[0] == CancelTimer(retry_timer(xid(1, 2)))
    assert of(t.effects, CancelCommand) == []
    assert only_dispatch(t).command_id == cid(0, 1)
    assert records(t.execution)[1].status is StepStatus.CANCELLED

    assert complete(t.execution).execution.state is State.CANCELLED


@pytest.mark.parametrize(
    ("compensation_result", "final_state"),
    [({}, State.COMPENSATED), ({"requires_manual_intervention": True}, State.FAILED)],
    ids=["compensation-succeeds", "compensation-needs-a-person"],
)
@pytest.mark.parametrize("waiting_for_retry", [False, True], ids=["running", "waiting-retry"])
def test_cancel_while_compensating_records_its_reason_and_the_failure_decides_the_end(
    compensation_result: dict[str, Any], final_state: State, waiting_for_retry: bool
) -> None:
    spec = workflow(undoable("a", compensation_retry=RetryPolicy(max_attempts=2)), step("b"))
    ex = fail(complete(begin(spec).execution).execution, INVALID).execution
    if waiting_for_retry:
        ex = fail(ex).execution

    t = cancel(ex)

    # Only the request is recorded (with its reason); compensation goes on.
    assert t.effects == ()
    assert t.history == (StatusChanged(State.COMPENSATING, "a"),)
    assert t.execution.cancel_requested is True
    assert t.execution.cancel_reason == "user asked"
    assert current(t.execution) == current(ex)

    ex = t.execution
    if waiting_for_retry:
        ex = fire_retry(ex).execution
    done = complete(ex, compensation_result).execution
    assert done.state is final_state
    assert done.failure == INVALID


def test_compensation_failing_for_good_after_cancel_ends_failed_needing_a_person() -> None:
    ex = begin(workflow(undoable("a"), undoable("b"), step("c"))).execution
    ex = cancel(complete(complete(ex).execution).execution).execution  # compensating b
    broken = Failure("undo broke", "WorkerExecutionError")

    t = fail(ex, broken)

    assert only_dispatch(t).command_id == cid(0, 1)  # a is still compensated
    done = complete(t.execution).execution
    assert done.state is State.FAILED
    assert done.requires_manual_intervention is True
    assert records(done)[1].status is StepStatus.COMPENSATION_FAILED
    assert records(done)[1].last_failure == broken
    assert records(done)[0].status is StepStatus.COMPENSATED


def _completed() -> Execution:
    return complete(begin(workflow(step("a"))).execution).execution


def _failed() -> Execution:
    return fail(begin(workflow(step("a"))).execution).execution


def _compensated() -> Execution:
    ex = fail(complete(begin(workflow(undoable("a"), step("b"))).execution).execution).execution
    return complete(ex).execution


def _cancelled() -> Execution:
    return cancel(begin(workflow(step("a"))).execution).execution


@pytest.mark.parametrize(
    ("terminal", "state"),
    [
        (_completed, State.COMPLETED),
        (_failed, State.FAILED),
        (_compensated, State.COMPENSATED),
        (_cancelled, State.CANCELLED),
    ],
    ids=lambda v: getattr(v, "__name__", "").lstrip("_") or str(v),
)
def test_cancel_of_terminal_execution_is_invalid(
    terminal: Callable[[], Execution], state: State
) -> None:
    ex = terminal()
    assert ex.state is state

    with pytest.raises(InvalidTransition):
        apply(ex, CancelRequested("too late"), T0)


def test_second_cancel_leaves_execution_unchanged() -> None:
    ex = begin(workflow(undoable("a"), step("b"))).execution
    ex = cancel(complete(ex).execution).execution  # compensating a

    t = apply(ex, CancelRequested("again"), T0 + 1)

    assert t.changed is False
    assert t.execution is ex
    assert t.effects == () and t.history == ()


# -- sub-workflow steps ---------------------------------------------------------


def test_sub_workflow_step_starts_a_child_and_cancel_or_timeout_cancels_it() -> None:
    from multiagents_server.engine import CancelChild, StartChild, StepSpec, WorkflowSpec

    spec = WorkflowSpec(
        "parent", 1, (StepSpec("run", "", workflow="child", workflow_version=2, timeout_ms=1000),)
    )
    started = start(spec, transaction_id="tx-1", correlation_id="", input={"a": 1}, now_ms=0)
    children = [e for e in started.effects if isinstance(e, StartChild)]
    assert children == [StartChild("tx-1:x0:1", "child", 2, "tx-1.0.1", {"a": 1})]
    assert records(started.execution)[0].child_transaction_id == "tx-1.0.1"
    assert not [e for e in started.effects if isinstance(e, DispatchCommand)]

    cancelled = apply(started.execution, CancelRequested("stop"), 10)
    assert CancelChild("tx-1.0.1", "stop") in cancelled.effects

    timed_out = apply(started.execution, TimerFired("timeout:tx-1:x0:1"), 1000)
    assert timed_out.effects[0] == CancelChild("tx-1.0.1", "step 'run' timed out after 1000 ms")


@pytest.mark.parametrize(
    ("policy", "attempt"),
    [
        (RetryPolicy(10_000, initial_interval_ms=1000, backoff_coefficient=2.0,
                     max_interval_ms=60_000), 1_025),
        (RetryPolicy(10_000, initial_interval_ms=1000, backoff_coefficient=100.0,
                     max_interval_ms=60_000), 9_999),
    ],
)  # fmt: skip
def test_backoff_of_a_late_attempt_is_the_maximum_interval_without_overflow(
    policy: RetryPolicy, attempt: int
) -> None:
    assert policy.backoff_ms(attempt) == 60_000
