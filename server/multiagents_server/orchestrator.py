"""The service layer: runs the engine against the store.

Every change to an execution follows one path, `_transition`: take the
state (remembered from this replica's last commit, else loaded), let the
engine decide, and commit in one Lua call everything the transition does to
its execution: the state, its history, its timers, the index, the next
command(s) in the bucket's queue (claimed at once for a local worker with a
free slot), the acknowledgement of the answered command, the trace and the
watch notification. One round trip per step. Work on other executions
(sub-workflows, the parent) is stored by the same commit as follow-ups and
carried out right after it (see `followups`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from multiagents import wire
from multiagents.v1 import events_pb2, workflow_pb2, workflow_service_pb2
from multiagents_server import convert, engine, followups, observability
from multiagents_server.config import ServerConfig
from multiagents_server.definitions import Definitions
from multiagents_server.engine import codec, failures
from multiagents_server.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from multiagents_server.events import frame
from multiagents_server.outcomes import Outcome, Outcomes
from multiagents_server.output import lane_of
from multiagents_server.store import (
    CommandEntry,
    Commit,
    Fenced,
    OutputEpoch,
    QueuedCommand,
    Store,
)

log = logging.getLogger(__name__)

FLUSH_DELAY_MS = 5_000
# Running executions whose last transition this replica committed (see
# `Orchestrator._cache`); the oldest are forgotten beyond this many.
CACHE_LIMIT = 10_000
# Finished executions kept for their watchers' final status (read at once).
FINISHED_LIMIT = 1_000
# How often (at most) a finishing execution also prunes the index of
# executions whose retention is over, and how many entries one pass looks at.
INDEX_PRUNE_EVERY_MS = 1_000
INDEX_PRUNE_BATCH = 1_000
LIST_SCAN_LIMIT = 5_000
# A page of GetHistory stops before this many bytes of events, under the
# 4 MiB a gRPC client receives by default (protos: GetHistoryRequest).
HISTORY_PAGE_BYTES = 3 * 1024 * 1024


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def request_transaction_id(request_id: str) -> str:
    """The transaction id of the execution started with `request_id`."""
    return "r" + hashlib.sha256(request_id.encode()).hexdigest()[:31]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An execution and its revision."""

    execution: engine.Execution
    revision: int


class LocalDispatch(Protocol):
    """This replica's worker sessions, as the commit path sees them."""

    def reserve(self, worker: str) -> bool:
        """Take a free local slot for `worker`'s next command, if there is one."""

    def release(self, worker: str) -> None:
        """Give back a reserved slot that no command filled."""

    def deliver(self, entries: Sequence[CommandEntry]) -> None:
        """Send claimed commands to local sessions (their slots are reserved)."""


class Orchestrator:
    """Definitions and executions, for the transport and the background loops."""

    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        *,
        replica_id: str,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.replica_id = replica_id
        # This replica's membership epoch in every bucket (set by `join`).
        self.epoch = 0
        self.local: LocalDispatch | None = None
        self._join_lock = asyncio.Lock()
        # Told of every timer this replica's commits schedule (bucket, due ms).
        self.on_schedule: Callable[[int, int], None] = lambda bucket, due: None
        self._locks: dict[str, asyncio.Lock] = {}
        self.definitions = Definitions(store)
        self.outcomes = Outcomes(store, config)
        # Executions this replica finished, for the watchers' final status.
        self._finished: dict[str, Snapshot] = {}
        # The state and revision of running executions as this replica last
        # committed them, so that the next event skips loading them. The
        # commit's revision check stays the judge: if another replica moved
        # an execution on, the commit fails and the state is loaded; an event
        # that the remembered state finds stale is judged again on the stored
        # state before it is dropped.
        self._cache: dict[str, Snapshot] = {}
        self._next_prune_ms = 0
        self._prune_bucket = 0
        self._prune_after = float("-inf")

    async def join(self) -> None:
        """Become a member of every bucket with a new epoch (on start, and
        after being fenced off)."""
        self.epoch = await self.store.join(self.replica_id)
        self._cache.clear()
        log.info("joined the buckets", extra={"replica": self.replica_id, "epoch": self.epoch})

    async def _rejoin(self, fenced_epoch: int) -> None:
        """A commit with `fenced_epoch` was refused: this replica's lease had
        expired (a long pause, or cut off from Redis) and another replica
        fenced it off and took its work. Join again, once for all the
        commits that found out at the same time."""
        async with self._join_lock:
            if self.epoch == fenced_epoch:
                log.error(
                    "this replica was fenced off (its lease expired); rejoining",
                    extra={"replica": self.replica_id, "epoch": fenced_epoch},
                )
                await self.join()

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
        start_delay_ms: int = 0,
        budget: engine.Budget | None = None,
    ) -> tuple[str, bool]:
        """Start an execution; returns (transaction id, created). `budget`
        replaces the definition's.

        With a request id the transaction id is derived from it, so a repeated
        request finds the first execution instead of starting a second.
        """
        spec = await self.definitions.get(name, version)
        fingerprint = ""
        if request_id:
            tx = request_transaction_id(request_id)
            fingerprint = hashlib.sha256(
                wire.dumps(
                    [
                        name,
                        version,
                        input,
                        correlation_id,
                        start_delay_ms,
                        None if budget is None else [budget.max_tokens, budget.max_cost_nano_usd],
                    ]
                )
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
            start_at_ms=now + start_delay_ms if start_delay_ms > 0 else 0,
            budget=budget,
        )
        if await self._create(transition, now):
            log.info(
                "workflow started",
                extra={"transaction_id": tx, "workflow": name, "correlation_id": correlation_id},
            )
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

    async def snapshot_at(self, transaction_id: str, revision: int) -> Snapshot:
        """The execution at `revision` or later: from memory when this replica
        committed exactly that revision as its end, else loaded."""
        finished = self._finished.get(transaction_id)
        if finished is not None and finished.revision == revision:
            return finished
        return await self.snapshot(transaction_id)

    async def workflow_usage(self, name: str) -> engine.Usage:
        """What every execution of workflow `name` has used so far."""
        return engine.Usage(*await self.store.workflow_usage(name))

    async def cancel(self, transaction_id: str, reason: str) -> None:
        log.info("cancel requested", extra={"transaction_id": transaction_id, "reason": reason})
        try:
            transition = await self.apply(transaction_id, engine.CancelRequested(reason))
        except engine.InvalidTransition as exc:
            raise FailedPrecondition(str(exc)) from None
        if transition is None:
            raise NotFound(f"transaction_id: no workflow {transaction_id!r}")

    async def signal(
        self, transaction_id: str, name: str, payload: dict[str, Any], signal_id: str
    ) -> bool:
        """Deliver a signal; True when `signal_id` had been taken already."""
        ex = (await self.snapshot(transaction_id)).execution
        waits = [n for n in ex.spec.nodes if isinstance(n, engine.WaitSpec) and n.signal == name]
        if not waits:
            raise InvalidArgument(
                f"signal: workflow {ex.spec.name!r} has no wait_for_signal step for {name!r}"
            )
        if any(w.approval for w in waits) and not isinstance(payload.get("approved"), bool):
            raise InvalidArgument(
                f"payload.approved: signal {name!r} is an approval: the payload needs a boolean "
                f'"approved"'
            )
        try:
            transition = await self.apply(
                transaction_id, engine.SignalReceived(name, payload, signal_id)
            )
        except engine.InvalidTransition as exc:
            raise FailedPrecondition(str(exc)) from None
        if transition is None:
            raise NotFound(f"transaction_id: no workflow {transaction_id!r}")
        duplicate = not transition.changed
        log.info(
            "signal received",
            extra={"transaction_id": transaction_id, "signal": name, "duplicate": duplicate},
        )
        return duplicate

    async def resume(self, transaction_id: str) -> None:
        """Pick a FAILED execution up again (engine `ResumeRequested`)."""
        ex = (await self.snapshot(transaction_id)).execution
        if ex.parent_transaction_id:
            raise FailedPrecondition(
                f"transaction_id: {transaction_id} is a sub-workflow of "
                f"{ex.parent_transaction_id}: resume that one"
            )
        try:
            transition = await self.apply(transaction_id, engine.ResumeRequested())
        except engine.InvalidTransition as exc:
            raise FailedPrecondition(str(exc)) from None
        if transition is None:
            raise NotFound(f"transaction_id: no workflow {transaction_id!r}")
        log.info("workflow resumed", extra={"transaction_id": transaction_id})

    async def waiting_signals(
        self, *, signal: str, workflow_name: str, approvals_only: bool, limit: int
    ) -> list[workflow_pb2.WaitingSignal]:
        """The approval inbox: waits waiting now, oldest first."""
        found = []
        for _, raw in await self.store.waits():
            for w in workflow_service_pb2.ListWaitingSignalsResponse.FromString(raw).waiting:
                if (
                    (not signal or w.signal == signal)
                    and (not workflow_name or w.workflow_name == workflow_name)
                    and (w.approval or not approvals_only)
                ):
                    found.append(w)
        found.sort(key=lambda w: (w.since.ToMilliseconds(), w.transaction_id, w.path))
        return found[:limit]

    async def history(
        self, transaction_id: str, after_sequence: int = 0, page_size: int = 0
    ) -> tuple[list[events_pb2.WorkflowEvent], bool]:
        """One page of the history: the events after `after_sequence`, at most
        `page_size` of them (0: any number) and HISTORY_PAGE_BYTES of them (at
        least one); and whether more followed when it was read."""
        entries = await self.store.history(transaction_id)
        if not entries and await self.store.load(transaction_id) is None:
            raise NotFound(f"transaction_id: no workflow {transaction_id!r}")
        last = len(entries) if page_size == 0 else min(len(entries), after_sequence + page_size)
        events: list[events_pb2.WorkflowEvent] = []
        size = 2  # the response's `more`
        for sequence in range(after_sequence + 1, last + 1):
            raw = entries[sequence - 1]
            # An event's bytes, its sequence (at most 11) and its framing in
            # the response (at most 6).
            size += len(raw) + 17
            if events and size > HISTORY_PAGE_BYTES:
                break
            event = events_pb2.WorkflowEvent.FromString(raw)
            event.sequence = sequence
            events.append(event)
        return events, after_sequence + len(events) < len(entries)

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
                stored_form = json.loads(st.state)
                # Filtered before the whole decode, which costs several times more:
                # a rare name may scan thousands of executions.
                peek = codec.name_and_state(stored_form)
                if peek is not None and (
                    (name and peek[0] != name) or (state is not None and peek[1] != state.value)
                ):
                    continue
                ex = codec.execution_from_json(stored_form)
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
        ack: CommandEntry | None = None,
        outcome: Outcome | None = None,
    ) -> engine.Transition | None:
        """Apply one event; None when the execution is gone.

        `ack` is the queue entry of the answered command, acknowledged by
        the same commit (or at once when the answer is stale); `outcome` is
        recorded for monitoring. A fired timer is removed by the commit.
        """
        lock = self._locks.setdefault(transaction_id, asyncio.Lock())
        try:
            async with lock:
                transition, revision = await self._transition(transaction_id, event, ack, outcome)
        finally:
            if not lock.locked() and not lock._waiters:
                self._locks.pop(transaction_id, None)
        if outcome is not None:
            self.outcomes.record(outcome)
        # Outside the lock: a follow-up changes other executions (parent,
        # children), which may in turn come back to this one.
        if transition is not None and transition.changed:
            found = followups.of_transition(transition)
            if found:
                await self._follow_up(transition.execution, found, revision)
        return transition

    async def _transition(
        self,
        transaction_id: str,
        event: engine.Event,
        ack: CommandEntry | None,
        outcome: Outcome | None,
    ) -> tuple[engine.Transition | None, int]:
        """The transition made (None when the execution is gone) and its revision."""
        cached = self._cache.pop(transaction_id, None)
        while True:
            if cached is not None:
                execution, revision = cached.execution, cached.revision
            else:
                stored = await self.store.load(transaction_id)
                if stored is None:
                    await self._discard(transaction_id, event, ack, outcome)
                    return None, 0
                execution = codec.execution_from_json(json.loads(stored.state))
                revision = stored.revision
            now = self.clock()
            try:
                transition = engine.apply(execution, event, now)
            except engine.InvalidTransition:
                if cached is None:
                    raise
                # The cached state may be older than the stored one (remembered
                # after a faster commit of the next revision): judge on that.
                cached = None
                continue
            if not transition.changed:
                if cached is not None:
                    cached = None  # judge a stale-looking event on the stored state
                    continue
                self._remember(execution, revision)
                await self._discard(transaction_id, event, ack, outcome)
                return transition, revision
            trace = None if outcome is None or outcome.trace is None else (
                outcome.command_id, outcome.trace)  # fmt: skip
            fired = (event.timer_id,) if isinstance(event, engine.TimerFired) else ()
            reported = getattr(event, "usage", None)
            committed = await self._commit(
                transition,
                revision,
                now,
                ack=ack,
                trace=trace,
                fired=fired,
                previous=execution,
                usage=reported,
            )
            if committed is not None:
                return transition, committed
            cached = None
            log.debug("revision conflict, retrying", extra={"transaction_id": transaction_id})

    async def _discard(
        self,
        transaction_id: str,
        event: engine.Event,
        ack: CommandEntry | None,
        outcome: Outcome | None,
    ) -> None:
        """What a stale event leaves: its queue entry, its timer, its trace."""
        if ack is not None:
            await self.store.ack_commands([ack])
        if isinstance(event, engine.TimerFired):
            await self.store.delete_timer(transaction_id, event.timer_id)
        if outcome is not None and outcome.trace is not None:
            await self.store.add_trace(
                transaction_id, outcome.command_id, outcome.trace, self.config.trace_retention_ms
            )

    async def _create(self, transition: engine.Transition, now: int) -> bool:
        """Commit a new execution; False if it exists already."""
        revision = await self._commit(transition, 0, now, created=True)
        if revision is None:
            return False
        found = followups.of_transition(transition)
        if found:
            await self._follow_up(transition.execution, found, revision)
        return True

    async def _commit(
        self,
        transition: engine.Transition,
        expected_revision: int,
        now: int,
        *,
        created: bool = False,
        ack: CommandEntry | None = None,
        trace: tuple[str, bytes] | None = None,
        fired: tuple[str, ...] = (),
        previous: engine.Execution | None = None,
        usage: engine.Usage | None = None,
    ) -> int | None:
        """Commit a transition from `previous` (None: a new execution); its
        revision, or None on a revision conflict. `usage` is what the answer
        it applies reported (the engine counted it)."""
        ex = transition.execution
        ttl = 0
        if ex.state.terminal:
            ttl = self.config.retention_ms
        elif previous is not None and previous.state.terminal:
            ttl = -1  # resumed: keep it again
        waiting = convert.waiting_signals(ex)
        waits: bytes | None = None
        if waiting != (convert.waiting_signals(previous) if previous is not None else []):
            waits = workflow_service_pb2.ListWaitingSignalsResponse(
                waiting=waiting
            ).SerializeToString()
        revision = expected_revision + 1
        events = tuple(
            convert.history_to_proto(h, ex, revision, now).SerializeToString()
            for h in transition.history
        )
        schedule: list[tuple[str, int]] = []
        unschedule: list[str] = list(fired)
        commands: list[QueuedCommand] = []
        cancels: list[tuple[str, str]] = []
        reserved: list[str] = []
        epochs: list[OutputEpoch] = []
        for effect in transition.effects:
            match effect:
                case engine.DispatchCommand():
                    epochs.append(output_epoch(effect, ex))
                    claim = self.local is not None and self.local.reserve(effect.worker)
                    if claim:
                        reserved.append(effect.worker)
                    command = convert.command_to_proto(effect, ex).SerializeToString()
                    commands.append(QueuedCommand(effect.worker, command, claim))
                case engine.ScheduleTimer():
                    schedule.append((effect.timer_id, effect.due_ms))
                case engine.CancelTimer():
                    unschedule.append(effect.timer_id)
                case engine.CancelCommand():
                    cancels.append((effect.command_id, effect.reason))
        commit = Commit(
            transaction_id=ex.transaction_id,
            expected_revision=expected_revision,
            state=wire.dumps(codec.execution_to_json(ex)),
            history=events,
            followups=followups.encode(followups.of_transition(transition)),
            flush_due_ms=now + FLUSH_DELAY_MS,
            ttl_ms=ttl,
            created_ms=ex.created_ms if created else 0,
            notification=frame(ex.transaction_id, events),
            schedule=tuple(schedule),
            unschedule=tuple(unschedule),
            commands=tuple(commands),
            ack=ack,
            cancels=tuple(cancels),
            trace=trace,
            trace_ttl_ms=self.config.trace_retention_ms,
            waits=waits,
            workflow_name=ex.spec.name,
            usage=(0, 0, 0) if usage is None else _usage_sums(usage),
            output_epochs=tuple(epochs),
        )
        claimed: tuple[CommandEntry, ...] = ()
        try:
            epoch = self.epoch
            try:
                committed = await self.store.commit(commit, replica_id=self.replica_id, epoch=epoch)
            except Fenced:
                # Nothing was written. Rejoin, then judge the transition again
                # on the stored state (the caller retries on a conflict).
                await self._rejoin(epoch)
                committed = await self.store.commit(
                    commit, replica_id=self.replica_id, epoch=self.epoch
                )
            claimed = committed.claimed
        finally:
            # Reserved slots that no claimed command filled go back.
            for entry in claimed:
                reserved.remove(entry.worker)
            for worker in reserved:
                assert self.local is not None
                self.local.release(worker)
        if committed.revision is None:
            return None
        observability.committed(transition, now)
        bucket = self.store.keys.bucket_of(ex.transaction_id)
        for _, due in schedule:
            self.on_schedule(bucket, due)
        if commit.followups is not None:
            self.on_schedule(bucket, commit.flush_due_ms)
        if claimed:
            assert self.local is not None
            self.local.deliver(claimed)
        if not ex.state.terminal:
            self._remember(ex, committed.revision)
        else:
            self._finished[ex.transaction_id] = Snapshot(ex, committed.revision)
            if len(self._finished) > FINISHED_LIMIT:
                del self._finished[next(iter(self._finished))]
        if ex.state.terminal and now >= self._next_prune_ms:
            self._next_prune_ms = now + INDEX_PRUNE_EVERY_MS
            await self._prune_index(now)
        return committed.revision

    # -- follow-ups (sub-workflows) ------------------------------------------------------

    @observability.outbox
    async def _follow_up(
        self, ex: engine.Execution, found: Sequence[followups.Followup], revision: int
    ) -> None:
        """Start or cancel sub-workflows, answer the parent; then forget the
        follow-ups stored by the commit of `revision` (a flush timer redoes
        them if this replica dies first)."""
        for f in found:
            match f:
                case engine.StartChild():
                    await self._start_child(ex, f)
                case engine.CancelChild():
                    with contextlib.suppress(NotFound, FailedPrecondition):
                        await self.cancel(f.child_transaction_id, f.reason)
                case followups.AnswerParent():
                    await self.apply(ex.parent_transaction_id, _answer_parent(ex))
        await self.store.clear_followups(ex.transaction_id, [f"ob:{revision}"])

    async def flush(self, transaction_id: str) -> None:
        """Carry out follow-ups left behind by a replica that died after its commit."""
        stored = await self.store.load(transaction_id)
        pending = await self.store.followups(transaction_id) if stored is not None else {}
        if stored is None or not pending:
            await self.store.clear_followups(transaction_id, list(pending))
            return
        execution = codec.execution_from_json(json.loads(stored.state))
        log.info(
            "carrying out pending follow-ups",
            extra={"transaction_id": transaction_id, "commits": len(pending)},
        )
        observability.followups_recovered(len(pending))
        for field, raw in pending.items():
            revision = int(field.removeprefix("ob:"))
            await self._follow_up(execution, followups.decode(raw, execution), revision)

    async def _start_child(self, parent: engine.Execution, effect: engine.StartChild) -> None:
        try:
            spec = await self.definitions.get(effect.workflow, effect.version)
        except NotFound as exc:
            failure = failures.child_workflow_not_found(str(exc))
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
        if await self._create(transition, now):  # else: started already
            log.info(
                "sub-workflow started",
                extra={"transaction_id": effect.child_transaction_id,
                       "parent": parent.transaction_id},
            )  # fmt: skip

    # -- housekeeping ----------------------------------------------------------------------

    async def _prune_index(self, now: int) -> None:
        """Drop index entries of expired executions, so the index is bounded by
        the retention like the executions it lists (one bucket per pass, a
        pass per second at most, continuing where the last one stopped)."""
        try:
            resume = await self.store.prune_expired_index(
                self._prune_bucket, self._prune_after, now - self.config.retention_ms,
                INDEX_PRUNE_BATCH,
            )  # fmt: skip
        except Exception:
            # Housekeeping only: the transition is committed; the next pass retries.
            log.warning("index pruning failed", exc_info=True)
            return
        if resume is None:
            self._prune_after = float("-inf")
            self._prune_bucket = (self._prune_bucket + 1) % self.store.keys.buckets
        else:
            self._prune_after = resume

    def _remember(self, ex: engine.Execution, revision: int) -> None:
        """Keep a committed state (see `_cache`)."""
        if ex.state.terminal:
            return
        self._cache[ex.transaction_id] = Snapshot(ex, revision)
        if len(self._cache) > CACHE_LIMIT:
            del self._cache[next(iter(self._cache))]


def _usage_sums(u: engine.Usage) -> tuple[int, int, int]:
    return u.input_tokens, u.output_tokens, u.cost_nano_usd


def output_epoch(command: engine.DispatchCommand, ex: engine.Execution) -> OutputEpoch:
    """The output epoch a dispatched command opens: its lane is its command
    id without the attempt number (one lane per node and kind); its output
    is recorded under the node's path (`fanout/legal/review`, `each/3`)."""
    lane, _ = lane_of(command.command_id)
    return OutputEpoch(
        lane, command.attempt, ex.path_of(lane[1:]), command.kind is engine.CommandKind.COMPENSATE
    )


def _answer_parent(child: engine.Execution) -> engine.StepCompleted | engine.StepFailed:
    """The parent step's outcome: the child's final context, or its failure;
    with the child's usage, which the parent's step sums."""
    used = engine.usage.total(child) or None
    if child.state is engine.State.COMPLETED:
        return engine.StepCompleted(child.parent_command_id, child.context, used)
    failure = failures.child_workflow_failed(
        child.transaction_id, child.state.value, child.failure, child.cancel_reason
    )
    return engine.StepFailed(child.parent_command_id, failure, used)
