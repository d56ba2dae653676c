"""The machinery of the cross-language conformance suite: the server replica
as a subprocess (so a scenario can SIGKILL and restart it), each language's
conformance worker as a process (built once per session; READY awaited with a
timeout; killed by pid), and the MonitoringService look-ups that find which
worker process runs a command.

A missing toolchain fails the suite (CI has all three languages) instead of
skipping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT
from integration.helpers import wait_for
from multiagents import Client
from multiagents.v1 import monitoring_service_pb2, monitoring_service_pb2_grpc
from multiagents_server.embedded_redis import die_with_parent_prefix, free_port

LANGS = ("python", "go", "node")
PYTHON_WORKER = Path(__file__).resolve().parent / "python_worker.py"
NODE_DIR = ROOT / "workers" / "node"
GO_DIR = ROOT / "workers" / "go"
READY_TIMEOUT_S = 30.0
SERVER_START_TIMEOUT_S = 30.0
# Fast timings, so lost sessions and dead replicas are noticed in about a second.
SERVER_ENV = {
    "MULTIAGENTS_HEARTBEAT_INTERVAL_MS": "300",
    "MULTIAGENTS_REPLICA_LEASE_MS": "1500",
    "MULTIAGENTS_DRAIN_TIMEOUT_MS": "2000",
}


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.fail(
            f"the conformance suite needs `{tool}` on PATH (it runs the Go and Node workers); "
            f"install it or fix PATH — these tests are never skipped",
            pytrace=False,
        )
    return found


# -- toolchains -------------------------------------------------------------------


class Toolchains:
    """Builds each language's conformance worker (and the Go and Node client
    programs) once per session, on first use."""

    def __init__(self, build_dir: Path) -> None:
        self.build_dir = build_dir
        self._argv: dict[str, list[str]] = {"python": [sys.executable, str(PYTHON_WORKER)]}
        self._client_argv: dict[tuple[str, str], list[str]] = {}

    def argv(self, lang: str) -> list[str]:
        if lang not in self._argv:
            self._argv[lang] = {"go": self._build_go, "node": self._build_node}[lang]()
        return self._argv[lang]

    def client_argv(self, lang: str, program: str = "model-v2-client") -> list[str]:
        """A client program: workers/go/cmd/PROGRAM or workers/node/examples/PROGRAM.ts
        (model-v2-client, limits-client)."""
        if (lang, program) not in self._client_argv:
            if lang == "go":
                binary = self.build_dir / f"go-{program}"
                self._run("go build", [_require("go"), "build", "-o", str(binary),
                                       f"./cmd/{program}"], GO_DIR)  # fmt: skip
                self._client_argv[lang, program] = [str(binary)]
            else:
                node = self.argv("node")[0]  # builds dist/, examples included
                self._client_argv[lang, program] = [
                    node,
                    str(NODE_DIR / "dist" / "examples" / f"{program}.js"),
                ]
        return self._client_argv[lang, program]

    def _run(self, what: str, argv: list[str], cwd: Path) -> None:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            pytest.fail(
                f"{what} failed (exit {done.returncode}): {' '.join(argv)} in {cwd}\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}",
                pytrace=False,
            )

    def _build_go(self) -> list[str]:
        go = _require("go")
        binary = self.build_dir / "go-conformance-worker"
        self._run("go build", [go, "build", "-o", str(binary), "./cmd/conformance-worker"], GO_DIR)
        return [str(binary)]

    def _build_node(self) -> list[str]:
        node = _require("node")
        npm = _require("npm")
        if not (NODE_DIR / "node_modules").is_dir():
            self._run("npm ci", [npm, "ci", "--no-audit", "--no-fund"], NODE_DIR)
        self._run("npm run build", [npm, "run", "build"], NODE_DIR)
        return [node, str(NODE_DIR / "dist" / "examples" / "conformance-worker.js")]


# -- the server subprocess -----------------------------------------------------------


class ServerProcess:
    """`multiagents serve` as a child process on a fixed port; restartable."""

    def __init__(self, redis_url: str, key_prefix: str, log_dir: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.argv = [
            *die_with_parent_prefix("KILL"),
            sys.executable, "-m", "multiagents.cli", "serve",
            "--port", str(self.port), "--redis-url", redis_url, "--key-prefix", key_prefix,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log = log_dir / "server-0.log"

    async def start(self) -> None:
        """Start it and return once it accepts calls."""
        self.starts += 1
        self.log = self.log_dir / f"server-{self.starts}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.log_dir,
                env={**os.environ, **SERVER_ENV},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = self.proc

        def listening() -> bool:
            if proc.poll() is not None:
                raise AssertionError(
                    f"server exited with {proc.returncode} while starting:\n{log_tail(self.log)}"
                )
            return "listening on" in self.log.read_text(errors="replace")

        try:
            await wait_for(listening, timeout=SERVER_START_TIMEOUT_S, interval=0.05)
        except TimeoutError:
            raise AssertionError(
                f"server not listening after {SERVER_START_TIMEOUT_S}s:\n{log_tail(self.log)}"
            ) from None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        """SIGTERM (a graceful drain), SIGKILL if it takes too long."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- worker processes --------------------------------------------------------------


@dataclass
class WorkerProcess:
    """One running conformance worker of one language."""

    lang: str
    prefix: str
    proc: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int:
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.lang} worker {self.pid} still running after {timeout}s:\n"
                f"{log_tail(self.log)}"
            ) from None

    def tail(self) -> str:
        return log_tail(self.log)

    def kill(self) -> None:
        """SIGKILL by pid, unless it has exited already."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


StartWorker = Callable[..., Awaitable[WorkerProcess]]


async def launch_worker(argv: list[str], lang: str, prefix: str, log: Path) -> WorkerProcess:
    """Start a worker process and return once it printed READY (connected)."""
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            *die_with_parent_prefix("KILL"),
            *argv,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
        )
    worker = WorkerProcess(lang, prefix, proc, log)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while (line := await proc.stdout.readline()) != b"READY\n":
                if not line:
                    code = await proc.wait()
                    raise AssertionError(
                        f"{lang} worker exited with {code} before READY:\n{worker.tail()}"
                    )
    except TimeoutError:
        worker.kill()
        await proc.wait()
        raise AssertionError(
            f"{lang} worker printed no READY within {READY_TIMEOUT_S}s:\n{worker.tail()}"
        ) from None
    return worker


# -- monitoring ------------------------------------------------------------------------


async def worker_sessions(client: Client) -> list[monitoring_service_pb2.WorkerSession]:
    """Connected worker sessions (published with each replica lease renewal)."""
    stub = monitoring_service_pb2_grpc.MonitoringServiceStub(client._channel)
    response = await stub.ListWorkers(monitoring_service_pb2.ListWorkersRequest(), timeout=10)
    return list(response.sessions)


async def command_traces(
    client: Client, transaction_id: str
) -> list[monitoring_service_pb2.EventTrace]:
    """The lifecycle of every command of one execution that a worker answered."""
    stub = monitoring_service_pb2_grpc.MonitoringServiceStub(client._channel)
    request = monitoring_service_pb2.GetEventTracesRequest(transaction_id=transaction_id)
    return list((await stub.GetEventTraces(request, timeout=10)).traces)


def session_pid(session: monitoring_service_pb2.WorkerSession) -> int | None:
    """The pid in a default worker id, "<host>-<pid>" in every language."""
    tail = session.worker_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


async def running_on(client: Client, workers: list[WorkerProcess]) -> WorkerProcess | None:
    """The worker among `workers` that has a command in flight, if any."""
    by_pid = {w.pid: w for w in workers}
    for session in await worker_sessions(client):
        pid = session_pid(session)
        if session.in_flight > 0 and pid in by_pid:
            return by_pid[pid]
    return None
