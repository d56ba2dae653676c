"""Workers of the order-processing saga: validate order -> reserve inventory
[release] -> charge payment [refund] -> ship.

Serve them with `multiagents worker workers/python/multiagents_demo/order_workers.py`.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from multiagents import WorkerExecutionError, WorkflowBuilder, worker
from multiagents.workflow import RetryPolicy, Workflow

UNSHIPPABLE = {"Atlantis", "El Dorado"}


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _id(prefix: str, *parts: Any) -> str:
    return prefix + hashlib.sha256(repr(parts).encode()).hexdigest()[:10]


@worker("validate_order")
async def validate_order(context: dict[str, Any]) -> dict[str, Any]:
    order_id = context.get("order_id")
    items = context.get("items") or []
    if not order_id or not items:
        raise ValueError("order needs an order_id and at least one item")
    if any(int(i.get("quantity", 0)) <= 0 for i in items):
        raise ValueError(f"order {order_id}: every item needs a positive quantity")
    total = sum(int(i["quantity"]) * float(i["price"]) for i in items)
    return {"validated": True, "total": round(total, 2)}


@worker("reserve_inventory")
async def reserve_inventory(context: dict[str, Any]) -> dict[str, Any]:
    return {"reservation_id": _id("res-", context["order_id"]), "reserved_at": _now()}


@worker("release_inventory")
async def release_inventory(context: dict[str, Any]) -> dict[str, Any]:
    reservation = context.get("reservation_id")
    if not reservation:
        return {"status": "no_action_needed"}
    return {"status": "success", "released": reservation, "released_at": _now()}


@worker("charge_payment")
async def charge_payment(context: dict[str, Any]) -> dict[str, Any]:
    from multiagents import current_command

    command = current_command()
    # The payment gateway of the demo times out on the first try of flaky orders.
    if context.get("flaky_payment") and command is not None and command.attempt == 1:
        raise WorkerExecutionError("payment gateway timeout")
    return {"payment_id": _id("pay-", context["order_id"]), "charged": context["total"]}


@worker("refund_payment")
async def refund_payment(context: dict[str, Any]) -> dict[str, Any]:
    payment = context.get("payment_id")
    if not payment:
        return {"status": "no_action_needed"}
    return {"status": "success", "refunded": payment, "amount": context.get("charged")}


@worker("ship_order")
async def ship_order(context: dict[str, Any]) -> dict[str, Any]:
    destination = context.get("destination", "")
    if destination in UNSHIPPABLE:
        raise ValueError(f"no carrier delivers to {destination}")
    return {"tracking_number": _id("trk-", context["order_id"]), "shipped_at": _now()}


WORKERS = [
    validate_order, reserve_inventory, release_inventory,
    charge_payment, refund_payment, ship_order,
]  # fmt: skip


def order_workflow() -> Workflow:
    fast_retry = RetryPolicy(max_attempts=3, initial_interval=0.2)
    return (
        WorkflowBuilder("order_processing")
        .add_step("validate", validate_order)
        .add_step("reserve", reserve_inventory, compensation=release_inventory)
        .add_step("charge", charge_payment, compensation=refund_payment, retry=fast_retry)
        .add_step("ship", ship_order)
        .build()
    )
