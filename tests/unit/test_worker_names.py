"""Two functions under one worker name in one process are refused when they
are registered: otherwise the later one silently serves the name."""

from __future__ import annotations

from typing import Any

import pytest

from multiagents import WorkerRuntime, worker
from multiagents.core.factory import WorkerManager


@worker("charge")
async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
    return {"by": "first"}


@worker("charge")
async def charge_again(ctx: dict[str, Any]) -> dict[str, Any]:
    return {"by": "second"}


@worker("refund")
def refund(ctx: dict[str, Any]) -> dict[str, Any]:
    return {}


def test_the_runtime_refuses_two_functions_with_one_name() -> None:
    with pytest.raises(
        ValueError, match=r"two @worker functions named 'charge': .*\.charge and .*\.charge_again"
    ):
        WorkerRuntime([charge, refund, charge_again])
    runtime = WorkerRuntime([charge])
    with pytest.raises(ValueError, match="'charge'"):
        runtime.register(charge_again)
    assert runtime.workers["charge"] is charge


def test_registering_the_same_worker_twice_is_fine() -> None:
    runtime = WorkerRuntime([charge, refund, charge])
    assert runtime.workers == {"charge": charge, "refund": refund}


def test_the_seed_worker_manager_refuses_two_functions_with_one_name() -> None:
    manager = WorkerManager(bus=None)  # type: ignore[arg-type]  # register() needs no bus
    manager.register(charge)
    manager.register(charge)
    with pytest.raises(ValueError, match="'charge'"):
        manager.register(charge_again)
