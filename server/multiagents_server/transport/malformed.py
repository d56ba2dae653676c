"""Requests whose bytes are not the protobuf message they claim to be.

grpcio deserialises a request before any handler runs; a decoding error
there ends the call with UNKNOWN and a logged traceback. This interceptor
gives every handler a deserialiser that cannot fail: it hands the handler a
`Malformed` marker instead, and the wrapped handler answers INVALID_ARGUMENT
naming the message type (one log line, no traceback), whether the bad
message is a unary request or any message of a stream.

In a request stream the bad message ends the iteration with
`MalformedStream` after setting the call's status, rather than aborting:
the iterating task may not be the handler's (the worker stream is read by a
task of its own), where an abort raised into that task and logged a
traceback for every bad message (found by tests/integration/test_fuzz.py).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

log = logging.getLogger(__name__)

# This project's services; health and reflection are left as grpcio made them.
OWN_SERVICES = "/multiagents.v1."


@dataclass(frozen=True, slots=True)
class Malformed:
    """A request message that did not decode."""

    error: str


class MalformedStream(Exception):
    """A request stream carried a message that did not decode; the call's
    status is set (INVALID_ARGUMENT): end the handler normally."""


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Answers undecodable requests with INVALID_ARGUMENT."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if (
            handler is None
            or handler.request_deserializer is None
            or not details.method.startswith(OWN_SERVICES)
        ):
            return handler
        return _guard(handler, details.method)


def _guard(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    decode = handler.request_deserializer

    def deserialize(data: bytes) -> Any:
        try:
            return decode(data)
        except DecodeError as exc:
            return Malformed(str(exc))

    async def refuse(context: grpc.aio.ServicerContext, bad: Malformed) -> None:
        log.warning("malformed request to %s: %s", method, bad.error)
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid message: {bad.error}"
        )

    async def checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        async for request in requests:
            if isinstance(request, Malformed):
                log.warning("malformed request to %s: %s", method, request.error)
                context.set_code(grpc.StatusCode.INVALID_ARGUMENT)
                context.set_details(f"request: not a valid message: {request.error}")
                raise MalformedStream(request.error)
            yield request

    kwargs = {
        "request_deserializer": deserialize,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        inner = handler.stream_stream

        async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            with contextlib.suppress(MalformedStream):  # the status is set
                async for response in inner(checked(requests, context), context):
                    yield response

        return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)
    if handler.request_streaming:
        stream_unary = handler.stream_unary

        async def stream_in(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            with contextlib.suppress(MalformedStream):  # the status is set
                return await stream_unary(checked(requests, context), context)
            return None

        return grpc.stream_unary_rpc_method_handler(stream_in, **kwargs)
    if handler.response_streaming:
        unary_stream = handler.unary_stream

        async def stream_out(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if isinstance(request, Malformed):
                await refuse(context, request)
            async for response in unary_stream(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(stream_out, **kwargs)
    unary_unary = handler.unary_unary

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Malformed):
            await refuse(context, request)
        return await unary_unary(request, context)

    return grpc.unary_unary_rpc_method_handler(unary, **kwargs)
