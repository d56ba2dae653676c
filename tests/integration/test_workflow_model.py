"""Workflow model v2 over a real server and real workers: parallel groups,
maps, conditions, signals and approvals, sleeps, delayed starts, resume."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from integration.helpers import kinds, run, serving, wait_for
from multiagents import (
    Client,
    FailedPreconditionError,
    InvalidArgumentError,
    Map,
    NotFoundError,
    RetryPolicy,
    StatusUpdate,
    WorkflowBuilder,
    branch,
    case,
    case_equals,
    step,
    worker,
)
from multiagents.v1 import workflow_service_pb2 as pb
from multiagents.v1 import workflow_service_pb2_grpc
from multiagents_server.app import Server

ONCE = RetryPolicy(max_attempts=1)


async def test_parallel_branches_run_at_once_and_join_under_their_names(
    server: Server, client: Client, uid: str
) -> None:
    started: list[str] = []
    all_started = asyncio.Event()

    def agent(name: str) -> Any:
        @worker(f"{uid}.{name}")
        async def run_agent(ctx: dict[str, Any]) -> dict[str, Any]:
            started.append(name)
            if len(started) == 3:
                all_started.set()
            # Returns only once all three run: sequential branches would hang.
            await asyncio.wait_for(all_started.wait(), 10)
            return {"answer": f"{name} on {ctx['topic']}"}

        return run_agent

    names = ("research", "critic", "legal")
    agents = [agent(n) for n in names]

    @worker(f"{uid}.summarize")
    async def summarize(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"summary": sorted(ctx["ask"])}

    wf = (
        WorkflowBuilder(f"{uid}.fanout")
        .add_parallel(
            "ask",
            [branch(n, step(f"{n}_step", a)) for n, a in zip(names, agents, strict=True)],
        )
        .add_step("summarize", summarize)
        .build()
    )
    async with serving(server, *agents, summarize):
        status = await run(client, wf, {"topic": "tides"})
    assert status.state == "completed"
    assert status.context["ask"] == {
        "research": {"answer": "research on tides"},
        "critic": {"answer": "critic on tides"},
        "legal": {"answer": "legal on tides"},
    }
    assert status.step_results["summarize"] == {"summary": ["critic", "legal", "research"]}
    paths = {s.path: s.status for s in status.steps}
    assert paths["ask/critic/critic_step"] == "completed"
    history = await client.get_history(status.transaction_id)
    commands = [e.command.path for e in history if e.HasField("command")]
    assert sorted(commands[:3]) == ["ask/critic/critic_step", "ask/legal/legal_step",
                                    "ask/research/research_step"]  # fmt: skip


@pytest.mark.parametrize("fail_fast", [True, False], ids=["fail-fast", "wait-all"])
async def test_a_failed_branch_fails_the_group_and_completed_steps_compensate_in_reverse(
    server: Server, client: Client, uid: str, fail_fast: bool
) -> None:
    undone: list[str] = []
    slow_cancelled = asyncio.Event()
    slow_started = asyncio.Event()

    @worker(f"{uid}.book")
    async def book(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"booked": ctx.get("item", "first")}

    @worker(f"{uid}.unbook")
    async def unbook(ctx: dict[str, Any]) -> dict[str, Any]:
        undone.append(ctx["booked"])
        return {}

    @worker(f"{uid}.slow")
    async def slow(ctx: dict[str, Any]) -> dict[str, Any]:
        slow_started.set()
        try:
            await asyncio.sleep(0 if not fail_fast else 30)
        except asyncio.CancelledError:
            slow_cancelled.set()
            raise
        return {"booked": "slow"}

    @worker(f"{uid}.fail")
    async def fail(ctx: dict[str, Any]) -> dict[str, Any]:
        await asyncio.wait_for(slow_started.wait(), 10)
        raise ValueError("no seats")

    wf = (
        WorkflowBuilder(f"{uid}.group")
        .add_step("first", book, compensation=unbook)
        .add_parallel(
            "group",
            [
                branch("slow", step("slow_step", slow, compensation=unbook, retry=ONCE)),
                branch("bad", step("bad_step", fail, retry=ONCE)),
            ],
            fail_fast=fail_fast,
        )
        .build()
    )
    async with serving(server, book, unbook, slow, fail):
        status = await run(client, wf, {})
        if fail_fast:
            await asyncio.wait_for(slow_cancelled.wait(), 10)
    assert status.state == "compensated"
    assert status.error is not None and "no seats" in status.error["message"]
    steps = {s.path: s.status for s in status.steps}
    if fail_fast:
        assert steps["group/slow/slow_step"] == "cancelled"
        assert undone == ["first"]
    else:
        # The slow branch finished after the failure: compensated first.
        assert steps["group/slow/slow_step"] == "compensated"
        assert undone == ["slow", "first"]


# A map's 1,000 item records are stored whole at each of its 1,000 commits
# (docs/performance.md): minutes under a loaded CI machine, not seconds.
@pytest.mark.timeout(600)
async def test_a_map_runs_1000_items_within_its_concurrency_and_gathers_in_order(
    server: Server, client: Client, uid: str
) -> None:
    running = 0
    most = 0

    @worker(f"{uid}.square")
    async def square(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001)
        running -= 1
        return {"square": ctx["item"] ** 2, "index": ctx["index"]}

    wf = (
        WorkflowBuilder(f"{uid}.map")
        .add_map("each", "context.numbers", step("square_step", square), max_concurrency=20)
        .build()
    )
    async with serving(server, square, concurrency=64):
        status = await run(client, wf, {"numbers": list(range(1000))}, timeout=540)
    assert status.state == "completed"
    assert status.context["each"] == [{"square": i * i, "index": i} for i in range(1000)]
    assert 1 < most <= 20
    items = [s for s in status.steps if s.kind == "item"]
    assert len(items) == 1000 and items[999].path == "each/999"


async def test_one_transition_can_start_and_cancel_five_thousand_commands(
    server: Server, client: Client, uid: str
) -> None:
    # Five maps of 1,000 items at concurrency 1,000 start together: the
    # creation commits 5,000 commands with their history and timers, the
    # cancel 5,000 cancellations. Lua's unpack() refused either list whole.
    @worker(f"{uid}.never_served")
    async def never_served(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    maps = [
        branch(f"b{i}", Map(f"m{i}", "context.items", step(f"s{i}", never_served), 1000))
        for i in range(5)
    ]
    wf = WorkflowBuilder(f"{uid}.wide").add_parallel("all", maps).build()
    await client.register_workflow(wf)
    tx = await client.execute_workflow(wf.name, {"items": list(range(1000))})
    started = await client.get_status(tx)
    assert started.state == "running"
    assert sum(s.status == "running" for s in started.steps if s.kind == "item") == 5000
    await client.cancel_workflow(tx, "too wide")
    status = await client.wait(tx, timeout=60)
    assert status.state == "cancelled"
    items = [s.status for s in status.steps if s.kind == "item"]
    assert items == ["cancelled"] * 5000
    # Each command carries the 1,000 items: about 25 MB of history, read in
    # pages of under 3 MiB.
    history = await client.get_history(tx)
    assert [e.sequence for e in history] == list(range(1, len(history) + 1))
    assert sum(e.HasField("command") for e in history) == 5000
    stub = workflow_service_pb2_grpc.WorkflowServiceStub(client._channel)
    first = await stub.GetHistory(pb.GetHistoryRequest(transaction_id=tx))
    assert first.more and 0 < first.ByteSize() < 3 * 1024 * 1024


async def test_a_map_over_a_missing_or_non_list_value_fails_naming_it(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.noop")
    async def noop(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    wf = WorkflowBuilder(f"{uid}.badmap").add_map("each", "context.items", step("n", noop)).build()
    async with serving(server, noop):
        missing = await run(client, wf, {})
        not_a_list = await run(client, wf, {"items": 5})
    for status in (missing, not_a_list):
        assert status.state == "failed"
        assert status.error is not None and status.error["type"] == "ExpressionError"
        assert "context.items" in status.error["message"]
    assert "not a list" in not_a_list.error["message"]


async def test_conditions_take_the_matching_case_if_else_and_switch(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.mark")
    async def mark(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"marked": True}

    wf = (
        WorkflowBuilder(f"{uid}.cond")
        .add_condition(
            "by_score",
            [case("context.score >= 0.8", step("publish", mark))],
            otherwise=[step("revise", mark)],
        )
        .add_condition(
            "by_kind",
            [case_equals("a", step("kind_a", mark)), case_equals(2, step("kind_two", mark))],
            switch="context.kind",
        )
        .build()
    )
    async with serving(server, mark):
        high = await run(client, wf, {"score": 0.9, "kind": "a"})
        low = await run(client, wf, {"score": 0.1, "kind": 2})
    assert set(high.step_results) == {"publish", "kind_a"}
    assert set(low.step_results) == {"revise", "kind_two"}
    by_path = {s.path: s for s in low.steps}
    assert by_path["by_score"].branch == "otherwise"
    assert by_path["by_score/publish"].status == "skipped"
    assert by_path["by_kind"].branch == "case 2"
    assert ("node", "by_score chose") in await kinds(client, low.transaction_id)


async def test_a_bad_expression_is_refused_at_registration_with_its_position(
    client: Client, uid: str
) -> None:
    wf = (
        WorkflowBuilder(f"{uid}.bad")
        .add_condition("c", [case("context.score >", step("s", "w"))])
        .build()
    )
    with pytest.raises(InvalidArgumentError) as error:
        await client.register_workflow(wf)
    message = str(error.value)
    assert "definition.steps[0].condition.cases[0].when" in message
    assert "line 1, column" in message


async def test_an_approval_waits_shows_in_the_inbox_and_goes_on_when_approved(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.ship")
    async def ship(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"shipped_by": ctx["approve"]["by"]}

    wf = (
        WorkflowBuilder(f"{uid}.approve")
        .add_wait_for_signal("approve", "approval", approval=True, timeout=60)
        .add_step("ship", ship)
        .build()
    )
    async with serving(server, ship):
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})

        async def in_inbox() -> bool:
            waiting = await client.list_waiting_signals(workflow_name=wf.name)
            return any(w.transaction_id == tx for w in waiting)

        await wait_for(in_inbox)
        (entry,) = [w for w in await client.list_waiting_signals() if w.transaction_id == tx]
        assert (entry.path, entry.signal, entry.approval) == ("approve", "approval", True)
        assert entry.timeout_at is not None
        with pytest.raises(InvalidArgumentError, match=r"payload\.approved"):
            await client.signal_workflow(tx, "approval", {"yes": 1})
        with pytest.raises(InvalidArgumentError, match="no wait_for_signal step"):
            await client.signal_workflow(tx, "other", {})
        await client.approve(tx, by="ana")
        status = await client.wait(tx, timeout=20)
        assert not await in_inbox()
    assert status.state == "completed"
    assert status.step_results["ship"] == {"shipped_by": "ana"}
    with pytest.raises(FailedPreconditionError):
        await client.approve(tx)


async def test_a_rejected_approval_compensates(server: Server, client: Client, uid: str) -> None:
    undone: list[str] = []

    @worker(f"{uid}.reserve")
    async def reserve(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"reservation": "r-1"}

    @worker(f"{uid}.release")
    async def release(ctx: dict[str, Any]) -> dict[str, Any]:
        undone.append(ctx["reservation"])
        return {}

    wf = (
        WorkflowBuilder(f"{uid}.reject")
        .add_step("reserve", reserve, compensation=release)
        .add_wait_for_signal("approve", "approval", approval=True)
        .build()
    )
    async with serving(server, reserve, release):
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        await wait_for(lambda: _waiting(client, tx))
        await client.reject(tx, comment="too expensive")
        status = await client.wait(tx, timeout=20)
    assert status.state == "compensated"
    assert status.error is not None and status.error["type"] == "Rejected"
    assert "too expensive" in status.error["message"]
    assert undone == ["r-1"]


async def _waiting(client: Client, tx: str) -> bool:
    return bool((await client.get_status(tx)).waiting_signals)


async def test_signals_are_kept_until_a_wait_takes_them_and_ids_deduplicate(
    server: Server, client: Client, uid: str
) -> None:
    gate = asyncio.Event()

    @worker(f"{uid}.before")
    async def before(ctx: dict[str, Any]) -> dict[str, Any]:
        await asyncio.wait_for(gate.wait(), 10)
        return {}

    wf = (
        WorkflowBuilder(f"{uid}.early")
        .add_step("before", before)
        .add_wait_for_signal("go", "go")
        .build()
    )
    async with serving(server, before):
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        assert await client.signal_workflow(tx, "go", {"n": 1}, signal_id="s-1") is False
        assert await client.signal_workflow(tx, "go", {"n": 1}, signal_id="s-1") is True
        with pytest.raises(FailedPreconditionError, match="signal_id"):
            await client.signal_workflow(tx, "go", {"n": 2}, signal_id="s-1")
        gate.set()
        status = await client.wait(tx, timeout=20)
    assert status.state == "completed"
    assert status.context["go"] == {"n": 1}
    signals = [e.signal for e in await client.get_history(tx) if e.HasField("signal")]
    assert [(s.signal_id, s.consumed_by) for s in signals] == [("s-1", ""), ("s-1", "go")]


async def test_a_wait_times_out_into_a_failure_or_its_on_timeout_steps(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.remind")
    async def remind(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"reminded": True}

    fails = WorkflowBuilder(f"{uid}.t1").add_wait_for_signal("w", "go", timeout=0.3).build()
    goes_on = (
        WorkflowBuilder(f"{uid}.t2")
        .add_wait_for_signal("w", "go", timeout=0.3, on_timeout=[step("remind", remind)])
        .build()
    )
    async with serving(server, remind):
        failed = await run(client, fails, {})
        went_on = await run(client, goes_on, {})
    assert failed.state == "failed"
    assert failed.error is not None and failed.error["type"] == "SignalTimeout"
    assert went_on.state == "completed"
    assert went_on.step_results["remind"] == {"reminded": True}
    assert {s.path: s.branch for s in went_on.steps}["w"] == "timed out"


async def test_a_sleep_and_a_delayed_start_wait_their_time(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.stamp")
    async def stamp(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"at": time.time()}

    wf = (
        WorkflowBuilder(f"{uid}.sleepy")
        .add_step("a", stamp)
        .add_sleep("nap", 0.5)
        .add_step("b", stamp)
        .build()
    )
    async with serving(server, stamp):
        await client.register_workflow(wf)
        submitted = time.time()
        tx = await client.execute_workflow(wf.name, {}, start_delay=0.5)
        assert (await client.get_status(tx)).state == "pending"
        status = await client.wait(tx, timeout=20)
    assert status.state == "completed"
    assert status.step_results["a"]["at"] - submitted >= 0.5
    assert status.step_results["b"]["at"] - status.step_results["a"]["at"] >= 0.5
    assert ("node", "nap sleeping") in await kinds(client, tx)


async def test_resume_reruns_the_failed_step_with_the_same_id_and_history(
    server: Server, client: Client, uid: str
) -> None:
    calls: list[int] = []

    @worker(f"{uid}.first")
    async def first(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"first": True}

    @worker(f"{uid}.flaky")
    async def flaky(ctx: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("upstream down")
        return {"second": True}

    wf = (
        WorkflowBuilder(f"{uid}.resume")
        .add_step("first", first)
        .add_step("second", flaky, retry=ONCE)
        .build()
    )
    async with serving(server, first, flaky):
        failed = await run(client, wf, {})
        assert failed.state == "failed"
        before = len(await client.get_history(failed.transaction_id))
        await client.resume_workflow(failed.transaction_id)
        status = await client.wait(failed.transaction_id, timeout=20)
    assert status.state == "completed"
    assert status.step_results == {"first": {"first": True}, "second": {"second": True}}
    assert {s.path: s.attempts for s in status.steps} == {"first": 1, "second": 2}
    history = await client.get_history(status.transaction_id)
    assert len(history) > before
    commands = [e.command.command_id for e in history if e.HasField("command")]
    assert commands[-1].endswith(":x1:2")  # a new attempt, not a new execution
    with pytest.raises(FailedPreconditionError, match="only a failed workflow resumes"):
        await client.resume_workflow(status.transaction_id)


async def test_a_watcher_sees_compensating_while_compensation_runs(
    server: Server, client: Client, uid: str
) -> None:
    release = asyncio.Event()

    @worker(f"{uid}.do")
    async def do(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    @worker(f"{uid}.undo")
    async def undo(ctx: dict[str, Any]) -> dict[str, Any]:
        await asyncio.wait_for(release.wait(), 10)
        return {}

    @worker(f"{uid}.boom")
    async def boom(ctx: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("boom")

    wf = (
        WorkflowBuilder(f"{uid}.comp")
        .add_step("do", do, compensation=undo)
        .add_step("boom", boom, retry=ONCE)
        .build()
    )
    async with serving(server, do, undo, boom):
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        states = []
        async for update in client.watch(tx):
            states.append(update.state)
            if update.state == "compensating":
                release.set()
    assert "compensating" in states
    assert states[-1] == "compensated"


async def test_bad_definitions_and_signals_name_the_field(client: Client, uid: str) -> None:
    from multiagents.v1 import workflow_pb2

    bad = workflow_pb2.WorkflowDefinition(name=f"{uid}.x", version=1)
    s = bad.steps.add(name="both", worker="w")
    s.sleep.duration.FromMilliseconds(10)
    with pytest.raises(InvalidArgumentError, match=r"steps\[0\]: set exactly one"):
        await client.register_workflow(bad)
    dup = WorkflowBuilder(f"{uid}.dup")
    with pytest.raises(ValueError, match="duplicate step name"):
        dup.add_parallel("g", [branch("a", step("s", "w")), branch("b", step("s", "w"))])
    with pytest.raises(NotFoundError, match="nope"):
        await client.signal_workflow("nope", "go", {})


async def test_a_cycle_of_sub_workflows_is_refused_at_registration(
    client: Client, uid: str
) -> None:
    a, b = f"{uid}.a", f"{uid}.b"
    await client.register_workflow(WorkflowBuilder(a).add_workflow_step("run_b", b).build())
    with pytest.raises(InvalidArgumentError, match=f"cycle of sub-workflows: {b} -> {a} -> {b}"):
        await client.register_workflow(WorkflowBuilder(b).add_workflow_step("run_a", a).build())
    with pytest.raises(InvalidArgumentError, match="cycle"):
        await client.register_workflow(WorkflowBuilder(f"{uid}.self").add_workflow_step(
            "again", f"{uid}.self").build())  # fmt: skip


async def test_a_watcher_with_events_sees_every_retry_as_it_happens(
    server: Server, client: Client, uid: str
) -> None:
    gate = asyncio.Event()
    calls: list[int] = []

    @worker(f"{uid}.wait")
    async def wait(ctx: dict[str, Any]) -> dict[str, Any]:
        await asyncio.wait_for(gate.wait(), 10)
        return {}

    @worker(f"{uid}.flaky")
    async def flaky(ctx: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(f"try {len(calls)}")
        return {"ok": True}

    retry = RetryPolicy(max_attempts=3, initial_interval=0.05)
    wf = (
        WorkflowBuilder(f"{uid}.retries")
        .add_step("gate", wait)
        .add_step("flaky", flaky, retry=retry)
        .build()
    )
    async with serving(server, wait, flaky):
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        seen: list[str] = []
        async for item in client.watch_events(tx):
            if isinstance(item, StatusUpdate):
                seen.append(f"status {item.state}")
                gate.set()
                continue
            kind = item.WhichOneof("event")
            body = getattr(item, kind)
            if kind == "error":
                seen.append(f"error {body.path} retry={body.will_retry}")
            elif kind == "command":
                seen.append(f"command {body.path} attempt={body.retry_count + 1}")
    assert [s for s in seen if s.startswith(("error", "command flaky"))] == [
        "command flaky attempt=1",
        "error flaky retry=True",
        "command flaky attempt=2",
        "error flaky retry=True",
        "command flaky attempt=3",
    ]
    assert seen[-1] == "status completed"


async def test_a_budget_stops_the_step_that_would_exceed_it_and_compensates(
    server: Server, client: Client, uid: str
) -> None:
    from multiagents import Budget, Estimate, report_usage

    undone: list[str] = []

    @worker(f"{uid}.think")
    async def think(ctx: dict[str, Any]) -> dict[str, Any]:
        report_usage(input_tokens=600, output_tokens=200, model="m", cost_usd=0.002)
        return {"thought": True}

    @worker(f"{uid}.undo")
    async def undo(ctx: dict[str, Any]) -> dict[str, Any]:
        undone.append("think")
        return {}

    wf = (
        WorkflowBuilder(f"{uid}.budget", budget=Budget(max_tokens=1500))
        .add_step("think", think, compensation=undo)
        .add_step("think_more", think, estimate=Estimate(input_tokens=800))
        .build()
    )
    async with serving(server, think, undo):
        over = await run(client, wf, {})
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {}, budget=Budget(max_tokens=5000))
        within = await client.wait(tx, timeout=20)
    assert over.state == "compensated"
    assert over.error is not None and over.error["type"] == "BudgetExceeded"
    assert over.error["kind"] == "budget_exceeded"
    assert "1600 tokens over the budget of 1500" in over.error["message"]
    assert undone == ["think"]
    assert within.state == "completed"
    with pytest.raises(InvalidArgumentError, match=r"budget\.max_tokens"):
        await client.execute_workflow(wf.name, {}, budget=Budget(max_tokens=-1))


async def test_a_watcher_sees_the_progress_a_worker_reports(
    server: Server, client: Client, uid: str
) -> None:
    from multiagents import ProgressUpdate, heartbeat

    seen_first = asyncio.Event()

    @worker(f"{uid}.long")
    async def long(ctx: dict[str, Any]) -> dict[str, Any]:
        heartbeat({"done": 1, "of": 2})
        await asyncio.wait_for(seen_first.wait(), 10)
        await asyncio.sleep(1.1)  # the SDK sends progress at most once a second
        heartbeat({"done": 2, "of": 2})
        await asyncio.sleep(1.1)
        return {}

    wf = WorkflowBuilder(f"{uid}.progress").add_step("work", long).build()
    async with serving(server, long):
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        progress: list[tuple[str, dict[str, Any]]] = []
        async for item in client.watch_progress(tx):
            if isinstance(item, ProgressUpdate):
                progress.append((item.path, item.details))
                seen_first.set()
    assert progress == [("work", {"done": 1, "of": 2}), ("work", {"done": 2, "of": 2})]
