"""JSON form of engine values, for storage. Plain dicts and lists only, so the
stored state is readable with any Redis client and never needs pickle."""

from __future__ import annotations

from typing import Any

from multiagents_server.engine.failures import FailureKind
from multiagents_server.engine.model import (
    Attempt,
    CommandKind,
    Execution,
    Failure,
    RetryPolicy,
    State,
    StepRecord,
    StepSpec,
    StepStatus,
    WorkflowSpec,
)


def retry_to_json(p: RetryPolicy) -> dict[str, Any]:
    return {
        "max_attempts": p.max_attempts,
        "initial_interval_ms": p.initial_interval_ms,
        "backoff_coefficient": p.backoff_coefficient,
        "max_interval_ms": p.max_interval_ms,
        "non_retryable_error_types": list(p.non_retryable_error_types),
    }


def retry_from_json(d: dict[str, Any]) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=d["max_attempts"],
        initial_interval_ms=d["initial_interval_ms"],
        backoff_coefficient=d["backoff_coefficient"],
        max_interval_ms=d["max_interval_ms"],
        non_retryable_error_types=tuple(d["non_retryable_error_types"]),
    )


def spec_to_json(spec: WorkflowSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "version": spec.version,
        "description": spec.description,
        "steps": [
            {
                "name": s.name,
                "worker": s.worker,
                "compensation": s.compensation,
                "retry": retry_to_json(s.retry),
                "compensation_retry": (
                    retry_to_json(s.compensation_retry) if s.compensation_retry else None
                ),
                "timeout_ms": s.timeout_ms,
                "heartbeat_timeout_ms": s.heartbeat_timeout_ms,
                "workflow": s.workflow,
                "workflow_version": s.workflow_version,
            }
            for s in spec.steps
        ],
    }


def spec_from_json(d: dict[str, Any]) -> WorkflowSpec:
    return WorkflowSpec(
        name=d["name"],
        version=d["version"],
        description=d.get("description", ""),
        steps=tuple(
            StepSpec(
                name=s["name"],
                worker=s["worker"],
                compensation=s["compensation"],
                retry=retry_from_json(s["retry"]),
                compensation_retry=(
                    retry_from_json(s["compensation_retry"]) if s["compensation_retry"] else None
                ),
                timeout_ms=s["timeout_ms"],
                heartbeat_timeout_ms=s["heartbeat_timeout_ms"],
                workflow=s.get("workflow", ""),
                workflow_version=s.get("workflow_version", 0),
            )
            for s in d["steps"]
        ),
    )


def failure_to_json(f: Failure | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {
        "message": f.message,
        "type": f.type,
        "non_retryable": f.non_retryable,
        "stack_trace": f.stack_trace,
        "kind": f.kind.value,
        "cause": failure_to_json(f.cause),
    }


def failure_from_json(d: dict[str, Any] | None) -> Failure | None:
    """A stored failure; one stored before kinds existed is an APPLICATION one."""
    if d is None:
        return None
    return Failure(
        d["message"],
        d["type"],
        d["non_retryable"],
        d["stack_trace"],
        kind=FailureKind(d.get("kind", FailureKind.APPLICATION)),
        cause=failure_from_json(d.get("cause")),
    )


def execution_to_json(ex: Execution) -> dict[str, Any]:
    current = ex.current
    return {
        "transaction_id": ex.transaction_id,
        "correlation_id": ex.correlation_id,
        "spec": spec_to_json(ex.spec),
        "state": ex.state.value,
        "input": ex.input,
        "context": ex.context,
        "step_results": ex.step_results,
        "steps": [
            {
                "status": s.status.value,
                "attempts": s.attempts,
                "compensation_attempts": s.compensation_attempts,
                "last_failure": failure_to_json(s.last_failure),
                "child_transaction_id": s.child_transaction_id,
            }
            for s in ex.steps
        ],
        "created_ms": ex.created_ms,
        "updated_ms": ex.updated_ms,
        "current": (
            None
            if current is None
            else [current.kind.value, current.step_index, current.number, current.dispatched]
        ),
        "compensation_queue": list(ex.compensation_queue),
        "failure": failure_to_json(ex.failure),
        "cancel_requested": ex.cancel_requested,
        "cancel_reason": ex.cancel_reason,
        "requires_manual_intervention": ex.requires_manual_intervention,
        "completed_ms": ex.completed_ms,
        "request_fingerprint": ex.request_fingerprint,
        "metadata": ex.metadata,
        "parent_transaction_id": ex.parent_transaction_id,
        "parent_command_id": ex.parent_command_id,
    }


def execution_from_json(d: dict[str, Any]) -> Execution:
    current = d["current"]
    return Execution(
        transaction_id=d["transaction_id"],
        correlation_id=d["correlation_id"],
        spec=spec_from_json(d["spec"]),
        state=State(d["state"]),
        input=d["input"],
        context=d["context"],
        step_results=d["step_results"],
        steps=tuple(
            StepRecord(
                status=StepStatus(s["status"]),
                attempts=s["attempts"],
                compensation_attempts=s["compensation_attempts"],
                last_failure=failure_from_json(s["last_failure"]),
                child_transaction_id=s.get("child_transaction_id", ""),
            )
            for s in d["steps"]
        ),
        created_ms=d["created_ms"],
        updated_ms=d["updated_ms"],
        current=(
            None
            if current is None
            else Attempt(CommandKind(current[0]), current[1], current[2], current[3])
        ),
        compensation_queue=tuple(d["compensation_queue"]),
        failure=failure_from_json(d["failure"]),
        cancel_requested=d["cancel_requested"],
        cancel_reason=d.get("cancel_reason", ""),
        requires_manual_intervention=d["requires_manual_intervention"],
        completed_ms=d["completed_ms"],
        request_fingerprint=d["request_fingerprint"],
        metadata=d["metadata"],
        parent_transaction_id=d.get("parent_transaction_id", ""),
        parent_command_id=d.get("parent_command_id", ""),
    )
