"""Structured logs: `serve --log-format json` writes one JSON object per
line, and the lines about a workflow carry its transaction id, step and
attempt; ends and failures are logged at INFO with their duration. The
text format keeps the same fields as key=value. And `serve` exports traces
when the OTEL_* variables ask for them (OTLP, console)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from integration.helpers import make_config, wait_for
from multiagents import (
    Client,
    RetryPolicy,
    WorkerExecutionError,
    WorkerRuntime,
    WorkflowBuilder,
    worker,
)
from multiagents_server.app import Server
from multiagents_server.embedded_redis import EmbeddedRedis, free_port
from multiagents_server.observability.logs import JsonFormatter, TextFormatter
from multiagents_server.store import StoreUnavailable

FAST = RetryPolicy(max_attempts=3, initial_interval=0.05)


@pytest.fixture
def json_server(redis_server: EmbeddedRedis, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`serve --log-format json` in a child process, stderr to a file; killed by pid."""
    port = free_port()
    log = tmp_path / "server.log"
    argv = [
        sys.executable, "-m", "multiagents.cli", "serve", "--processes", "1",
        "--port", str(port), "--log-format", "json",
        "--redis-url", redis_server.url, "--key-prefix", make_config("").key_prefix,
    ]  # fmt: skip
    with open(log, "wb") as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        yield f"127.0.0.1:{port}", log
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


async def test_json_lines_carry_the_transaction_step_attempt_and_duration(
    json_server: tuple[str, Path], uid: str
) -> None:
    address, log = json_server
    calls = 0

    @worker(f"{uid}.flaky")
    async def flaky(ctx: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise WorkerExecutionError("first attempt fails")
        return {}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("f", flaky, retry=FAST).build()

    async def registered() -> bool:
        try:
            async with Client(address) as client:
                await client.register_workflow(wf)
            return True
        except Exception:
            return False

    await wait_for(registered, timeout=30, interval=0.2)
    async with Client(address) as client, WorkerRuntime([flaky], servers=address) as _:
        tx = await client.execute_workflow(wf.name, {})
        assert (await client.wait(tx, timeout=20)).state == "completed"

    def about(message: str) -> list[dict[str, Any]]:
        return [
            line
            for line in lines(log)
            if line["message"] == message and line.get("transaction_id") == tx
        ]

    await wait_for(lambda: about("workflow completed"), timeout=10)
    (failed,) = about("step failed")
    assert failed["level"] == "INFO"
    assert failed["logger"] == "multiagents_server.workflows"
    assert (failed["step"], failed["attempt"], failed["worker"]) == ("f", 1, flaky.name)
    assert (failed["error_type"], failed["will_retry"]) == ("WorkerExecutionError", True)
    assert failed["duration_ms"] >= 0
    (done,) = about("workflow completed")
    assert (done["level"], done["workflow"], done["state"]) == ("INFO", wf.name, "completed")
    assert done["duration_ms"] >= 50  # the retry waited 50 ms
    (started,) = about("workflow started")
    assert started["workflow"] == wf.name
    assert all("time" in line and "message" in line for line in lines(log))


def test_the_text_format_appends_the_fields_and_keeps_the_traceback_last() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "step %s", ("failed",), None)
    record.transaction_id = "tx1"
    record.error = "two words"
    text = TextFormatter().format(record)
    assert text.endswith('INFO x: step failed transaction_id=tx1 error="two words"')
    try:
        raise ValueError("bad")
    except ValueError:
        record.exc_info = sys.exc_info()
    with_traceback = TextFormatter().format(record)
    first, _, rest = with_traceback.partition("\n")
    assert first.endswith('transaction_id=tx1 error="two words"')
    assert rest.startswith("Traceback") and rest.endswith("ValueError: bad")
    line = json.loads(JsonFormatter().format(record))
    assert (line["message"], line["transaction_id"]) == ("step failed", "tx1")
    assert line["exception"].endswith("ValueError: bad")


class _Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver: keeps what it is sent."""

    def __init__(self) -> None:
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []

    async def Export(
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.aio.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[dict[str, Any]]:
        """Each span as name, trace id (hex) and the service.name of its resource."""
        out = []
        for request in self.requests:
            for resource in request.resource_spans:
                service = {a.key: a.value.string_value for a in resource.resource.attributes}
                for scope in resource.scope_spans:
                    out += [
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "service": service["service.name"],
                        }
                        for span in scope.spans
                    ]
        return out


def _console_spans(text: str) -> list[dict[str, Any]]:
    """The console exporter's JSON spans, as `_Receiver.spans` gives them."""
    decoder = json.JSONDecoder()
    spans, at = [], text.find("{")
    while at != -1:
        span, end = decoder.raw_decode(text, at)
        spans.append(
            {
                "name": span["name"],
                "trace_id": span["context"]["trace_id"].removeprefix("0x"),
                "service": span["resource"]["attributes"]["service.name"],
            }
        )
        at = text.find("{", end)
    return spans


@pytest.mark.parametrize("exporter", ["otlp", "console"])
async def test_serve_exports_the_workflow_trace_when_otel_variables_ask(
    redis_server: EmbeddedRedis, tmp_path: Path, uid: str, exporter: str
) -> None:
    """`OTEL_EXPORTER_OTLP_ENDPOINT=... multiagents serve` (to a real OTLP
    receiver) and `OTEL_TRACES_EXPORTER=console` (JSON on stdout): the spans
    of a workflow, all in one trace, named by OTEL_SERVICE_NAME. (Every
    workflow is traced: OTEL_TRACES_SAMPLER says so.)"""
    receiver = _Receiver()
    otlp = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, otlp)
    otlp_port = otlp.add_insecure_port("127.0.0.1:0")
    await otlp.start()
    port = free_port()
    out = tmp_path / "stdout.txt"
    argv = [
        sys.executable, "-m", "multiagents.cli", "serve", "--processes", "1",
        "--port", str(port), "--redis-url", redis_server.url,
        "--key-prefix", make_config("").key_prefix,
    ]  # fmt: skip
    env = {**os.environ, "OTEL_SERVICE_NAME": uid, "OTEL_TRACES_SAMPLER": "parentbased_always_on"}
    if exporter == "otlp":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{otlp_port}"
    else:
        env["OTEL_TRACES_EXPORTER"] = "console"
    with open(out, "wb") as stdout:
        process = subprocess.Popen(argv, stdout=stdout, stderr=subprocess.DEVNULL, env=env)
    address = f"127.0.0.1:{port}"

    @worker(f"{uid}.ok")
    async def ok(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("a", ok).build()
    try:

        async def registered() -> bool:
            try:
                async with Client(address) as client:
                    await client.register_workflow(wf)
                return True
            except Exception:
                return False

        await wait_for(registered, timeout=30, interval=0.2)
        async with Client(address) as client, WorkerRuntime([ok], servers=address) as _:
            tx = await client.execute_workflow(wf.name, {})
            assert (await client.wait(tx, timeout=20)).state == "completed"
    finally:
        # The SDK exports what it holds at exit (to the receiver, which
        # keeps serving meanwhile).
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        await otlp.stop(None)
    spans = receiver.spans() if exporter == "otlp" else _console_spans(out.read_text())
    (workflow,) = [s for s in spans if s["name"] == f"workflow {wf.name}"]
    mine = {s["name"]: s for s in spans if s["trace_id"] == workflow["trace_id"]}
    assert set(mine) == {
        "multiagents.v1.WorkflowService/ExecuteWorkflow",
        f"workflow {wf.name}",
        "step a",
    }
    assert {s["service"] for s in mine.values()} == {uid}


async def test_background_work_stopped_by_redis_is_one_warning_not_a_lost_exception(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    # Found in the chaos runs: a session change's lease renewal, spawned and
    # never awaited, ended with StoreUnavailable while Redis was down, and
    # asyncio printed "Task exception was never retrieved" with a traceback.
    async def renew_while_redis_is_down() -> None:
        raise StoreUnavailable("Redis unreachable: connection refused")

    async def a_bug() -> None:
        raise KeyError("session")

    with caplog.at_level(logging.WARNING):
        tasks = [
            server.dispatcher.spawn(renew_while_redis_is_down()),
            server.dispatcher.spawn(a_bug()),
        ]
        await asyncio.wait(tasks, timeout=5)
        del tasks
        gc.collect()  # an unretrieved exception is reported when its task is collected
    # What the dispatcher and asyncio logged (the session's other tests may
    # leave warnings of their own meanwhile: a session that missed its beats).
    lines = [
        (r.levelname, r.getMessage(), r.exc_info is not None)
        for r in caplog.records
        if r.name in ("multiagents_server.dispatcher", "asyncio")
    ]
    assert lines == [
        ("WARNING", "background work not done, Redis unavailable: "
                    "Redis unreachable: connection refused", False),
        ("ERROR", "background work failed", True),
    ]  # fmt: skip
