"""The timer loop: fires due timers (retry backoff, step and heartbeat
timeouts, outbox flushes) of every execution, on whichever replica claims
them first. A claim is a lease: if the claimer dies, the timer fires again."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError

from multiagents_server import engine
from multiagents_server.orchestrator import Orchestrator
from multiagents_server.store.store import FLUSH_TIMER

log = logging.getLogger(__name__)

POLL_S = 0.05
CLAIM_LEASE_MS = 10_000
CLAIM_LIMIT = 200
CONCURRENCY = 64


async def run_timers(orchestrator: Orchestrator) -> None:
    """Fire due timers until cancelled."""
    store = orchestrator.store
    limit = asyncio.Semaphore(CONCURRENCY)
    running: set[asyncio.Task[None]] = set()

    async def fire(transaction_id: str, timer: str) -> None:
        async with limit:
            try:
                if timer == FLUSH_TIMER:
                    await orchestrator.flush(transaction_id)
                else:
                    await orchestrator.apply(transaction_id, engine.TimerFired(timer))
                    await store.delete_timer(transaction_id, timer)
            except Exception:
                # The claim lease expires and the timer fires again.
                log.exception(
                    "timer failed", extra={"transaction_id": transaction_id, "timer": timer}
                )

    try:
        while True:
            try:
                due = await store.claim_timers(orchestrator.clock(), CLAIM_LEASE_MS, CLAIM_LIMIT)
            except (RedisError, OSError) as exc:
                log.warning("timer loop cannot reach redis", extra={"error": str(exc)})
                await asyncio.sleep(1)
                continue
            for transaction_id, timer in due:
                task = asyncio.create_task(fire(transaction_id, timer))
                running.add(task)
                task.add_done_callback(running.discard)
            if len(due) < CLAIM_LIMIT:
                await asyncio.sleep(POLL_S)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
