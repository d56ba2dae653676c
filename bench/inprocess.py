"""Latency of one 3-step workflow with the server, a worker runtime and the
client in this one process (one event loop): the floor of the platform's
latency on this machine, without process hops, and how much of it is the
submit.

    python -m bench.inprocess [--runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from typing import Any

from multiagents import Client, WorkerRuntime, WorkflowBuilder, worker
from multiagents_server.app import Server
from multiagents_server.config import ServerConfig
from multiagents_server.embedded_redis import free_port


@worker("inprocess.a")
async def step_a(context: dict[str, Any]) -> dict[str, Any]:
    return {"a": 1}


@worker("inprocess.b")
async def step_b(context: dict[str, Any]) -> dict[str, Any]:
    return {"b": 1}


@worker("inprocess.c")
async def step_c(context: dict[str, Any]) -> dict[str, Any]:
    return {"c": 1}


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)
    config = ServerConfig(port=free_port(), data_dir=tempfile.mkdtemp(), log_level="WARNING")
    async with Server(config) as server:
        runtime = WorkerRuntime([step_a, step_b, step_c], servers=server.address)
        await runtime.start(timeout=10)
        try:
            async with Client(server.address) as client:
                wf = WorkflowBuilder("inprocess").add_step("a", step_a).add_step("b", step_b)
                await client.register_workflow(wf.add_step("c", step_c).build())
                total, submit = [], []
                for i in range(args.runs + 20):  # the first 20 warm up
                    t0 = time.perf_counter()
                    tx = await client.execute_workflow("inprocess", {"i": i})
                    t1 = time.perf_counter()
                    await client.wait(tx, timeout=10)
                    if i >= 20:
                        total.append((time.perf_counter() - t0) * 1000)
                        submit.append((t1 - t0) * 1000)
        finally:
            await runtime.stop()
    print(
        f"one 3-step workflow, all in one process: p50 {statistics.median(total):.2f} ms, "
        f"of which the submit {statistics.median(submit):.2f} ms ({args.runs} runs)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
