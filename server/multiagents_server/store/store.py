"""Redis storage and bus: executions, history, definitions, command queues,
timers, replica membership. The only module (with its package) that knows
Redis: values cross its boundary as the typed records of `records`, and
Redis failures as `StoreUnavailable` (or `Fenced`)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import redis.asyncio as redis
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    ConnectionError,
    NoScriptError,
    RedisClusterException,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from multiagents_server.store import scripts
from multiagents_server.store.autopipeline import AutoPipeline
from multiagents_server.store.keys import DISPATCH_GROUP, Keys
from multiagents_server.store.records import (
    CommandEntry,
    Commit,
    Committed,
    Fenced,
    Message,
    OutputEntry,
    OutputRow,
    Refusal,
    Stored,
    StoreError,
    StoreUnavailable,
    WorkerOutcomes,
)

FLUSH_TIMER = "flush"
# The timer of a schedule: member `<schedule id>|schedule` in the schedule's
# bucket (an execution's timer ids all hold a colon, so none is this one).
SCHEDULE_TIMER = "schedule"
DURATIONS_KEPT = 1000
RECENT_TRACES_KEPT = 10_000

_UNAVAILABLE = (
    ConnectionError,
    TimeoutError,
    BusyLoadingError,
    ClusterDownError,
    TryAgainError,
    RedisClusterException,
    OSError,
)

P = ParamSpec("P")
R = TypeVar("R")

# Told the name and duration (seconds) of every store operation, when set
# (by the observability package: the Redis latency metric).
_operation_observer: Callable[[str, float], None] | None = None


def observe_operations(observer: Callable[[str, float], None] | None) -> None:
    """Have `observer(operation, seconds)` called after every store operation."""
    global _operation_observer
    _operation_observer = observer


def _guarded(method: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Redis failures leave the store as StoreUnavailable; other Redis errors
    (a bug, a script error) as StoreError, never as redis-py's types."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        except StoreError:
            raise
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
        except ResponseError as exc:
            if str(exc).startswith(("MOVED", "ASK", "CLUSTERDOWN", "LOADING", "TRYAGAIN")):
                raise StoreUnavailable(str(exc)) from exc
            raise StoreError(str(exc)) from exc
        finally:
            if _operation_observer is not None:
                _operation_observer(method.__name__, time.perf_counter() - started)

    return wrapper


class Store:
    """All Redis access of a server replica."""

    def __init__(self, client: Any, keys: Keys, *, cluster: bool) -> None:
        # Typed as Any on purpose: redis-py annotates replies as str/bytes
        # unions, but the client runs with decode_responses=False, so every
        # reply is bytes; this class converts them at its boundary.
        self.redis: Any = client
        self.keys = keys
        self.cluster = cluster
        self.buckets = range(keys.buckets)
        self._sha = {name: hashlib.sha1(body.encode()).hexdigest() for name, body in
                     scripts.SCRIPTS.items()}  # fmt: skip
        self._groups: set[tuple[int, str]] = set()
        # The operations of concurrent transitions share pipelines: a few
        # round trips per burst (one per node on a cluster), and a bounded
        # number of connections however many run at once.
        self._auto = AutoPipeline(client, cluster=cluster)

    async def close(self) -> None:
        await self.redis.aclose()

    @_guarded
    async def ping(self) -> None:
        """StoreUnavailable unless Redis answers."""
        await self.redis.ping()

    # -- scripts -------------------------------------------------------------------

    async def load_scripts(self) -> None:
        for body in scripts.SCRIPTS.values():
            await self.redis.script_load(body)  # on a cluster: on every node

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script by its SHA; reload the scripts once if Redis forgot them."""
        for first in (True, False):
            cmds = self._auto.commands()
            # EVALSHA through execute_command: the cluster pipeline blocks its
            # evalsha() helper, but routes the raw command by its keys.
            cmds.execute_command("EVALSHA", self._sha[name], len(keys), *keys, *args)
            try:
                (reply,) = await cmds.execute()
                return reply
            except NoScriptError:
                if not first:
                    raise
                await self.load_scripts()
        raise AssertionError("unreachable")

    # -- executions ----------------------------------------------------------------

    @_guarded
    async def load(self, transaction_id: str) -> Stored | None:
        cmds = self._auto.commands()
        cmds.hmget(self.keys.execution(transaction_id), ["s", "rev"])
        ((state, rev),) = await cmds.execute()
        return None if state is None else Stored(state, int(rev))

    @_guarded
    async def load_many(self, transaction_ids: Sequence[str]) -> list[Stored | None]:
        cmds = self._auto.commands()
        for tx in transaction_ids:
            cmds.hmget(self.keys.execution(tx), ["s", "rev"])
        rows = await cmds.execute()
        return [None if s is None else Stored(s, int(r)) for s, r in rows]

    @_guarded
    async def commit(self, c: Commit, *, replica_id: str, epoch: int) -> Committed:
        """Apply one transition atomically if the revision still matches.

        Raises `Fenced` when this replica lost its membership of the bucket.
        """
        keys = self.keys
        tx = c.transaction_id
        bucket = keys.bucket_of(tx)
        script_keys = [
            keys.execution(tx),
            keys.history(tx),
            keys.timers(bucket),
            keys.index(bucket),
            keys.members(bucket),
            keys.traces(tx),
            keys.waits(bucket),
            keys.output(tx),
            keys.usage(bucket),
        ]
        queue_index: dict[str, int] = {}

        def queue(worker: str) -> int:
            if worker not in queue_index:
                script_keys.append(keys.queue(bucket, worker))
                queue_index[worker] = len(script_keys)
            return queue_index[worker]

        args: list[Any] = [
            c.expected_revision, replica_id, epoch, tx, c.state, c.followups or b"",
            c.flush_due_ms, c.ttl_ms, c.created_ms, keys.bus, c.notification, DISPATCH_GROUP,
            bucket, len(c.history), *c.history, len(c.schedule),
        ]  # fmt: skip
        for timer, due in c.schedule:
            args += [timer, due]
        args += [len(c.unschedule), *c.unschedule, len(c.commands)]
        for command in c.commands:
            args += [queue(command.worker), command.worker, command.command, int(command.claim)]
        if c.ack is not None:
            args += [queue(c.ack.worker), c.ack.entry_id]
        else:
            args += [0, ""]
        args += [len(c.cancels), *(f"{cid}|{reason}" for cid, reason in c.cancels)]
        args += [*(c.trace or ("", "")), c.trace_ttl_ms]
        args.append("" if c.waits is None else c.waits or "-")
        args += [c.workflow_name, *c.usage, len(c.output_epochs)]
        for e in c.output_epochs:
            args += [e.lane, e.attempt, e.step, int(e.compensation)]
        reply = await self._script("commit", script_keys, args)
        revision = int(reply[0])
        if revision == -1:
            return Committed(None)
        if revision == -2:
            raise Fenced(f"replica {replica_id} epoch {epoch} was fenced off bucket {bucket}")
        by_index = {i: w for w, i in queue_index.items()}
        claimed = tuple(
            CommandEntry(bucket, by_index[int(reply[i])], reply[i + 1], reply[i + 2])
            for i in range(1, len(reply), 3)
        )
        return Committed(revision, claimed)

    @_guarded
    async def followups(self, transaction_id: str) -> dict[str, bytes]:
        """Follow-ups of committed transitions not carried out yet, by field."""
        raw = await self.redis.hgetall(self.keys.execution(transaction_id))
        return {k.decode(): v for k, v in raw.items() if k.startswith(b"ob:")}

    @_guarded
    async def clear_followups(self, transaction_id: str, fields: Sequence[str]) -> None:
        keys = self.keys
        timers = keys.timers(keys.bucket_of(transaction_id))
        await self._script(
            "clear_followups", [keys.execution(transaction_id), timers], [transaction_id, *fields]
        )

    @_guarded
    async def history(self, transaction_id: str) -> list[bytes]:
        entries = await self.redis.xrange(self.keys.history(transaction_id))
        return [event for _, fields in entries for event in fields.values()]

    @_guarded
    async def add_trace(self, transaction_id: str, command_id: str, trace: bytes,
                        ttl_ms: int) -> None:  # fmt: skip
        """Record the trace of a command whose answer changed nothing (stale)."""
        key = self.keys.traces(transaction_id)
        cmds = self._auto.commands()
        cmds.hset(key, command_id, trace)
        cmds.pexpire(key, ttl_ms)
        await cmds.execute()

    @_guarded
    async def set_progress(
        self, transaction_id: str, command_id: str, record: bytes, ttl_ms: int
    ) -> None:
        """Keep the latest progress record of a running command."""
        key = self.keys.progress(transaction_id)
        cmds = self._auto.commands()
        cmds.hset(key, command_id, record)
        cmds.pexpire(key, ttl_ms)
        # The same notification as appended output: watchers read both. (Through
        # execute_command: redis-py's cluster pipeline refuses its publish().)
        cmds.execute_command("PUBLISH", self.keys.bus, b"o" + transaction_id.encode())
        await cmds.execute()

    @_guarded
    async def progress_all(self, transaction_id: str) -> dict[str, bytes]:
        """The latest progress record of each command of the execution."""
        raw = await self.redis.hgetall(self.keys.progress(transaction_id))
        return {k.decode(): v for k, v in raw.items()}

    @_guarded
    async def progress_of(self, transaction_id: str, command_id: str) -> bytes | None:
        """The latest progress record of a command, if any."""
        cmds = self._auto.commands()
        cmds.hget(self.keys.progress(transaction_id), command_id)
        (record,) = await cmds.execute()
        return record  # type: ignore[no-any-return]

    @_guarded
    async def traces_of(self, transaction_id: str) -> list[bytes]:
        return list((await self.redis.hgetall(self.keys.traces(transaction_id))).values())

    # -- step output -------------------------------------------------------------------

    @_guarded
    async def append_output(
        self, transaction_id: str, rows: Sequence[OutputRow], cap: int
    ) -> list[str] | None:
        """Append chunks to the execution's output stream in one script call
        (shared with concurrent calls by the auto-pipeline). The offset of
        each row, '' for a row refused because its attempt was superseded;
        None when the execution is gone."""
        args: list[Any] = [cap, self.keys.bus, transaction_id]
        for r in rows:
            args += [r.lane, r.attempt, r.step, int(r.compensation), "b" if r.binary else "t",
                     r.kind, r.data]  # fmt: skip
        keys = [self.keys.output(transaction_id), self.keys.execution(transaction_id)]
        reply = await self._script("append_output", keys, args)
        if reply and reply[0] == -1:
            return None
        return [r.decode() for r in reply]

    @_guarded
    async def read_output(self, transaction_id: str, after: str, count: int) -> list[OutputEntry]:
        """Up to `count` entries of the output stream after offset `after`
        ('' for the first kept)."""
        cmds = self._auto.commands()
        cmds.xrange(self.keys.output(transaction_id), f"({after}" if after else "-", "+",
                    count=count)  # fmt: skip
        (rows,) = await cmds.execute()
        return [_output_entry(entry_id, fields) for entry_id, fields in rows]

    @_guarded
    async def first_output(self, transaction_id: str) -> OutputEntry | None:
        """The oldest entry the output stream keeps."""
        entries = await self.read_output(transaction_id, "", 1)
        return entries[0] if entries else None

    @_guarded
    async def workflow_usage(self, name: str) -> tuple[int, int, int]:
        """Input tokens, output tokens and nano-USD of every execution of `name`."""
        cmds = self._auto.commands()
        for bucket in self.buckets:
            cmds.hmget(self.keys.usage(bucket), [f"{name}|in", f"{name}|out", f"{name}|cost"])
        sums = [0, 0, 0]
        for row in await cmds.execute():
            for i, value in enumerate(row):
                sums[i] += int(value or 0)
        return sums[0], sums[1], sums[2]

    # -- the index ------------------------------------------------------------------

    @_guarded
    async def index_page(self, before_score: float, count: int) -> list[tuple[str, float]]:
        """Executions created at or before `before_score`, newest first, from
        every bucket (each gives its newest `count`; merged)."""
        cmds = self._auto.commands()
        for bucket in self.buckets:
            cmds.zrevrangebyscore(
                self.keys.index(bucket), before_score, "-inf", start=0, num=count, withscores=True
            )
        rows = [(m.decode(), s) for page in await cmds.execute() for m, s in page]
        rows.sort(key=lambda r: (r[1], r[0]), reverse=True)
        return rows[:count]

    @_guarded
    async def waits(self) -> list[tuple[str, bytes]]:
        """(transaction id, waits JSON) of every execution waiting for a signal."""
        cmds = self._auto.commands()
        for bucket in self.buckets:
            cmds.hgetall(self.keys.waits(bucket))
        return [(tx.decode(), raw) for page in await cmds.execute() for tx, raw in page.items()]

    @_guarded
    async def prune_index(self, transaction_ids: Sequence[str]) -> None:
        if not transaction_ids:
            return
        cmds = self._auto.commands()
        for tx in transaction_ids:
            cmds.zrem(self.keys.index(self.keys.bucket_of(tx)), tx)
        await cmds.execute()

    @_guarded
    async def prune_expired_index(
        self, bucket: int, after: float, before: float, limit: int
    ) -> float | None:
        """Forget index entries of `bucket` created in (after, before] whose
        execution has expired. Looks at up to `limit` entries; returns the
        score to continue after, or None when the range is done."""
        index = self.keys.index(bucket)
        rows = await self.redis.zrangebyscore(
            index, f"({after}", before, start=0, num=limit, withscores=True
        )
        if not rows:
            return None
        cmds = self._auto.commands()
        for tx, _ in rows:
            cmds.exists(self.keys.execution(tx.decode()))
        found = await cmds.execute()
        gone = [tx for (tx, _), exists in zip(rows, found, strict=True) if not exists]
        if gone:
            await self.redis.zrem(index, *gone)
        return float(rows[-1][1]) if len(rows) == limit else None

    # -- definitions ------------------------------------------------------------------

    @_guarded
    async def add_definition(self, name: str, version: int, definition: bytes) -> bytes | None:
        """Store a definition unless that version exists; returns the existing one."""
        key = self.keys.definition(name)
        cmds = self._auto.commands()
        cmds.hsetnx(key, str(version), definition)
        cmds.hget(key, str(version))
        cmds.sadd(self.keys.definitions, name)
        # Replicas cache the latest version of each name: tell them.
        cmds.execute_command("PUBLISH", self.keys.bus, b"d" + name.encode())
        created, existing, _, _ = await cmds.execute()
        return None if created else existing

    @_guarded
    async def definition_version_numbers(self, name: str) -> list[int]:
        cmds = self._auto.commands()
        cmds.hkeys(self.keys.definition(name))
        (raw,) = await cmds.execute()
        return [int(k) for k in raw]

    @_guarded
    async def definition(self, name: str, version: int) -> bytes | None:
        cmds = self._auto.commands()
        cmds.hget(self.keys.definition(name), str(version))
        (raw,) = await cmds.execute()
        return raw  # type: ignore[no-any-return]

    @_guarded
    async def definition_names(self) -> list[str]:
        return sorted(n.decode() for n in await self.redis.smembers(self.keys.definitions))

    # -- shared limits -----------------------------------------------------------------

    @_guarded
    async def put_limit(self, key: str, limit: bytes) -> bool:
        """Declare (or replace) the limit of `key`; True when it is new. The
        replicas are told, so that commands waiting under it try again."""
        cmds = self._auto.commands()
        cmds.hset(self.keys.limits, key, limit)
        cmds.execute_command("PUBLISH", self.keys.bus, b"l" + key.encode())
        created, _ = await cmds.execute()
        return bool(created)

    @_guarded
    async def limit(self, key: str) -> bytes | None:
        return await self.redis.hget(self.keys.limits, key)  # type: ignore[no-any-return]

    @_guarded
    async def all_limits(self) -> dict[str, bytes]:
        raw = await self.redis.hgetall(self.keys.limits)
        return {k.decode(): v for k, v in raw.items()}

    @_guarded
    async def delete_limit(self, key: str) -> bool:
        """Forget the declaration of a limit; the replicas are told, as by
        `put_limit`. The state of its keys (places held, starts, tokens,
        backoff) stays until it expires, so a limit declared again under
        the key counts the attempts still running."""
        cmds = self._auto.commands()
        cmds.hdel(self.keys.limits, key)
        cmds.execute_command("PUBLISH", self.keys.bus, b"l" + key.encode())
        deleted, _ = await cmds.execute()
        return bool(deleted)

    def _limit_keys(self, keys: Sequence[str]) -> list[str]:
        script_keys = [self.keys.limits]
        for key in keys:
            script_keys += [
                self.keys.limit_state(key),
                self.keys.limit_holders(key),
                self.keys.limit_starts(key),
            ]
        return script_keys

    @_guarded
    async def acquire_limits(
        self, keys: Sequence[str], holder: str, lease_until_ms: int, tokens: int
    ) -> tuple[int, Refusal | None]:
        """Take `holder`'s place in every key, or none: (0, None) when
        taken, else (ms to wait at least, why)."""
        reply = await self._script(
            "acquire_limits", self._limit_keys(keys), [holder, lease_until_ms, tokens, *keys]
        )
        if reply[0] == 1:
            return 0, None
        return int(reply[1]), Refusal(reply[2].decode(), reply[3].decode(), reply[4].decode())

    @_guarded
    async def release_limits(
        self, keys: Sequence[str], holder: str, refund_tokens: int, back_off: bool
    ) -> None:
        """Give back `holder`'s places; see scripts.RELEASE_LIMITS."""
        await self._script(
            "release_limits",
            self._limit_keys(keys),
            [holder, refund_tokens, "1" if back_off else "0", *keys],
        )

    @_guarded
    async def clear_progress(self, transaction_id: str, command_id: str) -> None:
        await self.redis.hdel(self.keys.progress(transaction_id), command_id)

    # -- timers ------------------------------------------------------------------------

    @_guarded
    async def claim_timers(
        self, buckets: Sequence[int], now_ms: int, lease_ms: int, limit: int
    ) -> list[tuple[int, list[tuple[str, str]], int | None]]:
        """Claim due timers of `buckets`: per bucket, the due (transaction,
        timer) pairs and the earliest due time left (None when empty)."""
        cmds = self._auto.commands()
        for bucket in buckets:
            cmds.execute_command(
                "EVALSHA", self._sha["claim_timers"], 1, self.keys.timers(bucket), now_ms,
                lease_ms, limit,
            )  # fmt: skip
        try:
            replies = await cmds.execute()
        except NoScriptError:
            await self.load_scripts()
            return []
        out = []
        for bucket, (due, first) in zip(buckets, replies, strict=True):
            timers = [Keys.parse_timer_member(m.decode()) for m in due]
            out.append((bucket, timers, None if first is None else int(float(first))))
        return out

    @_guarded
    async def delete_timer(self, transaction_id: str, timer_id: str) -> None:
        keys = self.keys
        member = keys.timer_member(transaction_id, timer_id)
        cmds = self._auto.commands()
        cmds.zrem(keys.timers(keys.bucket_of(transaction_id)), member)
        await cmds.execute()

    @_guarded
    async def extend_timers(self, timers: Sequence[tuple[str, str, int]]) -> None:
        """Move existing timers (transaction, timer, due); absent ones stay absent."""
        if not timers:
            return
        keys = self.keys
        cmds = self._auto.commands()
        for tx, timer_id, due in timers:
            cmds.zadd(keys.timers(keys.bucket_of(tx)), {keys.timer_member(tx, timer_id): due},
                      xx=True)  # fmt: skip
        await cmds.execute()

    # -- schedules -----------------------------------------------------------------------

    @_guarded
    async def write_schedule(
        self, schedule_id: str, mode: str, expected: int, record: bytes, timer_due_ms: int
    ) -> int:
        """One change of a schedule and its timer, atomically (see
        `scripts.SCHEDULE` for the modes and the answer)."""
        keys = self.keys
        bucket = keys.schedule_bucket(schedule_id)
        reply = await self._script(
            "schedule",
            [keys.schedules(bucket), keys.schedule_revisions(bucket), keys.timers(bucket)],
            [schedule_id, mode, expected, record, timer_due_ms,
             keys.timer_member(schedule_id, SCHEDULE_TIMER)],
        )  # fmt: skip
        return int(reply)

    @_guarded
    async def load_schedule(self, schedule_id: str) -> Stored | None:
        keys = self.keys
        bucket = keys.schedule_bucket(schedule_id)
        cmds = self._auto.commands()
        cmds.hget(keys.schedules(bucket), schedule_id)
        cmds.hget(keys.schedule_revisions(bucket), schedule_id)
        record, rev = await cmds.execute()
        return None if record is None else Stored(record, int(rev))

    @_guarded
    async def all_schedules(self) -> list[tuple[str, Stored]]:
        """Every schedule (id, record) of every bucket."""
        cmds = self._auto.commands()
        for bucket in self.buckets:
            cmds.hgetall(self.keys.schedules(bucket))
            cmds.hgetall(self.keys.schedule_revisions(bucket))
        replies = await cmds.execute()
        found = []
        for records, revs in zip(replies[::2], replies[1::2], strict=True):
            for sid, record in records.items():
                found.append((sid.decode(), Stored(record, int(revs.get(sid, 0)))))
        return found

    # -- command queues -------------------------------------------------------------------

    @_guarded
    async def ensure_groups(self, worker: str) -> None:
        """Create the consumer group of `worker`'s queue in every bucket (once)."""
        missing = [b for b in self.buckets if (b, worker) not in self._groups]
        if not missing:
            return
        cmds = self._auto.commands()
        for bucket in missing:
            cmds.xgroup_create(self.keys.queue(bucket, worker), DISPATCH_GROUP, id="0",
                               mkstream=True)  # fmt: skip
        cmds.sadd(self.keys.worker_names, worker)
        try:
            await cmds.execute()
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            # Some existed: create the others one by one.
            for bucket in missing:
                try:
                    await self.redis.xgroup_create(
                        self.keys.queue(bucket, worker), DISPATCH_GROUP, id="0", mkstream=True
                    )
                except ResponseError as one:
                    if "BUSYGROUP" not in str(one):
                        raise
        self._groups.update((b, worker) for b in missing)

    def forget_groups(self) -> None:
        """Check the groups again next time (Redis may have restarted without them)."""
        self._groups.clear()

    @_guarded
    async def read_commands(
        self, worker: str, consumer: str, buckets: Sequence[int], count: int
    ) -> dict[int, list[CommandEntry]]:
        """Take up to `count` new commands of `worker` from each of `buckets`
        (without blocking); the entries taken per bucket."""
        cmds = self._auto.commands()
        for bucket in buckets:
            cmds.xreadgroup(DISPATCH_GROUP, consumer, {self.keys.queue(bucket, worker): ">"},
                            count=count)  # fmt: skip
        taken: dict[int, list[CommandEntry]] = {}
        for bucket, reply in zip(buckets, await cmds.execute(), strict=True):
            entries = taken.setdefault(bucket, [])
            for _, rows in _stream_rows(reply):
                for entry_id, fields in rows:
                    if fields:  # a deleted entry still pending shows up empty
                        entries.append(CommandEntry(bucket, worker, entry_id, fields[b"c"]))
        return taken

    @_guarded
    async def ack_commands(self, entries: Sequence[CommandEntry]) -> None:
        if not entries:
            return
        cmds = self._auto.commands()
        for e in entries:
            queue = self.keys.queue(e.bucket, e.worker)
            cmds.xack(queue, DISPATCH_GROUP, e.entry_id)
            cmds.xdel(queue, e.entry_id)
        await cmds.execute()

    @_guarded
    async def requeue_commands(self, entries: Sequence[CommandEntry]) -> None:
        """Give commands taken but never started back to their queues."""
        if not entries:
            return
        cmds = self._auto.commands()
        for e in entries:
            queue = self.keys.queue(e.bucket, e.worker)
            cmds.xadd(queue, {"c": e.command})
            cmds.xack(queue, DISPATCH_GROUP, e.entry_id)
            cmds.xdel(queue, e.entry_id)
            cmds.execute_command("PUBLISH", self.keys.bus, f"w{e.bucket}|{e.worker}")
        await cmds.execute()

    @_guarded
    async def known_workers(self) -> list[str]:
        return sorted(w.decode() for w in await self.redis.smembers(self.keys.worker_names))

    @_guarded
    async def pending_at(
        self,
        owner: str,
        workers: Sequence[str],
        *,
        min_idle_ms: int,
        count: int = 100,
        buckets: Sequence[int] | None = None,
    ) -> list[tuple[int, str, bytes]]:
        """(bucket, worker, entry id) of up to `count` commands per queue of
        `workers` (in `buckets`, default all) pending at consumer `owner`
        (taken, not acknowledged) and not delivered again for `min_idle_ms`."""
        queues = [(b, w) for w in workers for b in (self.buckets if buckets is None else buckets)]
        cmds = self._auto.commands()
        for b, w in queues:
            cmds.xpending_range(self.keys.queue(b, w), DISPATCH_GROUP, min="-", max="+",
                                count=count, consumername=owner, idle=min_idle_ms)  # fmt: skip
        found = []
        for (b, w), rows in zip(queues, await cmds.execute_raw(), strict=True):
            if _no_group(rows):
                continue
            if isinstance(rows, Exception):
                raise rows
            found += [(b, w, p["message_id"]) for p in rows]
        return found

    @_guarded
    async def claim(
        self, consumer: str, pending: Sequence[tuple[int, str, bytes]], *, min_idle_ms: int
    ) -> list[CommandEntry]:
        """Make `consumer` the holder of these pending commands, each unless it
        was delivered again within `min_idle_ms`; the commands it holds now.
        One deleted while pending is acknowledged: nothing to deliver."""
        cmds = self._auto.commands()
        for b, w, entry_id in pending:
            # One entry per XCLAIM: Redis 6.2 answers a deleted one without its id.
            cmds.xclaim(self.keys.queue(b, w), DISPATCH_GROUP, consumer, min_idle_ms, [entry_id])
        found: list[CommandEntry] = []
        gone: list[CommandEntry] = []
        for (b, w, entry_id), claimed in zip(pending, await cmds.execute(), strict=True):
            if claimed and claimed[0][1]:
                found.append(CommandEntry(b, w, entry_id, claimed[0][1][b"c"]))
            elif claimed:
                gone.append(CommandEntry(b, w, entry_id, b""))
        await self.ack_commands(gone)
        return found

    async def claim_pending_of(
        self,
        dead_consumer: str,
        consumer: str,
        workers: Sequence[str],
        count: int = 100,
        buckets: Sequence[int] | None = None,
    ) -> list[CommandEntry]:
        """Move up to `count` commands per queue (in `buckets`, default all)
        pending at `dead_consumer` to `consumer`."""
        pending = await self.pending_at(
            dead_consumer, workers, min_idle_ms=0, count=count, buckets=buckets
        )
        return await self.claim(consumer, pending, min_idle_ms=0)

    @_guarded
    async def delete_consumer(
        self, consumer: str, workers: Sequence[str], buckets: Sequence[int] | None = None
    ) -> None:
        """Forget `consumer` in the queues of `workers` where nothing is pending at it."""
        await asyncio.gather(*(
            self._script("delete_consumer", [self.keys.queue(b, w)], [DISPATCH_GROUP, consumer])
            for w in workers
            for b in (self.buckets if buckets is None else buckets)
        ))  # fmt: skip

    @_guarded
    async def pending_holders(
        self, workers: Sequence[str], buckets: Sequence[int]
    ) -> dict[str, set[str]]:
        """The consumers that commands of `workers` in `buckets` are pending
        at, each with those worker names."""
        queues = [(b, w) for w in workers for b in buckets]
        cmds = self._auto.commands()
        for b, w in queues:
            cmds.xpending(self.keys.queue(b, w), DISPATCH_GROUP)
        holders: dict[str, set[str]] = {}
        for (_, w), summary in zip(queues, await cmds.execute_raw(), strict=True):
            if _no_group(summary):
                continue
            if isinstance(summary, Exception):
                raise summary
            for consumer in summary["consumers"]:
                holders.setdefault(consumer["name"].decode(), set()).add(w)
        return holders

    # -- monitoring -------------------------------------------------------------------------

    @_guarded
    async def record_outcomes(
        self, outcomes: dict[str, WorkerOutcomes], traces: Sequence[bytes]
    ) -> None:
        """Add a batch of answered commands to the per-worker counters and the
        recent traces (aggregated by the replica between flushes)."""
        keys = self.keys
        cmds = self._auto.commands()
        for worker, o in outcomes.items():
            stats = keys.worker_stats(worker)
            if o.succeeded:
                cmds.hincrby(stats, "succeeded", o.succeeded)
            if o.failed:
                cmds.hincrby(stats, "failed", o.failed)
            for error_type, n in o.errors.items():
                cmds.hincrby(stats, f"err:{error_type}", n)
            if o.durations_ms:
                durations = keys.worker_durations(worker)
                cmds.lpush(durations, *o.durations_ms[-DURATIONS_KEPT:])
                cmds.ltrim(durations, 0, DURATIONS_KEPT - 1)
        if traces:
            cmds.lpush(keys.recent_traces, *traces[-RECENT_TRACES_KEPT:])
            cmds.ltrim(keys.recent_traces, 0, RECENT_TRACES_KEPT - 1)
        await cmds.execute()

    @_guarded
    async def worker_stats(self, worker: str) -> tuple[dict[str, int], list[int]]:
        cmds = self._auto.commands()
        cmds.hgetall(self.keys.worker_stats(worker))
        cmds.lrange(self.keys.worker_durations(worker), 0, -1)
        counters, durations = await cmds.execute()
        return {k.decode(): int(v) for k, v in counters.items()}, [int(d) for d in durations]

    @_guarded
    async def recent_traces(self, count: int) -> list[bytes]:
        return list(await self.redis.lrange(self.keys.recent_traces, 0, count - 1))

    # -- replicas, membership and sessions -------------------------------------------------

    @_guarded
    async def join(self, replica_id: str) -> int:
        """A new epoch for `replica_id`, made a member of every bucket."""
        epoch = int(await self.redis.incr(self.keys.epoch))
        cmds = self._auto.commands()
        for bucket in self.buckets:
            cmds.hset(self.keys.members(bucket), replica_id, epoch)
        await cmds.execute()
        return epoch

    @_guarded
    async def fence(self, replica_id: str) -> None:
        """Remove `replica_id` from every bucket: its commits fail from now on."""
        cmds = self._auto.commands()
        for bucket in self.buckets:
            cmds.hdel(self.keys.members(bucket), replica_id)
        await cmds.execute()

    @_guarded
    async def renew_lease(
        self, replica_id: str, expires_ms: int, sessions: dict[str, bytes], ttl_ms: int
    ) -> None:
        cmds = self._auto.commands()
        cmds.zadd(self.keys.replicas, {replica_id: expires_ms})
        key = self.keys.sessions(replica_id)
        cmds.delete(key)
        if sessions:
            cmds.hset(key, mapping=sessions)
            cmds.pexpire(key, ttl_ms)
        await cmds.execute()

    @_guarded
    async def keep_for_resume(self, holder: str, record: bytes, ttl_ms: int) -> None:
        """Keep the in-flight commands of an ended session for `ttl_ms`."""
        await self.redis.set(self.keys.resume(holder), record, px=ttl_ms)

    @_guarded
    async def take_for_resume(self, holder: str) -> bytes | None:
        """Take the kept commands of `holder` (at most one caller gets them:
        the resuming session, or the replica failing them when none came)."""
        record: bytes | None = await self.redis.getdel(self.keys.resume(holder))
        return record

    @_guarded
    async def add_served(self, replica_id: str, workers: Sequence[str]) -> None:
        """Record worker names `replica_id` serves: the only queues where it can
        hold pending commands, so the only ones its reaper must look at."""
        await self.redis.sadd(self.keys.served(replica_id), *workers)

    @_guarded
    async def served_by(self, replica_id: str) -> list[str]:
        return sorted(w.decode() for w in await self.redis.smembers(self.keys.served(replica_id)))

    @_guarded
    async def leave(self, replica_id: str) -> None:
        """A clean stop: the replica is no longer registered nor a member."""
        await self.fence(replica_id)
        await self.forget_replica(replica_id)

    @_guarded
    async def replicas(self) -> list[tuple[str, int]]:
        """Registered replicas and their lease expiry (ms)."""
        rows = await self.redis.zrange(self.keys.replicas, 0, -1, withscores=True)
        return [(r.decode(), int(s)) for r, s in rows]

    @_guarded
    async def forget_replica(self, replica_id: str) -> None:
        cmds = self._auto.commands()
        cmds.zrem(self.keys.replicas, replica_id)
        cmds.delete(self.keys.sessions(replica_id))
        cmds.delete(self.keys.served(replica_id))
        await cmds.execute()

    @_guarded
    async def sessions_of(self, replica_ids: Sequence[str]) -> list[bytes]:
        cmds = self._auto.commands()
        for r in replica_ids:
            cmds.hvals(self.keys.sessions(r))
        return [s for rows in await cmds.execute() for s in rows]

    # -- the bus --------------------------------------------------------------------------------

    async def listen(self, ready: Callable[[], None]) -> AsyncIterator[Message]:
        """Live notifications until the connection fails (StoreUnavailable).

        `ready` is called once subscribed. On a cluster, a PUBLISH reaches
        every node, so one connection to any node hears all of them.
        """
        kinds = {
            ord("e"): "events",
            ord("w"): "wake",
            ord("c"): "cancel",
            ord("d"): "definition",
            ord("o"): "output",
            ord("l"): "limit",
        }
        client = self.redis
        if self.cluster:
            client = redis.Redis(connection_pool=_node_pool(self.redis))
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(self.keys.bus)
            ready()
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                data: bytes = message["data"]
                kind = kinds.get(data[0]) if data else None
                if kind is not None:
                    yield Message(kind, data[1:])
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(str(exc)) from exc
        finally:
            try:
                await pubsub.aclose()
            finally:
                if client is not self.redis:
                    await client.aclose()


def _no_group(reply: Any) -> bool:
    """A reply saying that a queue has no consumer group (no session of its
    worker name ever ran where its bucket lives)."""
    return isinstance(reply, ResponseError) and str(reply).startswith("NOGROUP")


def _output_entry(entry_id: bytes, f: dict[bytes, bytes]) -> OutputEntry:
    encoding = f[b"e"]
    return OutputEntry(
        offset=entry_id.decode(),
        number=int(f[b"n"]),
        step=f[b"s"].decode(),
        attempt=int(f[b"a"]),
        compensation=f[b"c"] == b"1",
        rewind=encoding == b"r",
        kind=int(f.get(b"k", 0)),
        data=f.get(b"d", b""),
        binary=encoding == b"b",
    )


def _stream_rows(reply: Any) -> list[tuple[Any, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """XREADGROUP's reply as (stream, rows), whatever RESP version shaped it."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()]
    return list(reply)


def _node_pool(cluster: Any) -> redis.ConnectionPool:
    """A plain connection pool to one live node of `cluster` (for pub/sub: a
    PUBLISH reaches every node). Each reconnect picks a node anew."""
    nodes = cluster.get_nodes()
    node = random.choice(nodes) if nodes else cluster.get_default_node()
    kwargs = cluster.connection_kwargs
    return redis.ConnectionPool(
        host=node.host,
        port=node.port,
        username=kwargs.get("username"),
        password=kwargs.get("password"),
        socket_connect_timeout=5,
    )
