"""Workflow model v2 across the languages: a parallel group whose branches
the conformance worker of the language under test serves, a condition and a
switch on the branches' answers, and an approval the test gives (or refuses)
from the Python client; the status paths, the history's node and signal
events and the compensation of branch steps say what ran where."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest

from conformance.harness import LANGS, ServerProcess, StartWorker, Toolchains
from conformance.test_conformance import WAIT_S, compensation_results, compensations, data
from integration.helpers import wait_for
from multiagents import Client, WorkflowBuilder, branch, case, case_equals, step
from multiagents.v1 import events_pb2
from multiagents.workflow import Workflow
from multiagents_server.embedded_redis import die_with_parent_prefix

pytestmark = pytest.mark.slow


def review(uid: str) -> Workflow:
    """Two branches (one of two steps), a condition on their answers, a switch
    on the language that answered, an approval, a last step."""
    worker = f"{uid}.step"
    return (
        WorkflowBuilder(f"{uid}.v2_review")
        .add_parallel(
            "ask",
            [
                branch("left", step("left_1", worker), step("left_2", worker)),
                branch("right", step("right_1", worker, compensation=f"{uid}.compensate")),
            ],
        )
        .add_condition(
            "route",
            [
                case(
                    "context.ask.left.last_lang == context.ask.right.last_lang"
                    " && size(context.ask.left.visited) == 3",
                    step("agree", worker),
                )
            ],
            otherwise=[step("disagree", f"{uid}.invalid")],
        )
        .add_condition(
            "by_lang",
            [case_equals(lang, step(f"served_by_{lang}", worker)) for lang in LANGS],
            switch="context.ask.right.last_lang",
        )
        .add_wait_for_signal("approval", "approval", approval=True, timeout=60)
        .add_step("publish", worker)
        .build()
    )


async def start_and_wait_for_the_approval(client: Client, uid: str) -> str:
    """Start the review workflow; return once its approval waits (in the inbox)."""
    wf = review(uid)
    await client.register_workflow(wf)
    tx = await client.execute_workflow(wf.name, {"visited": ["client"]})

    async def waiting() -> bool:
        return any(w.transaction_id == tx for w in await client.list_waiting_signals())

    await wait_for(waiting, timeout=WAIT_S, interval=0.05)
    return tx


def nodes(history: list[events_pb2.WorkflowEvent]) -> list[tuple[str, str, Any]]:
    """(path, what, details) of every node event, in order."""
    return [(e.node.path, e.node.what, data(e.node.details)) for e in history if e.HasField("node")]


async def test_parallel_branches_a_condition_on_their_answers_and_an_approval(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    await start_worker(lang, uid)
    tx = await start_and_wait_for_the_approval(client, uid)

    waiting = await client.get_status(tx)
    assert waiting.state == "running" and waiting.running_steps == ()
    assert [(w.path, w.signal, w.approval) for w in waiting.waiting_signals] == [
        ("approval", "approval", True)
    ]
    (entry,) = await client.list_waiting_signals(
        approvals_only=True, workflow_name=f"{uid}.v2_review"
    )
    assert (entry.transaction_id, entry.path) == (tx, "approval")
    assert entry.timeout_at is not None and entry.since is not None
    assert entry.timeout_at > entry.since
    await client.approve(tx, by="conformance", comment=f"{lang} looks fine")
    status = await client.wait(tx, timeout=WAIT_S)
    history = list(await client.get_history(tx))

    assert status.state == "completed", status.error
    # Each branch started from the group's context and saw only its own steps.
    assert status.step_results["ask"] == {
        "left": {"visited": ["client", lang, lang], "last_lang": lang,
                 "step_left_1": lang, "step_left_2": lang},
        "right": {"visited": ["client", lang], "last_lang": lang, "step_right_1": lang},
    }  # fmt: skip
    assert status.context["approval"] == {
        "approved": True, "by": "conformance", "comment": f"{lang} looks fine"
    }  # fmt: skip
    # After the group the context's own "visited" is the input's; agree, the
    # switch's step and publish each add one.
    assert status.context["visited"] == ["client", lang, lang, lang]
    assert f"step_served_by_{lang}" in status.context
    others = [other for other in LANGS if other != lang]
    assert [(s.path, s.kind, s.status, s.branch) for s in status.steps] == [
        ("ask", "parallel", "completed", ""),
        ("ask/left/left_1", "step", "completed", ""),
        ("ask/left/left_2", "step", "completed", ""),
        ("ask/right/right_1", "step", "completed", ""),
        ("route", "condition", "completed", "case 1"),
        ("route/agree", "step", "completed", ""),
        ("route/disagree", "step", "skipped", ""),
        ("by_lang", "condition", "completed", f"case {LANGS.index(lang) + 1}"),
        *[
            (f"by_lang/served_by_{other}", "step",
             "completed" if other == lang else "skipped", "")
            for other in LANGS
        ],
        ("approval", "wait", "completed", ""),
        ("publish", "step", "completed", ""),
    ]  # fmt: skip
    assert all(s.attempts == 1 for s in status.steps if s.kind == "step" and s.status != "skipped")
    assert {f"served_by_{other}" for other in others}.isdisjoint(status.step_results)

    # Both branches were dispatched before either answered.
    first = [
        e.command.step if e.HasField("command") else "result"
        for e in history
        if e.HasField("command") or e.HasField("result")
    ][:2]
    assert sorted(first) == ["left_1", "right_1"]
    assert nodes(history) == [
        ("ask", "started", {}),
        ("ask", "joined", {}),
        ("route", "chose", {"case": 0}),
        ("by_lang", "chose", {"case": LANGS.index(lang)}),
        ("approval", "waiting", {"signal": "approval"}),
    ]
    (signal,) = [e.signal for e in history if e.HasField("signal")]
    assert (signal.signal, signal.consumed_by, data(signal.payload)["by"]) == (
        "approval", "approval", "conformance"
    )  # fmt: skip


async def test_a_rejected_approval_compensates_the_branch_steps(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    await start_worker(lang, uid)
    tx = await start_and_wait_for_the_approval(client, uid)
    await client.reject(tx, comment="not today")
    status = await client.wait(tx, timeout=WAIT_S)
    history = list(await client.get_history(tx))

    assert status.state == "compensated"
    assert status.error is not None
    assert (status.error["type"], status.error["kind"]) == ("Rejected", "application")
    assert "not today" in status.error["message"]
    # Only right_1 has a compensation: run by the language's worker, with the
    # context at the failure and right_1's own result on top.
    assert compensations(history) == [("right_1", f"{uid}.compensate")]
    assert compensation_results(history) == [
        {"compensated_by": lang, "compensated_step": "right_1"}
    ]
    compensation = next(e.compensation for e in history if e.HasField("compensation"))
    context: dict[str, Any] = data(compensation.context)
    assert context["step_right_1"] == lang
    assert context["ask"]["right"]["step_right_1"] == lang
    statuses = {s.path: s.status for s in status.steps}
    assert statuses["ask/right/right_1"] == "compensated"
    assert statuses["approval"] == "failed"
    assert statuses["publish"] == "pending"


def client_v2(prefix: str) -> Workflow:
    """The workflow that workers/node/examples/model-v2-client.ts and
    workers/go/cmd/model-v2-client build with their builders."""
    worker = f"{prefix}.step"
    return (
        WorkflowBuilder(f"{prefix}.client_v2")
        .add_parallel(
            "ask",
            [branch("left", step("left_1", worker)), branch("right", step("right_1", worker))],
        )
        .add_map("each", "context.items", step("each_item", worker), max_concurrency=2)
        .add_condition(
            "route",
            [
                case(
                    "context.ask.left.last_lang == context.ask.right.last_lang",
                    step("agree", worker),
                )
            ],
            otherwise=[step("disagree", f"{prefix}.invalid")],
        )
        .add_sleep("pause", 0.2)
        .add_wait_for_signal("approval", "approval", approval=True, timeout=60)
        .add_step("publish", worker)
        .build()
    )


@pytest.mark.parametrize("client_lang", ["node", "go"])
async def test_a_v2_workflow_registered_run_and_approved_from_the_node_and_go_clients(
    client_lang: str,
    toolchains: Toolchains,
    conformance_server: ServerProcess,
    start_worker: StartWorker,
    client: Client,
    uid: str,
) -> None:
    await start_worker(client_lang, uid)
    argv = toolchains.client_argv(client_lang)
    proc = await asyncio.create_subprocess_exec(
        *die_with_parent_prefix("KILL"),
        *argv, "--server", conformance_server.address, "--prefix", uid,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode(errors="replace")[-3000:]
    seen = json.loads(stdout)

    # The client registered the workflow the Python builder gives: registering
    # the Python twin is a no-op (the server compares definitions after its
    # defaults; a different one under the same name and version would be
    # ALREADY_EXISTS). The fixture tests compare the builders field for field.
    assert await client.register_workflow(client_v2(uid)) is False
    assert seen["delayed"] == {"state": "PENDING", "start_at_set": True}
    assert seen["inbox"] == {"path": "approval", "signal": "approval", "approval": True}
    assert seen["waiting"] == ["approval"]
    assert seen["state"] == "COMPLETED"
    assert seen["steps"] == [
        ["ask", "parallel", "COMPLETED", ""],
        ["ask/left/left_1", "step", "COMPLETED", ""],
        ["ask/right/right_1", "step", "COMPLETED", ""],
        ["each", "map", "COMPLETED", ""],
        ["each/0", "item", "COMPLETED", ""],
        ["each/1", "item", "COMPLETED", ""],
        ["each/2", "item", "COMPLETED", ""],
        ["route", "condition", "COMPLETED", "case 1"],
        ["route/agree", "step", "COMPLETED", ""],
        ["route/disagree", "step", "SKIPPED", ""],
        ["pause", "sleep", "COMPLETED", ""],
        ["approval", "wait", "COMPLETED", ""],
        ["publish", "step", "COMPLETED", ""],
    ]
    context = seen["context"]
    assert context["approval"] == {"approved": True, "by": f"{client_lang}-client"}
    assert [item["visited"] for item in context["each"]] == [
        [f"{client_lang}-client", client_lang]
    ] * 3
    assert context["visited"] == [
        f"{client_lang}-client",
        client_lang,
        client_lang,
    ]  # agree, publish
    # A failed execution resumed from the client runs its step again (and
    # fails again: the step is `invalid`); a completed one does not resume.
    assert seen["resume"] == {
        "first": "FAILED", "after": "FAILED", "attempts": 2,
        "completed": grpc.StatusCode.FAILED_PRECONDITION.value[0],
    }  # fmt: skip
    # The Python client reads the same execution.
    status = await client.get_status(seen["transaction_id"])
    assert status.state == "completed" and status.context == context
    # The client's schedule round trip: created with its options, it started
    # a run of the resume workflow with its input; listed, paused (no next
    # fire time), unpaused (the note stays), deleted (then NOT_FOUND).
    schedule = seen["schedule"]
    assert schedule["created"] == {
        "overlap_policy": "buffer_one", "time_zone": "Europe/Paris",
        "catchup_window_ms": 90_000, "input": {"from": f"{client_lang}-client"},
        "next_fire_set": True,
    }  # fmt: skip
    run = await client.get_status(schedule["run"])
    assert run.workflow_name == f"{uid}.client_v2_resume"
    assert run.correlation_id.startswith(f"{uid}.client_v2.every_second@")
    assert run.context["from"] == f"{client_lang}-client"
    assert schedule["listed"] == [f"{uid}.client_v2.every_second"]
    note = f"from {client_lang}-client"
    assert schedule["paused"] == {"paused": True, "note": note, "next_fire_set": False}
    assert schedule["unpaused"] == {"paused": False, "note": note, "next_fire_set": True}
    assert schedule["after_delete"] == grpc.StatusCode.NOT_FOUND.value[0]
