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
