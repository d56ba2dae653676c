"""OpenTelemetry traces across a real server and a real Python worker: one
trace per workflow holds the caller's span, the submit, the workflow, every
step attempt (retries and compensations included) and the worker's spans,
each the child of the right one. Spans are caught by the SDK's in-memory
exporter on the process's tracer provider (server, worker and caller all
run in this process, talking over gRPC); a Node worker process, the
conformance worker, writes its spans to a file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags

from conformance.harness import Toolchains, launch_worker
from integration.helpers import serving
from multiagents import Client, RetryPolicy, WorkerExecutionError, WorkflowBuilder, wire, worker
from multiagents.v1 import worker_service_pb2 as wpb
from multiagents.v1 import worker_service_pb2_grpc
from multiagents_server.app import Server

FAST = RetryPolicy(max_attempts=3, initial_interval=0.05)


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    """The in-memory exporter on this process's SDK tracer provider (set once
    per process: the first test module to need one installs it)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


def _attr(span: ReadableSpan, key: str) -> Any:
    assert span.attributes is not None
    return span.attributes.get(key)


async def test_one_trace_holds_submit_workflow_attempts_and_worker_spans(
    server: Server, client: Client, uid: str, exporter: InMemorySpanExporter
) -> None:
    calls = 0
    inner = trace.get_tracer("test")

    @worker(f"{uid}.ok")
    async def ok(ctx: dict[str, Any]) -> dict[str, Any]:
        with inner.start_as_current_span("inside the worker"):
            return {"ok": True}

    @worker(f"{uid}.flaky")
    async def flaky(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise WorkerExecutionError("first attempt fails")
        return {}

    @worker(f"{uid}.boom")
    async def boom(ctx: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("no")

    @worker(f"{uid}.undo")
    async def undo(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    wf = (
        WorkflowBuilder(f"{uid}.wf")
        .add_step("a", ok, compensation=undo)
        .add_step("f", flaky, retry=FAST)
        .add_step("x", boom)
        .build()
    )
    await client.register_workflow(wf)
    async with serving(server, ok, flaky, boom, undo):
        with inner.start_as_current_span("caller") as caller:
            tx = await client.execute_workflow(wf.name, {})
        status = await client.wait(tx, timeout=20)
    assert status.state == "compensated"

    def of_this_workflow(span: ReadableSpan) -> bool:
        return span.context.trace_id == caller.get_span_context().trace_id

    spans = [s for s in exporter.get_finished_spans() if of_this_workflow(s)]
    by_name: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        by_name.setdefault(span.name, []).append(span)

    def parent_of(span: ReadableSpan) -> int:
        assert span.parent is not None, span.name
        return span.parent.span_id

    (submit,) = by_name["multiagents.v1.WorkflowService/ExecuteWorkflow"]
    assert parent_of(submit) == caller.get_span_context().span_id
    (workflow,) = by_name[f"workflow {wf.name}"]
    assert parent_of(workflow) == submit.context.span_id
    assert _attr(workflow, "multiagents.transaction_id") == tx
    assert _attr(workflow, "multiagents.state") == "compensated"
    assert workflow.status.status_code is StatusCode.ERROR

    attempts = {
        (s.name, _attr(s, "multiagents.attempt")): s
        for s in spans
        if s.name.startswith(("step ", "compensate "))
    }
    assert sorted(attempts) == [
        ("compensate a", 1),
        ("step a", 1),
        ("step f", 1),
        ("step f", 2),
        ("step x", 1),
    ]
    for span in attempts.values():
        assert parent_of(span) == workflow.context.span_id
        assert workflow.start_time <= span.start_time <= span.end_time <= workflow.end_time
    assert attempts[("step f", 1)].status.status_code is StatusCode.ERROR
    assert _attr(attempts[("step f", 1)], "multiagents.will_retry") is True
    assert attempts[("step f", 2)].status.status_code is StatusCode.UNSET

    # Every worker run continues the traceparent of its attempt's command.
    runs = [s for s in spans if s.name.startswith("run ")]
    assert sorted((s.name, _attr(s, "multiagents.attempt")) for s in runs) == sorted(
        [
            (f"run {ok.name}", 1),
            (f"run {flaky.name}", 1),
            (f"run {flaky.name}", 2),
            (f"run {boom.name}", 1),
            (f"run {undo.name}", 1),
        ]
    )
    by_command = {_attr(s, "multiagents.command_id"): s for s in attempts.values()}
    for run in runs:
        attempt = by_command[_attr(run, "multiagents.command_id")]
        assert parent_of(run) == attempt.context.span_id
        assert attempt.start_time <= run.start_time <= run.end_time <= attempt.end_time
    (boom_run,) = [s for s in runs if s.name == f"run {boom.name}"]
    assert boom_run.status.status_code is StatusCode.ERROR
    (user_span,) = by_name["inside the worker"]
    (ok_run,) = [s for s in runs if s.name == f"run {ok.name}"]
    assert parent_of(user_span) == ok_run.context.span_id


async def test_a_node_workers_spans_join_the_workflows_trace_under_each_attempt(
    server: Server,
    client: Client,
    uid: str,
    exporter: InMemorySpanExporter,
    toolchains: Toolchains,
    tmp_path: Path,
) -> None:
    """A real Node worker process (the conformance worker with
    @opentelemetry/api and a tracer provider writing to a file) continues the
    traceparent of each command: its `run` spans are in the workflow's trace,
    each the child of the server's span of its attempt, retries included."""
    spans_file = tmp_path / "node-spans.jsonl"
    argv = [*toolchains.argv("node"), "--server", server.address, "--prefix", uid,
            "--spans-file", str(spans_file)]  # fmt: skip
    node = await launch_worker(argv, "node", uid, tmp_path / "worker-node.log")
    wf = (
        WorkflowBuilder(f"{uid}.wf")
        .add_step("a", f"{uid}.step")
        .add_step("f", f"{uid}.flaky", retry=FAST)
        .build()
    )
    try:
        await client.register_workflow(wf)
        with trace.get_tracer("test").start_as_current_span("caller") as caller:
            tx = await client.execute_workflow(wf.name, {"succeed_on_attempt": 2})
        assert (await client.wait(tx, timeout=20)).state == "completed"
    finally:
        node.kill()
        await node.proc.wait()

    trace_id = caller.get_span_context().trace_id
    attempts = {
        _attr(s, "multiagents.command_id"): s
        for s in exporter.get_finished_spans()
        if s.context.trace_id == trace_id and s.name.startswith("step ")
    }
    assert sorted((s.name, _attr(s, "multiagents.attempt")) for s in attempts.values()) == [
        ("step a", 1),
        ("step f", 1),
        ("step f", 2),
    ]
    # A span ends before its answer is sent: all are in the file by now.
    runs = [json.loads(line) for line in spans_file.read_text().splitlines()]
    assert sorted((r["name"], r["attributes"]["multiagents.attempt"]) for r in runs) == [
        (f"run {uid}.flaky", 1),
        (f"run {uid}.flaky", 2),
        (f"run {uid}.step", 1),
    ]
    for run in runs:
        attempt = attempts[run["attributes"]["multiagents.command_id"]]
        assert run["traceId"] == f"{trace_id:032x}"
        assert run["parentSpanId"] == f"{attempt.context.span_id:016x}"
        failed = run["attributes"]["multiagents.attempt"] == 1 and run["name"].endswith(".flaky")
        assert run["status"] == (2 if failed else 0)  # SpanStatusCode.ERROR, UNSET


async def test_the_command_a_worker_receives_names_its_attempt_in_the_workflow_trace(
    server: Server, client: Client, uid: str, exporter: InMemorySpanExporter
) -> None:
    """What a worker of any language receives on the wire (a raw session
    here, as the Node and Go SDKs see it, which hand `metadata` to the
    handler): `traceparent` = 00-<trace id of the submit>-<span id of the
    attempt span>-01, and the attempt span, once answered, has that id."""
    wf = WorkflowBuilder(f"{uid}.wf").add_step("s", f"{uid}.raw").build()
    await client.register_workflow(wf)
    requests: asyncio.Queue[wpb.ConnectRequest | None] = asyncio.Queue()

    async def outgoing() -> AsyncIterator[wpb.ConnectRequest]:
        while (message := await requests.get()) is not None:
            yield message

    hello = wpb.Hello(worker_id="raw", worker_names=[f"{uid}.raw"], max_concurrency=1)
    requests.put_nowait(wpb.ConnectRequest(hello=hello))
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = worker_service_pb2_grpc.WorkerServiceStub(channel).Connect(outgoing())
        assert (await call.read()).HasField("welcome")
        tx = await client.execute_workflow(wf.name, {})
        message = await asyncio.wait_for(call.read(), 10)
        command = message.command
        requests.put_nowait(
            wpb.ConnectRequest(
                result=wpb.CommandResult(command_id=command.command_id, result=wire.encode({}))
            )
        )
        assert (await client.wait(tx, timeout=10)).state == "completed"
        requests.put_nowait(None)
    (submit,) = [
        s
        for s in exporter.get_finished_spans()
        if s.name.endswith("/ExecuteWorkflow") and _attr(s, "multiagents.workflow") == wf.name
    ]
    (attempt,) = [
        s
        for s in exporter.get_finished_spans()
        if s.name == "step s" and _attr(s, "multiagents.command_id").startswith(f"{tx}:")
    ]
    version, trace_id, span_id, flags = command.metadata["traceparent"].split("-")
    assert (version, flags) == ("00", "01")
    assert int(trace_id, 16) == submit.context.trace_id == attempt.context.trace_id
    assert int(span_id, 16) == attempt.context.span_id


async def test_a_trace_the_caller_did_not_sample_records_no_span(
    server: Server, client: Client, uid: str, exporter: InMemorySpanExporter
) -> None:
    """The caller's sampling decision holds for the whole workflow: with an
    unsampled `traceparent` (flags 00) neither the server nor the worker
    records a span of it, and the commands carry flags 00 on."""
    seen: list[bool] = []

    @worker(f"{uid}.ok")
    async def ok(ctx: dict[str, Any]) -> dict[str, Any]:
        seen.append(trace.get_current_span().get_span_context().trace_flags.sampled)
        return {}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("a", ok).add_step("b", ok).build()
    await client.register_workflow(wf)
    unsampled = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(0))
    async with serving(server, ok):
        with trace.use_span(NonRecordingSpan(unsampled)):
            tx = await client.execute_workflow(wf.name, {})
        assert (await client.wait(tx, timeout=20)).state == "completed"
    assert seen == [False, False]
    assert [s.name for s in exporter.get_finished_spans() if s.context.trace_id == 0x1234] == []


async def test_a_sub_workflow_is_part_of_its_parents_trace(
    server: Server, client: Client, uid: str, exporter: InMemorySpanExporter
) -> None:
    """The child's workflow span is the child of the parent step's attempt
    span, and the child's steps and workers are in the same trace."""

    @worker(f"{uid}.ok")
    async def ok(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    child = WorkflowBuilder(f"{uid}.child").add_step("inner", ok).build()
    parent = WorkflowBuilder(f"{uid}.parent").add_workflow_step("call", child).build()
    await client.register_workflow(child)
    await client.register_workflow(parent)
    async with serving(server, ok):
        tx = await client.execute_workflow(parent.name, {})
        assert (await client.wait(tx, timeout=20)).state == "completed"
    (parent_span,) = [
        s for s in exporter.get_finished_spans() if s.name == f"workflow {parent.name}"
    ]
    trace_id = parent_span.context.trace_id
    spans = {s.name: s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id}
    call, child_span = spans["step call"], spans[f"workflow {child.name}"]
    inner, run = spans["step inner"], spans[f"run {ok.name}"]
    assert call.parent is not None and call.parent.span_id == parent_span.context.span_id
    assert child_span.parent is not None and child_span.parent.span_id == call.context.span_id
    assert inner.parent is not None and inner.parent.span_id == child_span.context.span_id
    assert run.parent is not None and run.parent.span_id == inner.context.span_id
