"""WorkflowService: what clients call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc

from multiagents.v1 import common_pb2, events_pb2, workflow_service_pb2_grpc
from multiagents.v1 import workflow_service_pb2 as pb
from multiagents_server import convert, observability, progress
from multiagents_server.config import ServerConfig
from multiagents_server.errors import InvalidArgument, Overloaded
from multiagents_server.events import EventHub
from multiagents_server.orchestrator import Orchestrator
from multiagents_server.transport.errors import streaming, unary

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
# How long an overloaded server asks clients to wait before a retry.
OVERLOAD_RETRY_MS = 50
# The watch stream re-reads the state this often in case a live event was
# missed (a pub/sub reconnect); normally every change arrives as it happens.
WATCH_RESYNC_S = 10.0


def _require(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(f"{field}: required")
    convert.check_length(value, field, convert.MAX_ID_LENGTH)
    return value


class WorkflowService(workflow_service_pb2_grpc.WorkflowServiceServicer):
    """Registers definitions, starts, follows and cancels executions."""

    def __init__(self, orchestrator: Orchestrator, hub: EventHub, config: ServerConfig) -> None:
        self.orchestrator = orchestrator
        self.hub = hub
        self.config = config
        self._submits = 0

    @unary
    async def RegisterWorkflow(
        self, request: pb.RegisterWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> pb.RegisterWorkflowResponse:
        if not request.HasField("definition"):
            raise InvalidArgument("definition: required")
        spec = convert.spec_from_proto(
            request.definition, default_timeout_ms=self.config.default_step_timeout_ms
        )
        return pb.RegisterWorkflowResponse(
            created=await self.orchestrator.definitions.register(spec)
        )

    @unary
    async def GetWorkflowDefinition(
        self, request: pb.GetWorkflowDefinitionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetWorkflowDefinitionResponse:
        spec = await self.orchestrator.definitions.get(
            _require(request.name, "name"), request.version
        )
        return pb.GetWorkflowDefinitionResponse(definition=convert.spec_to_proto(spec))

    @unary
    async def ListWorkflowDefinitions(
        self, request: pb.ListWorkflowDefinitionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkflowDefinitionsResponse:
        specs = await self.orchestrator.definitions.all()
        return pb.ListWorkflowDefinitionsResponse(
            definitions=[convert.spec_to_proto(s) for s in specs]
        )

    @unary
    async def ExecuteWorkflow(
        self, request: pb.ExecuteWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExecuteWorkflowResponse:
        name = _require(request.workflow_name, "workflow_name")
        if request.version < 0:
            raise InvalidArgument("version: must be >= 0 (0 means latest)")
        input = convert.json_object(request.input, "input", self.config.max_payload_bytes)
        convert.check_length(request.request_id, "request_id", convert.MAX_ID_LENGTH)
        convert.check_length(request.correlation_id, "correlation_id", convert.MAX_ID_LENGTH)
        metadata = {k: v for k, v in context.invocation_metadata() or () if k == "traceparent"}
        for key, value in metadata.items():
            convert.check_length(str(value), f"metadata {key}", convert.MAX_METADATA_VALUE_LENGTH)
        if self._submits >= self.config.max_inflight_submits:
            raise Overloaded(
                f"server overloaded: {self._submits} submits in flight (max_inflight_submits); "
                f"nothing was started, retry after {OVERLOAD_RETRY_MS} ms",
                OVERLOAD_RETRY_MS,
            )
        self._submits += 1
        try:
            with observability.submit_span(name, metadata):
                tx, created = await self.orchestrator.execute(
                    name,
                    input,
                    version=request.version,
                    request_id=request.request_id,
                    correlation_id=request.correlation_id,
                    metadata={k: str(v) for k, v in metadata.items()},
                )
        finally:
            self._submits -= 1
        return pb.ExecuteWorkflowResponse(transaction_id=tx, created=created)

    @unary
    async def GetStatus(
        self, request: pb.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStatusResponse:
        tx = _require(request.transaction_id, "transaction_id")
        snap = await self.orchestrator.snapshot(tx)
        status = convert.status_to_proto(snap.execution, snap.revision)
        await progress.attach(self.orchestrator.store, snap.execution, status)
        return pb.GetStatusResponse(status=status)

    @streaming
    async def WatchWorkflow(
        self, request: pb.WatchWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchWorkflowResponse]:
        tx = _require(request.transaction_id, "transaction_id")
        # Subscribe before reading the state, so no change falls in between.
        with self.hub.subscribe(tx) as events:
            snap = await self.orchestrator.snapshot(tx)
            floor = latest = snap.revision
            now = self.orchestrator.clock()
            first = pb.WatchWorkflowResponse(event=convert.status_event(snap.execution, floor, now))
            if snap.execution.state.terminal:
                first.final_status.CopyFrom(convert.status_to_proto(snap.execution, floor))
                yield first
                return
            yield first
            while True:
                event: events_pb2.WorkflowEvent | None = None
                with contextlib.suppress(TimeoutError):
                    event = await asyncio.wait_for(events.get(), WATCH_RESYNC_S)
                if event is None:
                    snap = await self.orchestrator.snapshot(tx)
                    if snap.revision <= latest:
                        continue
                    latest = snap.revision
                    now = self.orchestrator.clock()
                    status = convert.status_event(snap.execution, latest, now)
                elif event.WhichOneof("event") == "status" and event.status.revision > floor:
                    status = event.status
                    latest = max(latest, status.revision)
                else:
                    continue
                if status.state not in TERMINAL:
                    yield pb.WatchWorkflowResponse(event=status)
                    continue
                final = await self.orchestrator.snapshot_at(tx, status.revision)
                yield pb.WatchWorkflowResponse(
                    event=status,
                    final_status=convert.status_to_proto(final.execution, final.revision),
                )
                return

    @unary
    async def CancelWorkflow(
        self, request: pb.CancelWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> pb.CancelWorkflowResponse:
        tx = _require(request.transaction_id, "transaction_id")
        convert.check_length(request.reason, "reason", convert.MAX_REASON_LENGTH)
        await self.orchestrator.cancel(tx, request.reason)
        return pb.CancelWorkflowResponse()

    @unary
    async def ListWorkflows(
        self, request: pb.ListWorkflowsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWorkflowsResponse:
        if request.page_size < 0 or request.page_size > MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size: must be between 0 and {MAX_PAGE_SIZE}")
        state = None
        if request.state != common_pb2.WORKFLOW_STATE_UNSPECIFIED:
            if request.state not in convert.STATE_FROM_PROTO:
                raise InvalidArgument(f"state: unknown value {request.state}")
            state = convert.STATE_FROM_PROTO[request.state]
        if request.page_token and ":" not in request.page_token:
            raise InvalidArgument("page_token: malformed; pass next_page_token unchanged")
        try:
            found, token = await self.orchestrator.list(
                state=state,
                name=request.workflow_name,
                page_size=request.page_size or DEFAULT_PAGE_SIZE,
                page_token=request.page_token,
            )
        except ValueError:
            raise InvalidArgument("page_token: malformed; pass next_page_token unchanged") from None
        return pb.ListWorkflowsResponse(
            workflows=[convert.status_to_proto(s.execution, s.revision) for s in found],
            next_page_token=token,
        )

    @unary
    async def GetHistory(
        self, request: pb.GetHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetHistoryResponse:
        tx = _require(request.transaction_id, "transaction_id")
        return pb.GetHistoryResponse(events=await self.orchestrator.history(tx))


TERMINAL = frozenset(
    {
        common_pb2.WORKFLOW_STATE_COMPLETED,
        common_pb2.WORKFLOW_STATE_FAILED,
        common_pb2.WORKFLOW_STATE_COMPENSATED,
        common_pb2.WORKFLOW_STATE_CANCELLED,
    }
)
