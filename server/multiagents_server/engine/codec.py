"""JSON form of engine values, for storage. Plain dicts and lists only, so the
stored state is readable with any Redis client and never needs pickle.

State stored by version 1 (a flat list of steps, one `current` attempt) is
still read: `execution_from_json` turns it into the tree form.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from multiagents_server.engine import usage
from multiagents_server.engine.failures import FailureKind
from multiagents_server.engine.model import (
    Attempt,
    Branch,
    Case,
    CommandKind,
    ConditionSpec,
    Execution,
    Failure,
    LimitKey,
    MapSpec,
    Node,
    NodeRecord,
    ParallelSpec,
    RetryPolicy,
    Signal,
    SleepSpec,
    State,
    StepSpec,
    StepStatus,
    WaitSpec,
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


def _step_to_json(s: StepSpec) -> dict[str, Any]:
    return {
        "name": s.name,
        "worker": s.worker,
        "compensation": s.compensation,
        "retry": retry_to_json(s.retry),
        "compensation_retry": retry_to_json(s.compensation_retry) if s.compensation_retry else None,
        "timeout_ms": s.timeout_ms,
        "heartbeat_timeout_ms": s.heartbeat_timeout_ms,
        "workflow": s.workflow,
        "workflow_version": s.workflow_version,
        **({"estimate": usage.to_json(s.estimate)} if s.estimate else {}),
        **(
            {"rate_limits": [[k.key, k.expression] for k in s.rate_limits]} if s.rate_limits else {}
        ),
    }


def _step_from_json(s: dict[str, Any]) -> StepSpec:
    return StepSpec(
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
        estimate=usage.from_json(s["estimate"]) if "estimate" in s else usage.Usage(),
        rate_limits=tuple(LimitKey(k, x) for k, x in s.get("rate_limits", ())),
    )


def _seq_to_json(steps: tuple[Node, ...]) -> list[dict[str, Any]]:
    return [node_to_json(n) for n in steps]


def _seq_from_json(rows: list[dict[str, Any]]) -> tuple[Node, ...]:
    return tuple(node_from_json(r) for r in rows)


def node_to_json(n: Node) -> dict[str, Any]:
    match n:
        case StepSpec():
            return _step_to_json(n)
        case ParallelSpec():
            return {
                "kind": "parallel",
                "name": n.name,
                "fail_fast": n.fail_fast,
                "branches": [{"name": b.name, "steps": _seq_to_json(b.steps)} for b in n.branches],
            }
        case MapSpec():
            return {
                "kind": "map",
                "name": n.name,
                "items": n.items,
                "body": _step_to_json(n.body),
                "max_concurrency": n.max_concurrency,
            }
        case ConditionSpec():
            return {
                "kind": "condition",
                "name": n.name,
                "switch": n.switch,
                "cases": [
                    {"when": c.when, "equals": c.equals, "steps": _seq_to_json(c.steps)}
                    for c in n.cases
                ],
                "otherwise": _seq_to_json(n.otherwise),
            }
        case WaitSpec():
            return {
                "kind": "wait",
                "name": n.name,
                "signal": n.signal,
                "timeout_ms": n.timeout_ms,
                "on_timeout": None if n.on_timeout is None else _seq_to_json(n.on_timeout),
                "approval": n.approval,
            }
        case SleepSpec():
            return {"kind": "sleep", "name": n.name, "duration_ms": n.duration_ms}


def node_from_json(d: dict[str, Any]) -> Node:
    match d.get("kind", "step"):
        case "parallel":
            branches = tuple(Branch(b["name"], _seq_from_json(b["steps"])) for b in d["branches"])
            return ParallelSpec(d["name"], branches, d["fail_fast"])
        case "map":
            return MapSpec(d["name"], d["items"], _step_from_json(d["body"]), d["max_concurrency"])
        case "condition":
            cases = tuple(
                Case(_seq_from_json(c["steps"]), c["when"], c["equals"]) for c in d["cases"]
            )
            return ConditionSpec(d["name"], cases, _seq_from_json(d["otherwise"]), d["switch"])
        case "wait":
            on_timeout = d["on_timeout"]
            return WaitSpec(
                d["name"],
                d["signal"],
                d["timeout_ms"],
                None if on_timeout is None else _seq_from_json(on_timeout),
                d["approval"],
            )
        case "sleep":
            return SleepSpec(d["name"], d["duration_ms"])
        case _:
            return _step_from_json(d)


def spec_to_json(spec: WorkflowSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "version": spec.version,
        "description": spec.description,
        "steps": _seq_to_json(spec.steps),
        **({"budget": usage.budget_to_json(spec.budget)} if spec.budget else {}),
    }


def spec_from_json(d: dict[str, Any]) -> WorkflowSpec:
    return WorkflowSpec(
        name=d["name"],
        version=d["version"],
        description=d.get("description", ""),
        steps=_seq_from_json(d["steps"]),
        budget=usage.budget_from_json(d.get("budget")),
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


# A node record is stored without its default fields (a map of 1,000 items
# stores 1,000 of them), and encoded once: a record keeps its JSON form until
# a transition changes it (NodeRecord.encoded).
_RECORD_DEFAULTS = NodeRecord()
_RECORD_FIELDS = tuple(
    (f.name, getattr(_RECORD_DEFAULTS, f.name))
    for f in fields(NodeRecord)
    if f.name not in ("status", "encoded")
)


def _record_to_json(r: NodeRecord) -> dict[str, Any]:
    if r.encoded is not None:
        return r.encoded
    out: dict[str, Any] = {"status": r.status.value}
    for name, default in _RECORD_FIELDS:
        value = getattr(r, name)
        if value == default:
            continue
        if name == "last_failure":
            value = failure_to_json(value)
        elif name == "items":
            value = list(value)
        out[name] = value
    object.__setattr__(r, "encoded", out)
    return out


def _record_from_json(d: dict[str, Any]) -> NodeRecord:
    fields = dict(d)
    fields["status"] = StepStatus(d["status"])
    if "last_failure" in d:
        fields["last_failure"] = failure_from_json(d["last_failure"])
    if "items" in d:
        fields["items"] = tuple(d["items"])
    return NodeRecord(**fields, encoded=d)


def execution_to_json(ex: Execution) -> dict[str, Any]:
    return {
        "v": 2,
        "transaction_id": ex.transaction_id,
        "correlation_id": ex.correlation_id,
        "spec": spec_to_json(ex.spec),
        "state": ex.state.value,
        "input": ex.input,
        "context": ex.context,
        "step_results": ex.step_results,
        "nodes": {k: _record_to_json(r) for k, r in ex.nodes.items()},
        "created_ms": ex.created_ms,
        "updated_ms": ex.updated_ms,
        "attempts": [[a.kind.value, a.key, a.number, a.dispatched] for a in ex.attempts.values()],
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
        "signals": [[s.name, s.payload, s.signal_id] for s in ex.signals],
        "signal_ids": ex.signal_ids,
        "completions": ex.completions,
        "start_at_ms": ex.start_at_ms,
        "usage_by_step": {k: usage.to_json(u) for k, u in ex.usage_by_step.items()},
        "budget": usage.budget_to_json(ex.budget),
    }


def name_and_state(d: dict[str, Any]) -> tuple[str, str] | None:
    """A stored execution's workflow name and state value, read without
    decoding the rest (a listing's filter); None for an older stored form,
    which only `execution_from_json` reads."""
    if d.get("v") != 2:
        return None
    return d["spec"]["name"], d["state"]


def execution_from_json(d: dict[str, Any]) -> Execution:
    if d.get("v") != 2:
        d = _upgrade_v1(d)
    attempts = [Attempt(CommandKind(k), key, n, sent) for k, key, n, sent in d["attempts"]]
    return Execution(
        transaction_id=d["transaction_id"],
        correlation_id=d["correlation_id"],
        spec=spec_from_json(d["spec"]),
        state=State(d["state"]),
        input=d["input"],
        context=d["context"],
        step_results=d["step_results"],
        nodes={k: _record_from_json(r) for k, r in d["nodes"].items()},
        created_ms=d["created_ms"],
        updated_ms=d["updated_ms"],
        attempts={a.key: a for a in attempts},
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
        signals=tuple(Signal(n, p, i) for n, p, i in d.get("signals", [])),
        signal_ids=d.get("signal_ids", {}),
        completions=d.get("completions", 0),
        start_at_ms=d.get("start_at_ms", 0),
        usage_by_step={k: usage.from_json(u) for k, u in d.get("usage_by_step", {}).items()},
        budget=usage.budget_from_json(d.get("budget")),
    )


def _upgrade_v1(d: dict[str, Any]) -> dict[str, Any]:
    """A version 1 execution (flat steps, one attempt) in the version 2 form.

    Step i of a flat definition is node i; a completed step's result is in
    `step_results`; its completion order is its index.
    """
    nodes: dict[str, Any] = {}
    for i, s in enumerate(d["steps"]):
        spec = d["spec"]["steps"][i]
        record: dict[str, Any] = {
            "status": s["status"],
            "attempts": s["attempts"],
            "compensation_attempts": s["compensation_attempts"],
            "last_failure": s["last_failure"],
            "child_transaction_id": s.get("child_transaction_id", ""),
        }
        if s["status"] in ("completed", "compensated", "compensation_failed"):
            record["result"] = d["step_results"].get(spec["name"], {})
            record["completed_seq"] = i + 1
        nodes[str(i)] = record
    current = d["current"]
    attempts = [] if current is None else [[current[0], str(current[1]), current[2], current[3]]]
    state = d["state"]
    if state == "running" and (
        d["failure"] is not None or (current is not None and current[0] == "compensate")
    ):
        state = "compensating"
    return {
        **d,
        "state": state,
        "nodes": nodes,
        "attempts": attempts,
        "compensation_queue": [str(i) for i in d["compensation_queue"]],
        "completions": len(d["steps"]),
    }
