"""The scale run: many workflows through one server, with Redis memory and the
server's RSS recorded before, during and after, to show that finished
workflows are bounded by the retention setting and that the server does not
grow with the number of workflows it has run.

    python -m bench.scale                      # 100,000 workflows (make bench-scale)
    python -m bench.scale --workflows 20000 --retention-ms 30000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis as redis_sync

from bench.common import (
    PREFIX,
    WORKFLOW,
    bench3_definition,
    embedded_redis,
    log,
    start_multiagents,
)
from multiagents_server.embedded_redis import free_port

CHECKPOINTS = (10_000, 25_000, 50_000, 75_000)


@dataclass
class Snapshot:
    label: str
    completed: int
    elapsed_s: float
    redis_used_mb: float
    executions: int
    keys: int
    index: int
    timers: int
    command_entries: int
    server_rss_mb: float
    worker_rss_mb: float


def count(rcli: Any, pattern: str) -> int:
    return sum(1 for _ in rcli.scan_iter(match=pattern, count=10_000))


def snapshot(
    label: str, completed: int, t0: float, rcli: Any, server: Any, worker: Any
) -> Snapshot:
    info = rcli.info()
    # The keyspace is split into buckets (docs/architecture.md): sum over them.
    buckets = range(int(rcli.hget(f"{PREFIX}:{{g}}:meta", "buckets") or 0))
    streams = [f"{PREFIX}:{{{b}}}:q:bench_step{i}" for b in buckets for i in (1, 2, 3)]
    snap = Snapshot(
        label=label,
        completed=completed,
        elapsed_s=time.perf_counter() - t0,
        redis_used_mb=info["used_memory"] / 2**20,
        executions=count(rcli, f"{PREFIX}:{{*}}:wf:*"),
        keys=info.get("db0", {}).get("keys", 0),
        index=sum(rcli.zcard(f"{PREFIX}:{{{b}}}:index") for b in buckets),
        timers=sum(rcli.zcard(f"{PREFIX}:{{{b}}}:timers") for b in buckets),
        command_entries=sum(rcli.xlen(s) for s in streams if rcli.exists(s)),
        server_rss_mb=server.rss_mb(),
        worker_rss_mb=worker.rss_mb(),
    )
    log(f"scale: {snap}")
    return snap


async def scale_run(args: argparse.Namespace, redis_url: str, work: Path) -> str:
    from multiagents import Client

    total = args.workflows
    # Command traces (monitoring) have their own retention; bound both.
    env = {
        "MULTIAGENTS_RETENTION_MS": str(args.retention_ms),
        "MULTIAGENTS_TRACE_RETENTION_MS": str(args.retention_ms),
    }
    port = free_port()
    server, worker = start_multiagents(args.ma_concurrency, redis_url, port, work, env)
    rcli = redis_sync.Redis.from_url(redis_url)
    snaps: list[Snapshot] = []
    t0 = time.perf_counter()
    try:
        async with Client(f"127.0.0.1:{port}") as client:
            await client.register_workflow(bench3_definition())
            snaps.append(snapshot("before", 0, t0, rcli, server, worker))
            completed = 0
            next_index = 0
            pending_checkpoints = [c for c in CHECKPOINTS if c < total]

            async def runner() -> None:
                nonlocal completed, next_index
                while next_index < total:
                    i = next_index
                    next_index += 1
                    tx = await client.execute_workflow(WORKFLOW, {"n": i})
                    status = await client.wait(tx, timeout=600)
                    if status.state != "completed":
                        raise RuntimeError(f"workflow {tx} ended {status.state}")
                    completed += 1
                    if pending_checkpoints and completed >= pending_checkpoints[0]:
                        pending_checkpoints.pop(0)
                        snaps.append(snapshot("during", completed, t0, rcli, server, worker))

            log(f"scale: {total} workflows, {args.in_flight} open at a time")
            t0 = time.perf_counter()
            await asyncio.gather(*(runner() for _ in range(min(args.in_flight, total))))
            run_s = time.perf_counter() - t0
            snaps.append(snapshot("after", completed, t0, rcli, server, worker))
            wait_s = args.retention_ms / 1000 + 10
            log(f"scale: waiting {wait_s:.0f} s for the retention to expire finished workflows")
            await asyncio.sleep(wait_s)
            snaps.append(snapshot("after+retention", completed, t0, rcli, server, worker))
            # The index is pruned by finishing workflows (a pass per second):
            # a few more seconds of traffic forget the expired ones.
            log("scale: 10 s more of one workflow at a time, to let the index be pruned")
            end = time.perf_counter() + 10
            while time.perf_counter() < end:
                tx = await client.execute_workflow(WORKFLOW, {"n": -1})
                await client.wait(tx, timeout=60)
                completed += 1
            snaps.append(snapshot("after+pruning", completed, t0, rcli, server, worker))
    finally:
        worker.stop()
        server.stop()
        rcli.close()
    return scale_report(snaps, total, run_s, args.retention_ms)


def scale_report(snaps: list[Snapshot], total: int, run_s: float, retention_ms: int) -> str:
    lines = [
        f"== scale run: {total} workflows in {run_s:.0f} s ({total / run_s:.0f} workflows/s), "
        f"retention {retention_ms} ms (MULTIAGENTS_RETENTION_MS and _TRACE_RETENTION_MS)",
        f"{'':16} {'completed':>9} {'t (s)':>7} {'redis MB':>9} {'execs':>7} {'keys':>7} "
        f"{'index':>7} {'timers':>6} {'cmds':>5} {'server MB':>9} {'worker MB':>9}",
    ]
    for s in snaps:
        lines.append(
            f"{s.label:16} {s.completed:9} {s.elapsed_s:7.0f} {s.redis_used_mb:9.1f} "
            f"{s.executions:7} {s.keys:7} {s.index:7} {s.timers:6} {s.command_entries:5} "
            f"{s.server_rss_mb:9.1f} {s.worker_rss_mb:9.1f}"
        )
    at10k = next((s for s in snaps if s.completed >= 10_000), None)
    after = next(s for s in snaps if s.label == "after")
    if at10k is not None and at10k is not after:
        change = 100 * (after.server_rss_mb - at10k.server_rss_mb) / at10k.server_rss_mb
        lines.append(
            f"server RSS from {at10k.completed} to {after.completed} completed: "
            f"{at10k.server_rss_mb:.1f} -> {after.server_rss_mb:.1f} MB ({change:+.1f}%, "
            f"target within +-10%: {'met' if abs(change) <= 10 else 'NOT met'})"
        )
    base = snaps[0]
    expired = next(s for s in snaps if s.label == "after+retention")
    if after.executions:
        per = (after.redis_used_mb - base.redis_used_mb) * 2**20 / after.executions
        lines.append(
            f"redis memory per retained execution: {per:.0f} bytes; retained executions "
            f"{after.executions} of {after.completed} completed (bounded by throughput x "
            f"retention); after the retention: {expired.executions} executions, "
            f"{expired.redis_used_mb:.1f} MB; index {expired.index} entries, "
            f"{snaps[-1].index} once pruned"
        )
    return "\n".join(lines)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--workflows", type=int, default=100_000, help="workflows to run")
    parser.add_argument("--retention-ms", type=int, default=15_000, help="retention of finished")
    parser.add_argument("--in-flight", type=int, default=500, help="workflows open at a time")
    parser.add_argument("--ma-concurrency", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the processes' logs")
    args = parser.parse_args(argv)
    async with embedded_redis(args.keep) as (embedded, work):
        print(await scale_run(args, embedded.url, work), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
