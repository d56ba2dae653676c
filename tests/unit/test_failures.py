"""Failure kinds and cause chains: what the server produces, what it keeps of
a worker's failure, and that both survive storage and the wire."""

from __future__ import annotations

import json

import pytest

from multiagents.v1 import common_pb2
from multiagents_server import convert
from multiagents_server.engine import (
    DispatchCommand,
    Execution,
    Failure,
    FailureKind,
    RetryPolicy,
    StepCompleted,
    StepFailed,
    StepSpec,
    TimerFired,
    WorkflowSpec,
    apply,
    start,
)
from multiagents_server.engine import failures as engine_failures
from multiagents_server.engine.codec import failure_from_json, failure_to_json

T0 = 1_700_000_000_000


def _chain(depth: int) -> common_pb2.Failure:
    """A worker's failure with `depth` causes below it, named f0 (top) .. f<depth>."""
    f = common_pb2.Failure(message=f"f{depth}", type="E")
    for level in reversed(range(depth)):
        f = common_pb2.Failure(message=f"f{level}", type="E", cause=f)
    return f


@pytest.mark.parametrize(
    ("sent", "recorded"),
    [
        (common_pb2.FAILURE_KIND_UNSPECIFIED, FailureKind.APPLICATION),
        (common_pb2.FAILURE_KIND_APPLICATION, FailureKind.APPLICATION),
        (common_pb2.FAILURE_KIND_CANCELLED, FailureKind.CANCELLED),
        (common_pb2.FAILURE_KIND_INVALID_RESULT, FailureKind.INVALID_RESULT),
        (common_pb2.FAILURE_KIND_TIMEOUT, FailureKind.TIMEOUT),  # stopped at its deadline
        (common_pb2.FAILURE_KIND_HEARTBEAT_TIMEOUT, FailureKind.APPLICATION),
        (common_pb2.FAILURE_KIND_WORKER_LOST, FailureKind.WORKER_LOST),  # a Resumed id it lacks
        (common_pb2.FAILURE_KIND_CHILD_WORKFLOW_FAILED, FailureKind.APPLICATION),
        (99, FailureKind.APPLICATION),  # a kind from a newer protocol
    ],
)
def test_a_worker_may_only_claim_worker_kinds(sent: int, recorded: FailureKind) -> None:
    wire = common_pb2.Failure(message="m", type="StepTimeout", kind=sent)  # type: ignore[arg-type]
    wire.cause.CopyFrom(
        common_pb2.Failure(message="inner", kind=common_pb2.FAILURE_KIND_BUDGET_EXCEEDED)
    )

    failure = convert.failure_from_proto(wire)

    assert (failure.kind, failure.type, failure.message) == (recorded, "StepTimeout", "m")
    assert failure.cause is not None
    assert failure.cause.kind is FailureKind.APPLICATION  # causes are judged alike
    assert (failure.cause.message, failure.cause.type) == ("inner", "Error")


def test_a_workers_cause_chain_is_cut_below_eight_levels_and_each_trace_trimmed() -> None:
    wire = _chain(12)
    wire.cause.stack_trace = "x" * 10_000 + "END"

    chain = convert.failure_from_proto(wire).chain()

    assert [f.message for f in chain] == [f"f{i}" for i in range(9)]  # the top and 8 causes
    assert chain[1].stack_trace.startswith("...(trimmed)\n")
    assert chain[1].stack_trace.endswith("END")
    assert len(chain[1].stack_trace.encode()) == convert.MAX_STACK_TRACE_BYTES


def test_kind_and_cause_survive_storage_and_the_wire() -> None:
    failure = engine_failures.child_workflow_failed(
        "tx.0.1",
        "failed",
        Failure("no stock", "OutOfStock", non_retryable=True, stack_trace="trace"),
        "",
    )

    assert failure_from_json(json.loads(json.dumps(failure_to_json(failure)))) == failure
    wire = convert.failure_to_proto(failure)
    assert wire is not None
    assert wire.kind == common_pb2.FAILURE_KIND_CHILD_WORKFLOW_FAILED
    assert (wire.cause.kind, wire.cause.type) == (common_pb2.FAILURE_KIND_APPLICATION, "OutOfStock")
    assert not wire.cause.HasField("cause")


def test_a_failure_stored_before_kinds_reads_as_an_application_failure() -> None:
    stored = {"message": "m", "type": "ValueError", "non_retryable": True, "stack_trace": ""}
    assert failure_from_json(stored) == Failure("m", "ValueError", True, "")


@pytest.mark.parametrize(
    ("child_failure", "cancel_reason", "cause", "non_retryable"),
    [
        (
            Failure("boom", "WorkerExecutionError"),
            "",
            Failure("boom", "WorkerExecutionError"),
            False,
        ),
        (
            Failure("bad", "ValueError", non_retryable=True),
            "",
            Failure("bad", "ValueError", non_retryable=True),
            True,
        ),
        (
            None,
            "operator said so",
            Failure("operator said so", "Cancelled", True, kind=FailureKind.CANCELLED),
            True,
        ),
    ],
    ids=["retryable-cause", "non-retryable-cause", "cancelled-child"],
)
def test_a_sub_workflow_failure_has_the_childs_failure_as_cause(
    child_failure: Failure | None, cancel_reason: str, cause: Failure, non_retryable: bool
) -> None:
    state = "cancelled" if child_failure is None else "compensated"
    failure = engine_failures.child_workflow_failed("tx.0.1", state, child_failure, cancel_reason)

    assert failure.kind is FailureKind.CHILD_WORKFLOW_FAILED
    assert failure.type == "ChildWorkflowFailed"
    assert failure.message == f"sub-workflow tx.0.1 ended {state}: {cause.message}"
    assert failure.cause == cause
    assert failure.non_retryable is non_retryable


def _running(spec: WorkflowSpec) -> tuple[Execution, str]:
    """A started execution and the command id of its first step."""
    t = start(spec, transaction_id="tx", correlation_id="", input={}, now_ms=T0)
    (cid,) = [e.command_id for e in t.effects if isinstance(e, DispatchCommand)]
    return t.execution, cid


@pytest.mark.parametrize(
    ("timer", "kind", "type"),
    [
        ("timeout", FailureKind.TIMEOUT, "StepTimeout"),
        ("heartbeat", FailureKind.HEARTBEAT_TIMEOUT, "HeartbeatTimeout"),
    ],
)
def test_timeouts_are_failures_of_their_own_kind(timer: str, kind: FailureKind, type: str) -> None:
    spec = WorkflowSpec("w", 1, (StepSpec("s", "w", heartbeat_timeout_ms=1000),))
    ex, cid = _running(spec)

    t = apply(ex, TimerFired(f"{timer}:{cid}"), T0 + 2000)

    failure = t.execution.node(0).last_failure
    assert failure is not None
    assert (failure.kind, failure.type, failure.non_retryable) == (kind, type, False)


def test_a_compensation_that_reports_it_could_not_undo_is_compensation_failed() -> None:
    spec = WorkflowSpec(
        "w",
        1,
        (
            StepSpec("a", "do", compensation="undo"),
            StepSpec("b", "fail", retry=RetryPolicy(max_attempts=1)),
        ),
    )
    ex, cid = _running(spec)
    ex = apply(ex, StepCompleted(cid, {}), T0).execution
    ex = apply(ex, StepFailed("tx:x1:1", Failure("boom", "WorkerExecutionError")), T0).execution
    compensation = "tx:c0:1"

    t = apply(ex, StepCompleted(compensation, {"requires_manual_intervention": True}), T0)

    failure = t.execution.node(0).last_failure
    assert failure is not None
    assert (failure.kind, failure.type, failure.non_retryable) == (
        FailureKind.COMPENSATION_FAILED, "CompensationFailed", True
    )  # fmt: skip
