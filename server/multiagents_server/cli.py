"""The server's command line: `multiagents-server`, `python -m multiagents_server`,
and `multiagents serve` (the SDK's command line runs this `main` in the same
process, found through the `multiagents.server` entry points).

One replica in this process, or a supervisor with `--processes N`; the
embedded Redis unless `--redis-url`. Runs until SIGTERM or SIGINT, then drains.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator, Sequence

from multiagents_server.app import Server
from multiagents_server.config import ConfigError, load_config
from multiagents_server.observability import logs, tracing
from multiagents_server.store import StoreSetupError
from multiagents_server.supervisor import Supervisor, check_port_free, process_count
from multiagents_server.web.server import dashboard_url

PROG = "multiagents-server"


def known_error(exc: BaseException) -> str | None:
    """The one-line message of an error caused by the input or the environment
    (printed as `error: ...`, exit 2), or None for anything else: a bug, which
    keeps its traceback."""
    if isinstance(exc, ConfigError | StoreSetupError | tracing.TracingSetupError):
        return str(exc)
    return None


class _HeldRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def held_logs() -> Iterator[None]:
    """Hold back the log records emitted in the block.

    They are written when the block succeeds or fails with a bug, and dropped
    when it fails with a known error, whose one-line message says it all
    (a server that could not start otherwise logs that it stopped).
    """
    root = logging.getLogger()
    handlers = root.handlers[:]
    held = _HeldRecords()
    for handler in handlers:
        root.removeHandler(handler)
    root.addHandler(held)
    release = True
    try:
        yield
    except BaseException as exc:
        release = known_error(exc) is None
        raise
    finally:
        root.removeHandler(held)
        for handler in handlers:
            root.addHandler(handler)
        if release:
            for record in held.records:
                root.handle(record)


async def serve(args: argparse.Namespace) -> int:
    """Start the server (or supervisor), print where it listens, run until a
    signal, then stop it (workers drain)."""
    flags = {
        "host": args.host, "port": args.port, "redis_url": args.redis_url,
        "data_dir": args.data_dir, "key_prefix": args.key_prefix, "log_level": args.log_level,
        "processes": args.processes, "dashboard_port": args.dashboard_port,
        "log_format": args.log_format, "metrics_port": args.metrics_port,
    }  # fmt: skip
    config = load_config(flags, config_file=args.config)
    count = process_count(config)
    logs.configure(config.log_level, config.log_format)
    tracing.configure_from_env()
    check_port_free(config.host, config.port)
    if config.metrics_port:
        check_port_free(config.host, config.metrics_port)
    check_port_free(config.host, config.dashboard_port)
    server: Server | Supervisor = Server(config) if count == 1 else Supervisor(config, count)
    with held_logs():
        await server.start()
    replicas = "one process" if count == 1 else f"{count} processes"
    print(
        f"multiagents server listening on {server.address} (redis: {server.redis_url}; {replicas})",
        flush=True,
    )
    if config.dashboard_port:
        print(f"dashboard on {dashboard_url(config)}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("shutting down: draining workers", flush=True)
    await server.stop()
    return 0


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a server replica (embedded Redis unless --redis-url).",
    )
    parser.add_argument("--host", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="gRPC port (default 50051; 0 picks a free one)")
    parser.add_argument(
        "--redis-url", help="external Redis (env MULTIAGENTS_REDIS_URL); default: embedded"
    )
    parser.add_argument("--data-dir", help="embedded Redis data directory (default ./.multiagents)")
    parser.add_argument("--key-prefix", help="prefix of every Redis key (default ma)")
    parser.add_argument("--config", help="YAML configuration file (env MULTIAGENTS_CONFIG)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (default INFO)")
    parser.add_argument(
        "--log-format", help="text (key=value fields) or json (one object per line); default text"
    )
    parser.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics on http://HOST:PORT/metrics"
    )
    parser.add_argument(
        "--processes",
        type=int,
        help="server replicas behind the one port (default: one per core; 1 = in this process)",
    )
    parser.add_argument(
        "--dashboard-port",
        type=int,
        help="serve the web dashboard on this HTTP port (default 0: no dashboard)",
    )
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Run the server with command-line arguments `argv` (default sys.argv);
    the exit code: 0 after a clean stop, 2 for a known error (one line on
    stderr), 130 when interrupted before the server was up.

    `prog` names the command in help and usage (`multiagents serve` when the
    SDK's command line calls this).
    """
    args = build_parser(prog).parse_args(argv)
    logs.configure()
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = known_error(exc)
        if message is None:
            raise  # a bug: keep the traceback
        print(f"error: {message}", file=sys.stderr, flush=True)
        return 2
