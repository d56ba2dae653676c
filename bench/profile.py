"""Sampling profiles of the benchmark's processes with py-spy, and a text summary
of them (where the CPU goes, by function, self and inclusive)."""

from __future__ import annotations

import collections
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.procs import BIN, Child

RATE = 100


class Profiler:
    """py-spy record of some processes between `start()` and `stop()`; no-op without a dir."""

    def __init__(self, directory: str | None, label: str, children: list[Child]) -> None:
        self.directory = Path(directory) if directory else None
        self.label = label
        self.children = children
        self._running: list[tuple[Path, subprocess.Popen[bytes]]] = []

    def start(self) -> None:
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for child in self.children:
            out = self.directory / f"{self.label}-{child.name}.txt"
            popen = subprocess.Popen(
                [str(BIN / "py-spy"), "record", "--pid", str(child.pid), "--rate", str(RATE),
                 "--format", "raw", "--nonblocking", "--subprocesses", "-o", str(out)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            self._running.append((out, popen))
        time.sleep(1.0)  # py-spy attaches

    def stop(self) -> None:
        for out, popen in self._running:
            popen.send_signal(signal.SIGINT)
            try:
                popen.wait(30)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
            if out.exists():
                summary = summarize(out)
                out.with_suffix(".summary.txt").write_text(summary)
                print(f"profile {out.name}:\n{summary}", file=sys.stderr, flush=True)
        self._running.clear()


_FRAME = re.compile(r"^(.*) \(([^()]*?)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)".
    match = _FRAME.match(frame)
    if match is None:
        return frame
    name, path = match.group(1), match.group(2)
    for marker in ("site-packages/", "/multiagents_server/", "/multiagents/", "/lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def _root(names: list[str]) -> str:
    """What a sample was doing: the callback or task that the event loop ran."""
    bare = [n.split(" (", 1)[0] for n in names]
    if "Handle._run" in bare:
        i = bare.index("Handle._run")
        if i + 1 < len(names):
            return names[i + 1]
        return "(inside Handle._run: grpc's Cython callbacks, protobuf)"
    if "Thread.run" in bare:
        return "(grpc's polling thread)"
    return "(coroutine stack without the loop frames) " + (names[0] if names else "")


def summarize(path: Path, top: int = 25) -> str:
    """Where the samples of a py-spy raw file are: by self, by task, inclusive."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    roots: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        names = [_frame_name(f) for f in frames]
        if not names:
            continue
        total += count
        own[names[-1]] += count
        roots[_root(names)] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        return "(no samples)\n"
    lines = [f"{total} samples at {RATE} Hz (CPU only: idle waits are not sampled)"]
    lines += ["", "by task or callback the event loop ran:"]
    lines += [f"{100 * c / total:5.1f}%  {name}" for name, c in roots.most_common(top)]
    lines += ["", "by function, self:"]
    lines += [f"{100 * c / total:5.1f}%  {name}" for name, c in own.most_common(top)]
    lines += ["", "by function, inclusive (this project's functions):"]
    ours = [
        (n, c)
        for n, c in inclusive.most_common()
        if "multiagents" in n and not n.startswith(("<module>", "main (multiagents/cli.py)"))
    ]
    lines += [f"{100 * c / total:5.1f}%  {name}" for name, c in ours[:top]]
    return "\n".join(lines) + "\n"
