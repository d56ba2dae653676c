"""Saga semantics end to end: real gRPC server, real Redis, real worker sessions."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest

from integration.helpers import kinds, run, serving
from multiagents import Client, RetryPolicy, WorkerExecutionError, WorkflowBuilder, worker
from multiagents.v1 import workflow_service_pb2 as pb
from multiagents.v1 import workflow_service_pb2_grpc
from multiagents_server.app import Server

FAST = RetryPolicy(max_attempts=3, initial_interval=0.05)


async def test_completed_workflow_flows_context_forward(
    server: Server, client: Client, uid: str
) -> None:
    seen: list[dict[str, Any]] = []

    @worker(f"{uid}.a")
    async def a(ctx: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(ctx))
        return {"x": ctx["n"] + 1, "shared": "a"}

    @worker(f"{uid}.b")
    def b(ctx: dict[str, Any]) -> dict[str, Any]:  # a sync worker runs in a thread
        seen.append(dict(ctx))
        return {"y": ctx["x"] * 10, "shared": "b"}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("first", a).add_step("second", b).build()
    async with serving(server, a, b):
        status = await run(client, wf, {"n": 1})
    assert status.state == "completed"
    assert seen == [{"n": 1}, {"n": 1, "x": 2, "shared": "a"}]
    assert status.step_results == {
        "first": {"x": 2, "shared": "a"},
        "second": {"y": 20, "shared": "b"},
    }
    assert status.context == {"n": 1, "x": 2, "y": 20, "shared": "b"}
    assert status.current_step is None


async def test_the_history_reads_in_pages_from_any_sequence(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.a")
    async def a(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    builder = WorkflowBuilder(f"{uid}.wf")
    for i in range(3):
        builder.add_step(f"s{i}", a)
    async with serving(server, a):
        status = await run(client, builder.build(), {})
    whole = await client.get_history(status.transaction_id)
    assert [e.sequence for e in whole] == list(range(1, len(whole) + 1))
    assert len(whole) >= 6  # a command and a result per step, at least

    stub = workflow_service_pb2_grpc.WorkflowServiceStub(client._channel)
    paged: list[Any] = []
    more = True
    while more:
        after = paged[-1].sequence if paged else 0
        page = await stub.GetHistory(
            pb.GetHistoryRequest(
                transaction_id=status.transaction_id, after_sequence=after, page_size=4
            )
        )
        assert 1 <= len(page.events) <= 4
        paged.extend(page.events)
        more = page.more
    assert paged == list(whole)
    assert list(await client.get_history(status.transaction_id, after_sequence=5)) == whole[5:]
    past_the_end = await stub.GetHistory(
        pb.GetHistoryRequest(transaction_id=status.transaction_id, after_sequence=len(whole))
    )
    assert list(past_the_end.events) == [] and not past_the_end.more
    for request, field in [
        (pb.GetHistoryRequest(transaction_id=status.transaction_id, after_sequence=-1),
         "after_sequence"),
        (pb.GetHistoryRequest(transaction_id=status.transaction_id, page_size=1001), "page_size"),
    ]:  # fmt: skip
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetHistory(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (info.value.details() or "").startswith(f"{field}:")


async def test_retryable_error_is_retried_then_succeeds(
    server: Server, client: Client, uid: str
) -> None:
    attempts = 0

    @worker(f"{uid}.flaky")
    async def flaky(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise WorkerExecutionError("service timeout")
        return {"ok": attempts}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("s", flaky, retry=FAST).build()
    async with serving(server, flaky):
        status = await run(client, wf, {})
    assert status.state == "completed"
    assert status.step_results == {"s": {"ok": 3}}
    assert status.steps[0].attempts == 3
    errors = [
        e.error for e in await client.get_history(status.transaction_id) if e.HasField("error")
    ]
    assert [(e.error.type, e.will_retry) for e in errors] == [("WorkerExecutionError", True)] * 2


async def test_validation_error_is_not_retried_and_fails(
    server: Server, client: Client, uid: str
) -> None:
    calls = 0

    @worker(f"{uid}.validate")
    async def validate(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise ValueError("Missing required field")

    wf = WorkflowBuilder(f"{uid}.wf").add_step("v", validate, retry=FAST).build()
    async with serving(server, validate):
        status = await run(client, wf, {})
    assert status.state == "failed"
    assert calls == 1
    assert status.error is not None
    assert status.error["type"] == "ValueError"
    assert status.error["message"] == "Missing required field"
    assert status.error["non_retryable"] is True


async def test_failure_after_two_steps_compensates_in_reverse_order(
    server: Server, client: Client, uid: str
) -> None:
    compensated: list[tuple[str, Any]] = []

    @worker(f"{uid}.reserve")
    async def reserve(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"resource_id": "r-1"}

    @worker(f"{uid}.charge")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"payment_id": "p-1"}

    @worker(f"{uid}.ship")
    async def ship(ctx: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("cannot ship")

    @worker(f"{uid}.release")
    async def release(ctx: dict[str, Any]) -> dict[str, Any]:
        compensated.append(("release", ctx.get("resource_id")))
        return {"released": ctx["resource_id"]}

    @worker(f"{uid}.refund")
    async def refund(ctx: dict[str, Any]) -> dict[str, Any]:
        compensated.append(("refund", ctx.get("payment_id")))
        return {"refunded": ctx["payment_id"]}

    wf = (
        WorkflowBuilder(f"{uid}.wf")
        .add_step("reserve", reserve, compensation=release)
        .add_step("charge", charge, compensation=refund)
        .add_step("ship", ship)
        .build()
    )
    async with serving(server, reserve, charge, ship, release, refund):
        status = await run(client, wf, {"order": 7})
    assert status.state == "compensated"
    assert compensated == [("refund", "p-1"), ("release", "r-1")]
    assert [s.status for s in status.steps] == ["compensated", "compensated", "failed"]
    history = await kinds(client, status.transaction_id)
    assert [step for kind, step in history if kind == "compensation"] == ["charge", "reserve"]


async def test_failing_compensation_is_flagged_for_manual_intervention(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.book")
    async def book(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"booking": 1}

    @worker(f"{uid}.boom")
    async def boom(ctx: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("no")

    @worker(f"{uid}.unbook")
    async def unbook(ctx: dict[str, Any]) -> dict[str, Any]:
        raise WorkerExecutionError("booking system down")

    wf = (
        WorkflowBuilder(f"{uid}.wf")
        .add_step("book", book, compensation=unbook, compensation_retry=FAST)
        .add_step("boom", boom)
        .build()
    )
    async with serving(server, book, boom, unbook):
        status = await run(client, wf, {})
    assert status.state == "failed"
    assert status.requires_manual_intervention is True
    assert status.steps[0].status == "compensation_failed"
    assert status.steps[0].last_failure is not None
    assert status.steps[0].last_failure["message"] == "booking system down"
    compensations = [
        k for k, s in await kinds(client, status.transaction_id) if k == "compensation"
    ]
    assert len(compensations) == 3  # the compensation's own retry policy: 3 attempts


async def test_step_timeout_is_retried_then_fails(server: Server, client: Client, uid: str) -> None:
    started = 0

    @worker(f"{uid}.hang")
    async def hang(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal started
        started += 1
        await asyncio.sleep(30)
        return {}

    wf = (
        WorkflowBuilder(f"{uid}.wf")
        .add_step(
            "hang", hang, timeout=0.3, retry=RetryPolicy(max_attempts=2, initial_interval=0.05)
        )
        .build()
    )
    async with serving(server, hang):
        status = await run(client, wf, {})
    assert status.state == "failed"
    assert started == 2
    assert status.error is not None and status.error["type"] == "StepTimeout"


async def test_cancel_running_workflow_compensates_and_ends_cancelled(
    server: Server, client: Client, uid: str
) -> None:
    long_step_started = asyncio.Event()
    long_step_cancelled = asyncio.Event()
    released: list[str] = []

    @worker(f"{uid}.quick")
    async def quick(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"resource_id": "q"}

    @worker(f"{uid}.undo")
    async def undo(ctx: dict[str, Any]) -> dict[str, Any]:
        released.append(ctx["resource_id"])
        return {}

    @worker(f"{uid}.long")
    async def long(ctx: dict[str, Any]) -> dict[str, Any]:
        long_step_started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            long_step_cancelled.set()
            raise
        return {}

    wf = (
        WorkflowBuilder(f"{uid}.wf")
        .add_step("quick", quick, compensation=undo)
        .add_step("long", long)
        .build()
    )
    async with serving(server, quick, undo, long):
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        await asyncio.wait_for(long_step_started.wait(), 10)
        await client.cancel_workflow(tx, "changed my mind")
        status = await client.wait(tx, timeout=10)
        await asyncio.wait_for(long_step_cancelled.wait(), 5)
    assert status.state == "cancelled"
    assert released == ["q"]
    assert [s.status for s in status.steps] == ["compensated", "cancelled"]


async def test_idempotent_submit_returns_the_same_execution(
    server: Server, client: Client, uid: str
) -> None:
    runs = 0

    @worker(f"{uid}.once")
    async def once(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal runs
        runs += 1
        return {}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("once", once).build()
    async with serving(server, once):
        await client.register_workflow(wf)
        first = await client.execute_workflow(wf.name, {"a": 1}, request_id=f"{uid}-req")
        second = await client.execute_workflow(wf.name, {"a": 1}, request_id=f"{uid}-req")
        await client.wait(first, timeout=10)
        third = await client.execute_workflow(wf.name, {"a": 1}, request_id=f"{uid}-req")
    assert first == second == third
    assert runs == 1


async def test_watch_streams_every_state_change(server: Server, client: Client, uid: str) -> None:
    gate = asyncio.Event()

    @worker(f"{uid}.one")
    async def one(ctx: dict[str, Any]) -> dict[str, Any]:
        await gate.wait()
        return {"one": 1}

    @worker(f"{uid}.two")
    async def two(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"two": 2}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("one", one).add_step("two", two).build()
    async with serving(server, one, two):
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        updates = []
        async for update in client.watch(tx):
            updates.append((update.state, update.current_step))
            if len(updates) == 1:
                gate.set()  # the workflow moves only after the watch is attached
    assert updates == [("running", "one"), ("running", "two"), ("completed", None)]


async def test_heartbeat_timeout_fails_a_silent_step_and_heartbeats_keep_one_alive(
    server: Server, client: Client, uid: str
) -> None:
    """Same heartbeat timeout for both: the silent step fails of it; the one
    that beats (every 0.1 s) outlives the silent one and two timeouts."""
    from multiagents import heartbeat

    timeout_s = 1.5
    quiet_ended = asyncio.Event()

    @worker(f"{uid}.silent")
    async def silent(ctx: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(60)  # never reports progress
        return {}

    @worker(f"{uid}.chatty")
    async def chatty(ctx: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        beats = 0
        while not (quiet_ended.is_set() and time.monotonic() - started > 2 * timeout_s):
            heartbeat({"progress": beats})
            beats += 1
            await asyncio.sleep(0.1)
        return {"alive_s": time.monotonic() - started}

    async def run_quiet() -> Any:
        try:
            return await run(client, quiet.build(), {}, timeout=30)
        finally:
            quiet_ended.set()

    no_retry = RetryPolicy(max_attempts=1)
    quiet = WorkflowBuilder(f"{uid}.quiet").add_step(
        "s", silent, heartbeat_timeout=timeout_s, retry=no_retry
    )
    busy = WorkflowBuilder(f"{uid}.busy").add_step(
        "s", chatty, heartbeat_timeout=timeout_s, retry=no_retry
    )
    async with serving(server, silent, chatty):
        quiet_status, busy_status = await asyncio.gather(
            run_quiet(), run(client, busy.build(), {}, timeout=60)
        )
    assert quiet_status.state == "failed"
    assert quiet_status.error is not None and quiet_status.error["type"] == "HeartbeatTimeout"
    assert busy_status.state == "completed", busy_status.error
