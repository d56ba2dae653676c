"""The SDK's exceptions: one root, mapped to the wire `Failure` and to gRPC
status codes.

In a worker, raise `WorkerExecutionError` for a failure worth retrying and
`ValueError` for bad input (never retried). Any other exception is treated as
retryable, as the seed's error-handling pattern expects.
"""

from __future__ import annotations

import traceback

import grpc

from multiagents.v1 import common_pb2


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


class ServerNotInstalledError(MultiAgentsError):
    """Starting a server (`multiagents serve`, `create_simple_framework`)
    needs the server package: `pip install 'multiagents[server]'`."""


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


def to_failure(exc: BaseException) -> common_pb2.Failure:
    """The wire Failure for an exception raised by a worker function."""
    stack = "".join(traceback.format_exception(exc))
    if isinstance(exc, ApplicationError):
        return common_pb2.Failure(
            message=str(exc), type=exc.type, non_retryable=exc.non_retryable, stack_trace=stack
        )
    non_retryable = isinstance(exc, ValueError) and not isinstance(exc, WorkerExecutionError)
    return common_pb2.Failure(
        message=str(exc) or type(exc).__name__,
        type=type(exc).__name__,
        non_retryable=non_retryable,
        stack_trace=stack,
    )
