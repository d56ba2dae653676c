"""MonitoringService: connected workers and the live event feed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc

from multiagents.v1 import monitoring_service_pb2 as mpb
from multiagents.v1 import monitoring_service_pb2_grpc
from multiagents_server import convert
from multiagents_server.events import ALL, EventHub, event_transaction
from multiagents_server.orchestrator import Orchestrator
from multiagents_server.transport.errors import streaming, unary


class MonitoringService(monitoring_service_pb2_grpc.MonitoringServiceServicer):
    """Workers across all replicas, and the event feed."""

    def __init__(self, orchestrator: Orchestrator, hub: EventHub) -> None:
        self.orchestrator = orchestrator
        self.hub = hub

    @unary
    async def ListWorkers(
        self, request: mpb.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> mpb.ListWorkersResponse:
        store = self.orchestrator.store
        replicas = await store.live_replicas(self.orchestrator.clock())
        sessions = []
        for raw in await store.sessions_of(replicas):
            info = json.loads(raw)
            sessions.append(
                mpb.WorkerSession(
                    session_id=info["session_id"],
                    worker_id=info["worker_id"],
                    worker_names=info["worker_names"],
                    max_concurrency=info["max_concurrency"],
                    in_flight=info["in_flight"],
                    last_heartbeat=convert.timestamp(info["last_seen_ms"]),
                    sdk_language=info["sdk_language"],
                    sdk_version=info["sdk_version"],
                    replica_id=info["replica_id"],
                    draining=info["draining"],
                    connected_at=convert.timestamp(info["connected_ms"]),
                )
            )
        return mpb.ListWorkersResponse(sessions=sessions)

    @streaming
    async def StreamEvents(
        self, request: mpb.StreamEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[mpb.StreamEventsResponse]:
        with self.hub.subscribe(request.transaction_id or ALL) as events:
            while True:
                event = await events.get()
                if request.transaction_id and event_transaction(event) != request.transaction_id:
                    continue
                if request.correlation_id:
                    kind = event.WhichOneof("event")
                    if (
                        kind is None
                        or getattr(event, kind).correlation_id != request.correlation_id
                    ):
                        continue
                yield mpb.StreamEventsResponse(event=event)
