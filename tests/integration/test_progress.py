"""A worker's heartbeat details are kept as its step's progress and shown by
GetStatus (and `multiagents status`) while the attempt runs; the step's end
hides them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from integration.helpers import serving, wait_for
from multiagents import Client, WorkflowBuilder, heartbeat, worker
from multiagents_server.app import Server


async def test_heartbeat_details_are_the_running_steps_progress(
    server: Server, client: Client, uid: str
) -> None:
    release = asyncio.Event()

    @worker(f"{uid}.long")
    async def long(ctx: dict[str, Any]) -> dict[str, Any]:
        heartbeat({"done": 3, "of": 10})  # no heartbeat_timeout: progress only
        await release.wait()
        return {}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("long", long).build()
    await client.register_workflow(wf)
    async with serving(server, long):
        tx = await client.execute_workflow(wf.name, {})

        async def reported() -> bool:
            return (await client.get_status(tx)).steps[0].progress is not None

        await wait_for(reported, timeout=10)
        status = await client.get_status(tx)
        assert status.steps[0].progress == {"done": 3, "of": 10}
        shown = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "multiagents.cli", "status", tx, "--server", server.address],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stderr
        assert 'progress {"done": 3, "of": 10}' in shown.stdout
        as_json = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "multiagents.cli", "status", tx, "--json",
             "--server", server.address],
            capture_output=True,
            text=True,
            timeout=30,
        )  # fmt: skip
        assert json.loads(as_json.stdout)["steps"][0]["progress"] == {"done": 3, "of": 10}
        release.set()
        final = await client.wait(tx, timeout=10)
    assert final.state == "completed"
    assert (await client.get_status(tx)).steps[0].progress is None
