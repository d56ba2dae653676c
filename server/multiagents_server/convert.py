"""Conversions between the engine's values and the protobuf messages, with
the validation of definitions (errors name the offending field)."""

from __future__ import annotations

import math
import re
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2

from multiagents import wire
from multiagents.v1 import common_pb2, events_pb2, worker_service_pb2, workflow_pb2
from multiagents_server import engine
from multiagents_server.engine import CommandKind, State
from multiagents_server.errors import InvalidArgument, ResourceExhausted
from multiagents_server.observability import tracing

_NAME = re.compile(r"^[A-Za-z0-9_.\-:/]{1,200}$")

STATE_TO_PROTO = {
    State.PENDING: common_pb2.WORKFLOW_STATE_PENDING,
    State.RUNNING: common_pb2.WORKFLOW_STATE_RUNNING,
    State.COMPLETED: common_pb2.WORKFLOW_STATE_COMPLETED,
    State.FAILED: common_pb2.WORKFLOW_STATE_FAILED,
    State.COMPENSATED: common_pb2.WORKFLOW_STATE_COMPENSATED,
    State.CANCELLED: common_pb2.WORKFLOW_STATE_CANCELLED,
}
STATE_FROM_PROTO = {v: k for k, v in STATE_TO_PROTO.items()}

_STEP_STATUS = {
    engine.StepStatus.PENDING: workflow_pb2.STEP_STATUS_PENDING,
    engine.StepStatus.RUNNING: workflow_pb2.STEP_STATUS_RUNNING,
    engine.StepStatus.COMPLETED: workflow_pb2.STEP_STATUS_COMPLETED,
    engine.StepStatus.FAILED: workflow_pb2.STEP_STATUS_FAILED,
    engine.StepStatus.COMPENSATED: workflow_pb2.STEP_STATUS_COMPENSATED,
    engine.StepStatus.COMPENSATION_FAILED: workflow_pb2.STEP_STATUS_COMPENSATION_FAILED,
    engine.StepStatus.CANCELLED: workflow_pb2.STEP_STATUS_CANCELLED,
}

_KIND = {
    CommandKind.EXECUTE: worker_service_pb2.COMMAND_KIND_EXECUTE,
    CommandKind.COMPENSATE: worker_service_pb2.COMMAND_KIND_COMPENSATE,
}


# Length limits of free-form strings (characters), documented in the protos.
MAX_ID_LENGTH = 200
MAX_REASON_LENGTH = 1000
MAX_METADATA_VALUE_LENGTH = 512


def check_length(value: str, field: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidArgument(f"{field}: at most {limit} characters, got {len(value)}")


def check_name(value: str, field: str) -> None:
    if not _NAME.match(value):
        raise InvalidArgument(
            f"{field}: must be 1-200 characters of letters, digits and _ . - : /, got {value!r}"
        )


def timestamp(ms: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def duration(ms: int) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(ms)
    return d


# -- definitions ---------------------------------------------------------------


# Bounds of a retry policy and of a step's timeouts (documented in the proto).
MAX_ATTEMPTS = 10_000
MAX_BACKOFF_COEFFICIENT = 100.0
MAX_INTERVAL_MS = 30 * 24 * 3600 * 1000
MAX_TIMEOUT_MS = 365 * 24 * 3600 * 1000
# JSON payloads nested deeper than this are refused (a client's input:
# INVALID_ARGUMENT; a worker's result: a non-retryable failure of the attempt).
MAX_JSON_DEPTH = 100


def _interval(p: Any, name: str, field: str, default: int) -> int:
    value = getattr(p, name).ToMilliseconds() if p.HasField(name) else default
    if not 0 <= value <= MAX_INTERVAL_MS:
        raise InvalidArgument(
            f"{field}.{name}: must be between 0 and {MAX_INTERVAL_MS} ms (30 days)"
        )
    return int(value)


def _retry_from_proto(p: workflow_pb2.RetryPolicy, field: str) -> engine.RetryPolicy:
    if not 0 <= p.maximum_attempts <= MAX_ATTEMPTS:
        raise InvalidArgument(
            f"{field}.maximum_attempts: must be between 0 and {MAX_ATTEMPTS} (0 means 3)"
        )
    c = p.backoff_coefficient
    if not math.isfinite(c) or not (c == 0 or 1 <= c <= MAX_BACKOFF_COEFFICIENT):
        raise InvalidArgument(
            f"{field}.backoff_coefficient: must be a finite number between 1 and "
            f"{MAX_BACKOFF_COEFFICIENT:g} (0 means 2.0), got {c}"
        )
    initial = _interval(p, "initial_interval", field, 1000)
    maximum = _interval(p, "maximum_interval", field, 0)
    return engine.RetryPolicy(
        max_attempts=p.maximum_attempts or 3,
        initial_interval_ms=initial,
        backoff_coefficient=p.backoff_coefficient or 2.0,
        max_interval_ms=maximum or max(100 * initial, 1),
        non_retryable_error_types=tuple(p.non_retryable_error_types),
    )


def _retry_to_proto(p: engine.RetryPolicy) -> workflow_pb2.RetryPolicy:
    return workflow_pb2.RetryPolicy(
        maximum_attempts=p.max_attempts,
        initial_interval=duration(p.initial_interval_ms),
        backoff_coefficient=p.backoff_coefficient,
        maximum_interval=duration(p.max_interval_ms),
        non_retryable_error_types=list(p.non_retryable_error_types),
    )


def spec_from_proto(
    d: workflow_pb2.WorkflowDefinition, *, default_timeout_ms: int, field: str = "definition"
) -> engine.WorkflowSpec:
    """Validate a definition and apply defaults; errors name the field."""
    check_name(d.name, f"{field}.name")
    if d.version < 1:
        raise InvalidArgument(f"{field}.version: must be >= 1, got {d.version}")
    if not d.steps:
        raise InvalidArgument(f"{field}.steps: a workflow needs at least one step")
    seen: set[str] = set()
    steps = []
    for i, s in enumerate(d.steps):
        where = f"{field}.steps[{i}]"
        check_name(s.name, f"{where}.name")
        if s.name in seen:
            raise InvalidArgument(f"{where}.name: duplicate step name {s.name!r}")
        seen.add(s.name)
        if bool(s.worker) == bool(s.workflow):
            raise InvalidArgument(f"{where}.worker: set exactly one of worker and workflow")
        if s.worker:
            check_name(s.worker, f"{where}.worker")
        else:
            check_name(s.workflow, f"{where}.workflow")
            if s.workflow_version < 0:
                raise InvalidArgument(f"{where}.workflow_version: must be >= 0 (0 means latest)")
            if s.HasField("heartbeat_timeout"):
                raise InvalidArgument(
                    f"{where}.heartbeat_timeout: not supported on a sub-workflow step"
                )
        if s.compensation:
            check_name(s.compensation, f"{where}.compensation")
        timeout = s.timeout.ToMilliseconds() if s.HasField("timeout") else default_timeout_ms
        if not 0 < timeout <= MAX_TIMEOUT_MS:
            raise InvalidArgument(f"{where}.timeout: must be positive and at most 365 days")
        heartbeat = s.heartbeat_timeout.ToMilliseconds() if s.HasField("heartbeat_timeout") else 0
        if heartbeat > MAX_TIMEOUT_MS:
            raise InvalidArgument(f"{where}.heartbeat_timeout: must be at most 365 days")
        if heartbeat < 0:
            raise InvalidArgument(f"{where}.heartbeat_timeout: must not be negative")
        steps.append(
            engine.StepSpec(
                name=s.name,
                worker=s.worker,
                compensation=s.compensation,
                retry=_retry_from_proto(s.retry_policy, f"{where}.retry_policy"),
                compensation_retry=(
                    _retry_from_proto(
                        s.compensation_retry_policy, f"{where}.compensation_retry_policy"
                    )
                    if s.HasField("compensation_retry_policy")
                    else None
                ),
                timeout_ms=timeout,
                heartbeat_timeout_ms=heartbeat,
                workflow=s.workflow,
                workflow_version=s.workflow_version,
            )
        )
    return engine.WorkflowSpec(d.name, d.version, tuple(steps), d.description)


def spec_to_proto(spec: engine.WorkflowSpec) -> workflow_pb2.WorkflowDefinition:
    steps = []
    for s in spec.steps:
        step = workflow_pb2.StepDefinition(
            name=s.name,
            worker=s.worker,
            compensation=s.compensation,
            retry_policy=_retry_to_proto(s.retry),
            timeout=duration(s.timeout_ms),
            workflow=s.workflow,
            workflow_version=s.workflow_version,
        )
        if s.compensation_retry is not None:
            step.compensation_retry_policy.CopyFrom(_retry_to_proto(s.compensation_retry))
        if s.heartbeat_timeout_ms:
            step.heartbeat_timeout.CopyFrom(duration(s.heartbeat_timeout_ms))
        steps.append(step)
    return workflow_pb2.WorkflowDefinition(
        name=spec.name, version=spec.version, steps=steps, description=spec.description
    )


# -- failures, status, events ---------------------------------------------------


def failure_to_proto(f: engine.Failure | None) -> common_pb2.Failure | None:
    if f is None:
        return None
    return common_pb2.Failure(
        message=f.message, type=f.type, non_retryable=f.non_retryable, stack_trace=f.stack_trace
    )


# A worker's stack trace is kept up to this many bytes of UTF-8, its end (the
# innermost frames and the exception): docs/protocol.md.
MAX_STACK_TRACE_BYTES = 8192


def trim_stack_trace(stack: str, limit: int = MAX_STACK_TRACE_BYTES) -> str:
    """The last `limit` bytes of `stack` (whole characters), marked when cut."""
    data = stack.encode()
    if len(data) <= limit:
        return stack
    marker = "...(trimmed)\n"
    return marker + data[len(data) - limit + len(marker) :].decode(errors="ignore")


def failure_from_proto(f: common_pb2.Failure) -> engine.Failure:
    return engine.Failure(
        message=f.message or "worker failed",
        type=f.type or "Error",
        non_retryable=f.non_retryable,
        stack_trace=trim_stack_trace(f.stack_trace),
    )


def status_to_proto(ex: engine.Execution, revision: int) -> workflow_pb2.WorkflowStatus:
    status = workflow_pb2.WorkflowStatus(
        transaction_id=ex.transaction_id,
        correlation_id=ex.correlation_id,
        workflow_name=ex.spec.name,
        workflow_version=ex.spec.version,
        state=STATE_TO_PROTO[ex.state],
        current_step=ex.current_step,
        step_results=wire.encode(ex.step_results),
        context=wire.encode(ex.context),
        failure=failure_to_proto(ex.failure),
        requires_manual_intervention=ex.requires_manual_intervention,
        steps=[
            workflow_pb2.StepInfo(
                name=spec.name,
                status=_STEP_STATUS[rec.status],
                attempts=rec.attempts,
                last_failure=failure_to_proto(rec.last_failure),
                child_transaction_id=rec.child_transaction_id,
            )
            for spec, rec in zip(ex.spec.steps, ex.steps, strict=True)
        ],
        created_at=timestamp(ex.created_ms),
        updated_at=timestamp(ex.updated_ms),
        revision=revision,
        parent_transaction_id=ex.parent_transaction_id,
    )
    if ex.completed_ms:
        status.completed_at.CopyFrom(timestamp(ex.completed_ms))
    return status


def status_event(ex: engine.Execution, revision: int, now_ms: int) -> events_pb2.StatusEvent:
    """A StatusEvent with the execution's current state."""
    return events_pb2.StatusEvent(
        transaction_id=ex.transaction_id,
        state=STATE_TO_PROTO[ex.state],
        current_step=ex.current_step,
        step_results=wire.encode(ex.step_results),
        timestamp=timestamp(now_ms),
        correlation_id=ex.correlation_id,
        revision=revision,
        failure=failure_to_proto(ex.failure),
        requires_manual_intervention=ex.requires_manual_intervention,
    )


def history_to_proto(
    entry: engine.HistoryEntry, ex: engine.Execution, revision: int, now_ms: int
) -> events_pb2.WorkflowEvent:
    """One history entry as a WorkflowEvent (sequence is filled on read)."""
    tx, corr, ts = ex.transaction_id, ex.correlation_id, timestamp(now_ms)
    match entry:
        case engine.CommandRecorded(kind=CommandKind.EXECUTE):
            return events_pb2.WorkflowEvent(
                command=events_pb2.CommandEvent(
                    worker_name=entry.worker,
                    transaction_id=tx,
                    correlation_id=corr,
                    context=wire.encode(entry.context),
                    timestamp=ts,
                    retry_count=entry.attempt - 1,
                    step=entry.step,
                    command_id=entry.command_id,
                    child_transaction_id=entry.child_transaction_id,
                )
            )
        case engine.CommandRecorded():
            return events_pb2.WorkflowEvent(
                compensation=events_pb2.CompensationEvent(
                    worker_name=entry.worker,
                    transaction_id=tx,
                    correlation_id=corr,
                    context=wire.encode(entry.context),
                    timestamp=ts,
                    step=entry.step,
                    command_id=entry.command_id,
                    retry_count=entry.attempt - 1,
                )
            )
        case engine.ResultRecorded():
            return events_pb2.WorkflowEvent(
                result=events_pb2.ResultEvent(
                    worker_name=entry.worker,
                    transaction_id=tx,
                    correlation_id=corr,
                    result=wire.encode(entry.result),
                    success=True,
                    timestamp=ts,
                    step=entry.step,
                    command_id=entry.command_id,
                    compensation=entry.kind is CommandKind.COMPENSATE,
                )
            )
        case engine.ErrorRecorded():
            return events_pb2.WorkflowEvent(
                error=events_pb2.ErrorEvent(
                    worker_name=entry.worker,
                    transaction_id=tx,
                    correlation_id=corr,
                    error=failure_to_proto(entry.failure),
                    timestamp=ts,
                    retry_count=entry.attempt - 1,
                    step=entry.step,
                    command_id=entry.command_id,
                    will_retry=entry.will_retry,
                    compensation=entry.kind is CommandKind.COMPENSATE,
                )
            )
        case engine.StatusChanged():
            event = status_event(ex, revision, now_ms)
            event.state = STATE_TO_PROTO[entry.state]
            event.current_step = entry.current_step
            return events_pb2.WorkflowEvent(status=event)


def command_to_proto(
    effect: engine.DispatchCommand, ex: engine.Execution
) -> worker_service_pb2.Command:
    command = worker_service_pb2.Command(
        command_id=effect.command_id,
        kind=_KIND[effect.kind],
        worker_name=effect.worker,
        transaction_id=ex.transaction_id,
        correlation_id=ex.correlation_id,
        step=effect.step,
        context=wire.encode(effect.context),
        attempt=effect.attempt,
        deadline=timestamp(effect.deadline_ms),
        metadata=tracing.command_metadata(ex, effect.command_id),
    )
    if effect.heartbeat_timeout_ms:
        command.heartbeat_timeout.CopyFrom(duration(effect.heartbeat_timeout_ms))
    return command


def json_object(payload: common_pb2.Payload, field: str, limit: int) -> dict[str, Any]:
    """Decode a payload that must be a JSON object within the size limit."""
    size = len(payload.data)
    if size > limit:
        raise ResourceExhausted(f"{field}: payload of {size} bytes is over the limit of {limit}")
    try:
        value = wire.decode_object(payload, field=field)
    except wire.PayloadError as exc:
        raise InvalidArgument(str(exc)) from None
    except RecursionError:
        value = None
    # Only a payload with that many brackets can nest that deep: most are
    # not walked at all.
    brackets = payload.data.count(b"{") + payload.data.count(b"[")
    if value is None or (brackets > MAX_JSON_DEPTH and _depth_over(value, MAX_JSON_DEPTH)):
        raise InvalidArgument(f"{field}: JSON nested deeper than the limit of {MAX_JSON_DEPTH}")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether `value` nests containers more than `limit` deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False
