"""The Python worker of the cross-language conformance suite, the twin of
workers/go/cmd/conformance-worker and workers/node/examples/conformance-worker.ts.

    python tests/conformance/python_worker.py --server 127.0.0.1:50051 --prefix P \
        [--max-concurrency 4]

Serves P.step, P.flaky, P.invalid, P.fail, P.compensate and P.slow; prints
READY on stdout once the server has welcomed it; logs to stderr; on SIGTERM
drains gracefully (running commands finish and are answered) and exits 0.
Token: $MULTIAGENTS_TOKEN.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from typing import Any

from multiagents import (
    WorkerExecutionError,
    WorkerFunction,
    WorkerRuntime,
    current_command,
    emit,
    heartbeat,
    report_usage,
    worker,
)

LANG = "python"


def _command() -> tuple[int, str]:
    info = current_command()
    assert info is not None, "conformance workers run inside a command"
    return info.attempt, info.step


def workers(prefix: str) -> list[WorkerFunction]:
    """The six conformance workers under `prefix`."""

    @worker(f"{prefix}.step")
    async def step(context: dict[str, Any]) -> dict[str, Any]:
        _, name = _command()
        visited = context.get("visited")
        return {
            "visited": [*(visited if isinstance(visited, list) else []), LANG],
            "last_lang": LANG,
            f"step_{name}": LANG,
        }

    @worker(f"{prefix}.flaky")
    async def flaky(context: dict[str, Any]) -> dict[str, Any]:
        attempt, _ = _command()
        if attempt < int(context.get("succeed_on_attempt", 2)):
            raise WorkerExecutionError(f"flaky attempt {attempt}")
        return {"flaky_attempts": attempt, "last_lang": LANG}

    @worker(f"{prefix}.invalid")
    async def invalid(context: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("invalid input")

    @worker(f"{prefix}.fail")
    async def fail(context: dict[str, Any]) -> dict[str, Any]:
        raise WorkerExecutionError(f"boom from {LANG}") from ConnectionError(
            f"gateway refused {LANG}"
        )

    @worker(f"{prefix}.compensate")
    async def compensate(context: dict[str, Any]) -> dict[str, Any]:
        _, name = _command()
        return {"compensated_by": LANG, "compensated_step": name}

    @worker(f"{prefix}.slow")
    async def slow(context: dict[str, Any]) -> dict[str, Any]:
        # Cancellation (server Cancel, step deadline) arrives as CancelledError
        # in the sleep below, which aborts the loop.
        sleep_ms = int(context.get("sleep_ms", 1000))
        start = last_beat = time.monotonic()
        while (elapsed := time.monotonic() - start) * 1000 < sleep_ms:
            await asyncio.sleep(min(0.05, sleep_ms / 1000 - elapsed))
            if time.monotonic() - last_beat >= 0.1:
                last_beat = time.monotonic()
                progress = min(1.0, (last_beat - start) * 1000 / sleep_ms)
                heartbeat({"progress": progress})
        return {"slept_ms": sleep_ms, "last_lang": LANG}

    @worker(f"{prefix}.stream")
    async def stream(context: dict[str, Any]) -> dict[str, Any]:
        n = int(context.get("chunks", 20))
        for i in range(n):
            await emit(f"{LANG}:{i};")
        await emit("done\n", kind="log")
        report_usage(input_tokens=7, output_tokens=n, model=f"{LANG}-model", cost_nano_usd=1000 * n)
        attempt, _ = _command()
        if context.get("fail_first") and attempt == 1:
            raise WorkerExecutionError(f"stream attempt {attempt} failed")
        return {"streamed": n, "last_lang": LANG}

    return [step, flaky, invalid, fail, compensate, slow, stream]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="host:port of a server replica")
    parser.add_argument("--prefix", required=True, help="prefix of the worker names")
    parser.add_argument("--max-concurrency", type=int, default=4)
    args = parser.parse_args()
    runtime = WorkerRuntime(
        workers(args.prefix),
        servers=args.server,
        max_concurrency=args.max_concurrency,
        token=os.environ.get("MULTIAGENTS_TOKEN") or None,
        drain_timeout=30,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await runtime.start(timeout=60)
    print("READY", flush=True)
    await stop.wait()
    logging.getLogger("conformance-worker").info("draining")
    await runtime.stop()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    raise SystemExit(asyncio.run(main()))
