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

import logging
import time

from multiagents.v1 import worker_service_pb2 as wpb
from multiagents_server.config import ServerConfig
from multiagents_server.dispatcher import Dispatcher, Inflight
from multiagents_server.engine import failures
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
