"""MonitoringService: connected workers and the live event feed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc

from multiagents.v1 import common_pb2, monitoring_service_pb2_grpc
from multiagents.v1 import monitoring_service_pb2 as mpb
from multiagents_server import convert
from multiagents_server.config import ServerConfig
from multiagents_server.engine import FailureKind
from multiagents_server.errors import InvalidArgument
from multiagents_server.events import ALL, EventHub, event_transaction
from multiagents_server.orchestrator import Orchestrator
from multiagents_server.transport.errors import streaming, unary


class MonitoringService(monitoring_service_pb2_grpc.MonitoringServiceServicer):
    """Workers across all replicas, and the event feed."""

    def __init__(self, orchestrator: Orchestrator, hub: EventHub, config: ServerConfig) -> None:
        self.orchestrator = orchestrator
        self.hub = hub
        self.config = config

    async def _sessions(self) -> list[dict[str, Any]]:
        store = self.orchestrator.store
        now = self.orchestrator.clock()
        replicas = [r for r, expires in await store.replicas() if expires >= now]
        return [json.loads(raw) for raw in await store.sessions_of(replicas)]

    @unary
    async def ListWorkers(
        self, request: mpb.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> mpb.ListWorkersResponse:
        sessions = []
        for info in await self._sessions():
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

    @unary
    async def GetWorkerStats(
        self, request: mpb.GetWorkerStatsRequest, context: grpc.aio.ServicerContext
    ) -> mpb.GetWorkerStatsResponse:
        # This replica's buffered counters first, so a caller reads its own
        # workflows' outcomes; other replicas' follow within a second.
        await self.orchestrator.outcomes.flush()
        store = self.orchestrator.store
        sessions = await self._sessions()
        names = list(request.worker_names) or sorted(
            set(await store.known_workers()) | {n for s in sessions for n in s["worker_names"]}
        )
        now = self.orchestrator.clock()
        stats = []
        for name in names:
            counters, durations = await store.worker_stats(name)
            serving = [s for s in sessions if name in s["worker_names"]]
            succeeded, failed = counters.get("succeeded", 0), counters.get("failed", 0)
            total = succeeded + failed
            ordered = sorted(durations)
            stats.append(
                mpb.WorkerStats(
                    worker_name=name,
                    succeeded=succeeded,
                    failed=failed,
                    success_rate=succeeded / total if total else 0.0,
                    p50=convert.duration(_percentile(ordered, 0.50)),
                    p95=convert.duration(_percentile(ordered, 0.95)),
                    p99=convert.duration(_percentile(ordered, 0.99)),
                    health=self._health(serving, succeeded, failed, now),
                    error_types={
                        k.removeprefix("err:"): v
                        for k, v in counters.items()
                        if k.startswith("err:")
                    },
                    sessions=len(serving),
                    sdk_languages=sorted({s["sdk_language"] for s in serving}),
                )
            )
        return mpb.GetWorkerStatsResponse(stats=stats)

    def _health(
        self, serving: list[dict[str, Any]], succeeded: int, failed: int, now: int
    ) -> mpb.WorkerHealth:
        if not serving:
            return mpb.WORKER_HEALTH_OFFLINE
        fresh = any(
            now - s["last_seen_ms"] <= self.config.health_check_interval_ms for s in serving
        )
        if not fresh or (failed > succeeded and failed + succeeded >= 5):
            return mpb.WORKER_HEALTH_DEGRADED
        return mpb.WORKER_HEALTH_HEALTHY

    @unary
    async def GetEventTraces(
        self, request: mpb.GetEventTracesRequest, context: grpc.aio.ServicerContext
    ) -> mpb.GetEventTracesResponse:
        if request.limit < 0:
            raise InvalidArgument("limit: must not be negative")
        limit = request.limit or 100
        await self.orchestrator.outcomes.flush()
        store = self.orchestrator.store
        if request.transaction_id:
            rows = [json.loads(r) for r in await store.traces_of(request.transaction_id)]
        else:
            rows = [json.loads(r) for r in await store.recent_traces(RECENT_SCAN)]
        if request.correlation_id:
            rows = [r for r in rows if r["correlation_id"] == request.correlation_id]
        rows.sort(key=lambda r: (r["dispatched_ms"], r["completed_ms"]))
        if not request.transaction_id:
            rows = rows[-limit:]
        return mpb.GetEventTracesResponse(traces=[_trace(r) for r in rows[:limit]])

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


RECENT_SCAN = 10_000


def _percentile(ordered: list[int], q: float) -> int:
    if not ordered:
        return 0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _trace(r: dict[str, Any]) -> mpb.EventTrace:
    trace = mpb.EventTrace(
        command_id=r["command_id"],
        transaction_id=r["transaction_id"],
        correlation_id=r["correlation_id"],
        worker_name=r["worker_name"],
        step=r["step"],
        dispatched_at=convert.timestamp(r["dispatched_ms"]),
        picked_up_at=convert.timestamp(r["picked_up_ms"]),
        completed_at=convert.timestamp(r["completed_ms"]),
        queue_latency=convert.duration(max(r["picked_up_ms"] - r["dispatched_ms"], 0)),
        processing_time=convert.duration(max(r["completed_ms"] - r["picked_up_ms"], 0)),
        success=r["success"],
        session_id=r["session_id"],
    )
    if r["failure"]:
        kind = FailureKind(r["failure"].get("kind", FailureKind.APPLICATION))
        trace.failure.CopyFrom(
            common_pb2.Failure(
                message=r["failure"]["message"],
                type=r["failure"]["type"],
                kind=convert.FAILURE_KIND_TO_PROTO[kind],
            )
        )
    return trace
