"""Redis storage and bus: executions, history, definitions, command streams,
timers, replica leases. Values cross this boundary as bytes and strings; the
store knows key names and Redis commands, not the engine's types."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis
from redis.exceptions import ResponseError

from multiagents_server.store import scripts
from multiagents_server.store.autopipeline import AutoPipeline
from multiagents_server.store.keys import DISPATCH_GROUP, Keys

FLUSH_TIMER = "flush"


@dataclass(frozen=True, slots=True)
class Stored:
    """One execution as stored: its JSON, revision and pending outbox."""

    state: bytes
    revision: int
    outbox: bytes | None


DURATIONS_KEPT = 1000
RECENT_TRACES_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class OutcomeRecord:
    """Monitoring record of one answered command: counters, timing, trace."""

    worker: str
    transaction_id: str
    command_id: str
    success: bool
    error_type: str
    duration_ms: int
    # None when event monitoring is off; counters are skipped when
    # worker monitoring is off.
    trace: bytes | None
    trace_ttl_ms: int
    count: bool = True


@dataclass(slots=True)
class Outbox:
    """Side effects of one committed transition, carried out in one round trip."""

    commands: list[tuple[str, bytes]] = field(default_factory=list)
    schedule: list[tuple[str, int]] = field(default_factory=list)
    unschedule: list[str] = field(default_factory=list)
    cancels: list[bytes] = field(default_factory=list)
    events: list[bytes] = field(default_factory=list)
    ack: tuple[str, bytes] | None = None
    outcome: OutcomeRecord | None = None


@dataclass(frozen=True, slots=True)
class CommandEntry:
    """A command read from a worker's stream."""

    worker: str
    entry_id: bytes
    command: bytes


class Store:
    """All Redis access of a server replica."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        # Typed as Any on purpose: redis-py annotates replies as str/bytes
        # unions, but the client runs with decode_responses=False, so every
        # reply is bytes; this class converts them at its boundary.
        self.redis: Any = client
        self.keys = keys
        self._groups: set[str] = set()
        # The operations on a workflow's path (load, commit, carry out, ack)
        # share pipelines with the concurrent ones: a few round trips per
        # burst, and a bounded number of connections however many run at once.
        self._auto = AutoPipeline(client)

    # -- executions ----------------------------------------------------------

    async def load(self, transaction_id: str) -> Stored | None:
        cmds = self._auto.commands()
        cmds.hmget(self.keys.execution(transaction_id), ["s", "rev", "ob"])
        ((state, rev, outbox),) = await cmds.execute()
        if state is None:
            return None
        return Stored(state, int(rev), outbox)

    async def load_many(self, transaction_ids: Sequence[str]) -> list[Stored | None]:
        cmds = self._auto.commands()
        for tx in transaction_ids:
            cmds.hmget(self.keys.execution(tx), ["s", "rev", "ob"])
        rows = await cmds.execute()
        return [None if s is None else Stored(s, int(r), o) for s, r, o in rows]

    async def commit(
        self,
        transaction_id: str,
        expected_revision: int,
        state: bytes,
        history: Sequence[bytes],
        *,
        outbox: bytes | None,
        ttl_ms: int,
        flush_due_ms: int,
        created_ms: int | None = None,
    ) -> int | None:
        """Store a new state if the revision still matches; None on conflict.

        With an outbox, a 'flush' timer is set first: if this replica dies
        before carrying the outbox out, the timer makes another one do it.
        """
        keys = self.keys
        pipe = self._auto.commands()
        if outbox is not None:
            pipe.zadd(keys.timers, {keys.timer_member(transaction_id, FLUSH_TIMER): flush_due_ms})
        if created_ms is not None:
            pipe.zadd(keys.index, {transaction_id: created_ms})
        # EVAL rather than EVALSHA: the scripts are small, and a Redis that
        # restarted (empty script cache) never fails a pipeline half-way.
        pipe.eval(
            scripts.COMMIT,
            2,
            keys.execution(transaction_id),
            keys.history(transaction_id),
            expected_revision,
            state,
            outbox or b"",
            ttl_ms,
            *history,
        )
        results = await pipe.execute()
        revision = int(results[-1])
        return None if revision < 0 else revision

    async def carry_out(self, transaction_id: str, revision: int | None, outbox: Outbox) -> None:
        """Perform a committed transition's effects, then forget its outbox."""
        keys = self.keys
        pipe = self._auto.commands()
        for worker, command in outbox.commands:
            pipe.xadd(keys.commands(worker), {"c": command})
        if outbox.schedule:
            pipe.zadd(
                keys.timers,
                {keys.timer_member(transaction_id, t): due for t, due in outbox.schedule},
            )
        if outbox.unschedule:
            pipe.zrem(
                keys.timers, *[keys.timer_member(transaction_id, t) for t in outbox.unschedule]
            )
        for command_id in outbox.cancels:
            pipe.publish(keys.cancel_channel, command_id)
        for event in outbox.events:
            pipe.publish(keys.events_channel, event)
        if revision is not None:
            pipe.eval(scripts.CLEAR_OUTBOX, 1, keys.execution(transaction_id), revision)
            pipe.zrem(keys.timers, keys.timer_member(transaction_id, FLUSH_TIMER))
        if outbox.ack is not None:
            worker, entry_id = outbox.ack
            pipe.xack(keys.commands(worker), DISPATCH_GROUP, entry_id)
            pipe.xdel(keys.commands(worker), entry_id)
        if outbox.outcome is not None:
            self._record_outcome(pipe, outbox.outcome)
        if len(pipe):
            await pipe.execute()

    def _record_outcome(self, pipe: Any, record: OutcomeRecord) -> None:
        keys = self.keys
        if record.count:
            stats = keys.worker_stats(record.worker)
            pipe.hincrby(stats, "succeeded" if record.success else "failed", 1)
            if not record.success:
                pipe.hincrby(stats, f"err:{record.error_type}", 1)
            durations = keys.worker_durations(record.worker)
            pipe.lpush(durations, record.duration_ms)
            pipe.ltrim(durations, 0, DURATIONS_KEPT - 1)
        if record.trace is not None:
            traces = keys.traces(record.transaction_id)
            pipe.hset(traces, record.command_id, record.trace)
            pipe.pexpire(traces, record.trace_ttl_ms)
            pipe.lpush(keys.recent_traces, record.trace)
            pipe.ltrim(keys.recent_traces, 0, RECENT_TRACES_KEPT - 1)

    async def worker_stats(self, worker: str) -> tuple[dict[str, int], list[int]]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(self.keys.worker_stats(worker))
        pipe.lrange(self.keys.worker_durations(worker), 0, -1)
        counters, durations = await pipe.execute()
        return {k.decode(): int(v) for k, v in counters.items()}, [int(d) for d in durations]

    async def traces_of(self, transaction_id: str) -> list[bytes]:
        return list((await self.redis.hgetall(self.keys.traces(transaction_id))).values())

    async def recent_traces(self, count: int) -> list[bytes]:
        return list(await self.redis.lrange(self.keys.recent_traces, 0, count - 1))

    async def history(self, transaction_id: str) -> list[bytes]:
        entries = await self.redis.xrange(self.keys.history(transaction_id))
        return [fields[b"e"] for _, fields in entries]

    async def index_page(self, before_score: float, count: int) -> list[tuple[str, float]]:
        """Executions created at or before `before_score`, newest first."""
        rows = await self.redis.zrevrangebyscore(
            self.keys.index, before_score, "-inf", start=0, num=count, withscores=True
        )
        return [(m.decode(), s) for m, s in rows]

    async def prune_index(self, transaction_ids: Sequence[str]) -> None:
        if transaction_ids:
            await self.redis.zrem(self.keys.index, *transaction_ids)

    async def prune_expired_index(self, after: float, before: float, limit: int) -> float | None:
        """Forget index entries created in (after, before] whose execution has expired.

        Looks at up to `limit` entries; returns the score to continue after,
        or None when the range is done. Executions still stored (running, or
        finished within the retention) keep their entry.
        """
        rows = await self.redis.zrangebyscore(
            self.keys.index, f"({after}", before, start=0, num=limit, withscores=True
        )
        if not rows:
            return None
        cmds = self._auto.commands()
        for tx, _ in rows:
            cmds.exists(self.keys.execution(tx.decode()))
        found = await cmds.execute()
        gone = [tx for (tx, _), exists in zip(rows, found, strict=True) if not exists]
        if gone:
            await self.redis.zrem(self.keys.index, *gone)
        return float(rows[-1][1]) if len(rows) == limit else None

    # -- definitions ----------------------------------------------------------

    async def add_definition(self, name: str, version: int, definition: bytes) -> bytes | None:
        """Store a definition unless that version exists; returns the existing one."""
        key = self.keys.definition(name)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hsetnx(key, str(version), definition)
        pipe.hget(key, str(version))
        pipe.sadd(self.keys.definitions, name)
        created, existing, _ = await pipe.execute()
        return None if created else existing

    async def definition_versions(self, name: str) -> dict[int, bytes]:
        cmds = self._auto.commands()
        cmds.hgetall(self.keys.definition(name))
        (raw,) = await cmds.execute()
        return {int(k): v for k, v in raw.items()}

    async def definition_names(self) -> list[str]:
        return sorted(n.decode() for n in await self.redis.smembers(self.keys.definitions))

    # -- timers ----------------------------------------------------------------

    async def claim_timers(self, now_ms: int, lease_ms: int, limit: int) -> list[tuple[str, str]]:
        members = await self.redis.eval(
            scripts.CLAIM_TIMERS, 1, self.keys.timers, now_ms, lease_ms, limit
        )
        return [Keys.parse_timer_member(m.decode()) for m in members]

    async def delete_timer(self, transaction_id: str, timer_id: str) -> None:
        cmds = self._auto.commands()
        cmds.zrem(self.keys.timers, self.keys.timer_member(transaction_id, timer_id))
        await cmds.execute()

    async def extend_timers(self, timers: Sequence[tuple[str, str, int]]) -> None:
        """Move existing timers (transaction, timer, due); absent ones stay absent."""
        if not timers:
            return
        pipe = self.redis.pipeline(transaction=False)
        for tx, timer_id, due in timers:
            pipe.zadd(self.keys.timers, {self.keys.timer_member(tx, timer_id): due}, xx=True)
        await pipe.execute()

    # -- command streams ----------------------------------------------------------

    def forget_group(self, worker: str) -> None:
        """Check the group again next time (Redis may have restarted without it)."""
        self._groups.discard(worker)

    async def ensure_group(self, worker: str) -> None:
        if worker in self._groups:
            return
        try:
            await self.redis.xgroup_create(
                self.keys.commands(worker), DISPATCH_GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        await self.redis.sadd(self.keys.worker_names, worker)
        self._groups.add(worker)

    async def read_commands(
        self, client: Any, worker: str, consumer: str, count: int, block_ms: int
    ) -> list[CommandEntry]:
        """Take up to `count` new commands of `worker`, waiting up to `block_ms`."""
        reply = await client.xreadgroup(
            DISPATCH_GROUP, consumer, {self.keys.commands(worker): ">"}, count=count, block=block_ms
        )
        entries: list[CommandEntry] = []
        for _, rows in reply or []:
            for entry_id, fields in rows:
                if fields:  # a deleted entry still pending shows up empty
                    entries.append(CommandEntry(worker, entry_id, fields[b"c"]))
        return entries

    async def ack_commands(
        self, entries: Sequence[tuple[str, bytes]], outcome: OutcomeRecord | None = None
    ) -> None:
        if not entries and outcome is None:
            return
        pipe = self._auto.commands()
        for worker, entry_id in entries:
            pipe.xack(self.keys.commands(worker), DISPATCH_GROUP, entry_id)
            pipe.xdel(self.keys.commands(worker), entry_id)
        if outcome is not None:
            self._record_outcome(pipe, outcome)
        await pipe.execute()

    async def requeue_commands(self, entries: Sequence[CommandEntry]) -> None:
        """Give commands taken but never started back to the queue."""
        if not entries:
            return
        pipe = self.redis.pipeline(transaction=False)
        for e in entries:
            pipe.xadd(self.keys.commands(e.worker), {"c": e.command})
            pipe.xack(self.keys.commands(e.worker), DISPATCH_GROUP, e.entry_id)
            pipe.xdel(self.keys.commands(e.worker), e.entry_id)
        await pipe.execute()

    async def known_workers(self) -> list[str]:
        return sorted(w.decode() for w in await self.redis.smembers(self.keys.worker_names))

    async def consumers(self, worker: str) -> list[tuple[str, int]]:
        """Consumers of a worker's stream and their pending counts."""
        try:
            rows = await self.redis.xinfo_consumers(self.keys.commands(worker), DISPATCH_GROUP)
        except ResponseError:
            return []
        return [(_text(r["name"]), int(r["pending"])) for r in rows]

    async def claim_pending(
        self, worker: str, dead_consumer: str, consumer: str, count: int = 100
    ) -> list[CommandEntry]:
        """Move a dead consumer's pending commands to `consumer`."""
        stream = self.keys.commands(worker)
        pending = await self.redis.xpending_range(
            stream, DISPATCH_GROUP, min="-", max="+", count=count, consumername=dead_consumer
        )
        ids = [p["message_id"] for p in pending]
        if not ids:
            return []
        claimed = await self.redis.xclaim(stream, DISPATCH_GROUP, consumer, 0, ids)
        found = [CommandEntry(worker, eid, f[b"c"]) for eid, f in claimed if f]
        missing = {eid for eid, f in claimed if not f} | (set(ids) - {e for e, _ in claimed})
        if missing:  # deleted while pending: nothing to redeliver
            await self.ack_commands([(worker, eid) for eid in missing])
        return found

    async def delete_consumer(self, worker: str, consumer: str) -> None:
        await self.redis.xgroup_delconsumer(self.keys.commands(worker), DISPATCH_GROUP, consumer)

    # -- replicas and sessions ----------------------------------------------------

    async def renew_lease(
        self, replica_id: str, expires_ms: int, sessions: dict[str, bytes], ttl_ms: int
    ) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zadd(self.keys.replicas, {replica_id: expires_ms})
        key = self.keys.sessions(replica_id)
        pipe.delete(key)
        if sessions:
            pipe.hset(key, mapping=sessions)
            pipe.pexpire(key, ttl_ms)
        await pipe.execute()

    async def drop_lease(self, replica_id: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(self.keys.replicas, replica_id)
        pipe.delete(self.keys.sessions(replica_id))
        await pipe.execute()

    async def live_replicas(self, now_ms: int) -> list[str]:
        rows = await self.redis.zrangebyscore(self.keys.replicas, now_ms, "+inf")
        return [r.decode() for r in rows]

    async def forget_dead_replicas(self, now_ms: int) -> None:
        await self.redis.zremrangebyscore(self.keys.replicas, "-inf", now_ms)

    async def sessions_of(self, replica_ids: Sequence[str]) -> list[bytes]:
        pipe = self.redis.pipeline(transaction=False)
        for r in replica_ids:
            pipe.hvals(self.keys.sessions(r))
        return [s for rows in await pipe.execute() for s in rows]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
