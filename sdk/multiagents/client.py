"""`Client`: everything in WorkflowService, with `wait()` built on the watch
stream (no polling)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import timestamp_pb2

from multiagents import _tracing, wire
from multiagents.channel import open_channel
from multiagents.errors import RPCError, from_rpc_error
from multiagents.v1 import common_pb2, events_pb2, workflow_pb2, workflow_service_pb2_grpc
from multiagents.v1 import workflow_service_pb2 as pb
from multiagents.workflow import Workflow

STATES = {
    common_pb2.WORKFLOW_STATE_PENDING: "pending",
    common_pb2.WORKFLOW_STATE_RUNNING: "running",
    common_pb2.WORKFLOW_STATE_COMPLETED: "completed",
    common_pb2.WORKFLOW_STATE_FAILED: "failed",
    common_pb2.WORKFLOW_STATE_COMPENSATED: "compensated",
    common_pb2.WORKFLOW_STATE_CANCELLED: "cancelled",
}
STATE_VALUES = {v: k for k, v in STATES.items()}
# The server's retry hint on RESOURCE_EXHAUSTED (gRPC's own trailer name).
PUSHBACK_KEY = "grpc-retry-pushback-ms"
TERMINAL_STATES = frozenset({"completed", "failed", "compensated", "cancelled"})
STEP_STATUSES = {
    v.number: v.name.removeprefix("STEP_STATUS_").lower()
    for v in workflow_pb2.StepStatus.DESCRIPTOR.values
}


def _pushback_s(error: grpc.aio.AioRpcError) -> float | None:
    """Seconds the server asked to wait before retrying, if it did."""
    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    for key, value in error.trailing_metadata() or ():
        if key == PUSHBACK_KEY:
            try:
                return max(int(value), 0) / 1000
            except ValueError:
                return None
    return None


def failure_dict(f: common_pb2.Failure) -> dict[str, Any]:
    return {
        "message": f.message,
        "type": f.type,
        "non_retryable": f.non_retryable,
        "stack_trace": f.stack_trace,
    }


@dataclass(frozen=True, slots=True)
class StepState:
    """One step of an execution."""

    name: str
    status: str
    attempts: int
    last_failure: dict[str, Any] | None
    child_transaction_id: str | None = None
    # What the worker of the running attempt last reported with
    # `heartbeat(details)` (GetStatus only; None when nothing).
    progress: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class WorkflowStatus:
    """A snapshot of one execution."""

    transaction_id: str
    state: str
    current_step: str | None
    step_results: dict[str, Any]
    workflow_name: str = ""
    workflow_version: int = 0
    correlation_id: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    requires_manual_intervention: bool = False
    steps: tuple[StepState, ...] = ()
    revision: int = 0
    parent_transaction_id: str | None = None
    # When the execution was accepted, and its last change (UTC).
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def to_dict(self) -> dict[str, Any]:
        """The seed's status dict: state, current_step, step_results, and more."""
        return {
            "transaction_id": self.transaction_id,
            "workflow_name": self.workflow_name,
            "state": self.state,
            "current_step": self.current_step,
            "step_results": self.step_results,
            "context": self.context,
            "error": self.error["message"] if self.error else None,
            "failure": self.error,
            "requires_manual_intervention": self.requires_manual_intervention,
            "steps": [
                {"name": s.name, "status": s.status, "attempts": s.attempts} for s in self.steps
            ],
            "parent_transaction_id": self.parent_transaction_id,
        }

    @classmethod
    def from_proto(cls, s: workflow_pb2.WorkflowStatus) -> WorkflowStatus:
        return cls(
            transaction_id=s.transaction_id,
            state=STATES[s.state],
            current_step=s.current_step or None,
            step_results=wire.decode_object(s.step_results),
            workflow_name=s.workflow_name,
            workflow_version=s.workflow_version,
            correlation_id=s.correlation_id,
            context=wire.decode_object(s.context),
            error=failure_dict(s.failure) if s.HasField("failure") else None,
            requires_manual_intervention=s.requires_manual_intervention,
            steps=tuple(
                StepState(
                    st.name,
                    STEP_STATUSES.get(st.status, "unspecified"),
                    st.attempts,
                    failure_dict(st.last_failure) if st.HasField("last_failure") else None,
                    st.child_transaction_id or None,
                    wire.decode(st.progress.details) if st.HasField("progress") else None,
                )
                for st in s.steps
            ),
            revision=s.revision,
            parent_transaction_id=s.parent_transaction_id or None,
            created_at=_utc(s.created_at) if s.HasField("created_at") else None,
            updated_at=_utc(s.updated_at) if s.HasField("updated_at") else None,
        )


def _utc(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One change seen by `watch()`."""

    transaction_id: str
    state: str
    current_step: str | None
    step_results: dict[str, Any]
    revision: int
    error: dict[str, Any] | None = None
    requires_manual_intervention: bool = False

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @classmethod
    def from_proto(cls, e: events_pb2.StatusEvent) -> StatusUpdate:
        return cls(
            transaction_id=e.transaction_id,
            state=STATES[e.state],
            current_step=e.current_step or None,
            step_results=wire.decode_object(e.step_results),
            revision=e.revision,
            error=failure_dict(e.failure) if e.HasField("failure") else None,
            requires_manual_intervention=e.requires_manual_intervention,
        )


class Client:
    """A client of one MultiAgents server. `async with Client(address) as c: ...`"""

    def __init__(
        self,
        address: str = "127.0.0.1:50051",
        *,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        max_inflight_calls: int = 1000,
    ) -> None:
        self.address = address
        self._channel = open_channel(address, credentials)
        self._stub = workflow_service_pb2_grpc.WorkflowServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        # Back-pressure: calls beyond this many wait here, not in the server.
        self._inflight = asyncio.Semaphore(max_inflight_calls)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(
        self,
        method: Any,
        request: Any,
        timeout: float | None = 30.0,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> Any:
        """One unary call; an overloaded server (RESOURCE_EXHAUSTED with a
        retry hint: nothing was applied) is retried after the hint, within
        `timeout`. `metadata` is sent besides the token."""
        loop = asyncio.get_running_loop()
        metadata = self._metadata + metadata
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = None if deadline is None else max(deadline - loop.time(), 0.001)
            try:
                async with self._inflight:
                    return await method(request, metadata=metadata, timeout=left)
            except grpc.aio.AioRpcError as exc:
                pause = _pushback_s(exc)
                if pause is None or (deadline is not None and loop.time() + pause >= deadline):
                    raise from_rpc_error(exc) from None
                await asyncio.sleep(pause * (0.5 + random.random()))

    async def register_workflow(self, workflow: Workflow | workflow_pb2.WorkflowDefinition) -> bool:
        """Register a definition; False when the identical one was there already."""
        definition = workflow.to_proto() if isinstance(workflow, Workflow) else workflow
        request = pb.RegisterWorkflowRequest(definition=definition)
        response = await self._call(self._stub.RegisterWorkflow, request)
        return bool(response.created)

    async def get_workflow_definition(
        self, name: str, version: int = 0
    ) -> workflow_pb2.WorkflowDefinition:
        request = pb.GetWorkflowDefinitionRequest(name=name, version=version)
        response: pb.GetWorkflowDefinitionResponse = await self._call(
            self._stub.GetWorkflowDefinition, request
        )
        return response.definition

    async def list_workflow_definitions(self) -> list[workflow_pb2.WorkflowDefinition]:
        request = pb.ListWorkflowDefinitionsRequest()
        response = await self._call(self._stub.ListWorkflowDefinitions, request)
        return list(response.definitions)

    async def execute_workflow(
        self,
        workflow_name: str,
        input: dict[str, Any] | None = None,
        *,
        version: int = 0,
        request_id: str = "",
        correlation_id: str = "",
    ) -> str:
        """Start an execution and return its transaction id.

        With `request_id`, repeating the call returns the first execution's id.
        """
        request = pb.ExecuteWorkflowRequest(
            workflow_name=workflow_name,
            version=version,
            input=wire.encode(input or {}),
            request_id=request_id,
            correlation_id=correlation_id,
        )
        # The caller's trace context: the execution joins its trace.
        response = await self._call(
            self._stub.ExecuteWorkflow, request, metadata=_tracing.outgoing_metadata()
        )
        return str(response.transaction_id)

    async def get_status(self, transaction_id: str) -> WorkflowStatus:
        request = pb.GetStatusRequest(transaction_id=transaction_id)
        response = await self._call(self._stub.GetStatus, request)
        return WorkflowStatus.from_proto(response.status)

    async def watch(self, transaction_id: str) -> AsyncIterator[StatusUpdate]:
        """The current status, then every change, until a terminal state."""
        async for response in self._watch(transaction_id):
            yield StatusUpdate.from_proto(response.event)

    async def _watch(self, transaction_id: str) -> AsyncIterator[pb.WatchWorkflowResponse]:
        call = self._stub.WatchWorkflow(
            pb.WatchWorkflowRequest(transaction_id=transaction_id), metadata=self._metadata
        )
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            call.cancel()

    async def wait(self, transaction_id: str, timeout: float | None = None) -> WorkflowStatus:
        """Wait until the execution is terminal and return its final status.

        Follows the watch stream; re-attaches if the stream breaks (e.g. the
        server restarts). Raises TimeoutError after `timeout` seconds.
        """

        async def follow() -> WorkflowStatus:
            while True:
                try:
                    async for response in self._watch(transaction_id):
                        if response.HasField("final_status"):
                            return WorkflowStatus.from_proto(response.final_status)
                except RPCError as exc:
                    if exc.code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                        raise
                await asyncio.sleep(0.2)

        return await asyncio.wait_for(follow(), timeout)

    async def cancel_workflow(self, transaction_id: str, reason: str = "") -> None:
        request = pb.CancelWorkflowRequest(transaction_id=transaction_id, reason=reason)
        await self._call(self._stub.CancelWorkflow, request)

    async def list_workflows(
        self,
        *,
        state: str | None = None,
        workflow_name: str = "",
        page_size: int = 50,
        page_token: str = "",
    ) -> tuple[list[WorkflowStatus], str]:
        """One page of executions, newest first, and the next page's token."""
        if state is not None and state not in STATE_VALUES:
            raise ValueError(f"state: expected one of {sorted(STATE_VALUES)}, got {state!r}")
        request = pb.ListWorkflowsRequest(
            state=STATE_VALUES[state] if state else common_pb2.WORKFLOW_STATE_UNSPECIFIED,
            workflow_name=workflow_name,
            page_size=page_size,
            page_token=page_token,
        )
        response = await self._call(self._stub.ListWorkflows, request)
        return [WorkflowStatus.from_proto(s) for s in response.workflows], response.next_page_token

    async def get_history(self, transaction_id: str) -> Sequence[events_pb2.WorkflowEvent]:
        request = pb.GetHistoryRequest(transaction_id=transaction_id)
        response = await self._call(self._stub.GetHistory, request)
        return list(response.events)
