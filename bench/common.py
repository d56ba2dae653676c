"""What the comparison (bench/run.py) and the scale run (bench/scale.py) share:
the embedded Redis and work directory of a run, the MultiAgents processes and
the benchmark workflow."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from bench import procs
from multiagents.workflow import Workflow, WorkflowBuilder
from multiagents_server.embedded_redis import EmbeddedRedis

WORKFLOW = "bench3"
PREFIX = "bench"


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def embedded_redis(keep: bool) -> AsyncIterator[tuple[EmbeddedRedis, Path]]:
    """A work directory for the processes' logs and an embedded Redis (AOF on) in it.

    The directory is removed afterwards unless the run failed or `keep` is set.
    """
    work = Path(tempfile.mkdtemp(prefix="ma-bench-"))
    ok = False
    try:
        embedded = EmbeddedRedis(work / "redis")
        await embedded.start()
        log(f"embedded redis at {embedded.url}; logs in {work}")
        try:
            yield embedded, work
            ok = True
        finally:
            await embedded.stop()
    finally:
        if not ok:
            log(f"failed: the processes' logs are kept in {work}")
        elif keep:
            log(f"the processes' logs are in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def bench3_definition() -> Workflow:
    """The benchmark workflow: three steps, each a no-op worker of bench/ma_workers.py."""
    return (
        WorkflowBuilder(WORKFLOW)
        .add_step("one", "bench_step1")
        .add_step("two", "bench_step2")
        .add_step("three", "bench_step3")
        .build()
    )


def start_multiagents(
    concurrency: int,
    redis_url: str,
    port: int,
    work: Path,
    env: dict[str, str],
    processes: int = 1,
) -> tuple[procs.Child, procs.Child]:
    """`multiagents serve` (`processes` replicas) on 127.0.0.1:`port` and one
    worker process of bench/ma_workers.py."""
    server = procs.start(
        "ma-server",
        [str(procs.BIN / "multiagents"), "serve", "--port", str(port),
         "--redis-url", redis_url, "--key-prefix", PREFIX, "--log-level", "WARNING",
         "--processes", str(processes)],
        work,
        env,
    )  # fmt: skip
    try:
        procs.wait_for_line(server, "listening on")
        worker = procs.start(
            "ma-worker",
            [str(procs.BIN / "multiagents"), "worker", "bench/ma_workers.py",
             "--server", f"127.0.0.1:{port}", "--concurrency", str(concurrency)],
            work,
        )  # fmt: skip
        try:
            procs.wait_for_line(worker, "serving")
        except BaseException:
            worker.stop()
            raise
    except BaseException:
        server.stop()
        raise
    return server, worker
