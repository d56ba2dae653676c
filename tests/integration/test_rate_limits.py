"""Shared rate limits and concurrency keys (issue 13 item 4), enforced by the
server across sessions, worker processes and replicas."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from integration.helpers import make_config, serving, wait_for
from integration.test_cli_errors import assert_one_line_error, cli
from integration.test_crashes import processes, spawn  # noqa: F401
from multiagents import (
    Client,
    Estimate,
    InvalidArgumentError,
    LimitKey,
    NotFoundError,
    RateLimited,
    RetryPolicy,
    WorkflowBuilder,
    report_usage,
    worker,
)
from multiagents.v1 import monitoring_service_pb2, monitoring_service_pb2_grpc
from multiagents_server.app import Server
from multiagents_server.embedded_redis import EmbeddedRedis

LIMIT_WORKERS = str(ROOT / "tests" / "fixtures" / "limit_workers.py")
LIMIT_WORKERS_B = str(ROOT / "tests" / "fixtures" / "limit_workers_b.py")


async def test_declare_read_list_and_delete_limits(client: Client, uid: str) -> None:
    put = await client.put_rate_limit(f"provider:{uid}", requests=10, tokens=5000, period=60)
    assert (put.requests, put.tokens, put.period, put.backoff) == (10, 5000, 60.0, 1.0)
    await client.put_rate_limit(f"tenant:{uid}:*", max_concurrent=2, backoff=0.5)
    got = await client.get_rate_limit(f"tenant:{uid}:*")
    assert (got.max_concurrent, got.requests, got.backoff) == (2, 0, 0.5)
    mine = [x.key for x in await client.list_rate_limits() if uid in x.key]
    assert mine == [f"provider:{uid}", f"tenant:{uid}:*"]
    await client.delete_rate_limit(f"provider:{uid}")
    with pytest.raises(NotFoundError, match="key"):
        await client.get_rate_limit(f"provider:{uid}")
    with pytest.raises(NotFoundError, match="key"):
        await client.delete_rate_limit(f"provider:{uid}")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"key": "", "requests": 1}, "limit.key"),
        ({"key": "a b", "requests": 1}, "limit.key"),
        ({"key": "a*b", "requests": 1}, "limit.key"),
        ({"key": "ok"}, "limit: set at least one"),
        ({"key": "ok", "requests": 1, "period": 0.0}, "limit.period"),
        ({"key": "ok", "requests": 1, "backoff": 7200.0}, "limit.backoff"),
    ],
)
async def test_a_bad_limit_is_invalid_argument_naming_the_field(
    client: Client, kwargs: dict[str, Any], field: str
) -> None:
    key = kwargs.pop("key")
    with pytest.raises(InvalidArgumentError, match=field):
        await client.put_rate_limit(key, **kwargs)


async def test_a_bad_limit_key_in_a_step_is_refused_at_registration(
    client: Client, uid: str
) -> None:
    bad = [
        (
            LimitKey(expression='"tenant:" + context.'),
            r"steps\[0\]\.rate_limits\[0\]\.key_expression: syntax error at line 1",
        ),
        (LimitKey(), r"steps\[0\]\.rate_limits\[0\]: set exactly one"),
        (LimitKey("a", "context.x"), r"steps\[0\]\.rate_limits\[0\]: set exactly one"),
        ("with space", r"steps\[0\]\.rate_limits\[0\]\.key"),
    ]
    for key, message in bad:
        wf = WorkflowBuilder(f"{uid}.bad").add_step("s", "w", rate_limits=[key]).build()
        with pytest.raises(InvalidArgumentError, match=message):
            await client.register_workflow(wf)


async def test_a_key_expression_that_fails_on_a_context_fails_the_step(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.w")
    async def work(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    wf = (
        WorkflowBuilder(f"{uid}.wf")
        .add_step("s", work, rate_limits=[LimitKey(expression='"tenant:" + context.tenant')])
        .build()
    )
    await client.register_workflow(wf)
    async with serving(server, work):
        ok = await client.wait(await client.execute_workflow(wf.name, {"tenant": "a"}), 20)
        bad = await client.wait(await client.execute_workflow(wf.name, {}), 20)
        long = await client.wait(await client.execute_workflow(wf.name, {"tenant": "x" * 200}), 20)
    assert ok.state == "completed"
    assert bad.state == "failed"
    assert bad.error is not None and bad.error["type"] == "ExpressionError"
    assert "context.tenant' failed: no such member" in bad.error["message"]
    assert long.state == "failed"
    assert (
        long.error is not None
        and "not a key (a string of 1-200 characters)" in long.error["message"]
    )


@pytest.mark.timeout(300)
async def test_one_tenants_thousand_do_not_starve_another_tenants_one(
    server: Server, client: Client, uid: str
) -> None:
    """Concurrency 1 per tenant: tenant A's 1,000 executions wait behind the
    one that runs, while tenant B's single one goes through, and a waiting
    one says what it waits for; every A then finishes one at a time (15 s
    here on an idle machine, minutes under a loaded CI: hence the timeouts)."""
    await client.put_rate_limit(f"{uid}:tenant:*", max_concurrent=1)
    release_a = asyncio.Event()
    running: dict[str, int] = {"a": 0, "b": 0}
    most: dict[str, int] = {"a": 0, "b": 0}
    started_a = 0

    @worker(f"{uid}.call")
    async def call(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal started_a
        tenant = ctx["tenant"]
        running[tenant] += 1
        most[tenant] = max(most[tenant], running[tenant])
        try:
            if tenant == "a":
                started_a += 1
                await release_a.wait()
        finally:
            running[tenant] -= 1
        return {"tenant": tenant}

    key = LimitKey(expression=f'"{uid}:tenant:" + context.tenant')
    wf = WorkflowBuilder(f"{uid}.llm").add_step("call", call, rate_limits=[key]).build()
    await client.register_workflow(wf)
    async with serving(server, call, concurrency=16):
        a_ids = []
        for _ in range(10):
            a_ids += await asyncio.gather(
                *(client.execute_workflow(wf.name, {"tenant": "a"}) for _n in range(100))
            )
        await wait_for(lambda: started_a == 1, timeout=90)
        b = await client.wait(await client.execute_workflow(wf.name, {"tenant": "b"}), 90)
        assert b.state == "completed"
        assert started_a == 1  # A's others still wait for their tenant's place
        waiting = await client.get_status(a_ids[-1])
        progress = waiting.steps[0].progress
        assert progress == {
            "waiting_for_rate_limit": f"{uid}:tenant:a",
            "reason": "concurrency",
        }
        release_a.set()
        finals = await asyncio.gather(*(client.wait(tx, 270) for tx in a_ids))
    assert {f.state for f in finals} == {"completed"}
    assert most == {"a": 1, "b": 1}
    assert started_a == 1000


async def test_a_rate_limit_holds_across_two_worker_processes(
    server: Server,
    client: Client,
    uid: str,
    processes: list[subprocess.Popen[bytes]],  # noqa: F811
) -> None:
    """At most 10 starts in any second for steps of two worker processes
    (each serving a worker name of its own, so both surely work): 40 steps
    cannot start within less than (40 - 10) / 10 = 3 s (without the limit
    they all start within a fraction of a second)."""
    rate, count = 10, 40
    await client.put_rate_limit(f"{uid}:provider", requests=rate, period=1)
    for fixture in (LIMIT_WORKERS, LIMIT_WORKERS_B):
        processes.append(spawn("worker", fixture, "--server", server.address))
    for name in ("limits.stamp", "limits.stamp_b"):
        await wait_for(lambda n=name: _processes_serving(server.address, n), timeout=30)
    names = {}
    for name in ("limits.stamp", "limits.stamp_b"):
        names[name] = (
            WorkflowBuilder(f"{uid}.{name}")
            .add_step("stamp", name, rate_limits=[f"{uid}:provider"])
            .build()
        )
        await client.register_workflow(names[name])
    ids = await asyncio.gather(
        *(client.execute_workflow(f"{uid}.{list(names)[i % 2]}", {}) for i in range(count))
    )
    finals = await asyncio.gather(*(client.wait(tx, 60) for tx in ids))
    assert {f.state for f in finals} == {"completed"}
    starts = sorted(f.step_results["stamp"]["started"] for f in finals)
    assert len({f.step_results["stamp"]["pid"] for f in finals}) == 2
    # 0.3 s of slack for the delivery of the first and the last command.
    assert starts[-1] - starts[0] >= (count - rate) / rate - 0.3


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count >= n)


async def _processes_serving(address: str, worker_name: str) -> int:
    """Distinct worker processes with a session serving `worker_name` (a
    process that reconnected may still be listed twice for a moment)."""
    async with Client(address) as c:
        stub = monitoring_service_pb2_grpc.MonitoringServiceStub(c._channel)
        response = await stub.ListWorkers(monitoring_service_pb2.ListWorkersRequest())
    return len({s.worker_id for s in response.sessions if worker_name in s.worker_names})


async def test_a_429_reported_by_a_worker_backs_the_limit_off(
    server: Server, client: Client, uid: str
) -> None:
    await client.put_rate_limit(f"{uid}:p", requests=1000, period=1, backoff=1.5)
    starts: list[float] = []

    @worker(f"{uid}.flaky")
    async def flaky(ctx: dict[str, Any]) -> dict[str, Any]:
        starts.append(time.monotonic())
        if len(starts) == 1:
            raise RateLimited("429 Too Many Requests")
        return {}

    wf = (
        WorkflowBuilder(f"{uid}.wf")
        .add_step(
            "call",
            flaky,
            retry=RetryPolicy(max_attempts=2, initial_interval=0.01),
            rate_limits=[f"{uid}:p"],
        )
        .build()
    )
    await client.register_workflow(wf)
    async with serving(server, flaky):
        status = await client.wait(await client.execute_workflow(wf.name, {}), 30)
    assert status.state == "completed"
    assert status.steps[0].attempts == 2
    # The retry was due after 10 ms; the limit held it for its backoff.
    assert starts[1] - starts[0] >= 1.5 - 0.05


async def test_token_limits_reserve_the_estimate_and_reconcile_with_the_usage(
    server: Server, client: Client, uid: str
) -> None:
    """1,000 tokens per hour (no refill to speak of), steps estimated at 600.
    The first reports 100: 500 go back (900 left), so the second fits; it
    reports 700, 100 over its estimate (200 left): the third waits."""
    await client.put_rate_limit(f"{uid}:tpm", tokens=1000, period=3600)
    calls: list[str] = []
    used = {"1": 100, "2": 700, "3": 0}

    @worker(f"{uid}.llm")
    async def llm(ctx: dict[str, Any]) -> dict[str, Any]:
        calls.append(ctx["n"])
        report_usage(input_tokens=used[ctx["n"]])
        return {}

    wf = (
        WorkflowBuilder(f"{uid}.wf")
        .add_step(
            "call",
            llm,
            estimate=Estimate(input_tokens=400, output_tokens=200),
            rate_limits=[f"{uid}:tpm"],
        )
        .build()
    )
    await client.register_workflow(wf)
    async with serving(server, llm):
        for n in ("1", "2"):
            done = await client.wait(await client.execute_workflow(wf.name, {"n": n}), 20)
            assert done.state == "completed"
        third = await client.execute_workflow(wf.name, {"n": "3"})

        async def waits_for_tokens() -> bool:
            progress = (await client.get_status(third)).steps[0].progress
            return progress == {"waiting_for_rate_limit": f"{uid}:tpm", "reason": "tokens"}

        await wait_for(waits_for_tokens, timeout=20)
        shown = await cli("status", third, "--server", server.address)
        assert f"waiting for rate limit {uid}:tpm (tokens)" in shown.stdout
        await client.cancel_workflow(third)
        cancelled = await client.wait(third, 20)
    assert cancelled.state == "cancelled"
    assert calls == ["1", "2"]


async def test_the_limits_command_sets_lists_and_deletes(server: Server, uid: str) -> None:
    where = ("--server", server.address)
    done = await cli("limits", "set", f"{uid}:openai", "--requests", "60", "--tokens",
                     "90000", "--concurrency", "4", *where)  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = f"{uid}:openai: 60 requests and 90000 tokens per 60 s, at most 4 at once (backoff 1 s)"
    assert done.stdout.strip() == line
    listed = await cli("limits", "list", "--json", *where)
    mine = [x for x in json.loads(listed.stdout)["limits"] if x["key"].startswith(uid)]
    assert mine == [{"key": f"{uid}:openai", "requests": 60, "tokens": 90000, "period_s": 60.0,
                     "max_concurrent": 4, "backoff_s": 1.0}]  # fmt: skip
    assert_one_line_error(await cli("limits", "set", "a b", "--requests", "1", *where), "limit.key")
    assert_one_line_error(await cli("limits", "set", "k", *where), "at least one of requests")
    assert_one_line_error(await cli("limits", "set", "k", "--requests", "-1", *where), "--requests")
    deleted = await cli("limits", "delete", f"{uid}:openai", *where)
    assert deleted.returncode == 0 and deleted.stdout.strip() == f"rate limit deleted: {uid}:openai"
    again = await cli("limits", "delete", f"{uid}:openai", *where)
    assert again.returncode == 1 and "no rate limit" in again.stderr


def test_a_definition_file_names_limits_by_key_or_expression() -> None:
    from multiagents.cli import definition_dict
    from multiagents.workflow import Workflow

    keys = ["provider:openai", {"key_expression": '"tenant:" + context.t'}]
    row = {"name": "call", "worker": "llm", "rate_limits": keys}
    wf = Workflow.from_dict({"name": "wf", "steps": [row]})
    assert definition_dict(wf.to_proto())["steps"] == [row]
    with pytest.raises(ValueError, match=r"steps\[0\]\.rate_limits\[0\]: unknown keys"):
        Workflow.from_dict({"name": "wf", "steps": [{**row, "rate_limits": [{"kee": "x"}]}]})


async def test_a_killed_worker_gives_back_its_concurrency_place(
    server: Server,
    client: Client,
    uid: str,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],  # noqa: F811
) -> None:
    """One place for the key: the first step holds it in a worker process
    that is SIGKILLed; the second, waiting, starts in the other process at
    once (the lost session gives the place back), not at the first's
    deadline a minute later."""
    await client.put_rate_limit(f"{uid}:one", max_concurrent=1)
    for _ in range(2):
        processes.append(
            spawn("worker", LIMIT_WORKERS, "--server", server.address, "--concurrency", "2")
        )
    await wait_for(
        lambda: _at_least(_processes_serving(server.address, "limits.hold"), 2),
        timeout=30,
        interval=0.1,
    )
    wf = (
        WorkflowBuilder(f"{uid}.held")
        .add_step(
            "hold",
            "limits.hold",
            timeout=60,
            retry=RetryPolicy(max_attempts=1),
            rate_limits=[f"{uid}:one"],
        )
        .build()
    )
    await client.register_workflow(wf)
    first = await client.execute_workflow(wf.name, {"marker_dir": str(tmp_path), "sleep": 600})
    await wait_for(lambda: any(tmp_path.iterdir()), timeout=20)
    second = await client.execute_workflow(wf.name, {})

    async def waiting() -> bool:
        progress = (await client.get_status(second)).steps[0].progress
        return progress == {"waiting_for_rate_limit": f"{uid}:one", "reason": "concurrency"}

    await wait_for(waiting, timeout=20)
    victim = int(next(tmp_path.iterdir()).name)
    os.kill(victim, signal.SIGKILL)
    done = await client.wait(second, timeout=20)
    assert done.state == "completed"
    assert done.step_results["hold"]["pid"] != victim
    lost = await client.wait(first, timeout=20)
    assert lost.state == "failed" and lost.error is not None
    assert lost.error["type"] == "WorkerLost"


async def test_a_concurrency_key_holds_across_two_replicas(
    redis_server: EmbeddedRedis, uid: str
) -> None:
    """Two places for the key, a worker runtime on each of two replicas
    (8 slots each), 12 executions submitted through both: never more than 2
    run at once, and every one completes (a place given back on one replica
    is found by the other's waiting commands)."""
    running, most = 0, 0

    @worker(f"{uid}.w")
    async def work(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.05)  # the work: long enough for the others to try
        running -= 1
        return {}

    config = make_config(redis_server.url)
    async with (
        Server(config) as a,
        Server(config) as b,
        Client(a.address) as ca,
        Client(b.address) as cb,
    ):
        await ca.put_rate_limit(f"{uid}:k", max_concurrent=2)
        wf = WorkflowBuilder(f"{uid}.wf").add_step("s", work, rate_limits=[f"{uid}:k"]).build()
        await ca.register_workflow(wf)
        async with serving(a, work), serving(b, work):
            ids = [await (ca if i % 2 else cb).execute_workflow(wf.name, {}) for i in range(12)]
            finals = await asyncio.gather(*(ca.wait(tx, 60) for tx in ids))
    assert {f.state for f in finals} == {"completed"}
    assert most == 2


async def test_raising_a_limit_starts_more_of_the_steps_waiting_under_it(
    server: Server, client: Client, uid: str
) -> None:
    """One at a time, then raised to three while twelve steps wait: three
    run at once. Each step holds its place until three run (or 0.3 s pass,
    shorter than the dispatcher's 1 s retry of a waiting group): before the
    fix a waiting group was tried again only when a place was given back,
    one start per release, so the steps kept running one at a time."""
    await client.put_rate_limit(f"{uid}:k", max_concurrent=1)
    running, most, started = 0, 0, 0
    three_at_once = asyncio.Event()
    first_may_end = asyncio.Event()

    @worker(f"{uid}.w")
    async def work(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal running, most, started
        running += 1
        started += 1
        most = max(most, running)
        if running >= 3:
            three_at_once.set()
        try:
            if started == 1:
                await first_may_end.wait()  # until the limit is raised
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(three_at_once.wait(), 0.3)
        finally:
            running -= 1
        return {}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("s", work, rate_limits=[f"{uid}:k"]).build()
    await client.register_workflow(wf)
    async with serving(server, work, concurrency=16):
        ids = [await client.execute_workflow(wf.name, {}) for _ in range(13)]
        await wait_for(lambda: started == 1, timeout=20)
        await client.put_rate_limit(f"{uid}:k", max_concurrent=3)
        first_may_end.set()
        finals = await asyncio.gather(*(client.wait(tx, 60) for tx in ids))
    assert {f.state for f in finals} == {"completed"}
    assert most == 3


async def test_a_limit_changed_while_steps_wait_applies_to_them_at_once(
    server: Server, client: Client, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight steps that hold their place until released, under a limit
    changed while they wait; the dispatcher's periodic retry of a waiting
    group is put off (10 minutes) so that only the change itself can start
    them. One at a time; raised to three: three run. Lowered to two: the
    first to end starts none, the second one. Deleted: every waiting step
    starts. Declared again, at one: the six still running count, so a new
    step waits."""
    monkeypatch.setattr("multiagents_server.limit_gate.LIMIT_POLL_MS", 60_000)
    await client.put_rate_limit(f"{uid}:k", max_concurrent=1)
    gates: dict[str, asyncio.Event] = {}
    started: list[str] = []
    running: set[str] = set()
    seen_at_start: list[int] = []

    @worker(f"{uid}.w")
    async def hold(ctx: dict[str, Any]) -> dict[str, Any]:
        n = ctx["n"]
        started.append(n)
        running.add(n)
        seen_at_start.append(len(running))
        try:
            await gates[n].wait()
        finally:
            running.discard(n)
        return {}

    wf = (
        WorkflowBuilder(f"{uid}.wf")
        .add_step("s", hold, timeout=120, rate_limits=[f"{uid}:k"])
        .build()
    )
    await client.register_workflow(wf)
    async with serving(server, hold, concurrency=16):
        ids = {}
        for n in map(str, range(8)):
            gates[n] = asyncio.Event()
            ids[n] = await client.execute_workflow(wf.name, {"n": n})
        await wait_for(lambda: len(running) == 1, timeout=20)

        await client.put_rate_limit(f"{uid}:k", max_concurrent=3)
        await wait_for(lambda: len(running) == 3, timeout=20)

        await client.put_rate_limit(f"{uid}:k", max_concurrent=2)
        lowered = len(seen_at_start)
        for first in started[:2]:
            gates[first].set()
            assert (await client.wait(ids[first], 20)).state == "completed"
        await wait_for(lambda: len(started) == 4, timeout=20)
        assert seen_at_start[lowered:] == [2]  # the first to end started none

        await client.delete_rate_limit(f"{uid}:k")
        await wait_for(lambda: len(running) == 6, timeout=20)

        await client.put_rate_limit(f"{uid}:k", max_concurrent=1)
        gates["8"] = asyncio.Event()
        ids["8"] = await client.execute_workflow(wf.name, {"n": "8"})

        async def waits() -> bool:
            progress = (await client.get_status(ids["8"])).steps[0].progress
            return progress == {"waiting_for_rate_limit": f"{uid}:k", "reason": "concurrency"}

        await wait_for(waits, timeout=20)
        for gate in gates.values():
            gate.set()
        finals = await asyncio.gather(*(client.wait(tx, 20) for tx in ids.values()))
    assert {f.state for f in finals} == {"completed"}


async def test_a_place_given_back_while_a_refusal_is_on_its_way_is_not_missed(
    server: Server, client: Client, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's replies come on several connections, so a refusal can
    reach the gate after the news that a place was given back, though Redis
    ran it before (seen once in the cluster lane). Here it always does: the
    second step's try is refused while the first holds the only place, and
    its reply is handed over only once that place was given back. The
    periodic retry is put off (10 minutes; the refusal itself says 2, the
    holder's lease), so the second step starts within the test's wait only
    if the gate tries it again at once."""
    monkeypatch.setattr("multiagents_server.limit_gate.LIMIT_POLL_MS", 60_000)
    assert server.dispatcher is not None
    store = server.dispatcher.store
    acquire, release = store.acquire_limits, store.release_limits
    refusal_held, given_back = asyncio.Event(), asyncio.Event()

    async def acquire_limits(*args: Any) -> Any:
        reply = await acquire(*args)
        if reply[1] is not None and not refusal_held.is_set():
            refusal_held.set()
            await asyncio.wait_for(given_back.wait(), 20)
        return reply

    async def release_limits(*args: Any) -> None:
        await release(*args)
        given_back.set()

    monkeypatch.setattr(store, "acquire_limits", acquire_limits)
    monkeypatch.setattr(store, "release_limits", release_limits)
    await client.put_rate_limit(f"{uid}:k", max_concurrent=1)
    first_started, first_may_end = asyncio.Event(), asyncio.Event()

    @worker(f"{uid}.w")
    async def step(ctx: dict[str, Any]) -> dict[str, Any]:
        if ctx["n"] == 1:
            first_started.set()
            await first_may_end.wait()
        return {}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("s", step, timeout=120, rate_limits=[f"{uid}:k"])
    await client.register_workflow(wf.build())
    async with serving(server, step):
        first = await client.execute_workflow(f"{uid}.wf", {"n": 1})
        await asyncio.wait_for(first_started.wait(), 20)
        second = await client.execute_workflow(f"{uid}.wf", {"n": 2})
        await asyncio.wait_for(refusal_held.wait(), 20)
        first_may_end.set()
        assert (await client.wait(first, 20)).state == "completed"
        assert (await client.wait(second, 20)).state == "completed"


async def test_a_limit_raised_through_one_replica_starts_steps_waiting_at_another(
    redis_server: EmbeddedRedis, uid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The steps wait at replica B (its worker's); the limit is raised
    through replica A; B's periodic retry is put off, so only A's word
    (on the bus) can start the second step."""
    monkeypatch.setattr("multiagents_server.limit_gate.LIMIT_POLL_MS", 60_000)
    release = asyncio.Event()
    running = 0

    @worker(f"{uid}.w")
    async def hold(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal running
        running += 1
        await release.wait()
        return {}

    config = make_config(redis_server.url)
    async with Server(config) as a, Server(config) as b, Client(a.address) as ca:
        await ca.put_rate_limit(f"{uid}:k", max_concurrent=1)
        wf = (
            WorkflowBuilder(f"{uid}.wf")
            .add_step("s", hold, timeout=120, rate_limits=[f"{uid}:k"])
            .build()
        )
        await ca.register_workflow(wf)
        async with serving(b, hold):
            ids = [await ca.execute_workflow(wf.name, {}) for _ in range(2)]
            await wait_for(lambda: running == 1, timeout=20)
            await ca.put_rate_limit(f"{uid}:k", max_concurrent=2)
            await wait_for(lambda: running == 2, timeout=20)
            release.set()
            finals = await asyncio.gather(*(ca.wait(tx, 20) for tx in ids))
    assert {f.state for f in finals} == {"completed"}


async def test_a_raised_request_limit_counts_the_starts_already_made(
    server: Server, client: Client, uid: str
) -> None:
    """One start per hour, raised to two: the waiting second step starts,
    a third waits (the first start still counts)."""
    await client.put_rate_limit(f"{uid}:rph", requests=1, period=3600)

    @worker(f"{uid}.w")
    async def work(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("s", work, rate_limits=[f"{uid}:rph"]).build()
    await client.register_workflow(wf)

    async def waits(tx: str) -> bool:
        progress = (await client.get_status(tx)).steps[0].progress
        return progress == {"waiting_for_rate_limit": f"{uid}:rph", "reason": "requests"}

    async with serving(server, work):
        first = await client.wait(await client.execute_workflow(wf.name, {}), 20)
        assert first.state == "completed"
        second = await client.execute_workflow(wf.name, {})
        await wait_for(lambda: waits(second), timeout=20)
        await client.put_rate_limit(f"{uid}:rph", requests=2, period=3600)
        assert (await client.wait(second, 20)).state == "completed"
        third = await client.execute_workflow(wf.name, {})
        await wait_for(lambda: waits(third), timeout=20)
        await client.cancel_workflow(third)
        assert (await client.wait(third, 20)).state == "cancelled"
