"""The Redis Cluster test harness (tests/redis_cluster.py) against real redis-server processes."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.exceptions import ClusterDownError

from integration.helpers import wait_for
from redis_cluster import RedisCluster

pytestmark = pytest.mark.cluster


def _owner(rc: ClusterClient, key: str) -> int:
    """The port of the node that owns `key`'s slot, as the cluster client sees it."""
    node = rc.get_node_from_key(key)
    assert node is not None
    return int(node.port)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


async def test_cluster_is_formed(redis_cluster: RedisCluster) -> None:
    assert len(redis_cluster.nodes) == 3
    assert len({port for _, port, _ in redis_cluster.nodes}) == 3
    for i, (_, port, pid) in enumerate(redis_cluster.nodes):
        assert b"redis-server" in _cmdline(pid)
        info = await redis_cluster.cluster_info(i)
        assert info["cluster_state"] == "ok"
        assert info["cluster_known_nodes"] == "3"
        assert info["cluster_size"] == "3"
        views = await redis_cluster.cluster_nodes(i)
        assert {p for p, v in views.items() if v.healthy_master} == set(redis_cluster.ports)
        assert "myself" in views[port].flags
    async with aioredis.Redis.from_url(redis_cluster.url) as r:
        assert (await r.info("cluster"))["cluster_enabled"] == 1


async def test_writes_across_slots(redis_cluster: RedisCluster, uid: str) -> None:
    keys = [f"{uid}:{n}" for n in range(300)]
    async with ClusterClient.from_url(redis_cluster.url) as rc:
        pipe = rc.pipeline()
        for key in keys:
            pipe.set(key, key)
        assert await pipe.execute() == [True] * len(keys)
        owners = Counter(_owner(rc, key) for key in keys)
        assert set(owners) == set(redis_cluster.ports), "the keys span every node"
        assert await rc.mget_nonatomic(keys) == [key.encode() for key in keys]
    # Each key is stored on the node that owns its slot, and nowhere else.
    for _, port, _ in redis_cluster.nodes:
        async with aioredis.Redis(host="127.0.0.1", port=port) as r:
            stored = 0
            async for _ in r.scan_iter(match=f"{uid}:*", count=1000):
                stored += 1
            assert stored == owners[port]


@pytest.mark.slow
async def test_kill_node(tmp_path: Path) -> None:
    async with RedisCluster(tmp_path, node_timeout_ms=1000) as cluster:
        _, victim_port, victim_pid = cluster.nodes[2]
        async with ClusterClient.from_url(cluster.url) as rc:
            victim_key = next(f"k{n}" for n in range(1000) if _owner(rc, f"k{n}") == victim_port)
            await rc.set(victim_key, "before")

        assert cluster.kill_node(2) == victim_pid
        assert not cluster.alive(2)
        with pytest.raises(ProcessLookupError):
            os.kill(victim_pid, 0)
        with pytest.raises(RuntimeError):
            cluster.kill_node(2)  # never signals a pid that is gone

        async def survivors_see_failure() -> bool:
            for i in (0, 1):
                views = await cluster.cluster_nodes(i)
                info = await cluster.cluster_info(i)
                if "fail" not in views[victim_port].flags or info["cluster_state"] != "fail":
                    return False
            return True

        # Failure detection takes node_timeout plus a gossip round or two.
        await wait_for(survivors_see_failure, timeout=15, interval=0.05)
        # With full slot coverage required (the default), the survivors refuse queries.
        async with aioredis.Redis.from_url(cluster.node_url(0)) as r:
            with pytest.raises(ClusterDownError):
                await r.get("any")
        pids = [pid for _, _, pid in cluster.nodes]
    # stop() handled the dead node and stopped the others.
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.slow
async def test_a_killed_node_restarted_in_place_rejoins_with_its_data(tmp_path: Path) -> None:
    async with RedisCluster(tmp_path, node_timeout_ms=1000) as cluster:
        _, victim_port, victim_pid = cluster.nodes[1]
        async with ClusterClient.from_url(cluster.url) as rc:
            victim_keys = [f"k{n}" for n in range(1000) if _owner(rc, f"k{n}") == victim_port]
            for key in victim_keys:
                await rc.set(key, key)
        cluster.kill_node(1)

        async def survivors_see_it_failed() -> bool:
            views = [await cluster.cluster_nodes(i) for i in (0, 2)]
            return all("fail" in v[victim_port].flags for v in views)

        await wait_for(survivors_see_it_failed, timeout=15, interval=0.05)
        with pytest.raises(RuntimeError):
            await cluster.restart_node(0)  # a running node is not started twice
        pid = await cluster.restart_node(1)
        assert pid != victim_pid and cluster.nodes[1] == ("127.0.0.1", victim_port, pid)
        assert b"redis-server" in _cmdline(pid)
        # The same node: its peers clear the FAIL flag and it serves its slots again.
        await cluster.wait_healthy(timeout=20)
        async with ClusterClient.from_url(cluster.url) as rc:
            assert _owner(rc, victim_keys[0]) == victim_port
            # Its append-only file gave back what it had acknowledged.
            assert await rc.mget_nonatomic(victim_keys) == [k.encode() for k in victim_keys]
