"""A replica's lease and a slow event loop (liveness.LeaseKeeper): a loop
held up for longer than the lease (a burst of work on a saturated CPU) does
not lose the lease, so no other replica fences it off and fails its steps as
WorkerLost; a loop stuck past `replica_stall_limit_ms` does lose it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
import redis.cluster

from integration.helpers import make_config
from multiagents_server.app import Server
from multiagents_server.config import ConfigError, load_config
from multiagents_server.orchestrator import now_ms

LEASE_MS = 1_000
BLOCKED_S = 4.0  # four leases


@contextmanager
def watching_the_lease(server: Server, url: str) -> Iterator[list[int]]:
    """From a thread (the loop will be blocked): the lease's time left, in ms,
    sampled every 50 ms while the block lasts."""
    store: Any = server._store
    cls: Any = redis.cluster.RedisCluster if store.cluster else redis.Redis
    client = cls.from_url(url)
    left: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            score = client.zscore(store.keys.replicas, server.replica_id)
            left.append(-1 if score is None else int(score) - now_ms())

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        yield left
    finally:
        done.set()
        thread.join()
        client.close()


async def test_a_loop_blocked_for_four_leases_keeps_its_lease(redis_server: Any) -> None:
    config = make_config(redis_server.url, replica_lease_ms=LEASE_MS)
    async with Server(config) as server:
        with watching_the_lease(server, redis_server.url) as left:
            time.sleep(BLOCKED_S)  # blocks the server's event loop: this one
    assert len(left) > BLOCKED_S / 0.05 / 2
    assert min(left) > 0, f"the lease lapsed while the loop was blocked: {left}"


async def test_a_loop_stuck_past_the_stall_limit_loses_its_lease(redis_server: Any) -> None:
    config = make_config(
        redis_server.url, replica_lease_ms=LEASE_MS, replica_stall_limit_ms=LEASE_MS
    )
    async with Server(config) as server:
        with watching_the_lease(server, redis_server.url) as left:
            time.sleep(BLOCKED_S)
    # Renewed until the loop had not turned for the stall limit, then lapsed.
    assert left[0] > 0
    assert min(left) < 0, f"the lease of a stuck loop was kept: {left}"


def test_the_lease_settings_must_be_positive() -> None:
    env = {"MULTIAGENTS_REPLICA_STALL_LIMIT_MS": "0"}
    with pytest.raises(ConfigError, match="replica_stall_limit_ms: must be a positive"):
        load_config({}, environ=env)
    with pytest.raises(ConfigError, match="replica_lease_ms: must be a positive"):
        load_config({"replica_lease_ms": -1}, environ={})
    assert load_config({}, environ={}).replica_stall_limit_ms == 15_000
