"""Redis key names: the only place that knows them.

The keyspace is split into a fixed number of buckets (recorded once in the
meta key). A transaction's bucket is derived from its id, so finding it needs
no lookup; a sub-workflow's id starts with its root's id and lands in the
same bucket. Every key an execution owns and every per-bucket structure
(timers, index, command queues, the fencing members) carries the bucket's
hash tag `{b}`: one bucket is one Redis Cluster slot, so one Lua call can
commit a transition atomically on a single node or on a cluster.

Rare global data (definitions, the replica registry, monitoring counters)
lives under the tag `{g}`, in one slot of its own; shared rate limits and
concurrency keys under `{l}`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

DISPATCH_GROUP = "dispatchers"
DEFAULT_BUCKETS = 64


def root_transaction(transaction_id: str) -> str:
    """The id of the top-level execution that `transaction_id` belongs to."""
    return transaction_id.split(".", 1)[0]


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix, for a keyspace of `buckets` buckets."""

    prefix: str
    buckets: int = DEFAULT_BUCKETS

    def bucket_of(self, transaction_id: str) -> int:
        return zlib.crc32(root_transaction(transaction_id).encode()) % self.buckets

    def schedule_bucket(self, schedule_id: str) -> int:
        """The bucket of a schedule: its record and its timer live there."""
        return zlib.crc32(f"schedule/{schedule_id}".encode()) % self.buckets

    def _b(self, bucket: int) -> str:
        return f"{self.prefix}:{{{bucket}}}"

    # -- one execution (in its bucket) -------------------------------------------

    def execution(self, transaction_id: str) -> str:
        """Hash: `s` state JSON, `rev` revision, `ob` pending follow-ups."""
        return f"{self._b(self.bucket_of(transaction_id))}:wf:{transaction_id}"

    def history(self, transaction_id: str) -> str:
        return f"{self._b(self.bucket_of(transaction_id))}:h:{transaction_id}"

    def traces(self, transaction_id: str) -> str:
        """Hash of one execution's command traces (command id -> JSON)."""
        return f"{self._b(self.bucket_of(transaction_id))}:tr:{transaction_id}"

    def output(self, transaction_id: str) -> str:
        """Stream of the execution's step output (chunks, rewinds), capped."""
        return f"{self._b(self.bucket_of(transaction_id))}:out:{transaction_id}"

    def progress(self, transaction_id: str) -> str:
        """Hash of one execution's latest progress per command (command id -> record)."""
        return f"{self._b(self.bucket_of(transaction_id))}:pg:{transaction_id}"

    # -- per bucket ---------------------------------------------------------------

    def timers(self, bucket: int) -> str:
        """Sorted set of the bucket's timers (`<tx>|<timer>` by due ms)."""
        return f"{self._b(bucket)}:timers"

    def index(self, bucket: int) -> str:
        """Sorted set of the bucket's executions by creation time."""
        return f"{self._b(bucket)}:index"

    def waits(self, bucket: int) -> str:
        """Hash tx -> JSON of its waits for a signal now (the approval inbox)."""
        return f"{self._b(bucket)}:waits"

    def schedules(self, bucket: int) -> str:
        """Hash schedule id -> JSON record (definition and firing state)."""
        return f"{self._b(bucket)}:sched"

    def schedule_revisions(self, bucket: int) -> str:
        """Hash schedule id -> revision; kept after a delete, so a schedule
        created again under the same id never takes an old revision."""
        return f"{self._b(bucket)}:schedrev"

    def queue(self, bucket: int, worker: str) -> str:
        """Stream of commands for one worker name in one bucket."""
        return f"{self._b(bucket)}:q:{worker}"

    def usage(self, bucket: int) -> str:
        """Hash `<workflow name>|in|out|cost` -> the sums over the bucket's
        executions of that name (tokens, nano-USD); kept without expiry."""
        return f"{self._b(bucket)}:usage"

    def members(self, bucket: int) -> str:
        """Hash replica id -> epoch: who may commit into this bucket (fencing)."""
        return f"{self._b(bucket)}:members"

    # -- global (tag {g}) ---------------------------------------------------------

    @property
    def _g(self) -> str:
        return f"{self.prefix}:{{g}}"

    @property
    def meta(self) -> str:
        """Hash: `buckets`, fixed when the keyspace is first used."""
        return f"{self._g}:meta"

    @property
    def epoch(self) -> str:
        """Counter handing out replica epochs."""
        return f"{self._g}:epoch"

    def definition(self, name: str) -> str:
        return f"{self._g}:def:{name}"

    @property
    def definitions(self) -> str:
        return f"{self._g}:defs"

    @property
    def worker_names(self) -> str:
        """Set of worker names that ever had a command queue."""
        return f"{self._g}:workers"

    @property
    def replicas(self) -> str:
        """Sorted set of replica ids scored by lease expiry."""
        return f"{self._g}:replicas"

    def sessions(self, replica_id: str) -> str:
        """Hash of one replica's worker sessions (session id -> JSON)."""
        return f"{self._g}:sessions:{replica_id}"

    def resume(self, holder: str) -> str:
        """The in-flight commands of an ended worker session, kept (with a TTL)
        for its worker to resume; `holder` hashes its resume token and worker id."""
        return f"{self._g}:resume:{holder}"

    def served(self, replica_id: str) -> str:
        """Set of the worker names one replica's sessions served."""
        return f"{self._g}:served:{replica_id}"

    def worker_stats(self, worker: str) -> str:
        """Hash of a worker name's counters: succeeded, failed, err:<type>."""
        return f"{self._g}:stats:{worker}"

    def worker_durations(self, worker: str) -> str:
        """Capped list of a worker name's recent processing times (ms)."""
        return f"{self._g}:durations:{worker}"

    @property
    def recent_traces(self) -> str:
        """Capped list of the newest command traces of every execution."""
        return f"{self._g}:traces"

    # -- shared limits (tag {l}) -----------------------------------------------------
    # Every limit lives in one slot of its own, so one script call takes a
    # step's places in all of its keys at once (all or nothing).

    @property
    def limits(self) -> str:
        """Hash: declared key (a prefix ends in `*`) -> JSON of the limit."""
        return f"{self.prefix}:{{l}}:limits"

    def limit_state(self, key: str) -> str:
        """Hash of one key's state: `tok`/`ts` (token level and when it was
        taken), `until` (backed off until)."""
        return f"{self.prefix}:{{l}}:ls:{key}"

    def limit_starts(self, key: str) -> str:
        """Sorted set of the commands started in the last period, by start ms."""
        return f"{self.prefix}:{{l}}:lr:{key}"

    def limit_holders(self, key: str) -> str:
        """Sorted set of the commands holding a place of one key, by lease end."""
        return f"{self.prefix}:{{l}}:lh:{key}"

    @property
    def bus(self) -> str:
        """Pub/sub channel of live notifications (history events, wake-ups,
        cancels, registered definitions)."""
        return f"{self.prefix}:bus"

    @staticmethod
    def timer_member(transaction_id: str, timer_id: str) -> str:
        return f"{transaction_id}|{timer_id}"

    @staticmethod
    def parse_timer_member(member: str) -> tuple[str, str]:
        transaction_id, _, timer_id = member.partition("|")
        return transaction_id, timer_id
