"""Commands held back on this replica until their shared limits let them start.

A command whose step names shared limits (rate limits, concurrency keys,
token budgets per window: `limits`) is sent to a session only once its
places in every one of them are taken, atomically, in Redis
(`Store.acquire_limits`). Until then it waits here, with the other commands
of the same keys, in a group: first come, first served within a group, the
groups in turn (round-robin), each tried again when its refusal says it may
pass, when a place is given back on this replica, or when a limit it is
under changes on any replica. While it waits, GetStatus shows why as the
step's progress.

The gate belongs to the `Dispatcher` and works through it: which sessions
serve a worker name, recording and sending a command, waking the pullers,
and the set of queue entries held by a task (`Dispatcher.handling`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from multiagents.v1 import common_pb2, workflow_pb2
from multiagents.v1 import worker_service_pb2 as wpb
from multiagents_server import convert, engine, observability
from multiagents_server.store import RETRY_AFTER_UNAVAILABLE_S, CommandEntry, Refusal, StoreError

if TYPE_CHECKING:
    from multiagents_server.dispatcher import Dispatcher, Inflight, Session

log = logging.getLogger(__name__)

# A command waiting for a concurrency key that another replica's attempt
# holds is tried again this often (a local answer tries it at once).
LIMIT_POLL_MS = 100

Keys = tuple[str, ...]


def pending_key(entry: CommandEntry) -> tuple[int, str, bytes]:
    """Which queue entry `entry` is: (bucket, worker name, entry id)."""
    return entry.bucket, entry.worker, entry.entry_id


class LimitGate:
    """The commands of one replica waiting for their shared limits."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher
        self._store = dispatcher.store
        # Commands waiting, by their keys (in round-robin order), and when
        # each group is tried next.
        self._waiting: dict[Keys, deque[tuple[CommandEntry, wpb.Command]]] = {}
        self._due: dict[Keys, int] = {}
        # Why each group's first command was last refused (also the label
        # of its commands in the metric of waiting steps).
        self._refused: dict[Keys, Refusal] = {}
        # Groups whose first command is being tried in Redis now (how many
        # tries), and how often each was told meanwhile that a place may
        # have freed: a refusal that crossed such news is tried again at
        # once, not when it says (its reply can come after the news).
        self._trying: dict[Keys, int] = {}
        self._news: dict[Keys, int] = {}
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # How many commands wait, over all groups.
        self.count = 0

    def entries(self) -> Iterator[CommandEntry]:
        """The queue entries of every waiting command."""
        for group in self._waiting.values():
            for entry, _ in group:
                yield entry

    def hold(
        self, session: Session, entry: CommandEntry, command: wpb.Command, *, waited: bool = False
    ) -> None:
        """Send a command once its places in its limits are taken: joins the
        end of its keys' group when that group waits already, else tries now,
        holding a slot of `session` meanwhile."""
        keys = tuple(command.rate_limits.keys)
        group = self._waiting.get(keys)
        if group and not waited:
            group.append((entry, command))
            self._count(keys, 1)
            # Behind the group's first: what refused that one, else "queued".
            refusal = self._refused.get(keys, Refusal(keys[0], "queued", ""))
            self._dispatcher.spawn(self._show_waiting(command, refusal.key, refusal.reason))
            return
        session.reserved += 1
        self._dispatcher.handling.add(pending_key(entry))
        self._dispatcher.spawn(self._acquire(session, entry, command, waited=waited))

    async def _acquire(
        self, session: Session, entry: CommandEntry, command: wpb.Command, *, waited: bool
    ) -> None:
        dispatcher = self._dispatcher
        keys = tuple(command.rate_limits.keys)
        self._trying[keys] = self._trying.get(keys, 0) + 1
        news = self._news.get(keys, 0)
        try:
            wait_ms, refusal = await self._store.acquire_limits(
                keys, command.command_id, command.deadline.ToMilliseconds(),
                command.rate_limits.tokens,
            )  # fmt: skip
        except StoreError as exc:
            log.warning("cannot take rate limit places: %s", exc)
            wait_ms = round(RETRY_AFTER_UNAVAILABLE_S * 1000)
            refusal = Refusal("", "unavailable", "")
        finally:
            session.reserved -= 1
            dispatcher.handling.discard(pending_key(entry))  # waiting or started below
            crossed = self._tried(keys, news)
        if refusal is not None:
            if crossed:
                wait_ms = 0
            if refusal.key:
                self._refuse(keys, refusal)
            self._wait(entry, command, wait_ms, waited=waited)
            if not waited:
                await self._show_waiting(command, refusal.key, refusal.reason)
            dispatcher.wake_pullers(session.names)
            return
        if session.free < 0 or not session.takes_commands:
            # The session went away meanwhile: give the places back, try again.
            self._release(keys, command.command_id, 0, back_off=False)
            self._wait(entry, command, 0, waited=True)
            dispatcher.wake_pullers(session.names)
            return
        dispatcher.send(session, entry, command)
        if waited and keys in self._waiting:
            # The next of its group may fit too (a limit raised meanwhile):
            # try it now rather than at the next place given back.
            self._due[keys] = 0
            self._wakeup.set()
        if waited:
            with contextlib.suppress(StoreError):
                await self._store.clear_progress(command.transaction_id, command.command_id)

    def _wait(
        self, entry: CommandEntry, command: wpb.Command, wait_ms: int, *, waited: bool
    ) -> None:
        """Keep a command that may not start yet until `wait_ms` from now."""
        keys = tuple(command.rate_limits.keys)
        group = self._waiting.setdefault(keys, deque())
        if waited:
            group.appendleft((entry, command))  # it was the group's first
        else:
            group.append((entry, command))
        self._count(keys, 1)
        self._due[keys] = self._dispatcher.clock + max(1, min(wait_ms, LIMIT_POLL_MS * 10))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._retry(), name="limits")
        self._wakeup.set()

    async def _show_waiting(self, command: wpb.Command, key: str, reason: str) -> None:
        """What GetStatus shows as the step's progress while it waits."""
        details = {"waiting_for_rate_limit": key, "reason": reason}
        record = workflow_pb2.StepProgress(
            details=common_pb2.Payload(data=json.dumps(details).encode()),
            updated_at=convert.timestamp(self._dispatcher.clock),
            attempt=command.attempt,
            command_id=command.command_id,
        )
        with contextlib.suppress(StoreError):
            await self._store.set_progress(
                command.transaction_id, command.command_id, record.SerializeToString(),
                self._dispatcher.config.retention_ms,
            )  # fmt: skip

    async def _retry(self) -> None:
        """Try the first command of each group whose keys should allow it,
        round-robin over the groups, while a local session has a free slot."""
        dispatcher = self._dispatcher
        while not dispatcher.stopping and self._waiting:
            self._wakeup.clear()
            now = dispatcher.clock
            next_due = now + LIMIT_POLL_MS * 10
            for keys in list(self._waiting):
                group = self._waiting[keys]
                if not group:
                    del self._waiting[keys]
                    self._due.pop(keys, None)
                    self._refused.pop(keys, None)
                    continue
                due = self._due.get(keys, 0)
                if due > now:
                    next_due = min(next_due, due)
                    continue
                entry, command = group[0]
                if command.deadline.ToMilliseconds() <= now:
                    group.popleft()  # its timeout fired: nothing to start
                    self._count(keys, -1)
                    dispatcher.spawn(self._store.ack_commands([entry]))
                    continue
                candidates = [s for s in dispatcher.serving(entry.worker) if s.free > 0]
                if not candidates:
                    continue  # a slot that frees wakes this loop
                group.popleft()
                self._count(keys, -1)
                self._due[keys] = now + LIMIT_POLL_MS * 10  # until its answer says
                del self._waiting[keys]
                self._waiting[keys] = group  # to the end: round-robin
                session = max(candidates, key=lambda s: s.free)
                self.hold(session, entry, command, waited=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.001, (next_due - dispatcher.clock) / 1000)):
                    await self._wakeup.wait()

    def nudge(self) -> None:
        """A slot may have freed: try the waiting groups."""
        if self._waiting:
            self._wakeup.set()

    def limit_changed(self, declared: str | None) -> None:
        """A limit was declared, replaced or deleted (`declared` as declared,
        e.g. `tenant:*`; None: any may have been, the bus was lost): the
        groups waiting under a key it governs try again now, on every
        replica, rather than when their retry is due."""
        prefix = declared[:-1] if declared is not None and declared.endswith("*") else None
        self._may_pass(
            lambda keys: (
                declared is None
                or any(k == declared or (prefix is not None and k.startswith(prefix)) for k in keys)
            )
        )

    def _may_pass(self, governed: Callable[[Keys], bool]) -> None:
        """A place may have freed (or a limit changed) under the groups
        `governed` says: they try again now, and a try of theirs in Redis
        now that is refused tries again at once."""
        for keys in self._waiting:
            if governed(keys):
                self._due[keys] = 0
        for keys in self._trying:
            if governed(keys):
                self._news[keys] = self._news.get(keys, 0) + 1
        self._wakeup.set()

    def _tried(self, keys: Keys, news: int) -> bool:
        """A try of the group of `keys` in Redis ended: whether a place may
        have freed under it since it began (its news count was `news`)."""
        crossed = self._news.get(keys, 0) != news
        self._trying[keys] -= 1
        if not self._trying[keys]:
            del self._trying[keys]
            self._news.pop(keys, None)
        return crossed

    def drop(self, command_id: str) -> bool:
        """Stop waiting for a cancelled command (its queue entry acknowledged)."""
        for keys, group in self._waiting.items():
            for item in group:
                if item[1].command_id == command_id:
                    group.remove(item)
                    self._count(keys, -1)
                    self._dispatcher.spawn(self._store.ack_commands([item[0]]))
                    return True
        return False

    def forget(self, worker: str) -> list[CommandEntry]:
        """Take the waiting commands of a worker name no local session serves."""
        left: list[CommandEntry] = []
        for keys, group in list(self._waiting.items()):
            kept = deque(item for item in group if item[0].worker != worker)
            left += [e for e, _ in group if e.worker == worker]
            self._count(keys, len(kept) - len(group))
            self._waiting[keys] = kept
        return left

    def stop(self) -> list[CommandEntry]:
        """Stop trying; returns every waiting command (to requeue)."""
        if self._task is not None:
            self._task.cancel()
        waiting = list(self.entries())
        for keys, group in self._waiting.items():
            self._count(keys, -len(group))
        self._waiting.clear()
        return waiting

    def _count(self, keys: Keys, delta: int) -> None:
        """`delta` commands more (or fewer) wait in the group of `keys`."""
        self.count += delta
        refusal = self._refused.get(keys)
        if refusal is None:
            observability.waiting_for_limit("", "", delta)
        else:
            observability.waiting_for_limit(refusal.limit, refusal.reason, delta)

    def _refuse(self, keys: Keys, refusal: Refusal) -> None:
        """Record why the group of `keys` waits; the commands already in it
        move to the new refusal's label in the metric."""
        if self._refused.get(keys) == refusal:
            return
        waiting = len(self._waiting.get(keys, ()))
        if waiting:
            self._count(keys, -waiting)
        self._refused[keys] = refusal
        if waiting:
            self._count(keys, waiting)

    def release_attempt(
        self, inflight: Inflight, usage: engine.Usage | None, *, back_off: bool
    ) -> None:
        """Give back the places of an attempt that ended; tokens it reserved
        but did not use (by the usage it reported) go back too."""
        if not inflight.limit_keys:
            return
        refund = 0
        if usage is not None and inflight.limit_tokens:
            refund = inflight.limit_tokens - usage.input_tokens - usage.output_tokens
        self._release(inflight.limit_keys, inflight.command_id, refund, back_off=back_off)

    def _release(self, keys: Keys, holder: str, refund: int, *, back_off: bool) -> None:
        async def release() -> None:
            try:
                await self._store.release_limits(keys, holder, refund, back_off)
            except StoreError as exc:
                log.warning("cannot give back rate limit places (they expire): %s", exc)
            released = set(keys)
            self._may_pass(lambda group: not released.isdisjoint(group))

        self._dispatcher.spawn(release())
