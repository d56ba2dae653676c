"""A real 3-master Redis Cluster for tests: three `redis-server` child processes.

Each node runs with `--cluster-enabled yes` in its own directory (its own
`nodes.conf` and append-only file), bound to 127.0.0.1 on a free port whose
cluster bus port (port + 10000) is free too. The cluster is formed over the
client protocol, not with `redis-cli --cluster create` (which polls once a
second): each node gets a third of the 16384 slots (CLUSTER ADDSLOTS;
ADDSLOTSRANGE is Redis 7 only) and a distinct config epoch, and every pair of
nodes MEETs directly, so no node waits for gossip to learn of a peer. `start()`
then polls CLUSTER INFO and CLUSTER NODES on every node, with a deadline,
until each reports `cluster_state:ok` and sees the same masters, connected and
serving slots. No replicas: a killed node is started again in place
(`restart_node`), on its append-only file.

A fresh master stays out of `cluster_state:ok` for 2 s after it starts (Redis'
CLUSTER_WRITABLE_DELAY), so `start()` takes a little over 2 s.

Processes are signalled by pid only, never by name (SIGTERM, bounded wait,
then SIGKILL), and die with their parent (PDEATHSIG via `setpriv`, which
execs redis-server: the child's pid is redis-server's).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from multiagents_server.embedded_redis import (
    APPENDFSYNC,
    die_with_parent_prefix,
    free_port,
    redis_server_binary,
)

SLOTS = 16384
HOST = "127.0.0.1"
# The cluster bus of a node listens on its client port + 10000.
BUS_PORT_OFFSET = 10000
# Tries with fresh ports when a node exits at startup (a port taken meanwhile).
START_ATTEMPTS = 3


class NodeExitedError(RuntimeError):
    """A redis-server process exited while the cluster was being started."""


@dataclasses.dataclass(frozen=True)
class PeerView:
    """One line of CLUSTER NODES: how one node sees a node of the cluster."""

    port: int
    flags: frozenset[str]
    connected: bool
    slots: bool

    @property
    def healthy_master(self) -> bool:
        bad = {"handshake", "fail", "fail?", "noaddr"}
        return "master" in self.flags and self.connected and self.slots and not bad & self.flags


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def cluster_ports(count: int) -> list[int]:
    """`count` distinct free ports whose cluster bus ports are free too."""
    taken: set[int] = set()
    ports: list[int] = []
    for _ in range(1000):
        if len(ports) == count:
            return ports
        port = free_port()
        bus = port + BUS_PORT_OFFSET
        if port in taken or bus > 65535 or bus in taken or not _bindable(bus):
            continue
        taken.update((port, bus))
        ports.append(port)
    raise RuntimeError(f"found no {count} free port pairs for a Redis Cluster")


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """The inclusive slot range of each master, split as `redis-cli --cluster create` does."""
    per = SLOTS / masters
    return [(round(i * per), round((i + 1) * per) - 1) for i in range(masters)]


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


async def _command(r: aioredis.Redis, *args: str | int) -> object:
    """One raw command. Multi-word commands go as separate words ("CLUSTER", "INFO"):
    redis-py then applies no response callback and returns the server's reply as is."""
    return await r.execute_command(*args)  # type: ignore[no-untyped-call]


class RedisCluster:
    """A Redis Cluster of `masters` redis-server processes. `start()`/`stop()` or `async with`.

    `base_dir` holds one directory per node (wiped at `start()`: a start forms
    a new cluster); without it a temporary directory is used and removed at
    `stop()`. `node_timeout_ms` is cluster-node-timeout: how long a node may be
    unreachable before it is flagged as failing; lower it in tests that kill nodes.
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str] | None = None,
        *,
        masters: int = 3,
        node_timeout_ms: int = 5000,
    ) -> None:
        if masters < 1:
            raise ValueError("a cluster needs at least one master")
        self.masters = masters
        self.node_timeout_ms = node_timeout_ms
        self._base_dir = Path(base_dir) if base_dir is not None else None
        self._own_dir: Path | None = None
        self.ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []

    # -- addresses --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """A redis:// URL of node 0, for `redis.asyncio.RedisCluster.from_url`."""
        return self.node_url(0)

    def node_url(self, i: int) -> str:
        return f"redis://{HOST}:{self.ports[i]}"

    @property
    def nodes(self) -> list[tuple[str, int, int]]:
        """(host, port, pid) of every node, in start order; killed nodes stay listed."""
        return [(HOST, port, p.pid) for port, p in zip(self.ports, self._processes, strict=True)]

    @property
    def base_dir(self) -> Path:
        base = self._base_dir or self._own_dir
        if base is None:
            raise RuntimeError("the cluster has no directory: it is not started")
        return base

    def node_dir(self, i: int) -> Path:
        return self.base_dir / f"node{i}"

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> RedisCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout: float = 20.0) -> None:
        """Start the nodes, form the cluster, wait until every node reports it healthy."""
        if self._processes:
            raise RuntimeError("the cluster is already started")
        deadline = time.monotonic() + timeout
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                await self._start_once(deadline)
                return
            except NodeExitedError:
                await self.stop()
                if attempt == START_ATTEMPTS or time.monotonic() > deadline:
                    raise
            except BaseException:
                await self.stop()
                raise

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop every node by pid: SIGTERM, wait up to `timeout`, then SIGKILL."""
        live = [p for p in self._processes if p.poll() is None]
        for p in live:
            os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.kill_all()
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None

    def kill_all(self) -> None:
        """SIGKILL every node still running, by pid, and reap them (a last resort)."""
        for p in self._processes:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
        for p in self._processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        self._processes = []

    def kill_node(self, i: int) -> int:
        """SIGKILL node `i` by pid and reap it; returns its pid."""
        process = self._processes[i]
        # A reaped pid may already belong to another process: never signal it.
        if process.poll() is not None:
            raise RuntimeError(f"node {i} (pid {process.pid}) is not running")
        os.kill(process.pid, signal.SIGKILL)
        # SIGKILL cannot be caught or delayed: this waits for the kernel only.
        process.wait(timeout=10)
        return process.pid

    async def restart_node(self, i: int, timeout: float = 15.0) -> int:
        """Start killed node `i` again on its port and directory; returns its pid.

        It reads back its `nodes.conf` (the same node id, epoch and slots: it
        rejoins the cluster as itself) and its append-only file (what it had
        acknowledged). Waits until it answers, not until the cluster is
        healthy again: its peers clear a FAIL flag they set on it only when
        they hear from it (for a master with slots and no replica to take
        over, 2 × node timeout after the flag was set), see `wait_healthy`.
        """
        if self.alive(i):
            raise RuntimeError(f"node {i} (pid {self._processes[i].pid}) is running")
        self._processes[i] = self._spawn(i)
        await self._wait_ping(i, time.monotonic() + timeout)
        return self._processes[i].pid

    def alive(self, i: int) -> bool:
        return i < len(self._processes) and self._processes[i].poll() is None

    # -- observation ------------------------------------------------------------------------

    async def cluster_info(self, i: int) -> dict[str, str]:
        """CLUSTER INFO of node `i`, as strings."""
        async with self._client(i) as r:
            text = _text(await _command(r, "CLUSTER", "INFO"))
        return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)

    async def cluster_nodes(self, i: int) -> dict[int, PeerView]:
        """CLUSTER NODES of node `i`, by port of the node described."""
        async with self._client(i) as r:
            text = _text(await _command(r, "CLUSTER", "NODES"))
        views = {}
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 8:
                continue
            # ip:port@cport (the ip is empty until a node has met another).
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            views[port] = PeerView(
                port=port,
                flags=frozenset(fields[2].split(",")),
                connected=fields[7] == "connected",
                slots=len(fields) > 8,
            )
        return views

    async def wait_healthy(self, timeout: float = 15.0) -> None:
        """Wait until every node reports `cluster_state:ok` and sees all masters healthy.

        For a cluster whose nodes all run: a killed master fails the cluster.
        """
        deadline = time.monotonic() + timeout
        while True:
            for i, p in enumerate(self._processes):
                if p.poll() is not None:
                    raise NodeExitedError(
                        f"redis node {i} exited with {p.returncode}: {self._log_tail(i)}"
                    )
            problems = await asyncio.gather(*(self._node_problem(i) for i in range(self.masters)))
            last = {i: problem for i, problem in enumerate(problems) if problem}
            if not last:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Redis Cluster is not healthy after {timeout:.1f}s: {last}")
            await asyncio.sleep(0.05)

    # -- internals --------------------------------------------------------------------------

    async def _start_once(self, deadline: float) -> None:
        if self._base_dir is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="redis-cluster-"))
        self.ports = cluster_ports(self.masters)
        for i in range(self.masters):
            # A new cluster: no nodes.conf or AOF of an earlier one.
            shutil.rmtree(self.node_dir(i), ignore_errors=True)
            self.node_dir(i).mkdir(parents=True)
            self._processes.append(self._spawn(i))
        pings = [asyncio.create_task(self._wait_ping(i, deadline)) for i in range(self.masters)]
        try:
            await asyncio.gather(*pings)
        finally:
            # One node failed: the others' waits end with it.
            for ping in pings:
                ping.cancel()
            await asyncio.gather(*pings, return_exceptions=True)
        await self._form()
        await self.wait_healthy(max(0.1, deadline - time.monotonic()))

    def _spawn(self, i: int) -> subprocess.Popen[bytes]:
        node_dir = self.node_dir(i)
        args = [
            *die_with_parent_prefix(),
            redis_server_binary(),
            "--bind", HOST,
            "--port", str(self.ports[i]),
            "--dir", str(node_dir),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node_dir / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--appendonly", "yes",
            "--appendfsync", APPENDFSYNC,
            "--save", "",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--logfile", str(node_dir / "redis.log"),
            "--pidfile", str(node_dir / "redis.pid"),
        ]  # fmt: skip
        return subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _client(self, i: int) -> aioredis.Redis:
        # No retries: each poll is one bounded attempt; the polling loops retry.
        return aioredis.Redis(
            host=HOST,
            port=self.ports[i],
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )

    async def _wait_ping(self, i: int, deadline: float) -> None:
        """Wait until node `i` answers, and is our process, not another on a stolen port."""
        process = self._processes[i]
        async with self._client(i) as r:
            while True:
                if process.poll() is not None:
                    raise NodeExitedError(
                        f"redis node {i} exited with {process.returncode}: {self._log_tail(i)}"
                    )
                with contextlib.suppress(aioredis.ConnectionError, aioredis.TimeoutError, OSError):
                    if (await r.info("server")).get("process_id") == process.pid:
                        return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis node {i} did not answer: {self._log_tail(i)}")
                await asyncio.sleep(0.01)

    async def _form(self) -> None:
        """Assign slots and epochs, then introduce every node to every other node."""
        for i, (first, last) in enumerate(slot_ranges(self.masters)):
            async with self._client(i) as r:
                await _command(r, "CLUSTER", "ADDSLOTS", *range(first, last + 1))
                # Distinct epochs, as redis-cli gives: no epoch collision to resolve.
                await _command(r, "CLUSTER", "SET-CONFIG-EPOCH", i + 1)
        # Each pair meets directly: by gossip alone a node may learn of a peer
        # only on a random ping, up to node_timeout/2 later.
        for i in range(self.masters):
            async with self._client(i) as r:
                for j in range(i + 1, self.masters):
                    await _command(r, "CLUSTER", "MEET", HOST, self.ports[j])

    async def _node_problem(self, i: int) -> str:
        """'' if node `i` sees a healthy cluster of all the masters, else what is wrong."""
        try:
            info = await self.cluster_info(i)
            views = await self.cluster_nodes(i)
        except (aioredis.RedisError, OSError) as e:
            return f"unreachable: {e!r}"
        if info.get("cluster_state") != "ok":
            return f"cluster_state:{info.get('cluster_state')}"
        if info.get("cluster_slots_ok") != str(SLOTS):
            return f"cluster_slots_ok:{info.get('cluster_slots_ok')}"
        masters = {port for port, view in views.items() if view.healthy_master}
        if masters != set(self.ports):
            return f"sees healthy masters {sorted(masters)}, expected {sorted(self.ports)}"
        return ""

    def _log_tail(self, i: int) -> str:
        try:
            lines = (self.node_dir(i) / "redis.log").read_text(errors="replace").splitlines()
        except (OSError, RuntimeError):
            return "(no log)"
        return " | ".join(lines[-5:])
