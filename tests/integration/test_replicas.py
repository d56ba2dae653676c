"""Two server replicas in this process over the session's Redis: what one
learns, the other must not miss."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from integration.helpers import make_config, wait_for
from multiagents import Client, WorkflowBuilder
from multiagents_server.app import Server
from multiagents_server.embedded_redis import EmbeddedRedis


@pytest.fixture
async def two_replicas(redis_server: EmbeddedRedis) -> AsyncIterator[tuple[Server, Server]]:
    config = make_config(redis_server.url)
    async with Server(config) as a, Server(config) as b:
        yield a, b


async def test_a_new_version_registered_on_one_replica_is_the_latest_on_the_other(
    two_replicas: tuple[Server, Server], uid: str
) -> None:
    a, b = two_replicas
    async with Client(a.address) as on_a, Client(b.address) as on_b:
        await on_a.register_workflow(WorkflowBuilder(uid, version=1).add_step("s", "w1").build())
        first = await on_b.execute_workflow(uid, {})  # B now knows version 1 as the latest
        assert (await on_b.get_status(first)).workflow_version == 1
        await on_a.register_workflow(WorkflowBuilder(uid, version=2).add_step("s", "w2").build())

        async def latest_is_two() -> bool:
            tx = await on_b.execute_workflow(uid, {})
            return (await on_b.get_status(tx)).workflow_version == 2

        await wait_for(latest_is_two, timeout=5, interval=0.05)
