"""The chaos lane (issue 15): workflows submitted while workers, server
replicas and Redis are SIGKILLed at random and started again, for a bounded
time. Every accepted workflow must then reach a terminal state: it prints
accepted / completed / failed / stuck / lost and fails on anything but
completed.

Bounded by `MULTIAGENTS_CHAOS_S` seconds of chaos (20 by default, what CI
runs); the seed of the random schedule is printed, and can be replayed with
`MULTIAGENTS_CHAOS_SEED`."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from integration.helpers import make_config
from integration.test_crashes import CRASH_WORKERS, FAST_LEASE, spawn
from multiagents import Client, NotFoundError, RetryPolicy, WorkflowBuilder
from multiagents_server.embedded_redis import EmbeddedRedis, free_port

pytestmark = [pytest.mark.slow, pytest.mark.single_node]

CHAOS_S = float(os.environ.get("MULTIAGENTS_CHAOS_S", "20"))
SEED = int(os.environ.get("MULTIAGENTS_CHAOS_SEED", str(random.randrange(2**32))))
REPLICAS = 2
WORKERS = 3
SETTLE_S = 120.0


class Fleet:
    """The processes under chaos, each restartable in place (same port)."""

    def __init__(self, redis: EmbeddedRedis, prefix: str, log_dir: Path) -> None:
        self.redis = redis
        self.prefix = prefix
        self.log_dir = log_dir
        self.ports = [free_port() for _ in range(REPLICAS)]
        self.addresses = [f"127.0.0.1:{p}" for p in self.ports]
        self.replicas: list[subprocess.Popen[bytes]] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        self.kills: Counter[str] = Counter()

    def _replica(self, i: int) -> subprocess.Popen[bytes]:
        return spawn(
            "serve", "--port", str(self.ports[i]), "--redis-url", self.redis.url,
            "--key-prefix", self.prefix, "--processes", "1",
            env=FAST_LEASE, log=self.log_dir / f"replica-{i}-{self.kills['replica']}.log",
        )  # fmt: skip

    def _worker(self, i: int) -> subprocess.Popen[bytes]:
        servers = [
            a for k in range(REPLICAS) for a in ("--server", self.addresses[(i + k) % REPLICAS])
        ]
        return spawn("worker", CRASH_WORKERS, *servers, "--concurrency", "8")

    def start(self) -> None:
        self.replicas = [self._replica(i) for i in range(REPLICAS)]
        self.workers = [self._worker(i) for i in range(WORKERS)]

    async def strike(self, rng: random.Random) -> None:
        """SIGKILL one worker, replica or Redis, and start it again."""
        kind = rng.choice(["worker", "worker", "replica", "redis"])
        self.kills[kind] += 1
        if kind == "redis":
            assert self.redis.pid is not None
            os.kill(self.redis.pid, signal.SIGKILL)
            await asyncio.sleep(rng.uniform(0.2, 1.0))  # the outage
            await self.redis.restart()
            return
        pool, make = (
            (self.workers, self._worker) if kind == "worker" else (self.replicas, self._replica)
        )
        i = rng.randrange(len(pool))
        pool[i].kill()
        pool[i].wait()
        await asyncio.sleep(rng.uniform(0.1, 1.0))
        pool[i] = make(i)

    def stop(self) -> None:
        for p in self.replicas + self.workers:
            if p.poll() is None:
                p.kill()
            p.wait()


async def _submit(
    clients: list[Client], accepted: list[str], refused: Counter[str], stop: Callable[[], bool]
) -> None:
    """Submit workflows until `stop()`, alternating replicas; a refused or
    failed submit is counted, never retried here (it was not accepted)."""
    n = 0
    while not stop():
        client = clients[n % len(clients)]
        n += 1
        try:
            async with asyncio.timeout(5):
                accepted.append(await client.execute_workflow("chaos.naps", {"nap": 0.2}))
        except Exception as exc:  # not accepted: whatever the reason
            refused[type(exc).__name__] += 1
        await asyncio.sleep(0.05)


async def _final_state(clients: list[Client], tx: str) -> tuple[str, int]:
    """The state once terminal ('lost' when unknown, 'stuck' when not terminal
    in time), and how many step attempts ran again (at least once allows it)."""
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        for client in clients:
            try:
                status = await client.get_status(tx)
            except NotFoundError:
                return "lost", 0
            except Exception:
                continue  # that replica is not up yet
            if status.terminal:
                return status.state, sum(s.attempts - 1 for s in status.steps)
            break
        await asyncio.sleep(0.5)
    return "stuck", 0


async def test_every_accepted_workflow_ends_under_random_sigkills(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    redis = EmbeddedRedis(tmp_path / "redis")
    await redis.start()
    prefix = make_config(redis.url).key_prefix
    fleet = Fleet(redis, prefix, tmp_path)
    fleet.start()
    accepted: list[str] = []
    refused: Counter[str] = Counter()
    try:
        clients = [Client(a) for a in fleet.addresses]
        wf = WorkflowBuilder("chaos.naps")
        for step in ("a", "b", "c"):
            wf.add_step(step, "crash.nap", retry=RetryPolicy(max_attempts=50, initial_interval=0.1))
        async with asyncio.timeout(30):
            while True:
                try:
                    await clients[0].register_workflow(wf.build())
                    break
                except Exception:
                    await asyncio.sleep(0.2)
        end = time.monotonic() + CHAOS_S
        submitter = asyncio.create_task(
            _submit(clients, accepted, refused, lambda: time.monotonic() >= end)
        )
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            await fleet.strike(rng)
        await submitter
        ends = await asyncio.gather(*(_final_state(clients, tx) for tx in accepted))
        finals = Counter(state for state, _ in ends)
        again = sum(n for _, n in ends)
        for client in clients:
            await client.close()
    finally:
        fleet.stop()
        await redis.stop()
    print(
        f"\nchaos seed {SEED}, {CHAOS_S:.0f} s: killed {dict(fleet.kills)}; "
        f"accepted {len(accepted)}, not accepted {dict(refused)}; final {dict(finals)}; "
        f"step attempts run again {again}"
    )
    assert len(accepted) > 0
    assert sum(fleet.kills.values()) > 0
    assert finals == Counter({"completed": len(accepted)}), f"seed {SEED}: {dict(finals)}"
