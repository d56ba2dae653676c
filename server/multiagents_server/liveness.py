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
and failed as `WorkerLost` (retried). Commands pending at a consumer that
no registered replica is (one forgotten while it was alive) are reclaimed
the same way, and commands pending at this replica without its knowing
are sent again (`Dispatcher.recover_lost`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

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
        # Consumers holding commands that are no registered replica, and
        # since when this replica has seen them so (see `reap_unregistered`).
        self._unregistered: dict[str, int] = {}
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
        reclaimed = 0
        for replica in dead:
            workers = await self.store.served_by(replica)
            found = await self._reap(replica, workers, self.store.buckets)
            await self.store.forget_replica(replica)
            log.warning(
                "fenced off a dead replica and reclaimed its commands",
                extra={"replica": replica, "commands": found},
            )
            reclaimed += found
        return reclaimed

    async def recover_lost_commands(self) -> None:
        """Commands pending where nobody will answer for them: at this replica
        without its knowing, or at a consumer no longer registered."""
        await self.dispatcher.recover_lost()
        await self.reap_unregistered()

    async def reap_unregistered(self) -> int:
        """Claim the commands pending at consumers that are no registered
        replica; those fail as WorkerLost (and are retried).

        A reaper that finds a replica's lease expired fences it off and
        forgets it, but that replica may be alive (paused, or cut off by a
        Redis outage that let every lease expire): it rejoins and renews,
        and may take commands before it does. Should it die in between,
        nothing registered would name it. Looked for in the queues of the
        buckets whose timers this replica fires (each bucket by one replica);
        a consumer is reaped once it has stayed unregistered for a lease.
        """
        buckets = list(self.owned_buckets)
        registered = {r for r, _ in await self.store.replicas()} | {self.replica_id}
        workers = await self.store.known_workers()
        holders = await self.store.pending_holders(workers, buckets)
        now = self.dispatcher.clock
        unregistered = {c: sorted(w) for c, w in holders.items() if c not in registered}
        self._unregistered = {c: self._unregistered.get(c, now) for c in unregistered}
        reclaimed = 0
        for consumer, names in unregistered.items():
            if now - self._unregistered[consumer] < self.config.replica_lease_ms:
                continue
            found = await self._reap(consumer, names, buckets)
            reclaimed += found
            log.warning(
                "reclaimed the commands held by a replica no longer registered",
                extra={"replica": consumer, "commands": found},
            )
        return reclaimed

    async def _reap(self, replica: str, workers: Sequence[str], buckets: Sequence[int]) -> int:
        """Fence `replica` off, fail the commands pending at it in `buckets`
        as WorkerLost, forget its consumer there; how many it held."""
        # Fenced first: from here on the replica cannot commit, so nothing
        # it still holds can be applied twice.
        await self.store.fence(replica)
        failure = failures.worker_lost(f"server replica {replica} lost")
        now = self.dispatcher.clock
        reclaimed = 0
        while True:
            entries = await self.store.claim_pending_of(
                replica, self.replica_id, workers, buckets=buckets
            )
            if not entries:
                break
            lost = []
            for entry in entries:
                command = wpb.Command.FromString(entry.command)
                lost.append(Inflight(
                    command.command_id, entry, now, 0,
                    step=command.step, correlation_id=command.correlation_id,
                    limit_keys=tuple(command.rate_limits.keys),
                ))  # fmt: skip
            await self.dispatcher.fail_lost(lost, failure)
            reclaimed += len(entries)
        await self.store.delete_consumer(replica, workers, buckets)
        return reclaimed
