"""A replica's lease renewed from a thread (see liveness.py): the only code
outside the event loop that talks to Redis, so it has a client of its own."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import redis
import redis.cluster
from redis.exceptions import RedisError


class LeaseKeeper:
    """Renews a replica's lease from a thread with its own Redis connection,
    every fifth of the lease, while the replica's event loop has renewed it
    within `stall_limit_ms`. The loop's own renewal goes through the shared
    pipeline, behind whatever a burst queued there, and waits its turn on a
    loop that may be seconds late on a saturated CPU; without this thread
    such a replica was fenced off and its steps failed as WorkerLost (seen
    under `bench.run`'s burst of 1,000 with 2 processes on 2 busy cores).
    A killed or paused process renews nothing, so failover time is
    unchanged. Only an existing lease is renewed (ZADD XX): a replica fenced
    off and forgotten by a reaper rejoins through its loop, not here."""

    def __init__(
        self, url: str, *, cluster: bool, key: str, replica_id: str, lease_ms: int,
        stall_limit_ms: int, loop_seen: Callable[[], float],
    ) -> None:  # fmt: skip
        self._url = url
        self._cluster = cluster
        self._key = key
        self._replica_id = replica_id
        self._lease_ms = lease_ms
        self._stall_limit_s = stall_limit_ms / 1000
        self._loop_seen = loop_seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._lease_ms / 1000 + 1)

    def _run(self) -> None:
        timeout = max(self._lease_ms / 5000, 0.1)
        client: redis.Redis | redis.cluster.RedisCluster
        if self._cluster:
            client = redis.cluster.RedisCluster.from_url(
                self._url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        else:
            client = redis.Redis.from_url(
                self._url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        try:
            while not self._stop.wait(timeout):
                if time.monotonic() - self._loop_seen() > self._stall_limit_s:
                    continue  # the loop is stuck: let the lease lapse
                # Redis away: the loop's renewal says so in the log.
                expires_ms = time.time_ns() // 1_000_000 + self._lease_ms
                with contextlib.suppress(RedisError):
                    client.zadd(self._key, {self._replica_id: expires_ms}, xx=True)
        finally:
            client.close()
