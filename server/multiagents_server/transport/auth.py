"""Bearer-token authentication with two roles: clients (WorkflowService,
MonitoringService) and workers (WorkerService). A role is protected when
tokens are configured for it; health and reflection stay open."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

WORKER_SERVICE = "/multiagents.v1.WorkerService/"
CLIENT_SERVICES = ("/multiagents.v1.WorkflowService/", "/multiagents.v1.MonitoringService/")


def _token(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def _allowed(token: str | None, tokens: tuple[str, ...]) -> bool:
    return token is not None and any(hmac.compare_digest(token, t) for t in tokens)


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Rejects calls without a valid token for their role: UNAUTHENTICATED,
    or PERMISSION_DENIED for a valid token of the other role."""

    def __init__(self, client_tokens: tuple[str, ...], worker_tokens: tuple[str, ...]) -> None:
        self._client_tokens = client_tokens
        self._worker_tokens = worker_tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = details.method
        if method.startswith(WORKER_SERVICE):
            tokens, role = self._worker_tokens, "worker"
        elif method.startswith(CLIENT_SERVICES):
            tokens, role = self._client_tokens, "client"
        else:
            return await continuation(details)
        token = _token(details.invocation_metadata)
        if not tokens or _allowed(token, tokens):
            return await continuation(details)
        handler = await continuation(details)
        other = self._client_tokens if role == "worker" else self._worker_tokens
        if _allowed(token, other):
            # Authenticated, but for the other role: say so.
            return _deny(
                handler,
                f"this token is not for the {role} role",
                grpc.StatusCode.PERMISSION_DENIED,
            )
        return _deny(handler, f"missing or invalid bearer token for the {role} role")


# How long a denied streaming call may take to send its first message.
FIRST_MESSAGE_TIMEOUT_S = 5.0


def _deny(
    handler: grpc.RpcMethodHandler,
    message: str,
    code: grpc.StatusCode = grpc.StatusCode.UNAUTHENTICATED,
) -> grpc.RpcMethodHandler:
    async def abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        if handler.request_streaming:
            # Take the first message before closing: a grpcio client still
            # sending it when the call ends reports INTERNAL ("Internal error
            # from Core") instead of this status, and a worker would retry.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_MESSAGE_TIMEOUT_S):
                    async for _ in request:
                        break
        await context.abort(code, message)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort, **kwargs)
    return grpc.unary_unary_rpc_method_handler(abort, **kwargs)
