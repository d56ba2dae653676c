"""The Python SDK's side of failure kinds: what a worker's exception becomes
on the wire, and how a client reads kinds it may not know."""

from __future__ import annotations

import pytest

from multiagents.errors import (
    MAX_CAUSE_DEPTH,
    FailureKind,
    WorkerExecutionError,
    describe_failure,
    failure_chain,
    failure_dict,
    to_failure,
)
from multiagents.v1 import common_pb2
from multiagents.worker import WorkerFunction


def _raise_chain(depth: int) -> BaseException:
    """An exception with `depth` causes below it, raised (so each has frames)."""
    try:
        try:
            if depth == 0:
                raise ConnectionError("level 0")
            raise _raise_chain(depth - 1)
        except BaseException as inner:
            raise WorkerExecutionError(f"level {depth + 1}") from inner
    except BaseException as outer:
        return outer


def test_a_workers_exception_chain_is_sent_as_causes_each_with_its_own_frames() -> None:
    failure = to_failure(_raise_chain(0))

    assert (failure.kind, failure.type, failure.message) == (
        common_pb2.FAILURE_KIND_APPLICATION, "WorkerExecutionError", "level 1"
    )  # fmt: skip
    assert (failure.cause.kind, failure.cause.type, failure.cause.message) == (
        common_pb2.FAILURE_KIND_APPLICATION, "ConnectionError", "level 0"
    )  # fmt: skip
    assert "ConnectionError" not in failure.stack_trace  # the cause has its own trace
    assert failure.cause.stack_trace.endswith("ConnectionError: level 0\n")
    assert not failure.cause.HasField("cause")


def test_a_chain_deeper_than_the_limit_is_cut() -> None:
    depth = 0
    f = to_failure(_raise_chain(12))
    while f.HasField("cause"):
        f, depth = f.cause, depth + 1
    assert depth == MAX_CAUSE_DEPTH


async def test_a_result_that_is_not_a_dict_is_an_invalid_result() -> None:
    returns_a_list = WorkerFunction("w", lambda ctx: [1])  # type: ignore[arg-type, return-value]
    with pytest.raises(Exception) as raised:
        await returns_a_list.execute({})
    failure = to_failure(raised.value)
    assert (failure.kind, failure.type, failure.non_retryable) == (
        common_pb2.FAILURE_KIND_INVALID_RESULT, "TypeError", True
    )  # fmt: skip


@pytest.mark.parametrize(
    ("wire", "kind"),
    [
        (common_pb2.FAILURE_KIND_UNSPECIFIED, FailureKind.APPLICATION),
        (common_pb2.FAILURE_KIND_CHILD_WORKFLOW_FAILED, FailureKind.CHILD_WORKFLOW_FAILED),
        (42, FailureKind.APPLICATION),  # newer than this SDK
    ],
)
def test_a_client_reads_every_kind_and_unknown_ones_as_application(
    wire: int, kind: FailureKind
) -> None:
    assert FailureKind.from_proto(wire) is kind


def test_every_kind_maps_to_its_own_wire_value_and_back() -> None:
    numbers = {kind.to_proto() for kind in FailureKind}
    assert len(numbers) == len(FailureKind) == len(common_pb2.FailureKind.values()) - 1
    assert all(FailureKind.from_proto(kind.to_proto()) is kind for kind in FailureKind)


def test_failure_dicts_carry_the_kind_and_the_cause_chain() -> None:
    wire = common_pb2.Failure(
        message="sub-workflow t.0.1 ended failed: boom",
        type="ChildWorkflowFailed",
        kind=common_pb2.FAILURE_KIND_CHILD_WORKFLOW_FAILED,
        cause=common_pb2.Failure(message="boom", type="WorkerExecutionError"),
    )
    as_dict = failure_dict(wire)
    assert [describe_failure(f) for f in failure_chain(as_dict)] == [
        "ChildWorkflowFailed [child_workflow_failed]: sub-workflow t.0.1 ended failed: boom",
        "WorkerExecutionError [application]: boom",
    ]
    assert as_dict["cause"]["cause"] is None
