"""Failover time of a server replica, and pauses that must not count as deaths.

    python -m bench.failover [--runs 5] [--pause 1.0]

Two replicas share one embedded Redis, with the default lease
(`replica_lease_ms`). A worker connected only to replica A runs a long step.

- kill: A is SIGKILLed; measured is the time until B has fenced A off and
  failed A's in-flight command as `WorkerLost` (its history shows it), that
  is until the work resumes elsewhere.
- pause: A is SIGSTOPped for `--pause` seconds (a GC-like pause) and
  continued; counted are false takeovers (a `WorkerLost` for a replica that
  was only paused). The step must complete on its first attempt.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from multiagents import Client, WorkerRuntime, WorkflowBuilder, worker
from multiagents_server.app import Server
from multiagents_server.config import ServerConfig
from multiagents_server.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
STEP_S = 6.0


@worker("failover.long")
async def long_step(context: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(float(context["sleep"]))
    return {"pid": os.getpid()}


def replica(redis_url: str, prefix: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "multiagents.cli", "serve", "--processes", "1", "--port",
         str(port), "--redis-url", redis_url, "--key-prefix", prefix, "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    process.stdout.readline()  # "listening on ..."
    return process, f"127.0.0.1:{port}"


async def lost(client: Client, tx: str) -> bool:
    return any(
        e.HasField("error") and e.error.error.type == "WorkerLost"
        for e in await client.get_history(tx)
    )


async def one(redis: EmbeddedRedis, run: int, mode: str, pause: float) -> float | bool:
    prefix = f"failover{run}{mode}"
    process, address = replica(redis.url, prefix)
    config = ServerConfig(port=0, redis_url=redis.url, key_prefix=prefix, log_level="WARNING")
    try:
        async with Server(config) as b, Client(b.address) as client:
            await client.register_workflow(
                WorkflowBuilder("failover").add_step("s", long_step).build()
            )
            runtime = WorkerRuntime([long_step], servers=address)
            await runtime.start(timeout=20)
            try:
                tx = await client.execute_workflow("failover", {"sleep": STEP_S})
                while (await client.get_status(tx)).steps[0].status != "running":
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.5)
                if mode == "kill":
                    process.send_signal(signal.SIGKILL)
                    t0 = time.perf_counter()
                    while not await lost(client, tx):
                        await asyncio.sleep(0.02)
                    return time.perf_counter() - t0
                process.send_signal(signal.SIGSTOP)
                await asyncio.sleep(pause)
                process.send_signal(signal.SIGCONT)
                status = await client.wait(tx, timeout=60)
                return await lost(client, tx) or status.steps[0].attempts != 1
            finally:
                await runtime.stop()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.kill()
        process.wait()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pause", type=float, default=1.0)
    args = parser.parse_args(argv)
    lease = ServerConfig().replica_lease_ms
    async with EmbeddedRedis(Path(tempfile.mkdtemp()) / "redis") as redis:
        times = [await one(redis, i, "kill", 0) for i in range(args.runs)]
        false = [await one(redis, i, "pause", args.pause) for i in range(args.runs)]
    seconds = [float(t) for t in times]
    print(f"replica_lease_ms {lease} (default); {os.cpu_count()} cores")
    print(
        f"failover after SIGKILL: median {statistics.median(seconds):.2f} s, "
        f"max {max(seconds):.2f} s over {args.runs} runs (target <= 3 s)"
    )
    print(
        f"false takeovers after a {args.pause:g} s SIGSTOP: {sum(map(bool, false))} of {args.runs}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
