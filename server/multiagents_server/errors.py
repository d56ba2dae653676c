"""Errors the server's service layer raises; transport maps them to gRPC
status codes in one place (`transport.errors`)."""

from __future__ import annotations


class ServiceError(Exception):
    """Root of the server's request errors."""


class NotFound(ServiceError):
    """Unknown transaction, workflow or version."""


class InvalidArgument(ServiceError):
    """Bad definition or payload; the message names the field."""


class AlreadyExists(ServiceError):
    """A different definition under the same name and version, or a reused request id."""


class FailedPrecondition(ServiceError):
    """Not allowed in the current state, e.g. cancelling a finished workflow."""


class ResourceExhausted(ServiceError):
    """A payload over the size limit, or an overloaded server."""


class Overloaded(ResourceExhausted):
    """Too many requests in flight: nothing was applied; retry after `retry_after_ms`."""

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class Unauthenticated(ServiceError):
    """Missing or invalid credentials."""
