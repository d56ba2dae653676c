"""The one place where service-layer exceptions become gRPC status codes."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from multiagents_server import errors
from multiagents_server.store import StoreError, StoreUnavailable

log = logging.getLogger(__name__)

STATUS = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
}

R = TypeVar("R")
# gRPC's own name for a server's retry hint (used by gRPC's retry support too).
PUSHBACK_KEY = "grpc-retry-pushback-ms"


def status_of(exc: errors.ServiceError) -> grpc.StatusCode:
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return grpc.StatusCode.INTERNAL


async def _abort(context: grpc.aio.ServicerContext, exc: errors.ServiceError) -> None:
    trailers: tuple[tuple[str, str], ...] = ()
    if isinstance(exc, errors.Overloaded):
        trailers = ((PUSHBACK_KEY, str(exc.retry_after_ms)),)
    await context.abort(status_of(exc), str(exc), trailing_metadata=trailers)


def unary(
    method: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[R]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[R]]:
    """Map ServiceError raised by a unary method to its status code."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await method(self, request, context)
        except errors.ServiceError as exc:
            await _abort(context, exc)
            raise  # unreachable: abort raises
        except StoreError as exc:
            await context.abort(*_storage_status(exc))
            raise

    return wrapper


def streaming(
    method: Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[R]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[R]]:
    """Map ServiceError raised by a server-streaming method to its status code."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[R]:
        try:
            async for item in method(self, request, context):
                yield item
        except errors.ServiceError as exc:
            await _abort(context, exc)
        except StoreError as exc:
            await context.abort(*_storage_status(exc))

    return wrapper


def _storage_status(exc: StoreError) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, StoreUnavailable):
        return grpc.StatusCode.UNAVAILABLE, f"storage unavailable, retry: {exc}"
    log.error("storage error", exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"storage error: {exc}"
