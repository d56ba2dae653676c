"""What a new user sees: stack traces of failed steps, every step, retry and
compensation as it happens, readable history, `--json` on every read command,
`definitions`, a step nobody serves, several `--server` addresses, shell
completion. Each runs the real command line against a real server."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import ROOT
from integration.helpers import serving
from multiagents import Client, RetryPolicy, WorkerExecutionError, WorkflowBuilder, worker
from multiagents.cli import main
from multiagents_server.app import Server
from multiagents_server.convert import MAX_STACK_TRACE_BYTES


async def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`multiagents ARGS` through the command line's entry point
    (`multiagents.cli.main`, what the `multiagents` script runs), in this
    process so that coverage counts it: in a thread, with its own event loop,
    stdout and stderr captured. test_cli.py runs it as a subprocess."""

    def call() -> subprocess.CompletedProcess[str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
        return subprocess.CompletedProcess(
            ["multiagents", *args], code, out.getvalue(), err.getvalue()
        )

    return await asyncio.to_thread(call)


FAST = RetryPolicy(max_attempts=3, initial_interval=0.05)
TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z  ")


def deep_helper_that_fails(order: Any) -> None:
    raise WorkerExecutionError(f"gateway down for {order}")


async def test_a_python_workers_traceback_is_in_status_and_history(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.charge")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        deep_helper_that_fails(ctx["order"])
        return {}

    wf = WorkflowBuilder(f"{uid}.wf").add_step(
        "charge", f"{uid}.charge", retry=RetryPolicy(max_attempts=1)
    )
    await client.register_workflow(wf.build())
    async with serving(server, charge):
        tx = await client.execute_workflow(f"{uid}.wf", {"order": "A1"})
        status = await client.wait(tx, timeout=20)
    assert status.state == "failed"
    # GetStatus: the step's last failure and the workflow's failure.
    for failure in (status.steps[0].last_failure, status.error):
        assert failure is not None
        assert failure["stack_trace"].startswith("Traceback (most recent call last):")
        assert "deep_helper_that_fails" in failure["stack_trace"]
    # GetHistory: the ErrorEvent.
    errors = [e.error for e in await client.get_history(tx) if e.WhichOneof("event") == "error"]
    assert len(errors) == 1 and "deep_helper_that_fails" in errors[0].error.stack_trace

    address = server.address
    shown = await cli("status", tx, "--server", address)
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"\| .*WorkerExecutionError: gateway down for A1\n", shown.stdout)
    assert "deep_helper_that_fails" in shown.stdout
    as_json = json.loads((await cli("status", tx, "--json", "--server", address)).stdout)
    assert "deep_helper_that_fails" in as_json["steps"][0]["last_failure"]["stack_trace"]
    assert "deep_helper_that_fails" in as_json["failure"]["stack_trace"]
    history = await cli("history", tx, "--server", address)
    assert re.search(r"\| .*WorkerExecutionError: gateway down for A1\n", history.stdout)
    error_line = next(line for line in history.stdout.splitlines() if "  error  " in line)
    assert TIME.match(error_line), error_line
    assert (
        "charge" in error_line
        and "attempt 1" in error_line
        and f"worker {uid}.charge" in error_line
    )
    assert "WorkerExecutionError [application]: gateway down for A1 (no retry)" in error_line


def connect_to_gateway(order: Any) -> None:
    raise ConnectionRefusedError(f"gateway refused {order}")


async def test_a_failures_kind_and_cause_chain_are_shown(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.charge")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        try:
            connect_to_gateway(ctx["order"])
        except OSError as exc:
            raise WorkerExecutionError("charge failed") from exc
        return {}

    wf = WorkflowBuilder(f"{uid}.wf").add_step(
        "charge", f"{uid}.charge", retry=RetryPolicy(max_attempts=1)
    )
    await client.register_workflow(wf.build())
    async with serving(server, charge):
        tx = await client.execute_workflow(f"{uid}.wf", {"order": "A1"})
        status = await client.wait(tx, timeout=20)

    assert status.error is not None
    assert (status.error["kind"], status.error["type"]) == ("application", "WorkerExecutionError")
    cause = status.error["cause"]
    assert (cause["kind"], cause["type"], cause["message"]) == (
        "application", "ConnectionRefusedError", "gateway refused A1"
    )  # fmt: skip
    assert cause["cause"] is None
    # Each level carries its own frames: the cause where it was raised.
    assert "connect_to_gateway" in cause["stack_trace"]
    assert "connect_to_gateway" not in status.error["stack_trace"]
    for command in ("status", "history"):
        shown = await cli(command, tx, "--server", server.address)
        lines = shown.stdout.splitlines()
        error = next(i for i, line in enumerate(lines) if "charge failed" in line)
        assert "WorkerExecutionError [application]: charge failed" in lines[error]
        assert lines[error + 1].strip() == (
            "caused by ConnectionRefusedError [application]: gateway refused A1"
        ), command
        # The end of the innermost trace: where the error began.
        assert any("connect_to_gateway" in line for line in lines[error + 2 :]), shown.stdout


async def test_a_long_stack_trace_keeps_its_last_8_kib(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.long")
    async def long(ctx: dict[str, Any]) -> dict[str, Any]:
        raise WorkerExecutionError("x" * 20_000 + " the end")

    wf = WorkflowBuilder(f"{uid}.wf").add_step("long", f"{uid}.long", retry=FAST)
    await client.register_workflow(wf.build())
    async with serving(server, long):
        tx = await client.execute_workflow(f"{uid}.wf", {})
        status = await client.wait(tx, timeout=20)
    stack = status.steps[0].last_failure["stack_trace"]  # type: ignore[index]
    assert len(stack.encode()) <= MAX_STACK_TRACE_BYTES
    assert stack.startswith("...(trimmed)\n") and stack.rstrip().endswith("the end")


async def test_run_shows_every_step_retries_and_compensations(
    server: Server, client: Client, uid: str
) -> None:
    calls: list[str] = []

    @worker(f"{uid}.reserve")
    async def reserve(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"reserved": True}

    @worker(f"{uid}.release")
    async def release(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"released": True}

    @worker(f"{uid}.charge")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        calls.append("charge")
        if len(calls) == 1:
            raise WorkerExecutionError("gateway timeout")
        return {"charged": 12}

    @worker(f"{uid}.ship")
    async def ship(ctx: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("no address")

    wf = (
        WorkflowBuilder(f"{uid}.wf")
        .add_step("reserve", f"{uid}.reserve", compensation=f"{uid}.release", retry=FAST)
        .add_step("charge", f"{uid}.charge", retry=FAST)
        .add_step("ship", f"{uid}.ship", retry=FAST)
    )
    await client.register_workflow(wf.build())
    address = server.address
    async with serving(server, reserve, release, charge, ship):
        run = await cli("run", f"{uid}.wf", "--server", address)
    assert run.returncode == 3, run.stderr
    live = [line.split("] ", 1)[1] for line in run.stdout.splitlines() if line.startswith("[")]
    stacks = [line for line in live if line.startswith("      | ")]  # ends of stack traces
    live = [line for line in live if line not in stacks]
    assert all(TIME.match(line) for line in live), live
    assert any("raise ValueError" in line for line in stacks), stacks
    fields = [line[len("2026-01-01 00:00:00.000Z  ") :].split() for line in live]
    what = [(f[0], f[1], f[3]) for f in fields if f[0] in ("start", "error", "compensate")]
    assert what == [
        ("start", "reserve", "1"),
        ("start", "charge", "1"),
        ("error", "charge", "1"),
        ("start", "charge", "2"),
        ("start", "ship", "1"),
        ("error", "ship", "1"),
        ("compensate", "reserve", "1"),
    ], live
    text = "\n".join(live)
    assert "WorkerExecutionError [application]: gateway timeout (will retry)" in text
    assert "ValueError [application]: no address (no retry)" in text
    assert "comp.done" in text and '{"released": true}' in text
    assert live[-1].endswith("state        compensated")


async def test_watch_json_lines_and_every_read_command_takes_json(
    server: Server, client: Client, uid: str, tmp_path: Path
) -> None:
    @worker(f"{uid}.hello")
    async def hello(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"greeting": "hi"}

    definition = tmp_path / "wf.yaml"
    definition.write_text(
        f"name: {uid}.wf\nversion: 2\nsteps:\n"
        f"  - {{name: greet, worker: {uid}.hello, compensation: {uid}.undo, timeout: 5,"
        f" retry: {{max_attempts: 4, initial_interval: 0.5}}}}\n"
    )
    address = server.address
    assert (await cli("register", str(definition), "--server", address)).returncode == 0
    async with serving(server, hello):
        tx = await client.execute_workflow(f"{uid}.wf", {})
        await client.wait(tx, timeout=20)
        workers = await cli("workers", "--json", "--server", address)
    watch = await cli("watch", tx, "--json", "--server", address)
    assert watch.returncode == 0, watch.stderr
    lines = [json.loads(line) for line in watch.stdout.splitlines()]
    assert [next(iter(line)) for line in lines] == ["event"] * 5 + ["final_status"]
    assert lines[1]["event"]["kind"] == "command" and lines[1]["event"]["step"] == "greet"
    assert lines[3]["event"]["result"] == {"greeting": "hi"}
    assert lines[-1]["final_status"]["state"] == "completed"

    history = json.loads((await cli("history", tx, "--json", "--server", address)).stdout)
    assert [e["kind"] for e in history["events"]] == [
        "status", "command", "status", "result", "status",
    ]  # fmt: skip
    assert history["events"][1]["attempt"] == 1 and history["events"][1]["worker"] == f"{uid}.hello"
    listed = await cli("list", "--workflow", f"{uid}.wf", "--json", "--server", address)
    executions = json.loads(listed.stdout)["executions"]
    assert [(e["transaction_id"], e["state"]) for e in executions] == [(tx, "completed")]
    sessions = json.loads(workers.stdout)["sessions"]
    assert any(f"{uid}.hello" in s["worker_names"] for s in sessions)

    definitions = json.loads((await cli("definitions", "--json", "--server", address)).stdout)
    mine = [d for d in definitions["definitions"] if d["name"] == f"{uid}.wf"]
    assert mine == [
        {"name": f"{uid}.wf", "version": 2, "steps": [
            {"name": "greet", "worker": f"{uid}.hello", "compensation": f"{uid}.undo",
             "retry": {"max_attempts": 4, "initial_interval": 0.5, "backoff_coefficient": 2.0,
                       "maximum_interval": 50.0},
             "timeout": 5.0},
        ]},
    ]  # fmt: skip
    text = await cli("definitions", "--server", address)
    assert f"{uid}.wf v2" in text.stdout
    assert re.search(rf"1\. greet +worker {uid}\.hello  compensation {uid}\.undo", text.stdout)


async def test_a_step_nobody_serves_says_so(server: Server, client: Client, uid: str) -> None:
    wf = WorkflowBuilder(f"{uid}.wf").add_step("lonely", f"{uid}.nobody")
    await client.register_workflow(wf.build())
    address = server.address
    tx = await client.execute_workflow(f"{uid}.wf", {})
    try:
        status = await cli("status", tx, "--server", address)
        assert f"waiting for a worker of type {uid}.nobody (none connected)" in status.stdout
        as_json = json.loads((await cli("status", tx, "--json", "--server", address)).stdout)
        assert as_json["waiting_for_worker"] == f"{uid}.nobody"

        watch = subprocess.Popen(
            [sys.executable, "-m", "multiagents.cli", "watch", tx, "--server", address],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert watch.stdout is not None
            line = await asyncio.wait_for(
                asyncio.to_thread(_line_with, watch.stdout, "waiting"), 30
            )
            assert line.endswith(f"waiting for a worker of type {uid}.nobody (none connected)")
        finally:
            watch.kill()
            await asyncio.to_thread(watch.wait)
    finally:
        await client.cancel_workflow(tx)

    @worker(f"{uid}.nobody")
    async def nobody(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    tx = await client.execute_workflow(f"{uid}.wf", {})
    async with serving(server, nobody):
        await client.wait(tx, timeout=20)
        status = await cli("status", tx, "--server", address)
    assert "waiting" not in status.stdout


def _line_with(stream: Any, text: str) -> str:
    for line in stream:
        if text in line:
            return str(line).rstrip("\n")
    raise AssertionError(f"no line with {text!r}")


async def test_several_servers_use_the_first_that_answers(
    server: Server, client: Client, uid: str
) -> None:
    wf = WorkflowBuilder(f"{uid}.wf").add_step("only", f"{uid}.nobody")
    await client.register_workflow(wf.build())
    dead, address = "127.0.0.1:1", server.address
    run = await cli("run", f"{uid}.wf", "--no-follow", "--server", dead, "--server", address)
    assert run.returncode == 0, run.stderr
    tx = run.stdout.strip()
    status = await cli("status", tx, "--server", dead, "--server", address)
    assert status.returncode == 0 and f"transaction  {tx}" in status.stdout, status.stderr
    await client.cancel_workflow(tx)
    both_dead = await cli("status", tx, "--server", dead, "--server", "127.0.0.1:2")
    assert both_dead.returncode == 1
    assert "cannot reach the server at 127.0.0.1:1 or 127.0.0.1:2" in both_dead.stderr


async def test_bash_completion_completes_commands_and_options() -> None:
    script = (await cli("completion", "bash")).stdout

    def complete(*words: str) -> list[str]:
        program = (
            f"{script}\nCOMP_WORDS=(multiagents {' '.join(words)}); "
            f'COMP_CWORD={len(words)}; _multiagents; echo "${{COMPREPLY[@]}}"'
        )
        result = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
        return result.stdout.split()

    assert complete("de") == ["definitions", "demo"]
    assert complete("history", "--j") == ["--json"]
    assert "compensated" in complete("list", "--state", "''")
    assert complete("completion", "''") == ["bash", "zsh"]


async def test_the_default_worker_concurrency_is_8(
    server: Server, uid: str, tmp_path: Path
) -> None:
    module = tmp_path / f"w_{uid.replace('-', '_').replace('.', '_')}.py"
    module.write_text(
        f"from multiagents import worker\n@worker('{uid}.w')\nasync def w(ctx):\n    return {{}}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "multiagents.cli", "worker", str(module),
         "--server", server.address],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):
            listed = await cli("workers", "--json", "--server", server.address)
            mine = [
                s for s in json.loads(listed.stdout)["sessions"] if f"{uid}.w" in s["worker_names"]
            ]
            if mine:
                break
            await asyncio.sleep(0.1)
        assert [s["max_concurrency"] for s in mine] == [8]
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)
