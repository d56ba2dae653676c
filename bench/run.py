"""MultiAgents against Celery on one machine and one embedded Redis.

    python -m bench.run               # both systems, then the ratios us/Celery
    python -m bench.run --scale 100000   # the scale run (MultiAgents only)

For each system: end-to-end latency of one 3-step workflow at a time (p50,
p99 over `--latency-n` sequential runs), throughput (`--throughput-n`
submitted at once, time until every one is terminal), CPU seconds per
workflow (server, workers and Redis, measured over the throughput phase) and
the peak RSS of the server (Celery has no server: its worker processes are
the nearest thing, and are reported as such). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import redis as redis_sync

from bench import procs
from bench.profile import Profiler
from multiagents_server.embedded_redis import EmbeddedRedis, free_port

T = TypeVar("T")
WORKFLOW = "bench3"
PREFIX = "bench"


@dataclass
class Figures:
    """What one system measured."""

    system: str
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latency_mean_ms: float = 0.0
    throughput_n: int = 0
    throughput_s: float = 0.0
    workflows_per_s: float = 0.0
    steps_per_s: float = 0.0
    cpu_s_per_workflow: float = 0.0
    cpu_breakdown_ms_per_workflow: dict[str, float] = field(default_factory=dict)
    server_peak_rss_mb: float = 0.0
    server_label: str = ""
    redis_commands_per_workflow: float = 0.0
    redis_commands: dict[str, float] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


class RedisProcess:
    """The embedded Redis as a measured process."""

    def __init__(self, embedded: EmbeddedRedis) -> None:
        assert embedded.pid is not None
        self.proc = psutil.Process(embedded.pid)

    def cpu_seconds(self) -> float:
        t = self.proc.cpu_times()
        return float(t.user + t.system)


class CpuMeter:
    """CPU seconds of named processes between `start()` and `stop()`."""

    def __init__(self, sources: dict[str, Callable[[], float]]) -> None:
        self.sources = sources
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self.before = {k: f() for k, f in self.sources.items()}

    def stop(self) -> None:
        self.used = {k: f() - self.before[k] for k, f in self.sources.items()}


# -- MultiAgents ------------------------------------------------------------------


async def bench_multiagents(args: argparse.Namespace, redis_url: str, work: Path) -> Figures:
    from multiagents import Client
    from multiagents.workflow import WorkflowBuilder

    figures = Figures("MultiAgents")
    port = free_port()
    address = f"127.0.0.1:{port}"
    server, worker = start_multiagents(args, redis_url, port, work, {})
    rcli = redis_sync.Redis.from_url(redis_url)
    try:
        async with Client(address) as client:
            workflow = (
                WorkflowBuilder(WORKFLOW)
                .add_step("one", "bench_step1")
                .add_step("two", "bench_step2")
                .add_step("three", "bench_step3")
                .build()
            )
            await client.register_workflow(workflow)

            async def one(i: int) -> None:
                tx = await client.execute_workflow(WORKFLOW, {"n": i})
                status = await client.wait(tx, timeout=300)
                if status.state != "completed":
                    raise RuntimeError(f"workflow {tx} ended {status.state}: {status.error}")

            # One grpc.aio channel cancels RPCs beyond ~1,400 open at once
            # (grpc core, not this project): keep fewer than that open.
            limit = asyncio.Semaphore(args.client_rpcs)

            async def bounded(call: Awaitable[T]) -> T:
                async with limit:
                    return await call

            async def submit(i: int) -> str:
                return await client.execute_workflow(WORKFLOW, {"n": i})

            log("multiagents: warm-up")
            await asyncio.gather(*(one(i) for i in range(args.warmup)))

            log(f"multiagents: latency, {args.latency_n} sequential workflows")
            samples = []
            for i in range(args.latency_n):
                t0 = time.perf_counter()
                await one(i)
                samples.append((time.perf_counter() - t0) * 1000)
            fill_latency(figures, samples)

            n = args.throughput_n
            log(f"multiagents: throughput, {n} workflows submitted at once")
            meter = CpuMeter(
                {
                    "server": server.cpu_seconds,
                    "worker": worker.cpu_seconds,
                    "redis": args.redis_proc.cpu_seconds,
                    "client": time.process_time,
                }
            )
            rcli.config_resetstat()
            profiler = Profiler(args.profile, "multiagents", [server, worker])
            profiler.start()
            meter.start()
            t0 = time.perf_counter()
            if args.observe == "wait":
                txs = await asyncio.gather(*(bounded(submit(i)) for i in range(n)))
                finals = await asyncio.gather(
                    *(bounded(client.wait(tx, timeout=600)) for tx in txs)
                )
                bad = [f for f in finals if f.state != "completed"]
            else:
                # Analysis only: no watch streams, no GetStatus; completion is
                # read from the last worker's success counter in Redis.
                done_before = await completed_steps(rcli)
                await asyncio.gather(*(bounded(submit(i)) for i in range(n)))
                while await completed_steps(rcli) < done_before + n:
                    await asyncio.sleep(0.01)
                bad = []
            elapsed = time.perf_counter() - t0
            meter.stop()
            profiler.stop()
            if bad:
                raise RuntimeError(f"{len(bad)} workflows did not complete: {bad[0]}")
            fill_throughput(figures, n, elapsed, meter, procs.commandstats(rcli))
            figures.server_peak_rss_mb = server.peak_rss_mb()
            figures.server_label = "multiagents serve (one process)"
    finally:
        worker.stop()
        server.stop()
        rcli.close()
    return figures


async def completed_steps(rcli: Any) -> int:
    """Successful commands of the workflow's last worker (the server's monitoring counters)."""
    value = await asyncio.to_thread(rcli.hget, f"{PREFIX}:stats:{{bench_step3}}", "succeeded")
    return int(value or 0)


def start_multiagents(
    args: argparse.Namespace, redis_url: str, port: int, work: Path, env: dict[str, str]
) -> tuple[procs.Child, procs.Child]:
    server = procs.start(
        "ma-server",
        [str(procs.BIN / "multiagents"), "serve", "--port", str(port),
         "--redis-url", redis_url, "--key-prefix", PREFIX, "--log-level", "WARNING"],
        work,
        env,
    )  # fmt: skip
    procs.wait_for_line(server, "listening on")
    worker = procs.start(
        "ma-worker",
        [str(procs.BIN / "multiagents"), "worker", "bench/ma_workers.py",
         "--server", f"127.0.0.1:{port}", "--concurrency", str(args.ma_concurrency)],
        work,
    )  # fmt: skip
    procs.wait_for_line(worker, "serving")
    return server, worker


# -- Celery -----------------------------------------------------------------------


def bench_celery(args: argparse.Namespace, redis_url: str, work: Path) -> Figures:
    base = redis_url.rsplit("/", 1)[0]
    broker, backend = f"{base}/1", f"{base}/2"
    env = {"BENCH_CELERY_BROKER": broker, "BENCH_CELERY_BACKEND": backend}
    os.environ.update(env)
    from celery import chain

    from bench.celery_app import app, t1, t2, t3

    app.conf.broker_url, app.conf.result_backend = broker, backend
    figures = Figures("Celery")
    worker = procs.start(
        "celery-worker",
        [str(procs.BIN / "celery"), "-A", "bench.celery_app", "worker",
         "--pool", args.celery_pool, "--concurrency", str(args.celery_concurrency),
         "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--prefetch-multiplier", str(args.celery_prefetch)],
        work,
        env,
    )  # fmt: skip
    rcli = redis_sync.Redis.from_url(redis_url)
    try:

        def submit(i: int) -> Any:
            return chain(t1.s({"n": i}), t2.s(), t3.s()).apply_async()

        def check(result: Any) -> None:
            value = result.get(timeout=600)
            if value.get("s3") != 3:
                raise RuntimeError(f"unexpected chain result {value!r}")

        log("celery: warm-up")
        deadline = time.monotonic() + 60
        while True:  # the worker is up once a chain comes back
            try:
                check(submit(-1))
                break
            except Exception:
                if time.monotonic() > deadline or not worker.alive():
                    raise
        for r in [submit(i) for i in range(args.warmup)]:
            check(r)

        log(f"celery: latency, {args.latency_n} sequential chains")
        samples = []
        for i in range(args.latency_n):
            t0 = time.perf_counter()
            check(submit(i))
            samples.append((time.perf_counter() - t0) * 1000)
        fill_latency(figures, samples)

        n = args.throughput_n
        log(f"celery: throughput, {n} chains submitted at once")
        meter = CpuMeter(
            {
                "worker": worker.cpu_seconds,
                "redis": args.redis_proc.cpu_seconds,
                "client": time.process_time,
            }
        )
        rcli.config_resetstat()
        profiler = Profiler(args.profile, "celery", [worker])
        profiler.start()
        meter.start()
        t0 = time.perf_counter()
        results = [submit(i) for i in range(n)]
        for r in results:
            check(r)
        elapsed = time.perf_counter() - t0
        meter.stop()
        profiler.stop()
        fill_throughput(figures, n, elapsed, meter, procs.commandstats(rcli))
        figures.server_peak_rss_mb = worker.peak_rss_mb()
        figures.server_label = (
            f"celery worker ({args.celery_pool}, concurrency {args.celery_concurrency}, "
            "all processes)"
        )
    finally:
        worker.stop()
        rcli.close()
    return figures


# -- figures ----------------------------------------------------------------------


def fill_latency(figures: Figures, samples: list[float]) -> None:
    figures.latency_p50_ms = statistics.median(samples)
    figures.latency_p99_ms = percentile(samples, 0.99)
    figures.latency_mean_ms = statistics.fmean(samples)


def fill_throughput(
    figures: Figures, n: int, elapsed: float, meter: CpuMeter, stats: dict[str, int]
) -> None:
    figures.throughput_n = n
    figures.throughput_s = elapsed
    figures.workflows_per_s = n / elapsed
    figures.steps_per_s = 3 * n / elapsed
    system = {k: v for k, v in meter.used.items() if k != "client"}
    figures.cpu_s_per_workflow = sum(system.values()) / n
    figures.cpu_breakdown_ms_per_workflow = {k: 1000 * v / n for k, v in meter.used.items()}
    stats.pop("config|resetstat", None)
    stats.pop("info", None)
    figures.redis_commands_per_workflow = sum(stats.values()) / n
    top = sorted(stats.items(), key=lambda kv: -kv[1])
    figures.redis_commands = {k: round(v / n, 2) for k, v in top}


def report(results: list[Figures]) -> str:
    lines = []
    for f in results:
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in f.cpu_breakdown_ms_per_workflow.items())
        cmds = ", ".join(f"{k} {v}" for k, v in list(f.redis_commands.items())[:8])
        lines += [
            f"== {f.system}",
            f"latency (one 3-step workflow at a time): p50 {f.latency_p50_ms:.2f} ms, "
            f"p99 {f.latency_p99_ms:.2f} ms, mean {f.latency_mean_ms:.2f} ms",
            f"throughput ({f.throughput_n} at once): {f.throughput_s:.2f} s, "
            f"{f.workflows_per_s:.0f} workflows/s, {f.steps_per_s:.0f} steps/s",
            f"CPU per workflow (server+workers+redis): {1000 * f.cpu_s_per_workflow:.2f} ms "
            f"[ms: {cpu}]",
            f"peak RSS of the server: {f.server_peak_rss_mb:.1f} MB ({f.server_label})",
            f"redis commands per workflow: {f.redis_commands_per_workflow:.1f} [{cmds}]",
        ]
    by_name = {f.system: f for f in results}
    us, them = by_name.get("MultiAgents"), by_name.get("Celery")
    if us and them:
        thr = us.workflows_per_s / them.workflows_per_s
        p50 = us.latency_p50_ms / them.latency_p50_ms
        p99 = us.latency_p99_ms / them.latency_p99_ms
        cpu = us.cpu_s_per_workflow / them.cpu_s_per_workflow
        rss = us.server_peak_rss_mb / them.server_peak_rss_mb
        lines += [
            "== ratios us/Celery (same run, same machine, same Redis)",
            f"throughput     {thr:6.2f}x   (target >= 5x: {'met' if thr >= 5 else 'NOT met'})",
            f"latency p50    {p50:6.2f}x   (target <= 0.5x: {'met' if p50 <= 0.5 else 'NOT met'})",
            f"latency p99    {p99:6.2f}x",
            f"CPU/workflow   {cpu:6.2f}x",
            f"peak RSS       {rss:6.2f}x",
        ]
    return "\n".join(lines)


# -- entry point --------------------------------------------------------------------


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--systems", default="multiagents,celery")
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--throughput-n", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--ma-concurrency", type=int, default=1000)
    parser.add_argument("--client-rpcs", type=int, default=500, help="RPCs open at once")
    parser.add_argument(
        "--observe",
        choices=("wait", "counter"),
        default="wait",
        help="how the MultiAgents throughput phase sees completion: Client.wait per workflow "
        "(the measure), or only a Redis counter (analysis: the server without the watchers)",
    )
    parser.add_argument("--celery-pool", default="prefork")
    parser.add_argument("--celery-concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--celery-prefetch", type=int, default=4)
    parser.add_argument("--profile", metavar="DIR", help="py-spy the server and workers into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the processes' logs")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--scale", type=int, default=0, help="run the scale run with N workflows")
    parser.add_argument("--retention-ms", type=int, default=15_000, help="retention (scale run)")
    parser.add_argument("--in-flight", type=int, default=500, help="workflows open (scale run)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="ma-bench-"))
    ok = False
    try:
        embedded = EmbeddedRedis(work / "redis")
        await embedded.start()
        args.redis_proc = RedisProcess(embedded)
        log(f"embedded redis at {embedded.url}; logs in {work}")
        try:
            if args.scale:
                from bench.scale import scale_run

                print(await scale_run(args, embedded.url, work), flush=True)
                ok = True
                return 0
            results = []
            systems = args.systems.split(",")
            if "multiagents" in systems:
                results.append(await bench_multiagents(args, embedded.url, work))
            if "celery" in systems:
                results.append(bench_celery(args, embedded.url, work))
            print(report(results), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
            ok = True
        finally:
            await embedded.stop()
    finally:
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"failed: the processes' logs are kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
