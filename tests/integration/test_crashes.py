"""Fault injection: real processes killed with SIGKILL. The invariant checked
is that every accepted workflow reaches a terminal state and none is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import ROOT
from integration.helpers import RawWorker, make_config, wait_for
from multiagents import Client, RetryPolicy, WorkerRuntime, WorkflowBuilder, heartbeat, worker
from multiagents.v1 import monitoring_service_pb2, monitoring_service_pb2_grpc
from multiagents.v1 import worker_service_pb2 as wpb
from multiagents_server.app import Server
from multiagents_server.embedded_redis import EmbeddedRedis, free_port

pytestmark = pytest.mark.slow

CRASH_WORKERS = str(ROOT / "tests" / "fixtures" / "crash_workers.py")


def spawn(
    *args: str, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """The CLI in a child process; its stderr goes to `log` when given."""
    with open(log or os.devnull, "wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "multiagents.cli", *args],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


FAST_LEASE = {"MULTIAGENTS_REPLICA_LEASE_MS": "1500", "MULTIAGENTS_HEARTBEAT_INTERVAL_MS": "300"}


def spawn_replica(
    redis_url: str, prefix: str, *, log: Path | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """A server replica in a child process sharing `redis_url` and `prefix`."""
    port = free_port()
    process = spawn(
        "serve", "--port", str(port), "--redis-url", redis_url, "--key-prefix", prefix,
        "--processes", "1", env=FAST_LEASE, log=log,
    )  # fmt: skip
    return process, f"127.0.0.1:{port}"


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started; killed by pid at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


async def session_count(address: str, worker_name: str) -> int:
    async with Client(address) as c:
        stub = monitoring_service_pb2_grpc.MonitoringServiceStub(c._channel)
        response = await stub.ListWorkers(monitoring_service_pb2.ListWorkersRequest())
    return sum(worker_name in s.worker_names for s in response.sessions)


async def test_worker_killed_mid_step_runs_again_on_another_worker(
    server: Server, client: Client, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    for _ in range(2):
        processes.append(
            spawn("worker", CRASH_WORKERS, "--server", server.address, "--concurrency", "1")
        )
    # Sessions appear in ListWorkers with the next lease renewal.
    await wait_for(lambda: session_count(server.address, "crash.slow"), timeout=20, interval=0.1)
    await wait_for(
        lambda: _at_least(session_count(server.address, "crash.slow"), 2), timeout=20, interval=0.1
    )
    wf = (
        WorkflowBuilder("crash.slow_wf")
        .add_step("slow", "crash.slow", retry=RetryPolicy(max_attempts=3, initial_interval=0.05))
        .build()
    )
    await client.register_workflow(wf)
    tx = await client.execute_workflow(wf.name, {"marker_dir": str(tmp_path), "sleep": 1.5})
    await wait_for(lambda: any(tmp_path.iterdir()), timeout=10)
    victim = int(next(tmp_path.iterdir()).name)
    os.kill(victim, signal.SIGKILL)
    status = await client.wait(tx, timeout=30)
    assert status.state == "completed"
    assert status.step_results["slow"]["pid"] != victim
    assert status.steps[0].attempts == 2
    history = await client.get_history(tx)
    assert [e.error.error.type for e in history if e.HasField("error")] == ["WorkerLost"]


async def test_a_stream_broken_while_its_answers_are_applied_still_loses_its_other_commands(
    tmp_path: Path,
) -> None:
    """The flake of the test above, made deterministic. A worker's stream ends
    (the request stream first, then gRPC cancels the handler, as when a worker
    is SIGKILLed) while an answer it sent is still being applied: the session
    must still be closed and its unanswered command failed as WorkerLost.
    Redis is paused (SIGSTOP) to hold the answer in flight while the
    cancellation arrives; the cancellation used to abort the session's close,
    leaving the command held by a dead session until its step timeout."""
    async with EmbeddedRedis(tmp_path / "redis") as redis:
        assert redis.pid is not None
        config = make_config(redis.url, heartbeat_interval_ms=60_000)  # no watchdog in the way
        async with (
            Server(config) as server,
            Client(server.address) as client,
            grpc.aio.insecure_channel(server.address) as channel,
        ):
            await client.register_workflow(WorkflowBuilder("broken").add_step("s", "raw").build())
            hello = wpb.Hello(worker_id="raw", worker_names=["raw"], max_concurrency=2)
            raw = await RawWorker.connect(channel, hello)
            answered = await client.execute_workflow("broken", {})
            lost = await client.execute_workflow("broken", {})
            commands = {c.command_id.split(":")[0]: c for c in await raw.commands(2)}
            assert server.dispatcher is not None
            session = server.dispatcher.sessions[raw.welcome.session_id]
            health = health_pb2_grpc.HealthStub(channel)
            os.kill(redis.pid, signal.SIGSTOP)
            try:
                result = wpb.CommandResult(command_id=commands[answered].command_id)
                raw.send(wpb.ConnectRequest(result=result))
                raw.close_sending()
                # The server saw the answer, then the end of the stream, and its
                # handler is closing the session (the end marker is consumed).
                await wait_for(lambda: session.end_reason and session.outgoing.empty())
                raw.call.cancel()
                # A call behind the cancellation on the same connection: the
                # server has processed the cancellation once it answers.
                await health.Check(health_pb2.HealthCheckRequest())
            finally:
                os.kill(redis.pid, signal.SIGCONT)
            status = await client.wait(answered, timeout=10)
            assert status.state == "completed"

            async def failed_as_worker_lost() -> bool:
                history = await client.get_history(lost)
                return [e.error.error.type for e in history if e.HasField("error")] == [
                    "WorkerLost"
                ]

            await wait_for(failed_as_worker_lost, timeout=10, interval=0.1)
            assert raw.welcome.session_id not in server.dispatcher.sessions


async def _at_least(count: object, n: int) -> bool:
    return await count >= n  # type: ignore[misc, operator, no-any-return]


@pytest.fixture
async def replica(
    redis_server: EmbeddedRedis, processes: list[subprocess.Popen[bytes]]
) -> AsyncIterator[tuple[str, list[str]]]:
    config = make_config(redis_server.url)
    port = free_port()
    args = [
        "serve",
        "--processes",
        "1",
        "--port",
        str(port),
        "--redis-url",
        redis_server.url,
        "--key-prefix",
        config.key_prefix,
    ]
    yield f"127.0.0.1:{port}", args


async def test_server_killed_with_100_in_flight_loses_nothing_after_restart(
    replica: tuple[str, list[str]], processes: list[subprocess.Popen[bytes]]
) -> None:
    address, args = replica
    env = {"MULTIAGENTS_REPLICA_LEASE_MS": "1500", "MULTIAGENTS_HEARTBEAT_INTERVAL_MS": "300"}
    server = spawn(*args, env=env)
    processes.append(server)
    wf = WorkflowBuilder("crash.three_naps")
    for step in ("a", "b", "c"):
        wf.add_step(step, "crash.nap", retry=RetryPolicy(max_attempts=10, initial_interval=0.1))
    async with Client(address) as client:
        await wait_for(_registers(client, wf.build()), timeout=20, interval=0.1)
        runtime = WorkerRuntime(
            [_import_worker("nap")], servers=address, max_concurrency=20, reconnect_max=0.5
        )
        await runtime.start(timeout=20)
        try:
            # 100 x 3 naps of 0.6 s at 20 at once: at least 9 s of work, so the
            # kill finds workflows in flight even when a loaded machine submits slowly.
            ids = [
                await client.execute_workflow("crash.three_naps", {"nap": 0.6}) for _ in range(100)
            ]
            statuses = await asyncio.gather(*(client.get_status(tx) for tx in ids))
            assert any(not s.terminal for s in statuses), "the kill must hit workflows in flight"
            server.send_signal(signal.SIGKILL)
            server.wait()
            processes.append(spawn(*args, env=env))
            finals = await asyncio.gather(*(client.wait(tx, timeout=90) for tx in ids))
        finally:
            await runtime.stop()
    assert [s.state for s in finals] == ["completed"] * 100
    assert all(set(s.step_results) == {"a", "b", "c"} for s in finals)


def _registers(client: Client, workflow: object) -> object:
    async def attempt() -> bool:
        try:
            await client.register_workflow(workflow)  # type: ignore[arg-type]
        except Exception:
            return False
        return True

    return attempt


def _import_worker(name: str) -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("crash_workers", CRASH_WORKERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


@pytest.mark.single_node
async def test_redis_restart_mid_step_loses_nothing(tmp_path: Path) -> None:
    """With AOF on, a Redis restart while a step runs loses nothing."""
    redis = EmbeddedRedis(tmp_path / "redis")
    await redis.start()
    config = make_config(redis.url)
    started = asyncio.Event()
    release = asyncio.Event()

    from multiagents import worker

    @worker("redis_restart.step")
    async def step(ctx: dict[str, object]) -> dict[str, object]:
        started.set()
        await release.wait()
        return {"survived": True}

    try:
        async with Server(config) as server, Client(server.address) as client:
            wf = WorkflowBuilder("redis_restart").add_step("s", step).add_step("t", step).build()
            await client.register_workflow(wf)
            runtime = WorkerRuntime([step], servers=server.address)
            await runtime.start(timeout=10)
            try:
                tx = await client.execute_workflow("redis_restart", {})
                await asyncio.wait_for(started.wait(), 10)
                await redis.stop()  # SIGTERM: Redis flushes its append-only file
                release.set()  # the answer arrives while Redis is down
                await asyncio.sleep(1.0)  # the length of the outage, not a wait for an event
                await redis.start()  # same port, same data directory
                status = await client.wait(tx, timeout=60)
            finally:
                await runtime.stop()
        assert status.state == "completed"
        assert status.step_results == {"s": {"survived": True}, "t": {"survived": True}}
    finally:
        await redis.stop()


async def test_two_replicas_share_work_and_survive_one_being_killed(
    redis_server: EmbeddedRedis, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Workers on replica A, clients on replica B; A is SIGKILLed mid-step."""
    config = make_config(redis_server.url)
    port_a = free_port()
    env = {"MULTIAGENTS_REPLICA_LEASE_MS": "1500", "MULTIAGENTS_HEARTBEAT_INTERVAL_MS": "300"}
    replica_a = spawn(
        "serve", "--processes", "1", "--port", str(port_a), "--redis-url", redis_server.url,
        "--key-prefix", config.key_prefix, env=env,
    )  # fmt: skip
    processes.append(replica_a)
    address_a = f"127.0.0.1:{port_a}"
    async with Server(config) as replica_b, Client(replica_b.address) as client:
        wf = WorkflowBuilder("replicas.wf").add_step(
            "slow", "crash.slow", retry=RetryPolicy(max_attempts=3, initial_interval=0.05)
        )
        await client.register_workflow(wf.build())
        # The worker prefers A and fails over to B.
        runtime = WorkerRuntime(
            [_import_worker("slow")], servers=[address_a, replica_b.address], reconnect_max=0.3
        )
        await runtime.start(timeout=20)
        try:
            tx = await client.execute_workflow(
                "replicas.wf", {"marker_dir": str(tmp_path), "sleep": 1}
            )
            await wait_for(lambda: any(tmp_path.iterdir()), timeout=10)
            sessions = await session_count(replica_b.address, "crash.slow")
            assert sessions == 1  # one session, on A (B sees it through A's lease)
            replica_a.send_signal(signal.SIGKILL)
            replica_a.wait()
            status = await client.wait(tx, timeout=60)
        finally:
            await runtime.stop()
    assert status.state == "completed"
    assert status.steps[0].attempts in (1, 2)  # the held answer, or a rerun after WorkerLost


async def test_three_replicas_lose_nothing_when_one_is_killed_mid_run(
    redis_server: EmbeddedRedis, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Workers spread over replicas A, B and C; A is SIGKILLed with workflows in flight."""
    prefix = make_config(redis_server.url).key_prefix
    replicas = [spawn_replica(redis_server.url, prefix) for _ in range(3)]
    processes.extend(p for p, _ in replicas)
    addresses = [a for _, a in replicas]
    wf = WorkflowBuilder("replicas.three_naps")
    for step in ("a", "b", "c"):
        wf.add_step(step, "crash.nap", retry=RetryPolicy(max_attempts=10, initial_interval=0.1))
    nap = _import_worker("nap")
    # Each runtime prefers another replica and fails over to the next ones.
    runtimes = [
        WorkerRuntime(
            [nap], servers=addresses[i:] + addresses[:i], max_concurrency=10, reconnect_max=0.3
        )
        for i in range(3)
    ]
    async with Client(addresses[1]) as client:
        # Three replica processes starting on a loaded 2-core machine (the
        # cluster lane) took over 20 s once.
        await wait_for(_registers(client, wf.build()), timeout=60, interval=0.1)
        for runtime in runtimes:
            await runtime.start(timeout=60)
        try:
            ids = await asyncio.gather(
                *(client.execute_workflow("replicas.three_naps", {"nap": 0.3}) for _ in range(60))
            )
            statuses = await asyncio.gather(*(client.get_status(tx) for tx in ids))
            assert any(not s.terminal for s in statuses), "the kill must hit workflows in flight"
            replicas[0][0].send_signal(signal.SIGKILL)
            replicas[0][0].wait()
            finals = await asyncio.gather(*(client.wait(tx, timeout=90) for tx in ids))
        finally:
            for runtime in runtimes:
                await runtime.stop()
    assert [s.state for s in finals] == ["completed"] * 60
    assert all(set(s.step_results) == {"a", "b", "c"} for s in finals)


async def test_a_paused_replica_is_fenced_off_and_its_late_answer_is_refused(
    redis_server: EmbeddedRedis, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Replica A is SIGSTOPped (a long GC pause) while its worker runs a step;
    B fences A off and fails the step as WorkerLost; the worker's answer reaches
    A after SIGCONT and A's commit is refused (fenced), so the step's result is
    the retry's, run after A rejoined."""
    config = make_config(redis_server.url)
    log = tmp_path / "replica-a.log"
    replica_a, address_a = spawn_replica(redis_server.url, config.key_prefix, log=log)
    processes.append(replica_a)
    markers = tmp_path / "markers"
    markers.mkdir()
    async with Server(config) as replica_b, Client(replica_b.address) as client:
        wf = WorkflowBuilder("fencing.wf").add_step(
            "slow", "crash.slow", retry=RetryPolicy(max_attempts=3, initial_interval=0.05)
        )
        await client.register_workflow(wf.build())
        runtime = WorkerRuntime([_import_worker("slow")], servers=[address_a], reconnect_max=0.3)
        await runtime.start(timeout=20)
        try:
            tx = await client.execute_workflow("fencing.wf", {"marker_dir": str(markers),
                                                              "sleep": 1})  # fmt: skip
            await wait_for(lambda: any(markers.iterdir()), timeout=10)
            replica_a.send_signal(signal.SIGSTOP)
            try:

                async def lost() -> bool:
                    errors = [e.error for e in await client.get_history(tx) if e.HasField("error")]
                    return any(e.error.type == "WorkerLost" for e in errors)

                await wait_for(lost, timeout=20, interval=0.1)
            finally:
                replica_a.send_signal(signal.SIGCONT)
            status = await client.wait(tx, timeout=60)
            history = await client.get_history(tx)
        finally:
            await runtime.stop()
    assert status.state == "completed"
    results = [e.result.command_id for e in history if e.HasField("result")]
    assert results == [f"{tx}:x0:2"]  # attempt 1's answer, held by fenced A, never landed
    assert "fenced off" in log.read_text()


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def test_serve_processes_restarts_a_killed_replica_and_loses_nothing(
    redis_server: EmbeddedRedis, processes: list[subprocess.Popen[bytes]]
) -> None:
    """`serve --processes 2`: two replicas behind one port; one is SIGKILLed
    mid-run, the supervisor starts another, every workflow completes."""
    prefix = make_config(redis_server.url).key_prefix
    port = free_port()
    supervisor = spawn(
        "serve", "--processes", "2", "--port", str(port), "--redis-url", redis_server.url,
        "--key-prefix", prefix, env=FAST_LEASE,
    )  # fmt: skip
    processes.append(supervisor)
    address = f"127.0.0.1:{port}"
    wf = WorkflowBuilder("supervised.naps")
    for step in ("a", "b"):
        wf.add_step(step, "crash.nap", retry=RetryPolicy(max_attempts=10, initial_interval=0.1))
    async with Client(address) as client:
        await wait_for(_registers(client, wf.build()), timeout=30, interval=0.1)
        replicas = _children(supervisor.pid)
        assert len(replicas) == 2
        runtime = WorkerRuntime(
            [_import_worker("nap")], servers=address, max_concurrency=20, reconnect_max=0.3
        )
        await runtime.start(timeout=20)
        try:
            ids = await asyncio.gather(
                *(client.execute_workflow("supervised.naps", {"nap": 0.3}) for _ in range(40))
            )
            os.kill(replicas[0], signal.SIGKILL)
            await wait_for(
                lambda: len(set(_children(supervisor.pid)) - {replicas[0]}) == 2, timeout=30
            )
            finals = await asyncio.gather(*(client.wait(tx, timeout=90) for tx in ids))
        finally:
            await runtime.stop()
    assert [s.state for s in finals] == ["completed"] * 40
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in replicas[1:])


async def test_a_paused_replica_does_not_time_out_a_step_whose_heartbeats_wait_unread(
    replica: tuple[str, list[str]], processes: list[subprocess.Popen[bytes]]
) -> None:
    """The replica is SIGSTOPped for twice the step's heartbeat timeout (a long
    GC pause, a starved CPU) while its worker beats every 0.1 s: the beats wait
    unread in the stream, through no fault of the worker's, and the step must
    not fail of HeartbeatTimeout when the replica wakes. The lease is longer
    than the pause, so nobody else takes over."""
    address, args = replica
    env = {"MULTIAGENTS_REPLICA_LEASE_MS": "10000", "MULTIAGENTS_HEARTBEAT_INTERVAL_MS": "300"}
    server = spawn(*args, env=env)
    processes.append(server)
    timeout_s = 1.5
    started = asyncio.Event()
    woken = asyncio.Event()

    @worker("pause.beating")
    async def beating(ctx: dict[str, object]) -> dict[str, object]:
        started.set()
        while not woken.is_set():
            heartbeat()
            await asyncio.sleep(0.1)
        for _ in range(10):  # beats the replica reads after waking
            heartbeat()
            await asyncio.sleep(0.1)
        return {}

    wf = WorkflowBuilder("pause.wf").add_step(
        "s", beating, heartbeat_timeout=timeout_s, retry=RetryPolicy(max_attempts=1)
    )
    async with Client(address) as client:
        await wait_for(_registers(client, wf.build()), timeout=20, interval=0.1)
        runtime = WorkerRuntime([beating], servers=address, reconnect_max=0.3)
        await runtime.start(timeout=20)
        try:
            tx = await client.execute_workflow("pause.wf", {})
            await asyncio.wait_for(started.wait(), timeout=10)
            server.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(2 * timeout_s)  # the worker beats on, unread
            finally:
                server.send_signal(signal.SIGCONT)
                woken.set()
            status = await client.wait(tx, timeout=30)
        finally:
            await runtime.stop()
    assert status.state == "completed", status.error
