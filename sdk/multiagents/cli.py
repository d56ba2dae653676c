"""The `multiagents` command line: serve, worker, register, definitions, run,
status, watch, list, cancel, signal, approve, reject, resume, inbox, history,
schedule (create, list, show, pause, unpause, delete), limits (set, list, delete),
workers, completion, demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import json_format

from multiagents import __version__, _server, wire
from multiagents.channel import open_channel
from multiagents.client import (
    OVERLAP_POLICIES,
    STATES,
    Client,
    RateLimitInfo,
    ScheduleInfo,
    StatusUpdate,
    WorkflowStatus,
)
from multiagents.errors import (
    AlreadyExistsError,
    InvalidArgumentError,
    RPCError,
    ServerNotInstalledError,
    ServerUnavailableError,
    describe_failure,
    failure_chain,
    failure_dict,
)
from multiagents.output import Usage
from multiagents.runtime import DEFAULT_MAX_CONCURRENCY, WorkerStartError
from multiagents.syntax import json_error, yaml_error
from multiagents.v1 import events_pb2, workflow_pb2
from multiagents.worker import WorkerFunction, check_unique_name

DEFAULT_SERVER = "127.0.0.1:50051"
DEFAULT_CONCURRENCY = DEFAULT_MAX_CONCURRENCY  # the same in every SDK


class UsageError(Exception):
    """Bad input on the command line; printed without a traceback, exit 2."""


def known_error(exc: BaseException) -> str | None:
    """The one-line message of an error caused by the input or the environment
    (printed as `error: ...`, exit 2), or None for anything else: a bug, which
    keeps its traceback."""
    if isinstance(exc, UsageError):
        return str(exc)
    if isinstance(exc, WorkerStartError):
        refused = exc.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        hint = " (check --token or MULTIAGENTS_TOKEN)" if refused else ""
        return f"the server refused the worker: {exc}{hint}"
    return None


def _print(*parts: object, end: str = "\n") -> None:
    print(*parts, end=end, flush=True)


def _error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


# -- helpers ---------------------------------------------------------------------


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{what}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(value, dict):
        raise UsageError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def read_input(args: argparse.Namespace) -> dict[str, Any]:
    if args.input_file:
        try:
            text = Path(args.input_file).read_text()
        except OSError as exc:
            raise UsageError(
                f"--input-file: cannot read {args.input_file}: {exc.strerror}"
            ) from None
        return parse_json_object(text, f"--input-file {args.input_file}")
    return parse_json_object(args.input, "--input") if args.input else {}


def load_definition(path: str) -> dict[str, Any]:
    """The dict form of a YAML (.yaml, .yml) or JSON definition file.

    A syntax error is reported with the file, line and column.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file") from None
    data: Any = None
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise UsageError("YAML definitions need PyYAML: pip install pyyaml") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(yaml_error(path, exc)) from None
    elif text.strip():
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(json_error(path, exc)) from None
    if data is None:
        raise UsageError(f"{path}: the file is empty: expected a workflow definition")
    if not isinstance(data, dict):
        raise UsageError(
            f"{path}: expected a mapping with name, version and steps, got {type(data).__name__}"
        )
    return data


def _load_file(name: str, path: Path, *, package: bool = False) -> ModuleType:
    """Execute the file at `path` as the module `name` (a package, whose
    submodules are found next to it, when `package`)."""
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if package else None
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_workers(targets: Sequence[str]) -> list[WorkerFunction]:
    """Every @worker in the given modules (dotted names or .py paths).

    Two functions with the same worker name are an error: one would never run.
    """
    found: dict[str, WorkerFunction] = {}
    sys.path.insert(0, os.getcwd())
    for target in targets:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise UsageError(f"worker module {target}: no such file")
            module = _load_file(path.stem, path)
        else:
            try:
                module = importlib.import_module(target)
            except ModuleNotFoundError as exc:
                raise UsageError(f"worker module {target}: {exc}") from None
        for value in vars(module).values():
            if isinstance(value, WorkerFunction):
                try:
                    check_unique_name(found, value)
                except ValueError as exc:
                    raise UsageError(str(exc)) from None
                found[value.name] = value
    if not found:
        raise UsageError(f"no @worker functions found in {', '.join(targets)}")
    return list(found.values())


# How much of a worker's stack trace the command line prints (its last lines:
# the innermost frames and the exception); `--json` gives all the server kept.
STACK_LINES = 12


def stack_lines(failure: dict[str, Any] | None, indent: str) -> list[str]:
    """The last STACK_LINES lines of the innermost stack trace of a failure's
    chain (where the error began: a sub-workflow's worker, a wrapped error), indented."""
    stacks = [f["stack_trace"] for f in failure_chain(failure) if f.get("stack_trace")]
    lines = stacks[-1].rstrip("\n").splitlines() if stacks else []
    if not lines:
        return []
    shown = lines[-STACK_LINES:]
    if len(lines) > STACK_LINES:
        shown = [f"... ({len(lines) - STACK_LINES} more lines: --json shows them)", *shown]
    return [f"{indent}| {line}" for line in shown]


def failure_lines(failure: dict[str, Any], indent: str) -> list[str]:
    """A failure's causes, one `caused by` line each, then the end of its stack trace."""
    causes = [f"{indent}caused by {describe_failure(c)}" for c in failure_chain(failure)[1:]]
    return causes + stack_lines(failure, indent)


def format_status(status: WorkflowStatus, waiting_for: str | None = None) -> str:
    lines = [
        f"transaction  {status.transaction_id}",
        f"workflow     {status.workflow_name} v{status.workflow_version}",
        f"state        {status.state}",
    ]
    if len(status.running_steps) > 1:
        lines.append(f"running      {', '.join(status.running_steps)}")
    elif status.current_step:
        lines.append(f"current step {status.current_step}")
    if waiting_for:
        lines.append(f"waiting      {waiting_message(waiting_for)}")
    for w in status.waiting_signals:
        what = "an approval" if w.approval else "signal"
        lines.append(f"waiting      {w.path}: for {what} {w.signal!r}")
    for step in status.steps:
        failure = f"  ({describe_failure(step.last_failure)})" if step.last_failure else ""
        used = f"  {usage_text(step.usage)}" if step.usage else ""
        if step.kind in ("step", "workflow", "item"):
            detail = f"attempts={step.attempts}{used}{failure}"
        else:
            detail = f"{step.kind} {step.branch}".rstrip() + failure
        lines.append(f"  - {step.path or step.name:<24} {step.status:<20} {detail}")
        progress = step.progress or {}
        if "waiting_for_rate_limit" in progress:
            limit, reason = progress["waiting_for_rate_limit"], progress.get("reason", "")
            lines.append(f"      waiting for rate limit {limit} ({reason})")
        elif step.progress is not None:
            lines.append(f"      progress {_short(step.progress)}")
        if step.last_failure and status.state != "completed":
            lines += failure_lines(step.last_failure, "      ")
    if status.error:
        lines.append(f"error        {describe_failure(status.error)}")
        same = any(s.last_failure == status.error for s in status.steps)
        if not same:
            lines += failure_lines(status.error, "      ")
    if status.requires_manual_intervention:
        lines.append("ATTENTION    a compensation failed: manual intervention required")
    lines.append(f"results      {json.dumps(status.step_results, sort_keys=True)}")
    if status.usage:
        lines.append(f"usage        {usage_text(status.usage)}")
    if status.workflow_usage:
        lines.append(f"all runs     {usage_text(status.workflow_usage)} ({status.workflow_name})")
    return "\n".join(lines)


def usage_text(u: Usage | None) -> str:
    """`in=12 out=340 tokens $0.000200 [model]` (cost in US dollars)."""
    if u is None:
        return "-"
    models = f" [{u.model}]" if u.model else ""
    return f"in={u.input_tokens} out={u.output_tokens} tokens ${u.cost_usd:.6f}{models}"


def usage_dict(u: Usage | None) -> dict[str, Any] | None:
    if u is None:
        return None
    return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
            "model": u.model, "cost_nano_usd": u.cost_nano_usd}  # fmt: skip


def waiting_message(worker_name: str) -> str:
    return f"waiting for a worker of type {worker_name} (none connected)"


def status_json(status: WorkflowStatus, waiting_for: str | None = None) -> dict[str, Any]:
    """The `--json` form of a status: the seed's dict, each step's last
    failure, and the worker type it waits for when none is connected."""
    data = status.to_dict()
    data["workflow_version"] = status.workflow_version
    for entry, step in zip(data["steps"], status.steps, strict=True):
        entry["last_failure"] = step.last_failure
        entry["usage"] = usage_dict(step.usage)
        entry["progress"] = step.progress
    data["usage"] = usage_dict(status.usage)
    data["workflow_usage"] = usage_dict(status.workflow_usage)
    data["waiting_for_worker"] = waiting_for
    return data


def _short(value: Any, limit: int = 100) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def event_dict(event: events_pb2.WorkflowEvent) -> dict[str, Any]:
    """One history event as plain data: sequence, time, kind, step, attempt,
    worker and what happened (result, error or state)."""
    kind = event.WhichOneof("event")
    body = getattr(event, kind)
    out: dict[str, Any] = {
        "sequence": event.sequence,
        "time": body.timestamp.ToDatetime(tzinfo=UTC).isoformat(timespec="milliseconds"),
        "kind": kind,
    }
    if kind == "status":
        out["state"] = STATES[body.state]
        out["step"] = body.current_step or None
        if body.HasField("failure"):
            out["error"] = failure_dict(body.failure)
        if body.cancel_reason:
            out["cancel_reason"] = body.cancel_reason
        return out
    if kind == "node":
        out["step"] = body.path
        out["what"] = body.what
        out["details"] = wire.decode(body.details) if body.details.data else {}
        return out
    if kind == "signal":
        out["signal"] = body.signal
        out["payload"] = wire.decode(body.payload)
        out["signal_id"] = body.signal_id or None
        out["consumed_by"] = body.consumed_by or None
        return out
    out["step"] = body.path or body.step
    out["worker"] = body.worker_name
    if kind in ("command", "compensation", "error"):
        out["attempt"] = body.retry_count + 1
    if kind == "command" and body.child_transaction_id:
        out["child_transaction_id"] = body.child_transaction_id
    if kind == "result":
        out["compensation"] = body.compensation
        out["result"] = wire.decode(body.result)
    if kind == "error":
        out["compensation"] = body.compensation
        out["will_retry"] = body.will_retry
        out["error"] = failure_dict(body.error)
    return out


_LABELS = {"command": "start", "compensation": "compensate", "result": "done",
           "error": "error", "status": "state", "node": "flow", "signal": "signal"}  # fmt: skip


def format_event(e: dict[str, Any]) -> list[str]:
    """A history event as readable lines: time, kind, step, attempt, worker,
    a short result or the error (with the end of its stack trace)."""
    time = e["time"].replace("T", " ").replace("+00:00", "Z")
    kind = e["kind"]
    label = _LABELS[kind]
    if kind in ("result", "error") and e.get("compensation"):
        label = f"comp.{label}"
    if kind == "status":
        step = f" (step {e['step']})" if e["step"] else ""
        reason = f"  cancel requested: {e['cancel_reason']}" if e.get("cancel_reason") else ""
        return [f"{time}  {label:<12} {e['state']}{step}{reason}"]
    if kind == "node":
        details = f"  {_short(e['details'])}" if e["details"] else ""
        return [f"{time}  {label:<12} {e['step']:<16} {e['what']}{details}"]
    if kind == "signal":
        taken = f"taken by {e['consumed_by']}" if e["consumed_by"] else "kept for a later wait"
        return [f"{time}  {label:<12} {e['signal']:<16} {_short(e['payload'])}  {taken}"]
    parts = [f"{time}  {label:<12} {e['step']:<16}"]
    if "attempt" in e:
        parts.append(f"attempt {e['attempt']}")
    if e.get("worker"):
        parts.append(f"worker {e['worker']}")
    if e.get("child_transaction_id"):
        parts.append(f"child {e['child_transaction_id']}")
    lines: list[str] = []
    if kind == "result":
        parts.append(_short(e["result"]))
    elif kind == "error":
        error = e["error"]
        retry = "will retry" if e["will_retry"] else "no retry"
        parts.append(f"{describe_failure(error)} ({retry})")
        lines = failure_lines(error, "      ")
    return ["  ".join(parts), *lines]


async def connected_worker_names(address: str, token: str | None) -> set[str]:
    """Worker names served by some connected session of any replica."""
    from multiagents.monitoring import WorkerMonitor

    monitor = WorkerMonitor(address=address, token=token)
    try:
        sessions = await monitor.sessions()
    finally:
        await monitor.close()
    return {name for s in sessions for name in s.worker_names}


async def waiting_for_worker(
    client: Client, status: WorkflowStatus, token: str | None
) -> str | None:
    """The worker type the running step waits for, when no session serves it."""
    if status.terminal or not status.current_step:
        return None
    record = next((s for s in status.steps if s.path == status.current_step), None)
    if record is None or record.child_transaction_id:
        return None
    definition = await client.get_workflow_definition(status.workflow_name, status.workflow_version)
    spec = _find_step(definition.steps, record.name)
    if spec is None or spec.workflow:
        return None
    # A completed step of a running execution is being compensated.
    worker_name = spec.compensation if record.status == "completed" else spec.worker
    if not worker_name:
        return None
    if worker_name in await connected_worker_names(client.address, token):
        return None
    return worker_name


# How often `run` and `watch` read the history while the watch stream is quiet.
FOLLOW_POLL_S = 0.25


class _Lines:
    """Prints event lines and streamed text together: text goes out as it
    comes, and a line that follows text starts on a line of its own."""

    def __init__(self) -> None:
        self.mid_line = False

    def line(self, text: str) -> None:
        if self.mid_line:
            _print("")
            self.mid_line = False
        _print(text)

    def text(self, text: str) -> None:
        if text:
            _print(text, end="")
            self.mid_line = not text.endswith("\n")


def _output_time(offset: str) -> str:
    """The time an output entry was stored (its offset starts with it, in ms)."""
    ms = int(offset.partition("-")[0] or 0)
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


async def print_output(client: Client, tx: str, lines: _Lines, as_json: bool) -> None:
    """Print the steps' output as it comes, until the execution ends: a line
    when a step's attempt starts streaming, then its text as it comes."""
    step = None
    async for o in client.stream_output(tx):
        if as_json:
            _print(json.dumps({"output": {"offset": o.offset, "sequence": o.sequence,
                   "kind": o.kind, "step": o.step, "attempt": o.attempt, "text": o.text,
                   "dropped": o.dropped}}))  # fmt: skip
            continue
        head = f"[{tx}] {_output_time(o.offset)}  "
        if o.kind == "rewind":
            lines.line(f"{head}{'rewind':<12} {o.step:<16} attempt {o.attempt} starts over: "
                       "the output above is from an earlier attempt")  # fmt: skip
            step = None
        elif o.kind == "gap":
            dropped = o.dropped or "some"
            lines.line(f"{head}{'gap':<12} {dropped} output entries dropped (the stream's cap)")
        else:
            if (o.step, o.attempt) != step:
                lines.line(f"{head}{'output':<12} {o.step:<16} attempt {o.attempt}")
                step = (o.step, o.attempt)
            lines.text(o.text or o.data.decode(errors="replace"))


async def follow(
    client: Client,
    tx: str,
    *,
    as_json: bool = False,
    token: str | None = None,
    output: bool = False,
) -> WorkflowStatus:
    """Print every event of an execution as it happens (each step from the
    first, retries with their error, compensations) until it is terminal;
    with `output`, the text the steps stream too, as it comes.

    The watch stream says when something changed; the history says what. A
    command no connected worker can run is reported once."""

    async def until_terminal() -> None:
        async for update in client.watch_progress(tx):
            if isinstance(update, StatusUpdate):
                if update.terminal:
                    return
                continue
            if as_json:
                _print(json.dumps({"progress": {"step": update.path, "details": update.details,
                                                "attempt": update.attempt}}))  # fmt: skip
            else:
                when = _time(update.updated_at)
                lines.line(
                    f"[{tx}] {when}  progress     {update.path:<16} {_short(update.details)}"
                )

    lines = _Lines()
    streaming = asyncio.create_task(print_output(client, tx, lines, as_json)) if output else None
    try:
        status = await _follow_events(client, tx, lines, as_json, token, until_terminal)
        if streaming is not None:
            await asyncio.wait_for(streaming, OUTPUT_DRAIN_S)  # it ends with the execution
    finally:
        if streaming is not None:
            streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await streaming
    if lines.mid_line:
        _print("")
    return status


# How long `follow` waits, once the execution ended, for the rest of its output.
OUTPUT_DRAIN_S = 10.0


async def _follow_events(
    client: Client,
    tx: str,
    lines: _Lines,
    as_json: bool,
    token: str | None,
    until_terminal: Any,
) -> WorkflowStatus:
    watching = asyncio.create_task(until_terminal())
    last = 0
    pending: dict[str, str] = {}  # command id -> worker name, not answered yet
    checked: set[str] = set()
    try:
        while True:
            finished = watching.done()
            if finished:
                watching.result()  # raises what the stream raised
            for event in await client.get_history(tx, after_sequence=last):
                last = event.sequence
                data = event_dict(event)
                kind = data["kind"]
                body = getattr(event, kind)
                if kind in ("command", "compensation") and not data.get("child_transaction_id"):
                    pending[body.command_id] = body.worker_name
                elif kind in ("result", "error"):
                    pending.pop(body.command_id, None)
                if as_json:
                    _print(json.dumps({"event": data}, default=str))
                else:
                    for line in format_event(data):
                        lines.line(f"[{tx}] {line}")
            if finished:
                break
            unchecked = {c: w for c, w in pending.items() if c not in checked}
            if unchecked:
                names = await connected_worker_names(client.address, token)
                for command_id, worker_name in unchecked.items():
                    checked.add(command_id)
                    if worker_name not in names:
                        if as_json:
                            _print(json.dumps({"waiting_for_worker": worker_name}))
                        else:
                            lines.line(f"[{tx}] {waiting_message(worker_name)}")
            await asyncio.wait({watching}, timeout=FOLLOW_POLL_S)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watching
    return await client.get_status(tx)


def _time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


# -- commands -----------------------------------------------------------------------


def serve(argv: Sequence[str]) -> int:
    """`multiagents serve ARGS`: the server's own command line, run in this
    process. Its options and their help are the server's."""
    return _server.run_cli(argv, prog="multiagents serve")


async def cmd_worker(args: argparse.Namespace) -> int:
    from multiagents.runtime import WorkerRuntime

    workers = load_workers(args.modules)
    runtime = WorkerRuntime(
        workers,
        servers=args.server,
        max_concurrency=args.concurrency,
        token=args.token,
        drain_timeout=args.drain_timeout,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(runtime.stop()))
    _print(f"serving {', '.join(sorted(w.name for w in workers))} to {', '.join(args.server)}")
    await runtime.run()
    return 0


async def cmd_register(args: argparse.Namespace) -> int:
    from multiagents.workflow import Workflow

    data = load_definition(args.file)
    try:
        workflow = Workflow.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"{args.file}: invalid workflow definition: {exc}") from None
    async with _client(args) as client:
        created = await client.register_workflow(workflow)
    _print(
        f"{'registered' if created else 'already registered'}: {workflow.name} v{workflow.version}"
    )
    return 0


async def cmd_run(args: argparse.Namespace) -> int:
    data = read_input(args)
    async with _client(args) as client:
        tx = await client.execute_workflow(
            args.workflow, data, version=args.version,
            request_id=args.request_id, correlation_id=args.correlation_id,
            start_delay=args.start_delay,
        )  # fmt: skip
        if args.no_follow:
            _print(tx)  # only the id, for scripts: tx=$(multiagents run wf --no-follow)
            return 0
        _print(f"started {args.workflow}: {tx}")
        status = await follow(client, tx, token=args.token, output=True)
    _print(format_status(status))
    return 0 if status.state == "completed" else 3


async def cmd_status(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        status = await client.get_status(args.transaction_id)
        waiting = await waiting_for_worker(client, status, args.token)
    if args.json:
        _print(json.dumps(status_json(status, waiting), indent=2, default=str))
    else:
        _print(format_status(status, waiting))
    return 0


async def cmd_watch(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        status = await follow(
            client, args.transaction_id, as_json=args.json, token=args.token,
            output=not args.no_output,
        )  # fmt: skip
    if args.json:
        _print(json.dumps({"final_status": status_json(status)}, default=str))
    else:
        _print(format_status(status))
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        rows, token = await client.list_workflows(
            state=args.state, workflow_name=args.workflow,
            page_size=args.page_size, page_token=args.page_token,
        )  # fmt: skip
    if args.json:
        executions = [
            {"transaction_id": s.transaction_id, "workflow_name": s.workflow_name,
             "state": s.state, "created_at": _iso(s.created_at),
             "updated_at": _iso(s.updated_at), "current_step": s.current_step}
            for s in rows
        ]  # fmt: skip
        _print(json.dumps({"executions": executions, "next_page_token": token or None}))
        return 0
    table = [("TRANSACTION", "WORKFLOW", "STATE", "CREATED", "UPDATED", "STEP")]
    table += [
        (s.transaction_id, s.workflow_name, s.state, _time(s.created_at), _time(s.updated_at),
         s.current_step or "")
        for s in rows
    ]  # fmt: skip
    if rows:
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
        for row in table:
            _print("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]))
    else:
        _print("no executions")
    if token:
        _print(f"next page: --page-token {token}")
    return 0


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        await client.cancel_workflow(args.transaction_id, args.reason)
    _print(f"cancel requested: {args.transaction_id}")
    return 0


async def cmd_signal(args: argparse.Namespace) -> int:
    payload = parse_json_object(args.payload, "--payload") if args.payload else {}
    async with _client(args) as client:
        duplicate = await client.signal_workflow(
            args.transaction_id, args.signal, payload, signal_id=args.signal_id
        )
    _print(
        f"signal {args.signal} {'already taken' if duplicate else 'sent'}: {args.transaction_id}"
    )
    return 0


async def cmd_approve(args: argparse.Namespace) -> int:
    approved = args.command == "approve"
    async with _client(args) as client:
        decide = client.approve if approved else client.reject
        await decide(args.transaction_id, signal=args.signal, comment=args.comment, by=args.by)
    _print(f"{'approved' if approved else 'rejected'}: {args.transaction_id}")
    return 0


async def cmd_resume(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        await client.resume_workflow(args.transaction_id)
        if args.no_follow:
            _print(f"resumed: {args.transaction_id}")
            return 0
        status = await follow(client, args.transaction_id, token=args.token)
    _print(format_status(status))
    return 0 if status.state == "completed" else 3


async def cmd_inbox(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        waiting = await client.list_waiting_signals(
            signal=args.signal, workflow_name=args.workflow,
            approvals_only=args.approvals, limit=args.limit,
        )  # fmt: skip
    if args.json:
        rows = [
            {"transaction_id": w.transaction_id, "workflow_name": w.workflow_name,
             "path": w.path, "signal": w.signal, "approval": w.approval,
             "since": _iso(w.since), "timeout_at": _iso(w.timeout_at)}
            for w in waiting
        ]  # fmt: skip
        _print(json.dumps({"waiting": rows}))
        return 0
    if not waiting:
        _print("nothing waits for a signal")
        return 0
    table = [("TRANSACTION", "WORKFLOW", "STEP", "SIGNAL", "SINCE", "TIMES OUT")]
    table += [
        (w.transaction_id, w.workflow_name, w.path,
         w.signal + (" (approval)" if w.approval else ""), _time(w.since),
         _time(w.timeout_at) if w.timeout_at else "never")
        for w in waiting
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        _print("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]))
    return 0


def schedule_dict(s: ScheduleInfo) -> dict[str, Any]:
    """A schedule for --json: its fields, times in ISO 8601 UTC."""
    return {
        "schedule_id": s.schedule_id, "cron": s.cron, "time_zone": s.time_zone,
        "workflow_name": s.workflow_name, "workflow_version": s.workflow_version,
        "input": s.input, "overlap_policy": s.overlap_policy,
        "catchup_window": s.catchup_window, "paused": s.paused, "note": s.note,
        "created_at": _iso(s.created_at), "updated_at": _iso(s.updated_at),
        "next_fire_time": _iso(s.next_fire_time),
        "buffered_fire_time": _iso(s.buffered_fire_time),
        "runs_started": s.runs_started, "runs_skipped": s.runs_skipped,
        "last_transaction_id": s.last_transaction_id,
        "recent_actions": [
            {"fire_time": _iso(a.fire_time), "taken_at": _iso(a.taken_at), "kind": a.kind,
             "transaction_id": a.transaction_id, "message": a.message}
            for a in s.recent_actions
        ],
    }  # fmt: skip


def _span(seconds: float) -> str:
    """A duration in its largest whole unit: 365 d, 2 h, 10 min, 1.5 s."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def format_schedule(s: ScheduleInfo) -> str:
    zone = "" if s.time_zone == "UTC" else f" ({s.time_zone})"
    version = f" v{s.workflow_version}" if s.workflow_version else ""
    lines = [
        f"schedule {s.schedule_id}: {s.cron!r}{zone} starts {s.workflow_name}{version}",
        f"  overlap {s.overlap_policy}, catch-up window {_span(s.catchup_window)}",
        f"  {'paused' if s.paused else 'next fire ' + _time(s.next_fire_time)}"
        + (f" (note: {s.note})" if s.note else ""),
        f"  runs started {s.runs_started}, skipped {s.runs_skipped}"
        + (f", last {s.last_transaction_id}" if s.last_transaction_id else ""),
    ]
    if s.buffered_fire_time:
        lines.append(f"  waiting to start: {_time(s.buffered_fire_time)}")
    for a in s.recent_actions:
        what = a.transaction_id if a.kind == "started" else a.message
        lines.append(f"  {_time(a.fire_time)}  {a.kind:<8}  {what}")
    return "\n".join(lines)


@contextlib.asynccontextmanager
async def _schedule_client(args: argparse.Namespace) -> Any:
    """A client whose INVALID_ARGUMENT and ALREADY_EXISTS answers are bad
    input of the command line: one line, exit 2 (NOT_FOUND stays exit 1)."""
    async with _client(args) as client:
        try:
            yield client
        except (InvalidArgumentError, AlreadyExistsError) as exc:
            raise UsageError(exc.message) from None


async def cmd_schedule(args: argparse.Namespace) -> int:
    async with _schedule_client(args) as client:
        match args.schedule_command:
            case "create":
                info = await client.create_schedule(
                    args.schedule_id, args.cron, args.workflow, read_input(args),
                    version=args.version, time_zone=args.time_zone, overlap_policy=args.overlap,
                    catchup_window=args.catchup_window, paused=args.paused, note=args.note,
                )  # fmt: skip
            case "show":
                info = await client.get_schedule(args.schedule_id)
            case "pause":
                info = await client.pause_schedule(args.schedule_id, args.note)
            case "unpause":
                info = await client.unpause_schedule(args.schedule_id, args.note)
            case "delete":
                await client.delete_schedule(args.schedule_id)
                _print(f"schedule deleted: {args.schedule_id}")
                return 0
            case _:
                return await _list_schedules(client, args)
    if args.json:
        _print(json.dumps(schedule_dict(info)))
    else:
        _print(format_schedule(info))
    return 0


async def _list_schedules(client: Client, args: argparse.Namespace) -> int:
    schedules = await client.list_schedules(workflow_name=args.workflow)
    if args.json:
        _print(json.dumps({"schedules": [schedule_dict(s) for s in schedules]}))
        return 0
    if not schedules:
        _print("no schedules")
        return 0
    table = [("SCHEDULE", "CRON", "WORKFLOW", "OVERLAP", "NEXT FIRE", "RUNS", "SKIPPED")]
    table += [
        (s.schedule_id, s.cron + ("" if s.time_zone == "UTC" else f" ({s.time_zone})"),
         s.workflow_name, s.overlap_policy, "paused" if s.paused else _time(s.next_fire_time),
         str(s.runs_started), str(s.runs_skipped))
        for s in schedules
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        _print("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]))
    return 0


def limit_dict(r: RateLimitInfo) -> dict[str, Any]:
    return {
        "key": r.key, "requests": r.requests, "tokens": r.tokens, "period_s": r.period,
        "max_concurrent": r.max_concurrent, "backoff_s": r.backoff,
    }  # fmt: skip


def format_limit(r: RateLimitInfo) -> str:
    parts = []
    if r.requests:
        parts.append(f"{r.requests} requests")
    if r.tokens:
        parts.append(f"{r.tokens} tokens")
    rate = f"{' and '.join(parts)} per {r.period:g} s" if parts else ""
    concurrent = f"at most {r.max_concurrent} at once" if r.max_concurrent else ""
    what = ", ".join(x for x in (rate, concurrent) if x)
    return f"{r.key}: {what} (backoff {r.backoff:g} s)"


async def cmd_limits(args: argparse.Namespace) -> int:
    async with _schedule_client(args) as client:
        match args.limits_command:
            case "set":
                for flag in ("requests", "tokens", "period", "concurrency", "backoff"):
                    if (getattr(args, flag) or 0) < 0:
                        raise UsageError(f"--{flag}: must not be negative")
                limit = await client.put_rate_limit(
                    args.key, requests=args.requests, tokens=args.tokens, period=args.period,
                    max_concurrent=args.concurrency, backoff=args.backoff,
                )  # fmt: skip
                _print(json.dumps(limit_dict(limit)) if args.json else format_limit(limit))
            case "delete":
                await client.delete_rate_limit(args.key)
                _print(f"rate limit deleted: {args.key}")
            case _:
                found = await client.list_rate_limits()
                if args.json:
                    _print(json.dumps({"limits": [limit_dict(r) for r in found]}))
                elif not found:
                    _print("no rate limits")
                for r in [] if args.json else found:
                    _print(format_limit(r))
    return 0


async def cmd_history(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        events = [event_dict(e) for e in await client.get_history(args.transaction_id)]
    if args.json:
        _print(json.dumps({"events": events}, default=str))
        return 0
    for event in events:
        for line in format_event(event):
            _print(line)
    return 0


async def cmd_workers(args: argparse.Namespace) -> int:
    from multiagents.monitoring import WorkerMonitor

    address = await pick_server(args.server)
    monitor = WorkerMonitor(address=address, token=args.token)
    try:
        sessions = await monitor.sessions()
    finally:
        await monitor.close()
    if args.json:
        rows = [
            {"session_id": s.session_id, "worker_id": s.worker_id,
             "worker_names": list(s.worker_names), "sdk_language": s.sdk_language,
             "sdk_version": s.sdk_version, "max_concurrency": s.max_concurrency,
             "in_flight": s.in_flight, "replica_id": s.replica_id, "draining": s.draining}
            for s in sessions
        ]  # fmt: skip
        _print(json.dumps({"sessions": rows}))
        return 0
    if not sessions:
        _print("no workers connected")
    for s in sessions:
        _print(
            f"{s.session_id[:12]}  {s.sdk_language:<7} {s.worker_id:<24} "
            f"in-flight {s.in_flight}/{s.max_concurrency}  {', '.join(s.worker_names)}"
        )
    return 0


def _seconds(d: Any) -> float:
    return float(d.ToMilliseconds()) / 1000


def retry_dict(p: workflow_pb2.RetryPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {
        "max_attempts": p.maximum_attempts,
        "initial_interval": _seconds(p.initial_interval),
        "backoff_coefficient": p.backoff_coefficient,
    }
    if p.HasField("maximum_interval"):
        out["maximum_interval"] = _seconds(p.maximum_interval)
    if p.non_retryable_error_types:
        out["non_retryable_error_types"] = list(p.non_retryable_error_types)
    return out


def _find_step(steps: Any, name: str) -> workflow_pb2.StepDefinition | None:
    """The step named `name` anywhere in a definition tree."""
    for st in steps:
        if st.name == name:
            return st  # type: ignore[no-any-return]
        inner: list[Any] = [st.map.step] if st.HasField("map") else []
        inner += [x for b in st.parallel.branches for x in b.steps]
        inner += [x for c in st.condition.cases for x in c.steps]
        inner += [*st.condition.otherwise, *st.wait_for_signal.on_timeout]
        found = _find_step(inner, name)
        if found is not None:
            return found
    return None


def definition_dict(d: workflow_pb2.WorkflowDefinition) -> dict[str, Any]:
    """A registered definition in the definition-file form `register` reads."""
    out: dict[str, Any] = {"name": d.name, "version": d.version, "steps": _steps_dict(d.steps)}
    if d.description:
        out["description"] = d.description
    return out


def _steps_dict(steps: Any) -> list[dict[str, Any]]:
    return [_step_dict(st) for st in steps]


def _step_dict(st: workflow_pb2.StepDefinition) -> dict[str, Any]:
    """One node in the definition-file form (docs/definition.schema.json)."""
    step: dict[str, Any] = {"name": st.name}
    if st.HasField("parallel"):
        fail_fast = st.parallel.failure_policy != workflow_pb2.PARALLEL_FAILURE_POLICY_WAIT_ALL
        step["parallel"] = {
            "fail_fast": fail_fast,
            "branches": [{"name": b.name, "steps": _steps_dict(b.steps)}
                         for b in st.parallel.branches],
        }  # fmt: skip
        return step
    if st.HasField("map"):
        step["map"] = {"items": st.map.items, "step": _step_dict(st.map.step),
                       "max_concurrency": st.map.max_concurrency}  # fmt: skip
        return step
    if st.HasField("condition"):
        c = st.condition
        cases = []
        for case in c.cases:
            row: dict[str, Any] = {"steps": _steps_dict(case.steps)}
            if c.switch:
                row["equals"] = json_format.MessageToDict(case.equals)
            else:
                row["when"] = case.when
            cases.append(row)
        step["condition"] = {"cases": cases, "otherwise": _steps_dict(c.otherwise)}
        if c.switch:
            step["condition"]["switch"] = c.switch
        return step
    if st.HasField("wait_for_signal"):
        w = st.wait_for_signal
        wait: dict[str, Any] = {"signal": w.signal, "approval": w.approval}
        if w.HasField("timeout"):
            wait["timeout"] = _seconds(w.timeout)
        if w.continue_on_timeout:
            wait["on_timeout"] = _steps_dict(w.on_timeout)
        step["wait_for_signal"] = wait
        return step
    if st.HasField("sleep"):
        step["sleep"] = _seconds(st.sleep.duration)
        return step
    if st.workflow:
        step["workflow"] = st.workflow
        if st.workflow_version:
            step["workflow_version"] = st.workflow_version
    else:
        step["worker"] = st.worker
    if st.compensation:
        step["compensation"] = st.compensation
    if st.HasField("retry_policy"):
        step["retry"] = retry_dict(st.retry_policy)
    if st.HasField("compensation_retry_policy"):
        step["compensation_retry"] = retry_dict(st.compensation_retry_policy)
    if st.HasField("timeout"):
        step["timeout"] = _seconds(st.timeout)
    if st.HasField("heartbeat_timeout"):
        step["heartbeat_timeout"] = _seconds(st.heartbeat_timeout)
    if st.rate_limits:
        step["rate_limits"] = [
            k.key or {"key_expression": k.key_expression} for k in st.rate_limits
        ]
    return step


async def cmd_definitions(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        found = await client.list_workflow_definitions()
    definitions = sorted((definition_dict(d) for d in found), key=lambda d: d["name"])
    if args.json:
        _print(json.dumps({"definitions": definitions}))
        return 0
    if not definitions:
        _print("no workflow definitions registered")
    for d in definitions:
        _print(
            f"{d['name']} v{d['version']}" + (f"  {d['description']}" if "description" in d else "")
        )
        for line in _outline(d["steps"], "  "):
            _print(line)
    return 0


def _outline(steps: list[dict[str, Any]], indent: str) -> list[str]:
    """A definition's steps as an indented outline."""
    lines = []
    for i, st in enumerate(steps, 1):
        head = f"{indent}{i}. {st['name']:<20}"
        if "parallel" in st:
            p = st["parallel"]
            lines.append(f"{head} parallel ({'fail fast' if p['fail_fast'] else 'wait for all'})")
            for b in p["branches"]:
                lines.append(f"{indent}   branch {b['name']}")
                lines += _outline(b["steps"], indent + "     ")
        elif "map" in st:
            m = st["map"]
            lines.append(f"{head} map over {m['items']} (at most {m['max_concurrency']} at once)")
            lines += _outline([m["step"]], indent + "   ")
        elif "condition" in st:
            c = st["condition"]
            lines.append(f"{head} condition" + (f" on {c['switch']}" if "switch" in c else ""))
            for case in c["cases"]:
                test = f"equals {json.dumps(case['equals'])}" if "equals" in case else case["when"]
                lines.append(f"{indent}   when {test}")
                lines += _outline(case["steps"], indent + "     ")
            if c["otherwise"]:
                lines.append(f"{indent}   otherwise")
                lines += _outline(c["otherwise"], indent + "     ")
        elif "wait_for_signal" in st:
            w = st["wait_for_signal"]
            what = "approval" if w["approval"] else "signal"
            limit = f" for {w['timeout']:g} s" if "timeout" in w else ""
            lines.append(f"{head} wait for {what} {w['signal']}{limit}")
        elif "sleep" in st:
            lines.append(f"{head} sleep {st['sleep']:g} s")
        else:
            runs = f"workflow {st['workflow']}" if "workflow" in st else f"worker {st['worker']}"
            comp = f"  compensation {st['compensation']}" if "compensation" in st else ""
            lines.append(f"{head} {runs}{comp}")
    return lines


# The demo is example code of the repository (workers/python), not part of the
# SDK: loaded from its files, like the modules of `multiagents worker x.py`.
DEMO_DIR = Path(__file__).resolve().parents[2] / "workers" / "python" / "multiagents_demo"


def load_demo(directory: Path = DEMO_DIR) -> ModuleType:
    """The demo's `demo` module, loaded from `directory` as the package
    `multiagents_demo` (its modules import each other by that name)."""
    if not (directory / "demo.py").is_file():
        raise UsageError(
            f"the demo is not here ({directory}): it ships with the source repository; "
            "run `make demo` in a checkout"
        )
    _load_file("multiagents_demo", directory / "__init__.py", package=True)
    return _load_file("multiagents_demo.demo", directory / "demo.py")


async def cmd_demo(args: argparse.Namespace) -> int:
    demo = load_demo()
    if args.scenario == "review":
        return int(await demo.run_review_demo(data_dir=args.data_dir))
    if args.scenario == "dspy":
        return int(await demo.run_dspy_demo(data_dir=args.data_dir))
    return int(await demo.run_demo(orders=args.orders, data_dir=args.data_dir))


# How long a client command waits for one --server address before it tries
# the next.
CONNECT_TIMEOUT_S = 3.0


async def pick_server(addresses: Sequence[str]) -> str:
    """The first of `addresses` that accepts a connection (failover at
    connection time: each command connects once, then stays on that server).
    ServerUnavailableError when none does."""
    if len(addresses) == 1:
        return addresses[0]
    for address in addresses:
        channel = open_channel(address)
        try:
            await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_S)
            return address
        except TimeoutError:
            continue
        finally:
            await channel.close()
    raise ServerUnavailableError(grpc.StatusCode.UNAVAILABLE, f"none of {', '.join(addresses)}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@contextlib.asynccontextmanager
async def _client(args: argparse.Namespace) -> Any:
    address = await pick_server(args.server)
    args.connected = address
    client = Client(address, token=args.token)
    try:
        yield client
    finally:
        await client.close()


def completion_script(shell: str, parser: argparse.ArgumentParser) -> str:
    """A bash completion script for the commands and options of `parser`
    (zsh runs it through bashcompinit)."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = list(sub.choices)
    cases = []
    for name, p in sub.choices.items():
        options = sorted(o for a in p._actions for o in a.option_strings if o.startswith("--"))
        choices = [
            f'{a.option_strings[0]}) COMPREPLY=($(compgen -W "{" ".join(map(str, a.choices))}" '
            '-- "$cur")); return;;'
            for a in p._actions
            if a.option_strings and a.choices
        ]
        positional = [a for a in p._actions if not a.option_strings and a.choices]
        lines = [f'    {name}) opts="{" ".join(options)}"']
        if choices:
            lines.append('      case "$prev" in ' + " ".join(choices) + " esac")
        if positional:
            words = " ".join(map(str, positional[0].choices or ()))
            lines.append(
                f'      [[ "$cur" != -* ]] && COMPREPLY=($(compgen -W "{words}" -- "$cur"))'
                " && return"
            )
        lines.append("      ;;")
        cases.append("\n".join(lines))
    script = f"""# multiagents {shell} completion: eval "$(multiagents completion {shell})"
_multiagents() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" opts=""
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W "{" ".join(commands)} --help --version" -- "$cur"))
    return
  fi
  case "${{COMP_WORDS[1]}}" in
{chr(10).join(cases)}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts --help" -- "$cur"))
  else
    COMPREPLY=($(compgen -f -- "$cur"))
  fi
}}
complete -o default -F _multiagents multiagents
"""
    if shell == "zsh":
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    return script


async def cmd_completion(args: argparse.Namespace) -> int:
    _print(completion_script(args.shell, build_parser()), end="")
    return 0


# -- parser -------------------------------------------------------------------------


JSON_HELP = {
    "status": "print one JSON document: the seed's status dict, each step's last failure "
    "(with its stack trace) and waiting_for_worker",
    "watch": 'print JSON lines: {"event": ...} per history event, {"output": ...} per '
    'entry of the steps\' output, {"waiting_for_worker": ...}, then {"final_status": ...}',
    "history": 'print one JSON document: {"events": [...]}',
    "list": 'print one JSON document: {"executions": [...], "next_page_token": ...}',
    "workers": 'print one JSON document: {"sessions": [...]}',
    "definitions": 'print one JSON document: {"definitions": [...]}, '
    "each in the definition-file form",
    "inbox": 'print one JSON document: {"waiting": [...]}',
    "schedule": 'print one JSON document: the schedule (list: {"schedules": [...]})',
    "limits": 'print one JSON document: the limit (list: {"limits": [...]})',
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multiagents",
        description="MultiAgents: saga workflows for polyglot workers over gRPC.",
    )
    parser.add_argument("--version", action="version", version=f"multiagents {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str,
        fn: Callable[[argparse.Namespace], Awaitable[int]],
        help: str,
        *,
        server: bool = True,
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        if server:
            p.add_argument(
                "--server",
                action="append",
                default=None,
                help=(
                    f"server address (default {DEFAULT_SERVER}, env MULTIAGENTS_SERVER); "
                    + (
                        "repeat it to list several servers: the worker fails over between them"
                        if name == "worker"
                        else "repeat it to list several replicas: the command uses the first "
                        f"that accepts a connection within {CONNECT_TIMEOUT_S:g} s"
                    )
                ),
            )
            p.add_argument("--token", default=os.environ.get("MULTIAGENTS_TOKEN"),
                           help="bearer token (env MULTIAGENTS_TOKEN)")  # fmt: skip
        return p

    # Listed here; `main` hands `serve` and everything after it to the server.
    sub.add_parser(
        "serve",
        help="Run the server (embedded Redis unless --redis-url).",
        add_help=False,
    )

    p = command("worker", cmd_worker, "Serve the @worker functions of Python modules.")
    p.add_argument("modules", nargs="+", help="module names or .py files with @worker functions")
    p.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"commands run at once (default {DEFAULT_CONCURRENCY}, as in every SDK)",
    )
    p.add_argument(
        "--drain-timeout", type=float, default=30.0, help="seconds to finish work on SIGTERM"
    )

    p = command(
        "register", cmd_register, "Register a workflow definition from a YAML or JSON file."
    )
    p.add_argument("file")

    p = command("run", cmd_run, "Start a workflow and follow it step by step.")
    p.add_argument("workflow")
    p.add_argument("--input", help="input as a JSON object")
    p.add_argument("--input-file", help="file holding the input JSON object")
    p.add_argument("--version", type=int, default=0, help="definition version (default latest)")
    p.add_argument("--request-id", default="", help="idempotency key")
    p.add_argument("--correlation-id", default="")
    p.add_argument(
        "--start-delay", type=float, default=0.0, help="seconds to wait before the first step"
    )
    p.add_argument(
        "--no-follow", action="store_true", help="print only the transaction id and exit"
    )

    p = command("signal", cmd_signal, "Send a signal to an execution (a wait_for_signal step).")
    p.add_argument("transaction_id")
    p.add_argument("signal", help="signal name")
    p.add_argument("--payload", help="payload as a JSON object (default {})")
    p.add_argument("--signal-id", default="", help="idempotency key of the signal")

    for name, text in (
        ("approve", "Approve an execution waiting for an approval."),
        ("reject", "Reject an approval: the step fails and the workflow compensates."),
    ):
        p = command(name, cmd_approve, text)
        p.add_argument("transaction_id")
        p.add_argument("--signal", default="approval", help="approval signal (default approval)")
        p.add_argument(
            "--comment", default="", help="kept in the payload (and a rejection's failure)"
        )
        p.add_argument("--by", default="", help="who decides (kept in the payload)")

    p = command(
        "resume", cmd_resume, "Run a failed execution again from its failed step (same id)."
    )
    p.add_argument("transaction_id")
    p.add_argument("--no-follow", action="store_true", help="do not follow it to its end")

    p = command("inbox", cmd_inbox, "List the executions waiting for a signal (approvals).")
    p.add_argument("--signal", default="", help="only this signal")
    p.add_argument("--workflow", default="", help="only this workflow name")
    p.add_argument("--approvals", action="store_true", help="only approvals")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true", help=JSON_HELP["inbox"])

    schedule = sub.add_parser(
        "schedule",
        help="Create, list, show, pause, unpause and delete cron schedules.",
        description="Cron schedules that start workflows.",
    )
    schedule_sub = schedule.add_subparsers(
        dest="schedule_command", required=True, metavar="SUBCOMMAND"
    )
    for name, text in (
        ("create", "Create a schedule: a cron expression that starts a workflow."),
        ("list", "List the schedules, by id."),
        ("show", "Show one schedule and its latest actions."),
        ("pause", "Pause a schedule: nothing fires until it is unpaused."),
        ("unpause", "Unpause a schedule: it fires from the next fire time after now."),
        ("delete", "Delete a schedule (the runs it started go on)."),
    ):
        p = schedule_sub.add_parser(name, help=text, description=text)
        p.set_defaults(fn=cmd_schedule)
        p.add_argument(
            "--server", action="append", default=None,
            help=f"server address (default {DEFAULT_SERVER}, env MULTIAGENTS_SERVER); repeat it "
            f"to list several replicas: the first that accepts a connection within "
            f"{CONNECT_TIMEOUT_S:g} s is used",
        )  # fmt: skip
        p.add_argument("--token", default=os.environ.get("MULTIAGENTS_TOKEN"),
                       help="bearer token (env MULTIAGENTS_TOKEN)")  # fmt: skip
        if name == "list":
            p.add_argument("--workflow", default="", help="only this workflow name")
        else:
            p.add_argument("schedule_id")
        if name in ("pause", "unpause"):
            p.add_argument("--note", default="", help="why (kept with the schedule)")
        if name != "delete":
            p.add_argument("--json", action="store_true", help=JSON_HELP["schedule"])
        if name != "create":
            continue
        p.add_argument(
            "--cron", required=True,
            help="cron expression: 5 fields, 6 with seconds first ('*/10 * * * * *'), "
            "7 with a year last, or @hourly, @daily, ...",
        )  # fmt: skip
        p.add_argument("--workflow", required=True, help="workflow to start at each fire time")
        p.add_argument("--input", help="input of every run, as a JSON object")
        p.add_argument("--input-file", help="file holding the input JSON object")
        p.add_argument("--version", type=int, default=0, help="definition version (default: "
                       "the latest at each fire)")  # fmt: skip
        p.add_argument("--time-zone", default="", help="IANA time zone of the expression "
                       "(default UTC)")  # fmt: skip
        p.add_argument(
            "--overlap", choices=sorted(OVERLAP_POLICIES), default="skip",
            help="when the previous run still runs: skip (default), buffer_one, "
            "cancel_other or allow_all",
        )  # fmt: skip
        p.add_argument(
            "--catchup-window", type=float, default=0.0,
            help="seconds: after downtime the latest missed fire time starts if it is at most "
            "this old (default 365 days)",
        )  # fmt: skip
        p.add_argument("--paused", action="store_true", help="create it paused")
        p.add_argument("--note", default="", help="free text kept with the schedule")

    limits = sub.add_parser(
        "limits",
        help="Set, list and delete shared rate limits and concurrency keys.",
        description="Shared limits on the steps that name their keys, enforced by the server.",
    )
    limits_sub = limits.add_subparsers(dest="limits_command", required=True, metavar="SUBCOMMAND")
    for name, text in (
        ("set", "Create or replace the limit of a key, or of a prefix ending in '*'."),
        ("list", "List the limits, by key."),
        ("delete", "Delete the limit of a key (steps naming it then start freely)."),
    ):
        p = limits_sub.add_parser(name, help=text, description=text)
        p.set_defaults(fn=cmd_limits)
        p.add_argument(
            "--server", action="append", default=None,
            help=f"server address (default {DEFAULT_SERVER}, env MULTIAGENTS_SERVER)",
        )  # fmt: skip
        p.add_argument("--token", default=os.environ.get("MULTIAGENTS_TOKEN"),
                       help="bearer token (env MULTIAGENTS_TOKEN)")  # fmt: skip
        if name != "list":
            p.add_argument("key", help="e.g. provider:openai, or tenant:* for each tenant")
        if name != "delete":
            p.add_argument("--json", action="store_true", help=JSON_HELP["limits"])
        if name != "set":
            continue
        p.add_argument("--requests", type=int, default=0, help="step starts per period")
        p.add_argument("--tokens", type=int, default=0,
                       help="estimated tokens per period (the steps' usage estimates)")  # fmt: skip
        p.add_argument("--period", type=float, default=None, help="seconds (default 60)")
        p.add_argument("--concurrency", type=int, default=0,
                       help="at most this many attempts running at once per key")  # fmt: skip
        p.add_argument("--backoff", type=float, default=None,
                       help="seconds nothing starts after a worker reports RateLimited "
                       "(default 1)")  # fmt: skip

    for name, fn, text in (
        ("status", cmd_status, "Show the status of one execution."),
        ("watch", cmd_watch, "Follow one execution until it ends."),
        ("history", cmd_history, "Print every event of one execution."),
    ):
        p = command(name, fn, text)
        p.add_argument("transaction_id")
        p.add_argument("--json", action="store_true", help=JSON_HELP[name])
        if name == "watch":
            p.add_argument("--no-output", action="store_true",
                           help="do not print the text the steps stream")  # fmt: skip

    p = command("cancel", cmd_cancel, "Cancel a running execution (compensates completed steps).")
    p.add_argument("transaction_id")
    p.add_argument(
        "--reason", default="cancelled from the command line", help="sent with the request"
    )

    p = command("list", cmd_list, "List executions, newest first.")
    p.add_argument("--state", choices=sorted(STATES.values()))
    p.add_argument("--workflow", default="", help="only this workflow name")
    p.add_argument("--page-size", type=int, default=20)
    p.add_argument("--page-token", default="")
    p.add_argument("--json", action="store_true", help=JSON_HELP["list"])

    p = command("workers", cmd_workers, "List connected worker sessions.")
    p.add_argument("--json", action="store_true", help=JSON_HELP["workers"])

    p = command(
        "definitions",
        cmd_definitions,
        "List the registered workflow definitions (latest version of each) and their steps.",
    )
    p.add_argument("--json", action="store_true", help=JSON_HELP["definitions"])

    p = command(
        "completion",
        cmd_completion,
        'Print a shell completion script: eval "$(multiagents completion bash)"',
        server=False,
    )
    p.add_argument("shell", choices=["bash", "zsh"])

    p = command(
        "demo", cmd_demo, "Run the order-processing saga demo on an embedded server.", server=False
    )
    p.add_argument(
        "--scenario",
        choices=["orders", "review", "dspy"],
        default="orders",
        help="orders: the order saga; review: three agents at once, a branch on their "
        "scores and an approval (workflow model v2); dspy: a DSPy program's tokens live "
        "in `multiagents watch`, with its usage and cost (offline LM)",
    )
    p.add_argument("--orders", type=int, default=8, help="number of orders to submit (default 8)")
    p.add_argument("--data-dir", default=".multiagents/demo", help="embedded Redis data directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:
        try:
            return serve(argv[1:])
        except ServerNotInstalledError as exc:
            _error(str(exc))
            return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "server", None) is None and "server" in vars(args):
        args.server = [os.environ.get("MULTIAGENTS_SERVER", DEFAULT_SERVER)]
    logging.basicConfig(
        level=logging.INFO if args.command == "worker" else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(asyncio.run(args.fn(args)))
    except ServerUnavailableError:
        where = " or ".join(args.server)
        _error(f"cannot reach the server at {where} (is `multiagents serve` running?)")
        return 1
    except RPCError as exc:
        _error(f"{exc.code.name}: {exc.message}")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = known_error(exc)
        if message is None:
            raise  # a bug: keep the traceback
        _error(message)
        return 2


if __name__ == "__main__":
    sys.exit(main())
