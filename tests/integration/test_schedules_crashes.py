"""An every-second schedule while its server is killed with SIGKILL and
started again: no fire time runs twice, and none is lost silently (the ones
due while no server ran are reported as one MISSED action, and the latest
of them is caught up)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from integration.helpers import wait_for
from integration.test_crashes import _registers, processes, replica, spawn  # noqa: F401
from integration.test_schedules import (
    EVERY_SECOND,
    ONE_S,
    assert_runs_are_the_schedules,
    fire_time,
    gaps_are_reported,
    runs_of,
)
from multiagents import Client, RetryPolicy, WorkerRuntime, WorkflowBuilder, worker

pytestmark = pytest.mark.slow

FAST_LEASE = {"MULTIAGENTS_REPLICA_LEASE_MS": "1500", "MULTIAGENTS_HEARTBEAT_INTERVAL_MS": "300"}


async def test_a_server_killed_between_fires_loses_no_fire_and_doubles_none(
    replica: tuple[str, list[str]],  # noqa: F811
    processes: list[subprocess.Popen[bytes]],  # noqa: F811
    uid: str,
) -> None:
    address, args = replica

    @worker(f"{uid}.tick")
    async def tick(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"ticked": True}

    wf = (
        WorkflowBuilder(f"{uid}.ticker")
        .add_step("tick", tick, retry=RetryPolicy(max_attempts=5, initial_interval=0.1))
        .build()
    )
    sid = f"{uid}-survives"
    server = spawn(*args, env=FAST_LEASE)
    processes.append(server)
    async with Client(address) as client:
        await wait_for(_registers(client, wf), timeout=20, interval=0.1)
        runtime = WorkerRuntime([tick], servers=address, max_concurrency=8, reconnect_max=0.5)
        await runtime.start(timeout=20)
        try:
            await client.create_schedule(sid, EVERY_SECOND, wf.name, overlap_policy="allow_all")

            async def runs_at_least(n: int, after: datetime) -> bool:
                try:
                    runs = await runs_of(client, wf.name)
                except Exception:  # the server is restarting
                    return False
                return sum(fire_time(r) > after for r in runs) >= n

            start = datetime.now(UTC)
            await wait_for(lambda: runs_at_least(3, start), timeout=20, interval=0.1)
            server.send_signal(signal.SIGKILL)
            server.wait()
            killed_at = datetime.now(UTC)
            processes.append(spawn(*args, env=FAST_LEASE))
            await wait_for(lambda: runs_at_least(3, killed_at), timeout=60, interval=0.2)
            info = await client.get_schedule(sid)
            await client.delete_schedule(sid)
            runs = await runs_of(client, wf.name)
            finals = await asyncio.gather(*(client.wait(r.transaction_id, 60) for r in runs))
        finally:
            await runtime.stop()
    assert_runs_are_the_schedules(sid, runs)  # no fire time twice
    assert [f.state for f in finals] == ["completed"] * len(finals)
    # A kill that outlasts a fire time makes a gap; it is reported, not
    # silently lost, and the latest fire time due while no server ran was
    # caught up. (A restart within the second leaves no gap: nothing missed.)
    starts = gaps_are_reported(runs, info)
    times = [fire_time(r) for r in runs]
    spans = [s for s in starts if s - ONE_S <= killed_at < min(t for t in times if t > s)]
    assert len(spans) <= 1, (times, killed_at)
    for span in spans:
        caught_up = min(t for t in times if t > span)
        (missed,) = [a for a in info.recent_actions if a.kind == "missed" and a.fire_time == span]
        assert caught_up.isoformat().replace("+00:00", "Z") in missed.message
