"""The pure parts of schedules: cron fire times in time zones (croniter), the
decision at a fire for each overlap policy, catch-up, the record's JSON."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from multiagents_server.errors import InvalidArgument
from multiagents_server.schedules import (
    ActionKind,
    Overlap,
    Previous,
    Schedule,
    ScheduleSpec,
    decide,
    decode,
    encode,
    parse_cron,
    timer_due,
)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


NOW = ms("2026-06-01T12:00:00.400+00:00")
EVERY_SECOND = parse_cron("* * * * * *", "UTC", NOW)


def schedule(overlap: Overlap = Overlap.SKIP, **changes: object) -> Schedule:
    spec = ScheduleSpec("s", "* * * * * *", "wf", {"a": 1}, overlap=overlap)
    base = Schedule(spec, NOW - 5_000, NOW - 5_000, next_fire_ms=ms("2026-06-01T12:00:00+00:00"))
    return replace(base, **changes)  # type: ignore[arg-type]


def test_six_fields_put_seconds_first_and_seven_add_a_year() -> None:
    at = ms("2026-06-01T12:00:00+00:00")
    fridays = parse_cron("0 9 * MAR-APR FRI", "UTC", at)  # names holding an R are no random field
    assert fridays.next_after(ms("2026-03-01T00:00:00+00:00")) == ms("2026-03-06T09:00:00+00:00")
    assert parse_cron("15 * * * * *", "UTC", at).next_after(at) == ms("2026-06-01T12:00:15+00:00")
    cron = parse_cron("0 0 0 1 1 * 2030", "UTC", at)
    assert cron.next_after(at) == ms("2030-01-01T00:00:00+00:00")
    assert EVERY_SECOND.latest_at_or_before(NOW) == ms("2026-06-01T12:00:00+00:00")
    assert EVERY_SECOND.latest_at_or_before(ms("2026-06-01T12:00:00+00:00")) == ms(
        "2026-06-01T12:00:00+00:00"
    )


def test_daylight_saving_gaps_and_repeats_in_a_zone() -> None:
    # Paris springs forward on 2026-03-29 at 02:00 (to 03:00): 02:30 does not
    # exist and fires at the end of the gap; it falls back on 2026-10-25 at
    # 03:00 (to 02:00): 02:30 happens twice and fires twice.
    cron = parse_cron("30 2 * * *", "Europe/Paris", NOW)
    spring = cron.next_after(ms("2026-03-28T12:00:00+00:00"))
    assert datetime.fromtimestamp(spring / 1000, UTC).isoformat() == "2026-03-29T01:00:00+00:00"
    first = cron.next_after(ms("2026-10-24T12:00:00+00:00"))
    second = cron.next_after(first)
    assert [datetime.fromtimestamp(t / 1000, UTC).hour for t in (first, second)] == [0, 1]


@pytest.mark.parametrize(
    ("cron", "zone", "message"),
    [
        ("61 * * * *", "UTC", "cron: '61 * * * *' does not parse: [61 * * * *] is not acceptable"),
        ("* * *", "UTC", "Exactly 5, 6 or 7 columns"),
        ("0 0 31 2 *", "UTC", "cron: '0 0 31 2 *' never fires"),
        ("R 3 * * *", "UTC", "random fields (R) are not supported"),
        ("@reboot", "UTC", "cron: '@reboot' does not parse"),
        ("* * * * *", "Nowhere/City", "time_zone: unknown IANA time zone 'Nowhere/City'"),
        ("* * * * *", "../etc/passwd", "time_zone: unknown IANA time zone"),
    ],
)
def test_bad_expressions_and_zones_name_the_field(cron: str, zone: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_cron(cron, zone, NOW)
    assert message in str(raised.value)


def test_a_due_fire_time_starts_when_nothing_runs() -> None:
    s, cancel = decide(schedule(), EVERY_SECOND, NOW, Previous())
    assert (s.firing_ms, s.next_fire_ms, cancel) == (
        ms("2026-06-01T12:00:00+00:00"), ms("2026-06-01T12:00:01+00:00"), "",
    )  # fmt: skip
    assert timer_due(s, NOW) == NOW + 5_000  # redone if this replica dies now


def test_nothing_is_due_before_the_fire_time_or_while_paused() -> None:
    early = schedule(next_fire_ms=NOW + 600)
    assert decide(early, EVERY_SECOND, NOW, Previous()) == (early, "")
    paused = schedule(spec=replace(schedule().spec, paused=True), next_fire_ms=0)
    assert decide(paused, EVERY_SECOND, NOW, Previous()) == (paused, "")
    assert timer_due(paused, NOW) == -1


def test_after_downtime_only_the_latest_fire_time_starts_and_the_rest_are_missed() -> None:
    late = schedule(next_fire_ms=ms("2026-06-01T11:59:50+00:00"))
    s, _ = decide(late, EVERY_SECOND, NOW, Previous())
    assert s.firing_ms == ms("2026-06-01T12:00:00+00:00")
    (missed,) = s.actions
    assert (missed.kind, missed.fire_ms) == (ActionKind.MISSED, ms("2026-06-01T11:59:50+00:00"))
    window = replace(late.spec, catchup_window_ms=1_000, cron="0 * * * * *")
    minutely = parse_cron("0 * * * * *", "UTC", NOW)
    old = schedule(spec=window, next_fire_ms=ms("2026-06-01T11:58:00+00:00"))
    s, _ = decide(old, minutely, ms("2026-06-01T12:00:30+00:00"), Previous())
    assert s.firing_ms == 0 and [a.kind for a in s.actions] == [ActionKind.MISSED] * 2
    assert s.next_fire_ms == ms("2026-06-01T12:01:00+00:00")


def test_each_overlap_policy_while_the_previous_run_runs() -> None:
    running = Previous(running=True)
    s, _ = decide(schedule(last_transaction_id="t1"), EVERY_SECOND, NOW, running)
    assert (s.firing_ms, s.runs_skipped, s.actions[0].kind) == (0, 1, ActionKind.SKIPPED)

    s, _ = decide(schedule(Overlap.ALLOW_ALL), EVERY_SECOND, NOW, running)
    assert s.firing_ms == ms("2026-06-01T12:00:00+00:00")

    s, _ = decide(schedule(Overlap.BUFFER_ONE), EVERY_SECOND, NOW, running)
    assert (s.buffered_ms, s.runs_skipped) == (ms("2026-06-01T12:00:00+00:00"), 0)
    assert timer_due(s, NOW) == NOW + 500  # looks again for the run's end
    again, _ = decide(s, EVERY_SECOND, NOW + 1_000, running)  # one waits already
    assert (again.buffered_ms, again.runs_skipped) == (s.buffered_ms, 1)
    ended, _ = decide(again, EVERY_SECOND, NOW + 1_100, Previous())
    assert (ended.firing_ms, ended.buffered_ms) == (s.buffered_ms, 0)

    s, cancel = decide(schedule(Overlap.CANCEL_OTHER, last_transaction_id="t1"),
                       EVERY_SECOND, NOW, running)  # fmt: skip
    assert (cancel, s.buffered_ms) == ("t1", ms("2026-06-01T12:00:00+00:00"))
    newer, cancel = decide(s, EVERY_SECOND, NOW + 1_000, Previous(True, cancel_requested=True))
    assert cancel == "" and newer.buffered_ms == ms("2026-06-01T12:00:01+00:00")
    assert newer.runs_skipped == 1  # the older waiting fire time was replaced
    # A cancel lost with a dead replica is sent again at the next look.
    _, cancel = decide(newer, EVERY_SECOND, NOW + 1_100, running)
    assert cancel == "t1"


def test_the_record_survives_its_json() -> None:
    s, _ = decide(schedule(Overlap.BUFFER_ONE), EVERY_SECOND, NOW, Previous(running=True))
    assert decode(encode(s)) == s
