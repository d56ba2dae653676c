"""WorkflowService: what clients call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc

from multiagents.v1 import (
    common_pb2,
    events_pb2,
    limits_pb2,
    workflow_pb2,
    workflow_service_pb2_grpc,
)
from multiagents.v1 import workflow_service_pb2 as pb
from multiagents_server import convert, limits, observability, progress
from multiagents_server.config import ServerConfig
from multiagents_server.engine import Execution, StepStatus, parse_command_id
from multiagents_server.errors import InvalidArgument, NotFound, Overloaded
from multiagents_server.events import EventHub
from multiagents_server.orchestrator import Orchestrator
from multiagents_server.output import OutputCursor, check_offset
from multiagents_server.schedules import Schedules
from multiagents_server.transport import schedules as sched
from multiagents_server.transport.errors import streaming, unary

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
DEFAULT_SCHEDULE_PAGE_SIZE = 100
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

    def __init__(
        self, orchestrator: Orchestrator, hub: EventHub, config: ServerConfig, schedules: Schedules
    ) -> None:
        self.orchestrator = orchestrator
        self.hub = hub
        self.config = config
        self.schedules = schedules
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
        delay_ms = request.start_delay.ToMilliseconds() if request.HasField("start_delay") else 0
        if not 0 <= delay_ms <= convert.MAX_TIMEOUT_MS:
            raise InvalidArgument("start_delay: must be between 0 and 365 days")
        budget = (
            convert.budget_from_proto(request.budget, "budget")
            if request.HasField("budget")
            else None
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
                    start_delay_ms=delay_ms,
                    budget=budget,
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
        # The per-name sum reads a hash in every bucket: only an execution that
        # reported usage itself pays for it (no LLM step, no cost on GetStatus).
        if snap.execution.usage_by_step:
            used = convert.usage_to_proto(
                await self.orchestrator.workflow_usage(snap.execution.spec.name)
            )
            if used is not None:
                status.workflow_usage.CopyFrom(used)
        await progress.attach(self.orchestrator.store, snap.execution, status)
        return pb.GetStatusResponse(status=status)

    @streaming
    async def WatchWorkflow(
        self, request: pb.WatchWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchWorkflowResponse]:
        tx = _require(request.transaction_id, "transaction_id")
        output_from = check_offset(request.output_from_offset, "output_from_offset")
        woken = request.include_output or request.include_progress
        following: contextlib.AbstractContextManager[asyncio.Event | None] = (
            self.hub.watch_output(tx) if woken else contextlib.nullcontext()
        )
        progress_seen: dict[str, bytes] = {}
        # Subscribe before reading the state, so no change falls in between.
        with self.hub.subscribe(tx) as events, following as appended:
            snap = await self.orchestrator.snapshot(tx)
            cursor = None
            if request.include_output:
                cursor = OutputCursor(self.orchestrator.store, tx, output_from)
            floor = latest = snap.revision
            now = self.orchestrator.clock()
            first = pb.WatchWorkflowResponse(event=convert.status_event(snap.execution, floor, now))
            if snap.execution.state.terminal:
                if cursor is not None:
                    for output in await cursor.read():
                        yield pb.WatchWorkflowResponse(output=output)
                first.final_status.CopyFrom(convert.status_to_proto(snap.execution, floor))
                yield first
                return
            yield first
            while True:
                if appended is not None:
                    appended.clear()
                if cursor is not None:
                    for output in await cursor.read():
                        yield pb.WatchWorkflowResponse(output=output)
                if request.include_progress:
                    for reported in await self._new_progress(snap.execution, progress_seen):
                        yield pb.WatchWorkflowResponse(progress=reported)
                event = await _next_event(events, appended)
                if event is _OUTPUT:
                    continue
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
                    if request.include_events and event.WhichOneof("event") != "status":
                        yield pb.WatchWorkflowResponse(history_event=event)
                    continue
                if status.state not in TERMINAL:
                    yield pb.WatchWorkflowResponse(event=status)
                    continue
                if cursor is not None:  # every chunk stored before the end
                    for output in await cursor.read():
                        yield pb.WatchWorkflowResponse(output=output)
                final = await self.orchestrator.snapshot_at(tx, status.revision)
                yield pb.WatchWorkflowResponse(
                    event=status,
                    final_status=convert.status_to_proto(final.execution, final.revision),
                )
                return

    async def _new_progress(
        self, ex: Execution, seen: dict[str, bytes]
    ) -> list[workflow_pb2.StepProgress]:
        """Progress records of the execution not sent yet, with their step's path."""
        out = []
        for command_id, raw in (
            await self.orchestrator.store.progress_all(ex.transaction_id)
        ).items():
            if seen.get(command_id) == raw:
                continue
            seen[command_id] = raw
            reported = workflow_pb2.StepProgress.FromString(raw)
            parsed = parse_command_id(command_id)
            if parsed is not None:
                reported.path = ex.path_of(parsed[2])
            out.append(reported)
        return out

    @streaming
    async def StreamStepOutput(
        self, request: pb.StreamStepOutputRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.StreamStepOutputResponse]:
        tx = _require(request.transaction_id, "transaction_id")
        after = check_offset(request.from_offset, "from_offset")
        step = request.step
        with self.hub.subscribe(tx) as events, self.hub.watch_output(tx) as appended:
            snap = await self.orchestrator.snapshot(tx)
            ex = snap.execution
            if step and not _has_path(ex, step):
                raise InvalidArgument(f"step: workflow {ex.spec.name!r} has no step {step!r}")
            cursor = OutputCursor(self.orchestrator.store, tx, after, step)
            ended = ex.state.terminal or (step and _step_done(ex, step))
            while True:
                appended.clear()
                for output in await cursor.read():
                    yield pb.StreamStepOutputResponse(output=output)
                if ended:
                    return
                event = await _next_event(events, appended)
                if event is None:  # resync: the live feed may have missed the end
                    snap = await self.orchestrator.snapshot(tx)
                    ended = snap.execution.state.terminal or bool(
                        step and _step_done(snap.execution, step)
                    )
                elif event is not _OUTPUT:
                    ended = _ends_output(event, step)

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
        after = request.after_sequence
        if after < 0:
            raise InvalidArgument(f"after_sequence: must be 0 or more, got {after}")
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size: must be between 0 and {MAX_PAGE_SIZE}")
        events, more = await self.orchestrator.history(tx, after, request.page_size)
        return pb.GetHistoryResponse(events=events, more=more)

    @unary
    async def SignalWorkflow(
        self, request: pb.SignalWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignalWorkflowResponse:
        tx = _require(request.transaction_id, "transaction_id")
        convert.check_name(request.signal, "signal")
        convert.check_length(request.signal_id, "signal_id", convert.MAX_ID_LENGTH)
        payload = convert.json_object(request.payload, "payload", self.config.max_payload_bytes)
        duplicate = await self.orchestrator.signal(tx, request.signal, payload, request.signal_id)
        return pb.SignalWorkflowResponse(duplicate=duplicate)

    @unary
    async def ResumeWorkflow(
        self, request: pb.ResumeWorkflowRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeWorkflowResponse:
        await self.orchestrator.resume(_require(request.transaction_id, "transaction_id"))
        return pb.ResumeWorkflowResponse()

    @unary
    async def ListWaitingSignals(
        self, request: pb.ListWaitingSignalsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWaitingSignalsResponse:
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size: must be between 0 and {MAX_PAGE_SIZE}")
        waiting = await self.orchestrator.waiting_signals(
            signal=request.signal,
            workflow_name=request.workflow_name,
            approvals_only=request.approvals_only,
            limit=request.page_size or 100,
        )
        return pb.ListWaitingSignalsResponse(waiting=waiting)

    # -- schedules ------------------------------------------------------------------

    @unary
    async def CreateSchedule(
        self, request: pb.CreateScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateScheduleResponse:
        if not request.HasField("schedule"):
            raise InvalidArgument("schedule: required")
        spec = sched.spec_from_proto(
            request.schedule, self.config.max_payload_bytes, self.orchestrator.clock()
        )
        created = await self.schedules.create(spec)
        return pb.CreateScheduleResponse(status=sched.status_to_proto(created))

    @unary
    async def GetSchedule(
        self, request: pb.GetScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetScheduleResponse:
        found, _ = await self.schedules.get(_require(request.schedule_id, "schedule_id"))
        return pb.GetScheduleResponse(status=sched.status_to_proto(found))

    @unary
    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSchedulesResponse:
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"page_size: must be between 0 and {MAX_PAGE_SIZE}")
        size = request.page_size or DEFAULT_SCHEDULE_PAGE_SIZE
        found = await self.schedules.list(
            workflow_name=request.workflow_name, after=request.page_token, limit=size + 1
        )
        token = found[size - 1].spec.schedule_id if len(found) > size else ""
        return pb.ListSchedulesResponse(
            schedules=[sched.status_to_proto(s) for s in found[:size]], next_page_token=token
        )

    @unary
    async def PauseSchedule(
        self, request: pb.PauseScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseScheduleResponse:
        schedule_id = _require(request.schedule_id, "schedule_id")
        paused = await self.schedules.set_paused(
            schedule_id, True, sched.check_note(request.note, "note")
        )
        return pb.PauseScheduleResponse(status=sched.status_to_proto(paused))

    @unary
    async def UnpauseSchedule(
        self, request: pb.UnpauseScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnpauseScheduleResponse:
        schedule_id = _require(request.schedule_id, "schedule_id")
        unpaused = await self.schedules.set_paused(
            schedule_id, False, sched.check_note(request.note, "note")
        )
        return pb.UnpauseScheduleResponse(status=sched.status_to_proto(unpaused))

    @unary
    async def DeleteSchedule(
        self, request: pb.DeleteScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteScheduleResponse:
        await self.schedules.delete(_require(request.schedule_id, "schedule_id"))
        return pb.DeleteScheduleResponse()

    # -- shared limits --------------------------------------------------------------

    @unary
    async def PutRateLimit(
        self, request: limits_pb2.PutRateLimitRequest, context: grpc.aio.ServicerContext
    ) -> limits_pb2.PutRateLimitResponse:
        limit = limits.from_proto(request.limit)
        created = await self.orchestrator.store.put_limit(limit.key, limit.to_json())
        return limits_pb2.PutRateLimitResponse(limit=limit.to_proto(), created=created)

    @unary
    async def GetRateLimit(
        self, request: limits_pb2.GetRateLimitRequest, context: grpc.aio.ServicerContext
    ) -> limits_pb2.GetRateLimitResponse:
        key = _require(request.key, "key")
        raw = await self.orchestrator.store.limit(key)
        if raw is None:
            raise NotFound(f"key: no rate limit {key!r}")
        return limits_pb2.GetRateLimitResponse(limit=limits.Limit.from_json(key, raw).to_proto())

    @unary
    async def ListRateLimits(
        self, request: limits_pb2.ListRateLimitsRequest, context: grpc.aio.ServicerContext
    ) -> limits_pb2.ListRateLimitsResponse:
        found = await self.orchestrator.store.all_limits()
        return limits_pb2.ListRateLimitsResponse(
            limits=[limits.Limit.from_json(k, found[k]).to_proto() for k in sorted(found)]
        )

    @unary
    async def DeleteRateLimit(
        self, request: limits_pb2.DeleteRateLimitRequest, context: grpc.aio.ServicerContext
    ) -> limits_pb2.DeleteRateLimitResponse:
        key = _require(request.key, "key")
        if not await self.orchestrator.store.delete_limit(key):
            raise NotFound(f"key: no rate limit {key!r}")
        return limits_pb2.DeleteRateLimitResponse()


_OUTPUT = events_pb2.WorkflowEvent()  # "output was appended", from _next_event


async def _next_event(
    events: asyncio.Queue[events_pb2.WorkflowEvent], appended: asyncio.Event | None
) -> events_pb2.WorkflowEvent | None:
    """The next history event, `_OUTPUT` when output was appended first, or
    None after WATCH_RESYNC_S of silence."""
    if not events.empty():
        return events.get_nowait()
    getter = asyncio.ensure_future(events.get())
    waiters: set[asyncio.Future[Any]] = {getter}
    if appended is not None:
        waiters.add(asyncio.ensure_future(appended.wait()))
    try:
        done, _ = await asyncio.wait(waiters, timeout=WATCH_RESYNC_S, return_when="FIRST_COMPLETED")
    finally:
        for waiter in waiters:
            waiter.cancel()
    if getter in done:
        return getter.result()
    return _OUTPUT if done else None


def _has_path(ex: Execution, path: str) -> bool:
    """Whether `path` names a node of the definition (or an item of a map)."""
    for known in ex.spec.paths:
        if known.endswith("*"):
            if path.startswith(known[:-1]) and path[len(known) - 1 :].isdigit():
                return True
        elif known == path:
            return True
    return False


def _step_done(ex: Execution, path: str) -> bool:
    """The step at `path` has completed (so its output is final)."""
    keys = [*map(str, range(len(ex.spec.nodes))), *ex.nodes]
    for key in keys:
        if ex.path_of(key) == path:
            return ex.node(key).status in _STEP_DONE
    return False


_STEP_DONE = frozenset(
    {StepStatus.COMPLETED, StepStatus.COMPENSATED, StepStatus.COMPENSATION_FAILED}
)


def _ends_output(event: events_pb2.WorkflowEvent, step: str) -> bool:
    """Whether the output stream ends after this event (read what is left first)."""
    kind = event.WhichOneof("event")
    if kind == "status":
        return event.status.state in TERMINAL
    return (
        bool(step)
        and kind == "result"
        and event.result.step == step
        and not (event.result.compensation)
    )


TERMINAL = frozenset(
    {
        common_pb2.WORKFLOW_STATE_COMPLETED,
        common_pb2.WORKFLOW_STATE_FAILED,
        common_pb2.WORKFLOW_STATE_COMPENSATED,
        common_pb2.WORKFLOW_STATE_CANCELLED,
    }
)
