"""The chaos lane (issue 15): workflows submitted while workers, server
replicas and Redis are SIGKILLed at random and started again, for a bounded
time; against a single-node Redis, and against a real 3-master Redis Cluster
whose masters are SIGKILLed and started again in place, on their
append-only files (the cluster's supported deployment: docs/guarantees.md).

The client submits each workflow with a request id and, when the call fails
(UNAVAILABLE while Redis or a cluster node is down, a replica that does not
answer, a deadline), sends it again, to the other replica, until it is
accepted. Every workflow the client saw accepted must then reach a terminal
state. The test prints accepted / completed / failed / stuck / lost /
duplicate counts and fails on anything but completed, or on a duplicate (a
listed execution that no submission asked for: a request id names the one
execution it starts).

Bounded by `MULTIAGENTS_CHAOS_S` seconds of chaos per test (20 on a single
node, 45 on the cluster by default: what CI runs). The seed of the random
schedule (what is killed, when, for how long) is printed; replay it with
`MULTIAGENTS_CHAOS_SEED`."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import pytest

from integration.test_crashes import CRASH_WORKERS, FAST_LEASE, spawn
from multiagents import Client, NotFoundError, RetryPolicy, WorkflowBuilder
from multiagents_server.embedded_redis import EmbeddedRedis, free_port
from multiagents_server.orchestrator import request_transaction_id
from redis_cluster import RedisCluster

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("MULTIAGENTS_CHAOS_SEED", str(random.randrange(2**32))))
REPLICAS = 2
WORKERS = 3
# Clients submitting at once, each one workflow at a time.
SUBMITTERS = 2
# A submission still refused after this long is counted as not accepted.
GIVE_UP_S = 60.0
SETTLE_S = 120.0
WORKFLOW = "chaos.naps"
# What a strike kills: drawn from a shuffled deck, so any 4 strikes in a row
# kill each kind at least once whatever the seed.
DECK = ("worker", "worker", "replica", "redis")
# The cluster's node timeout: a master unreachable this long is flagged as
# failing, and the cluster refuses queries until it is back.
CLUSTER_NODE_TIMEOUT_MS = 1500


def chaos_seconds(default: float) -> float:
    return float(os.environ.get("MULTIAGENTS_CHAOS_S", str(default)))


class RedisUnderChaos(Protocol):
    name: str

    def url_for(self, replica: int) -> str:
        """The Redis URL server replica `replica` is started with."""
        ...

    async def strike(self, rng: random.Random) -> None:
        """SIGKILL (a node of) Redis, leave it down a while, start it again."""
        ...

    async def settle(self) -> None:
        """Wait until Redis serves again after the last strike."""
        ...


class SingleNode:
    """A single-node Redis, started again on its data directory (AOF)."""

    name = "redis"

    def __init__(self, redis: EmbeddedRedis) -> None:
        self.redis = redis

    def url_for(self, replica: int) -> str:
        return self.redis.url

    async def strike(self, rng: random.Random) -> None:
        assert self.redis.pid is not None
        os.kill(self.redis.pid, signal.SIGKILL)
        await asyncio.sleep(rng.uniform(0.2, 1.0))  # the outage
        await self.redis.restart()

    async def settle(self) -> None:
        pass


class ClusterMasters:
    """A Redis Cluster of masters without replicas: one is SIGKILLed and
    started again in place (same port, nodes.conf and append-only file)."""

    name = "redis node"

    def __init__(self, cluster: RedisCluster) -> None:
        self.cluster = cluster

    def url_for(self, replica: int) -> str:
        # Replicas know different nodes: the cluster client learns the others.
        return self.cluster.node_url(replica % self.cluster.masters)

    async def strike(self, rng: random.Random) -> None:
        i = rng.randrange(self.cluster.masters)
        self.cluster.kill_node(i)
        # Shorter or longer than the node timeout: once past it, the other
        # masters flag the node as failing and the whole cluster refuses
        # queries until 2 node timeouts after that, the node being back.
        await asyncio.sleep(rng.uniform(0.2, 3.0))
        await self.cluster.restart_node(i)

    async def settle(self) -> None:
        await self.cluster.wait_healthy(timeout=60)


class Fleet:
    """Server replicas and worker processes, each restartable in place (a
    replica on the same port); a slot is None while its process is down."""

    def __init__(self, redis: RedisUnderChaos, prefix: str, log_dir: Path) -> None:
        self.redis = redis
        self.prefix = prefix
        self.log_dir = log_dir
        self.ports = [free_port() for _ in range(REPLICAS)]
        self.addresses = [f"127.0.0.1:{p}" for p in self.ports]
        self.pools: dict[str, list[subprocess.Popen[bytes] | None]] = {
            "replica": [None] * REPLICAS,
            "worker": [None] * WORKERS,
        }
        self.kills: Counter[str] = Counter()
        # Processes that exited by themselves (and were started again): why.
        self.exits: list[str] = []
        self._starts: Counter[str] = Counter()

    def _log(self, kind: str, i: int) -> Path:
        """The log file of the current process of slot `i` of `kind`."""
        return self.log_dir / f"{kind}-{i}-{self._starts[f'{kind}-{i}']}.log"

    def _start(self, kind: str, i: int) -> None:
        self._starts[f"{kind}-{i}"] += 1
        if kind == "replica":
            args = [
                "serve", "--port", str(self.ports[i]), "--redis-url", self.redis.url_for(i),
                "--key-prefix", self.prefix, "--processes", "1",
            ]  # fmt: skip
        else:
            servers = [self.addresses[(i + k) % REPLICAS] for k in range(REPLICAS)]
            args = ["worker", CRASH_WORKERS, "--concurrency", "8"]
            for address in servers:
                args += ["--server", address]
        env = FAST_LEASE if kind == "replica" else None
        self.pools[kind][i] = spawn(*args, env=env, log=self._log(kind, i))

    def start(self) -> None:
        for kind, pool in self.pools.items():
            for i in range(len(pool)):
                self._start(kind, i)

    def revive(self) -> None:
        """Start again what exited by itself, as a process manager would (a
        replica started while its Redis does not answer exits at once)."""
        for kind, pool in self.pools.items():
            for i, p in enumerate(pool):
                if p is not None and p.poll() is not None:
                    last = self._log(kind, i).read_text(errors="replace").strip()[-300:]
                    self.exits.append(f"{kind} {i} exited with {p.returncode}: {last}")
                    self._start(kind, i)

    async def strike(self, kind: str, rng: random.Random) -> None:
        """SIGKILL one worker, replica or Redis (node), and start it again."""
        if kind == "redis":
            self.kills[self.redis.name] += 1
            await self.redis.strike(rng)
            return
        self.kills[kind] += 1
        pool = self.pools[kind]
        i = rng.randrange(len(pool))
        process, pool[i] = pool[i], None
        if process is not None:
            process.kill()
            process.wait()
        await asyncio.sleep(rng.uniform(0.1, 1.0))
        self._start(kind, i)

    def stop(self) -> None:
        for p in (p for pool in self.pools.values() for p in pool if p is not None):
            if p.poll() is None:
                p.kill()
            p.wait()


@dataclasses.dataclass
class Submissions:
    """What the clients submitted, each submission with its own request id."""

    sent: list[str] = dataclasses.field(default_factory=list)  # request ids
    accepted: dict[str, str] = dataclasses.field(default_factory=dict)  # request id -> tx
    retried: Counter[str] = dataclasses.field(default_factory=Counter)  # failed calls, by why
    given_up: list[str] = dataclasses.field(default_factory=list)  # request ids


def _why(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return str(code.name) if code is not None else type(exc).__name__


async def _submit(
    clients: list[Client], subs: Submissions, stop: Callable[[], bool], submitter: str
) -> None:
    """Submit workflows one at a time until `stop()`. A failed call is sent
    again (same request id, the other replica) until it is accepted, or
    given up after GIVE_UP_S."""
    n = 0
    while not stop():
        request_id = f"{submitter}-{n}"
        subs.sent.append(request_id)
        give_up = time.monotonic() + GIVE_UP_S
        attempt = 0
        while True:
            client = clients[(n + attempt) % len(clients)]
            try:
                async with asyncio.timeout(5):
                    tx = await client.execute_workflow(
                        WORKFLOW, {"nap": 0.2}, request_id=request_id
                    )
                subs.accepted[request_id] = tx
                break
            except Exception as exc:
                subs.retried[_why(exc)] += 1
                if time.monotonic() > give_up:
                    subs.given_up.append(request_id)
                    break
            attempt += 1
            await asyncio.sleep(0.2)
        n += 1
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


async def _listed(clients: list[Client]) -> set[str]:
    """Every execution of the chaos workflow the server lists (from the first
    replica that answers: one may be starting again)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        for client in clients:
            found: set[str] = set()
            token = ""
            try:
                while True:
                    page, token = await client.list_workflows(
                        workflow_name=WORKFLOW, page_size=1000, page_token=token
                    )
                    found.update(s.transaction_id for s in page)
                    if not token:
                        return found
            except Exception:
                if time.monotonic() > deadline:
                    raise
        await asyncio.sleep(0.5)


@dataclasses.dataclass
class ChaosReport:
    what: str
    chaos_s: float
    redis_kind: str  # what a Redis strike kills: "redis" or "redis node"
    kills: Counter[str]
    exits: list[str]
    subs: Submissions
    finals: Counter[str]  # final state of each accepted workflow
    run_again: int  # step attempts run again
    listed: set[str]  # every execution of the workflow, after the run
    unfinished: list[str]  # accepted, neither completed nor failed
    logs: Path  # the processes' logs and the Redis data

    @property
    def duplicates(self) -> set[str]:
        """Executions that no submission asked for (a request id gives the
        transaction id of its one execution)."""
        return self.listed - {request_transaction_id(r) for r in self.subs.sent}

    @property
    def unlisted(self) -> set[str]:
        return set(self.subs.accepted.values()) - self.listed

    def __str__(self) -> str:
        s, f = self.subs, self.finals
        unacknowledged = {request_transaction_id(r) for r in s.given_up} & self.listed
        return (
            f"\nchaos on {self.what}, seed {SEED}, {self.chaos_s:.0f} s: "
            f"killed {dict(self.kills)}; submitted {len(s.sent)}, accepted {len(s.accepted)}, "
            f"given up {len(s.given_up)} ({len(unacknowledged)} of them created); "
            f"failed calls sent again {dict(s.retried)}; completed {f['completed']}, "
            f"failed {f['failed']}, stuck {f['stuck']}, lost {f['lost']}, "
            f"duplicate {len(self.duplicates)} (final states {dict(f)}); "
            f"step attempts run again {self.run_again}; "
            f"exited by themselves {len(self.exits)} {self.exits}"
            + (
                f"; unfinished {self.unfinished[:10]}, logs in {self.logs}"
                if self.unfinished
                else ""
            )
        )

    def check(self) -> None:
        accepted = len(self.subs.accepted)
        assert accepted > 0
        assert set(self.kills) == {"worker", "replica", self.redis_kind}, dict(self.kills)
        assert self.finals == Counter({"completed": accepted}), f"seed {SEED}: {self}"
        assert not self.duplicates, f"seed {SEED}: executions nobody submitted {self.duplicates}"
        assert not self.unlisted, f"seed {SEED}: accepted but not listed {self.unlisted}"


async def run_chaos(
    redis: RedisUnderChaos, what: str, chaos_s: float, log_dir: Path
) -> ChaosReport:
    """Run the fleet on `redis` under random strikes for `chaos_s` seconds
    while clients submit, then wait for every accepted workflow to end."""
    rng = random.Random(SEED)
    fleet = Fleet(redis, f"t{uuid.uuid4().hex[:8]}", log_dir)
    subs = Submissions()

    async def supervise() -> None:
        while True:
            await asyncio.sleep(0.5)
            fleet.revive()

    fleet.start()
    supervisor = asyncio.create_task(supervise())
    clients = [Client(a) for a in fleet.addresses]
    try:
        wf = WorkflowBuilder(WORKFLOW)
        for step in ("a", "b", "c"):
            wf.add_step(step, "crash.nap", retry=RetryPolicy(max_attempts=50, initial_interval=0.1))
        async with asyncio.timeout(30):
            while True:
                try:
                    await clients[0].register_workflow(wf.build())
                    break
                except Exception:
                    await asyncio.sleep(0.2)
        end = time.monotonic() + chaos_s
        run = uuid.uuid4().hex[:8]
        submitters = [
            asyncio.create_task(
                _submit(clients, subs, lambda: time.monotonic() >= end, f"{run}-{k}")
            )
            for k in range(SUBMITTERS)
        ]
        deck: list[str] = []
        while time.monotonic() < end:
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            deck = deck or rng.sample(DECK, len(DECK))
            await fleet.strike(deck.pop(), rng)
        await asyncio.gather(*submitters)
        await redis.settle()
        ends = await asyncio.gather(*(_final_state(clients, tx) for tx in subs.accepted.values()))
        listed = await _listed(clients)
    finally:
        supervisor.cancel()
        for client in clients:
            await client.close()
        fleet.stop()
    txs = list(subs.accepted.values())
    return ChaosReport(
        what=what,
        chaos_s=chaos_s,
        redis_kind=redis.name,
        kills=fleet.kills,
        exits=fleet.exits,
        subs=subs,
        finals=Counter(state for state, _ in ends),
        run_again=sum(n for _, n in ends),
        listed=listed,
        unfinished=[
            tx for tx, (state, _) in zip(txs, ends, strict=True) if state in ("stuck", "lost")
        ],
        logs=log_dir,
    )


@pytest.mark.single_node
@pytest.mark.timeout(chaos_seconds(20) + GIVE_UP_S + SETTLE_S + 120)
async def test_every_accepted_workflow_ends_under_random_sigkills(tmp_path: Path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis")
    await redis.start()
    try:
        report = await run_chaos(
            SingleNode(redis), "a single-node Redis", chaos_seconds(20), tmp_path
        )
    finally:
        await redis.stop()
    print(report)
    report.check()


@pytest.mark.cluster_lane
@pytest.mark.timeout(chaos_seconds(45) + GIVE_UP_S + SETTLE_S + 180)
async def test_every_accepted_workflow_ends_when_redis_cluster_masters_are_killed(
    tmp_path: Path,
) -> None:
    cluster = RedisCluster(tmp_path / "cluster", node_timeout_ms=CLUSTER_NODE_TIMEOUT_MS)
    async with cluster:
        report = await run_chaos(
            ClusterMasters(cluster), "a 3-master Redis Cluster", chaos_seconds(45), tmp_path
        )
    print(report)
    report.check()
