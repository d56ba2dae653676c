"""Does a shared rate limit hold across worker processes and server replicas?

    python -m bench.rate_limits [--requests 600] [--period 60] [--periods 2]

Two server replicas (child processes) share one embedded Redis; three
worker processes (`multiagents worker tests/fixtures/limit_workers.py`)
connect, two to the first replica and one to the second. A limit of
`--requests` step starts per `--period` seconds is declared, and enough
one-step workflows for `--periods` periods plus the burst are submitted at
once through both replicas. Each step records when it started (wall clock,
one machine). Printed: the starts in the second period (the queue is
never empty, so that is the rate the limit lets through) and the most
starts in any window of one period, both against `--requests`; the target
is both within 5 %. (Start times are taken by the
workers, so the delivery of a command, a few ms, blurs a window's edges.)
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from multiagents import Client, WorkflowBuilder
from multiagents.v1 import monitoring_service_pb2, monitoring_service_pb2_grpc
from multiagents_server.embedded_redis import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parent.parent
WORKERS = str(ROOT / "tests" / "fixtures" / "limit_workers.py")


def cli(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "multiagents.cli", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def replica(redis_url: str, prefix: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = cli("serve", "--processes", "1", "--port", str(port), "--redis-url", redis_url,
                  "--key-prefix", prefix, "--log-level", "WARNING")  # fmt: skip
    assert process.stdout is not None
    process.stdout.readline()  # "listening on ..."
    return process, f"127.0.0.1:{port}"


async def sessions(address: str) -> int:
    async with Client(address) as c:
        stub = monitoring_service_pb2_grpc.MonitoringServiceStub(c._channel)
        response = await stub.ListWorkers(monitoring_service_pb2.ListWorkersRequest())
    return len(response.sessions)


async def main(requests: int, period: float, periods: int) -> bool:
    children: list[subprocess.Popen[bytes]] = []
    async with EmbeddedRedis(Path(tempfile.mkdtemp()) / "redis") as redis:
        try:
            (a, address_a), (b, address_b) = replica(redis.url, "rl"), replica(redis.url, "rl")
            children += [a, b]
            for address in (address_a, address_a, address_b):
                children.append(cli("worker", WORKERS, "--server", address, "--concurrency", "8"))
            async with Client(address_a) as ca, Client(address_b) as cb:
                deadline = time.monotonic() + 60
                while await sessions(address_a) < 2 or await sessions(address_b) < 1:
                    assert time.monotonic() < deadline, "the workers did not connect"
                    await asyncio.sleep(0.2)
                await ca.put_rate_limit("bench:provider", requests=requests, period=period)
                wf = (
                    WorkflowBuilder("bench.limited")
                    .add_step("stamp", "limits.stamp", rate_limits=["bench:provider"])
                    .build()
                )
                await ca.register_workflow(wf)
                count = requests * (periods + 1)
                print(f"{count} workflows, limit {requests} per {period:g} s, 3 workers, "
                      "2 replicas", flush=True)  # fmt: skip
                submit = [(ca if i % 2 else cb) for i in range(count)]
                ids = []
                for i in range(0, count, 200):
                    ids += await asyncio.gather(
                        *(c.execute_workflow(wf.name, {}) for c in submit[i : i + 200])
                    )
                finals = await asyncio.gather(
                    *((ca if i % 2 else cb).wait(tx, period * (periods + 3))
                      for i, tx in enumerate(ids))
                )  # fmt: skip
        finally:
            for child in children:
                child.terminate()
            for child in children:
                child.wait(20)
    assert all(f.state == "completed" for f in finals), "a workflow did not complete"
    starts = sorted(f.step_results["stamp"]["started"] for f in finals)
    pids = len({f.step_results["stamp"]["pid"] for f in finals})
    # The queue never runs dry, so once the first period is over each start
    # frees a place exactly one period later: the second period holds as
    # many starts as the limit, no fewer (the limit is used), and no window
    # of one period holds more (the limit holds).
    second = sum(1 for t in starts if starts[0] + period <= t < starts[0] + 2 * period)
    most = max(sum(1 for t in starts[i:] if t < first + period) for i, first in enumerate(starts))
    rate_error = abs(second - requests) / requests
    window_error = max(0.0, most - requests) / requests
    print(f"processes that ran steps: {pids}")
    print(f"starts in the second period: {second} ({rate_error:.1%} from {requests})")
    print(f"most starts in any window of one period: {most} ({window_error:.1%} over)")
    ok = rate_error <= 0.05 and window_error <= 0.05
    print("target (both within 5 %):", "met" if ok else "NOT met")
    return ok


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--period", type=float, default=60.0)
    parser.add_argument("--periods", type=int, default=2)
    args = parser.parse_args()
    sys.exit(0 if asyncio.run(main(args.requests, args.period, args.periods)) else 1)
