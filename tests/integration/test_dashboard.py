"""The web dashboard over HTTP: a real server replica (and a real
`serve --processes 2`) with its dashboard on a free port, real workers, and
httpx as the browser. The browser itself is in tests/browser."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import duration_pb2

import multiagents
from conftest import ROOT
from integration.helpers import make_config, serving, wait_for
from integration.test_tls import make_pki
from multiagents import Client, RetryPolicy, WorkerExecutionError, WorkflowBuilder, worker
from multiagents.v1 import workflow_pb2
from multiagents_server.app import Server
from multiagents_server.config import ConfigError, load_config
from multiagents_server.embedded_redis import EmbeddedRedis, free_port

HTML = {"accept": "text/html"}
ACTION = {"x-multiagents-request": "1"}
# Any single page or stream event must arrive within this.
ANSWER_S = 15


@pytest.fixture(scope="module")
async def dash(redis_server: EmbeddedRedis) -> AsyncIterator[Server]:
    """A replica with its dashboard, shared by this module's open-access tests."""
    async with Server(make_config(redis_server.url, dashboard_port=free_port())) as server:
        yield server


@contextlib.asynccontextmanager
async def browser(server: Server, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    assert server.dashboard is not None
    async with httpx.AsyncClient(base_url=server.dashboard.url, timeout=ANSWER_S, **kwargs) as h:
        yield h


def row_ids(html: str) -> list[str]:
    return re.findall(r'<tr data-tx="([0-9a-f]+)"', html)


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of a text/event-stream response, as they arrive."""
    event, data = "", []
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line == "" and event:
            yield event, "\n".join(data)
            event, data = "", []


# -- one execution -----------------------------------------------------------------------


async def test_the_execution_page_shows_retries_the_compensation_and_the_stack_trace(
    dash: Server, uid: str
) -> None:
    @worker(f"{uid}_reserve")
    async def reserve(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"seat": "12A"}

    @worker(f"{uid}_release")
    async def release(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    @worker(f"{uid}_pay")
    async def pay(ctx: dict[str, Any]) -> dict[str, Any]:
        raise WorkerExecutionError("card declined by the issuer")

    wf = (
        WorkflowBuilder(f"{uid}-trip")
        .add_step("reserve", reserve.name, release.name)
        .add_step("pay", pay.name, retry=RetryPolicy(max_attempts=2, initial_interval=0.05))
        .build()
    )
    async with serving(dash, reserve, release, pay), Client(dash.address) as client:
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {"who": "ada"})
        assert (await client.wait(tx, timeout=20)).state == "compensated"
    async with browser(dash, headers=HTML) as h:
        page = await h.get(f"/executions/{tx}")
    assert page.status_code == 200
    html = page.text
    bars = re.findall(r'<div class="t-row" data-step="(\w+)" data-outcome="(\w+)">', html)
    assert bars == [
        ("reserve", "succeeded"), ("pay", "retried"), ("pay", "failed"), ("reserve", "succeeded")
    ]  # fmt: skip
    assert "compensation 1" in html and "t-compensation" in html
    assert 'data-step="reserve" data-status="compensated"' in html
    assert 'data-step="pay" data-status="failed"' in html
    # The worker's own stack trace: its function and message.
    stack = re.search(r'<pre class="stack">(.*?)</pre>', html, re.S)
    assert stack is not None and "in pay" in stack.group(1)
    assert "card declined by the issuer" in stack.group(1)
    assert "(will retry)" in html  # the history says the first failure was retried


async def test_a_large_payload_is_cut_and_served_whole_on_demand(dash: Server, uid: str) -> None:
    @worker(f"{uid}_big")
    async def big(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"transcript": [f"line {i}: " + "lorem ipsum " * 5 for i in range(400)]}

    wf = WorkflowBuilder(f"{uid}-big").add_step("transcribe", big.name).build()
    async with serving(dash, big), Client(dash.address) as client:
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        final = await client.wait(tx, timeout=20)
    async with browser(dash, headers=HTML) as h:
        html = (await h.get(f"/executions/{tx}")).text
        whole = await h.get(f"/executions/{tx}/json/context")
        unknown = await h.get(f"/executions/{tx}/json/secrets")
    shown = re.search(r'<pre class="json" data-key="context">(.*?)</pre>', html, re.S)
    assert shown is not None and "line 399" not in shown.group(1)
    assert f'data-expand="/executions/{tx}/json/context"' in html
    assert whole.status_code == 200
    assert json.loads(whole.text) == final.context
    assert unknown.status_code == 404


async def test_the_live_stream_follows_the_execution_until_it_ends(dash: Server, uid: str) -> None:
    gate = asyncio.Event()

    @worker(f"{uid}_slow")
    async def slow(ctx: dict[str, Any]) -> dict[str, Any]:
        await gate.wait()
        return {"done": True}

    wf = WorkflowBuilder(f"{uid}-slow").add_step("only", slow.name).build()
    async with serving(dash, slow), Client(dash.address) as client:
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        seen: list[tuple[str, str]] = []
        async with browser(dash) as h, h.stream("GET", f"/executions/{tx}/live") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async with asyncio.timeout(ANSWER_S):
                async for event, data in sse_events(response):
                    seen.append((event, data))
                    if 'data-status="running"' in data:
                        gate.set()  # the page saw it running: let it finish
                    if event == "end":
                        break
    states = [re.findall(r'data-state="(\w+)"', d)[0] for e, d in seen if e == "update"]
    assert states[0] == "running" and states[-1] == "completed"
    assert seen[-1][0] == "end"


async def test_the_live_list_shows_a_new_execution_by_itself(dash: Server, uid: str) -> None:
    wf = WorkflowBuilder(f"{uid}-nobody").add_step("s", f"{uid}_nobody").build()
    async with Client(dash.address) as client:
        await client.register_workflow(wf)
        async with (
            browser(dash) as h,
            h.stream("GET", "/executions/live", params={"workflow": wf.name}) as response,
        ):
            events = sse_events(response)
            async with asyncio.timeout(ANSWER_S):
                event, first = await anext(events)
                assert event == "update" and row_ids(first) == []
                tx = await client.execute_workflow(wf.name, {})
                async for _, data in events:
                    if tx in row_ids(data):
                        break
        assert re.search(r'data-count="running">\s*<span class="n">1</span>', data)
        await client.cancel_workflow(tx, "test over")


# -- the list ----------------------------------------------------------------------------


async def test_the_list_filters_pages_and_counts(dash: Server, uid: str) -> None:
    @worker(f"{uid}_echo")
    async def echo(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    wf = WorkflowBuilder(f"{uid}-list").add_step("echo", echo.name).build()
    async with serving(dash, echo), Client(dash.address) as client:
        await client.register_workflow(wf)
        ids = [
            await client.execute_workflow(wf.name, {}, correlation_id=f"{uid}-order-{i:02d}")
            for i in range(25)
        ]
        await asyncio.gather(*(client.wait(tx, timeout=20) for tx in ids))
    async with browser(dash, headers=HTML) as h:
        first = await h.get("/executions", params={"workflow": wf.name, "page_size": "20"})
        assert first.status_code == 200
        assert row_ids(first.text) == ids[::-1][:20]  # newest first
        assert re.search(r'data-count="completed">\s*<span class="n">25</span>', first.text)
        next_url = re.search(r'<a href="([^"]+)" data-next-page>', first.text)
        assert next_url is not None
        second = await h.get(next_url.group(1).replace("&amp;", "&"))
        assert row_ids(second.text) == ids[::-1][20:]
        assert "data-next-page" not in second.text

        by_correlation = await h.get("/executions", params={"q": f"{uid}-order-07"})
        assert row_ids(by_correlation.text) == [ids[7]]
        by_id = await h.get("/executions", params={"q": ids[3]})
        assert row_ids(by_id.text) == [ids[3]]
        failed = await h.get("/executions", params={"workflow": wf.name, "state": "failed"})
        assert row_ids(failed.text) == []
        later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
        earlier = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
        future = await h.get("/executions", params={"workflow": wf.name, "since": later})
        assert row_ids(future.text) == []
        window = await h.get(
            "/executions", params={"workflow": wf.name, "since": earlier, "until": later}
        )
        assert len(row_ids(window.text)) == 20
        past = await h.get("/executions", params={"workflow": wf.name, "until": earlier})
        assert row_ids(past.text) == []

        bad_time = await h.get("/executions", params={"since": "yesterday"})
        assert bad_time.status_code == 400 and "since: expected a UTC time" in bad_time.text
        bad_state = await h.get("/executions", params={"state": "sleeping"})
        assert bad_state.status_code == 400 and "state: expected one of" in bad_state.text
        bad_cursor = await h.get("/executions", params={"cursor": "%%%"})
        assert bad_cursor.status_code == 400 and "cursor: malformed" in bad_cursor.text
        missing = await h.get("/executions/0123456789abcdef0123456789abcdef")
        assert missing.status_code == 404


async def test_the_workers_and_definitions_pages(dash: Server, uid: str) -> None:
    @worker(f"{uid}_w")
    async def w(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    child = WorkflowBuilder(f"{uid}-child").add_step("inner", w.name).build()
    v1 = WorkflowBuilder(f"{uid}-parent", version=1).add_step("a", w.name).build()
    v2 = (
        WorkflowBuilder(f"{uid}-parent", version=2)
        .add_step("a", w.name)
        .add_workflow_step("sub", child.name)
        .build()
    )
    async with serving(dash, w, concurrency=3), Client(dash.address) as client:
        for definition in (child, v1, v2):
            await client.register_workflow(definition)
        async with browser(dash, headers=HTML) as h:
            workers = ""

            async def session_shown() -> bool:
                # Under load a session may be dropped and reconnect: wait for one.
                nonlocal workers
                workers = (await h.get("/workers")).text
                return re.search(rf"<td>{w.name}</td>\s*<td>python", workers) is not None

            await wait_for(session_shown, timeout=ANSWER_S, interval=0.1)
            listing = (await h.get("/definitions")).text
            latest = (await h.get(f"/definitions/{v2.name}")).text
            first = (await h.get(f"/definitions/{v2.name}", params={"version": "1"})).text
            missing = await h.get(f"/definitions/{v2.name}", params={"version": "9"})
    assert "0 / 3" in workers
    assert f'<a href="/definitions/{v2.name}">{v2.name}</a>' in listing
    assert 'data-step="sub"' in latest and f'href="/definitions/{child.name}"' in latest
    assert 'class="on">v2</a>' in latest and "?version=1" in latest
    assert 'data-step="sub"' not in first and 'class="on">v1</a>' in first
    assert missing.status_code == 404


async def test_the_live_workers_page_shows_a_worker_that_connects(dash: Server, uid: str) -> None:
    @worker(f"{uid}_late")
    async def late(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    async with browser(dash) as h, h.stream("GET", "/workers/live") as response:
        events = sse_events(response)
        async with asyncio.timeout(ANSWER_S):
            event, first = await anext(events)
            assert event == "update" and late.name not in first
            async with serving(dash, late):
                async for _, data in events:
                    if f"<td>{late.name}</td>" in data:
                        break


# -- tokens and roles --------------------------------------------------------------------


@pytest.fixture
async def guarded(redis_server: EmbeddedRedis) -> AsyncIterator[Server]:
    config = make_config(
        redis_server.url,
        dashboard_port=free_port(),
        client_tokens=("client-secret",),
        worker_tokens=("worker-secret",),
    )
    async with Server(config) as server:
        yield server


async def test_sign_in_uses_the_client_tokens_and_actions_need_them(
    guarded: Server, uid: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with Client(guarded.address, token="client-secret") as client:
        # No worker serves the step: the execution waits, running, to be cancelled.
        wf = WorkflowBuilder(f"{uid}-guarded").add_step("s", f"{uid}_absent").build()
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        async with browser(guarded) as h:
            page = await h.get("/executions", headers=HTML)
            assert page.status_code == 303
            assert page.headers["location"] == "/login?next=/executions"
            stream = await h.get(f"/executions/{tx}/live")
            assert stream.status_code == 401
            cancel = await h.post(
                f"/executions/{tx}/actions/cancel", json={"reason": "x"}, headers=ACTION
            )
            assert cancel.status_code == 401

            wrong = await h.post("/login", json={"token": "guess"})
            assert wrong.status_code == 401 and "client role" in wrong.json()["error"]
            worker_token = await h.post("/login", json={"token": "worker-secret"})
            assert worker_token.status_code == 403
            assert "not for the client role" in worker_token.json()["error"]
            assert not h.cookies

            signed = await h.post("/login", json={"token": "client-secret"})
            assert signed.status_code == 200
            cookie = signed.headers["set-cookie"].lower()
            assert cookie.startswith(f"multiagents_token_{guarded.config.dashboard_port}=")
            assert "httponly" in cookie and "samesite=strict" in cookie
            assert (await h.get(f"/executions/{tx}", headers=HTML)).status_code == 200

            forged = await h.post(f"/executions/{tx}/actions/cancel", json={"reason": "forged"})
            assert forged.status_code == 403
            assert (await client.get_status(tx)).state in ("pending", "running")
            unknown = await h.post(f"/executions/{tx}/actions/explode", json={}, headers=ACTION)
            assert unknown.status_code == 404
            not_json = await h.post(
                f"/executions/{tx}/actions/cancel", content=b"reason=x", headers=ACTION
            )
            assert not_json.status_code == 400 and "body: expected JSON" in not_json.text

            with caplog.at_level(logging.INFO, logger="multiagents_server.orchestrator"):
                done = await h.post(
                    f"/executions/{tx}/actions/cancel",
                    json={"reason": "operator: stuck"},
                    headers=ACTION,
                )
            assert done.status_code == 200, done.text
            requested = [r for r in caplog.records if r.getMessage() == "cancel requested"]
            assert [getattr(r, "reason", None) for r in requested] == ["operator: stuck"]
            final = await client.wait(tx, timeout=10)
            assert final.state == "cancelled"
            again = await h.post(
                f"/executions/{tx}/actions/cancel", json={"reason": ""}, headers=ACTION
            )
            assert again.status_code == 409

            assert (await h.post("/logout", json={})).status_code == 403
            assert (await h.post("/logout", json={}, headers=ACTION)).status_code == 200
            assert (await h.get("/executions", headers=HTML)).status_code == 303


async def test_with_mutual_tls_the_dashboard_is_https_and_wants_a_client_certificate(
    redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    make_pki(tmp_path)
    config = make_config(
        redis_server.url,
        dashboard_port=free_port(),
        tls_cert_file=str(tmp_path / "server.pem"),
        tls_key_file=str(tmp_path / "server.key"),
        tls_client_ca_file=str(tmp_path / "ca.pem"),
    )
    trusted = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with_cert = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with_cert.load_cert_chain(str(tmp_path / "client.pem"), str(tmp_path / "client.key"))
    async with Server(config) as server:
        assert server.dashboard is not None and server.dashboard.url.startswith("https://")
        async with browser(server, verify=with_cert) as h:
            assert (await h.get("/executions")).status_code == 200
            signed = await h.post("/login", json={"token": "any: the server has none"})
            assert "secure" in signed.headers["set-cookie"].lower()
        async with browser(server, verify=trusted) as h:
            with pytest.raises(httpx.TransportError):
                await h.get("/executions")


# -- configuration and replicas ------------------------------------------------------------


def test_the_dashboard_port_is_checked() -> None:
    with pytest.raises(ConfigError, match="dashboard_port: must be 0"):
        load_config({"dashboard_port": 70_000}, environ={})
    with pytest.raises(ConfigError, match="dashboard_port: 50051 is the gRPC port"):
        load_config({"dashboard_port": 50051, "port": 50051}, environ={})
    assert load_config({}, environ={"MULTIAGENTS_DASHBOARD_PORT": "8080"}).dashboard_port == 8080


async def test_serve_with_the_dashboard_port_in_use_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "multiagents.cli", "serve", "--port", "0",
             "--dashboard-port", str(port), "--data-dir", str(tmp_path / "data")],
            cwd=ROOT, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is already in use"
    ]


@pytest.fixture
def two_process_server(
    redis_server: EmbeddedRedis,
) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    """`serve --processes 2 --dashboard-port P`: (gRPC address, dashboard URL, process)."""
    port, dashboard_port = free_port(), free_port()
    prefix = make_config(redis_server.url).key_prefix
    process = subprocess.Popen(
        [sys.executable, "-m", "multiagents.cli", "serve", "--processes", "2",
         "--port", str(port), "--dashboard-port", str(dashboard_port),
         "--redis-url", redis_server.url, "--key-prefix", prefix],
        cwd=ROOT, env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        yield f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard_port}/", process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def test_every_replica_serves_the_dashboard_and_streams_changes_made_on_another(
    two_process_server: tuple[str, str, subprocess.Popen[str]], uid: str
) -> None:
    address, url, process = two_process_server
    assert process.stdout is not None
    # Printed once every replica is up, its dashboard included.
    started = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 60)
    assert started.startswith(f"multiagents server listening on {address}"), started
    assert (await asyncio.to_thread(process.stdout.readline)) == f"dashboard on {url}\n"

    async def replica_of_a_new_connection() -> str:
        # A new connection each time: the kernel spreads them over the replicas.
        async with httpx.AsyncClient(base_url=url, timeout=ANSWER_S) as h:
            response = await h.get("/executions")
        assert response.status_code == 200
        return response.headers["x-multiagents-replica"]

    replicas: set[str] = set()
    for _ in range(200):
        replicas.add(await replica_of_a_new_connection())
        if len(replicas) == 2:
            break
    assert len(replicas) == 2

    async with Client(address) as client:
        wf = WorkflowBuilder(f"{uid}-across").add_step("s", f"{uid}_absent").build()
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        async with (
            httpx.AsyncClient(base_url=url, timeout=ANSWER_S) as watcher,
            watcher.stream("GET", f"/executions/{tx}/live") as response,
        ):
            watching = response.headers["x-multiagents-replica"]
            events = sse_events(response)
            async with asyncio.timeout(ANSWER_S):
                assert (await anext(events))[0] == "update"
                # Cancel through a connection to the other replica (a
                # kept-alive connection stays with its replica).
                async with contextlib.AsyncExitStack() as stack:
                    while True:
                        h = await stack.enter_async_context(
                            httpx.AsyncClient(base_url=url, timeout=ANSWER_S)
                        )
                        probe = await h.get("/executions")
                        if probe.headers["x-multiagents-replica"] != watching:
                            break
                    cancel = await h.post(
                        f"/executions/{tx}/actions/cancel",
                        json={"reason": "from the other replica"},
                        headers=ACTION,
                    )
                assert cancel.status_code == 200
                assert cancel.headers["x-multiagents-replica"] != watching
                seen = [e async for e in events]
    assert seen[-1][0] == "end"
    assert 'data-state="cancelled"' in seen[-2][1]


async def test_the_graph_draws_parallel_groups_maps_conditions_and_waits(
    dash: Server, uid: str
) -> None:
    @worker(f"{uid}_job")
    async def job(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"score": 0.9}

    when = "size(context.docs) > 2"

    def step(name: str) -> workflow_pb2.StepDefinition:
        return workflow_pb2.StepDefinition(name=name, worker=job.name)

    definition = workflow_pb2.WorkflowDefinition(
        name=f"{uid}-v2",
        version=1,
        steps=[
            workflow_pb2.StepDefinition(
                name="fan",
                parallel=workflow_pb2.ParallelGroup(
                    branches=[
                        workflow_pb2.Branch(name="left", steps=[step("l1")]),
                        workflow_pb2.Branch(name="right", steps=[step("r1"), step("r2")]),
                    ]
                ),
            ),
            workflow_pb2.StepDefinition(
                name="pick",
                condition=workflow_pb2.Condition(
                    cases=[workflow_pb2.ConditionCase(when=when, steps=[step("hi")])],
                    otherwise=[step("lo")],
                ),
            ),
            workflow_pb2.StepDefinition(
                name="each",
                map=workflow_pb2.MapStep(items="context.docs", step=step("doc")),
            ),
            workflow_pb2.StepDefinition(
                name="nap",
                sleep=workflow_pb2.Sleep(duration=duration_pb2.Duration(nanos=1_000_000)),
            ),
        ],
    )
    async with serving(dash, job), Client(dash.address) as client:
        await client.register_workflow(definition)
        tx = await client.execute_workflow(definition.name, {"docs": ["a", "b", "c"]})
        final = await client.wait(tx, timeout=20)
        assert final.state == "completed", final.error
    async with browser(dash, headers=HTML) as h:
        shape = (await h.get(f"/definitions/{definition.name}")).text
        run = (await h.get(f"/executions/{tx}")).text
    for kind, name in [
        ("parallel", "fan"),
        ("condition", "pick"),
        ("map", "each"),
        ("sleep", "nap"),
    ]:
        assert f'data-step="{name}" data-status="" data-kind="{kind}"' in shape
    for lane in ("left", "right", "when size(context.docs) &gt; 2", "otherwise", "each item"):
        assert f'data-lane="{lane}"' in shape
    # The execution's graph: statuses found by path, the case taken, the items counted.
    for name in ("fan", "l1", "r1", "r2", "pick", "hi", "each", "nap"):
        assert f'data-step="{name}" data-status="completed"' in run, name
    assert 'data-step="lo" data-status="skipped"' in run
    assert 'class="g-lane taken" data-lane="when size(context.docs) &gt; 2"' in run
    assert "3/3 items done" in run
    # One timeline row per item (by path), not three attempts of one step.
    for item in ("each/0", "each/1", "each/2"):
        assert f'<div class="t-row" data-step="{item}" data-outcome="succeeded">' in run


async def test_approve_reject_signal_and_resume_from_the_page(dash: Server, uid: str) -> None:
    definition = workflow_pb2.WorkflowDefinition(
        name=f"{uid}-approval",
        version=1,
        steps=[
            workflow_pb2.StepDefinition(
                name="editor",
                wait_for_signal=workflow_pb2.WaitForSignal(signal="editor", approval=True),
            )
        ],
    )
    async with Client(dash.address) as client, browser(dash) as h:
        await client.register_workflow(definition)
        approved = await client.execute_workflow(definition.name, {})
        rejected = await client.execute_workflow(definition.name, {})

        async def act(tx: str, name: str, **form: str) -> httpx.Response:
            return await h.post(f"/executions/{tx}/actions/{name}", json=form, headers=ACTION)

        bad = await act(approved, "signal", signal="editor", payload="{not json")
        assert bad.status_code == 400 and "payload: not JSON" in bad.json()["error"]
        missing = await act(approved, "approve", signal="", comment="")
        assert missing.status_code == 400 and "signal: required" in missing.json()["error"]

        ok = await act(approved, "approve", signal="editor", comment="fine")
        assert ok.status_code == 200, ok.text
        assert (await client.wait(approved, timeout=10)).state == "completed"
        no = await act(rejected, "reject", signal="editor", comment="too long")
        assert no.status_code == 200, no.text
        final = await client.wait(rejected, timeout=10)
        assert final.state == "failed" and "too long" in (final.error or {}).get("message", "")

        assert (await act(approved, "resume")).status_code == 409  # completed: nothing to resume
        assert (await act(rejected, "resume")).status_code == 200
        assert (await client.get_status(rejected)).state in ("pending", "running")
        await client.cancel_workflow(rejected, "test over")


async def test_the_execution_page_shows_the_progress_of_the_running_step(
    dash: Server, uid: str
) -> None:
    from multiagents import heartbeat

    release = asyncio.Event()

    @worker(f"{uid}_crawl")
    async def crawl(ctx: dict[str, Any]) -> dict[str, Any]:
        heartbeat({"pages_done": 37})
        await asyncio.wait_for(release.wait(), 20)
        return {}

    wf = WorkflowBuilder(f"{uid}-crawl").add_step("crawl", crawl.name).build()
    async with serving(dash, crawl), Client(dash.address) as client:
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})

        async def shown() -> bool:
            async with browser(dash, headers=HTML) as h:
                page = await h.get(f"/executions/{tx}")
            return 'id="progress"' in page.text and "pages_done" in page.text

        await wait_for(shown, timeout=15, interval=0.2)
        release.set()
        assert (await client.wait(tx, timeout=20)).state == "completed"
    async with browser(dash, headers=HTML) as h:
        page = await h.get(f"/executions/{tx}")
    assert 'id="progress"' not in page.text  # only running steps have progress


# -- the steps' output and usage ---------------------------------------------------------


def output_parts(events: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [part for event, data in events if event == "output" for part in json.loads(data)]


def shown_output(parts: list[dict[str, Any]]) -> dict[tuple[str, bool, int], dict[str, str]]:
    """What the page shows of each epoch after `parts`, as dashboard.js
    applies them: `head` (replaced by a cut) and `tail` (appended since),
    with the URL of the whole head when cut."""
    shown: dict[tuple[str, bool, int], dict[str, str]] = {}
    for part in parts:
        if part["type"] == "gap":
            continue
        epoch = shown.setdefault(
            (part["step"], part["compensation"], part["attempt"]),
            {"head": "", "tail": "", "expand": ""},
        )
        if part["type"] != "text":
            continue
        if part.get("cut"):
            epoch.update(head=part["text"], tail="", expand=part["expand"])
        else:
            epoch["tail"] += part["text"]
    return shown


async def live_events(
    h: httpx.AsyncClient, tx: str, *, until: str = "end", headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, str]]:
    async with h.stream("GET", f"/executions/{tx}/live", headers=headers) as response:
        assert response.status_code == 200
        async for event, data in sse_events(response):
            yield event, data
            if event == until:
                return


async def test_the_live_page_streams_each_attempts_output_as_text_then_the_usage(
    dash: Server, uid: str
) -> None:
    streaming, more = asyncio.Event(), asyncio.Event()
    hostile = "Dear <script>alert('x')</script> reader & <b>friend</b>, "

    @worker(f"{uid}_write")
    async def write(ctx: dict[str, Any]) -> dict[str, Any]:
        attempt = multiagents.current_command().attempt  # type: ignore[union-attr]
        multiagents.report_usage(input_tokens=100, output_tokens=40, model="<i>m</i>",
                                 cost_nano_usd=1_500_000)  # fmt: skip
        if attempt == 1:
            await multiagents.emit("a first draft")
            raise WorkerExecutionError("try again")
        await multiagents.emit(hostile)
        streaming.set()
        await asyncio.wait_for(more.wait(), 20)
        await multiagents.emit("the end.")
        return {}

    wf = (
        WorkflowBuilder(f"{uid}-letter")
        .add_step("write", write.name, retry=RetryPolicy(max_attempts=2, initial_interval=0.05))
        .build()
    )
    async with serving(dash, write), Client(dash.address) as client, browser(dash) as h:
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        await asyncio.wait_for(streaming.wait(), ANSWER_S)
        seen: list[tuple[str, str]] = []
        async with asyncio.timeout(ANSWER_S):
            async for event, data in live_events(h, tx):
                seen.append((event, data))
                # The backlog came (the page is late): let the step go on.
                if "the end." not in data and hostile in str(output_parts(seen)):
                    more.set()
    parts = output_parts(seen)
    # Each epoch apart, the second attempt announced by a rewind, in order.
    assert [(p["type"], p["attempt"]) for p in parts if p["type"] != "text"] == [("rewind", 2)]
    shown = shown_output(parts)
    assert shown[("write", False, 1)] == {"head": "", "tail": "a first draft", "expand": ""}
    assert shown[("write", False, 2)]["tail"] == hostile + "the end."
    # The text came while the step ran (before the update that shows it done)...
    events = [e for e, _ in seen]
    first_text = next(i for i, (e, d) in enumerate(seen) if e == "output" and hostile[:4] in d)
    done = next(i for i, (e, d) in enumerate(seen) if e == "update" and "completed" in d)
    assert first_text < done and events[-1] == "end"
    # ...as JSON text with <, > and & escaped: never markup, even misused.
    raw = "".join(d for e, d in seen if e == "output")
    assert "<" not in raw and ">" not in raw and "&" not in raw
    # Usage: both attempts counted for the step, escaped in the page.
    final = seen[-2][1]
    assert re.search(r'<tr data-usage="write"><td class="mono">write</td><td>&lt;i&gt;m&lt;/i&gt;'
                     r'</td><td class="num">200</td><td class="num">80</td>'
                     r'<td class="num">\$0\.003000</td></tr>', final), final  # fmt: skip
    assert "<i>m</i>" not in final
    assert '<dd id="usage-tokens">280</dd>' in final


async def test_a_late_page_gets_a_long_output_cut_and_loads_the_whole_on_demand(
    dash: Server, uid: str
) -> None:
    text = "".join(f"line {i:04d} of a long answer\n" for i in range(400))  # 10,800 characters

    @worker(f"{uid}_long")
    async def long(ctx: dict[str, Any]) -> dict[str, Any]:
        for n, i in enumerate(range(0, len(text), 500)):
            # Kinds alternate: the SDK would merge text chunks ready together.
            await multiagents.emit(text[i : i + 500], kind="log" if n % 2 else "token")
        return {}

    wf = WorkflowBuilder(f"{uid}-long").add_step("answer", long.name).build()
    async with serving(dash, long), Client(dash.address) as client:
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        assert (await client.wait(tx, timeout=20)).state == "completed"
        streamed = [o async for o in client.stream_output(tx)]
    # The attempt that completed (a loaded machine may lose a session and run it again).
    attempt = max(o.attempt for o in streamed)
    entries = [o for o in streamed if o.attempt == attempt and o.kind != "rewind"]
    async with browser(dash) as h:
        async with asyncio.timeout(ANSWER_S):
            seen = [e async for e in live_events(h, tx)]
        epoch = shown_output(output_parts(seen))[("answer", False, attempt)]
        # Between 2,000 and 4,000 characters shown: the end of the text.
        shown = epoch["head"] + epoch["tail"]
        assert 2_000 <= len(shown) <= 4_000 and text.endswith(shown)
        assert epoch["expand"].startswith(f"/executions/{tx}/output?step=answer&attempt={attempt}&")
        whole = await h.get(epoch["expand"])
        assert whole.status_code == 200
        assert whole.headers["content-type"] == "text/plain; charset=utf-8"
        assert whole.headers["x-content-type-options"] == "nosniff"
        assert whole.text + epoch["tail"] == text  # "Show all" then what came since

        # Up to an offset: the text of the entries up to it.
        assert len(entries) == 22
        third = await h.get(
            f"/executions/{tx}/output",
            params={"step": "answer", "attempt": str(attempt), "until": entries[2].offset},
        )
        assert third.text == text[:1500]
        for params, field in [
            ({"attempt": "1", "until": entries[0].offset}, "step: required"),
            ({"step": "answer", "attempt": "0", "until": entries[0].offset}, "attempt:"),
            ({"step": "answer", "attempt": "1", "until": "soon"}, "until:"),
            ({"step": "answer", "attempt": "1", "compensation": "x", "until": "1-1"},
             "compensation:"),
            ({"step": "nowhere", "attempt": "1", "until": entries[0].offset}, "step:"),
        ]:  # fmt: skip
            bad = await h.get(f"/executions/{tx}/output", params=params)
            assert bad.status_code == 400 and field in bad.json()["error"], (params, bad.text)


async def test_a_reconnecting_page_resumes_the_output_after_its_last_event_id(
    dash: Server, uid: str
) -> None:
    @worker(f"{uid}_count")
    async def count(ctx: dict[str, Any]) -> dict[str, Any]:
        for i in range(5):
            await multiagents.emit(f"{i} ")
            await multiagents.emit("\n", kind="log")  # entries apart
        return {}

    wf = WorkflowBuilder(f"{uid}-count").add_step("count", count.name).build()
    async with serving(dash, count), Client(dash.address) as client:
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})
        assert (await client.wait(tx, timeout=20)).state == "completed"
        entries = [o async for o in client.stream_output(tx)]
    assert len(entries) >= 2
    async with browser(dash) as h, asyncio.timeout(ANSWER_S):
        whole = [e async for e in live_events(h, tx)]
        resumed = [
            e async for e in live_events(h, tx, headers={"last-event-id": entries[0].offset})
        ]
        raw = (await h.get(f"/executions/{tx}/live")).text  # it ends: the execution did
        bad = await h.get(f"/executions/{tx}/live", headers={"last-event-id": "x"})
    expected = "".join(o.text for o in entries)
    assert shown_output(output_parts(whole))[("count", False, 1)]["tail"] == expected
    after_first = "".join(o.text for o in entries[1:])
    assert shown_output(output_parts(resumed))[("count", False, 1)]["tail"] == after_first
    # Output events carry the offset of their last entry as id.
    assert re.findall(r"^id: (\S+)$", raw, re.M)[-1] == entries[-1].offset
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["error"]


async def test_usage_per_step_execution_and_workflow_name_on_the_pages(
    dash: Server, uid: str
) -> None:
    @worker(f"{uid}_plan")
    async def plan(ctx: dict[str, Any]) -> dict[str, Any]:
        multiagents.report_usage(input_tokens=1200, output_tokens=300, model="small",
                                 cost_usd=0.0042)  # fmt: skip
        return {}

    @worker(f"{uid}_tool")
    async def tool(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}  # reports nothing

    wf = (
        WorkflowBuilder(f"{uid}-plan")
        .add_step("plan", plan.name)
        .add_step("tool", tool.name)
        .build()
    )
    async with serving(dash, plan, tool), Client(dash.address) as client:
        await client.register_workflow(wf)
        ids = [await client.execute_workflow(wf.name, {}) for _ in range(2)]
        for tx in ids:
            assert (await client.wait(tx, timeout=20)).state == "completed"
        silent = WorkflowBuilder(f"{uid}-silent").add_step("tool", tool.name).build()
        await client.register_workflow(silent)
        quiet = await client.execute_workflow(silent.name, {})
        assert (await client.wait(quiet, timeout=20)).state == "completed"
    async with browser(dash, headers=HTML) as h:
        page = (await h.get(f"/executions/{ids[1]}")).text
        listing = (await h.get("/executions", params={"workflow": wf.name})).text
        none = (await h.get(f"/executions/{quiet}")).text
    row = '<td class="num">1,200</td><td class="num">300</td><td class="num">$0.004200</td>'
    assert f'<tr data-usage="plan"><td class="mono">plan</td><td>small</td>{row}' in page
    assert 'data-usage="tool"' not in page  # reported nothing
    assert f'data-usage-total="execution"><td>This execution</td><td>small</td>{row}' in page
    both = '<td class="num">2,400</td><td class="num">600</td><td class="num">$0.008400</td>'
    assert f"<td>Every execution of {wf.name}</td><td></td>{both}" in page
    assert '<dd id="usage-cost">$0.004200</dd>' in page
    # The list's column, from the rows ListWorkflows returns (no other read).
    assert listing.count("1,500 tokens · $0.004200") == 2
    assert 'id="usage"' not in none and "usage-tokens" not in none


@pytest.mark.single_node  # counts one Redis node's commands
async def test_an_open_page_reads_the_status_again_only_when_the_execution_changes(
    dash: Server, redis_server: EmbeddedRedis, uid: str
) -> None:
    import redis.asyncio as aioredis

    @worker(f"{uid}_priced")
    async def priced(ctx: dict[str, Any]) -> dict[str, Any]:
        multiagents.report_usage(input_tokens=10, output_tokens=5, model="m", cost_nano_usd=7)
        return {}

    # The second step's worker never connects: the execution waits, unchanging.
    wf = (
        WorkflowBuilder(f"{uid}-idle")
        .add_step("priced", priced.name)
        .add_step("stuck", f"{uid}_absent")
        .build()
    )
    redis = aioredis.from_url(redis_server.url)

    async def usage_reads() -> int:
        # GetStatus of an execution that reported usage sums the name's usage
        # with one HMGET per bucket (64).
        stats = await redis.info("commandstats")
        return int(stats.get("cmdstat_hmget", {}).get("calls", 0))

    async with serving(dash, priced), Client(dash.address) as client:
        await client.register_workflow(wf)
        tx = await client.execute_workflow(wf.name, {})

        async def waiting() -> bool:
            return (await client.get_status(tx)).current_step == "stuck"

        await wait_for(waiting, timeout=ANSWER_S, interval=0.05)
        try:
            async with browser(dash) as h, h.stream("GET", f"/executions/{tx}/live") as response:
                events = sse_events(response)
                async with asyncio.timeout(ANSWER_S):
                    event, first = await anext(events)
                    assert event == "update" and 'data-usage-total="workflow"' in first
                    before = await usage_reads()
                    for _ in range(3):  # three renders, a second apart (the running bar)
                        assert (await anext(events))[0] == "update"
                    after = await usage_reads()
            assert after - before < 64, f"{after - before} HMGETs while nothing changed"
        finally:
            await redis.aclose()
            await client.cancel_workflow(tx, "test over")
