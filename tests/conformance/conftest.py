"""Fixtures of the cross-language conformance suite: one server subprocess per
module (restartable by the scenarios), the language under test, and worker
processes started per test and killed by pid at its end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from conformance.harness import (
    LANGS,
    ServerProcess,
    StartWorker,
    Toolchains,
    WorkerProcess,
    launch_worker,
    log_tail,
)
from multiagents import Client
from multiagents_server.embedded_redis import EmbeddedRedis

FAILURE_LOG_LINES = 200


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed scenario's report carries the end of the server's log and of
    each worker's: what a CI run printed is all there is to go on."""
    report: pytest.TestReport = yield
    funcargs = getattr(item, "funcargs", {})
    if report.failed and "conformance_server" in funcargs:
        server: ServerProcess = funcargs["conformance_server"]
        tail = log_tail(server.log, FAILURE_LOG_LINES)
        report.sections.append((f"server log {server.log}", tail))
        tmp_path = funcargs.get("tmp_path")
        for log in sorted(tmp_path.glob("worker-*.log")) if tmp_path is not None else ():
            report.sections.append((f"worker log {log.name}", log_tail(log, FAILURE_LOG_LINES)))
    return report


@pytest.fixture(scope="module")
async def conformance_server(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServerProcess]:
    """`multiagents serve` as a subprocess on the session's Redis, own key prefix."""
    server = ServerProcess(
        redis_server.url,
        key_prefix=f"conf{uuid.uuid4().hex[:8]}",
        log_dir=tmp_path_factory.mktemp("conformance-server"),
    )
    await server.start()
    yield server
    server.stop()


@pytest.fixture
async def client(conformance_server: ServerProcess) -> AsyncIterator[Client]:
    async with Client(conformance_server.address) as c:
        yield c


@pytest.fixture(params=LANGS)
def lang(request: pytest.FixtureRequest) -> Iterator[str]:
    """The language whose workers a scenario runs against."""
    yield request.param


@pytest.fixture
async def start_worker(
    toolchains: Toolchains, conformance_server: ServerProcess, tmp_path: Path
) -> AsyncIterator[StartWorker]:
    """`await start_worker(lang, prefix, max_concurrency=4)` starts a conformance
    worker process connected to the server, or to `server=` (an address in
    front of it), once it printed READY; every one is killed by pid at the
    end of the test."""
    started: list[WorkerProcess] = []

    async def start(
        lang: str, prefix: str, *, max_concurrency: int = 4, server: str = ""
    ) -> WorkerProcess:
        argv = [
            *toolchains.argv(lang),
            "--server", server or conformance_server.address,
            "--prefix", prefix,
            "--max-concurrency", str(max_concurrency),
        ]  # fmt: skip
        log = tmp_path / f"worker-{lang}-{len(started)}.log"
        worker = await launch_worker(argv, lang, prefix, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()
        await asyncio.wait_for(worker.proc.wait(), timeout=10)
