"""Worker sessions of one replica, and the flow of commands to them.

A command reaches a local session one of two ways. On the hot path, the
commit that enqueues it also claims it for this replica when a local session
serving its worker has a slot free (reserved before the commit): no read at
all. Otherwise it waits in its bucket's queue, and the puller of its worker
name, told by a wake-up on the bus which bucket has work, takes it when a
slot frees (consumer group, this replica as consumer), so waiting commands
stay in Redis. Pullers also scan every bucket now and then, in case a
wake-up was lost. Answers are applied through the orchestrator, whose
commit acknowledges the queue entry. A session that ends loses its
in-flight commands (retryable `WorkerLost` failures); a replica that dies
is handled by `liveness`; a command Redis handed to this replica in a reply
that never arrived is found and sent again (`recover_lost`). A command
whose step names shared limits is sent only once its places in them are
taken; until then it waits in this replica's `LimitGate`.

A command is bound to the session it was sent to: only that session may
answer it. Each session gets a secret resume token in Welcome. A session
that ends with commands in flight keeps them in Redis for
`resume_window_ms`, under a hash of its token and worker id; a worker that
reconnects (to any replica) with that token and the same worker id takes
them over, at Hello or, if the old session's end was not noticed yet, as
soon as it is (`_keep_resuming`; answers that come before are kept aside),
and is told which in `Resumed`. Commands not taken over by then fail as
`WorkerLost`. Taking them is one GETDEL: either the new session or the
failing replica gets them, never both.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from multiagents.v1 import common_pb2
from multiagents.v1 import worker_service_pb2 as wpb
from multiagents_server import engine, limits, observability, progress
from multiagents_server.config import ServerConfig
from multiagents_server.engine import failures
from multiagents_server.engine.saga import HEARTBEAT_TIMER, timer_id
from multiagents_server.limit_gate import LimitGate, pending_key
from multiagents_server.orchestrator import Orchestrator
from multiagents_server.outcomes import Outcome
from multiagents_server.store import (
    RETRY_AFTER_UNAVAILABLE_S,
    CommandEntry,
    Store,
    StoreError,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

READ_BATCH = 100
# A puller with free slots and no wake-up scans every bucket this often.
SCAN_S = 1.0
# How long an answer is retried while Redis is unreachable before the step's
# timeout is left to recover it.
ANSWER_RETRY_S = 60.0
# Commands waiting for limits held by one replica: above this, its pullers
# read no more until some start.
MAX_WAITING = 10_000
# A command pending at this replica that it does not hold, not delivered
# again for this long, was lost on its way here (see `recover_lost`): twice
# the deadline of a Redis call, so that no reply still on its way is taken
# for lost.
LOST_AFTER_MS = 10_000
# A resume waits at most this long for its previous session, being closed on
# this replica, to keep its commands for it.
SETTLE_WAIT_S = 5.0
# A session whose previous session's end was not noticed at Hello tries to
# take over that session's commands this often (see `_keep_resuming`).
RESUME_POLL_S = 0.5


def transaction_of(command_id: str) -> str:
    return command_id.rsplit(":", 2)[0]


def holder_key(resume_token: str, worker_id: str) -> str:
    """Whose commands a resume token claims: the token with the worker id."""
    return hashlib.sha256(f"{resume_token}\0{worker_id}".encode()).hexdigest()


@dataclass(slots=True)
class Inflight:
    """A command sent to a session and not answered yet."""

    command_id: str
    entry: CommandEntry
    started_ms: int
    heartbeat_timeout_ms: int
    step: str = ""
    correlation_id: str = ""
    session_id: str = ""
    # The shared limits whose places the command holds, and its tokens.
    limit_keys: tuple[str, ...] = ()
    limit_tokens: int = 0

    @property
    def worker(self) -> str:
        return self.entry.worker

    @property
    def dispatched_ms(self) -> int:
        """When the command was queued: the queue entry id is its XADD time."""
        return int(self.entry.entry_id.split(b"-", 1)[0])

    @classmethod
    def of(
        cls, entry: CommandEntry, command: wpb.Command, started_ms: int, session_id: str
    ) -> Inflight:
        return cls(
            command.command_id,
            entry,
            started_ms,
            command.heartbeat_timeout.ToMilliseconds()
            if command.HasField("heartbeat_timeout")
            else 0,
            step=command.step,
            correlation_id=command.correlation_id,
            session_id=session_id,
            limit_keys=tuple(command.rate_limits.keys),
            limit_tokens=command.rate_limits.tokens,
        )


def _encode_kept(inflight: Iterable[Inflight]) -> bytes:
    """The commands an ended session kept for a resume (JSON)."""
    kept = [
        {
            "bucket": i.entry.bucket,
            "worker": i.entry.worker,
            "entry_id": i.entry.entry_id.decode(),
            "command": base64.b64encode(i.entry.command).decode(),
            "started_ms": i.started_ms,
        }
        for i in inflight
    ]
    return json.dumps(kept).encode()


def _decode_kept(raw: bytes, session_id: str) -> dict[str, Inflight]:
    found = {}
    for kept in json.loads(raw):
        entry = CommandEntry(
            kept["bucket"], kept["worker"], kept["entry_id"].encode(),
            base64.b64decode(kept["command"]),
        )  # fmt: skip
        command = wpb.Command.FromString(entry.command)
        found[command.command_id] = Inflight.of(entry, command, kept["started_ms"], session_id)
    return found


def _refuse(session: Session, command_id: str) -> None:
    """Drop an answer that is not this session's to give (another session's
    command, one answered already, or one failed as lost); the session is
    not told, so that it cannot probe for live ids."""
    log.warning(
        "refused an answer for a command this session does not hold",
        extra={"session": session.id, "worker_id": session.worker_id, "command_id": command_id},
    )


def _tell_resumed(session: Session, command_ids: Iterable[str]) -> None:
    """Send `Resumed`: the worker answers again what it answered on the
    previous session and fails what it never got (docs/protocol.md)."""
    ids = sorted(command_ids)
    if ids:
        resumed = wpb.Resumed(command_ids=ids)
        session.outgoing.put_nowait(wpb.ConnectResponse(resumed=resumed))


@dataclass(eq=False, slots=True)
class Session:
    """One connected worker process."""

    id: str
    worker_id: str
    names: frozenset[str]
    max_concurrency: int
    sdk_language: str
    sdk_version: str
    connected_ms: int
    last_seen_ms: int
    # The secret a reconnecting worker presents to take over `inflight`.
    resume_token: str = ""
    # The token of the session this one resumes; cleared once its commands
    # were taken over.
    resumes: str = ""
    outgoing: asyncio.Queue[wpb.ConnectResponse | None] = field(default_factory=asyncio.Queue)
    inflight: dict[str, Inflight] = field(default_factory=dict)
    # Slots held for commands that a commit in progress may claim.
    reserved: int = 0
    draining: bool = False
    closed: bool = False
    end_reason: str = ""
    # Set once the session is closed and its commands kept or failed.
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    # While `resumes` is set: one take-over at an answer at a time, and the
    # answers that came before their command could be taken over.
    resuming: asyncio.Lock = field(default_factory=asyncio.Lock)
    early: dict[str, engine.StepCompleted | engine.StepFailed] = field(default_factory=dict)

    @property
    def holder(self) -> str:
        """The key of the commands this session holds (see `holder_key`)."""
        return holder_key(self.resume_token, self.worker_id)

    def end(self, reason: str) -> None:
        """Ask the session's stream to finish; the servicer then closes it."""
        if not self.end_reason:
            self.end_reason = reason
            self.outgoing.put_nowait(None)

    @property
    def takes_commands(self) -> bool:
        """Whether new commands may be sent: not draining, and its end not
        asked for. A command put behind the end marker is never sent, yet
        counts as held (and a resume would take it over unsent)."""
        return not (self.draining or self.closed or self.end_reason)

    @property
    def free(self) -> int:
        if not self.takes_commands:
            return 0
        return self.max_concurrency - len(self.inflight) - self.reserved

    def info(self, replica_id: str) -> dict[str, object]:
        return {
            "session_id": self.id,
            "worker_id": self.worker_id,
            "worker_names": sorted(self.names),
            "max_concurrency": self.max_concurrency,
            "in_flight": len(self.inflight),
            "last_seen_ms": self.last_seen_ms,
            "sdk_language": self.sdk_language,
            "sdk_version": self.sdk_version,
            "replica_id": replica_id,
            "draining": self.draining,
            "connected_ms": self.connected_ms,
        }


class Dispatcher:
    """Worker sessions of one replica, the commands sent to them and their
    answers; commands waiting for shared limits are held by `limits`."""

    def __init__(
        self,
        orchestrator: Orchestrator,
        store: Store,
        config: ServerConfig,
        *,
        replica_id: str,
    ) -> None:
        self.orchestrator = orchestrator
        self.store = store
        self.config = config
        self.replica_id = replica_id
        self.sessions: dict[str, Session] = {}
        # Open sessions by `holder_key`, for a resume that finds its previous
        # session still open here; and the sessions that ended with commands
        # kept for a resume, by session id, with the task that fails them.
        self._holders: dict[str, Session] = {}
        self._kept: dict[str, tuple[Session, asyncio.Task[None]]] = {}
        # Sessions being closed (their commands are being kept or failed).
        self._closing: dict[str, Session] = {}
        # Commands held by a task on their way elsewhere: an answer (or a
        # loss) being applied, limits being taken (see `_held`).
        self.handling: set[tuple[int, str, bytes]] = set()
        self._pullers: dict[str, asyncio.Task[None]] = {}
        self._backlog: dict[str, deque[CommandEntry]] = {}
        self._wakeup: dict[str, asyncio.Event] = {}
        # Buckets whose queue of a worker name may hold commands not taken yet.
        self._dirty: dict[str, set[int]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        # Commands waiting for their shared limits.
        self.limits = LimitGate(self)
        # Called when the sessions change, to publish them (the liveness loop's renewal).
        self.on_sessions_changed: Callable[[], Coroutine[Any, Any, None]] | None = None
        orchestrator.local = self

    @property
    def clock(self) -> int:
        return self.orchestrator.clock()

    # -- sessions -------------------------------------------------------------

    async def open_session(self, hello: wpb.Hello) -> Session:
        """Register a session. Its worker names are recorded as served by this
        replica first, so a reaper that finds this replica dead knows which
        queues may hold its pending commands."""
        await self.store.add_served(self.replica_id, sorted(hello.worker_names))
        now = self.clock
        session = Session(
            id=uuid.uuid4().hex,
            worker_id=hello.worker_id,
            names=frozenset(hello.worker_names),
            max_concurrency=hello.max_concurrency,
            sdk_language=hello.sdk_language,
            sdk_version=hello.sdk_version,
            connected_ms=now,
            last_seen_ms=now,
            resume_token=secrets.token_urlsafe(24),
            resumes=hello.resume_token,
        )
        if session.resumes:
            previous_holder = holder_key(session.resumes, session.worker_id)
            previous = self._holders.get(previous_holder)
            if previous is not None:
                await self._take_over(previous, session)
            else:
                await self._settled(previous_holder)
                await self._resume(session)
            if session.resumes:  # its end not noticed yet: taken over later
                self.spawn(self._keep_resuming(session))
        self._holders[session.holder] = session
        self.sessions[session.id] = session
        for name in session.names:
            self._backlog.setdefault(name, deque())
            self._wakeup.setdefault(name, asyncio.Event())
            self._dirty.setdefault(name, set(self.store.buckets))
            if name not in self._pullers or self._pullers[name].done():
                self._pullers[name] = asyncio.create_task(self._pull(name), name=f"pull:{name}")
        self.wake_pullers(session.names)
        self._sessions_changed()  # publish the session for ListWorkers now
        observability.session_opened(session)
        log.info(
            "worker session opened",
            extra={"session": session.id, "worker_id": session.worker_id,
                   "workers": sorted(session.names), "language": session.sdk_language},
        )  # fmt: skip
        return session

    async def _settled(self, holder: str) -> None:
        """Wait (a bounded time) for the session of `holder` being closed here
        to have kept its commands in Redis, so that a resume finds them."""
        closing = [s for s in self._closing.values() if s.holder == holder]
        if closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing[0].settled.wait(), SETTLE_WAIT_S)

    async def _take_over(self, previous: Session, session: Session) -> None:
        """Move the commands of `previous`, still open here, to `session`
        (after any take-over `previous` is doing itself); if `previous` closed
        meanwhile, take them from where its close kept them."""
        async with previous.resuming:
            moved = not previous.closed
            if moved:
                self._move(previous, session)
        if not moved:
            await self._settled(previous.holder)
            await self._resume(session)
            return
        _tell_resumed(session, session.inflight)
        log.info(
            "worker session %s resumes %s with %d commands in flight",
            session.id, previous.id, len(session.inflight),
        )  # fmt: skip

    def _move(self, previous: Session, session: Session) -> None:
        """Move the commands of `previous` to `session`, and what it resumed."""
        session.inflight, previous.inflight = previous.inflight, {}
        for inflight in session.inflight.values():
            inflight.session_id = session.id
        # What `previous` still resumed itself, this session resumes now.
        session.resumes, session.early = previous.resumes, previous.early
        previous.resumes, previous.early = "", {}
        previous.end(f"resumed by session {session.id}")

    async def _resume(self, session: Session, answering: str = "") -> bool:
        """Take over the commands kept by the ended session `session` resumes,
        and tell the worker which (but `answering`, the one it answers now);
        False when there are none (unknown token, other worker id, expired,
        or that session's end not noticed yet)."""
        try:
            raw = await self.store.take_for_resume(holder_key(session.resumes, session.worker_id))
        except StoreUnavailable:
            return False
        if raw is None:
            return False
        taken = _decode_kept(raw, session.id)
        session.inflight.update(taken)
        session.resumes = ""
        early, session.early = session.early, {}
        _tell_resumed(session, [cid for cid in taken if cid != answering and cid not in early])
        for cid, event in early.items():  # answers that came before their command
            held = session.inflight.pop(cid, None)
            if held is None:
                _refuse(session, cid)
            else:
                self.spawn(self._apply_answer(session, held, event))
        try:
            # Held here now: the replica that sent them must not send them again.
            await self.store.claim(
                self.replica_id, [pending_key(i.entry) for i in taken.values()], min_idle_ms=0
            )
        except StoreUnavailable as exc:
            log.warning("cannot take over the queue entries of resumed commands: %s", exc)
        log.info("worker session %s resumed %d commands in flight", session.id, len(taken))
        return True

    async def close_session(self, session: Session, reason: str) -> None:
        """End a session. Its unanswered commands fail as WorkerLost (retryable),
        after `resume_window_ms` unless its worker resumes them meanwhile."""
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.id, None)
        self._closing[session.id] = session
        try:
            await self._close(session, reason)
        finally:
            del self._closing[session.id]
            session.settled.set()

    async def _close(self, session: Session, reason: str) -> None:
        observability.session_closed(session)
        if self._holders.get(session.holder) is session:
            del self._holders[session.holder]
        session.end(reason)
        if session.resumes and self.stopping:
            self._stop_resuming(session)
        elif session.resumes:
            # Still resuming: take over what can be, to keep it with this
            # session's commands for the next session that resumes this one.
            async with session.resuming:
                if session.resumes:
                    await self._resume(session)
                self._stop_resuming(session)
        window = self.config.resume_window_ms
        log.info(
            "worker session %s closed (%s) with %d commands in flight",
            session.id, reason, len(session.inflight),
        )  # fmt: skip
        if session.inflight and window > 0 and not self.stopping:
            try:
                # Twice the window: the replica failing them must still find them.
                await self.store.keep_for_resume(
                    session.holder, _encode_kept(session.inflight.values()), 2 * window
                )
            except StoreUnavailable:
                await self._lose(session, reason)
            else:
                expiry = self.spawn(self._expire(session, reason, window / 1000))
                self._kept[session.id] = (session, expiry)
        else:
            await self._lose(session, reason)
            if window > 0:
                # Nothing kept, said so: a session resuming this one on
                # another replica stops looking (`_keep_resuming`).
                with contextlib.suppress(StoreUnavailable):
                    await self.store.keep_for_resume(session.holder, _encode_kept(()), 2 * window)
        self.wake_pullers(session.names)
        if not self.stopping:
            self._sessions_changed()

    async def _expire(self, session: Session, reason: str, window_s: float) -> None:
        await asyncio.sleep(window_s)
        try:
            await self._settle(session, f"{reason}; not resumed")
        finally:
            self._kept.pop(session.id, None)

    async def _settle(self, session: Session, reason: str) -> None:
        """Fail the kept commands of an ended session, unless a resume took them."""
        try:
            taken = await self.store.take_for_resume(session.holder) is None
        except StoreUnavailable:
            taken = False  # failing them is safe: the first answer applied wins
        if taken:
            session.inflight.clear()
        else:
            await self._lose(session, reason)

    async def _lose(self, session: Session, reason: str) -> None:
        lost = list(session.inflight.values())
        self.handling.update(pending_key(i.entry) for i in lost)
        session.inflight.clear()
        if not lost:
            return
        failure = failures.worker_lost(f"worker session lost: {reason}")
        # Shielded: a cancelled caller must not leave lost commands unfailed.
        await asyncio.shield(self.fail_lost(lost, failure))

    def _sessions_changed(self) -> None:
        if self.on_sessions_changed is not None:
            self.spawn(self.on_sessions_changed())

    async def fail_lost(self, lost: Sequence[Inflight], failure: engine.Failure) -> None:
        """Fail commands whose session (or replica) is gone: WorkerLost, retried."""
        keys = [pending_key(i.entry) for i in lost]
        self.handling.update(keys)
        try:
            for inflight in lost:
                self.limits.release_attempt(inflight, None, back_off=False)
            await asyncio.gather(*(
                self._apply(
                    transaction_of(i.command_id),
                    engine.StepFailed(i.command_id, failure),
                    ack=i.entry,
                    outcome=self._outcome(i, failure),
                )
                for i in lost
            ))  # fmt: skip
        finally:
            self.handling.difference_update(keys)

    async def _apply(
        self,
        transaction_id: str,
        event: engine.StepCompleted | engine.StepFailed,
        *,
        ack: CommandEntry | None,
        outcome: Outcome | None,
    ) -> None:
        """Apply a worker's answer, retrying while Redis is unreachable.

        Giving up is safe: the command stays pending at this replica, which
        sends it again (`recover_lost`); else its step's timeout would.
        """
        delay = 0.1
        try:
            async with asyncio.timeout(ANSWER_RETRY_S):
                while True:
                    try:
                        await self.orchestrator.apply(
                            transaction_id, event, ack=ack, outcome=outcome
                        )
                        return
                    except StoreUnavailable as exc:
                        log.warning(
                            "cannot apply an answer yet: %s", exc,
                            extra={"transaction_id": transaction_id,
                                   "command_id": event.command_id},
                        )  # fmt: skip
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 2.0)
        except TimeoutError:
            log.error(
                "gave up applying an answer; its timeout will",
                extra={"transaction_id": transaction_id, "command_id": event.command_id},
            )

    def _outcome(self, inflight: Inflight, failure: engine.Failure | None) -> Outcome | None:
        """The monitoring record of an answered (or lost) command."""
        config = self.config
        now = self.clock
        observability.step_answered(inflight, failure, now)
        if not (config.event_monitoring or config.worker_monitoring):
            return None
        trace = None
        if config.event_monitoring:
            trace = json.dumps(
                {
                    "command_id": inflight.command_id,
                    "transaction_id": transaction_of(inflight.command_id),
                    "correlation_id": inflight.correlation_id,
                    "worker_name": inflight.worker,
                    "step": inflight.step,
                    "session_id": inflight.session_id,
                    "dispatched_ms": inflight.dispatched_ms,
                    "picked_up_ms": inflight.started_ms,
                    "completed_ms": now,
                    "success": failure is None,
                    "failure": None
                    if failure is None
                    else {
                        "message": failure.message,
                        "type": failure.type,
                        "kind": failure.kind.value,
                    },
                }
            ).encode()
        return Outcome(
            worker=inflight.worker,
            command_id=inflight.command_id,
            success=failure is None,
            error_type="" if failure is None else failure.type,
            duration_ms=now - inflight.started_ms,
            trace=trace,
        )

    def drain(self, session: Session) -> None:
        session.draining = True

    def seen(self, session: Session) -> None:
        session.last_seen_ms = self.clock

    async def complete(
        self,
        session: Session,
        command_id: str,
        result: dict[str, object],
        usage: engine.Usage | None = None,
    ) -> None:
        await self._answer(session, command_id, engine.StepCompleted(command_id, result, usage))

    async def fail(
        self,
        session: Session,
        command_id: str,
        failure: engine.Failure,
        usage: engine.Usage | None = None,
    ) -> None:
        await self._answer(session, command_id, engine.StepFailed(command_id, failure, usage))

    async def _answer(
        self, session: Session, command_id: str, event: engine.StepCompleted | engine.StepFailed
    ) -> None:
        inflight = session.inflight.pop(command_id, None)
        if inflight is None and session.resumes:
            async with session.resuming:  # one take-over at a time
                inflight = session.inflight.pop(command_id, None)
                if inflight is None and session.resumes:
                    if await self._resume(session, command_id):
                        inflight = session.inflight.pop(command_id, None)
                    elif len(session.early) < session.max_concurrency:
                        # Before the old replica kept its command: applied
                        # when the take-over brings it (`_resume`).
                        session.early[command_id] = event
                        log.info(
                            "kept an answer until its command is taken over",
                            extra={"session": session.id, "command_id": command_id},
                        )
                        return
        if inflight is None:
            _refuse(session, command_id)
            return
        await self._apply_answer(session, inflight, event)

    async def _apply_answer(
        self, session: Session, inflight: Inflight, event: engine.StepCompleted | engine.StepFailed
    ) -> None:
        """Apply the answer to a command `session` held (popped from it)."""
        failure = event.failure if isinstance(event, engine.StepFailed) else None
        back_off = failure is not None and failure.type == limits.RATE_LIMITED
        self.limits.release_attempt(inflight, event.usage, back_off=back_off)
        key = pending_key(inflight.entry)
        self.handling.add(key)
        try:
            await self._apply(
                transaction_of(inflight.command_id),
                event,
                ack=inflight.entry,
                outcome=self._outcome(inflight, failure),
            )
        finally:
            self.handling.discard(key)
            self.wake_pullers(session.names)

    async def _keep_resuming(self, session: Session) -> None:
        """The previous session `session` resumes had not been seen to end
        at Hello (its replica notices within a few heartbeat intervals, then
        keeps its commands): try to take them over every RESUME_POLL_S, and
        at each answer to one of them (`_answer`), until they would be
        failed as lost; then stop, refusing the answers kept aside."""
        config = self.config
        give_up_ms = (
            session.connected_ms + 5 * config.heartbeat_interval_ms + 2 * config.resume_window_ms
        )
        while self.clock < give_up_ms:
            await asyncio.sleep(RESUME_POLL_S)
            async with session.resuming:
                if session.closed or not session.resumes or await self._resume(session):
                    return
        async with session.resuming:
            self._stop_resuming(session)

    def _stop_resuming(self, session: Session) -> None:
        session.resumes = ""
        for cid in session.early:
            _refuse(session, cid)
        session.early.clear()

    async def heartbeat(
        self,
        session: Session,
        command_ids: Iterable[str],
        details: common_pb2.Payload | None = None,
    ) -> None:
        now = self.clock
        timers = []
        for cid in command_ids:
            inflight = session.inflight.get(cid)
            if inflight is not None and inflight.heartbeat_timeout_ms > 0:
                due = now + inflight.heartbeat_timeout_ms
                timers.append((transaction_of(cid), timer_id(HEARTBEAT_TIMER, cid), due))
        await self.store.extend_timers(timers)
        await progress.record(self.store, self.config, session.inflight, command_ids, details, now)

    def cancel_local(self, command_id: str, reason: str = "") -> None:
        """Forward a cancellation to the local session running the command, if
        any; a command still waiting for its limits here is dropped."""
        for session in self.sessions.values():
            if command_id in session.inflight:
                message = wpb.ConnectResponse(
                    cancel=wpb.Cancel(command_id=command_id, reason=reason)
                )
                session.outgoing.put_nowait(message)
        self.limits.drop(command_id)

    def served_names(self) -> list[str]:
        """Every worker name this replica's sessions have served."""
        return sorted(self._pullers)

    def session_infos(self) -> dict[str, bytes]:
        return {s.id: json.dumps(s.info(self.replica_id)).encode() for s in self.sessions.values()}

    async def shutdown(self, timeout_s: float) -> None:
        """Ask every session to drain, wait for in-flight commands, then close."""
        self.stopping = True
        for session in list(self.sessions.values()):
            session.draining = True
            session.outgoing.put_nowait(
                wpb.ConnectResponse(drain_request=wpb.DrainRequest(reason="server shutting down"))
            )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while any(s.inflight for s in self.sessions.values()):
                    await asyncio.sleep(0.05)
        for session in list(self.sessions.values()):
            await self.close_session(session, "server shutting down")
        for session, expiry in list(self._kept.values()):  # settled now, not later
            expiry.cancel()
            await self._settle(session, "server shutting down")
            self._kept.pop(session.id, None)
        for task in self._pullers.values():
            task.cancel()
        waiting = self.limits.stop()
        await asyncio.gather(*self._pullers.values(), return_exceptions=True)
        await self.store.requeue_commands([e for q in self._backlog.values() for e in q] + waiting)
        self._backlog.clear()

    # -- flow of commands ---------------------------------------------------------------

    def wake_pullers(self, names: Iterable[str]) -> None:
        """Slots may have freed, or commands arrived, for these worker names."""
        for name in names:
            event = self._wakeup.get(name)
            if event is not None:
                event.set()
        self.limits.nudge()

    def wake(self, bucket: int, worker: str) -> None:
        """A command of `worker` waits in `bucket` (a wake-up from the bus)."""
        dirty = self._dirty.get(worker)
        if dirty is not None:
            dirty.add(bucket)
            self.wake_pullers((worker,))

    def serving(self, name: str) -> list[Session]:
        return [s for s in self.sessions.values() if name in s.names and not s.closed]

    # LocalDispatch: the commit path claims commands for local sessions.

    def reserve(self, worker: str) -> bool:
        candidates = [s for s in self.serving(worker) if s.free > 0]
        if not candidates:
            return False
        max(candidates, key=lambda s: s.free).reserved += 1
        return True

    def release(self, worker: str) -> None:
        for session in self.serving(worker):
            if session.reserved > 0:
                session.reserved -= 1
                break
        self.wake_pullers((worker,))

    def deliver(self, entries: Sequence[CommandEntry]) -> None:
        for entry in entries:
            self.release(entry.worker)
        self._to_sessions(entries)

    def _to_sessions(self, entries: Sequence[CommandEntry]) -> None:
        """Send commands held by this replica to local sessions, first in line;
        back to their queues when no session serves them any more."""
        for entry in entries:
            self._backlog.setdefault(entry.worker, deque()).appendleft(entry)
        for worker in {e.worker for e in entries}:
            self._deliver(worker)
            puller = self._pullers.get(worker)
            if self._backlog[worker] and (puller is None or puller.done()):
                # The sessions went away meanwhile: back to the queue.
                left = list(self._backlog[worker])
                self._backlog[worker].clear()
                self.spawn(self.store.requeue_commands(left))

    async def _pull(self, name: str) -> None:
        """Feed local sessions serving `name` from its queues, within their free slots."""
        backlog = self._backlog[name]
        wakeup = self._wakeup[name]
        dirty = self._dirty[name]
        try:
            while not self.stopping:
                self._deliver(name)
                serving = self.serving(name)
                if not serving:
                    break
                free = sum(s.free for s in serving)
                if free <= 0 or backlog or not dirty or self.limits.count >= MAX_WAITING:
                    wakeup.clear()
                    try:
                        async with asyncio.timeout(SCAN_S):
                            await wakeup.wait()
                    except TimeoutError:
                        dirty.update(self.store.buckets)  # in case a wake-up was lost
                    continue
                # Cleared before the read: a wake-up that arrives during it
                # marks its bucket again, as the read may have missed that
                # command. A bucket whose read came back full is read again.
                buckets = sorted(dirty)
                dirty.clear()
                per_bucket = max(1, min(READ_BATCH, -(-free // len(buckets))))
                try:
                    await self.store.ensure_groups(name)
                    taken = await self.store.read_commands(
                        name, self.replica_id, buckets, per_bucket
                    )
                except StoreError as exc:
                    # Redis restarting or unreachable: keep the puller, try again.
                    log.warning("cannot read commands of %s: %s", name, exc)
                    dirty.update(buckets)
                    self.store.forget_groups()
                    await asyncio.sleep(RETRY_AFTER_UNAVAILABLE_S)
                    continue
                for bucket, entries in taken.items():
                    if len(entries) >= per_bucket:
                        dirty.add(bucket)
                    backlog.extend(entries)
        finally:
            if not self.serving(name):
                entries = list(backlog) + self.limits.forget(name)
                backlog.clear()
                if entries:
                    await self.store.requeue_commands(entries)

    def _held(self) -> set[tuple[int, str, bytes]]:
        """Every queue entry this replica holds: waiting for a session, sent
        to one (open, closing or kept for a resume), waiting for limits, or
        in the hands of a task."""
        held = set(self.handling)
        for backlog in self._backlog.values():
            held.update(pending_key(e) for e in backlog)
        sessions = [*self.sessions.values(), *self._closing.values()]
        sessions += [s for s, _ in self._kept.values()]
        for session in sessions:
            held.update(pending_key(i.entry) for i in session.inflight.values())
        held.update(pending_key(e) for e in self.limits.entries())
        return held

    async def recover_lost(self) -> int:
        """Send again the commands pending at this replica that it does not
        hold; returns how many.

        Redis gives a command to this replica (its consumer) when a read or
        a commit that claims it runs, and this replica learns of it from the
        reply. When the reply is lost — the connection dropped, or, on a
        cluster, another node of the same pipeline failed — the command
        stays pending here, and no other replica takes it while this one
        lives: without this it would wait for its step's timeout. Looked
        for only among commands not delivered for LOST_AFTER_MS, of the
        worker names this replica served; each is claimed again first, so
        one that a resuming session took meanwhile stays there.
        """
        names = sorted(self._backlog)
        if not names:
            return 0
        pending = await self.store.pending_at(self.replica_id, names, min_idle_ms=LOST_AFTER_MS)
        held = self._held()
        lost = [p for p in pending if p not in held]
        if not lost:
            return 0
        entries = await self.store.claim(self.replica_id, lost, min_idle_ms=LOST_AFTER_MS)
        held = self._held()
        entries = [e for e in entries if pending_key(e) not in held]
        if entries:
            log.warning(
                "sending again %d commands that this replica held without knowing "
                "(a Redis reply that claimed them for it was lost)", len(entries),
            )  # fmt: skip
            self._to_sessions(entries)
        return len(entries)

    def _deliver(self, name: str) -> None:
        backlog = self._backlog[name]
        if not backlog:
            return
        batches: dict[str, list[wpb.Command]] = {}
        now = self.clock
        stale: list[CommandEntry] = []
        while backlog:
            candidates = [s for s in self.serving(name) if s.free > 0]
            if not candidates:
                break
            session = max(candidates, key=lambda s: s.free)
            entry = backlog.popleft()
            command = wpb.Command.FromString(entry.command)
            if command.deadline.ToMilliseconds() <= now:
                stale.append(entry)  # its timeout already fired
                continue
            if command.rate_limits.keys:
                self.limits.hold(session, entry, command)
                continue
            self._start(session, entry, command, now)
            batches.setdefault(session.id, []).append(command)
        for session_id, commands in batches.items():
            message = (
                wpb.ConnectResponse(command=commands[0])
                if len(commands) == 1
                else wpb.ConnectResponse(commands=wpb.Commands(commands=commands))
            )
            self.sessions[session_id].outgoing.put_nowait(message)
        if stale:
            self.spawn(self.store.ack_commands(stale))

    def _start(self, session: Session, entry: CommandEntry, command: wpb.Command, now: int) -> None:
        """Record a command as running at `session` (the caller sends it)."""
        session.inflight[command.command_id] = inflight = Inflight.of(
            entry, command, now, session.id
        )
        observability.step_sent(inflight)

    def send(self, session: Session, entry: CommandEntry, command: wpb.Command) -> None:
        """Record a command as running at `session` and send it there."""
        self._start(session, entry, command, self.clock)
        session.outgoing.put_nowait(wpb.ConnectResponse(command=command))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `coro` in the background, keeping the task referenced until it ends."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        """A background task's end; what failed it is logged here, as no one awaits it."""
        self._tasks.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        if isinstance(exc, StoreError):
            log.warning("background work not done, Redis unavailable: %s", exc)
        else:
            log.error("background work failed", exc_info=exc)
