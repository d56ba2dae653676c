"""The `multiagents` command line: serve, worker, run, status, watch, list,
cancel, history, register, workers, demo."""

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
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from multiagents import __version__, _server, wire
from multiagents.client import STATES, Client, WorkflowStatus
from multiagents.errors import RPCError, ServerNotInstalledError, ServerUnavailableError
from multiagents.runtime import WorkerStartError
from multiagents.syntax import json_error, yaml_error
from multiagents.worker import WorkerFunction, check_unique_name

DEFAULT_SERVER = "127.0.0.1:50051"


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


def _print(*parts: object) -> None:
    print(*parts, flush=True)


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


def format_status(status: WorkflowStatus) -> str:
    lines = [
        f"transaction  {status.transaction_id}",
        f"workflow     {status.workflow_name} v{status.workflow_version}",
        f"state        {status.state}",
    ]
    if status.current_step:
        lines.append(f"current step {status.current_step}")
    for step in status.steps:
        failure = (
            f"  ({step.last_failure['type']}: {step.last_failure['message']})"
            if step.last_failure
            else ""
        )
        lines.append(f"  - {step.name:<24} {step.status:<20} attempts={step.attempts}{failure}")
    if status.error:
        lines.append(f"error        {status.error['type']}: {status.error['message']}")
    if status.requires_manual_intervention:
        lines.append("ATTENTION    a compensation failed: manual intervention required")
    lines.append(f"results      {json.dumps(status.step_results, sort_keys=True)}")
    return "\n".join(lines)


async def follow(client: Client, tx: str) -> WorkflowStatus:
    """Print every change of an execution until it is terminal."""
    async for update in client.watch(tx):
        step = f" step={update.current_step}" if update.current_step else ""
        _print(f"[{tx}] {update.state}{step}")
        if update.terminal:
            break
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
        )  # fmt: skip
        if args.no_follow:
            _print(tx)  # only the id, for scripts: tx=$(multiagents run wf --no-follow)
            return 0
        _print(f"started {args.workflow}: {tx}")
        status = await follow(client, tx)
    _print(format_status(status))
    return 0 if status.state == "completed" else 3


async def cmd_status(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        status = await client.get_status(args.transaction_id)
    _print(json.dumps(status.to_dict(), indent=2) if args.json else format_status(status))
    return 0


async def cmd_watch(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        status = await follow(client, args.transaction_id)
    _print(format_status(status))
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        rows, token = await client.list_workflows(
            state=args.state, workflow_name=args.workflow,
            page_size=args.page_size, page_token=args.page_token,
        )  # fmt: skip
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


async def cmd_history(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        events = await client.get_history(args.transaction_id)
    for event in events:
        kind = event.WhichOneof("event")
        body = getattr(event, kind)
        if kind == "status":
            detail = f"{STATES[body.state]} {body.current_step}"
        elif kind == "error":
            detail = f"{body.step} {body.error.type}: {body.error.message} retry={body.will_retry}"
        elif kind == "result":
            detail = f"{body.step} {wire.decode(body.result)}"
        else:
            detail = f"{body.step} -> {body.worker_name} (retry_count={body.retry_count})"
        _print(f"{event.sequence:>4} {body.timestamp.ToJsonString()} {kind:<12} {detail}")
    return 0


async def cmd_workers(args: argparse.Namespace) -> int:
    from multiagents.monitoring import WorkerMonitor

    monitor = WorkerMonitor(address=args.server[0], token=args.token)
    try:
        sessions = await monitor.sessions()
    finally:
        await monitor.close()
    if not sessions:
        _print("no workers connected")
    for s in sessions:
        _print(
            f"{s.session_id[:12]}  {s.sdk_language:<7} {s.worker_id:<24} "
            f"in-flight {s.in_flight}/{s.max_concurrency}  {', '.join(s.worker_names)}"
        )
    return 0


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
    return int(await demo.run_demo(orders=args.orders, data_dir=args.data_dir))


@contextlib.asynccontextmanager
async def _client(args: argparse.Namespace) -> Any:
    client = Client(args.server[0], token=args.token)
    try:
        yield client
    finally:
        await client.close()


# -- parser -------------------------------------------------------------------------


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
                help=f"server address, repeatable (default {DEFAULT_SERVER})",
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
    p.add_argument("--concurrency", type=int, default=16, help="commands run at once (default 16)")
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
        "--no-follow", action="store_true", help="print only the transaction id and exit"
    )

    for name, fn, text in (
        ("status", cmd_status, "Show the status of one execution."),
        ("watch", cmd_watch, "Follow one execution until it ends."),
        ("history", cmd_history, "Print every event of one execution."),
    ):
        p = command(name, fn, text)
        p.add_argument("transaction_id")
        if name == "status":
            p.add_argument(
                "--json", action="store_true", help="print the seed's status dict as JSON"
            )

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

    command("workers", cmd_workers, "List connected worker sessions.")

    p = command(
        "demo", cmd_demo, "Run the order-processing saga demo on an embedded server.", server=False
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
        _error(f"cannot reach the server at {args.server[0]} (is `multiagents serve` running?)")
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
