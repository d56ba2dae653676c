"""Standard gRPC health checking and server reflection are served."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from multiagents_server.app import Server


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
