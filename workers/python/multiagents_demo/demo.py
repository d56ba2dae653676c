"""`multiagents demo`: an embedded server, the order workers connected over
gRPC, a batch of orders (some fail and are compensated), each one's steps and
final state, then a clean shutdown."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

from multiagents import Client, WorkerRuntime
from multiagents_demo.order_workers import WORKERS, order_workflow

CITIES = ["Lisbon", "Osaka", "Atlantis", "Nairobi", "Toronto", "El Dorado", "Oslo", "Lima"]


def _say(*parts: object) -> None:
    print(*parts, flush=True)


def demo_orders(count: int) -> list[dict[str, Any]]:
    orders = []
    for n in range(count):
        order: dict[str, Any] = {
            "order_id": f"order-{n + 1:03d}",
            "items": [{"sku": f"sku-{n % 3}", "quantity": 1 + n % 2, "price": 9.5 + n}],
            "destination": CITIES[n % len(CITIES)],
            "flaky_payment": n % 4 == 1,
        }
        if n % 7 == 6:
            order["items"][0]["quantity"] = 0  # fails validation: nothing to compensate
        orders.append(order)
    return orders


async def run_demo(*, orders: int = 8, data_dir: str = ".multiagents/demo") -> int:
    from multiagents_server.app import Server
    from multiagents_server.config import ServerConfig

    shutil.rmtree(data_dir, ignore_errors=True)
    config = ServerConfig(port=0, data_dir=data_dir, heartbeat_interval_ms=1000)
    _say("starting an embedded server (real redis-server child process, gRPC on localhost)")
    async with Server(config) as server:
        _say(f"  server on {server.address}, redis at {server.redis_url}")
        async with (
            WorkerRuntime(WORKERS, servers=server.address, max_concurrency=8) as runtime,
            Client(server.address) as client,
        ):
            _say(f"  worker process connected: session {runtime.session_id[:12]}")
            await client.register_workflow(order_workflow())
            _say("workflow: validate -> reserve [release] -> charge [refund] -> ship")
            batch = demo_orders(orders)
            ids = [await client.execute_workflow("order_processing", o) for o in batch]
            _say(f"submitted {len(ids)} orders\n")
            finals = await asyncio.gather(*(client.wait(tx, timeout=60) for tx in ids))
            tally: dict[str, int] = {}
            for order, status in zip(batch, finals, strict=True):
                tally[status.state] = tally.get(status.state, 0) + 1
                _say(f"{order['order_id']} to {order['destination']:<10} -> {status.state.upper()}")
                history = await client.get_history(status.transaction_id)
                for event in history:
                    kind = event.WhichOneof("event")
                    body = getattr(event, kind)
                    if kind == "command":
                        _say(f"    run        {body.step:<9} attempt {body.retry_count + 1}")
                    elif kind == "compensation":
                        _say(f"    compensate {body.step:<9} with {body.worker_name}")
                    elif kind == "error":
                        retry = "will retry" if body.will_retry else "gives up"
                        _say(f"    error      {body.step:<9} {body.error.message} ({retry})")
            _say("\nsummary: " + ", ".join(f"{n} {s}" for s, n in sorted(tally.items())))
    _say("server, workers and redis stopped")
    return 0


DRAFTS = [
    "Tides follow the moon, with evidence from tide gauges",
    "The moon is made of cheese",
    "Rivers carve canyons over millions of years, with evidence from strata",
]


async def run_review_demo(*, data_dir: str = ".multiagents/demo") -> int:
    """Three agents review each draft at once; the workflow branches on their
    scores; good drafts wait for a person's approval (the demo approves the
    first and rejects the second, from the inbox); a rejection compensates."""
    from multiagents_demo.review_workers import WORKERS as REVIEW_WORKERS
    from multiagents_demo.review_workers import review_workflow
    from multiagents_server.app import Server
    from multiagents_server.config import ServerConfig

    shutil.rmtree(data_dir, ignore_errors=True)
    config = ServerConfig(port=0, data_dir=data_dir, heartbeat_interval_ms=1000)
    _say("starting an embedded server (real redis-server child process, gRPC on localhost)")
    async with (
        Server(config) as server,
        WorkerRuntime(REVIEW_WORKERS, servers=server.address, max_concurrency=8),
        Client(server.address) as client,
    ):
        await client.register_workflow(review_workflow())
        _say("workflow article_review: book [release] -> reviews (3 agents at once)")
        _say("  -> route: mean score >= 0.6 ? approval -> publish : revise\n")
        ids = [await client.execute_workflow("article_review", {"draft": d}) for d in DRAFTS]
        approvals = 0
        finals: dict[str, Any] = {}
        while len(finals) < len(ids):
            for w in await client.list_waiting_signals(workflow_name="article_review"):
                decide = client.approve if approvals % 2 == 0 else client.reject
                verb = "approve" if approvals % 2 == 0 else "reject"
                _say(f"inbox: {w.transaction_id[:12]} waits at {w.path!r}: {verb}")
                await decide(w.transaction_id, by="demo editor", comment=f"demo {verb}")
                approvals += 1
            for tx in ids:
                status = await client.get_status(tx)
                if status.terminal and tx not in finals:
                    finals[tx] = status
            await asyncio.sleep(0.1)
        for draft, tx in zip(DRAFTS, ids, strict=True):
            status = finals[tx]
            scores = {k: v["score"] for k, v in status.context.get("reviews", {}).items()}
            taken = {s.path: s.branch for s in status.steps}.get("route", "")
            _say(f"\n{draft[:50]!r}\n  scores {scores} -> route {taken}")
            _say(
                f"  {status.state.upper()}"
                + (f" ({status.error['type']}: {status.error['message']})" if status.error else "")
            )
    _say("\nserver, workers and redis stopped")
    return 0


async def run_dspy_demo(*, data_dir: str = ".multiagents/demo") -> int:
    """A DSPy program's tokens live in `multiagents watch`, then its usage."""
    from multiagents_demo.dspy_demo import run_dspy_demo as run

    return await run(data_dir=data_dir)
