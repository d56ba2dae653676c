"""The service layer: runs the engine against the store.

Every change to an execution follows one path, `_transition`: load the state,
let the engine decide, commit the new state, its history and an outbox of
effects with one revision-checked Lua call, then carry the effects out in one
pipelined round trip. A crash between commit and effects leaves the outbox in
the execution; a 'flush' timer set with the commit makes some replica carry
it out later, so nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass
from typing import Any

from multiagents import _payload
from multiagents.v1 import events_pb2
from multiagents_server import convert, engine, outbox_codec
from multiagents_server.config import ServerConfig
from multiagents_server.engine import codec
from multiagents_server.errors import AlreadyExists, FailedPrecondition, NotFound
from multiagents_server.store import Outbox, OutcomeRecord, Store
from multiagents_server.store.store import FLUSH_TIMER

log = logging.getLogger(__name__)

FLUSH_DELAY_MS = 5_000
# Running executions whose last transition this replica committed (see
# `Orchestrator._cache`); the oldest are forgotten beyond this many.
CACHE_LIMIT = 10_000
# How often (at most) a finishing execution also prunes the index of
# executions whose retention is over, and how many entries one pass looks at.
INDEX_PRUNE_EVERY_MS = 1_000
INDEX_PRUNE_BATCH = 1_000
LIST_SCAN_LIMIT = 5_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An execution and its revision."""

    execution: engine.Execution
    revision: int


class Orchestrator:
    """Definitions and executions, for the transport and the background loops."""

    def __init__(
        self, store: Store, config: ServerConfig, *, clock: Callable[[], int] = now_ms
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self._locks: dict[str, asyncio.Lock] = {}
        # The state and revision of running executions as this replica last
        # committed them, so that the next event skips loading them. The
        # commit's revision check stays the judge: if another replica moved
        # an execution on, the commit fails and the state is loaded; an event
        # that the remembered state finds stale is judged again on the stored
        # state before it is dropped.
        self._cache: dict[str, Snapshot] = {}
        self._next_prune_ms = 0
        self._prune_after = float("-inf")

    # -- definitions -----------------------------------------------------------

    async def register(self, spec: engine.WorkflowSpec) -> bool:
        """Store a definition; False if the identical one exists already."""
        encoded = _payload.dumps(codec.spec_to_json(spec))
        existing = await self.store.add_definition(spec.name, spec.version, encoded)
        if existing is None:
            log.info("workflow registered", extra={"workflow": spec.name, "version": spec.version})
            return True
        if codec.spec_from_json(json.loads(existing)) == spec:
            return False
        raise AlreadyExists(
            f"definition: workflow {spec.name!r} version {spec.version} is registered with a "
            "different definition; register it under a new version"
        )

    async def definition(self, name: str, version: int = 0) -> engine.WorkflowSpec:
        versions = await self.store.definition_versions(name)
        if not versions:
            raise NotFound(f"workflow_name: no workflow named {name!r}")
        chosen = version or max(versions)
        if chosen not in versions:
            raise NotFound(f"version: workflow {name!r} has no version {version}")
        return codec.spec_from_json(json.loads(versions[chosen]))

    async def definitions(self) -> list[engine.WorkflowSpec]:
        return [await self.definition(name) for name in await self.store.definition_names()]

    # -- executions ----------------------------------------------------------------

    async def execute(
        self,
        name: str,
        input: dict[str, Any],
        *,
        version: int = 0,
        request_id: str = "",
        correlation_id: str = "",
        metadata: dict[str, str] | None = None,
    ) -> tuple[str, bool]:
        """Start an execution; returns (transaction id, created).

        With a request id the transaction id is derived from it, so a repeated
        request finds the first execution instead of starting a second.
        """
        spec = await self.definition(name, version)
        fingerprint = ""
        if request_id:
            tx = "r" + hashlib.sha256(request_id.encode()).hexdigest()[:31]
            fingerprint = hashlib.sha256(
                _payload.dumps([name, version, input, correlation_id])
            ).hexdigest()
        else:
            tx = uuid.uuid4().hex
        now = self.clock()
        transition = engine.start(
            spec,
            transaction_id=tx,
            correlation_id=correlation_id,
            input=input,
            now_ms=now,
            request_fingerprint=fingerprint,
            metadata=metadata,
        )
        if await self._commit(transition, 0, now, created=True):
            log.info(
                "workflow started",
                extra={"transaction_id": tx, "workflow": name, "correlation_id": correlation_id},
            )
            await self._follow_up(transition)
            return tx, True
        existing = await self.snapshot(tx)
        if existing.execution.request_fingerprint != fingerprint:
            raise AlreadyExists(
                f"request_id: {request_id!r} was already used for a different request"
            )
        return tx, False

    async def snapshot(self, transaction_id: str) -> Snapshot:
        stored = await self.store.load(transaction_id)
        if stored is None:
            raise NotFound(f"transaction_id: no workflow {transaction_id!r}")
        return Snapshot(codec.execution_from_json(json.loads(stored.state)), stored.revision)

    async def cancel(self, transaction_id: str, reason: str) -> None:
        try:
            transition = await self.apply(transaction_id, engine.CancelRequested(reason))
        except engine.InvalidTransition as exc:
            raise FailedPrecondition(str(exc)) from None
        if transition is None:
            raise NotFound(f"transaction_id: no workflow {transaction_id!r}")

    async def history(self, transaction_id: str) -> list[events_pb2.WorkflowEvent]:
        entries = await self.store.history(transaction_id)
        if not entries and await self.store.load(transaction_id) is None:
            raise NotFound(f"transaction_id: no workflow {transaction_id!r}")
        events = []
        for sequence, raw in enumerate(entries, start=1):
            event = events_pb2.WorkflowEvent.FromString(raw)
            event.sequence = sequence
            events.append(event)
        return events

    async def list(
        self, *, state: engine.State | None, name: str, page_size: int, page_token: str
    ) -> tuple[list[Snapshot], str]:
        """A page of executions, newest first, filtered by state and name."""
        before, after_tx = float("inf"), ""
        if page_token:
            token_score, _, after_tx = page_token.partition(":")
            before = float(token_score)
        found: list[Snapshot] = []
        scanned = 0
        cursor = ""
        while len(found) < page_size and scanned < LIST_SCAN_LIMIT:
            rows = await self.store.index_page(before, page_size + 50)
            rows = [(tx, s) for tx, s in rows if not (s == before and after_tx and tx >= after_tx)]
            if not rows:
                return found, ""
            stored = await self.store.load_many([tx for tx, _ in rows])
            gone = [tx for (tx, _), st in zip(rows, stored, strict=True) if st is None]
            await self.store.prune_index(gone)
            for (tx, score), st in zip(rows, stored, strict=True):
                scanned += 1
                before, after_tx = score, tx
                cursor = f"{int(score)}:{tx}"
                if st is None:
                    continue
                ex = codec.execution_from_json(json.loads(st.state))
                if (state is None or ex.state is state) and (not name or ex.spec.name == name):
                    found.append(Snapshot(ex, st.revision))
                    if len(found) == page_size:
                        break
        return found, cursor

    # -- engine inputs ---------------------------------------------------------------

    async def apply(
        self,
        transaction_id: str,
        event: engine.Event,
        *,
        ack: tuple[str, bytes] | None = None,
        outcome: OutcomeRecord | None = None,
    ) -> engine.Transition | None:
        """Apply one event; None when the execution is gone.

        `ack` is a command stream entry to acknowledge once the event is
        applied (or found stale); `outcome` is recorded for monitoring in the
        same round trip.
        """
        lock = self._locks.setdefault(transaction_id, asyncio.Lock())
        replayed: list[engine.Transition] = []
        try:
            async with lock:
                transition = await self._transition(transaction_id, event, ack, outcome, replayed)
        finally:
            if not lock.locked() and not lock._waiters:
                self._locks.pop(transaction_id, None)
        # Outside the lock: a follow-up changes other executions (parent,
        # children), which may in turn come back to this one. An outbox left
        # by a dead replica is followed up like a fresh transition.
        for done in replayed:
            await self._follow_up(done)
        if transition is not None and transition.changed:
            await self._follow_up(transition)
        return transition

    # -- sub-workflows -------------------------------------------------------------

    async def _follow_up(self, transition: engine.Transition) -> None:
        """Start or cancel sub-workflows, and answer the parent of a finished one.

        These run after the commit and its effects. If the replica dies in
        between, the parent step's timeout fails the attempt and retries it.
        """
        ex = transition.execution
        for effect in transition.effects:
            if isinstance(effect, engine.StartChild):
                await self._start_child(ex, effect)
            elif isinstance(effect, engine.CancelChild):
                with contextlib.suppress(NotFound, FailedPrecondition):
                    await self.cancel(effect.child_transaction_id, effect.reason)
        if ex.state.terminal and ex.parent_transaction_id:
            await self.apply(ex.parent_transaction_id, _answer_parent(ex))

    async def _start_child(self, parent: engine.Execution, effect: engine.StartChild) -> None:
        try:
            spec = await self.definition(effect.workflow, effect.version)
        except NotFound as exc:
            failure = engine.Failure(str(exc), "ChildWorkflowNotFound", non_retryable=True)
            await self.apply(parent.transaction_id, engine.StepFailed(effect.command_id, failure))
            return
        now = self.clock()
        transition = engine.start(
            spec,
            transaction_id=effect.child_transaction_id,
            correlation_id=parent.correlation_id,
            input=effect.context,
            now_ms=now,
            metadata=parent.metadata,
            parent_transaction_id=parent.transaction_id,
            parent_command_id=effect.command_id,
        )
        if await self._commit(transition, 0, now, created=True):  # else: started already
            log.info(
                "sub-workflow started",
                extra={"transaction_id": effect.child_transaction_id,
                       "parent": parent.transaction_id},
            )  # fmt: skip
            await self._follow_up(transition)

    async def _transition(
        self,
        transaction_id: str,
        event: engine.Event,
        ack: tuple[str, bytes] | None,
        outcome: OutcomeRecord | None,
        replayed: MutableSequence[engine.Transition],
    ) -> engine.Transition | None:
        acks = [] if ack is None else [ack]
        cached = self._cache.pop(transaction_id, None)
        while True:
            if cached is not None:
                execution, revision = cached.execution, cached.revision
            else:
                stored = await self.store.load(transaction_id)
                if stored is None:
                    await self.store.ack_commands(acks, outcome)
                    return None
                execution = codec.execution_from_json(json.loads(stored.state))
                revision = stored.revision
                if stored.outbox is not None:
                    effects = await self._replay_outbox(execution, revision, stored.outbox)
                    replayed.append(engine.Transition(execution, effects))
            now = self.clock()
            transition = engine.apply(execution, event, now)
            if not transition.changed:
                if cached is not None:
                    cached = None  # judge a stale-looking event on the stored state
                    continue
                await self.store.ack_commands(acks, outcome)
                return transition
            if await self._commit(transition, revision, now, ack=ack, outcome=outcome):
                return transition
            cached = None
            log.debug("revision conflict, retrying", extra={"transaction_id": transaction_id})

    async def flush(self, transaction_id: str) -> None:
        """Carry out an outbox left behind by a replica that died mid-transition."""
        stored = await self.store.load(transaction_id)
        if stored is None:
            await self.store.delete_timer(transaction_id, FLUSH_TIMER)
            return
        if stored.outbox is None:
            await self.store.delete_timer(transaction_id, FLUSH_TIMER)
            return
        execution = codec.execution_from_json(json.loads(stored.state))
        effects = await self._replay_outbox(execution, stored.revision, stored.outbox)
        await self._follow_up(engine.Transition(execution, effects))

    async def _commit(
        self,
        transition: engine.Transition,
        expected_revision: int,
        now: int,
        *,
        created: bool = False,
        ack: tuple[str, bytes] | None = None,
        outcome: OutcomeRecord | None = None,
    ) -> bool:
        ex = transition.execution
        revision = expected_revision + 1
        events = [
            convert.history_to_proto(h, ex, revision, now).SerializeToString()
            for h in transition.history
        ]
        outbox_json = outbox_codec.encode(transition.effects)
        ttl = self.config.retention_ms if ex.state.terminal else 0
        committed = await self.store.commit(
            ex.transaction_id,
            expected_revision,
            _payload.dumps(codec.execution_to_json(ex)),
            events,
            outbox=outbox_json,
            ttl_ms=ttl,
            flush_due_ms=now + FLUSH_DELAY_MS,
            created_ms=ex.created_ms if created else None,
        )
        if committed is None:
            return False
        outbox = self._outbox(ex, transition.effects)
        outbox.events = events
        outbox.ack = ack
        outbox.outcome = outcome
        await self.store.carry_out(
            ex.transaction_id, committed if outbox_json is not None else None, outbox
        )
        if not ex.state.terminal:
            self._remember(ex, committed)
        elif now >= self._next_prune_ms:
            self._next_prune_ms = now + INDEX_PRUNE_EVERY_MS
            await self._prune_index(now)
        return True

    async def _prune_index(self, now: int) -> None:
        """Drop index entries of expired executions, so the index is bounded by
        the retention like the executions it lists (a pass per second at
        most, continuing where the last one stopped)."""
        try:
            resume = await self.store.prune_expired_index(
                self._prune_after, now - self.config.retention_ms, INDEX_PRUNE_BATCH
            )
        except Exception:
            # Housekeeping only: the transition is committed; the next pass retries.
            log.warning("index pruning failed", exc_info=True)
            return
        self._prune_after = float("-inf") if resume is None else resume

    def _remember(self, ex: engine.Execution, revision: int) -> None:
        """Keep a committed state whose outbox was carried out (see `_cache`)."""
        self._cache[ex.transaction_id] = Snapshot(ex, revision)
        if len(self._cache) > CACHE_LIMIT:
            del self._cache[next(iter(self._cache))]

    async def _replay_outbox(
        self, ex: engine.Execution, revision: int, raw: bytes
    ) -> tuple[engine.Effect, ...]:
        effects = outbox_codec.decode(raw, ex)
        log.info(
            "carrying out a pending outbox",
            extra={"transaction_id": ex.transaction_id, "effects": len(effects)},
        )
        await self.store.carry_out(ex.transaction_id, revision, self._outbox(ex, effects))
        return effects

    def _outbox(self, ex: engine.Execution, effects: tuple[engine.Effect, ...]) -> Outbox:
        outbox = Outbox()
        for effect in effects:
            match effect:
                case engine.DispatchCommand():
                    command = convert.command_to_proto(effect, ex).SerializeToString()
                    outbox.commands.append((effect.worker, command))
                case engine.ScheduleTimer():
                    outbox.schedule.append((effect.timer_id, effect.due_ms))
                case engine.CancelTimer():
                    outbox.unschedule.append(effect.timer_id)
                case engine.CancelCommand():
                    outbox.cancels.append(effect.command_id.encode())
        return outbox


def _answer_parent(child: engine.Execution) -> engine.StepCompleted | engine.StepFailed:
    """The parent step's outcome: the child's final context, or its failure."""
    if child.state is engine.State.COMPLETED:
        return engine.StepCompleted(child.parent_command_id, child.context)
    cause = child.failure
    message = f"sub-workflow {child.transaction_id} ended {child.state.value}"
    if cause is not None:
        message += f": {cause.message}"
    return engine.StepFailed(
        child.parent_command_id,
        engine.Failure(
            message, "ChildWorkflowFailed", non_retryable=cause is None or cause.non_retryable
        ),
    )
