"""The store's shared pipelines, the one-call commit with its fencing and its
claim of the next command, the orchestrator's memory of the executions it
committed, and the pruning of the index by retention, against a real Redis
(no gRPC): what must hold however they are batched or cached."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.exceptions import ResponseError

from conftest import CLUSTER_LANE
from integration.helpers import make_config, wait_for
from multiagents.v1 import worker_service_pb2 as wpb
from multiagents_server import engine
from multiagents_server.embedded_redis import EmbeddedRedis
from multiagents_server.orchestrator import Orchestrator
from multiagents_server.store import CommandEntry, Commit, Fenced, open_store
from multiagents_server.store.autopipeline import AutoPipeline

SPEC = engine.WorkflowSpec(
    "two_steps",
    1,
    (engine.StepSpec("one", "w_one"), engine.StepSpec("two", "w_two", compensation="undo")),
)


@pytest.fixture
async def client(redis_server: EmbeddedRedis) -> AsyncIterator[Any]:
    """A plain redis-py client of the session's Redis (a cluster client in the cluster lane)."""
    c: Any
    if CLUSTER_LANE:
        c = ClusterClient.from_url(redis_server.url, decode_responses=False)
    else:
        c = redis.Redis.from_url(redis_server.url, decode_responses=False)
    yield c
    await c.aclose()


@pytest.fixture
async def replica(redis_server: EmbeddedRedis) -> AsyncIterator[Callable[..., Any]]:
    """Makes server replicas' orchestrators (joined, no gRPC) over the shared Redis."""
    stores = []

    async def make(prefix: str, *, buckets: int = 64, **config: object) -> Orchestrator:
        cfg = make_config("unused", key_prefix=prefix, **config)
        store = await open_store(redis_server.url, prefix=prefix, buckets=buckets)
        stores.append(store)
        orchestrator = Orchestrator(store, cfg, replica_id=uuid.uuid4().hex[:12])
        await orchestrator.join()
        return orchestrator

    yield make
    for store in stores:
        await store.close()


class Claims:
    """A replica's local sessions, as the commit path sees them: `free` slots."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.delivered: list[CommandEntry] = []

    def reserve(self, worker: str) -> bool:
        if self.free == 0:
            return False
        self.free -= 1
        return True

    def release(self, worker: str) -> None:
        self.free += 1

    def deliver(self, entries: Sequence[CommandEntry]) -> None:
        self.delivered += entries


async def test_concurrent_operations_get_their_own_replies_and_errors(
    client: redis.Redis, uid: str
) -> None:
    auto = AutoPipeline(client, cluster=CLUSTER_LANE, slots=2)

    async def op(i: int) -> list[object]:
        cmds = auto.commands()
        cmds.set(f"{uid}:{i}", i)
        cmds.get(f"{uid}:{i}")
        if i % 10 == 3:
            cmds.hget(f"{uid}:{i}", "field")  # WRONGTYPE: fails this operation only
        return await cmds.execute()

    results = await asyncio.gather(*(op(i) for i in range(1200)), return_exceptions=True)
    for i, result in enumerate(results):
        if i % 10 == 3:
            assert isinstance(result, ResponseError)
        else:
            assert result == [True, str(i).encode()]


@pytest.mark.single_node
async def test_shared_pipeline_reconnects_after_its_connection_is_dropped(
    client: redis.Redis, uid: str
) -> None:
    auto = AutoPipeline(client, slots=1)
    cmds = auto.commands()
    cmds.client_id()
    (connection_id,) = await cmds.execute()
    await client.client_kill_filter(_id=connection_id)
    cmds = auto.commands()
    cmds.set(f"{uid}:after", 1)
    cmds.get(f"{uid}:after")
    assert await cmds.execute() == [True, b"1"]


async def test_result_after_another_replica_moved_the_execution_on_is_judged_on_stored_state(
    replica: Callable[..., Any], uid: str
) -> None:
    a, b = await replica(uid), await replica(uid)
    await a.definitions.register(SPEC)
    tx, _ = await a.execute(SPEC.name, {"n": 1})  # replica A remembers revision 1
    first = f"{tx}:x0:1"
    await b.apply(tx, engine.StepCompleted(first, {"a": 1}))  # B dispatches step two
    second = f"{tx}:x1:1"
    # A's remembered state still waits for step one: the stale-looking answer
    # for step two must be judged on the stored state, not dropped.
    transition = await a.apply(tx, engine.StepCompleted(second, {"b": 2}))
    assert transition is not None and transition.changed
    snap = await a.snapshot(tx)
    assert snap.execution.state is engine.State.COMPLETED
    assert snap.execution.step_results == {"one": {"a": 1}, "two": {"b": 2}}


async def test_remembered_state_loses_to_a_newer_commit(
    replica: Callable[..., Any], uid: str
) -> None:
    a, b = await replica(uid), await replica(uid)
    await a.definitions.register(SPEC)
    tx, _ = await a.execute(SPEC.name, {})
    await b.cancel(tx, "stop")  # B moves it on; A's memory is now stale
    transition = await a.apply(tx, engine.StepCompleted(f"{tx}:x0:1", {"late": True}))
    assert transition is not None and not transition.changed
    snap = await a.snapshot(tx)
    assert snap.execution.state is engine.State.CANCELLED
    assert snap.execution.step_results == {}


async def test_index_forgets_expired_executions_and_keeps_live_ones(
    client: redis.Redis, replica: Callable[..., Any], uid: str
) -> None:
    orch = await replica(uid, buckets=1, retention_ms=50)
    await orch.definitions.register(SPEC)
    running, _ = await orch.execute(SPEC.name, {})
    finished = []
    for _ in range(3):
        tx, _ = await orch.execute(SPEC.name, {})
        await orch.cancel(tx, "done")  # terminal: expires after the retention
        finished.append(tx)
    keys = orch.store.keys

    async def expired() -> bool:
        return not any([await client.exists(keys.execution(tx)) for tx in finished])

    await wait_for(expired, timeout=5)
    orch._next_prune_ms = 0  # prune on the next finishing execution
    last, _ = await orch.execute(SPEC.name, {})
    await orch.cancel(last, "done")
    indexed = {m.decode() for m in await client.zrange(keys.index(0), 0, -1)}
    assert running in indexed and last in indexed
    assert not indexed & set(finished)


async def test_index_pruning_continues_past_many_live_executions(
    client: redis.Redis, replica: Callable[..., Any], uid: str
) -> None:
    store = (await replica(uid, buckets=1)).store
    keys = store.keys
    old = int(time.time() * 1000) - 60_000
    live = [f"live{i}" for i in range(5)]
    gone = [f"gone{i}" for i in range(5)]
    for i, tx in enumerate(live + gone):
        await client.zadd(keys.index(0), {tx: old + i})
    for tx in live:
        await client.hset(keys.execution(tx), "s", b"{}")
    after = float("-inf")
    for _ in range(10):
        resume = await store.prune_expired_index(0, after, old + 1000, 3)
        if resume is None:
            break
        after = resume
    indexed = {m.decode() for m in await client.zrange(keys.index(0), 0, -1)}
    assert indexed == set(live)


async def test_the_commit_claims_the_next_command_for_a_free_local_slot(
    client: redis.Redis, replica: Callable[..., Any], uid: str
) -> None:
    orch = await replica(uid)
    claims = Claims(free=1)
    orch.local = claims
    await orch.definitions.register(SPEC)
    claimed_tx, _ = await orch.execute(SPEC.name, {"n": 1})
    queued_tx, _ = await orch.execute(SPEC.name, {"n": 2})  # no slot left: stays queued
    assert [wpb.Command.FromString(e.command).transaction_id for e in claims.delivered] == [
        claimed_tx
    ]
    assert claims.free == 0
    keys = orch.store.keys
    entry = claims.delivered[0]
    bucket = keys.bucket_of(queued_tx)
    # (Both executions may share a bucket: then the claimed entry is left out.)
    entries = [
        (i, f)
        for i, f in await client.xrange(keys.queue(bucket, "w_one"))
        if (bucket, i) != (entry.bucket, entry.entry_id)
    ]
    assert [wpb.Command.FromString(f[b"c"]).transaction_id for _, f in entries] == [queued_tx]
    # The claimed entry is pending at this replica, acknowledged by the next commit.
    pending = await client.xpending(keys.queue(entry.bucket, entry.worker), "dispatchers")
    assert pending["pending"] == 1 and pending["min"] == entry.entry_id
    await orch.apply(claimed_tx, engine.StepCompleted(f"{claimed_tx}:x0:1", {}), ack=entry)
    left = await client.xrange(keys.queue(entry.bucket, entry.worker))
    assert entry.entry_id not in [i for i, _ in left]


async def test_a_fenced_replica_cannot_commit_until_it_rejoins(
    replica: Callable[..., Any], uid: str
) -> None:
    a, b = await replica(uid), await replica(uid)
    await a.definitions.register(SPEC)
    tx, _ = await a.execute(SPEC.name, {})
    fenced_epoch = a.epoch
    await b.store.fence(a.replica_id)  # what a live replica does to one whose lease expired
    # The fenced epoch writes nothing, even with the right revision...
    stored = await a.store.load(tx)
    assert stored is not None
    late = Commit(tx, stored.revision, b'{"late": true}')
    with pytest.raises(Fenced):
        await a.store.commit(late, replica_id=a.replica_id, epoch=fenced_epoch)
    assert await a.store.load(tx) == stored
    # ...and the orchestrator, refused once, rejoins with a new epoch and
    # judges the event again on the stored state.
    transition = await a.apply(tx, engine.StepCompleted(f"{tx}:x0:1", {"now": True}))
    assert a.epoch > fenced_epoch
    assert transition is not None and transition.changed
    snap = await b.snapshot(tx)
    assert snap.execution.step_results == {"one": {"now": True}}
