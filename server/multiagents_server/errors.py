"""Errors the server's service layer raises; transport maps them to gRPC
status codes in one place (`transport.errors`)."""

from __future__ import annotations


class ServiceError(Exception):
    """Root of the server's request errors."""


class NotFound(ServiceError):  # noqa: N818 - names mirror the gRPC codes they map to
    """Unknown transaction, workflow or version."""


class InvalidArgument(ServiceError):  # noqa: N818
    """Bad definition or payload; the message names the field."""


class AlreadyExists(ServiceError):  # noqa: N818
    """A different definition under the same name and version, or a reused request id."""


class FailedPrecondition(ServiceError):  # noqa: N818
    """Not allowed in the current state, e.g. cancelling a finished workflow."""


class ResourceExhausted(ServiceError):  # noqa: N818
    """A payload over the size limit."""


class Unauthenticated(ServiceError):  # noqa: N818
    """Missing or invalid credentials."""
