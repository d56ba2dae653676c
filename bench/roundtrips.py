"""Counts the Redis round trips and gRPC messages of one workflow.

    python -m bench.roundtrips [--sequential 50] [--burst 1000]

Runs a server, a worker runtime and a client in this process (the same code
as `multiagents serve` and `multiagents worker`) and counts, per workflow of
the 3-step benchmark workflow:

- Redis round trips: writes of a request (one command or one pipeline) to a
  Redis connection, attributed to the `Store` method that made them; and the
  Redis commands they carried;
- gRPC messages on the worker session (each way) and on the client's calls.

`--sequential` runs workflows one at a time (the budget of one step, no
batching); `--burst` submits many at once (what batching makes of it).
Background loops (timers, liveness, the event feed) are reported apart.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from redis.asyncio import connection as redis_connection

from bench.ma_workers import step1, step2, step3
from multiagents import Client, WorkerRuntime
from multiagents.workflow import WorkflowBuilder
from multiagents_server.app import Server
from multiagents_server.config import ServerConfig
from multiagents_server.embedded_redis import EmbeddedRedis
from multiagents_server.store import autopipeline
from multiagents_server.transport import worker_service

WORKFLOW = "bench3"
BACKGROUND = {
    "claim_timers", "renew_lease", "drop_lease", "live_replicas",
    "forget_dead_replicas", "known_workers", "consumers", "sessions_of", "run",
    "ensure_group", "prune_index", "prune_expired_index", "_run",
    "pending_at", "pending_holders", "claim",
}  # fmt: skip


class Counter:
    """Round trips and commands by Store method, and gRPC messages by kind."""

    def __init__(self) -> None:
        # Store operations by method: one round trip each when sent alone;
        # those sent through the auto-pipeline share its round trips.
        self.ops: collections.Counter[str] = collections.Counter()
        self.auto_trips = 0
        self.trips: collections.Counter[str] = collections.Counter()
        self.commands: collections.Counter[str] = collections.Counter()
        self.grpc: collections.Counter[str] = collections.Counter()
        self.on = False

    def reset(self) -> None:
        self.ops.clear()
        self.auto_trips = 0
        self.trips.clear()
        self.commands.clear()
        self.grpc.clear()


COUNTER = Counter()


def _caller() -> str:
    """The Store (or other server) method that is sending to Redis."""
    frame = sys._getframe(2)
    fallback = "?"
    while frame is not None:
        name = frame.f_code.co_filename
        if name.endswith("store/store.py"):
            return frame.f_code.co_name
        if fallback == "?" and "multiagents_server" in name:
            fallback = frame.f_code.co_name
        frame = frame.f_back  # type: ignore[assignment]
    return fallback


@contextmanager
def instrumented() -> Iterator[None]:
    conn = redis_connection.AbstractConnection
    send, pack = conn.send_packed_command, conn.pack_command
    coalesce, handle = worker_service._coalesce, worker_service.WorkerService._handle
    auto = autopipeline.AutoPipeline
    auto_send, auto_run = auto.send, auto._run

    async def counted_auto_send(self: Any, calls: Any) -> Any:
        if COUNTER.on:
            name = _caller()
            COUNTER.ops[name] += 1
            COUNTER.commands[name] += len(calls)
        return await auto_send(self, calls)

    async def counted_auto_run(self: Any, batch: Any) -> None:
        if COUNTER.on:
            COUNTER.auto_trips += 1
        await auto_run(self, batch)

    async def counted_send(self: Any, command: Any, check_health: bool = True) -> None:
        if COUNTER.on and not _in_auto_run():
            name = _caller()
            COUNTER.ops[name] += 1
            COUNTER.trips[name] += 1
        await send(self, command, check_health)

    def counted_pack(self: Any, *args: Any) -> Any:
        if COUNTER.on and not _in_auto_run():
            COUNTER.commands[_caller()] += 1
        return pack(self, *args)

    def counted_coalesce(message: Any, queue: Any) -> Any:
        out = coalesce(message, queue)
        if COUNTER.on:
            COUNTER.grpc[f"server->worker {out.WhichOneof('message')}"] += 1
        return out

    def counted_handle(self: Any, session: Any, output: Any, message: Any) -> Any:
        if COUNTER.on:
            COUNTER.grpc[f"worker->server {message.WhichOneof('message')}"] += 1
        return handle(self, session, output, message)

    conn.send_packed_command = counted_send  # type: ignore[method-assign]
    conn.pack_command = counted_pack  # type: ignore[method-assign]
    worker_service._coalesce = counted_coalesce
    worker_service.WorkerService._handle = counted_handle  # type: ignore[method-assign]
    auto.send = counted_auto_send  # type: ignore[method-assign]
    auto._run = counted_auto_run  # type: ignore[method-assign]
    try:
        yield
    finally:
        conn.send_packed_command = send  # type: ignore[method-assign]
        conn.pack_command = pack  # type: ignore[method-assign]
        worker_service._coalesce = coalesce
        worker_service.WorkerService._handle = handle  # type: ignore[method-assign]
        auto.send = auto_send  # type: ignore[method-assign]
        auto._run = auto_run  # type: ignore[method-assign]


def _in_auto_run() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "_run" and frame.f_code.co_filename.endswith("autopipeline.py"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


async def run_one(client: Client, i: int) -> None:
    tx = await client.execute_workflow(WORKFLOW, {"n": i})
    COUNTER.grpc["client ExecuteWorkflow"] += 1
    async for update in client.watch(tx):
        COUNTER.grpc["client WatchWorkflow message"] += 1
        if update.terminal:
            break
    await client.get_status(tx)
    COUNTER.grpc["client GetStatus"] += 1


def table(title: str, n: int) -> str:
    lines = [f"== {title}: per workflow (3 steps), averaged over {n}"]
    path = {k: v for k, v in COUNTER.ops.items() if k not in BACKGROUND}
    background = {k: v for k, v in COUNTER.trips.items() if k in BACKGROUND}
    direct = sum(v for k, v in COUNTER.trips.items() if k not in BACKGROUND)
    total = direct + COUNTER.auto_trips
    lines.append(
        f"redis round trips on the workflow's path: {total / n:.2f} ({total / n / 3:.2f} per step)"
        f" = {direct / n:.2f} sent alone + {COUNTER.auto_trips / n:.2f} shared pipelines"
    )
    lines.append("  store operation          ops (= round trips if sent alone)  commands")
    for k, v in sorted(path.items(), key=lambda kv: -kv[1]):
        alone = "alone" if COUNTER.trips.get(k) else "auto-pipelined"
        lines.append(f"  {k:24} {v / n:6.2f} {alone:>28}  {COUNTER.commands[k] / n:6.2f}")
    cmds = sum(v for k, v in COUNTER.commands.items() if k not in BACKGROUND)
    lines.append(
        f"redis commands on the workflow's path: {cmds / n:.2f} ({cmds / n / 3:.2f} per step)"
    )
    if background:
        lines.append(
            "background loops (independent of the workflows): "
            + ", ".join(f"{k} {v}" for k, v in sorted(background.items()))
        )
    lines.append("grpc messages:")
    for k, v in sorted(COUNTER.grpc.items()):
        lines.append(f"  {k:36} {v / n:6.2f}")
    return "\n".join(lines)


async def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.roundtrips")
    parser.add_argument("--sequential", type=int, default=50)
    parser.add_argument("--burst", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ma-rt-") as tmp, instrumented():
        redis = EmbeddedRedis(Path(tmp) / "redis")
        await redis.start()
        server = Server(ServerConfig(port=0, redis_url=redis.url, log_level="WARNING"))
        await server.start()
        runtime = WorkerRuntime([step1, step2, step3], servers=server.address, max_concurrency=1000)
        await runtime.start()
        try:
            async with Client(server.address) as client:
                wf = WorkflowBuilder(WORKFLOW)
                wf.add_step("one", "bench_step1").add_step("two", "bench_step2")
                await client.register_workflow(wf.add_step("three", "bench_step3").build())
                for i in range(5):
                    await run_one(client, i)
                COUNTER.reset()
                COUNTER.on = True
                for i in range(args.sequential):
                    await run_one(client, i)
                COUNTER.on = False
                print(table("one workflow at a time", args.sequential), flush=True)
                COUNTER.reset()
                COUNTER.on = True
                limit = asyncio.Semaphore(500)

                async def bounded(i: int) -> None:
                    async with limit:
                        await run_one(client, i)

                await asyncio.gather(*(bounded(i) for i in range(args.burst)))
                COUNTER.on = False
                print(table(f"{args.burst} submitted at once", args.burst), flush=True)
        finally:
            await runtime.stop()
            await server.stop(grace_s=1)
            await redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
