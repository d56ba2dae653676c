"""Step output streams: latency from a worker's `emit` to a watcher, at a
total rate spread over concurrent streams (issue 13's target: p50 <= 5 ms at
2,000 chunks/s over 50 streams). A server replica, a worker process and
this process (the watchers) each run on their own; every chunk carries its
send time (one machine, one clock).

    python -m bench.output_streams [--streams 50] [--rate 2000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import multiagents
from multiagents import Client, WorkerRuntime, WorkflowBuilder, worker
from multiagents_server.embedded_redis import free_port

WORKER = "bench.chatty"


@worker(WORKER)
async def chatty(context: dict[str, Any]) -> dict[str, Any]:
    """Emits `count` chunks, one every `every_s` seconds, each "<send ns>;"."""
    count, every = int(context["count"]), float(context["every_s"])
    start = time.perf_counter()
    for i in range(count):
        delay = start + i * every - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await multiagents.emit(f"{time.time_ns()};")
    return {"sent": count}


async def serve_worker(address: str, streams: int) -> None:
    runtime = WorkerRuntime([chatty], servers=address, max_concurrency=streams)
    await runtime.run()


async def watch(client: Client, tx: str, latencies: list[float], after_ns: int) -> int:
    """Follow one stream; the latency of every chunk sent after `after_ns`
    (earlier ones may have been sent before this watcher attached)."""
    received = 0
    async for o in client.stream_output(tx):
        now = time.time_ns()
        for stamp in o.text.split(";")[:-1]:
            received += 1
            if int(stamp) >= after_ns:
                latencies.append((now - int(stamp)) / 1e6)
    return received


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.output_streams", description=__doc__)
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--rate", type=int, default=2000, help="chunks per second, in total")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--role", default="bench", help=argparse.SUPPRESS)
    parser.add_argument("--server", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "worker":
        await serve_worker(args.server, args.streams)
        return 0
    port = free_port()
    address = f"127.0.0.1:{port}"
    data_dir = tempfile.mkdtemp()
    env = {**os.environ, "MULTIAGENTS_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-m", "multiagents.cli", "serve", "--port", str(port),
         "--processes", "1", "--data-dir", data_dir], env=env,
    )  # fmt: skip
    workers = None
    try:
        async with Client(address) as client:
            for _ in range(300):
                try:
                    await client.list_workflow_definitions()
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            workers = subprocess.Popen(
                [sys.executable, "-m", "bench.output_streams", "--role", "worker",
                 "--server", address, "--streams", str(args.streams)], env=env,
            )  # fmt: skip
            wf = WorkflowBuilder("bench.out").add_step("s", chatty).build()
            await client.register_workflow(wf)
            per_stream = args.rate / args.streams
            count = int(per_stream * args.seconds)
            txs = [
                await client.execute_workflow(
                    "bench.out", {"count": count, "every_s": 1 / per_stream}
                )
                for _ in range(args.streams)
            ]
            latencies: list[float] = []
            started = time.perf_counter()
            warm = time.time_ns() + 1_000_000_000  # the first second warms up
            received = await asyncio.gather(*(watch(client, tx, latencies, warm) for tx in txs))
            elapsed = time.perf_counter() - started
    finally:
        for proc in (workers, server):
            if proc is not None:
                proc.terminate()
                proc.wait(30)
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    print(f"streams {args.streams}, target {args.rate} chunks/s for {args.seconds} s")
    print(f"chunks received {sum(received)} of {count * args.streams} "
          f"({sum(received) / elapsed:.0f}/s over {elapsed:.1f} s)")  # fmt: skip
    print(f"latency ms: p50 {q[49]:.2f}  p95 {q[94]:.2f}  p99 {q[98]:.2f}  max {latencies[-1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
