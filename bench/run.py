"""MultiAgents against Celery and arq on one machine and one embedded Redis.

    python -m bench.run                    # the three systems, then the ratios
    python -m bench.run --systems celery,arq --latency-n 50 --throughput-n 500

For each system: end-to-end latency of one 3-step workflow at a time (p50,
p99 over `--latency-n` sequential runs), throughput (`--throughput-n`
submitted at once, time until every one is terminal), CPU seconds per
workflow (server, workers and Redis, measured over the throughput phase),
Redis commands per workflow and the peak RSS of the server (Celery and arq
have no server: their worker processes are the nearest thing, and are
reported as such). Then the ratios of MultiAgents against each peer, with the
targets. The scale run is `python -m bench.scale`. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import redis as redis_sync

from bench import procs
from bench.common import PREFIX, WORKFLOW, bench3_definition, embedded_redis, log, start_multiagents
from bench.profile import Profiler
from multiagents_server.embedded_redis import EmbeddedRedis, free_port

T = TypeVar("T")
SYSTEMS = ("multiagents", "celery", "arq")
# Databases of the one embedded Redis: MultiAgents 0, Celery's broker 1 and
# result backend 2, arq 3.
CELERY_BROKER_DB, CELERY_BACKEND_DB, ARQ_DB = 1, 2, 3
# arq enqueues at most this many workflows at a time in the throughput phase
# (each enqueue holds a connection; redis-py's pool fails beyond 100).
ARQ_SUBMIT_CONCURRENCY = 50
# The process that stands in for an OpenTelemetry collector (--observability
# all or sampled): its CPU is reported, not counted in the system's.
OTLP_RECEIVER = "otlp-receiver"
# --observability: what the MultiAgents server records (observability_env).
OBSERVABILITY = ("off", "metrics", "all", "sampled")
TRACED = ("all", "sampled")


@dataclass
class Figures:
    """What one system measured."""

    system: str
    observability: str = "off"
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latency_mean_ms: float = 0.0
    throughput_n: int = 0
    pace: str = "at once"
    throughput_s: float = 0.0
    workflows_per_s: float = 0.0
    steps_per_s: float = 0.0
    cpu_s_per_workflow: float = 0.0
    cpu_breakdown_ms_per_workflow: dict[str, float] = field(default_factory=dict)
    server_peak_rss_mb: float = 0.0
    server_label: str = ""
    redis_commands_per_workflow: float = 0.0
    redis_commands: dict[str, float] = field(default_factory=dict)
    # Spans the OTLP receiver got over the whole run (warm-up and latency
    # phases included) when traced; -1 when not.
    spans_received: int = -1
    workflows_run: int = 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


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


async def bench_multiagents(
    args: argparse.Namespace, redis_url: str, work: Path, processes: int, observability: str
) -> Figures:
    from multiagents import Client

    figures = Figures(ma_name(processes), observability)
    port = free_port()
    address = f"127.0.0.1:{port}"
    receiver_port = free_port()
    receiver = start_otlp_receiver(work, receiver_port) if observability in TRACED else None
    try:
        server, worker = start_multiagents(
            args.ma_concurrency,
            redis_url,
            port,
            work,
            observability_env(observability, args.trace_sample, receiver_port),
            processes=processes,
        )
    except BaseException:
        if receiver is not None:
            receiver.stop()
        raise
    rcli = redis_sync.Redis.from_url(redis_url)
    try:
        async with Client(address) as client:
            await client.register_workflow(bench3_definition())

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
            pace = f"at {args.rate:g}/s" if args.rate else "at once"
            log(f"multiagents: throughput, {n} workflows submitted {pace}")
            sources = {
                "server": server.cpu_seconds,
                "worker": worker.cpu_seconds,
                "redis": args.redis_proc.cpu_seconds,
                "client": time.process_time,
            }
            if receiver is not None:
                sources[OTLP_RECEIVER] = receiver.cpu_seconds
            meter = CpuMeter(sources)
            rcli.config_resetstat()
            profiler = Profiler(args.profile, "multiagents", [server, worker])
            profiler.start()
            meter.start()
            t0 = time.perf_counter()
            if args.rate:
                # A fixed load: each workflow submitted at its time, then waited for.
                async def paced(i: int) -> Any:
                    await asyncio.sleep(t0 + i / args.rate - time.perf_counter())
                    tx = await bounded(submit(i))
                    return await bounded(client.wait(tx, timeout=600))

                finals = await asyncio.gather(*(paced(i) for i in range(n)))
                bad = [f for f in finals if f.state != "completed"]
            elif args.observe == "wait":
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
            figures.pace = pace
            figures.server_peak_rss_mb = server.peak_rss_mb()
            figures.server_label = (
                "multiagents serve (one process)"
                if processes == 1
                else f"multiagents serve --processes {processes} (all processes)"
            )
        figures.workflows_run = args.warmup + args.latency_n + n
    finally:
        worker.stop()
        server.stop()  # its tracer provider exports what it still holds
        rcli.close()
        if receiver is not None:
            receiver.stop()
    if receiver is not None:
        figures.spans_received = spans_received(receiver)
    return figures


def start_otlp_receiver(work: Path, port: int) -> procs.Child:
    """The OTLP/gRPC receiver the traced server exports to (bench/otlp_sink.py)."""
    receiver = procs.start(
        OTLP_RECEIVER, [sys.executable, "-m", "bench.otlp_sink", "--port", str(port)], work
    )
    procs.wait_for_line(receiver, "listening on")
    return receiver


def spans_received(receiver: procs.Child) -> int:
    """The receiver's count, printed when it stopped."""
    from bench import otlp_sink  # opentelemetry-proto: only for traced runs

    for line in receiver.log.read_text(errors="replace").splitlines():
        if line.startswith(otlp_sink.RECEIVED):
            return int(line.split()[1])
    raise RuntimeError(f"{receiver.name} printed no span count (log {receiver.log})")


def observability_env(observability: str, sample: float, receiver_port: int) -> dict[str, str]:
    """The server's environment for `--observability`: Prometheus metrics on
    a free port (never scraped: the cost is in recording), and for `all` and
    `sampled` also traces (a span per submit, workflow and step attempt) of
    every workflow or of the share `sample` of them, exported with OTLP over
    gRPC to the receiver on `receiver_port` by the SDK's batch span
    processor, as in production."""
    env: dict[str, str] = {}
    if observability != "off":
        env["MULTIAGENTS_METRICS_PORT"] = str(free_port())
    if observability in TRACED:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{receiver_port}"
        env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        env["OTEL_TRACES_SAMPLER_ARG"] = str(sample if observability == "sampled" else 1.0)
    return env


async def completed_steps(rcli: Any) -> int:
    """Successful commands of the workflow's last worker (the server's monitoring counters)."""
    value = await asyncio.to_thread(rcli.hget, f"{PREFIX}:{{g}}:stats:bench_step3", "succeeded")
    return int(value or 0)


# -- Celery -----------------------------------------------------------------------


def bench_celery(args: argparse.Namespace, redis_url: str, work: Path) -> Figures:
    base = redis_url.rsplit("/", 1)[0]
    broker, backend = f"{base}/{CELERY_BROKER_DB}", f"{base}/{CELERY_BACKEND_DB}"
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


# -- arq --------------------------------------------------------------------------


async def bench_arq(args: argparse.Namespace, redis_url: str, work: Path) -> Figures:
    from arq import create_pool
    from arq.connections import RedisSettings

    from bench.arq_app import job_id, job_result

    url = f"{redis_url.rsplit('/', 1)[0]}/{ARQ_DB}"
    env = {"BENCH_ARQ_REDIS": url, "BENCH_ARQ_MAX_JOBS": str(args.arq_max_jobs)}
    figures = Figures("arq")
    worker = procs.start(
        "arq-worker",
        [str(procs.BIN / "arq"), "bench.arq_app.WorkerSettings",
         "--custom-log-dict", "bench.arq_app.LOG_CONFIG"],
        work,
        env,
    )  # fmt: skip
    rcli = redis_sync.Redis.from_url(redis_url)
    pool = None
    try:
        pool = await create_pool(RedisSettings.from_dsn(url))

        async def submit(i: int) -> str:
            """Enqueue step 1 of a new workflow; its jobs are `<workflow>:1`, `:2`, `:3`."""
            workflow = uuid.uuid4().hex
            job = await pool.enqueue_job("step1", {"n": i}, _job_id=job_id(workflow, 1))
            if job is None:
                raise RuntimeError(f"arq refused job {job_id(workflow, 1)}")
            return workflow

        async def check(workflow: str, timeout: float = 600) -> None:
            """Follow the chain: job 1's result, then job 2's, then job 3's."""
            value: Any = None
            for step in (1, 2, 3):
                value = await job_result(pool, job_id(workflow, step), timeout)
            if value.get("s3") != 3:
                raise RuntimeError(f"unexpected arq chain result {value!r}")

        log("arq: warm-up")
        await check(await submit(-1), timeout=60)  # queued until the worker is up
        warm = [await submit(i) for i in range(args.warmup)]
        for w in warm:
            await check(w)

        log(f"arq: latency, {args.latency_n} sequential chains")
        samples = []
        for i in range(args.latency_n):
            t0 = time.perf_counter()
            await check(await submit(i))
            samples.append((time.perf_counter() - t0) * 1000)
        fill_latency(figures, samples)

        n = args.throughput_n
        log(f"arq: throughput, {n} chains submitted at once")
        limit = asyncio.Semaphore(ARQ_SUBMIT_CONCURRENCY)

        async def bounded(i: int) -> str:
            async with limit:
                return await submit(i)

        meter = CpuMeter(
            {
                "worker": worker.cpu_seconds,
                "redis": args.redis_proc.cpu_seconds,
                "client": time.process_time,
            }
        )
        rcli.config_resetstat()
        profiler = Profiler(args.profile, "arq", [worker])
        profiler.start()
        meter.start()
        t0 = time.perf_counter()
        workflows = await asyncio.gather(*(bounded(i) for i in range(n)))
        for w in workflows:  # in order, like Celery's .get() loop
            await check(w)
        elapsed = time.perf_counter() - t0
        meter.stop()
        profiler.stop()
        fill_throughput(figures, n, elapsed, meter, procs.commandstats(rcli))
        figures.server_peak_rss_mb = worker.peak_rss_mb()
        figures.server_label = f"arq worker (one process, max_jobs {args.arq_max_jobs})"
    finally:
        worker.stop()
        if pool is not None:
            await pool.aclose()
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
    system = {k: v for k, v in meter.used.items() if k not in ("client", OTLP_RECEIVER)}
    figures.cpu_s_per_workflow = sum(system.values()) / n
    figures.cpu_breakdown_ms_per_workflow = {k: 1000 * v / n for k, v in meter.used.items()}
    stats.pop("config|resetstat", None)
    stats.pop("info", None)
    figures.redis_commands_per_workflow = sum(stats.values()) / n
    top = sorted(stats.items(), key=lambda kv: -kv[1])
    figures.redis_commands = {k: round(v / n, 2) for k, v in top}


# The targets, as (metric, peer, comparison, bound) on the ratio MultiAgents/peer.
TARGETS = (
    ("latency_p50", "Celery", "<=", 0.5),
    ("throughput", "arq", ">=", 2.0),
    ("cpu_per_workflow", "arq", "<=", 1.0),
    ("redis_commands_per_workflow", "Celery", "<=", 1.0),
)
# Each ratio: its label and the field of Figures it divides (the ones with a
# target last, so that they are the report's final lines).
RATIOS = {
    "latency_p99": ("latency p99", "latency_p99_ms"),
    "peak_rss": ("peak RSS", "server_peak_rss_mb"),
    "latency_p50": ("latency p50", "latency_p50_ms"),
    "throughput": ("throughput", "workflows_per_s"),
    "cpu_per_workflow": ("CPU/workflow (system)", "cpu_s_per_workflow"),
    "redis_commands_per_workflow": ("Redis commands/workflow", "redis_commands_per_workflow"),
}
PEERS = ("Celery", "arq")
DEFAULT_PROCESSES = os.cpu_count() or 1


def peers(results: list[Figures]) -> list[str]:
    others = [f.system for f in results if f.system.startswith("MultiAgents (")]
    return [*PEERS, *others]


def ma_name(processes: int) -> str:
    """The name of a MultiAgents run: the default (one replica per core) is "MultiAgents"."""
    if processes == DEFAULT_PROCESSES:
        return "MultiAgents"
    return f"MultiAgents ({processes} process{'es' if processes > 1 else ''})"


def us(results: list[Figures]) -> Figures | None:
    """The MultiAgents run the peers are compared with: the default (one
    replica per core), else the first process count that ran."""
    ours = {f.system: f for f in results if f.system.startswith("MultiAgents")}
    return ours.get("MultiAgents", next(iter(ours.values()), None))


def ratios(results: list[Figures]) -> dict[str, dict[str, float | None]]:
    """MultiAgents/peer for each ratio and each peer that ran (empty without
    MultiAgents); a MultiAgents run with another process count counts as a peer."""
    by_name = {f.system: f for f in results}
    ours = us(results)
    out: dict[str, dict[str, float | None]] = {}
    if ours is None:
        return out
    for peer in peers(results):
        them = by_name.get(peer)
        if them is None or peer == ours.system:
            continue
        out[peer] = {}
        for key, (_, name) in RATIOS.items():
            theirs = getattr(them, name)
            out[peer][key] = getattr(ours, name) / theirs if theirs else None
    return out


def targets(ratio: dict[str, dict[str, float | None]]) -> list[dict[str, Any]]:
    """Each target with the ratio it is judged on; `met` is None when the peer did not run."""
    out = []
    for key, peer, op, bound in TARGETS:
        value = ratio.get(peer, {}).get(key)
        met = None if value is None else (value <= bound if op == "<=" else value >= bound)
        target = f"{op} {bound:g}x"
        out.append({"metric": key, "peer": peer, "target": target, "ratio": value, "met": met})
    return out


def observability_report(results: list[Figures]) -> list[str]:
    """With more than one --observability setting: each setting's server CPU
    per workflow and throughput, run by run, and against `off` (the mean of
    the ratios of runs made next to each other, and their range)."""
    lines: list[str] = []
    for system in dict.fromkeys(f.system for f in results if f.system.startswith("MultiAgents")):
        runs = [f for f in results if f.system == system]
        settings = [s for s in dict.fromkeys(f.observability for f in runs) if s != "off"]
        offs = [f for f in runs if f.observability == "off"]
        if not settings or not offs:
            continue
        lines.append(f"== observability against off, {system}: server CPU per workflow, throughput")
        for setting in ["off", *settings]:
            mine = [f for f in runs if f.observability == setting]
            cpu = [f.cpu_breakdown_ms_per_workflow["server"] for f in mine]
            rate = [f.workflows_per_s for f in mine]
            line = (
                f"{setting:8} server ms/workflow {' '.join(f'{c:.2f}' for c in cpu)} "
                f"(mean {statistics.fmean(cpu):.2f}); workflows/s "
                f"{' '.join(f'{r:.0f}' for r in rate)} (mean {statistics.fmean(rate):.0f})"
            )
            if setting != "off" and len(mine) == len(offs):
                cpu_ratio = [
                    f.cpu_breakdown_ms_per_workflow["server"]
                    / o.cpu_breakdown_ms_per_workflow["server"]
                    for f, o in zip(mine, offs, strict=True)
                ]
                rate_ratio = [
                    f.workflows_per_s / o.workflows_per_s for f, o in zip(mine, offs, strict=True)
                ]
                line += (
                    f"\n{'':8} against off, run by run: server CPU {_change(cpu_ratio)}, "
                    f"throughput {_change(rate_ratio)}"
                )
            lines.append(line)
    return lines


def _change(ratios: list[float]) -> str:
    """Ratios as a mean change and its range: `+12 % (+5 % to +20 %)`."""

    def pct(r: float) -> str:
        return f"{100 * (r - 1):+.0f} %"

    return f"{pct(statistics.fmean(ratios))} ({pct(min(ratios))} to {pct(max(ratios))})"


def report(results: list[Figures]) -> str:
    lines = []
    for f in results:
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in f.cpu_breakdown_ms_per_workflow.items())
        cmds = ", ".join(f"{k} {v}" for k, v in list(f.redis_commands.items())[:8])
        setting = "" if f.observability == "off" else f", observability {f.observability}"
        lines += [
            f"== {f.system}{setting}",
            f"latency (one 3-step workflow at a time): p50 {f.latency_p50_ms:.2f} ms, "
            f"p99 {f.latency_p99_ms:.2f} ms, mean {f.latency_mean_ms:.2f} ms",
            f"throughput ({f.throughput_n} {f.pace}): {f.throughput_s:.2f} s, "
            f"{f.workflows_per_s:.0f} workflows/s, {f.steps_per_s:.0f} steps/s",
            f"CPU per workflow (server+workers+redis): {1000 * f.cpu_s_per_workflow:.2f} ms "
            f"[ms: {cpu}]",
            f"peak RSS of the server: {f.server_peak_rss_mb:.1f} MB ({f.server_label})",
            f"redis commands per workflow: {f.redis_commands_per_workflow:.1f} [{cmds}]",
        ]
        if f.spans_received >= 0:
            lines.append(
                f"spans received by the OTLP receiver: {f.spans_received} "
                f"({f.spans_received / f.workflows_run:.2f} per workflow, "
                f"{f.workflows_run} workflows)"
            )
    lines += observability_report(results)
    ratio = ratios(results)
    if not ratio:
        lines.append("(no ratios: they need MultiAgents and at least one of Celery, arq)")
        return "\n".join(lines)
    goals = {t["metric"]: t for t in targets(ratio)}
    columns = [p for p in peers(results) if p in ratio]
    compared = us(results)
    assert compared is not None
    lines += [
        f"== ratios {compared.system} (serve default: {DEFAULT_PROCESSES} processes on "
        f"{os.cpu_count()} cores)/peer (same run, same machine, same Redis)",
        f"{'':24} "
        + " ".join(f"{'us/' + p.removeprefix('MultiAgents '):>12}" for p in columns)
        + "   target",
    ]
    for key, (label, _) in RATIOS.items():
        cells = [
            f"{'-':>12}" if ratio.get(p, {}).get(key) is None else f"{ratio[p][key]:11.2f}x"
            for p in columns
        ]
        line = f"{label:24} " + " ".join(cells)
        goal = goals.get(key)
        if goal is not None:
            verdict = {True: "met", False: "NOT met", None: f"{goal['peer']} not run"}
            line += f"   {goal['target']} {goal['peer']}: {verdict[goal['met']]}"
        lines.append(line)
    return "\n".join(lines)


# -- entry point --------------------------------------------------------------------


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated, of {', '.join(SYSTEMS)} (default: all)",
    )
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--throughput-n", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--ma-concurrency", type=int, default=1000)
    parser.add_argument(
        "--ma-processes",
        type=lambda v: [int(p) for p in v.split(",")],
        default=sorted({DEFAULT_PROCESSES, 1}),
        help="server processes to run MultiAgents with, comma-separated (default: 1 and "
        "the core count, serve's default)",
    )
    parser.add_argument("--client-rpcs", type=int, default=500, help="RPCs open at once")
    parser.add_argument(
        "--observe",
        choices=("wait", "counter"),
        default="wait",
        help="how the MultiAgents throughput phase sees completion: Client.wait per workflow "
        "(the measure), or only a Redis counter (analysis: the server without the watchers)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0,
        metavar="N",
        help="MultiAgents' throughput phase submits N workflows a second, each then waited "
        "for, instead of all at once: its CPU per workflow at a fixed load (default: at once)",
    )
    parser.add_argument(
        "--observability",
        default="off",
        help="what the MultiAgents server records, comma-separated to compare them in one run: "
        "off, metrics (Prometheus), all (metrics and a trace of every workflow, exported with "
        "OTLP to a receiver process), sampled (all, tracing --trace-sample of the workflows); "
        'docs/performance.md, "Observability"; default off',
    )
    parser.add_argument(
        "--trace-sample",
        type=float,
        default=0.1,
        metavar="RATIO",
        help="the share of workflows --observability sampled traces (default 0.1)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run MultiAgents' settings this many times, in turn (default 1)",
    )
    parser.add_argument("--celery-pool", default="prefork")
    parser.add_argument("--celery-concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--celery-prefetch", type=int, default=4)
    parser.add_argument(
        "--arq-max-jobs", type=int, default=10, help="the arq worker's max_jobs (arq's default)"
    )
    parser.add_argument("--profile", metavar="DIR", help="py-spy the server and workers into DIR")
    parser.add_argument("--keep", action="store_true", help="keep the processes' logs")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    args = parser.parse_args(argv)
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown or not systems:
        parser.error(f"--systems: unknown {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    observability = [s.strip() for s in args.observability.split(",") if s.strip()]
    unknown = sorted(set(observability) - set(OBSERVABILITY))
    if unknown or not observability:
        parser.error(
            f"--observability: unknown {', '.join(unknown)}; choose from {', '.join(OBSERVABILITY)}"
        )
    if not 0 <= args.trace_sample <= 1:
        parser.error(f"--trace-sample: {args.trace_sample} is not between 0 and 1")
    if args.repeat < 1:
        parser.error(f"--repeat: {args.repeat} is not a positive count")

    async with embedded_redis(args.keep) as (embedded, work):
        args.redis_proc = RedisProcess(embedded)
        results = []
        if "multiagents" in systems:
            for _ in range(args.repeat):
                for processes in args.ma_processes:
                    for setting in observability:
                        results.append(
                            await bench_multiagents(args, embedded.url, work, processes, setting)
                        )
        if "celery" in systems:
            results.append(bench_celery(args, embedded.url, work))
        if "arq" in systems:
            results.append(await bench_arq(args, embedded.url, work))
        print(report(results), flush=True)
        if args.json:
            ratio = ratios(results)
            settings = {k: v for k, v in vars(args).items() if k not in ("redis_proc", "json")}
            document = {
                "settings": settings,
                "systems": [asdict(r) for r in results],
                "ratios": ratio,
                "targets": targets(ratio),
            }
            Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
            log(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
