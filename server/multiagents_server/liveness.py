"""Replica liveness: the lease, the share of the buckets' timers, and the
fencing of replicas whose lease expired.

Each replica renews its lease (with its session list, for ListWorkers) every
fifth of `replica_lease_ms`; a thread of its own (`LeaseKeeper`) renews it
too, so a replica whose event loop is slow (a burst of work on a saturated
CPU) is not taken for dead: only a process that is gone, paused, or whose
loop has not turned for `replica_stall_limit_ms` loses its lease.

Bucket b's timers belong to the b-th live replica (modulo their count). A
replica whose lease has expired is fenced off every bucket — from then on
its commits are refused — and only then are its pending commands claimed
and failed as `WorkerLost` (retried).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import redis
import redis.cluster
from redis.exceptions import RedisError

from multiagents.v1 import worker_service_pb2 as wpb
from multiagents_server.config import ServerConfig
from multiagents_server.dispatcher import Dispatcher, Inflight
from multiagents_server.engine import failures
from multiagents_server.orchestrator import now_ms
from multiagents_server.store import Store

log = logging.getLogger(__name__)


class Liveness:
    """One replica's lease and its view of the others."""

    def __init__(
        self, store: Store, config: ServerConfig, dispatcher: Dispatcher, *, replica_id: str
    ) -> None:
        self.store = store
        self.config = config
        self.dispatcher = dispatcher
        self.replica_id = replica_id
        # The buckets whose timers this replica fires (see `renew_lease`).
        self.owned_buckets: list[int] = list(store.buckets)
        # When the event loop last came to renew the lease (LeaseKeeper's proof
        # that the loop still turns).
        self.loop_seen = time.monotonic()
        dispatcher.on_sessions_changed = self.renew_lease

    async def renew_lease(self) -> None:
        """Renew this replica's lease, publish its sessions, and take its share
        of the buckets' timers (bucket b goes to the b-th live replica, modulo)."""
        self.loop_seen = time.monotonic()
        now = self.dispatcher.clock
        lease = self.config.replica_lease_ms
        await self.store.renew_lease(
            self.replica_id, now + lease, self.dispatcher.session_infos(), lease
        )
        served = self.dispatcher.served_names()
        if served:  # again: a reaper that fenced this replica off forgot them
            await self.store.add_served(self.replica_id, served)
        live = sorted(
            {r for r, expires in await self.store.replicas() if expires >= now} | {self.replica_id}
        )
        me = live.index(self.replica_id)
        self.owned_buckets = [b for b in self.store.buckets if b % len(live) == me]

    async def reap_dead_replicas(self) -> int:
        """Fence off replicas whose lease expired, then claim the commands
        pending at them; those fail as WorkerLost (and are retried)."""
        now = self.dispatcher.clock
        dead = [
            r for r, expires in await self.store.replicas()
            if expires < now and r != self.replica_id
        ]  # fmt: skip
        if not dead:
            return 0
        reclaimed = 0
        for replica in dead:
            workers = await self.store.served_by(replica)
            # Fenced first: from here on the dead replica cannot commit, so
            # nothing it still holds can be applied twice.
            await self.store.fence(replica)
            failure = failures.worker_lost(f"server replica {replica} lost")
            while True:
                entries = await self.store.claim_pending_of(replica, self.replica_id, workers)
                if not entries:
                    break
                for entry in entries:
                    command = wpb.Command.FromString(entry.command)
                    inflight = Inflight(
                        command.command_id, entry, now, 0,
                        step=command.step, correlation_id=command.correlation_id,
                        limit_keys=tuple(command.rate_limits.keys),
                    )  # fmt: skip
                    await self.dispatcher.fail_lost(inflight, failure)
                reclaimed += len(entries)
            await self.store.delete_consumer(replica, workers)
            await self.store.forget_replica(replica)
            log.warning(
                "fenced off a dead replica and reclaimed its commands",
                extra={"replica": replica, "commands": reclaimed},
            )
        return reclaimed


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
                with contextlib.suppress(RedisError):
                    client.zadd(self._key, {self._replica_id: now_ms() + self._lease_ms}, xx=True)
        finally:
            client.close()
