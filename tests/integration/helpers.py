"""Helpers of the integration tests: workers served over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc

from multiagents import Client, WorkerFunction, WorkerRuntime
from multiagents.v1 import worker_service_pb2 as wpb
from multiagents.v1 import worker_service_pb2_grpc
from multiagents.workflow import Workflow
from multiagents_server.app import Server
from multiagents_server.config import ServerConfig


@contextlib.asynccontextmanager
async def serving(
    server: Server, *workers: WorkerFunction, concurrency: int = 8
) -> AsyncIterator[WorkerRuntime]:
    """A worker runtime connected to `server` for the duration of the block."""
    runtime = WorkerRuntime(
        workers, servers=server.address, max_concurrency=concurrency, drain_timeout=5
    )
    await runtime.start(timeout=10)
    try:
        yield runtime
    finally:
        await runtime.stop()


async def run(client: Client, workflow: Workflow, data: dict[str, Any], timeout: float = 20) -> Any:
    """Register, execute and wait; returns the final WorkflowStatus."""
    await client.register_workflow(workflow)
    tx = await client.execute_workflow(workflow.name, data)
    return await client.wait(tx, timeout=timeout)


async def kinds(client: Client, tx: str) -> list[tuple[str, str]]:
    """(event kind, step) of every history event of one execution."""
    out = []
    for event in await client.get_history(tx):
        kind = event.WhichOneof("event")
        body = getattr(event, kind)
        match kind:
            case "status":
                out.append((kind, body.current_step))
            case "node":
                out.append((kind, f"{body.path} {body.what}"))
            case "signal":
                out.append((kind, body.signal))
            case _:
                out.append((kind, body.step))
    return out


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Wait until `predicate()` (sync or async) is true, failing after `timeout`."""
    async with asyncio.timeout(timeout):
        while True:
            value = predicate()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            await asyncio.sleep(interval)


def make_config(redis_url: str, **overrides: object) -> ServerConfig:
    """A config for a test server: free port, own key prefix, fast timings."""
    base = ServerConfig(
        port=0,
        redis_url=redis_url,
        key_prefix=f"t{uuid.uuid4().hex[:8]}",
        heartbeat_interval_ms=300,
        replica_lease_ms=1500,
        drain_timeout_ms=2000,
    )
    return base.replace(**overrides)


class RawWorker:
    """A worker session driven message by message over the real gRPC stream,
    for tests of what the SDK runtimes would never send."""

    def __init__(self, channel: grpc.aio.Channel, hello: wpb.Hello) -> None:
        self._outgoing: asyncio.Queue[wpb.ConnectRequest | None] = asyncio.Queue()
        self._outgoing.put_nowait(wpb.ConnectRequest(hello=hello))
        self.call = worker_service_pb2_grpc.WorkerServiceStub(channel).Connect(self._messages())
        self.welcome = wpb.Welcome()

    @classmethod
    async def connect(cls, channel: grpc.aio.Channel, hello: wpb.Hello) -> RawWorker:
        """Open the session; returns once the Welcome is read."""
        raw = cls(channel, hello)
        first = await raw.read()
        assert first.WhichOneof("message") == "welcome", first
        raw.welcome = first.welcome
        return raw

    async def _messages(self) -> AsyncIterator[wpb.ConnectRequest]:
        while (message := await self._outgoing.get()) is not None:
            yield message

    def send(self, message: wpb.ConnectRequest) -> None:
        self._outgoing.put_nowait(message)

    def close_sending(self) -> None:
        """End the request stream (half-close), as a worker that exits does."""
        self._outgoing.put_nowait(None)

    async def read(self, timeout: float = 10.0) -> wpb.ConnectResponse:
        async with asyncio.timeout(timeout):
            message = await self.call.read()
        assert message is not grpc.aio.EOF, "the server ended the session"
        return message  # type: ignore[return-value]

    async def commands(self, count: int, timeout: float = 10.0) -> list[wpb.Command]:
        """The next `count` commands sent to this session (single or batched)."""
        found: list[wpb.Command] = []
        while len(found) < count:
            message = await self.read(timeout)
            kind = message.WhichOneof("message")
            if kind == "command":
                found.append(message.command)
            elif kind == "commands":
                found.extend(message.commands.commands)
        return found


class TcpProxy:
    """A TCP proxy on a free local port to `upstream` ("host:port"), whose
    connections can be cut at once, as a network failure would."""

    def __init__(self, upstream: str) -> None:
        host, _, port = upstream.rpartition(":")
        self._upstream = (host, int(port))
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self.address = ""

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.address = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        await self._server.wait_closed()

    @property
    def connections(self) -> int:
        """Connections open through the proxy (each counted on both sides)."""
        return len(self._links) // 2

    def cut(self) -> None:
        """Reset every open connection, both sides."""
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._links.discard(writer)
            writer.transport.abort()


class SessionProxy:
    """A WorkerService proxy on a free local port to `upstream`, at the gRPC
    message level, that can lose one message as a stream ending at the wrong
    moment does: `lose_answer(name)` drops the next answer to a command of
    worker `name` on its way to the server, `lose_command(name)` the next
    such command on its way to the worker; either way the session's stream
    is then broken on both sides (the server sees the worker go, the worker
    gets UNAVAILABLE and reconnects through the proxy)."""

    def __init__(self, upstream: str) -> None:
        self._upstream = upstream
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None
        self._lose_answer: set[str] = set()
        self._lose_command: set[str] = set()
        self._names: dict[str, str] = {}  # command id -> worker name
        self.lost: list[str] = []  # ids whose command or answer was lost
        self.address = ""

    def lose_answer(self, worker_name: str) -> None:
        self._lose_answer.add(worker_name)

    def lose_command(self, worker_name: str) -> None:
        self._lose_command.add(worker_name)

    async def __aenter__(self) -> SessionProxy:
        self._channel = grpc.aio.insecure_channel(self._upstream)
        handler = grpc.method_handlers_generic_handler(
            "multiagents.v1.WorkerService",
            {
                "Connect": grpc.stream_stream_rpc_method_handler(
                    self._connect,
                    request_deserializer=wpb.ConnectRequest.FromString,
                    response_serializer=wpb.ConnectResponse.SerializeToString,
                )
            },
        )
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((handler,))
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._channel is not None
        await self._server.stop(grace=None)
        await self._channel.close()

    def _losing_answer(self, message: wpb.ConnectRequest) -> bool:
        kind = message.WhichOneof("message")
        if kind in ("result", "failure"):
            ids = [getattr(message, kind).command_id]
        elif kind == "outcomes":
            ids = [
                getattr(o, o.WhichOneof("outcome")).command_id for o in message.outcomes.outcomes
            ]
        else:
            return False
        for cid in ids:
            name = self._names.get(cid, "")
            if name in self._lose_answer:
                self._lose_answer.discard(name)
                self.lost.append(cid)
                return True
        return False

    def _without_lost_command(self, message: wpb.ConnectResponse) -> bool:
        """Remove from `message` the command to lose, if any (True then)."""
        kind = message.WhichOneof("message")
        commands = (
            [message.command] if kind == "command"
            else list(message.commands.commands) if kind == "commands" else []
        )  # fmt: skip
        for command in commands:
            self._names[command.command_id] = command.worker_name
            if command.worker_name in self._lose_command:
                self._lose_command.discard(command.worker_name)
                self.lost.append(command.command_id)
                kept = [c for c in commands if c is not command]
                message.ClearField("message")
                if kept:
                    message.commands.commands.extend(kept)
                return True
        return False

    async def _connect(
        self, requests: AsyncIterator[wpb.ConnectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[wpb.ConnectResponse]:
        assert self._channel is not None
        upstream = worker_service_pb2_grpc.WorkerServiceStub(self._channel).Connect(
            metadata=context.invocation_metadata()
        )
        broken = asyncio.Event()

        async def forward_requests() -> None:
            async for message in requests:
                if self._losing_answer(message):
                    broken.set()
                    return
                await upstream.write(message)
            await upstream.done_writing()

        pump = asyncio.create_task(forward_requests())
        try:
            while not broken.is_set():
                read = asyncio.ensure_future(upstream.read())
                lost = asyncio.ensure_future(broken.wait())
                await asyncio.wait({read, lost}, return_when=asyncio.FIRST_COMPLETED)
                lost.cancel()
                if not read.done():
                    read.cancel()
                    break
                message = read.result()
                if message is grpc.aio.EOF:
                    code = await upstream.code()
                    if code != grpc.StatusCode.OK:
                        await context.abort(code, await upstream.details() or "")
                    return
                if self._without_lost_command(message):
                    broken.set()
                    if message.WhichOneof("message") is None:
                        break
                yield message
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            upstream.cancel()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost (test proxy)")
