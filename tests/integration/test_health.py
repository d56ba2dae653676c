"""Standard gRPC health checking (which follows Redis) and server reflection."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from integration.helpers import serving as serving_workers
from integration.helpers import wait_for
from multiagents import Client, WorkflowBuilder, worker
from multiagents_server.app import Server
from multiagents_server.config import ServerConfig


async def test_health_reports_serving_for_every_service(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "multiagents.v1.WorkflowService", "multiagents.v1.WorkerService"):
            response = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(server: Server) -> None:
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for response in stub.ServerReflectionInfo(iter([request])):
            names = {s.name for s in response.list_services_response.service}
            break
    assert {
        "multiagents.v1.WorkflowService",
        "multiagents.v1.WorkerService",
        "multiagents.v1.MonitoringService",
        "grpc.health.v1.Health",
    } <= names


async def test_a_second_server_on_a_busy_port_fails_to_start(server: Server) -> None:
    import pytest

    second = Server(server.config.replace(port=server.port))
    with pytest.raises(RuntimeError, match="bind"):
        await second.start()


async def _status(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        response = await stub.Check(health_pb2.HealthCheckRequest(service=""))
        return int(response.status)


@pytest.mark.single_node
async def test_the_embedded_redis_killed_is_restarted_and_health_follows(
    tmp_path: Path, uid: str
) -> None:
    """SIGKILL of the embedded Redis: health says NOT_SERVING, the server
    starts Redis again on its data directory, health is SERVING again and a
    workflow registered before the kill still runs."""
    config = ServerConfig(port=0, data_dir=str(tmp_path), heartbeat_interval_ms=300)
    async with Server(config) as server, Client(server.address) as client:

        @worker(f"{uid}.step")
        async def step(ctx: dict[str, object]) -> dict[str, object]:
            return {"ok": True}

        await client.register_workflow(WorkflowBuilder(uid).add_step("s", step).build())
        assert server.embedded_redis is not None and server.embedded_redis.pid is not None
        os.kill(server.embedded_redis.pid, signal.SIGKILL)
        serving = health_pb2.HealthCheckResponse.SERVING
        await wait_for(lambda: _is(server.address, lambda s: s != serving), timeout=10)
        await wait_for(lambda: _is(server.address, lambda s: s == serving), timeout=20)
        async with serving_workers(server, step):
            tx = await client.execute_workflow(uid, {})
            status = await client.wait(tx, timeout=20)
    assert status.state == "completed"


async def _is(address: str, predicate: Any) -> bool:
    return bool(predicate(await _status(address)))
