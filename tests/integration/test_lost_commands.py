"""Commands that Redis gave a replica in a reply the replica never got (found
by the chaos test on a Redis Cluster: a read of the command queues pipelined
over three nodes failed on the one that had been killed, and the commands
the two others had handed over were never seen), and the redis-py error that
ended a replica's command puller in the same run."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError

from conftest import CLUSTER_LANE
from integration.helpers import RawWorker, make_config, wait_for
from multiagents import Client, WorkflowBuilder
from multiagents.v1 import common_pb2, monitoring_service_pb2, monitoring_service_pb2_grpc
from multiagents.v1 import worker_service_pb2 as wpb
from multiagents_server import app, dispatcher
from multiagents_server.app import Server
from multiagents_server.embedded_redis import EmbeddedRedis
from multiagents_server.store import Keys, open_store
from multiagents_server.store.keys import DISPATCH_GROUP

# Short enough for a test; the defaults are 10 s and 5 s.
LOST_AFTER_MS = 1000
RECOVER_LOST_S = 0.3
# Raw workers send no heartbeats: their sessions must outlive the waits.
QUIET_WORKERS_MS = 60_000
# Two replicas of a test must not take each other for dead on a loaded machine.
LONG_LEASE_MS = 30_000


@pytest.fixture
def quick_recovery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher, "LOST_AFTER_MS", LOST_AFTER_MS)
    monkeypatch.setattr(app, "RECOVER_LOST_S", RECOVER_LOST_S)


@pytest.fixture
async def raw_redis(redis_server: EmbeddedRedis) -> AsyncIterator[Any]:
    """A redis-py client of the session's Redis (a cluster client in the cluster lane)."""
    c: Any = (ClusterClient if CLUSTER_LANE else redis.Redis).from_url(redis_server.url)
    yield c
    await c.aclose()


def _hello(uid: str, worker_id: str, resume_token: str = "") -> wpb.Hello:
    return wpb.Hello(
        worker_id=worker_id, worker_names=[f"{uid}.w"], max_concurrency=1,
        resume_token=resume_token,
    )  # fmt: skip


def _result(command: wpb.Command) -> wpb.ConnectRequest:
    payload = common_pb2.Payload(metadata={"encoding": b"json/plain"}, data=json.dumps({}).encode())
    return wpb.ConnectRequest(
        result=wpb.CommandResult(command_id=command.command_id, result=payload)
    )


async def _sessions(client: Client) -> set[str]:
    stub = monitoring_service_pb2_grpc.MonitoringServiceStub(client._channel)
    listed = await stub.ListWorkers(monitoring_service_pb2.ListWorkersRequest())
    return {s.session_id for s in listed.sessions}


async def _queued_after_a_session_left(
    client: Client, channel: grpc.aio.Channel, keys: Keys, uid: str
) -> tuple[str, str]:
    """A first session makes the replica serve the worker name (and create
    its consumer groups) and leaves; then a workflow is started, whose
    command waits in its queue. Returns its transaction id and queue key."""
    await client.register_workflow(WorkflowBuilder(uid).add_step("s", f"{uid}.w").build())
    first = await RawWorker.connect(channel, _hello(uid, "w-1"))
    first.call.cancel()
    await wait_for(lambda: _gone(client, first.welcome.session_id), timeout=10, interval=0.05)
    tx = await client.execute_workflow(uid, {})
    return tx, keys.queue(keys.bucket_of(tx), f"{uid}.w")


async def test_a_command_claimed_for_a_replica_by_a_lost_reply_is_sent_again(
    redis_server: EmbeddedRedis, raw_redis: Any, uid: str, quick_recovery: None
) -> None:
    config = make_config(
        redis_server.url, heartbeat_interval_ms=QUIET_WORKERS_MS, replica_lease_ms=LONG_LEASE_MS
    )
    keys = Keys(config.key_prefix, config.buckets)
    async with (
        Server(config) as server,
        Client(server.address) as client,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        tx, queue = await _queued_after_a_session_left(client, channel, keys, uid)
        # The replica's read of the queue, whose reply never reaches it.
        read = await raw_redis.xreadgroup(DISPATCH_GROUP, server.replica_id, {queue: ">"}, count=10)
        assert read, "the command was queued"
        second = await RawWorker.connect(channel, _hello(uid, "w-2"))
        (command,) = await second.commands(1, timeout=LOST_AFTER_MS / 1000 + 20)
        second.send(_result(command))
        status = await client.wait(tx, timeout=10)
        second.call.cancel()
        history = await client.get_history(tx)
    assert command.command_id == f"{tx}:x0:1"
    assert status.state == "completed"
    assert status.steps[0].attempts == 1  # sent again, not failed and retried
    assert [e for e in history if e.HasField("error")] == []


async def test_a_command_resumed_on_another_replica_is_not_sent_again_by_the_first(
    redis_server: EmbeddedRedis,
    raw_redis: Any,
    uid: str,
    quick_recovery: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="multiagents_server.dispatcher")
    config = make_config(
        redis_server.url, heartbeat_interval_ms=QUIET_WORKERS_MS, replica_lease_ms=LONG_LEASE_MS
    )
    keys = Keys(config.key_prefix, config.buckets)
    async with (
        Server(config) as a,
        Server(config) as b,
        Client(a.address) as client,
        grpc.aio.insecure_channel(a.address) as to_a,
        grpc.aio.insecure_channel(b.address) as to_b,
    ):
        await client.register_workflow(WorkflowBuilder(uid).add_step("s", f"{uid}.w").build())
        first = await RawWorker.connect(to_a, _hello(uid, "w-1"))
        tx = await client.execute_workflow(uid, {})
        (command,) = await first.commands(1)
        first.call.cancel()
        await wait_for(lambda: _gone(client, first.welcome.session_id), timeout=10, interval=0.05)
        token = first.welcome.resume_token
        second = await RawWorker.connect(to_b, _hello(uid, "w-1", resume_token=token))
        queue = keys.queue(keys.bucket_of(tx), f"{uid}.w")
        pending = await raw_redis.xpending_range(queue, DISPATCH_GROUP, "-", "+", 10)
        # B holds the command now, for Redis too: A, once the resume window
        # of the ended session is over, does not take it for a command it
        # holds without knowing, and does not send it again.
        assert [p["consumer"].decode() for p in pending] == [b.replica_id]
        await asyncio.sleep(
            config.resume_window_ms / 1000 + LOST_AFTER_MS / 1000 + 5 * RECOVER_LOST_S
        )
        assert not [r for r in caplog.records if r.getMessage().startswith("sending again")]
        second.send(_result(command))
        status = await client.wait(tx, timeout=10)
        second.call.cancel()
    assert status.state == "completed"
    assert status.steps[0].attempts == 1


async def _gone(client: Client, session_id: str) -> bool:
    return session_id not in await _sessions(client)


@pytest.mark.skipif(
    sys.version_info >= (3, 12),
    reason="the write waits for a task of asyncio.wait_for (a close can come first) on 3.11 only",
)
async def test_a_connection_closed_while_a_command_is_written_is_a_connection_error(
    redis_server: EmbeddedRedis,
) -> None:
    url = urlsplit(redis_server.url)
    connection = Connection(host=url.hostname, port=url.port, socket_timeout=5)
    await connection.connect()
    writing = asyncio.create_task(connection.send_packed_command(connection.pack_command("PING")))
    await asyncio.sleep(0)  # the write is scheduled, not done
    # As redis-py's cluster client closes the connections of a node in use.
    await connection.disconnect(nowait=True)
    with pytest.raises(ConnectionError):  # not AttributeError
        await writing


async def test_commands_held_by_a_consumer_no_replica_registers_are_reclaimed(
    redis_server: EmbeddedRedis, raw_redis: Any, uid: str, quick_recovery: None
) -> None:
    """A replica that a reaper fenced off and forgot while it was alive
    (a Redis outage let its lease expire) took a command before it renewed
    its lease, then died: nothing registered names it any more."""
    config = make_config(redis_server.url, heartbeat_interval_ms=QUIET_WORKERS_MS)
    keys = Keys(config.key_prefix, config.buckets)
    async with (
        Server(config) as server,
        Client(server.address) as client,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        tx, queue = await _queued_after_a_session_left(client, channel, keys, uid)
        assert await raw_redis.xreadgroup(DISPATCH_GROUP, "forgotten", {queue: ">"}, count=10)
        second = await RawWorker.connect(channel, _hello(uid, "w-2"))
        # Reclaimed once unregistered for a lease: failed as lost, run again.
        (command,) = await second.commands(1, timeout=config.replica_lease_ms / 1000 + 20)
        second.send(_result(command))
        status = await client.wait(tx, timeout=10)
        second.call.cancel()
        history = await client.get_history(tx)
        consumers = await raw_redis.xinfo_consumers(queue, DISPATCH_GROUP)
    assert command.command_id == f"{tx}:x0:2"
    assert status.state == "completed"
    errors = [e.error.error for e in history if e.HasField("error")]
    assert [(e.type, e.message) for e in errors] == [
        ("WorkerLost", "server replica forgotten lost")
    ]
    assert "forgotten" not in {c["name"].decode() for c in consumers}


async def test_a_consumer_is_deleted_only_when_nothing_is_pending_at_it(
    redis_server: EmbeddedRedis, raw_redis: Any, uid: str
) -> None:
    # XGROUP DELCONSUMER drops the commands pending at a consumer: nobody
    # could claim them any more.
    store = await open_store(redis_server.url, prefix=uid)
    try:
        await store.ensure_groups("w")
        queue = store.keys.queue(0, "w")
        await raw_redis.xadd(queue, {"c": b"command"})
        assert await raw_redis.xreadgroup(DISPATCH_GROUP, "holder", {queue: ">"})
        await raw_redis.xreadgroup(DISPATCH_GROUP, "idle", {queue: ">"})
        await store.delete_consumer("holder", ["w"])
        await store.delete_consumer("idle", ["w"])
        consumers = await raw_redis.xinfo_consumers(queue, DISPATCH_GROUP)
        pending = await raw_redis.xpending_range(queue, DISPATCH_GROUP, "-", "+", 10)
    finally:
        await store.close()
    assert [c["name"] for c in consumers] == [b"holder"]
    assert [p["consumer"] for p in pending] == [b"holder"]
