"""Failures: the `Failure` value with its kind and cause chain, and the
failures the server itself produces (the wire `Failure` and `FailureKind`,
protos/multiagents/v1/common.proto).

`kind` classifies a failure by who produced it and what the platform does
with it; `type` stays the free-form error class that retry policies match.
Retry decisions do not read `kind`: they follow `non_retryable`, `type` and
the attempt count, which each constructor below sets as the proto documents.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class FailureKind(StrEnum):
    """The class of a failure (the wire `FailureKind`)."""

    APPLICATION = "application"
    TIMEOUT = "timeout"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    WORKER_LOST = "worker_lost"
    CANCELLED = "cancelled"
    INVALID_RESULT = "invalid_result"
    COMPENSATION_FAILED = "compensation_failed"
    CHILD_WORKFLOW_FAILED = "child_workflow_failed"
    BUDGET_EXCEEDED = "budget_exceeded"


# The kinds a worker may report; any other is recorded as APPLICATION.
WORKER_KINDS = frozenset(
    {
        FailureKind.APPLICATION,
        FailureKind.TIMEOUT,
        FailureKind.CANCELLED,
        FailureKind.INVALID_RESULT,
        FailureKind.WORKER_LOST,  # the answer to a resumed command it does not have
    }
)
# Causes kept below a failure (a worker's chain, nested sub-workflows).
MAX_CAUSE_DEPTH = 8


@dataclass(frozen=True, slots=True)
class Failure:
    """A structured failure (the wire `Failure` message)."""

    message: str
    type: str = "Error"
    non_retryable: bool = False
    stack_trace: str = ""
    kind: FailureKind = FailureKind.APPLICATION
    cause: Failure | None = None

    def chain(self) -> list[Failure]:
        """This failure, then its causes, outermost first."""
        found: list[Failure] = []
        f: Failure | None = self
        while f is not None:
            found.append(f)
            f = f.cause
        return found


def limit_causes(failure: Failure, depth: int = MAX_CAUSE_DEPTH) -> Failure:
    """`failure` with at most `depth` causes below it (deeper ones dropped)."""
    if failure.cause is None:
        return failure
    if depth <= 0:
        return replace(failure, cause=None)
    return replace(failure, cause=limit_causes(failure.cause, depth - 1))


def from_worker(failure: Failure) -> Failure:
    """A worker's failure as recorded: kinds a worker may not claim become
    APPLICATION (everywhere in the chain), the chain is cut at its limit."""
    cause = None if failure.cause is None else from_worker(failure.cause)
    kind = failure.kind if failure.kind in WORKER_KINDS else FailureKind.APPLICATION
    return limit_causes(replace(failure, kind=kind, cause=cause))


# -- failures the server produces --------------------------------------------------


def invalid_result(message: str, type: str) -> Failure:
    """A worker's result the server cannot accept (not an object, too deep, too large)."""
    return Failure(message, type, non_retryable=True, kind=FailureKind.INVALID_RESULT)


def worker_lost(message: str) -> Failure:
    """The session or server replica running the attempt went away (retried)."""
    return Failure(message, "WorkerLost", kind=FailureKind.WORKER_LOST)


def child_workflow_not_found(message: str) -> Failure:
    """A sub-workflow step whose child definition is missing (not retried)."""
    return Failure(
        message,
        "ChildWorkflowNotFound",
        non_retryable=True,
        kind=FailureKind.CHILD_WORKFLOW_FAILED,
    )


def child_workflow_failed(
    transaction_id: str, state: str, failure: Failure | None, cancel_reason: str
) -> Failure:
    """The parent step's failure when its child ended in `state` (failed,
    compensated or cancelled): the child's failure is the cause; a cancelled
    child without one has a CANCELLED cause with its reason. Retried unless
    the cause is non-retryable."""
    cause = failure
    if cause is None:
        cause = Failure(
            cancel_reason or "workflow cancelled",
            "Cancelled",
            non_retryable=True,
            kind=FailureKind.CANCELLED,
        )
    return limit_causes(
        Failure(
            f"sub-workflow {transaction_id} ended {state}: {cause.message}",
            "ChildWorkflowFailed",
            non_retryable=cause.non_retryable,
            kind=FailureKind.CHILD_WORKFLOW_FAILED,
            cause=cause,
        )
    )
