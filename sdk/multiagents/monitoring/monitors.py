"""`EventMonitor` and `WorkerMonitor`: clients of MonitoringService.

The server records every command's lifecycle (dispatch → pickup → processing
→ completion) and per-worker statistics, for workers in every language; the
monitors read them, and follow the live event feed.
"""

from __future__ import annotations

import contextvars
import logging as pylogging
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc

from multiagents.channel import open_channel
from multiagents.errors import from_rpc_error
from multiagents.monitoring.records import EventTrace, WorkerStats
from multiagents.v1 import events_pb2, monitoring_service_pb2_grpc
from multiagents.v1 import monitoring_service_pb2 as mpb

DEFAULT_SERVER = "127.0.0.1:50051"

# The address of the framework started last in this async context (set by
# `create_simple_framework`), so `EventMonitor(logger=logger)` finds it.
current_server: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "multiagents_server_address", default=None
)


def resolve_address(address: str | None) -> str:
    """`address`, else the framework started last in this context, else
    MULTIAGENTS_SERVER, else the default local address."""
    return address or current_server.get() or os.environ.get("MULTIAGENTS_SERVER", DEFAULT_SERVER)


class _MonitorClient:
    def __init__(
        self,
        logger: pylogging.Logger | None = None,
        *,
        address: str | None = None,
        token: str | None = None,
    ) -> None:
        self.logger = logger or pylogging.getLogger("multiagents.monitoring")
        self._address = address
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> monitoring_service_pb2_grpc.MonitoringServiceStub:
        if self._channel is None:
            self._channel = open_channel(resolve_address(self._address))
        return monitoring_service_pb2_grpc.MonitoringServiceStub(self._channel)

    async def _call(self, name: str, request: Any) -> Any:
        try:
            return await getattr(self._stub(), name)(request, metadata=self._metadata, timeout=30)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


class EventMonitor(_MonitorClient):
    """Reads command lifecycles and follows the live event feed.

    `EventMonitor(logger=logger)` finds the framework started in this context
    (or MULTIAGENTS_SERVER); pass `address=` to watch another server.
    """

    async def traces(
        self, *, transaction_id: str = "", correlation_id: str = "", limit: int = 100
    ) -> list[EventTrace]:
        """Command traces, oldest first, of one transaction or correlation id (or the newest)."""
        request = mpb.GetEventTracesRequest(
            transaction_id=transaction_id, correlation_id=correlation_id, limit=limit
        )
        response = await self._call("GetEventTraces", request)
        return [EventTrace.from_proto(t) for t in response.traces]

    async def lifecycle(self, transaction_id: str) -> list[EventTrace]:
        """Every command of one execution in dispatch order, and log each one."""
        traces = await self.traces(transaction_id=transaction_id, limit=10_000)
        for t in traces:
            self.logger.info(
                "command %s step=%s worker=%s queue=%dms processing=%dms success=%s",
                t.command_id, t.step, t.worker_name, t.queue_latency_ms, t.processing_ms, t.success,
            )  # fmt: skip
        return traces

    async def events(
        self, *, transaction_id: str = "", correlation_id: str = ""
    ) -> AsyncIterator[events_pb2.WorkflowEvent]:
        """The live event feed, optionally filtered; runs until the caller stops."""
        request = mpb.StreamEventsRequest(
            transaction_id=transaction_id, correlation_id=correlation_id
        )
        call = self._stub().StreamEvents(request, metadata=self._metadata)
        try:
            async for response in call:
                self.logger.debug("event %s", response.event.WhichOneof("event"))
                yield response.event
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            call.cancel()


class WorkerMonitor(_MonitorClient):
    """Reads per-worker success/failure rates, timings, health and error patterns."""

    async def stats(self, *worker_names: str) -> dict[str, WorkerStats]:
        """Statistics by worker name (all known names when none are given)."""
        request = mpb.GetWorkerStatsRequest(worker_names=list(worker_names))
        response = await self._call("GetWorkerStats", request)
        result = {s.worker_name: WorkerStats.from_proto(s) for s in response.stats}
        for s in result.values():
            self.logger.info(
                "worker %s: %d ok, %d failed (%.0f%%), p50=%dms p99=%dms, %s",
                s.worker_name, s.succeeded, s.failed, 100 * s.success_rate, s.p50_ms, s.p99_ms,
                s.health,
            )  # fmt: skip
        return result

    async def sessions(self) -> list[mpb.WorkerSession]:
        """Connected worker sessions across every server replica."""
        response = await self._call("ListWorkers", mpb.ListWorkersRequest())
        return list(response.sessions)
