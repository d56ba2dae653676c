"""Prometheus metrics: a real server with `metrics_port`, real workers, and
`/metrics` scraped over HTTP before and after a few workflows (success,
retry, compensation), checking each series moved by exactly what they did.

Metrics are per process, and other tests' servers in this process count
too once enabled, so every series checked is labelled by this test's own
workflow or worker names, or compared before and after."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from integration.helpers import make_config, run, serving, wait_for
from multiagents import (
    Budget,
    Client,
    Estimate,
    LimitKey,
    RetryPolicy,
    WorkerExecutionError,
    WorkerRuntime,
    WorkflowBuilder,
    report_usage,
    worker,
)
from multiagents_server import observability
from multiagents_server.app import Server
from multiagents_server.config import ConfigError
from multiagents_server.embedded_redis import EmbeddedRedis, free_port

FAST = RetryPolicy(max_attempts=3, initial_interval=0.05)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def metered(redis_server: EmbeddedRedis) -> AsyncIterator[Server]:
    async with Server(make_config(redis_server.url, metrics_port=free_port())) as server:
        yield server


async def test_counters_and_histograms_move_by_what_the_workflows_did(
    metered: Server, uid: str
) -> None:
    port = metered.config.metrics_port
    calls = 0

    @worker(f"{uid}.ok")
    async def ok(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    @worker(f"{uid}.flaky")
    async def flaky(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise WorkerExecutionError("first attempt fails")
        return {"flaky": calls}

    @worker(f"{uid}.boom")
    async def boom(ctx: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("never works")

    @worker(f"{uid}.undo")
    async def undo(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"undone": True}

    plain = WorkflowBuilder(f"{uid}.plain").add_step("a", ok).add_step("b", ok).build()
    retried = WorkflowBuilder(f"{uid}.retried").add_step("f", flaky, retry=FAST).build()
    compensated = (
        WorkflowBuilder(f"{uid}.compensated")
        .add_step("a", ok, compensation=undo)
        .add_step("x", boom, retry=FAST)
        .build()
    )
    before = await asyncio.to_thread(scrape, port)
    async with Client(metered.address) as client, serving(metered, ok, flaky, boom, undo):
        during = await asyncio.to_thread(scrape, port)
        assert [(await run(client, wf, {})).state for wf in (plain, retried, compensated)] == [
            "completed",
            "completed",
            "compensated",
        ]
        after = await asyncio.to_thread(scrape, port)

    started = "multiagents_workflows_started_total"
    finished = "multiagents_workflows_finished_total"
    for wf in (plain, retried, compensated):
        assert value(before, started, workflow=wf.name) == 0
        assert value(after, started, workflow=wf.name) == 1
    assert value(after, finished, workflow=plain.name, state="completed") == 1
    assert value(after, finished, workflow=retried.name, state="completed") == 1
    assert value(after, finished, workflow=compensated.name, state="compensated") == 1
    assert value(after, finished, workflow=compensated.name, state="failed") == 0
    duration = "multiagents_workflow_duration_seconds_count"
    assert value(after, duration, workflow=plain.name, state="completed") == 1

    attempts = "multiagents_step_attempts_total"
    assert value(after, attempts, worker=ok.name, outcome="completed") == 3  # a, b, a
    assert value(after, attempts, worker=flaky.name, outcome="failed") == 1
    assert value(after, attempts, worker=flaky.name, outcome="completed") == 1
    assert value(after, attempts, worker=boom.name, outcome="failed") == 1  # ValueError: final
    assert value(after, attempts, worker=undo.name, outcome="completed") == 1
    retries = "multiagents_step_retries_total"
    assert value(after, retries, worker=flaky.name) == 1
    assert value(after, retries, worker=boom.name) == 0

    step = "multiagents_step_duration_seconds"
    assert value(after, f"{step}_count", worker=ok.name, outcome="completed") == 3
    assert value(after, f"{step}_count", worker=flaky.name, outcome="failed") == 1
    assert value(after, f"{step}_bucket", worker=ok.name, outcome="completed", le="+Inf") == 3
    wait = "multiagents_step_queue_wait_seconds_count"
    assert value(after, wait, worker=ok.name) == 3
    assert value(after, wait, worker=flaky.name) == 2
    assert value(after, "multiagents_steps_in_flight", worker=ok.name) == 0

    sessions = "multiagents_worker_sessions"
    assert (
        value(during, sessions, language="python") == value(before, sessions, language="python") + 1
    )

    # One commit per transition: plain 3 (start, a, b), retried 4 (start,
    # failure, retry timer, answer), compensated 4 (start, a, x's failure
    # dispatching the compensation, its answer).
    commits = "multiagents_redis_operation_seconds_count"
    assert (
        value(after, commits, operation="commit") - value(before, commits, operation="commit") == 11
    )


async def test_a_busy_metrics_port_is_a_config_error(redis_server: EmbeddedRedis) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = make_config(redis_server.url, metrics_port=port)
        with pytest.raises(ConfigError, match=f"metrics_port: cannot listen on 127.0.0.1:{port}"):
            await Server(busy).start()


@pytest.fixture
def supervised(redis_server: EmbeddedRedis, tmp_path: Path) -> Iterator[tuple[str, int]]:
    """`serve --processes 2 --metrics-port M` in a child process; killed by pid."""
    port, metrics_port = free_port(), free_port()
    argv = [
        sys.executable, "-m", "multiagents.cli", "serve", "--processes", "2",
        "--port", str(port), "--metrics-port", str(metrics_port),
        "--redis-url", redis_server.url, "--key-prefix", make_config("").key_prefix,
        "--data-dir", str(tmp_path),
    ]  # fmt: skip
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"127.0.0.1:{port}", metrics_port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_a_supervisor_serves_the_sum_of_its_replicas(
    supervised: tuple[str, int], uid: str
) -> None:
    address, port = supervised

    @worker(f"{uid}.ok")
    async def ok(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("a", ok).build()

    async def registered() -> bool:
        try:
            async with Client(address) as client:
                await client.register_workflow(wf)
            return True
        except Exception:
            return False

    await wait_for(registered, timeout=30, interval=0.2)
    runs = 10
    runtime = WorkerRuntime([ok], servers=address, drain_timeout=5)
    await runtime.start(timeout=20)
    try:
        # A client per workflow: a connection each, spread over the replicas
        # by SO_REUSEPORT; each start is counted by the replica that took it.
        async def one() -> str:
            async with Client(address) as client:
                tx = await client.execute_workflow(wf.name, {})
                return (await client.wait(tx, timeout=20)).state

        assert await asyncio.gather(*(one() for _ in range(runs))) == ["completed"] * runs
        during = await asyncio.to_thread(scrape, port)
    finally:
        await runtime.stop()
    assert value(during, "multiagents_workflows_started_total", workflow=wf.name) == runs
    assert (
        value(during, "multiagents_workflows_finished_total", workflow=wf.name, state="completed")
        == runs
    )
    assert (
        value(during, "multiagents_step_attempts_total", worker=ok.name, outcome="completed")
        == runs
    )
    assert value(during, "multiagents_worker_sessions", language="python") == 1

    async def session_gone() -> bool:
        after = await asyncio.to_thread(scrape, port)
        return value(after, "multiagents_worker_sessions", language="python") == 0

    await wait_for(session_gone, timeout=10, interval=0.1)


async def test_usage_and_failure_kinds_are_counted_by_workflow(
    metered: Server, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens and cost as the workers reported them with the answers the
    server accepted: a completed and a failed attempt both count; a
    sub-workflow's usage counts under the child's name only (its parent's
    step sums it, the metric does not again). A budget that stops a step
    is a failure of kind budget_exceeded. Models past the cap are "other"."""
    port = metered.config.metrics_port
    model, spill = f"{uid}/m", f"{uid}/spill"
    monkeypatch.setattr(observability, "MAX_MODEL_LABELS", len(observability._model_labels) + 1)
    calls = 0

    @worker(f"{uid}.llm")
    async def llm(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        report_usage(input_tokens=300, output_tokens=50, model=model, cost_usd=0.0025)
        if calls == 1:
            raise WorkerExecutionError("the first call fails, and still costs")
        return {}

    @worker(f"{uid}.other")
    async def other(ctx: dict[str, Any]) -> dict[str, Any]:
        report_usage(input_tokens=7, model=spill)
        return {}

    @worker(f"{uid}.boom")
    async def boom(ctx: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("never works")

    child = WorkflowBuilder(f"{uid}.child").add_step("call", llm, retry=FAST).build()
    parent = (
        WorkflowBuilder(f"{uid}.parent")
        .add_workflow_step("sub", child)
        .add_step("spill", other)
        .build()
    )
    capped = (
        WorkflowBuilder(f"{uid}.capped", budget=Budget(max_tokens=500))
        .add_step("call", llm)
        .add_step("more", llm, estimate=Estimate(input_tokens=400))
        .build()
    )
    failing = WorkflowBuilder(f"{uid}.failing").add_step("x", boom).build()
    async with Client(metered.address) as client, serving(metered, llm, other, boom):
        await client.register_workflow(child)
        assert (await run(client, parent, {})).state == "completed"
        assert (await run(client, capped, {})).state == "failed"
        assert (await run(client, failing, {})).state == "failed"
        after = await asyncio.to_thread(scrape, port)

    tokens, cost = "multiagents_step_tokens_total", "multiagents_step_cost_usd_total"
    # The child: two attempts (a failure, then a result) of 300 in, 50 out.
    assert value(after, tokens, workflow=child.name, model=model, direction="input") == 600
    assert value(after, tokens, workflow=child.name, model=model, direction="output") == 100
    assert value(after, cost, workflow=child.name, model=model) == pytest.approx(0.005)
    assert value(after, tokens, workflow=parent.name, model=model, direction="input") == 0
    assert value(after, tokens, workflow=parent.name, model="other", direction="input") == 7
    assert value(after, tokens, workflow=parent.name, model=spill, direction="input") == 0
    # capped: the first call (350 tokens) ran, the second would need 400 more.
    assert value(after, tokens, workflow=capped.name, model=model, direction="input") == 300

    failures = "multiagents_workflow_failures_total"
    assert value(after, failures, workflow=capped.name, kind="budget_exceeded") == 1
    assert value(after, failures, workflow=failing.name, kind="application") == 1
    assert value(after, failures, workflow=parent.name, kind="application") == 0


async def test_steps_waiting_for_a_rate_limit_are_counted_by_the_declared_limit(
    metered: Server, uid: str
) -> None:
    """One at a time per tenant (`tenant:*`), three tenants' steps: the
    waiting ones are counted under the declared prefix, not per tenant, and
    the gauge goes back to zero when they have run."""
    port = metered.config.metrics_port
    pattern = f"{uid}:tenant:*"
    release = asyncio.Event()

    @worker(f"{uid}.hold")
    async def hold(ctx: dict[str, Any]) -> dict[str, Any]:
        await release.wait()
        return {}

    key = LimitKey(expression=f'"{uid}:tenant:" + context.tenant')
    wf = WorkflowBuilder(f"{uid}.wf").add_step("s", hold, rate_limits=[key]).build()
    gauge = "multiagents_steps_waiting_for_rate_limit"

    def waiting(samples: Samples) -> list[tuple[dict[str, str], float]]:
        return [
            (dict(labels), v)
            for (name, labels), v in samples.items()
            if name == gauge and uid in dict(labels).get("limit", "")
        ]

    async with Client(metered.address) as client, serving(metered, hold, concurrency=16):
        await client.put_rate_limit(pattern, max_concurrent=1)
        await client.register_workflow(wf)
        ids = [
            await client.execute_workflow(wf.name, {"tenant": tenant})
            for tenant in ("a", "a", "a", "b", "b", "c")
        ]

        async def counted() -> bool:
            samples = await asyncio.to_thread(scrape, port)
            return waiting(samples) == [({"limit": pattern, "reason": "concurrency"}, 3.0)]

        await wait_for(counted, timeout=20, interval=0.1)
        release.set()
        finals = await asyncio.gather(*(client.wait(tx, 30) for tx in ids))
        after = await asyncio.to_thread(scrape, port)
    assert {f.state for f in finals} == {"completed"}
    assert waiting(after) == [({"limit": pattern, "reason": "concurrency"}, 0.0)]
