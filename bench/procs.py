"""Child processes of the benchmark and what is measured of them: CPU seconds,
current and peak RSS (Linux /proc), and Redis INFO figures."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

BIN = Path(sys.executable).parent


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass
class Child:
    """A child process started by the benchmark and stopped by its pid."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tree(self) -> list[psutil.Process]:
        """The process and its live descendants (Celery's prefork children)."""
        try:
            proc = psutil.Process(self.pid)
            return [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def rss_mb(self) -> float:
        """Current resident set size of the process tree."""
        return sum(_status_kb(p.pid, "VmRSS") for p in self.tree()) / 1024

    def peak_rss_mb(self) -> float:
        """Peak resident set size (VmHWM) of the process tree, summed."""
        return sum(_status_kb(p.pid, "VmHWM") for p in self.tree()) / 1024

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def start(name: str, argv: Sequence[str], logdir: Path, env: dict[str, str] | None = None) -> Child:
    """Start `argv` with its output in `logdir/name.log`."""
    log = logdir / f"{name}.log"
    out = log.open("wb")
    popen = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parent.parent,
    )
    out.close()
    return Child(name, popen, log)


def wait_for_line(child: Child, text: str, timeout: float = 30.0) -> None:
    """Wait until the child's log contains `text`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in child.log.read_text(errors="replace"):
            return
        if not child.alive():
            break
        time.sleep(0.05)
    tail = child.log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{child.name} did not print {text!r} (exit {child.popen.poll()}):\n{tail}")


def redis_info(client: Any) -> dict[str, Any]:
    """INFO memory/stats/keyspace figures of the shared Redis."""
    info: dict[str, Any] = client.info()
    return info


def commandstats(client: Any) -> dict[str, int]:
    """Calls per command name since the last CONFIG RESETSTAT."""
    raw: dict[str, Any] = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in raw.items()}
