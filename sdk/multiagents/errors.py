"""The SDK's exceptions: one root, mapped to the wire `Failure` and to gRPC
status codes.

In a worker, raise `WorkerExecutionError` for a failure worth retrying and
`ValueError` for bad input (never retried). Any other exception is treated as
retryable, as the seed's error-handling pattern expects. An exception raised
`from` another one sends that one as the failure's cause (`__cause__`, up to
`MAX_CAUSE_DEPTH` levels).

On the client side, failures are dicts (`failure_dict`): message, type,
kind (a `FailureKind` value), non_retryable, stack_trace and cause (the same
dict shape, or None). `Client.result()` raises `WorkflowFailedError` for an
execution that did not complete.
"""

from __future__ import annotations

import traceback
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import grpc

from multiagents.v1 import common_pb2

if TYPE_CHECKING:
    from multiagents.client import WorkflowStatus

# Causes sent below a failure; the server keeps no more (common.proto).
MAX_CAUSE_DEPTH = 8


class FailureKind(StrEnum):
    """The class of a failure (the wire `FailureKind`, documented there):
    who produced it and what the platform does with it."""

    APPLICATION = "application"
    TIMEOUT = "timeout"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    WORKER_LOST = "worker_lost"
    CANCELLED = "cancelled"
    INVALID_RESULT = "invalid_result"
    COMPENSATION_FAILED = "compensation_failed"
    CHILD_WORKFLOW_FAILED = "child_workflow_failed"
    BUDGET_EXCEEDED = "budget_exceeded"

    @classmethod
    def from_proto(cls, value: int) -> FailureKind:
        """UNSPECIFIED (and a value newer than this SDK) read as APPLICATION."""
        return _KIND_FROM_PROTO.get(value, cls.APPLICATION)

    def to_proto(self) -> common_pb2.FailureKind:
        return _KIND_TO_PROTO[self]


_KIND_TO_PROTO: dict[FailureKind, common_pb2.FailureKind] = {
    kind: getattr(common_pb2, f"FAILURE_KIND_{kind.name}") for kind in FailureKind
}
_KIND_FROM_PROTO: dict[int, FailureKind] = {number: kind for kind, number in _KIND_TO_PROTO.items()}


class MultiAgentsError(Exception):
    """Root of every error raised by MultiAgents."""


class WorkerExecutionError(MultiAgentsError):
    """A worker failed in a way that is worth retrying (timeouts, outages)."""


class ApplicationError(MultiAgentsError):
    """A worker failure with an explicit type and retry decision."""

    def __init__(
        self, message: str, *, type: str = "ApplicationError", non_retryable: bool = False
    ):
        super().__init__(message)
        self.type = type
        self.non_retryable = non_retryable


class RateLimited(ApplicationError):
    """Raise it when a provider refused a call for too many requests (an
    HTTP 429): the attempt fails, retryable, with type "RateLimited", and
    the shared limits of its step back off (see Client.put_rate_limit)."""

    def __init__(self, message: str = "rate limited by the provider") -> None:
        super().__init__(message, type="RateLimited")


class WorkflowFailedError(MultiAgentsError):
    """An execution ended without completing (failed, compensated or
    cancelled); raised by `Client.result()`.

    `failure` is the failure that stopped it as a dict (kind, type, message,
    stack_trace, cause), or None for a cancelled execution, whose
    `cancel_reason` says why; `status` is the final `WorkflowStatus`.
    """

    def __init__(
        self,
        transaction_id: str,
        state: str,
        failure: dict[str, Any] | None,
        cancel_reason: str = "",
        status: WorkflowStatus | None = None,
    ) -> None:
        why = cancel_reason if failure is None else describe_failure(failure)
        super().__init__(f"workflow {transaction_id} ended {state}: {why}")
        self.transaction_id = transaction_id
        self.state = state
        self.failure = failure
        self.cancel_reason = cancel_reason
        self.status = status


class ServerNotInstalledError(MultiAgentsError):
    """Starting a server (`multiagents serve`, `create_simple_framework`)
    needs the server package: `pip install multiagents-server`."""


class RPCError(MultiAgentsError):
    """A call to the server failed; `code` is the gRPC status code."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFoundError(RPCError):
    """Unknown workflow, version or transaction."""


class InvalidArgumentError(RPCError):
    """The request was malformed; the message names the field."""


class AlreadyExistsError(RPCError):
    """A different definition (or request) already holds that name."""


class FailedPreconditionError(RPCError):
    """The operation is not allowed in the current state (e.g. cancel when finished)."""


class ResourceExhaustedError(RPCError):
    """A payload is over the server's size limit."""


class UnauthenticatedError(RPCError):
    """Missing or invalid credentials."""


class ServerUnavailableError(RPCError):
    """The server could not be reached."""


_BY_CODE: dict[grpc.StatusCode, type[RPCError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: UnauthenticatedError,
    grpc.StatusCode.UNAVAILABLE: ServerUnavailableError,
}


def from_rpc_error(error: grpc.aio.AioRpcError) -> RPCError:
    """The SDK exception for a failed gRPC call."""
    code = error.code()
    return _BY_CODE.get(code, RPCError)(code, error.details() or code.name)


class InvalidResultError(ApplicationError):
    """The worker's own result cannot be sent (not a dict, over the server's
    payload limit): a non-retryable failure of kind INVALID_RESULT."""

    def __init__(self, message: str, *, type: str) -> None:
        super().__init__(message, type=type, non_retryable=True)


def to_failure(exc: BaseException, depth: int = MAX_CAUSE_DEPTH) -> common_pb2.Failure:
    """The wire Failure for an exception raised by a worker function, with
    its `__cause__` chain (`raise ... from ...`) as causes."""
    # With a cause sent as its own level, this level's trace is its own frames.
    with_cause = exc.__cause__ is not None and depth > 0
    stack = "".join(traceback.format_exception(exc, chain=not with_cause))
    if isinstance(exc, ApplicationError):
        failure = common_pb2.Failure(
            message=str(exc), type=exc.type, non_retryable=exc.non_retryable, stack_trace=stack
        )
    else:
        non_retryable = isinstance(exc, ValueError) and not isinstance(exc, WorkerExecutionError)
        failure = common_pb2.Failure(
            message=str(exc) or type(exc).__name__,
            type=type(exc).__name__,
            non_retryable=non_retryable,
            stack_trace=stack,
        )
    invalid = isinstance(exc, InvalidResultError)
    failure.kind = (FailureKind.INVALID_RESULT if invalid else FailureKind.APPLICATION).to_proto()
    if with_cause:
        failure.cause.CopyFrom(to_failure(exc.__cause__, depth - 1))  # type: ignore[arg-type]
    return failure


def failure_dict(f: common_pb2.Failure) -> dict[str, Any]:
    """A wire Failure as a dict: message, type, kind, non_retryable,
    stack_trace, and cause (the same shape, or None)."""
    return {
        "message": f.message,
        "type": f.type,
        "kind": FailureKind.from_proto(f.kind).value,
        "non_retryable": f.non_retryable,
        "stack_trace": f.stack_trace,
        "cause": failure_dict(f.cause) if f.HasField("cause") else None,
    }


def failure_chain(failure: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A failure dict and its causes, outermost first."""
    chain = []
    while failure is not None:
        chain.append(failure)
        failure = failure.get("cause")
    return chain


def describe_failure(failure: dict[str, Any]) -> str:
    """One line: `Type [kind]: message`."""
    return f"{failure['type']} [{failure.get('kind', 'application')}]: {failure['message']}"
