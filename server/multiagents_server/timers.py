"""The timer loop: fires due timers (retry backoff, step and heartbeat
timeouts, follow-up flushes, schedules) of the buckets this replica owns. A claim is a
lease: if the claimer dies, the timer fires again elsewhere.

Each bucket's earliest due time is remembered from the last claim (and
lowered by this replica's own commits, which schedule most timers), so a
tick claims only the buckets with something due; every bucket is claimed at
least once a `SWEEP_MS`, which bounds how late a timer scheduled by another
replica can fire.

Time the server itself did not run is not counted against workers: when the
loop comes round `HELD_UP_S` or more after its last round (its process was
held up: a long garbage collection, a starved CPU, SIGSTOP; or Redis was
that slow), the heartbeats and answers workers sent meanwhile wait unread
in their streams, so it waits `CATCH_UP_S` for them to be read before it
claims anything (once per hold-up: a loop held up at every round still
fires, later). Only this replica's timers wait: a timer in a bucket another
replica owns fires there on time, whatever this replica has not read.
"""

from __future__ import annotations

import asyncio
import logging

from multiagents_server import engine
from multiagents_server.liveness import Liveness
from multiagents_server.orchestrator import Orchestrator
from multiagents_server.schedules import Schedules
from multiagents_server.store import FLUSH_TIMER, SCHEDULE_TIMER, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

POLL_S = 0.02
SWEEP_MS = 1_000
CLAIM_LEASE_MS = 10_000
CLAIM_LIMIT = 200
CONCURRENCY = 64
HELD_UP_S = 1.0
CATCH_UP_S = 0.5


async def run_timers(orchestrator: Orchestrator, liveness: Liveness, schedules: Schedules) -> None:
    """Fire due timers until cancelled."""
    store = orchestrator.store
    limit = asyncio.Semaphore(CONCURRENCY)
    running: set[asyncio.Task[None]] = set()
    # Earliest due time per bucket as last seen; 0 = look now.
    next_due = {b: 0 for b in store.buckets}

    def scheduled(bucket: int, due: int) -> None:
        next_due[bucket] = min(next_due[bucket], due)

    orchestrator.on_schedule = scheduled
    next_sweep = 0
    loop = asyncio.get_running_loop()
    last_round = loop.time()

    async def fire(transaction_id: str, timer: str) -> None:
        async with limit:
            try:
                if timer == FLUSH_TIMER:
                    await orchestrator.flush(transaction_id)
                elif timer == SCHEDULE_TIMER:
                    await schedules.fire(transaction_id)  # a schedule's id
                else:
                    await orchestrator.apply(transaction_id, engine.TimerFired(timer))
            except StoreError as exc:
                # Redis down or restarting: one line, not a traceback each time.
                # The claim lease expires and the timer fires again.
                log.warning(
                    "timer not fired, fires again: %s", exc,
                    extra={"transaction_id": transaction_id, "timer": timer},
                )  # fmt: skip
            except Exception:
                # The claim lease expires and the timer fires again.
                log.exception(
                    "timer failed", extra={"transaction_id": transaction_id, "timer": timer}
                )

    try:
        while True:
            # The clock first: a hold-up after this reading cannot make a
            # timer due; one before it is seen by the check below.
            now = orchestrator.clock()
            round_at = loop.time()
            held_up_s, last_round = round_at - last_round, round_at
            if held_up_s >= HELD_UP_S:
                log.info(
                    "timer loop was held up; fires once the streams are read",
                    extra={"held_up_ms": round(held_up_s * 1000)},
                )
                await asyncio.sleep(CATCH_UP_S)
                continue  # a hold-up during the catch-up is one too
            owned = liveness.owned_buckets
            if now >= next_sweep:
                buckets = owned
                next_sweep = now + SWEEP_MS
            else:
                buckets = [b for b in owned if next_due[b] <= now]
            if not buckets:
                await asyncio.sleep(POLL_S)
                continue
            try:
                claimed = await store.claim_timers(buckets, now, CLAIM_LEASE_MS, CLAIM_LIMIT)
            except StoreUnavailable as exc:
                log.warning("timer loop cannot reach redis", extra={"error": str(exc)})
                await asyncio.sleep(1)
                last_round = loop.time()  # a wait of its own, not a hold-up
                continue
            full = False
            for bucket, due, first in claimed:
                next_due[bucket] = now + SWEEP_MS if first is None else first
                full = full or len(due) == CLAIM_LIMIT
                for transaction_id, timer in due:
                    task = asyncio.create_task(fire(transaction_id, timer))
                    running.add(task)
                    task.add_done_callback(running.discard)
            if not full:
                await asyncio.sleep(POLL_S)
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
