"""`serve --processes N`: N server replicas behind one port, on one machine.

Python runs one thread of Python code at a time, so one server process uses
one core. The supervisor starts the embedded Redis (unless a Redis URL is
given), then N replica processes that all bind the same gRPC port with
SO_REUSEPORT, so the kernel spreads connections over them. Each is a full
replica (its own id, lease and epoch, its share of the buckets' timers); they
meet only in Redis, exactly as replicas on different machines do.

The supervisor restarts a replica that dies (with backoff), forwards SIGTERM
so every replica drains, and its replicas die with it (PDEATHSIG), so a
killed supervisor leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from multiagents_server.config import ConfigError, ServerConfig, load_config
from multiagents_server.embedded_redis import EmbeddedRedis, die_with_parent_prefix, free_port
from multiagents_server.observability import logs, metrics, tracing
from multiagents_server.store import open_store

log = logging.getLogger(__name__)

CONFIG_ENV = "MULTIAGENTS_REPLICA_CONFIG"
READY_LINE = "replica ready"
START_TIMEOUT_S = 60.0
RESTART_BACKOFF_S = (0.5, 10.0)


def process_count(config: ServerConfig) -> int:
    """Replicas to run: `processes`, or the machine's core count when 0."""
    if config.processes < 0:
        raise ConfigError(f"processes: must be >= 0 (0 = one per core), got {config.processes}")
    return config.processes or os.cpu_count() or 1


def check_port_free(host: str, port: int) -> None:
    """ConfigError (one line) when something already listens on host:port.

    Checked before anything starts, so the error is the only output; and
    before replicas bind with SO_REUSEPORT, which would otherwise let them
    share the port with a stranger.
    """
    if port == 0:
        return
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError):
        return  # gRPC reports an unusable host itself
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As gRPC binds: a port in TIME_WAIT is free, a listening one is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(
                        f"cannot listen on {host}:{port}: the port is already in use"
                    ) from None


class Supervisor:
    """Runs `count` replicas of `config`. `await start()` … `await stop()`."""

    def __init__(self, config: ServerConfig, count: int) -> None:
        self.config = config
        self.count = count
        self.embedded_redis: EmbeddedRedis | None = None
        self.address = ""
        self.redis_url = config.redis_url or ""
        self._replicas: list[subprocess.Popen[bytes] | None] = [None] * count
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False
        # The replicas' metrics files, served here (see observability/metrics.py).
        self._metrics_dir = Path(config.data_dir) / "metrics" if config.metrics_port else None
        self.metrics: metrics.MetricsEndpoint | None = None

    async def start(self) -> None:
        config = self.config
        port = config.port or free_port()
        check_port_free(config.host, port)
        check_port_free(config.host, config.dashboard_port)
        self.address = f"{config.host}:{port}"
        try:
            if not config.redis_url:
                self.embedded_redis = EmbeddedRedis(Path(config.data_dir) / "redis")
                await self.embedded_redis.start()
                self.redis_url = self.embedded_redis.url
            # Refuse an unusable Redis here, in one line, not once per replica.
            store = await open_store(
                self.redis_url, prefix=config.key_prefix, mode=config.redis_mode,
                buckets=config.buckets,
            )  # fmt: skip
            await store.close()
            self._replica_config = config.replace(
                redis_url=self.redis_url, port=port, reuse_port=True, processes=1
            )
            if self._metrics_dir is not None:
                metrics.prepare_multiprocess_dir(self._metrics_dir)
                self.metrics = metrics.serve(
                    metrics.multiprocess_registry(self._metrics_dir), config.host,
                    config.metrics_port,
                )  # fmt: skip
            await asyncio.gather(*(self._start_replica(i) for i in range(self.count)))
        except BaseException:
            await self.stop()
            raise
        self._watch = asyncio.create_task(self._supervise(), name="supervise")

    async def _start_replica(self, i: int) -> None:
        env = {**os.environ, CONFIG_ENV: json.dumps(asdict(self._replica_config))}
        if self._metrics_dir is not None:
            env[metrics.MULTIPROC_ENV] = str(self._metrics_dir)
        process = subprocess.Popen(
            [*die_with_parent_prefix("KILL"), sys.executable, "-m", "multiagents_server"],
            env=env,
            stdout=subprocess.PIPE,
        )
        self._replicas[i] = process
        assert process.stdout is not None
        loop = asyncio.get_running_loop()
        line = await asyncio.wait_for(
            loop.run_in_executor(None, process.stdout.readline), START_TIMEOUT_S
        )
        if READY_LINE not in line.decode():
            raise RuntimeError(f"replica {i} did not start (exit code {process.wait()})")
        log.info("replica %d started", i, extra={"pid": process.pid})

    async def _supervise(self) -> None:
        """Restart replicas that die, with backoff."""
        delay = RESTART_BACKOFF_S[0]
        while not self._stopping:
            await asyncio.sleep(0.2)
            for i, process in enumerate(self._replicas):
                if process is None or process.poll() is None or self._stopping:
                    continue
                log.error("replica %d (pid %d) exited with %s; restarting in %.1f s",
                          i, process.pid, process.returncode, delay)  # fmt: skip
                if self._metrics_dir is not None:
                    metrics.replica_exited(self._metrics_dir, process.pid)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_BACKOFF_S[1])
                try:
                    await self._start_replica(i)
                except Exception:
                    log.exception("replica %d failed to restart", i)

    async def stop(self) -> None:
        """SIGTERM every replica (each drains its workers), then stop Redis."""
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        live = [p for p in self._replicas if p is not None and p.poll() is None]
        for p in live:
            p.send_signal(signal.SIGTERM)
        deadline = self.config.drain_timeout_ms / 1000 + 10
        loop = asyncio.get_running_loop()
        for p in live:
            try:
                await asyncio.wait_for(loop.run_in_executor(None, p.wait), deadline)
            except TimeoutError:
                log.warning("replica pid %d did not stop in time; killed", p.pid)
                p.kill()
                p.wait()
        if self.embedded_redis is not None:
            await self.embedded_redis.stop()
            self.embedded_redis = None
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None


async def run_replica_from_env() -> None:
    """One replica of a supervisor (`python -m multiagents_server`)."""
    from multiagents_server.app import Server

    # The supervisor's resolved configuration, exactly (no file, no environment).
    config = load_config(json.loads(os.environ[CONFIG_ENV]), environ={})
    logs.configure(config.log_level, config.log_format)
    tracing.configure_from_env()
    server = Server(config)
    await server.start()
    print(READY_LINE, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
