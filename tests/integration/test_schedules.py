"""Schedules over a real server and real workers: every-second crons, the
overlap policies, pause and unpause, delete, bad input, and two replicas
firing one schedule."""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from integration.helpers import make_config, serving, wait_for
from integration.test_cli_errors import assert_one_line_error, cli
from multiagents import (
    AlreadyExistsError,
    Client,
    InvalidArgumentError,
    NotFoundError,
    RetryPolicy,
    ScheduleInfo,
    WorkflowBuilder,
    WorkflowStatus,
    worker,
)
from multiagents.v1 import schedule_pb2
from multiagents.v1 import workflow_service_pb2 as pb
from multiagents_server import schedules
from multiagents_server.app import Server
from multiagents_server.orchestrator import request_transaction_id

EVERY_SECOND = "* * * * * *"
ONE_S = timedelta(seconds=1)
ONCE = RetryPolicy(max_attempts=1)


def fire_time(status: WorkflowStatus) -> datetime:
    """A scheduled run's fire time, from its correlation id `<schedule>@<time>`."""
    return datetime.fromisoformat(status.correlation_id.rsplit("@", 1)[1])


async def runs_of(client: Client, workflow_name: str) -> list[WorkflowStatus]:
    """Every execution of `workflow_name`, oldest fire time first."""
    found: list[WorkflowStatus] = []
    token = ""
    while True:
        page, token = await client.list_workflows(
            workflow_name=workflow_name, page_size=200, page_token=token
        )
        found += page
        if not token:
            return sorted(found, key=fire_time)


def assert_runs_are_the_schedules(schedule_id: str, runs: list[WorkflowStatus]) -> None:
    """Each run is the one execution of its fire time: whole seconds, its
    transaction id derived from (schedule id, fire time), no fire time twice."""
    times = [fire_time(r) for r in runs]
    assert len(set(times)) == len(times), f"a fire time ran twice: {times}"
    for run, t in zip(runs, times, strict=True):
        assert t.microsecond == 0
        ms = int(t.timestamp() * 1000)
        assert run.transaction_id == request_transaction_id(f"schedule/{schedule_id}/{ms}")


def gaps_are_reported(runs: list[WorkflowStatus], info: ScheduleInfo) -> list[datetime]:
    """The first fire time of each gap between the runs of an every-second
    schedule; each must be a MISSED action (none is lost silently). A gap
    comes from a timer more than a second late: a kill, a takeover, a stall."""
    # Only the runs the actions (the ten latest) cover: not those started
    # after `info` was read (before a delete), nor those before its oldest.
    first = min(a.fire_time for a in info.recent_actions)
    last = max(a.fire_time for a in info.recent_actions if a.kind == "started")
    times = [fire_time(r) for r in runs if first <= fire_time(r) <= last]
    starts = [a + ONE_S for a, b in itertools.pairwise(times) if b - a > ONE_S]
    missed = {a.fire_time for a in info.recent_actions if a.kind == "missed"}
    assert set(starts) <= missed, (times, info.recent_actions)
    return starts


@pytest.fixture
async def blocking(uid: str) -> Any:
    """A worker whose runs wait for `release`; `started` counts them."""

    class Blocking:
        release = asyncio.Event()
        started = 0

        @staticmethod
        @worker(f"{uid}.block")
        async def block(ctx: dict[str, Any]) -> dict[str, Any]:
            Blocking.started += 1
            await Blocking.release.wait()
            return {"released": True}

    return Blocking


async def test_an_every_second_schedule_starts_one_run_per_fire_time(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.tick")
    async def tick(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"seen": ctx["n"]}

    wf = WorkflowBuilder(f"{uid}.ticker").add_step("tick", tick, retry=ONCE).build()
    await client.register_workflow(wf)
    async with serving(server, tick):
        created = await client.create_schedule(
            f"{uid}-every", EVERY_SECOND, wf.name, {"n": 7}, overlap_policy="allow_all"
        )
        assert created.next_fire_time is not None
        assert created.next_fire_time > created.created_at
        assert (created.time_zone, created.catchup_window) == ("UTC", 365 * 24 * 3600)

        async def started() -> bool:
            return bool(await runs_of(client, wf.name))

        async def four_completed() -> bool:
            runs = await runs_of(client, wf.name)
            return sum(r.state == "completed" for r in runs) >= 4

        await wait_for(started, timeout=20, interval=0.1)
        # Read while the ten recent actions still hold the first fire time's
        # (once ten runs have started, they no longer do).
        early = await client.get_schedule(f"{uid}-every")
        await wait_for(four_completed, timeout=20, interval=0.1)
        info = await client.get_schedule(f"{uid}-every")
        await client.delete_schedule(f"{uid}-every")
    runs = await runs_of(client, wf.name)
    assert_runs_are_the_schedules(f"{uid}-every", runs)
    gaps_are_reported(runs, info)
    # The first fire time started its run, or was reported missed (its timer late).
    assert fire_time(runs[0]) == created.next_fire_time or created.next_fire_time in {
        a.fire_time for a in early.recent_actions if a.kind == "missed"
    }
    assert all(r.context == {"n": 7, "seen": 7} for r in runs if r.state == "completed")
    assert all(r.correlation_id.startswith(f"{uid}-every@") for r in runs)


async def test_skip_starts_nothing_while_the_previous_run_runs(
    server: Server, client: Client, uid: str, blocking: Any
) -> None:
    wf = WorkflowBuilder(f"{uid}.slow").add_step("block", blocking.block, retry=ONCE).build()
    await client.register_workflow(wf)
    sid = f"{uid}-skip"
    async with serving(server, blocking.block):
        await client.create_schedule(sid, EVERY_SECOND, wf.name)  # skip: the default

        async def skipped_twice() -> bool:
            return (await client.get_schedule(sid)).runs_skipped >= 2

        await wait_for(skipped_twice, timeout=20, interval=0.1)
        info = await client.get_schedule(sid)
        first = info.last_transaction_id
        assert info.runs_started == 1 and blocking.started == 1
        skips = [a for a in info.recent_actions if a.kind == "skipped"]
        assert skips and all(a.transaction_id == first for a in skips)
        assert "still running" in skips[0].message
        blocking.release.set()

        async def started_again() -> bool:
            return (await client.get_schedule(sid)).runs_started >= 2

        await wait_for(started_again, timeout=20, interval=0.1)
        await client.delete_schedule(sid)
    runs = await runs_of(client, wf.name)
    assert_runs_are_the_schedules(sid, runs)
    # The second run's fire time came after the first run ended (nothing buffered).
    assert runs[0].updated_at is not None
    assert fire_time(runs[1]) > runs[0].updated_at - timedelta(seconds=1)


async def test_buffer_one_starts_one_waiting_fire_time_when_the_run_ends(
    server: Server, client: Client, uid: str, blocking: Any
) -> None:
    wf = WorkflowBuilder(f"{uid}.slow").add_step("block", blocking.block, retry=ONCE).build()
    await client.register_workflow(wf)
    sid = f"{uid}-buffer"
    async with serving(server, blocking.block):
        await client.create_schedule(sid, EVERY_SECOND, wf.name, overlap_policy="buffer_one")

        async def buffered_and_skipped() -> bool:
            info = await client.get_schedule(sid)
            return info.buffered_fire_time is not None and info.runs_skipped >= 1

        await wait_for(buffered_and_skipped, timeout=20, interval=0.1)
        info = await client.get_schedule(sid)
        buffered = info.buffered_fire_time
        assert info.runs_started == 1
        kinds = [a.kind for a in info.recent_actions]
        assert "buffered" in kinds and "skipped" in kinds
        blocking.release.set()

        async def buffered_started() -> bool:
            return (await client.get_schedule(sid)).runs_started >= 2

        await wait_for(buffered_started, timeout=20, interval=0.1)
        await client.pause_schedule(sid)
    runs = await runs_of(client, wf.name)
    assert_runs_are_the_schedules(sid, runs)
    # The second run is the buffered fire time, started after the first ended.
    assert fire_time(runs[1]) == buffered
    assert runs[1].created_at is not None and runs[0].updated_at is not None
    assert runs[1].created_at >= runs[0].updated_at
    await client.delete_schedule(sid)


async def test_cancel_other_cancels_the_running_run_then_starts_the_new_one(
    server: Server, client: Client, uid: str
) -> None:
    started = 0

    @worker(f"{uid}.first_hangs")
    async def first_hangs(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal started
        started += 1
        if started == 1:
            await asyncio.Event().wait()  # until cancelled
        return {"done": True}

    wf = WorkflowBuilder(f"{uid}.hangs").add_step("step", first_hangs, retry=ONCE).build()
    await client.register_workflow(wf)
    sid = f"{uid}-cancel"
    async with serving(server, first_hangs):
        await client.create_schedule(sid, EVERY_SECOND, wf.name, overlap_policy="cancel_other")

        async def second_completed() -> bool:
            runs = await runs_of(client, wf.name)
            return any(r.state == "completed" for r in runs)

        await wait_for(second_completed, timeout=20, interval=0.1)
        await client.delete_schedule(sid)
    runs = await runs_of(client, wf.name)
    assert_runs_are_the_schedules(sid, runs)
    assert runs[0].state == "cancelled"
    assert runs[1].state == "completed"
    assert runs[1].created_at is not None and runs[0].updated_at is not None
    assert runs[1].created_at >= runs[0].updated_at, "the new run waits for the cancelled one"
    history = await client.get_history(runs[0].transaction_id)
    reasons = [e.status.cancel_reason for e in history if e.HasField("status")]
    assert any("cancel_other" in r and sid in r for r in reasons), reasons


async def test_pause_stops_fires_and_unpause_fires_from_now_on(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.tick")
    async def tick(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    wf = WorkflowBuilder(f"{uid}.ticker").add_step("tick", tick, retry=ONCE).build()
    await client.register_workflow(wf)
    sid = f"{uid}-pause"
    async with serving(server, tick):
        created = await client.create_schedule(
            sid, EVERY_SECOND, wf.name, paused=True, note="not yet"
        )
        assert created.paused and created.next_fire_time is None and created.note == "not yet"
        unpaused = await client.unpause_schedule(sid)
        assert not unpaused.paused and unpaused.next_fire_time is not None
        assert unpaused.note == "not yet"

        async def ran_twice() -> bool:
            return (await client.get_schedule(sid)).runs_started >= 2

        await wait_for(ran_twice, timeout=20, interval=0.1)
        paused = await client.pause_schedule(sid, "maintenance")
        assert paused.paused and paused.next_fire_time is None and paused.note == "maintenance"
        again = await client.pause_schedule(sid)  # a no-op but for the note
        assert again.paused and again.note == "maintenance"
        # Absence is checked over a span of time: 2.5 s holds two fire times.
        # (A start decided just before the pause may still happen, for a fire
        # time before it.)
        await asyncio.sleep(2.5)
        assert all(fire_time(r) <= paused.updated_at for r in await runs_of(client, wf.name))
        listed = {s.schedule_id: s for s in await client.list_schedules(workflow_name=wf.name)}
        assert listed[sid].paused
        resumed_at = datetime.now(UTC)
        await client.unpause_schedule(sid, "back")

        async def ran_again() -> bool:
            runs = await runs_of(client, wf.name)
            return any(fire_time(r) > paused.updated_at for r in runs)

        await wait_for(ran_again, timeout=20, interval=0.1)
        await client.delete_schedule(sid)
    runs = await runs_of(client, wf.name)
    assert_runs_are_the_schedules(sid, runs)
    # The paused span was not caught up: the first run after the pause is for
    # a fire time after the unpause.
    after = [fire_time(r) for r in runs if fire_time(r) > paused.updated_at]
    assert min(after) >= resumed_at


async def test_delete_stops_the_schedule_and_frees_its_id(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.tick")
    async def tick(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    wf = WorkflowBuilder(f"{uid}.ticker").add_step("tick", tick, retry=ONCE).build()
    await client.register_workflow(wf)
    sid = f"{uid}-delete"
    async with serving(server, tick):
        await client.create_schedule(sid, EVERY_SECOND, wf.name)

        async def ran() -> bool:
            return (await client.get_schedule(sid)).runs_started >= 1

        await wait_for(ran, timeout=20, interval=0.1)
        await client.delete_schedule(sid)
        with pytest.raises(NotFoundError, match="schedule_id"):
            await client.get_schedule(sid)
        with pytest.raises(NotFoundError, match="schedule_id"):
            await client.delete_schedule(sid)
        assert sid not in {s.schedule_id for s in await client.list_schedules()}
        deleted_at = datetime.now(UTC)
        await asyncio.sleep(2.5)  # absence over two fire times
        assert all(fire_time(r) <= deleted_at for r in await runs_of(client, wf.name))
        again = await client.create_schedule(sid, "0 0 * * *", wf.name)
        assert again.runs_started == 0 and again.cron == "0 0 * * *"
        await client.delete_schedule(sid)


async def test_a_time_zone_moves_the_fire_times(client: Client, uid: str) -> None:
    wf = WorkflowBuilder(f"{uid}.zoned").add_step("tick", f"{uid}.none").build()
    await client.register_workflow(wf)
    kolkata = await client.create_schedule(
        f"{uid}-kolkata", "0 9 * * *", wf.name, time_zone="Asia/Kolkata"
    )
    utc = await client.create_schedule(f"{uid}-utc", "0 9 * * *", wf.name)
    try:
        assert kolkata.next_fire_time is not None and utc.next_fire_time is not None
        # 09:00 in Kolkata (UTC+05:30) is 03:30 UTC.
        assert (kolkata.next_fire_time.hour, kolkata.next_fire_time.minute) == (3, 30)
        assert (utc.next_fire_time.hour, utc.next_fire_time.minute) == (9, 0)
        assert kolkata.time_zone == "Asia/Kolkata"
    finally:
        await client.delete_schedule(f"{uid}-kolkata")
        await client.delete_schedule(f"{uid}-utc")


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"cron": "61 * * * *"}, ["schedule.cron", "61 * * * *", "out of range"]),
        ({"cron": "* * *"}, ["schedule.cron", "5, 6 or 7 columns"]),
        ({"cron": "0 0 0 31 2 *"}, ["schedule.cron", "never fires"]),
        ({"cron": "  "}, ["schedule.cron: required"]),
        ({"time_zone": "Mars/Olympus"}, ["schedule.time_zone", "Mars/Olympus"]),
        ({"schedule_id": "a b"}, ["schedule.schedule_id"]),
        ({"schedule_id": ""}, ["schedule.schedule_id"]),
        ({"workflow_name": ""}, ["schedule.workflow_name: required"]),
        ({"workflow_version": -1}, ["schedule.workflow_version"]),
        ({"overlap_policy": 9}, ["schedule.overlap_policy", "9"]),
        ({"catchup_window": 0.5}, ["schedule.catchup_window"]),
    ],
)
async def test_bad_schedules_are_invalid_argument_naming_the_field(
    client: Client, uid: str, changes: dict[str, Any], fragments: list[str]
) -> None:
    wf = WorkflowBuilder(f"{uid}.target").add_step("tick", f"{uid}.none").build()
    await client.register_workflow(wf)
    definition = schedule_pb2.ScheduleDefinition(
        schedule_id=f"{uid}-bad", cron="* * * * *", workflow_name=wf.name
    )
    for field, value in changes.items():
        if field == "catchup_window":
            definition.catchup_window.FromMilliseconds(int(value * 1000))
        else:
            setattr(definition, field, value)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await client._stub.CreateSchedule(pb.CreateScheduleRequest(schedule=definition))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for fragment in fragments:
        assert fragment in (raised.value.details() or ""), raised.value.details()
    # Nothing was created.
    with pytest.raises(NotFoundError):
        await client.get_schedule(f"{uid}-bad")


async def test_duplicate_ids_unknown_workflows_and_unknown_schedules(
    client: Client, uid: str
) -> None:
    wf = WorkflowBuilder(f"{uid}.target").add_step("tick", f"{uid}.none").build()
    await client.register_workflow(wf)
    sid = f"{uid}-dup"
    await client.create_schedule(sid, "0 0 * * *", wf.name)
    try:
        with pytest.raises(AlreadyExistsError, match="schedule_id"):
            await client.create_schedule(sid, "0 1 * * *", wf.name)
        assert (await client.get_schedule(sid)).cron == "0 0 * * *"  # unchanged
    finally:
        await client.delete_schedule(sid)
    with pytest.raises(NotFoundError, match="nope"):
        await client.create_schedule(f"{uid}-nope", "0 0 * * *", f"{uid}.nope")
    with pytest.raises(NotFoundError):
        await client.create_schedule(f"{uid}-v9", "0 0 * * *", wf.name, version=9)
    for call in (client.get_schedule, client.pause_schedule, client.unpause_schedule,
                 client.delete_schedule):  # fmt: skip
        with pytest.raises(NotFoundError, match="schedule_id"):
            await call(f"{uid}-missing")
    with pytest.raises(InvalidArgumentError, match="schedule_id: required"):
        await client.get_schedule("")
    with pytest.raises(ValueError, match="overlap_policy"):
        await client.create_schedule(sid, "* * * * *", wf.name, overlap_policy="sometimes")


async def test_list_pages_by_id_and_filters_by_workflow(client: Client, uid: str) -> None:
    one = WorkflowBuilder(f"{uid}.one").add_step("tick", f"{uid}.none").build()
    two = WorkflowBuilder(f"{uid}.two").add_step("tick", f"{uid}.none").build()
    for wf in (one, two):
        await client.register_workflow(wf)
    ids = [f"{uid}-{i:02d}" for i in range(5)]
    for i, sid in enumerate(ids):
        await client.create_schedule(sid, "0 0 * * *", (one if i % 2 else two).name)
    try:
        pages: list[str] = []
        token = ""
        while True:
            response = await client._stub.ListSchedules(
                pb.ListSchedulesRequest(workflow_name="", page_size=2, page_token=token)
            )
            pages += [s.definition.schedule_id for s in response.schedules]
            token = response.next_page_token
            if not token:
                break
        assert [p for p in pages if p.startswith(uid)] == ids
        ones = await client.list_schedules(workflow_name=one.name)
        assert [s.schedule_id for s in ones] == [ids[1], ids[3]]
    finally:
        for sid in ids:
            await client.delete_schedule(sid)


async def test_two_replicas_fire_each_fire_time_once(redis_server: Any, uid: str) -> None:
    config = make_config(redis_server.url)

    @worker(f"{uid}.tick")
    async def tick(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    wf = WorkflowBuilder(f"{uid}.ticker").add_step("tick", tick, retry=ONCE).build()
    sid = f"{uid}-replicated"
    async with (
        Server(config) as one,
        Server(config) as two,
        Client(one.address) as client,
        serving(two, tick),
    ):
        await client.register_workflow(wf)
        await client.create_schedule(sid, EVERY_SECOND, wf.name, overlap_policy="allow_all")

        async def five_runs() -> bool:
            return len(await runs_of(client, wf.name)) >= 5

        await wait_for(five_runs, timeout=20, interval=0.1)
        info = await client.get_schedule(sid)
        await client.delete_schedule(sid)
        runs = await runs_of(client, wf.name)
    assert_runs_are_the_schedules(sid, runs)
    gaps_are_reported(runs, info)


async def test_the_schedule_commands(server: Server, client: Client, uid: str) -> None:
    wf = WorkflowBuilder(f"{uid}.target").add_step("tick", f"{uid}.none").build()
    await client.register_workflow(wf)
    sid = f"{uid}-cli"
    at = ("--server", server.address)
    created = await cli(
        "schedule", "create", sid, "--cron", "0 9 * * 1-5", "--workflow", wf.name,
        "--input", '{"report": "daily"}', "--time-zone", "Europe/Paris",
        "--overlap", "buffer_one", "--catchup-window", "600", "--json", *at,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    shown = json.loads(created.stdout)
    assert shown["input"] == {"report": "daily"} and shown["overlap_policy"] == "buffer_one"
    assert shown["time_zone"] == "Europe/Paris" and shown["catchup_window"] == 600
    info = await client.get_schedule(sid)
    assert shown["next_fire_time"] == info.next_fire_time.isoformat()  # type: ignore[union-attr]

    listed = await cli("schedule", "list", "--workflow", wf.name, *at)
    assert listed.returncode == 0 and sid in listed.stdout and "buffer_one" in listed.stdout
    paused = await cli("schedule", "pause", sid, "--note", "holidays", *at)
    assert paused.returncode == 0 and "paused (note: holidays)" in paused.stdout
    assert (await client.get_schedule(sid)).paused
    listed = json.loads((await cli("schedule", "list", "--json", *at)).stdout)
    assert {s["schedule_id"]: s["paused"] for s in listed["schedules"]}[sid] is True
    unpaused = await cli("schedule", "unpause", sid, *at)
    assert unpaused.returncode == 0 and "next fire" in unpaused.stdout
    shown_text = await cli("schedule", "show", sid, *at)
    assert f"schedule {sid}: '0 9 * * 1-5' (Europe/Paris)" in shown_text.stdout

    duplicate = await cli("schedule", "create", sid, "--cron", "* * * * *",
                          "--workflow", wf.name, *at)  # fmt: skip
    assert_one_line_error(duplicate, "schedule_id", "exists already")
    bad_cron = await cli("schedule", "create", f"{uid}-x", "--cron", "0 25 * * *",
                         "--workflow", wf.name, *at)  # fmt: skip
    assert_one_line_error(bad_cron, "schedule.cron", "out of range")
    bad_zone = await cli("schedule", "create", f"{uid}-x", "--cron", "0 1 * * *",
                         "--workflow", wf.name, "--time-zone", "Moon/Base", *at)  # fmt: skip
    assert_one_line_error(bad_zone, "schedule.time_zone", "Moon/Base")
    bad_input = await cli("schedule", "create", f"{uid}-x", "--cron", "0 1 * * *",
                          "--workflow", wf.name, "--input", "[1]", *at)  # fmt: skip
    assert_one_line_error(bad_input, "--input", "JSON object")

    deleted = await cli("schedule", "delete", sid, *at)
    assert deleted.returncode == 0 and f"schedule deleted: {sid}" in deleted.stdout
    unknown = await cli("schedule", "delete", sid, *at)
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    assert len(unknown.stderr.splitlines()) == 1


async def test_a_start_decided_by_a_replica_that_died_is_carried_out_once(
    server: Server, client: Client, uid: str
) -> None:
    """A replica that committed "firing at T" and died before recording the
    run (before or after creating it) leaves the timer to redo the start:
    the run of T exists once. The state is written as that replica left it."""

    @worker(f"{uid}.tick")
    async def tick(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    wf = WorkflowBuilder(f"{uid}.ticker").add_step("tick", tick, retry=ONCE).build()
    await client.register_workflow(wf)
    sid = f"{uid}-redo"
    await client.create_schedule(sid, "0 0 1 1 *", wf.name)  # next fire: next new year
    assert server.orchestrator is not None
    store = server.orchestrator.store
    fire = int(datetime.now(UTC).timestamp()) * 1000 - 3_000

    stored = await store.load_schedule(sid)
    assert stored is not None
    # What the dead replica committed: "firing at T", the run not recorded.
    left = schedules.encode(replace(schedules.decode(stored.state), firing_ms=fire))

    async def died_after_deciding() -> None:
        current = await store.load_schedule(sid)
        assert current is not None
        now = server.orchestrator.clock()  # type: ignore[union-attr]
        assert await store.write_schedule(sid, "update", current.revision, left, now) > 0

    async def recorded() -> bool:
        info = await client.get_schedule(sid)
        return info.last_transaction_id != "" and info.runs_started == 1

    async with serving(server, tick):
        await died_after_deciding()
        await wait_for(recorded, timeout=20, interval=0.05)
        # Again, as if it had died after creating the run: found, not doubled.
        await died_after_deciding()
        await wait_for(recorded, timeout=20, interval=0.05)
        info = await client.get_schedule(sid)
        await client.delete_schedule(sid)
    runs = await runs_of(client, wf.name)
    assert_runs_are_the_schedules(sid, runs)
    assert [fire_time(r) for r in runs] == [datetime.fromtimestamp(fire / 1000, UTC)]
    assert [(a.kind, a.transaction_id) for a in info.recent_actions] == [
        ("started", runs[0].transaction_id)
    ]
