"""The server's periodic loops (lease, reaper, lost commands) stop when cancelled."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from multiagents_server.app import Server
from multiagents_server.config import ServerConfig


async def test_a_loop_stops_even_when_its_action_dropped_the_cancel() -> None:
    # Found when a stop waited for ever for the reaper: asyncio.wait_for before
    # Python 3.12 (redis-py waits with it) drops a cancel that meets the end
    # of what it waits for, so the action returns as if nothing happened.
    started = asyncio.Event()

    async def dropping_the_cancel() -> None:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)

    loop = asyncio.create_task(Server(ServerConfig())._every(0.01, dropping_the_cancel, "test"))
    await started.wait()
    loop.cancel()
    async with asyncio.timeout(5):
        with pytest.raises(asyncio.CancelledError):
            await loop
