"""The command line, run as a user runs it: a subprocess against a real server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

import multiagents
from conftest import ROOT
from integration.helpers import serving
from multiagents import Client, WorkflowBuilder, worker
from multiagents.v1 import workflow_service_pb2 as pb
from multiagents.v1 import workflow_service_pb2_grpc
from multiagents_server.app import Server

COMMANDS = ["serve", "worker", "register", "run", "status", "watch", "history",
            "cancel", "list", "workers", "definitions", "completion", "demo",
            "signal", "approve", "reject", "resume", "inbox", "schedule"]  # fmt: skip


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    def call() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "multiagents.cli", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    return await asyncio.to_thread(call)


@pytest.mark.parametrize("command", COMMANDS)
async def test_every_command_has_help(command: str) -> None:
    result = await cli(command, "--help")
    assert result.returncode == 0
    assert f"multiagents {command}" in result.stdout


async def test_bad_input_gets_a_clear_error_and_exit_code(server: Server, uid: str) -> None:
    address = server.address
    cases = [
        (("run", "wf", "--input", "{oops", "--server", address), 2, "--input: not valid JSON"),
        (("run", "wf", "--input", "[1]", "--server", address), 2, "expected a JSON object"),
        (("run", f"{uid}.nope", "--server", address), 1, "no workflow named"),
        (("status", f"{uid}-tx", "--server", address), 1, "NOT_FOUND: transaction_id"),
        (("status", "tx", "--server", "127.0.0.1:1"), 1, "cannot reach the server"),
        (("register", "/no/such/file.yaml", "--server", address), 2, "No such file"),
    ]
    for args, code, message in cases:
        result = await cli(*args)
        assert (result.returncode, message in result.stderr) == (code, True), (args, result.stderr)


async def test_register_run_status_history_list(server: Server, uid: str, tmp_path: Path) -> None:
    @worker(f"{uid}.hello")
    async def hello(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"greeting": f"hello {ctx['name']}"}

    definition = tmp_path / "wf.yaml"
    definition.write_text(
        f"name: {uid}.wf\nversion: 1\nsteps:\n"
        f"  - {{name: greet, worker: {uid}.hello, timeout: 5}}\n"
    )
    address = server.address
    registered = await cli("register", str(definition), "--server", address)
    assert registered.returncode == 0, registered.stderr
    async with serving(server, hello):
        run = await cli("run", f"{uid}.wf", "--input", '{"name": "ada"}', "--server", address)
        workers = await cli("workers", "--server", address)
    assert f"{uid}.hello" in workers.stdout and "python" in workers.stdout
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("[") and line.endswith("state        completed") for line in lines)
    assert '"greeting": "hello ada"' in run.stdout
    tx = run.stdout.split("started ")[1].split(": ")[1].split()[0]
    status = await cli("status", tx, "--json", "--server", address)
    assert '"greeting": "hello ada"' in status.stdout
    history = await cli("history", tx, "--server", address)
    assert [line.split()[2] for line in history.stdout.splitlines()] == [
        "state", "start", "state", "done", "state",
    ]  # fmt: skip
    listed = await cli("list", "--workflow", f"{uid}.wf", "--server", address)
    assert tx in listed.stdout
    cancel = await cli("cancel", tx, "--server", address)
    assert cancel.returncode == 1 and "FAILED_PRECONDITION" in cancel.stderr


async def test_run_no_follow_prints_the_bare_id_and_list_prints_ids_status_accepts(
    server: Server, uid: str, client: Client
) -> None:
    await client.register_workflow(
        WorkflowBuilder(f"{uid}.wf").add_step("only", f"{uid}.nobody").build()
    )
    address = server.address
    runs = [await cli("run", f"{uid}.wf", "--no-follow", "--server", address) for _ in range(2)]
    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    ids = [r.stdout.strip() for r in runs]
    assert all(r.stdout == f"{tx}\n" and " " not in tx for r, tx in zip(runs, ids, strict=True))

    listed = await cli("list", "--workflow", f"{uid}.wf", "--server", address)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["TRANSACTION", "WORKFLOW", "STATE", "CREATED", "UPDATED", "STEP"]
    assert len(rows) == 2
    listed_ids = [row.split()[0] for row in rows]
    assert sorted(listed_ids) == sorted(ids)
    for row in rows:
        _, name, state, created_date, created_time, *_ = row.split()
        assert (name, state) == (f"{uid}.wf", "running")
        datetime.strptime(f"{created_date} {created_time}", "%Y-%m-%d %H:%M:%SZ")
    for tx in listed_ids:  # what list prints, status accepts
        status = await cli("status", tx, "--server", address)
        assert status.returncode == 0 and f"transaction  {tx}" in status.stdout, status.stderr
        await client.cancel_workflow(tx)

    empty = await cli("list", "--workflow", f"{uid}.none", "--server", address)
    assert empty.stdout == "no executions\n"


async def test_the_server_has_its_own_command_line() -> None:
    def call(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *argv, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    server, serve = await asyncio.gather(
        asyncio.to_thread(call, "-m", "multiagents_server"),
        asyncio.to_thread(call, "-m", "multiagents.cli", "serve"),
    )
    assert server.returncode == 0 and server.stdout.startswith("usage: multiagents-server")
    # `multiagents serve` is the same command line under the SDK's name.
    assert serve.returncode == 0 and serve.stdout.startswith("usage: multiagents serve")
    assert serve.stdout.partition("options:")[2] == server.stdout.partition("options:")[2]


async def test_version() -> None:
    result = await cli("--version")
    assert (result.returncode, result.stdout) == (0, f"multiagents {multiagents.__version__}\n")


async def test_cancel_sends_its_reason() -> None:
    # The server does not record the reason yet; this checks the flag reaches it.
    received: list[pb.CancelWorkflowRequest] = []

    class Recorder(workflow_service_pb2_grpc.WorkflowServiceServicer):
        async def CancelWorkflow(
            self, request: pb.CancelWorkflowRequest, context: grpc.aio.ServicerContext
        ) -> pb.CancelWorkflowResponse:
            received.append(request)
            return pb.CancelWorkflowResponse()

    recorder = grpc.aio.server()
    workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(Recorder(), recorder)
    address = f"127.0.0.1:{recorder.add_insecure_port('127.0.0.1:0')}"
    await recorder.start()
    try:
        given = await cli("cancel", "tx-1", "--reason", "customer asked", "--server", address)
        default = await cli("cancel", "tx-2", "--server", address)
    finally:
        await recorder.stop(None)
    assert (given.returncode, default.returncode) == (0, 0), (given.stderr, default.stderr)
    assert [(r.transaction_id, r.reason) for r in received] == [
        ("tx-1", "customer asked"),
        ("tx-2", "cancelled from the command line"),
    ]


async def test_approve_signal_inbox_and_resume_from_the_command_line(
    server: Server, uid: str, tmp_path: Path
) -> None:
    import json

    calls: list[int] = []

    @worker(f"{uid}.flaky")
    async def flaky(ctx: dict[str, Any]) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first call fails")
        return {"shipped": ctx["approval"]["approved"], "n": ctx["go"]["n"]}

    definition = tmp_path / "approve.yaml"
    definition.write_text(
        f"name: {uid}.approve\n"
        "steps:\n"
        "  - {name: approval, wait_for_signal: {signal: approval, approval: true}}\n"
        "  - {name: go, wait_for_signal: {signal: go, timeout: 60}}\n"
        f"  - {{name: ship, worker: {uid}.flaky, retry: {{max_attempts: 1}}}}\n"
    )
    address = ("--server", server.address)
    assert (await cli("register", str(definition), *address)).returncode == 0
    definitions = await cli("definitions", *address)
    assert "wait for approval approval" in definitions.stdout
    run = await cli("run", f"{uid}.approve", "--no-follow", *address)
    tx = run.stdout.strip()
    inbox = await cli("inbox", "--approvals", "--json", *address)
    waiting = [w for w in json.loads(inbox.stdout)["waiting"] if w["transaction_id"] == tx]
    assert [(w["path"], w["signal"]) for w in waiting] == [("approval", "approval")]
    bad = await cli("signal", tx, "nope", *address)
    assert bad.returncode == 1 and "no wait_for_signal step for 'nope'" in bad.stderr
    assert (await cli("approve", tx, "--by", "ana", *address)).stdout.strip() == f"approved: {tx}"
    sent = await cli("signal", tx, "go", "--payload", '{"n": 3}', *address)
    assert sent.returncode == 0, sent.stderr
    async with serving(server, flaky):
        async with Client(server.address) as client:
            failed = await client.wait(tx, timeout=20)
        assert failed.state == "failed"
        resumed = await cli("resume", tx, *address)
    assert resumed.returncode == 0, resumed.stderr
    assert "state        completed" in resumed.stdout
    history = await cli("history", tx, *address)
    assert "signal       go" in history.stdout and "taken by go" in history.stdout
