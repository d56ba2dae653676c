"""`Client`: everything in WorkflowService, with `wait()` and `result()` built
on the watch stream (no polling)."""

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
from multiagents.errors import RPCError, WorkflowFailedError, failure_dict, from_rpc_error
from multiagents.output import Usage
from multiagents.v1 import (
    common_pb2,
    events_pb2,
    limits_pb2,
    schedule_pb2,
    workflow_pb2,
    workflow_service_pb2_grpc,
)
from multiagents.v1 import workflow_service_pb2 as pb
from multiagents.workflow import Budget, Workflow

STATES = {
    common_pb2.WORKFLOW_STATE_PENDING: "pending",
    common_pb2.WORKFLOW_STATE_RUNNING: "running",
    common_pb2.WORKFLOW_STATE_COMPLETED: "completed",
    common_pb2.WORKFLOW_STATE_FAILED: "failed",
    common_pb2.WORKFLOW_STATE_COMPENSATED: "compensated",
    common_pb2.WORKFLOW_STATE_CANCELLED: "cancelled",
    common_pb2.WORKFLOW_STATE_COMPENSATING: "compensating",
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


@dataclass(frozen=True, slots=True)
class StepState:
    """One step of an execution."""

    name: str
    status: str
    attempts: int
    last_failure: dict[str, Any] | None
    child_transaction_id: str | None = None
    # Path of names ("fanout/legal/review", "each/3") and what the node is
    # ("step", "workflow", "parallel", "map", "item", "condition", "wait", "sleep").
    path: str = ""
    kind: str = "step"
    # A condition's case taken ("case 1", "otherwise"), or "timed out".
    branch: str = ""
    # Tokens and cost of every attempt of the step (None when none reported).
    usage: Usage | None = None
    # What the worker of the running attempt last reported with
    # `heartbeat(details)` (GetStatus only; None when nothing).
    progress: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ProgressUpdate:
    """What a worker reported about a running step (`heartbeat(details)`)."""

    path: str
    details: dict[str, Any]
    attempt: int
    command_id: str
    updated_at: datetime | None

    @classmethod
    def from_proto(cls, p: workflow_pb2.StepProgress) -> ProgressUpdate:
        return cls(
            p.path,
            wire.decode_object(p.details),
            p.attempt,
            p.command_id,
            _utc(p.updated_at) if p.HasField("updated_at") else None,
        )


@dataclass(frozen=True, slots=True)
class WaitingSignal:
    """A wait that waits for a signal now (an entry of the approval inbox)."""

    transaction_id: str
    workflow_name: str
    path: str
    signal: str
    approval: bool
    since: datetime | None
    timeout_at: datetime | None

    @classmethod
    def from_proto(cls, w: workflow_pb2.WaitingSignal) -> WaitingSignal:
        return cls(
            w.transaction_id,
            w.workflow_name,
            w.path,
            w.signal,
            w.approval,
            _utc(w.since) if w.HasField("since") else None,
            _utc(w.timeout_at) if w.HasField("timeout_at") else None,
        )


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
    # Paths of the steps running now (several in a parallel group or a map).
    running_steps: tuple[str, ...] = ()
    # The waits waiting for a signal now.
    waiting_signals: tuple[WaitingSignal, ...] = ()
    # Tokens and cost of the execution, and of every execution of its
    # workflow name (the latter from get_status only); None when none.
    usage: Usage | None = None
    workflow_usage: Usage | None = None

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
                {
                    "name": s.name,
                    "path": s.path,
                    "kind": s.kind,
                    "status": s.status,
                    "attempts": s.attempts,
                    **({"branch": s.branch} if s.branch else {}),
                }
                for s in self.steps
            ],
            "running_steps": list(self.running_steps),
            "waiting_signals": [
                {"path": w.path, "signal": w.signal, "approval": w.approval}
                for w in self.waiting_signals
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
                    st.path,
                    st.kind,
                    st.branch,
                    Usage.from_proto(st.usage) if st.HasField("usage") else None,
                    wire.decode(st.progress.details) if st.HasField("progress") else None,
                )
                for st in s.steps
            ),
            running_steps=tuple(s.running_steps),
            waiting_signals=tuple(WaitingSignal.from_proto(w) for w in s.waiting_signals),
            usage=Usage.from_proto(s.usage) if s.HasField("usage") else None,
            workflow_usage=(
                Usage.from_proto(s.workflow_usage) if s.HasField("workflow_usage") else None
            ),
            revision=s.revision,
            parent_transaction_id=s.parent_transaction_id or None,
            created_at=_utc(s.created_at) if s.HasField("created_at") else None,
            updated_at=_utc(s.updated_at) if s.HasField("updated_at") else None,
        )


# Overlap policies by their SDK names (the proto enum without its prefix, lower case).
OVERLAP_POLICIES = {
    v.name.removeprefix("SCHEDULE_OVERLAP_POLICY_").lower(): v.number
    for v in schedule_pb2.ScheduleOverlapPolicy.DESCRIPTOR.values
    if v.number != schedule_pb2.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED
}
OVERLAP_NAMES = {number: name for name, number in OVERLAP_POLICIES.items()}
ACTION_KINDS = {
    v.number: v.name.removeprefix("SCHEDULE_ACTION_KIND_").lower()
    for v in schedule_pb2.ScheduleActionKind.DESCRIPTOR.values
}


@dataclass(frozen=True, slots=True)
class ScheduleAction:
    """What a schedule did for one fire time: started, skipped, buffered,
    missed or failed."""

    fire_time: datetime
    taken_at: datetime
    kind: str
    transaction_id: str
    message: str


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule and what it has done."""

    schedule_id: str
    cron: str
    time_zone: str
    workflow_name: str
    workflow_version: int
    input: dict[str, Any]
    overlap_policy: str
    catchup_window: float
    paused: bool
    note: str
    created_at: datetime
    updated_at: datetime
    # None while paused.
    next_fire_time: datetime | None
    # A fire time waiting for the running run to end.
    buffered_fire_time: datetime | None
    runs_started: int
    runs_skipped: int
    last_transaction_id: str
    # Newest first, at most 10.
    recent_actions: tuple[ScheduleAction, ...]

    @classmethod
    def from_proto(cls, s: schedule_pb2.ScheduleStatus) -> ScheduleInfo:
        d = s.definition
        return cls(
            schedule_id=d.schedule_id,
            cron=d.cron,
            time_zone=d.time_zone,
            workflow_name=d.workflow_name,
            workflow_version=d.workflow_version,
            input=wire.decode_object(d.input, field="input"),
            overlap_policy=OVERLAP_NAMES.get(d.overlap_policy, "skip"),
            catchup_window=d.catchup_window.ToMilliseconds() / 1000,
            paused=d.paused,
            note=d.note,
            created_at=_utc(s.created_at),
            updated_at=_utc(s.updated_at),
            next_fire_time=_utc(s.next_fire_time) if s.HasField("next_fire_time") else None,
            buffered_fire_time=(
                _utc(s.buffered_fire_time) if s.HasField("buffered_fire_time") else None
            ),
            runs_started=s.runs_started,
            runs_skipped=s.runs_skipped,
            last_transaction_id=s.last_transaction_id,
            recent_actions=tuple(
                ScheduleAction(
                    _utc(a.fire_time),
                    _utc(a.taken_at),
                    ACTION_KINDS.get(a.kind, "unspecified"),
                    a.transaction_id,
                    a.message,
                )
                for a in s.recent_actions
            ),
        )


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """A declared shared limit (see `Client.put_rate_limit`); times in seconds."""

    key: str
    requests: int
    tokens: int
    period: float
    max_concurrent: int
    backoff: float

    @classmethod
    def from_proto(cls, r: limits_pb2.RateLimit) -> RateLimitInfo:
        return cls(
            key=r.key,
            requests=r.requests,
            tokens=r.tokens,
            period=r.period.ToMilliseconds() / 1000,
            max_concurrent=r.max_concurrent,
            backoff=r.backoff.ToMilliseconds() / 1000,
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
    # Why the execution is being cancelled, once a cancel was requested.
    cancel_reason: str = ""

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
            cancel_reason=e.cancel_reason,
        )


OUTPUT_KINDS = {
    common_pb2.OUTPUT_KIND_UNSPECIFIED: "token",
    common_pb2.OUTPUT_KIND_TOKEN: "token",
    common_pb2.OUTPUT_KIND_JSON: "json",
    common_pb2.OUTPUT_KIND_LOG: "log",
}


@dataclass(frozen=True, slots=True)
class StepOutput:
    """One entry of an execution's output stream.

    `kind` is "token", "json" or "log" for a chunk (its `text`, or `data`
    for bytes); "rewind" when attempt `attempt` of `step` starts (drop what
    earlier attempts streamed); "gap" when the stream's cap dropped
    `dropped` entries this reader had not seen (0: unknown). Pass the last
    `offset` received as `from_offset` to resume with no gap or repeat.
    """

    offset: str
    sequence: int
    kind: str
    step: str = ""
    attempt: int = 0
    compensation: bool = False
    text: str = ""
    data: bytes = b""
    dropped: int = 0

    @classmethod
    def from_proto(cls, o: pb.StepOutput) -> StepOutput:
        entry = o.WhichOneof("entry")
        kind = {"chunk": OUTPUT_KINDS.get(o.chunk.kind, "token"), "gap": "gap"}.get(
            entry or "", "rewind"
        )
        return cls(
            offset=o.offset,
            sequence=o.sequence,
            kind=kind,
            step=o.step,
            attempt=o.attempt,
            compensation=o.compensation,
            text=o.chunk.text,
            data=o.chunk.binary,
            dropped=o.gap.dropped,
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
        start_delay: float = 0.0,
        budget: Budget | None = None,
    ) -> str:
        """Start an execution and return its transaction id.

        With `request_id`, repeating the call returns the first execution's id.
        With `start_delay` (seconds) it stays pending that long first.
        """
        request = pb.ExecuteWorkflowRequest(
            workflow_name=workflow_name,
            version=version,
            input=wire.encode(input or {}),
            request_id=request_id,
            correlation_id=correlation_id,
        )
        if start_delay > 0:
            request.start_delay.FromMilliseconds(round(start_delay * 1000))
        if budget is not None:
            request.budget.CopyFrom(budget.to_proto())
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

    async def watch_with_output(
        self, transaction_id: str, *, from_offset: str = ""
    ) -> AsyncIterator[StatusUpdate | StepOutput]:
        """Like `watch`, with the steps' output (after `from_offset`)
        interleaved; every chunk comes before the terminal status."""
        async for response in self._watch(transaction_id, True, from_offset):
            if response.HasField("output"):
                yield StepOutput.from_proto(response.output)
            else:
                yield StatusUpdate.from_proto(response.event)

    async def stream_output(
        self, transaction_id: str, *, step: str = "", from_offset: str = ""
    ) -> AsyncIterator[StepOutput]:
        """The output of an execution's steps (of `step` only, if given):
        what is stored after `from_offset`, then live, until the execution
        ends (or, with a step, until that step has completed)."""
        request = pb.StreamStepOutputRequest(
            transaction_id=transaction_id, step=step, from_offset=from_offset
        )
        call = self._stub.StreamStepOutput(request, metadata=self._metadata)
        try:
            async for response in call:
                yield StepOutput.from_proto(response.output)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            call.cancel()

    async def watch_events(
        self, transaction_id: str
    ) -> AsyncIterator[StatusUpdate | events_pb2.WorkflowEvent]:
        """Like `watch`, with every other history event committed meanwhile
        (each attempt's command, result or error, retries included;
        compensations; node and signal events), in commit order."""
        async for response in self._watch(transaction_id, include_events=True):
            if response.HasField("history_event"):
                yield response.history_event
            else:
                yield StatusUpdate.from_proto(response.event)

    async def watch_progress(
        self, transaction_id: str
    ) -> AsyncIterator[StatusUpdate | ProgressUpdate]:
        """Like `watch`, with the progress workers report for the running
        steps (`heartbeat(details)`) as it changes."""
        async for response in self._watch(transaction_id, include_progress=True):
            if response.HasField("progress"):
                yield ProgressUpdate.from_proto(response.progress)
            else:
                yield StatusUpdate.from_proto(response.event)

    async def _watch(
        self,
        transaction_id: str,
        include_output: bool = False,
        from_offset: str = "",
        *,
        include_events: bool = False,
        include_progress: bool = False,
    ) -> AsyncIterator[pb.WatchWorkflowResponse]:
        request = pb.WatchWorkflowRequest(
            transaction_id=transaction_id,
            include_output=include_output,
            output_from_offset=from_offset,
            include_events=include_events,
            include_progress=include_progress,
        )
        call = self._stub.WatchWorkflow(request, metadata=self._metadata)
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
        status, _ = await self._final(transaction_id, timeout)
        return status

    async def result(self, transaction_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the execution's end and return its output: the final
        context (the input merged with every step's result).

        Raises WorkflowFailedError when it ended failed, compensated or
        cancelled (carrying the failure with its kind and cause chain, or
        the cancel reason), TimeoutError after `timeout` seconds.
        """
        status, final = await self._final(transaction_id, timeout)
        if status.state != "completed":
            raise WorkflowFailedError(
                transaction_id, status.state, status.error, final.cancel_reason, status
            )
        return status.context

    async def _final(
        self, transaction_id: str, timeout: float | None
    ) -> tuple[WorkflowStatus, StatusUpdate]:
        """The final status and the last status event (it has the cancel reason)."""

        async def follow() -> tuple[WorkflowStatus, StatusUpdate]:
            while True:
                try:
                    async for response in self._watch(transaction_id):
                        if response.HasField("final_status"):
                            return (
                                WorkflowStatus.from_proto(response.final_status),
                                StatusUpdate.from_proto(response.event),
                            )
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

    async def signal_workflow(
        self,
        transaction_id: str,
        signal: str,
        payload: dict[str, Any] | None = None,
        *,
        signal_id: str = "",
    ) -> bool:
        """Send a signal; True when `signal_id` had been taken already (a resend)."""
        request = pb.SignalWorkflowRequest(
            transaction_id=transaction_id,
            signal=signal,
            payload=wire.encode(payload or {}),
            signal_id=signal_id,
        )
        response = await self._call(self._stub.SignalWorkflow, request)
        return bool(response.duplicate)

    async def approve(
        self, transaction_id: str, *, signal: str = "approval", comment: str = "", by: str = ""
    ) -> bool:
        """Approve a wait_for_signal step with approval=True."""
        payload: dict[str, Any] = {"approved": True}
        payload.update({k: v for k, v in (("comment", comment), ("by", by)) if v})
        return await self.signal_workflow(transaction_id, signal, payload)

    async def reject(
        self, transaction_id: str, *, signal: str = "approval", comment: str = "", by: str = ""
    ) -> bool:
        """Reject an approval: the wait fails (Rejected) and the workflow compensates."""
        payload: dict[str, Any] = {"approved": False}
        payload.update({k: v for k, v in (("comment", comment), ("by", by)) if v})
        return await self.signal_workflow(transaction_id, signal, payload)

    async def resume_workflow(self, transaction_id: str) -> None:
        """Pick a FAILED execution up again: its failed step (or failed
        compensations) runs again, same id, history kept."""
        await self._call(
            self._stub.ResumeWorkflow, pb.ResumeWorkflowRequest(transaction_id=transaction_id)
        )

    async def list_waiting_signals(
        self,
        *,
        signal: str = "",
        workflow_name: str = "",
        approvals_only: bool = False,
        limit: int = 100,
    ) -> list[WaitingSignal]:
        """The approval inbox: waits waiting for a signal now, oldest first."""
        request = pb.ListWaitingSignalsRequest(
            signal=signal,
            workflow_name=workflow_name,
            approvals_only=approvals_only,
            page_size=limit,
        )
        response = await self._call(self._stub.ListWaitingSignals, request)
        return [WaitingSignal.from_proto(w) for w in response.waiting]

    async def get_history(
        self, transaction_id: str, *, after_sequence: int = 0
    ) -> Sequence[events_pb2.WorkflowEvent]:
        """The execution's history (the events after `after_sequence`), read
        page by page."""
        events: list[events_pb2.WorkflowEvent] = []
        more = True
        while more:
            request = pb.GetHistoryRequest(
                transaction_id=transaction_id,
                after_sequence=events[-1].sequence if events else after_sequence,
            )
            response = await self._call(self._stub.GetHistory, request)
            events.extend(response.events)
            more = response.more and len(response.events) > 0
        return events

    # -- schedules ----------------------------------------------------------------------

    async def create_schedule(
        self,
        schedule_id: str,
        cron: str,
        workflow_name: str,
        input: dict[str, Any] | None = None,
        *,
        version: int = 0,
        time_zone: str = "",
        overlap_policy: str = "skip",
        catchup_window: float = 0.0,
        paused: bool = False,
        note: str = "",
    ) -> ScheduleInfo:
        """Create a schedule: `cron` (5 fields, 6 with seconds first, 7 with
        a year last; read in `time_zone`, default UTC) starts `workflow_name`
        with `input` at each fire time. `overlap_policy`: skip (default),
        buffer_one, cancel_other or allow_all. `catchup_window` (seconds, 0 =
        365 days): how old the one missed fire time caught up after downtime
        may be. `version` 0 starts the latest version at each fire."""
        if overlap_policy not in OVERLAP_POLICIES:
            expected = ", ".join(sorted(OVERLAP_POLICIES))
            raise ValueError(f"overlap_policy: expected one of {expected}, got {overlap_policy!r}")
        definition = schedule_pb2.ScheduleDefinition(
            schedule_id=schedule_id,
            cron=cron,
            time_zone=time_zone,
            workflow_name=workflow_name,
            workflow_version=version,
            input=wire.encode(input or {}),
            overlap_policy=OVERLAP_POLICIES[overlap_policy],  # type: ignore[arg-type]
            paused=paused,
            note=note,
        )
        if catchup_window:
            definition.catchup_window.FromMilliseconds(round(catchup_window * 1000))
        response = await self._call(
            self._stub.CreateSchedule, pb.CreateScheduleRequest(schedule=definition)
        )
        return ScheduleInfo.from_proto(response.status)

    async def get_schedule(self, schedule_id: str) -> ScheduleInfo:
        request = pb.GetScheduleRequest(schedule_id=schedule_id)
        response = await self._call(self._stub.GetSchedule, request)
        return ScheduleInfo.from_proto(response.status)

    async def list_schedules(self, *, workflow_name: str = "") -> list[ScheduleInfo]:
        """Every schedule (of `workflow_name`, if given), by id."""
        found: list[ScheduleInfo] = []
        token = ""
        while True:
            request = pb.ListSchedulesRequest(
                workflow_name=workflow_name, page_size=1000, page_token=token
            )
            response = await self._call(self._stub.ListSchedules, request)
            found += [ScheduleInfo.from_proto(s) for s in response.schedules]
            token = response.next_page_token
            if not token:
                return found

    async def pause_schedule(self, schedule_id: str, note: str = "") -> ScheduleInfo:
        """Stop firing until unpaused; `note` (when given) says why."""
        request = pb.PauseScheduleRequest(schedule_id=schedule_id, note=note)
        response = await self._call(self._stub.PauseSchedule, request)
        return ScheduleInfo.from_proto(response.status)

    async def unpause_schedule(self, schedule_id: str, note: str = "") -> ScheduleInfo:
        """Fire again, from the next fire time after now."""
        request = pb.UnpauseScheduleRequest(schedule_id=schedule_id, note=note)
        response = await self._call(self._stub.UnpauseSchedule, request)
        return ScheduleInfo.from_proto(response.status)

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete a schedule; the runs it started go on."""
        await self._call(
            self._stub.DeleteSchedule, pb.DeleteScheduleRequest(schedule_id=schedule_id)
        )

    # -- shared limits ------------------------------------------------------------------

    async def put_rate_limit(
        self,
        key: str,
        *,
        requests: int = 0,
        tokens: int = 0,
        period: float | None = None,
        max_concurrent: int = 0,
        backoff: float | None = None,
    ) -> RateLimitInfo:
        """Declare (or replace) the shared limit of `key`, or of every key
        starting with a prefix when `key` ends in "*": at most `requests`
        step starts and `tokens` estimated tokens per `period` (seconds,
        default 60), and at most `max_concurrent` attempts running at once.
        A worker's `RateLimited` failure pauses the key for `backoff` seconds
        (default 1)."""
        for field_name, value in (("requests", requests), ("tokens", tokens),
                                  ("max_concurrent", max_concurrent)):  # fmt: skip
            if value < 0:
                raise ValueError(f"{field_name}: must not be negative, got {value}")
        limit = limits_pb2.RateLimit(
            key=key, requests=requests, tokens=tokens, max_concurrent=max_concurrent
        )
        if period is not None:
            limit.period.FromMilliseconds(round(period * 1000))
        if backoff is not None:
            limit.backoff.FromMilliseconds(round(backoff * 1000))
        response = await self._call(
            self._stub.PutRateLimit, limits_pb2.PutRateLimitRequest(limit=limit)
        )
        return RateLimitInfo.from_proto(response.limit)

    async def get_rate_limit(self, key: str) -> RateLimitInfo:
        response = await self._call(
            self._stub.GetRateLimit, limits_pb2.GetRateLimitRequest(key=key)
        )
        return RateLimitInfo.from_proto(response.limit)

    async def list_rate_limits(self) -> list[RateLimitInfo]:
        """Every declared limit, by key."""
        response = await self._call(self._stub.ListRateLimits, limits_pb2.ListRateLimitsRequest())
        return [RateLimitInfo.from_proto(r) for r in response.limits]

    async def delete_rate_limit(self, key: str) -> None:
        """Forget a limit; steps naming its key then start without it."""
        await self._call(self._stub.DeleteRateLimit, limits_pb2.DeleteRateLimitRequest(key=key))
