"""Cross-language conformance: the same scenarios run against the conformance
worker of every language (Python, Go, Node), each worker a real process
connected to a real server subprocess. Every scenario checks the final state
and what the history and the step results say happened, not only that the
workflow finished. The mixed scenarios run one workflow across all three."""

from __future__ import annotations

import json
import signal
from collections.abc import Sequence
from typing import Any

import pytest

from conformance.harness import (
    ServerProcess,
    StartWorker,
    command_traces,
    running_on,
    session_pid,
    worker_sessions,
)
from integration.helpers import SessionProxy, TcpProxy, wait_for
from multiagents import Client, RetryPolicy, WorkflowBuilder, WorkflowFailedError, WorkflowStatus
from multiagents.monitoring import EventMonitor, WorkerMonitor
from multiagents.v1 import common_pb2, events_pb2
from multiagents.workflow import Workflow

pytestmark = pytest.mark.slow

WAIT_S = 30.0
FAST_RETRY = RetryPolicy(max_attempts=3, initial_interval=0.1)
NO_RETRY = RetryPolicy(max_attempts=1)

History = Sequence[events_pb2.WorkflowEvent]


def data(payload: common_pb2.Payload) -> Any:
    return json.loads(payload.data) if payload.data else {}


def errors(history: History) -> list[tuple[str, str, bool]]:
    """(step, failure type, will_retry) of every ErrorEvent, in order."""
    return [
        (e.error.step, e.error.error.type, e.error.will_retry)
        for e in history
        if e.HasField("error")
    ]


def kinds(history: History) -> list[tuple[str, int, int]]:
    """(step, failure kind, retry_count) of every ErrorEvent, in order."""
    return [
        (e.error.step, e.error.error.kind, e.error.retry_count)
        for e in history
        if e.HasField("error")
    ]


def chain(failure: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(kind, message) of a failure dict and each of its causes, outermost first."""
    found = []
    while failure is not None:
        found.append((failure["kind"], failure["message"]))
        failure = failure["cause"]
    return found


def compensations(history: History) -> list[tuple[str, str]]:
    """(step, worker) of every CompensationEvent (compensation command), in order."""
    return [
        (e.compensation.step, e.compensation.worker_name)
        for e in history
        if e.HasField("compensation")
    ]


def compensation_results(history: History) -> list[dict[str, Any]]:
    """What each compensation worker returned, in order."""
    return [
        data(e.result.result) for e in history if e.HasField("result") and e.result.compensation
    ]


async def run(
    client: Client, workflow: Workflow, input: dict[str, Any], timeout: float = WAIT_S
) -> tuple[WorkflowStatus, History]:
    """Register, execute, wait until terminal; the final status and the history."""
    await client.register_workflow(workflow)
    tx = await client.execute_workflow(workflow.name, input)
    status = await client.wait(tx, timeout=timeout)
    return status, await client.get_history(tx)


async def start(client: Client, workflow: Workflow, input: dict[str, Any]) -> str:
    await client.register_workflow(workflow)
    return await client.execute_workflow(workflow.name, input)


# -- one language at a time ---------------------------------------------------------


async def test_context_flows_through_the_steps_of_each_language(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    await start_worker(lang, uid)
    wf = (
        WorkflowBuilder(f"{uid}.success")
        .add_step("first", f"{uid}.step")
        .add_step("second", f"{uid}.step")
        .build()
    )
    status, history = await run(client, wf, {"visited": ["client"]})

    assert status.state == "completed"
    assert status.step_results == {
        "first": {"visited": ["client", lang], "last_lang": lang, "step_first": lang},
        "second": {"visited": ["client", lang, lang], "last_lang": lang, "step_second": lang},
    }
    assert status.context["visited"] == ["client", lang, lang]
    assert status.context["step_first"] == status.context["step_second"] == lang
    assert [(s.name, s.status, s.attempts) for s in status.steps] == [
        ("first", "completed", 1),
        ("second", "completed", 1),
    ]
    commands = [e.command for e in history if e.HasField("command")]
    assert [c.step for c in commands] == ["first", "second"]
    assert data(commands[1].context)["visited"] == ["client", lang]  # the first step's result
    assert errors(history) == []


async def test_retryable_error_is_retried_until_success(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    await start_worker(lang, uid)
    wf = WorkflowBuilder(f"{uid}.retry").add_step("flaky", f"{uid}.flaky", retry=FAST_RETRY)
    status, history = await run(client, wf.build(), {})

    assert status.state == "completed"
    assert status.step_results["flaky"] == {"flaky_attempts": 2, "last_lang": lang}
    assert status.steps[0].attempts == 2
    failures = [e.error for e in history if e.HasField("error")]
    assert len(failures) == 1
    assert failures[0].will_retry and failures[0].retry_count == 0
    assert failures[0].error.message == "flaky attempt 1"
    assert failures[0].error.kind == common_pb2.FAILURE_KIND_APPLICATION
    assert not failures[0].error.non_retryable
    # One convention: the worker saw attempts 1 then 2 (it succeeds on the
    # 2nd: flaky_attempts above); the history says retry_count = attempt - 1.
    assert [e.command.retry_count for e in history if e.HasField("command")] == [0, 1]


async def test_compensation_attempts_count_from_one_apart_from_the_steps(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    await start_worker(lang, uid)
    # The step and its compensation are both `flaky` (fail before attempt 2):
    # the compensation succeeds on its own 2nd attempt, not on the step's 3rd.
    wf = (
        WorkflowBuilder(f"{uid}.comp_attempts")
        .add_step("reserve", f"{uid}.flaky", compensation=f"{uid}.flaky", retry=FAST_RETRY)
        .add_step("ship", f"{uid}.invalid")
        .build()
    )
    status, history = await run(client, wf, {})

    assert status.state == "compensated"
    assert status.steps[0].attempts == 2
    assert compensation_results(history) == [{"flaky_attempts": 2, "last_lang": lang}]
    assert [e.compensation.retry_count for e in history if e.HasField("compensation")] == [0, 1]
    assert [
        (e.error.step, e.error.compensation, e.error.retry_count, e.error.error.message)
        for e in history
        if e.HasField("error")
    ] == [
        ("reserve", False, 0, "flaky attempt 1"),
        ("ship", False, 0, "invalid input"),
        ("reserve", True, 0, "flaky attempt 1"),
    ]


async def test_validation_error_fails_without_retry(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    await start_worker(lang, uid)
    wf = WorkflowBuilder(f"{uid}.invalid").add_step("check", f"{uid}.invalid", retry=FAST_RETRY)
    status, history = await run(client, wf.build(), {})

    assert status.state == "failed"
    assert status.steps[0].attempts == 1
    assert status.steps[0].status == "failed"
    assert status.error is not None
    assert {k: status.error[k] for k in ("message", "type", "kind", "non_retryable")} == {
        "message": "invalid input", "type": "ValueError", "kind": "application",
        "non_retryable": True,
    }  # fmt: skip
    assert errors(history) == [("check", "ValueError", False)]


async def test_failed_step_compensates_completed_steps_in_reverse(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    await start_worker(lang, uid)
    wf = (
        WorkflowBuilder(f"{uid}.saga")
        .add_step("reserve", f"{uid}.step", compensation=f"{uid}.compensate")
        .add_step("charge", f"{uid}.step", compensation=f"{uid}.compensate")
        .add_step("ship", f"{uid}.fail", retry=RetryPolicy(max_attempts=2, initial_interval=0.05))
        .build()
    )
    status, history = await run(client, wf, {})

    assert status.state == "compensated"
    assert [(s.name, s.status) for s in status.steps] == [
        ("reserve", "compensated"),
        ("charge", "compensated"),
        ("ship", "failed"),
    ]
    assert status.error is not None and status.error["message"] == f"boom from {lang}"
    # A worker's error is an APPLICATION failure; the error it wraps (Python
    # `raise ... from`, Node `cause`, Go `Unwrap`) is its cause.
    assert chain(status.error) == [
        ("application", f"boom from {lang}"),
        ("application", f"gateway refused {lang}"),
    ]
    assert status.error["cause"]["type"]
    assert [(step, retry) for step, _, retry in errors(history)] == [
        ("ship", True),
        ("ship", False),
    ]
    assert all(
        (e.error.error.kind, e.error.error.cause.message)
        == (common_pb2.FAILURE_KIND_APPLICATION, f"gateway refused {lang}")
        for e in history
        if e.HasField("error")
    )
    assert compensations(history) == [
        ("charge", f"{uid}.compensate"),
        ("reserve", f"{uid}.compensate"),
    ]
    assert compensation_results(history) == [
        {"compensated_by": lang, "compensated_step": "charge"},
        {"compensated_by": lang, "compensated_step": "reserve"},
    ]
    # A compensation sees the context as it was at the failure, with the result
    # of the step it undoes.
    first = next(e.compensation for e in history if e.HasField("compensation"))
    assert data(first.context)["step_charge"] == lang


async def test_step_timeout_is_retried_then_fails(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    await start_worker(lang, uid)
    wf = WorkflowBuilder(f"{uid}.timeout").add_step(
        "slow",
        f"{uid}.slow",
        timeout=0.5,
        retry=RetryPolicy(max_attempts=2, initial_interval=0.1),
    )
    status, history = await run(client, wf.build(), {"sleep_ms": 3000})

    assert status.state == "failed"
    assert status.steps[0].attempts == 2
    assert status.error is not None and status.error["type"] == "StepTimeout", status.error
    assert status.error["kind"] == "timeout" and status.error["cause"] is None
    assert errors(history) == [("slow", "StepTimeout", True), ("slow", "StepTimeout", False)]
    assert kinds(history) == [
        ("slow", common_pb2.FAILURE_KIND_TIMEOUT, 0),
        ("slow", common_pb2.FAILURE_KIND_TIMEOUT, 1),
    ]


async def test_failed_sub_workflow_fails_the_step_with_the_childs_failure_as_cause(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    await start_worker(lang, uid)
    child = WorkflowBuilder(f"{uid}.child").add_step("charge", f"{uid}.fail", retry=NO_RETRY)
    await client.register_workflow(child.build())
    parent = (
        WorkflowBuilder(f"{uid}.parent")
        .add_step("reserve", f"{uid}.step", compensation=f"{uid}.compensate")
        .add_workflow_step("pay", f"{uid}.child", retry=NO_RETRY)
        .build()
    )
    await client.register_workflow(parent)
    tx = await client.execute_workflow(parent.name, {})

    with pytest.raises(WorkflowFailedError) as raised:
        await client.result(tx, timeout=WAIT_S)

    error = raised.value
    assert (error.transaction_id, error.state) == (tx, "compensated")
    child_tx = error.status.steps[1].child_transaction_id
    assert chain(error.failure) == [
        (
            "child_workflow_failed",
            f"sub-workflow {child_tx} ended failed: boom from {lang}",
        ),
        ("application", f"boom from {lang}"),
        ("application", f"gateway refused {lang}"),
    ]
    assert error.failure is not None and error.failure["type"] == "ChildWorkflowFailed"
    history = await client.get_history(tx)
    assert kinds(history) == [("pay", common_pb2.FAILURE_KIND_CHILD_WORKFLOW_FAILED, 0)]
    assert compensations(history) == [("reserve", f"{uid}.compensate")]


async def test_cancel_aborts_the_running_step_and_compensates_completed_ones(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    # One slot: the follow-up workflow below can only run once the cancelled
    # step has really stopped (it would otherwise hold the slot for 20 s).
    worker = await start_worker(lang, uid, max_concurrency=1)
    wf = (
        WorkflowBuilder(f"{uid}.cancel")
        .add_step("book", f"{uid}.step", compensation=f"{uid}.compensate")
        .add_step("wait", f"{uid}.slow", compensation=f"{uid}.compensate", timeout=60)
        .build()
    )
    tx = await start(client, wf, {"sleep_ms": 20_000})

    async def slow_step_running() -> bool:
        status = await client.get_status(tx)
        return status.current_step == "wait" and await running_on(client, [worker]) is not None

    await wait_for(slow_step_running, timeout=15, interval=0.05)
    await client.cancel_workflow(tx, reason="conformance: operator said so")
    with pytest.raises(WorkflowFailedError) as raised:
        await client.result(tx, timeout=10)
    status = raised.value.status
    history = await client.get_history(tx)

    assert raised.value.cancel_reason == "conformance: operator said so"
    assert raised.value.failure is None
    assert status.state == "cancelled"
    # The request is in the history, with its reason, while the step ran;
    # every status event from then on carries it.
    states = [(e.status.state, e.status.current_step, e.status.cancel_reason)
              for e in history if e.HasField("status")]  # fmt: skip
    reason = "conformance: operator said so"
    request = states.index((common_pb2.WORKFLOW_STATE_RUNNING, "wait", reason))
    assert all(r == "" for _, _, r in states[:request])
    assert all(r == reason for _, _, r in states[request:])
    assert states[-1] == (common_pb2.WORKFLOW_STATE_CANCELLED, "", reason)
    assert [(s.name, s.status) for s in status.steps] == [
        ("book", "compensated"),
        ("wait", "cancelled"),
    ]
    assert "wait" not in status.step_results
    assert compensations(history) == [("book", f"{uid}.compensate")]
    assert compensation_results(history) == [{"compensated_by": lang, "compensated_step": "book"}]
    after = WorkflowBuilder(f"{uid}.after").add_step("next", f"{uid}.step").build()
    follow_up, _ = await run(client, after, {}, timeout=10)
    assert follow_up.state == "completed"

    # The worker did receive the step and answered it once aborted (the server
    # ignores that answer; its monitoring records it), with the reason it was
    # given in Cancel.reason.
    async def aborted_step_answered() -> bool:
        return any(t.step == "wait" for t in await command_traces(client, tx))

    await wait_for(aborted_step_answered, timeout=5, interval=0.05)
    [trace] = [t for t in await command_traces(client, tx) if t.step == "wait"]
    assert not trace.success
    assert (trace.failure.kind, trace.failure.type, trace.failure.message) == (
        common_pb2.FAILURE_KIND_CANCELLED, "Cancelled", reason
    )  # fmt: skip
    assert trace.processing_time.ToMilliseconds() < 10_000  # far from the 20 s it asked for


async def test_heartbeats_keep_a_long_step_alive(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    await start_worker(lang, uid)
    # Beats every 100 ms; the timeout leaves room for a loaded machine: with
    # 0.5 s the step failed once (HeartbeatTimeout) in a full run while other
    # suites ran on the same 2 cores, and never in isolation, so most likely a
    # 400 ms stall of a process. The step lasts 2.5 timeouts.
    wf = WorkflowBuilder(f"{uid}.heartbeat").add_step(
        "long", f"{uid}.slow", timeout=20, heartbeat_timeout=1.0, retry=NO_RETRY
    )
    status, history = await run(client, wf.build(), {"sleep_ms": 2500})

    assert status.state == "completed"
    assert status.step_results["long"] == {"slept_ms": 2500, "last_lang": lang}
    assert status.steps[0].attempts == 1
    assert errors(history) == []


async def test_worker_killed_mid_step_is_redelivered_to_another(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    workers = [await start_worker(lang, uid, max_concurrency=1) for _ in range(2)]
    wf = WorkflowBuilder(f"{uid}.killed").add_step(
        "slow", f"{uid}.slow", timeout=30, retry=FAST_RETRY
    )
    tx = await start(client, wf.build(), {"sleep_ms": 2500})

    found = []

    async def victim_found() -> bool:
        victim = await running_on(client, workers)
        found.append(victim)
        return victim is not None

    await wait_for(victim_found, timeout=10, interval=0.05)
    victim = found[-1]
    assert victim is not None
    victim.kill()
    await victim.proc.wait()
    status = await client.wait(tx, timeout=WAIT_S)
    history = await client.get_history(tx)

    assert status.state == "completed"
    assert status.step_results["slow"] == {"slept_ms": 2500, "last_lang": lang}
    assert status.steps[0].attempts == 2
    assert errors(history) == [("slow", "WorkerLost", True)]
    assert kinds(history) == [("slow", common_pb2.FAILURE_KIND_WORKER_LOST, 0)]
    survivor = next(w for w in workers if w is not victim)
    assert survivor.proc.returncode is None


async def test_worker_reconnects_after_the_server_restarts(
    lang: str,
    start_worker: StartWorker,
    client: Client,
    uid: str,
    conformance_server: ServerProcess,
) -> None:
    worker = await start_worker(lang, uid)
    slow = WorkflowBuilder(f"{uid}.restart").add_step(
        "slow", f"{uid}.slow", timeout=30, retry=FAST_RETRY
    )
    tx = await start(client, slow.build(), {"sleep_ms": 1500})
    await wait_for(lambda: running_on(client, [worker]), timeout=10, interval=0.05)
    old_replicas = {s.replica_id for s in await worker_sessions(client)}

    conformance_server.kill()
    await conformance_server.start()

    # The step in flight during the crash completes: either its answer is
    # resent after the reconnect, or it is redelivered as WorkerLost.
    status = await client.wait(tx, timeout=WAIT_S)
    history = await client.get_history(tx)
    assert status.state == "completed"
    assert status.step_results["slow"] == {"slept_ms": 1500, "last_lang": lang}
    assert {kind for _, kind, _ in errors(history)} <= {"WorkerLost"}

    # The same process holds a session with the new replica, and serves new work.
    async def reconnected() -> bool:
        return any(
            session_pid(s) == worker.pid and s.replica_id not in old_replicas
            for s in await worker_sessions(client)
        )

    await wait_for(reconnected, timeout=20, interval=0.1)
    fresh = WorkflowBuilder(f"{uid}.after_restart").add_step("again", f"{uid}.step").build()
    after, _ = await run(client, fresh, {})
    assert after.state == "completed"
    assert after.step_results["again"]["last_lang"] == lang
    assert worker.proc.returncode is None


async def test_a_broken_connection_resumes_the_running_step_with_the_resume_token(
    lang: str,
    start_worker: StartWorker,
    client: Client,
    uid: str,
    conformance_server: ServerProcess,
) -> None:
    """The worker's connection is reset mid-step (a network failure, both
    processes live on): the worker reconnects with its resume token, keeps
    the command, and its answer, sent on the new session, is taken: one
    attempt, no WorkerLost."""
    async with TcpProxy(conformance_server.address) as proxy:
        worker = await start_worker(lang, uid, server=proxy.address)
        slow = WorkflowBuilder(f"{uid}.resume").add_step(
            "slow", f"{uid}.slow", timeout=30, retry=FAST_RETRY
        )
        tx = await start(client, slow.build(), {"sleep_ms": 1500})
        await wait_for(lambda: running_on(client, [worker]), timeout=10, interval=0.05)
        sessions = await worker_sessions(client)
        first = {s.session_id for s in sessions if session_pid(s) == worker.pid}

        proxy.cut()
        status = await client.wait(tx, timeout=WAIT_S)
        history = await client.get_history(tx)
        traces = await command_traces(client, tx)

    assert status.state == "completed", errors(history)
    assert status.step_results["slow"] == {"slept_ms": 1500, "last_lang": lang}
    assert status.steps[0].attempts == 1
    assert errors(history) == []
    # Answered on the new session, which the command was re-attached to.
    assert [t.session_id not in first and t.success for t in traces] == [True]
    assert worker.proc.returncode is None


async def test_an_answer_lost_as_the_stream_broke_is_sent_again_on_the_resumed_session(
    lang: str,
    start_worker: StartWorker,
    client: Client,
    uid: str,
    conformance_server: ServerProcess,
) -> None:
    """The worker wrote its answer, but the stream broke before the server
    read it (a proxy drops it, then breaks the stream). The worker resumes;
    the server lists the command in Resumed; the worker sends its answer
    again: one attempt, no error, long before the step's timeout (without
    it, the step would wait for that timeout)."""
    async with SessionProxy(conformance_server.address) as proxy:
        await start_worker(lang, uid, server=proxy.address)
        proxy.lose_answer(f"{uid}.step")
        wf = WorkflowBuilder(f"{uid}.lost-answer").add_step(
            "s", f"{uid}.step", timeout=300, retry=FAST_RETRY
        )
        status, history = await run(client, wf.build(), {})
    assert len(proxy.lost) == 1
    assert status.state == "completed", errors(history)
    assert status.step_results["s"]["last_lang"] == lang
    assert status.steps[0].attempts == 1
    assert errors(history) == []


async def test_a_command_lost_as_the_stream_broke_is_failed_as_worker_lost_by_the_worker(
    lang: str,
    start_worker: StartWorker,
    client: Client,
    uid: str,
    conformance_server: ServerProcess,
) -> None:
    """The server wrote a command, but the stream broke before the worker
    read it (a proxy drops it, then breaks the stream). The worker resumes;
    the server lists the command in Resumed; the worker, which never had it,
    answers WORKER_LOST at once, and the retry runs (without it, the step
    would wait for its timeout)."""
    async with SessionProxy(conformance_server.address) as proxy:
        await start_worker(lang, uid, server=proxy.address)
        proxy.lose_command(f"{uid}.step")
        wf = WorkflowBuilder(f"{uid}.lost-command").add_step(
            "s", f"{uid}.step", timeout=300, retry=FAST_RETRY
        )
        status, history = await run(client, wf.build(), {})
    assert len(proxy.lost) == 1
    assert status.state == "completed", errors(history)
    assert status.steps[0].attempts == 2
    assert kinds(history) == [("s", common_pb2.FAILURE_KIND_WORKER_LOST, 0)]
    (lost,) = [e.error.error for e in history if e.HasField("error")]
    # The worker's answer, not the server's failing of a session not resumed.
    assert (lost.type, lost.message) == (
        "WorkerLost",
        "the worker does not have this command (never received, or its answer is forgotten)",
    )


async def test_sigterm_drains_the_running_step_then_exits_zero(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    worker = await start_worker(lang, uid, max_concurrency=1)
    # No retry: had the drain dropped the step, the workflow would fail.
    wf = WorkflowBuilder(f"{uid}.drain").add_step("slow", f"{uid}.slow", timeout=30, retry=NO_RETRY)
    tx = await start(client, wf.build(), {"sleep_ms": 1500})
    await wait_for(lambda: running_on(client, [worker]), timeout=10, interval=0.05)

    worker.signal(signal.SIGTERM)
    assert await worker.wait_exit(timeout=20) == 0, worker.tail()
    status = await client.wait(tx, timeout=10)
    history = await client.get_history(tx)

    assert status.state == "completed"
    assert status.step_results["slow"] == {"slept_ms": 1500, "last_lang": lang}
    assert status.steps[0].attempts == 1
    assert errors(history) == []


# -- one workflow across the three languages ------------------------------------------


def mixed_workflow(uid: str, *, failing: bool) -> Workflow:
    """reserve in Python, charge in Go, ship in Node; each undone in another language."""
    wf = (
        WorkflowBuilder(f"{uid}.mixed_{'failing' if failing else 'ok'}")
        .add_step("reserve", f"{uid}-py.step", compensation=f"{uid}-node.compensate")
        .add_step("charge", f"{uid}-go.step", compensation=f"{uid}-py.compensate")
        .add_step("ship", f"{uid}-node.step", compensation=f"{uid}-go.compensate")
    )
    if failing:
        wf.add_step(
            "notify", f"{uid}-go.fail", retry=RetryPolicy(max_attempts=2, initial_interval=0.05)
        )
    return wf.build()


async def start_all_languages(start_worker: StartWorker, uid: str) -> None:
    for lang, suffix in (("python", "py"), ("go", "go"), ("node", "node")):
        await start_worker(lang, f"{uid}-{suffix}")


async def test_mixed_workflow_passes_context_across_languages(
    start_worker: StartWorker, client: Client, uid: str
) -> None:
    await start_all_languages(start_worker, uid)
    status, history = await run(client, mixed_workflow(uid, failing=False), {"visited": []})

    assert status.state == "completed"
    assert status.context["visited"] == ["python", "go", "node"]
    assert status.context["last_lang"] == "node"
    assert {name: result["last_lang"] for name, result in status.step_results.items()} == {
        "reserve": "python",
        "charge": "go",
        "ship": "node",
    }
    assert status.step_results["charge"]["visited"] == ["python", "go"]
    assert [(e.result.step, e.result.worker_name) for e in history if e.HasField("result")] == [
        ("reserve", f"{uid}-py.step"),
        ("charge", f"{uid}-go.step"),
        ("ship", f"{uid}-node.step"),
    ]
    assert errors(history) == [] and compensations(history) == []

    # The seed's monitors see workers of every language.
    events = EventMonitor(address=client.address)
    lifecycle = await events.lifecycle(status.transaction_id)
    await events.close()
    assert [(t.step, t.worker_name, t.success) for t in lifecycle] == [
        ("reserve", f"{uid}-py.step", True),
        ("charge", f"{uid}-go.step", True),
        ("ship", f"{uid}-node.step", True),
    ]
    assert all(t.dispatched_at <= t.picked_up_at <= t.completed_at for t in lifecycle)  # type: ignore[operator]
    # Counters are written by each replica every second: wait for them.
    workers = WorkerMonitor(address=client.address)
    names = (f"{uid}-go.step", f"{uid}-node.step")
    stats = {}

    async def counted() -> bool:
        nonlocal stats
        stats = await workers.stats(*names)
        return all(stats[n].succeeded == 1 for n in names)

    await wait_for(counted, timeout=10, interval=0.2)
    await workers.close()
    for name, lang in ((f"{uid}-go.step", "go"), (f"{uid}-node.step", "node")):
        assert (stats[name].succeeded, stats[name].success_rate) == (1, 1.0)
        assert stats[name].languages == (lang,)
        assert stats[name].health == "healthy"


async def test_mixed_workflow_compensates_across_languages_in_reverse(
    start_worker: StartWorker, client: Client, uid: str
) -> None:
    await start_all_languages(start_worker, uid)
    status, history = await run(client, mixed_workflow(uid, failing=True), {"visited": []})

    assert status.state == "compensated"
    assert status.error is not None and status.error["message"] == "boom from go"
    assert [(s.name, s.status) for s in status.steps] == [
        ("reserve", "compensated"),
        ("charge", "compensated"),
        ("ship", "compensated"),
        ("notify", "failed"),
    ]
    assert [step for step, _, _ in errors(history)] == ["notify", "notify"]
    assert compensations(history) == [
        ("ship", f"{uid}-go.compensate"),
        ("charge", f"{uid}-py.compensate"),
        ("reserve", f"{uid}-node.compensate"),
    ]
    assert compensation_results(history) == [
        {"compensated_by": "go", "compensated_step": "ship"},
        {"compensated_by": "python", "compensated_step": "charge"},
        {"compensated_by": "node", "compensated_step": "reserve"},
    ]


async def test_step_output_and_usage_are_published_with_a_new_epoch_on_retry(
    lang: str, start_worker: StartWorker, client: Client, uid: str
) -> None:
    await start_worker(lang, uid)
    wf = WorkflowBuilder(f"{uid}.stream").add_step("talk", f"{uid}.stream", retry=FAST_RETRY)
    status, _ = await run(client, wf.build(), {"chunks": 30, "fail_first": True})

    assert status.state == "completed", status.error
    assert status.step_results["talk"] == {"streamed": 30, "last_lang": lang}
    seen = [o async for o in client.stream_output(status.transaction_id, step="talk")]
    tokens = "".join(f"{lang}:{i};" for i in range(30))
    by_attempt: dict[int, str] = {}
    for o in seen:
        if o.kind == "token":
            by_attempt[o.attempt] = by_attempt.get(o.attempt, "") + o.text
    assert by_attempt == {1: tokens, 2: tokens}
    kinds = [(o.kind, o.attempt) for o in seen if o.kind != "token"]
    assert kinds == [("log", 1), ("rewind", 2), ("log", 2)]
    assert [o.sequence for o in seen] == list(range(1, len(seen) + 1))
    # Both attempts' usage: the failed one still cost.
    usage = status.usage
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.model, usage.cost_nano_usd) == (
        14, 60, f"{lang}-model", 60_000,
    )  # fmt: skip
