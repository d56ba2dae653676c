"""The three no-op workers of the benchmark workflow: each returns a small dict at once."""

from __future__ import annotations

from typing import Any

from multiagents import worker


@worker("bench_step1")
async def step1(context: dict[str, Any]) -> dict[str, Any]:
    return {"s1": 1}


@worker("bench_step2")
async def step2(context: dict[str, Any]) -> dict[str, Any]:
    return {"s2": 2}


@worker("bench_step3")
async def step3(context: dict[str, Any]) -> dict[str, Any]:
    return {"s3": 3}
