"""Opening the store: connect, find out what the Redis is (a single node or a
cluster, which version), refuse what cannot work with one clear line, load
the scripts and fix the bucket count of the keyspace."""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from multiagents_server.store.keys import DEFAULT_BUCKETS, Keys
from multiagents_server.store.records import StoreSetupError
from multiagents_server.store.store import Store

log = logging.getLogger(__name__)

# Needed: XREADGROUP inside scripts, HSET with several fields, ZADD/XADD as
# used by the scripts, XAUTOCLAIM-era stream semantics.
MIN_VERSION = (6, 2)
# redis-py's default pool fails past its limit instead of waiting; these
# pools wait for a free connection (up to POOL_WAIT_S) instead.
POOL_WAIT_S = 30
# A command that meets a connection closed under it (Redis restarted, an
# idle connection dropped on the way) is sent again once, at once, on a new
# connection; a Redis that is down refuses that one too, so failing stays
# fast. (A client built on a pool of its own gets no retry from redis-py.)
CONNECTION_RETRY = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
REDIS_MODES = ("auto", "standalone", "cluster")


async def open_store(
    url: str,
    *,
    prefix: str,
    mode: str = "auto",
    buckets: int = DEFAULT_BUCKETS,
    connections: int = 64,
) -> Store:
    """A store on the Redis at `url`, ready to use.

    `mode` is "auto" (detect `cluster_enabled`), "standalone" or "cluster";
    a mismatch, a Redis older than 6.2 or an unreachable one raises
    `StoreSetupError` with a one-line message.
    """
    if mode not in REDIS_MODES:
        raise StoreSetupError(f"redis_mode: must be one of {', '.join(REDIS_MODES)}, got {mode!r}")
    probe = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)
    try:
        info: dict[str, Any] = await probe.info("server")
        cluster_info: dict[str, Any] = await probe.info("cluster")
        durability = await _durability_gap(probe)
    except RedisError as exc:
        raise StoreSetupError(f"cannot reach Redis at {url}: {exc}") from None
    finally:
        await probe.aclose()
    if durability:
        log.warning("Redis at %s: %s (docs/guarantees.md)", url, durability)
    version = str(info.get("redis_version", "0"))
    if _version(version) < MIN_VERSION:
        raise StoreSetupError(
            f"Redis at {url} is version {version}; MultiAgents needs Redis "
            f"{'.'.join(map(str, MIN_VERSION))} or newer"
        )
    cluster = bool(int(cluster_info.get("cluster_enabled", 0)))
    if mode == "standalone" and cluster:
        raise StoreSetupError(
            f"Redis at {url} is a Redis Cluster node but redis_mode is 'standalone'; "
            "use redis_mode 'auto' or 'cluster'"
        )
    if mode == "cluster" and not cluster:
        raise StoreSetupError(
            f"Redis at {url} is not in cluster mode (cluster_enabled:0) but redis_mode is 'cluster'"
        )
    client: Any
    if cluster:
        client = RedisCluster.from_url(url, decode_responses=False, max_connections=connections * 4)
        try:
            await client.initialize()
        except RedisError as exc:
            await client.aclose()
            raise StoreSetupError(f"Redis Cluster at {url} is not usable: {exc}") from None
    else:
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=connections,
            timeout=POOL_WAIT_S,
            decode_responses=False,
            retry=CONNECTION_RETRY,
        )
        client = redis.Redis.from_pool(pool)  # closing the client closes its pool
    try:
        keys = Keys(prefix, await _bucket_count(client, Keys(prefix), buckets))
        store = Store(client, keys, cluster=cluster)
        await store.load_scripts()
    except RedisError as exc:
        # E.g. a cluster with a master down refuses every command (CLUSTERDOWN).
        await client.aclose()
        raise StoreSetupError(f"Redis at {url} does not serve: {exc}") from None
    except BaseException:
        await client.aclose()
        raise
    log.info(
        "store opened",
        extra={"redis": url, "cluster": cluster, "version": version, "buckets": keys.buckets},
    )
    return store


async def _durability_gap(probe: Any) -> str | None:
    """What the node at the probe can lose of what it acknowledged, if
    anything: the guarantees need its append-only file on and synced before
    each answer (`appendonly yes`, `appendfsync always`). None when it keeps
    everything, or when its configuration is not readable (CONFIG disabled,
    as on some managed services)."""
    persistence: dict[str, Any] = await probe.info("persistence")
    if not int(persistence.get("aof_enabled", 0)):
        return (
            "appendonly is off: a restart of Redis loses the workflows, commands "
            "and results it holds"
        )
    try:
        fsync = (await probe.config_get("appendfsync")).get("appendfsync")
    except RedisError:
        return None
    if fsync == "everysec":
        return (
            "appendfsync is everysec: a SIGKILL of redis-server while its disk is "
            "busy, or a power loss, can lose up to 2 s of writes it acknowledged; "
            "appendfsync always keeps them"
        )
    if fsync == "no":
        return (
            "appendfsync is no: a power loss can lose the writes of the last 30 s "
            "or so; appendfsync always keeps them"
        )
    return None


async def _bucket_count(client: Any, keys: Keys, wanted: int) -> int:
    """The keyspace's bucket count: fixed by the first server that used it."""
    await client.hsetnx(keys.meta, "buckets", wanted)
    stored = int(await client.hget(keys.meta, "buckets"))
    if stored != wanted:
        log.warning(
            "the keyspace has %d buckets (fixed when it was first used); %d ignored",
            stored, wanted,
        )  # fmt: skip
    return stored


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split(".")[:2]:
        try:
            parts.append(int(part))
        except ValueError:
            parts.append(0)
    return tuple(parts)
