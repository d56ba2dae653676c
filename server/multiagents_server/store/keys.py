"""Redis key names: the only place that knows them.

Keys of one execution share the hash tag `{<transaction id>}`, so every Lua
script touches one Redis Cluster slot. Shared keys (command streams, timers,
the index) are touched only by single-key commands.
"""

from __future__ import annotations

from dataclasses import dataclass

DISPATCH_GROUP = "dispatchers"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix."""

    prefix: str

    def execution(self, transaction_id: str) -> str:
        return f"{self.prefix}:wf:{{{transaction_id}}}"

    def history(self, transaction_id: str) -> str:
        return f"{self.prefix}:hist:{{{transaction_id}}}"

    def commands(self, worker: str) -> str:
        """Stream of commands for one worker name (the worker's queue)."""
        return f"{self.prefix}:cmd:{{{worker}}}"

    def definition(self, name: str) -> str:
        return f"{self.prefix}:def:{{{name}}}"

    @property
    def definitions(self) -> str:
        return f"{self.prefix}:defs"

    @property
    def timers(self) -> str:
        return f"{self.prefix}:timers"

    @property
    def index(self) -> str:
        """Sorted set of every execution by creation time."""
        return f"{self.prefix}:index"

    @property
    def worker_names(self) -> str:
        """Set of worker names that ever had a command stream."""
        return f"{self.prefix}:workers"

    @property
    def replicas(self) -> str:
        """Sorted set of replica ids scored by lease expiry."""
        return f"{self.prefix}:replicas"

    def sessions(self, replica_id: str) -> str:
        """Hash of one replica's worker sessions (session id -> JSON)."""
        return f"{self.prefix}:sessions:{{{replica_id}}}"

    def worker_stats(self, worker: str) -> str:
        """Hash of a worker name's counters: succeeded, failed, err:<type>."""
        return f"{self.prefix}:stats:{{{worker}}}"

    def worker_durations(self, worker: str) -> str:
        """Capped list of a worker name's recent processing times (ms)."""
        return f"{self.prefix}:durations:{{{worker}}}"

    def traces(self, transaction_id: str) -> str:
        """Hash of one execution's command traces (command id -> JSON)."""
        return f"{self.prefix}:trace:{{{transaction_id}}}"

    @property
    def recent_traces(self) -> str:
        """Capped list of the newest command traces of every execution."""
        return f"{self.prefix}:traces"

    @property
    def events_channel(self) -> str:
        """Pub/sub channel of every history event (live fan-out only)."""
        return f"{self.prefix}:events"

    @property
    def cancel_channel(self) -> str:
        """Pub/sub channel of command cancellations, for the replica holding the command."""
        return f"{self.prefix}:cancel"

    def timer_member(self, transaction_id: str, timer_id: str) -> str:
        return f"{transaction_id}|{timer_id}"

    @staticmethod
    def parse_timer_member(member: str) -> tuple[str, str]:
        transaction_id, _, timer_id = member.partition("|")
        return transaction_id, timer_id
