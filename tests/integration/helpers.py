"""Helpers of the integration tests: workers served over real gRPC."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from multiagents import Client, WorkerFunction, WorkerRuntime
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
