"""Schedules: cron expressions that start workflows.

A schedule lives in a bucket of its own (the CRC32 of its id), as one JSON
record with a revision, and its timer is a member of that bucket's timers
(`<id>|schedule`), so the owner of the bucket fires it like any timer (see
`timers.py`) and every change is one Lua call on one slot (`store.scripts.SCHEDULE`).

Firing is an idempotent sequence, safe across replicas and kills:

1. decide (start, skip, buffer, miss) and commit the decision with the next
   fire time, compare-and-set on the schedule's revision; a decided start is
   kept as `firing_ms` and the timer is set a few seconds ahead, so a replica
   that dies before step 2 has it redone;
2. start the run with the request id `schedule/<id>/<fire ms>` (the
   transaction id is derived from it: a second start finds the first);
3. commit the run's transaction id, clear `firing_ms`, set the timer to the
   next fire time.

Two replicas firing the same schedule at once (a change of bucket owners)
decide from the same record; the revision lets one commit, and the other
decides again from what that one committed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from multiagents_server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServiceError,
)
from multiagents_server.orchestrator import Orchestrator, request_transaction_id

log = logging.getLogger(__name__)

DEFAULT_TIME_ZONE = "UTC"
DAY_MS = 24 * 3600 * 1000
# Temporal's default catch-up window; also the longest allowed.
DEFAULT_CATCHUP_WINDOW_MS = 365 * DAY_MS
MIN_CATCHUP_WINDOW_MS = 1_000
# Actions kept in a schedule's record (newest first).
RECENT_ACTIONS = 10
# While a fire time waits for the running run to end, it is looked at this often.
BUFFER_POLL_MS = 500
# A decided start not recorded as done by then is redone (the replica died).
FIRING_RETRY_MS = 5_000
# Compare-and-set rounds of one fire before leaving it to the timer's lease.
MAX_ROUNDS = 10


class Overlap(enum.StrEnum):
    """What a fire time does while the schedule's previous run still runs."""

    SKIP = "skip"
    BUFFER_ONE = "buffer_one"
    CANCEL_OTHER = "cancel_other"
    ALLOW_ALL = "allow_all"


class ActionKind(enum.StrEnum):
    STARTED = "started"
    SKIPPED = "skipped"
    BUFFERED = "buffered"
    MISSED = "missed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed cron expression in a time zone. Five fields (minute hour
    day-of-month month day-of-week), six with seconds first, seven with a
    year last; `@hourly` and the like; as croniter reads them."""

    expression: str
    zone: ZoneInfo

    def next_after(self, ms: int) -> int:
        """The first fire time strictly after `ms`."""
        it = croniter(self.expression, self._at(ms), second_at_beginning=True)
        found: datetime = it.get_next(datetime)
        return round(found.timestamp() * 1000)

    def latest_at_or_before(self, ms: int) -> int:
        """The last fire time at or before `ms`."""
        it = croniter(self.expression, self._at(ms + 1), second_at_beginning=True)
        found: datetime = it.get_prev(datetime)
        return round(found.timestamp() * 1000)

    def _at(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, self.zone)


def parse_cron(expression: str, time_zone: str, now_ms: int, *, field: str = "cron") -> Cron:
    """A Cron, or InvalidArgument naming the field with the library's reason."""
    zone_field = field.rsplit(".", 1)[0] + ".time_zone" if "." in field else "time_zone"
    try:
        zone = ZoneInfo(time_zone or DEFAULT_TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidArgument(f"{zone_field}: unknown IANA time zone {time_zone!r}") from None
    if not expression.strip():
        raise InvalidArgument(f"{field}: required")
    if len(expression) > 200:
        raise InvalidArgument(f"{field}: at most 200 characters, got {len(expression)}")
    parts = [p.upper() for f in expression.split() for p in f.split(",")]
    if any(p == "R" or p.startswith("R(") for p in parts):
        raise InvalidArgument(
            f"{field}: {expression!r}: random fields (R) are not supported: a schedule's fire "
            "times are the same on every replica"
        )
    cron = Cron(expression.strip(), zone)
    try:
        cron.next_after(now_ms)
    except CroniterBadDateError:
        raise InvalidArgument(f"{field}: {expression!r} never fires") from None
    except (CroniterError, ValueError, KeyError) as exc:
        raise InvalidArgument(f"{field}: {expression!r} does not parse: {exc}") from None
    return cron


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What the user asked for (defaults filled in)."""

    schedule_id: str
    cron: str
    workflow_name: str
    input: dict[str, Any]
    time_zone: str = DEFAULT_TIME_ZONE
    version: int = 0
    overlap: Overlap = Overlap.SKIP
    catchup_window_ms: int = DEFAULT_CATCHUP_WINDOW_MS
    paused: bool = False
    note: str = ""


@dataclass(frozen=True, slots=True)
class Action:
    """What the schedule did for one fire time."""

    fire_ms: int
    at_ms: int
    kind: ActionKind
    transaction_id: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule's record: its spec and its firing state."""

    spec: ScheduleSpec
    created_ms: int
    updated_ms: int
    # The next fire time (0 while paused).
    next_fire_ms: int
    # A start decided and committed whose run may not exist yet (0 none).
    firing_ms: int = 0
    # A fire time waiting for the running run to end (0 none).
    buffered_ms: int = 0
    last_transaction_id: str = ""
    runs_started: int = 0
    runs_skipped: int = 0
    # Newest first, at most RECENT_ACTIONS.
    actions: tuple[Action, ...] = ()

    def with_action(self, action: Action) -> Schedule:
        return replace(self, actions=(action, *self.actions)[:RECENT_ACTIONS])


def encode(s: Schedule) -> bytes:
    return json.dumps(dataclasses.asdict(s), separators=(",", ":")).encode()


def decode(raw: bytes) -> Schedule:
    d = json.loads(raw)
    spec = d.pop("spec")
    spec["overlap"] = Overlap(spec["overlap"])
    actions = tuple(Action(**{**a, "kind": ActionKind(a["kind"])}) for a in d.pop("actions"))
    return Schedule(spec=ScheduleSpec(**spec), actions=actions, **d)


def iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


@dataclass(frozen=True, slots=True)
class Previous:
    """The schedule's last run as seen at a fire."""

    running: bool = False
    cancel_requested: bool = False


def decide(s: Schedule, cron: Cron, now: int, previous: Previous) -> tuple[Schedule, str]:
    """The schedule after looking at it at `now`, and the run to cancel ('' none).
    Pure: a start is decided by setting `firing_ms`.

    Of the fire times due since the last look, only the latest is acted on
    (a server that was down catches up one run, as a Kubernetes CronJob);
    the earlier ones are recorded as one MISSED action. With a seconds field
    that also happens when a timer fires more than a second late (a replica
    taking a bucket over, a stall)."""
    spec = s.spec
    if spec.paused:
        return s, ""
    if s.buffered_ms and not previous.running:
        return replace(s, buffered_ms=0, firing_ms=s.buffered_ms), ""
    if s.next_fire_ms > now:
        # A cancel lost with a replica that died after deciding it is sent again.
        again = s.buffered_ms and spec.overlap is Overlap.CANCEL_OTHER
        return s, s.last_transaction_id if again and not previous.cancel_requested else ""
    fire = cron.latest_at_or_before(now)
    first_due = s.next_fire_ms
    s = replace(s, next_fire_ms=cron.next_after(now))
    if first_due < fire:
        why = (
            "not fired in time (no server ran, or the timer was late): only the latest "
            f"due fire time, {iso(fire)}, is taken"
        )
        s = s.with_action(Action(first_due, now, ActionKind.MISSED, message=why))
    if fire < now - spec.catchup_window_ms:
        why = f"older than the catch-up window ({spec.catchup_window_ms // 1000} s)"
        return s.with_action(Action(fire, now, ActionKind.MISSED, message=why)), ""
    if not previous.running or spec.overlap is Overlap.ALLOW_ALL:
        return replace(s, firing_ms=fire), ""
    running = s.last_transaction_id
    skipped = replace(s, runs_skipped=s.runs_skipped + 1)
    match spec.overlap:
        case Overlap.SKIP:
            why = f"the previous run {running} is still running"
            return skipped.with_action(Action(fire, now, ActionKind.SKIPPED, running, why)), ""
        case Overlap.BUFFER_ONE if s.buffered_ms:
            why = f"{iso(s.buffered_ms)} already waits for {running} to end"
            return skipped.with_action(Action(fire, now, ActionKind.SKIPPED, running, why)), ""
        case Overlap.BUFFER_ONE:
            buffered = replace(s, buffered_ms=fire)
            why = f"starts when {running} ends"
            return buffered.with_action(Action(fire, now, ActionKind.BUFFERED, running, why)), ""
        case _:  # CANCEL_OTHER: the newest fire time replaces a buffered one
            if s.buffered_ms:
                why = f"replaced by the newer fire time {iso(fire)}"
                s = skipped.with_action(
                    Action(s.buffered_ms, now, ActionKind.SKIPPED, running, why)
                )
            buffered = replace(s, buffered_ms=fire)
            why = f"starts when the cancelled run {running} ends"
            action = Action(fire, now, ActionKind.BUFFERED, running, why)
            return buffered.with_action(action), "" if previous.cancel_requested else running


def timer_due(s: Schedule, now: int) -> int:
    """When the schedule's timer must fire next (-1: no timer)."""
    if s.firing_ms:
        return now + FIRING_RETRY_MS
    if s.spec.paused:
        return -1
    if s.buffered_ms:
        return min(s.next_fire_ms, now + BUFFER_POLL_MS)
    return s.next_fire_ms


class Schedules:
    """Create, read, pause, delete and fire schedules."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self.orchestrator = orchestrator
        self.store = orchestrator.store
        self._crons: dict[tuple[str, str], Cron] = {}

    def _cron(self, spec: ScheduleSpec) -> Cron:
        key = (spec.cron, spec.time_zone)
        cron = self._crons.get(key)
        if cron is None:
            cron = parse_cron(spec.cron, spec.time_zone, self.orchestrator.clock())
            if len(self._crons) > 1_000:
                self._crons.clear()
            self._crons[key] = cron
        return cron

    async def _write(self, s: Schedule, mode: str, expected: int, now: int) -> int:
        due = timer_due(s, now)
        revision = await self.store.write_schedule(
            s.spec.schedule_id, mode, expected, encode(s), due
        )
        if revision > 0 and due >= 0:
            bucket = self.store.keys.schedule_bucket(s.spec.schedule_id)
            self.orchestrator.on_schedule(bucket, due)
        return revision

    async def create(self, spec: ScheduleSpec) -> Schedule:
        """ALREADY_EXISTS for a taken id; NOT_FOUND for an unknown workflow or version."""
        await self.orchestrator.definitions.get(spec.workflow_name, spec.version)
        now = self.orchestrator.clock()
        cron = self._cron(spec)
        s = Schedule(spec, now, now, 0 if spec.paused else cron.next_after(now))
        if await self._write(s, "create", 0, now) == 0:
            raise AlreadyExists(f"schedule_id: a schedule {spec.schedule_id!r} exists already")
        log.info("schedule created", extra={"schedule": spec.schedule_id, "cron": spec.cron})
        return s

    async def get(self, schedule_id: str) -> tuple[Schedule, int]:
        stored = await self.store.load_schedule(schedule_id)
        if stored is None:
            raise NotFound(f"schedule_id: no schedule {schedule_id!r}")
        return decode(stored.state), stored.revision

    async def list(self, *, workflow_name: str, after: str, limit: int) -> list[Schedule]:
        """Schedules of `workflow_name` (all when empty) whose id sorts after
        `after`, by id, at most `limit`."""
        found = [decode(stored.state) for sid, stored in await self.store.all_schedules()
                 if sid > after]  # fmt: skip
        if workflow_name:
            found = [s for s in found if s.spec.workflow_name == workflow_name]
        return sorted(found, key=lambda s: s.spec.schedule_id)[:limit]

    async def set_paused(self, schedule_id: str, paused: bool, note: str) -> Schedule:
        """Pause or unpause (either again is a no-op apart from the note).
        Unpaused, the schedule fires at the next fire time after now: fire
        times while it was paused are not caught up."""
        while True:
            s, revision = await self.get(schedule_id)
            now = self.orchestrator.clock()
            spec = replace(s.spec, paused=paused, note=note or s.spec.note)
            if s.spec.paused == paused:
                changed = replace(s, spec=spec, updated_ms=now)
            elif paused:
                changed = replace(s, spec=spec, updated_ms=now, next_fire_ms=0)
            else:
                next_fire = self._cron(spec).next_after(now)
                changed = replace(s, spec=spec, updated_ms=now, next_fire_ms=next_fire)
            if await self._write(changed, "update", revision, now) > 0:
                log.info("schedule %s", "paused" if paused else "unpaused",
                         extra={"schedule": schedule_id})  # fmt: skip
                return changed

    async def delete(self, schedule_id: str) -> None:
        """Runs already started go on."""
        if await self.store.write_schedule(schedule_id, "delete", 0, b"", -1) == 0:
            raise NotFound(f"schedule_id: no schedule {schedule_id!r}")
        log.info("schedule deleted", extra={"schedule": schedule_id})

    # -- firing ------------------------------------------------------------------------

    async def fire(self, schedule_id: str) -> None:
        """The schedule's timer is due: start, skip or buffer what is due."""
        for _ in range(MAX_ROUNDS):
            stored = await self.store.load_schedule(schedule_id)
            if stored is None:  # deleted: forget its timer
                await self.store.write_schedule(schedule_id, "delete", 0, b"", -1)
                return
            s, revision = decode(stored.state), stored.revision
            now = self.orchestrator.clock()
            if s.firing_ms:
                done = await self._start(s, now)
                revision = await self._write(done, "update", revision, now)
                if revision < 0:
                    continue
                s = done
            decided, cancel = decide(s, self._cron(s.spec), now, await self._previous(s))
            mode = "timer" if decided == s else "update"
            if await self._write(decided, mode, revision, now) < 0:
                continue
            if cancel:
                reason = (
                    f"schedule {schedule_id}: superseded by the run of {iso(decided.buffered_ms)} "
                    "(overlap policy cancel_other)"
                )
                with contextlib.suppress(NotFound, FailedPrecondition):
                    await self.orchestrator.cancel(cancel, reason)
            if not decided.firing_ms:
                return
        log.warning("schedule fire gave up after conflicts", extra={"schedule": schedule_id})

    async def _previous(self, s: Schedule) -> Previous:
        if not s.last_transaction_id or s.spec.overlap is Overlap.ALLOW_ALL:
            return Previous()
        try:
            ex = (await self.orchestrator.snapshot(s.last_transaction_id)).execution
        except NotFound:  # expired
            return Previous()
        return Previous(not ex.state.terminal, ex.cancel_requested)

    async def _start(self, s: Schedule, now: int) -> Schedule:
        """Start the run of `s.firing_ms` (idempotent); the schedule recording it."""
        spec, fire = s.spec, s.firing_ms
        request_id = f"schedule/{spec.schedule_id}/{fire}"
        try:
            tx, created = await self.orchestrator.execute(
                spec.workflow_name,
                spec.input,
                version=spec.version,
                request_id=request_id,
                correlation_id=f"{spec.schedule_id}@{iso(fire)}",
            )
        except AlreadyExists:
            # This fire time ran already with another workflow or input: a
            # schedule of this id, deleted and created again, started it.
            tx, created = request_transaction_id(request_id), False
        except ServiceError as exc:
            log.warning(
                "schedule could not start its run",
                extra={"schedule": spec.schedule_id, "error": str(exc)},
            )
            failed = replace(s, firing_ms=0)
            return failed.with_action(Action(fire, now, ActionKind.FAILED, message=str(exc)))
        log.info(
            "schedule started a run",
            extra={"schedule": spec.schedule_id, "transaction_id": tx, "new": created},
        )
        started = replace(s, firing_ms=0, last_transaction_id=tx, runs_started=s.runs_started + 1)
        return started.with_action(Action(fire, now, ActionKind.STARTED, tx))
