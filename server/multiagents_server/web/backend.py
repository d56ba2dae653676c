"""The dashboard's data: the server's own gRPC API, called over a private
Unix socket of this replica with the browser user's token.

Every read and every action goes through the same services, the same
bearer-token interceptor and the same validation as any other client's
call, so the dashboard can neither see nor do more than the token allows.
"""

from __future__ import annotations

import grpc

from multiagents import wire
from multiagents.v1 import (
    events_pb2,
    monitoring_service_pb2_grpc,
    workflow_pb2,
    workflow_service_pb2_grpc,
)
from multiagents.v1 import monitoring_service_pb2 as mpb
from multiagents.v1 import workflow_service_pb2 as pb

# Per-call deadline of the dashboard's unary calls.
CALL_TIMEOUT_S = 10.0

Metadata = tuple[tuple[str, str], ...]


def metadata(token: str | None) -> Metadata:
    return (("authorization", f"Bearer {token}"),) if token else ()


class Backend:
    """Typed calls to WorkflowService and MonitoringService for one token each.

    Errors are the services' own `grpc.aio.AioRpcError`s; the views turn
    their status codes into HTTP answers."""

    def __init__(self, target: str, max_message_bytes: int) -> None:
        self._channel = grpc.aio.insecure_channel(
            target, options=[("grpc.max_receive_message_length", max_message_bytes)]
        )
        self._workflows = workflow_service_pb2_grpc.WorkflowServiceStub(self._channel)
        self._monitoring = monitoring_service_pb2_grpc.MonitoringServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def status(self, token: str | None, tx: str) -> workflow_pb2.WorkflowStatus:
        response: pb.GetStatusResponse = await self._workflows.GetStatus(
            pb.GetStatusRequest(transaction_id=tx),
            metadata=metadata(token),
            timeout=CALL_TIMEOUT_S,
        )
        return response.status

    async def history(self, token: str | None, tx: str) -> list[events_pb2.WorkflowEvent]:
        events: list[events_pb2.WorkflowEvent] = []
        more = True
        while more:
            response: pb.GetHistoryResponse = await self._workflows.GetHistory(
                pb.GetHistoryRequest(
                    transaction_id=tx, after_sequence=events[-1].sequence if events else 0
                ),
                metadata=metadata(token),
                timeout=CALL_TIMEOUT_S,
            )
            events.extend(response.events)
            more = response.more and len(response.events) > 0
        return events

    async def definition(
        self, token: str | None, name: str, version: int = 0
    ) -> workflow_pb2.WorkflowDefinition:
        response: pb.GetWorkflowDefinitionResponse = await self._workflows.GetWorkflowDefinition(
            pb.GetWorkflowDefinitionRequest(name=name, version=version),
            metadata=metadata(token),
            timeout=CALL_TIMEOUT_S,
        )
        return response.definition

    async def definitions(self, token: str | None) -> list[workflow_pb2.WorkflowDefinition]:
        response: pb.ListWorkflowDefinitionsResponse = (
            await self._workflows.ListWorkflowDefinitions(
                pb.ListWorkflowDefinitionsRequest(),
                metadata=metadata(token),
                timeout=CALL_TIMEOUT_S,
            )
        )
        return list(response.definitions)

    async def executions(
        self, token: str | None, *, state: int, name: str, page_size: int, page_token: str
    ) -> tuple[list[workflow_pb2.WorkflowStatus], str]:
        response: pb.ListWorkflowsResponse = await self._workflows.ListWorkflows(
            pb.ListWorkflowsRequest(
                state=state,  # type: ignore[arg-type]
                workflow_name=name,
                page_size=page_size,
                page_token=page_token,
            ),
            metadata=metadata(token),
            timeout=CALL_TIMEOUT_S,
        )
        return list(response.workflows), response.next_page_token

    async def cancel(self, token: str | None, tx: str, reason: str) -> None:
        await self._workflows.CancelWorkflow(
            pb.CancelWorkflowRequest(transaction_id=tx, reason=reason),
            metadata=metadata(token),
            timeout=CALL_TIMEOUT_S,
        )

    async def signal(self, token: str | None, tx: str, signal: str, payload: object) -> None:
        await self._workflows.SignalWorkflow(
            pb.SignalWorkflowRequest(
                transaction_id=tx, signal=signal, payload=wire.encode(payload)
            ),
            metadata=metadata(token),
            timeout=CALL_TIMEOUT_S,
        )

    async def resume(self, token: str | None, tx: str) -> None:
        await self._workflows.ResumeWorkflow(
            pb.ResumeWorkflowRequest(transaction_id=tx),
            metadata=metadata(token),
            timeout=CALL_TIMEOUT_S,
        )

    def watch(
        self, token: str | None, tx: str, output_from: str = ""
    ) -> grpc.aio.UnaryStreamCall[pb.WatchWorkflowRequest, pb.WatchWorkflowResponse]:
        """The WatchWorkflow stream of one execution with everything that
        changes its page: status changes, the other history events, the
        steps' progress and output (after `output_from`; the caller cancels it)."""
        return self._workflows.WatchWorkflow(
            pb.WatchWorkflowRequest(
                transaction_id=tx,
                include_output=True,
                output_from_offset=output_from,
                include_events=True,
                include_progress=True,
            ),
            metadata=metadata(token),
        )

    def step_output(
        self, token: str | None, tx: str, step: str
    ) -> grpc.aio.UnaryStreamCall[pb.StreamStepOutputRequest, pb.StreamStepOutputResponse]:
        """One step's output from the first entry kept (the caller cancels it)."""
        return self._workflows.StreamStepOutput(
            pb.StreamStepOutputRequest(transaction_id=tx, step=step), metadata=metadata(token)
        )

    def events(
        self, token: str | None
    ) -> grpc.aio.UnaryStreamCall[mpb.StreamEventsRequest, mpb.StreamEventsResponse]:
        """Every execution's events as they happen (the caller cancels it)."""
        return self._monitoring.StreamEvents(mpb.StreamEventsRequest(), metadata=metadata(token))

    async def workers(self, token: str | None) -> list[mpb.WorkerSession]:
        response: mpb.ListWorkersResponse = await self._monitoring.ListWorkers(
            mpb.ListWorkersRequest(), metadata=metadata(token), timeout=CALL_TIMEOUT_S
        )
        return list(response.sessions)

    async def worker_stats(self, token: str | None) -> list[mpb.WorkerStats]:
        response: mpb.GetWorkerStatsResponse = await self._monitoring.GetWorkerStats(
            mpb.GetWorkerStatsRequest(), metadata=metadata(token), timeout=CALL_TIMEOUT_S
        )
        return list(response.stats)
