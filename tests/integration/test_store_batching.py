"""The store's shared pipelines, the orchestrator's memory of the executions it
committed, and the pruning of the index by retention, against a real Redis
(no gRPC): what must hold however they are batched or cached."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from redis.exceptions import ResponseError

from integration.helpers import make_config
from multiagents_server import engine
from multiagents_server.embedded_redis import EmbeddedRedis
from multiagents_server.orchestrator import Orchestrator
from multiagents_server.store import Keys, Store
from multiagents_server.store.autopipeline import AutoPipeline

SPEC = engine.WorkflowSpec(
    "two_steps",
    1,
    (engine.StepSpec("one", "w_one"), engine.StepSpec("two", "w_two", compensation="undo")),
)


@pytest.fixture
async def client(redis_server: EmbeddedRedis) -> AsyncIterator[redis.Redis]:
    c = redis.Redis.from_url(redis_server.url, decode_responses=False)
    yield c
    await c.aclose()


def replica(client: redis.Redis, prefix: str, **config: object) -> Orchestrator:
    """One server replica's orchestrator over the shared Redis."""
    cfg = make_config("unused", key_prefix=prefix, **config)
    return Orchestrator(Store(client, Keys(prefix)), cfg)


async def test_concurrent_operations_get_their_own_replies_and_errors(
    client: redis.Redis, uid: str
) -> None:
    auto = AutoPipeline(client, slots=2)

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
    client: redis.Redis, uid: str
) -> None:
    a, b = replica(client, uid), replica(client, uid)
    await a.register(SPEC)
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


async def test_remembered_state_loses_to_a_newer_commit(client: redis.Redis, uid: str) -> None:
    a, b = replica(client, uid), replica(client, uid)
    await a.register(SPEC)
    tx, _ = await a.execute(SPEC.name, {})
    await b.cancel(tx, "stop")  # B moves it on; A's memory is now stale
    transition = await a.apply(tx, engine.StepCompleted(f"{tx}:x0:1", {"late": True}))
    assert transition is not None and not transition.changed
    snap = await a.snapshot(tx)
    assert snap.execution.state is engine.State.CANCELLED
    assert snap.execution.step_results == {}


async def test_index_forgets_expired_executions_and_keeps_live_ones(
    client: redis.Redis, uid: str
) -> None:
    orch = replica(client, uid, retention_ms=50)
    await orch.register(SPEC)
    running, _ = await orch.execute(SPEC.name, {})
    finished = []
    for _ in range(3):
        tx, _ = await orch.execute(SPEC.name, {})
        await orch.cancel(tx, "done")  # terminal: expires after the retention
        finished.append(tx)
    await asyncio.sleep(0.2)
    keys = orch.store.keys
    assert not any([await client.exists(keys.execution(tx)) for tx in finished])
    orch._next_prune_ms = 0  # prune on the next finishing execution
    last, _ = await orch.execute(SPEC.name, {})
    await orch.cancel(last, "done")
    indexed = {m.decode() for m in await client.zrange(keys.index, 0, -1)}
    assert running in indexed and last in indexed
    assert not indexed & set(finished)


async def test_index_pruning_continues_past_many_live_executions(
    client: redis.Redis, uid: str
) -> None:
    store = Store(client, Keys(uid))
    keys = store.keys
    old = int(time.time() * 1000) - 60_000
    live = [f"live{i}" for i in range(5)]
    gone = [f"gone{i}" for i in range(5)]
    for i, tx in enumerate(live + gone):
        await client.zadd(keys.index, {tx: old + i})
    for tx in live:
        await client.hset(keys.execution(tx), "s", b"{}")
    after = float("-inf")
    for _ in range(10):
        resume = await store.prune_expired_index(after, old + 1000, 3)
        if resume is None:
            break
        after = resume
    indexed = {m.decode() for m in await client.zrange(keys.index, 0, -1)}
    assert indexed == set(live)
