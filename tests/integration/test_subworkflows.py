"""A step may run a sub-workflow: parent/child linkage, results, failure, cancel."""

from __future__ import annotations

import asyncio
from typing import Any

from integration.helpers import serving
from multiagents import Client, RetryPolicy, WorkflowBuilder, worker
from multiagents_server.app import Server

ONCE = RetryPolicy(max_attempts=1)


async def test_sub_workflow_result_flows_into_the_parent(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.double")
    async def double(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"doubled": ctx["n"] * 2}

    @worker(f"{uid}.report")
    async def report(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"report": f"n={ctx['n']} doubled={ctx['doubled']}"}

    child = WorkflowBuilder(f"{uid}.child").add_step("double", double).build()
    parent = (
        WorkflowBuilder(f"{uid}.parent")
        .add_workflow_step("compute", child)
        .add_step("report", report)
        .build()
    )
    async with serving(server, double, report):
        await client.register_workflow(child)
        await client.register_workflow(parent)
        tx = await client.execute_workflow(parent.name, {"n": 21})
        status = await client.wait(tx, timeout=20)
    assert status.state == "completed"
    assert status.step_results["report"] == {"report": "n=21 doubled=42"}
    child_tx = status.steps[0].child_transaction_id
    assert child_tx is not None
    history = await client.get_history(tx)
    dispatched = [e.command for e in history if e.HasField("command")]
    assert [(c.step, c.worker_name, c.child_transaction_id) for c in dispatched] == [
        ("compute", f"{uid}.child", child_tx),
        ("report", f"{uid}.report", ""),
    ]
    child_status = await client.get_status(child_tx)
    assert child_status.parent_transaction_id == tx
    assert child_status.state == "completed"
    assert child_status.step_results == {"double": {"doubled": 42}}


async def test_failed_sub_workflow_fails_the_step_and_the_parent_compensates(
    server: Server, client: Client, uid: str
) -> None:
    undone: list[str] = []

    @worker(f"{uid}.book")
    async def book(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"booking": "b-1"}

    @worker(f"{uid}.unbook")
    async def unbook(ctx: dict[str, Any]) -> dict[str, Any]:
        undone.append(ctx["booking"])
        return {}

    @worker(f"{uid}.reject")
    async def reject(ctx: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("rejected by the child")

    child = WorkflowBuilder(f"{uid}.child").add_step("reject", reject).build()
    parent = (
        WorkflowBuilder(f"{uid}.parent")
        .add_step("book", book, compensation=unbook)
        .add_workflow_step("check", child, retry=ONCE)
        .build()
    )
    async with serving(server, book, unbook, reject):
        await client.register_workflow(child)
        await client.register_workflow(parent)
        tx = await client.execute_workflow(parent.name, {})
        status = await client.wait(tx, timeout=20)
    assert status.state == "compensated"
    assert undone == ["b-1"]
    assert status.error is not None
    assert status.error["type"] == "ChildWorkflowFailed"
    assert "rejected by the child" in status.error["message"]


async def test_cancelling_the_parent_cancels_the_child(
    server: Server, client: Client, uid: str
) -> None:
    started = asyncio.Event()

    @worker(f"{uid}.wait")
    async def wait(ctx: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await asyncio.sleep(30)
        return {}

    child = WorkflowBuilder(f"{uid}.child").add_step("wait", wait).build()
    parent = WorkflowBuilder(f"{uid}.parent").add_workflow_step("run", child).build()
    async with serving(server, wait):
        await client.register_workflow(child)
        await client.register_workflow(parent)
        tx = await client.execute_workflow(parent.name, {})
        await asyncio.wait_for(started.wait(), 10)
        child_tx = (await client.get_status(tx)).steps[0].child_transaction_id
        assert child_tx is not None
        await client.cancel_workflow(tx)
        parent_status = await client.wait(tx, timeout=20)
        child_status = await client.wait(child_tx, timeout=20)
    assert parent_status.state == "cancelled"
    assert child_status.state == "cancelled"


async def test_unknown_sub_workflow_fails_the_step(
    server: Server, client: Client, uid: str
) -> None:
    parent = WorkflowBuilder(f"{uid}.parent").add_workflow_step("run", f"{uid}.missing").build()
    await client.register_workflow(parent)
    tx = await client.execute_workflow(parent.name, {})
    status = await client.wait(tx, timeout=20)
    assert status.state == "failed"
    assert status.error is not None and status.error["type"] == "ChildWorkflowNotFound"
