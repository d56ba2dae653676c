"""Schedules on the wire: validation of a ScheduleDefinition, and a
schedule's status as a ScheduleStatus."""

from __future__ import annotations

from multiagents import wire
from multiagents.v1 import schedule_pb2 as spb
from multiagents_server import convert
from multiagents_server.errors import InvalidArgument
from multiagents_server.schedules import (
    DEFAULT_CATCHUP_WINDOW_MS,
    DEFAULT_TIME_ZONE,
    MIN_CATCHUP_WINDOW_MS,
    ActionKind,
    Overlap,
    Schedule,
    ScheduleSpec,
    parse_cron,
)

MAX_NOTE_LENGTH = 1000

OVERLAP_FROM_PROTO = {
    spb.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED: Overlap.SKIP,
    spb.SCHEDULE_OVERLAP_POLICY_SKIP: Overlap.SKIP,
    spb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE: Overlap.BUFFER_ONE,
    spb.SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER: Overlap.CANCEL_OTHER,
    spb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL: Overlap.ALLOW_ALL,
}
OVERLAP_TO_PROTO = {
    Overlap.SKIP: spb.SCHEDULE_OVERLAP_POLICY_SKIP,
    Overlap.BUFFER_ONE: spb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE,
    Overlap.CANCEL_OTHER: spb.SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER,
    Overlap.ALLOW_ALL: spb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL,
}
ACTION_TO_PROTO = {
    ActionKind.STARTED: spb.SCHEDULE_ACTION_KIND_STARTED,
    ActionKind.SKIPPED: spb.SCHEDULE_ACTION_KIND_SKIPPED,
    ActionKind.BUFFERED: spb.SCHEDULE_ACTION_KIND_BUFFERED,
    ActionKind.MISSED: spb.SCHEDULE_ACTION_KIND_MISSED,
    ActionKind.FAILED: spb.SCHEDULE_ACTION_KIND_FAILED,
}


def check_note(note: str, field: str) -> str:
    convert.check_length(note, field, MAX_NOTE_LENGTH)
    return note


def spec_from_proto(d: spb.ScheduleDefinition, max_payload_bytes: int, now_ms: int) -> ScheduleSpec:
    """A valid ScheduleSpec, or InvalidArgument naming the field (`schedule.<field>`)."""
    convert.check_name(d.schedule_id, "schedule.schedule_id")
    if not d.workflow_name:
        raise InvalidArgument("schedule.workflow_name: required")
    convert.check_length(d.workflow_name, "schedule.workflow_name", convert.MAX_ID_LENGTH)
    if d.workflow_version < 0:
        raise InvalidArgument("schedule.workflow_version: must be >= 0 (0 means the latest)")
    if d.overlap_policy not in OVERLAP_FROM_PROTO:
        raise InvalidArgument(f"schedule.overlap_policy: unknown value {d.overlap_policy}")
    window = DEFAULT_CATCHUP_WINDOW_MS
    if d.HasField("catchup_window") and d.catchup_window.ToMilliseconds() != 0:
        window = d.catchup_window.ToMilliseconds()
        if not MIN_CATCHUP_WINDOW_MS <= window <= DEFAULT_CATCHUP_WINDOW_MS:
            raise InvalidArgument("schedule.catchup_window: must be between 1 s and 365 days")
    time_zone = d.time_zone or DEFAULT_TIME_ZONE
    parse_cron(d.cron, time_zone, now_ms, field="schedule.cron")
    return ScheduleSpec(
        schedule_id=d.schedule_id,
        cron=d.cron.strip(),
        workflow_name=d.workflow_name,
        input=convert.json_object(d.input, "schedule.input", max_payload_bytes)
        if d.HasField("input")
        else {},
        time_zone=time_zone,
        version=d.workflow_version,
        overlap=OVERLAP_FROM_PROTO[d.overlap_policy],
        catchup_window_ms=window,
        paused=d.paused,
        note=check_note(d.note, "schedule.note"),
    )


def status_to_proto(s: Schedule) -> spb.ScheduleStatus:
    spec = s.spec
    out = spb.ScheduleStatus(
        definition=spb.ScheduleDefinition(
            schedule_id=spec.schedule_id,
            cron=spec.cron,
            time_zone=spec.time_zone,
            workflow_name=spec.workflow_name,
            workflow_version=spec.version,
            input=wire.encode(spec.input),
            overlap_policy=OVERLAP_TO_PROTO[spec.overlap],
            catchup_window=convert.duration(spec.catchup_window_ms),
            paused=spec.paused,
            note=spec.note,
        ),
        created_at=convert.timestamp(s.created_ms),
        updated_at=convert.timestamp(s.updated_ms),
        runs_started=s.runs_started,
        runs_skipped=s.runs_skipped,
        last_transaction_id=s.last_transaction_id,
        recent_actions=[
            spb.ScheduleAction(
                fire_time=convert.timestamp(a.fire_ms),
                taken_at=convert.timestamp(a.at_ms),
                kind=ACTION_TO_PROTO[a.kind],
                transaction_id=a.transaction_id,
                message=a.message,
            )
            for a in s.actions
        ],
    )
    if s.next_fire_ms and not spec.paused:
        out.next_fire_time.CopyFrom(convert.timestamp(s.next_fire_ms))
    if s.buffered_ms:
        out.buffered_fire_time.CopyFrom(convert.timestamp(s.buffered_ms))
    return out
