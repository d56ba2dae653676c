"""Conversions between the engine's values and the protobuf messages, with
the validation of definitions (errors name the offending field)."""

from __future__ import annotations

import math
import re
from typing import Any

from google.protobuf import duration_pb2, json_format, timestamp_pb2

from multiagents import wire
from multiagents.v1 import common_pb2, events_pb2, limits_pb2, worker_service_pb2, workflow_pb2
from multiagents_server import engine, limits
from multiagents_server.engine import CommandKind, FailureKind, State, expressions
from multiagents_server.engine import failures as engine_failures
from multiagents_server.engine.saga import EXPRESSION_ERROR
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
    State.COMPENSATING: common_pb2.WORKFLOW_STATE_COMPENSATING,
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
    engine.StepStatus.SKIPPED: workflow_pb2.STEP_STATUS_SKIPPED,
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


MAX_MAP_CONCURRENCY = 1_000
DEFAULT_MAP_CONCURRENCY = 10
# Nodes of one definition, nested ones included.
MAX_NODES = 10_000
_STEP_KINDS = ("worker", "workflow", "parallel", "map", "condition", "wait_for_signal", "sleep")
_LEAF_ONLY = ("compensation", "retry_policy", "timeout", "heartbeat_timeout",
              "compensation_retry_policy", "usage_estimate", "rate_limits")  # fmt: skip


def spec_from_proto(
    d: workflow_pb2.WorkflowDefinition, *, default_timeout_ms: int, field: str = "definition"
) -> engine.WorkflowSpec:
    """Validate a definition and apply defaults; errors name the field."""
    check_name(d.name, f"{field}.name")
    if d.version < 1:
        raise InvalidArgument(f"{field}.version: must be >= 1, got {d.version}")
    if not d.steps:
        raise InvalidArgument(f"{field}.steps: a workflow needs at least one step")
    reader = _DefinitionReader(default_timeout_ms)
    steps = reader.sequence(d.steps, f"{field}.steps")
    budget = budget_from_proto(d.budget, f"{field}.budget")
    return engine.WorkflowSpec(d.name, d.version, steps, d.description, budget)


def budget_from_proto(b: common_pb2.Budget, field: str) -> engine.Budget:
    """A budget (zero fields: no limit); InvalidArgument naming a negative field."""
    for name in ("max_tokens", "max_cost_nano_usd"):
        if getattr(b, name) < 0:
            raise InvalidArgument(f"{field}.{name}: must be >= 0, got {getattr(b, name)}")
    return engine.Budget(b.max_tokens, b.max_cost_nano_usd)


def budget_to_proto(b: engine.Budget) -> common_pb2.Budget | None:
    if not b:
        return None
    return common_pb2.Budget(max_tokens=b.max_tokens, max_cost_nano_usd=b.max_cost_nano_usd)


class _DefinitionReader:
    """Reads a definition tree, checking names are unique across it."""

    def __init__(self, default_timeout_ms: int) -> None:
        self.default_timeout_ms = default_timeout_ms
        self.names: set[str] = set()
        self.count = 0

    def sequence(self, steps: Any, where: str) -> tuple[engine.Node, ...]:
        return tuple(self.node(s, f"{where}[{i}]") for i, s in enumerate(steps))

    def node(self, s: workflow_pb2.StepDefinition, where: str) -> engine.Node:
        self.count += 1
        if self.count > MAX_NODES:
            raise InvalidArgument(f"{where}: a definition has at most {MAX_NODES} steps")
        check_name(s.name, f"{where}.name")
        if "/" in s.name:
            raise InvalidArgument(f"{where}.name: must not contain '/' (paths use it)")
        if s.name in self.names:
            raise InvalidArgument(f"{where}.name: duplicate step name {s.name!r}")
        self.names.add(s.name)
        kinds = [k for k in _STEP_KINDS if _is_set(s, k)]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise InvalidArgument(
                f"{where}: set exactly one of worker, workflow, parallel, map, condition, "
                f"wait_for_signal and sleep (found: {found})"
            )
        kind = kinds[0]
        if kind in ("worker", "workflow"):
            return self.step(s, where)
        for name in _LEAF_ONLY:
            if _is_set(s, name):
                raise InvalidArgument(f"{where}.{name}: only a worker or workflow step has one")
        match kind:
            case "parallel":
                return self.parallel(s, where)
            case "map":
                return self.map(s, where)
            case "condition":
                return self.condition(s, where)
            case "wait_for_signal":
                return self.wait(s, where)
        if not s.sleep.HasField("duration"):
            raise InvalidArgument(f"{where}.sleep.duration: required")
        duration = s.sleep.duration.ToMilliseconds()
        if not 0 < duration <= MAX_TIMEOUT_MS:
            raise InvalidArgument(f"{where}.sleep.duration: must be positive and at most 365 days")
        return engine.SleepSpec(s.name, duration)

    def step(self, s: workflow_pb2.StepDefinition, where: str) -> engine.StepSpec:
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
        timeout = s.timeout.ToMilliseconds() if s.HasField("timeout") else self.default_timeout_ms
        if not 0 < timeout <= MAX_TIMEOUT_MS:
            raise InvalidArgument(f"{where}.timeout: must be positive and at most 365 days")
        heartbeat = s.heartbeat_timeout.ToMilliseconds() if s.HasField("heartbeat_timeout") else 0
        if heartbeat > MAX_TIMEOUT_MS:
            raise InvalidArgument(f"{where}.heartbeat_timeout: must be at most 365 days")
        if heartbeat < 0:
            raise InvalidArgument(f"{where}.heartbeat_timeout: must not be negative")
        return engine.StepSpec(
            name=s.name,
            worker=s.worker,
            compensation=s.compensation,
            retry=_retry_from_proto(s.retry_policy, f"{where}.retry_policy"),
            compensation_retry=(
                _retry_from_proto(s.compensation_retry_policy, f"{where}.compensation_retry_policy")
                if s.HasField("compensation_retry_policy")
                else None
            ),
            timeout_ms=timeout,
            heartbeat_timeout_ms=heartbeat,
            workflow=s.workflow,
            workflow_version=s.workflow_version,
            estimate=usage_from_proto(s.usage_estimate, f"{where}.usage_estimate")
            or engine.Usage(),
            rate_limits=_limit_keys_from_proto(s, where),
        )

    def parallel(self, s: workflow_pb2.StepDefinition, where: str) -> engine.ParallelSpec:
        p = s.parallel
        if not p.branches:
            raise InvalidArgument(f"{where}.parallel.branches: at least one branch")
        seen: set[str] = set()
        branches = []
        for i, b in enumerate(p.branches):
            at = f"{where}.parallel.branches[{i}]"
            check_name(b.name, f"{at}.name")
            if "/" in b.name:
                raise InvalidArgument(f"{at}.name: must not contain '/' (paths use it)")
            if b.name in seen:
                raise InvalidArgument(f"{at}.name: duplicate branch name {b.name!r}")
            seen.add(b.name)
            if not b.steps:
                raise InvalidArgument(f"{at}.steps: a branch needs at least one step")
            branches.append(engine.Branch(b.name, self.sequence(b.steps, f"{at}.steps")))
        policy = p.failure_policy
        if policy not in _PARALLEL_POLICIES:
            raise InvalidArgument(f"{where}.parallel.failure_policy: unknown value {policy}")
        return engine.ParallelSpec(s.name, tuple(branches), _PARALLEL_POLICIES[policy])

    def map(self, s: workflow_pb2.StepDefinition, where: str) -> engine.MapSpec:
        m = s.map
        _check_expression(m.items, f"{where}.map.items")
        if not m.HasField("step"):
            raise InvalidArgument(f"{where}.map.step: required (a worker or workflow step)")
        body = self.node(m.step, f"{where}.map.step")
        if not isinstance(body, engine.StepSpec):
            raise InvalidArgument(f"{where}.map.step: must be a worker or workflow step")
        if not 0 <= m.max_concurrency <= MAX_MAP_CONCURRENCY:
            raise InvalidArgument(
                f"{where}.map.max_concurrency: must be between 0 and {MAX_MAP_CONCURRENCY} "
                f"(0 means {DEFAULT_MAP_CONCURRENCY})"
            )
        return engine.MapSpec(s.name, m.items, body, m.max_concurrency or DEFAULT_MAP_CONCURRENCY)

    def condition(self, s: workflow_pb2.StepDefinition, where: str) -> engine.ConditionSpec:
        c = s.condition
        if not c.cases:
            raise InvalidArgument(f"{where}.condition.cases: at least one case")
        if c.switch:
            _check_expression(c.switch, f"{where}.condition.switch")
        cases = []
        for i, case in enumerate(c.cases):
            at = f"{where}.condition.cases[{i}]"
            equals = None
            if c.switch:
                if case.when:
                    raise InvalidArgument(f"{at}.when: a switch's cases use equals, not when")
                if not case.HasField("equals"):
                    raise InvalidArgument(f"{at}.equals: required in a switch")
                equals = json_format.MessageToDict(case.equals)
            else:
                if case.HasField("equals"):
                    raise InvalidArgument(f"{at}.equals: only with condition.switch")
                _check_expression(case.when, f"{at}.when")
            cases.append(engine.Case(self.sequence(case.steps, f"{at}.steps"), case.when, equals))
        otherwise = self.sequence(c.otherwise, f"{where}.condition.otherwise")
        return engine.ConditionSpec(s.name, tuple(cases), otherwise, c.switch)

    def wait(self, s: workflow_pb2.StepDefinition, where: str) -> engine.WaitSpec:
        w = s.wait_for_signal
        check_name(w.signal, f"{where}.wait_for_signal.signal")
        timeout = w.timeout.ToMilliseconds() if w.HasField("timeout") else 0
        if w.HasField("timeout") and not 0 < timeout <= MAX_TIMEOUT_MS:
            raise InvalidArgument(
                f"{where}.wait_for_signal.timeout: must be positive and at most 365 days"
            )
        if w.on_timeout and not w.continue_on_timeout:
            raise InvalidArgument(f"{where}.wait_for_signal.on_timeout: needs continue_on_timeout")
        if w.continue_on_timeout and not timeout:
            raise InvalidArgument(f"{where}.wait_for_signal.continue_on_timeout: needs a timeout")
        on_timeout = (
            self.sequence(w.on_timeout, f"{where}.wait_for_signal.on_timeout")
            if w.continue_on_timeout
            else None
        )
        return engine.WaitSpec(s.name, w.signal, timeout, on_timeout, w.approval)


_PARALLEL_POLICIES = {
    workflow_pb2.PARALLEL_FAILURE_POLICY_UNSPECIFIED: True,
    workflow_pb2.PARALLEL_FAILURE_POLICY_FAIL_FAST: True,
    workflow_pb2.PARALLEL_FAILURE_POLICY_WAIT_ALL: False,
}


def _is_set(s: workflow_pb2.StepDefinition, name: str) -> bool:
    value = getattr(s, name)
    if isinstance(value, str) or name == "rate_limits":  # no presence: set when not empty
        return bool(value)
    return s.HasField(name)


MAX_STEP_LIMITS = 8


def _limit_keys_from_proto(
    s: workflow_pb2.StepDefinition, where: str
) -> tuple[engine.LimitKey, ...]:
    if not s.rate_limits:
        return ()
    if s.workflow:
        raise InvalidArgument(f"{where}.rate_limits: not supported on a sub-workflow step")
    if len(s.rate_limits) > MAX_STEP_LIMITS:
        raise InvalidArgument(f"{where}.rate_limits: at most {MAX_STEP_LIMITS}")
    keys = []
    for i, k in enumerate(s.rate_limits):
        at = f"{where}.rate_limits[{i}]"
        if bool(k.key) == bool(k.key_expression):
            raise InvalidArgument(f"{at}: set exactly one of key and key_expression")
        if k.key:
            limits.check_key(k.key, f"{at}.key", prefix=False)
        else:
            _check_expression(k.key_expression, f"{at}.key_expression")
        keys.append(engine.LimitKey(k.key, k.key_expression))
    return tuple(keys)


def _check_expression(source: str, field: str) -> None:
    try:
        expressions.check(source)
    except expressions.ExpressionError as exc:
        raise InvalidArgument(f"{field}: {exc}") from None


def spec_to_proto(spec: engine.WorkflowSpec) -> workflow_pb2.WorkflowDefinition:
    return workflow_pb2.WorkflowDefinition(
        name=spec.name,
        version=spec.version,
        steps=[_node_to_proto(n) for n in spec.steps],
        description=spec.description,
        budget=budget_to_proto(spec.budget),
    )


def _node_to_proto(n: engine.Node) -> workflow_pb2.StepDefinition:
    step = workflow_pb2.StepDefinition(name=n.name)
    match n:
        case engine.StepSpec():
            step.worker = n.worker
            step.compensation = n.compensation
            step.retry_policy.CopyFrom(_retry_to_proto(n.retry))
            step.timeout.CopyFrom(duration(n.timeout_ms))
            step.workflow = n.workflow
            step.workflow_version = n.workflow_version
            if n.compensation_retry is not None:
                step.compensation_retry_policy.CopyFrom(_retry_to_proto(n.compensation_retry))
            if n.heartbeat_timeout_ms:
                step.heartbeat_timeout.CopyFrom(duration(n.heartbeat_timeout_ms))
            estimate = usage_to_proto(n.estimate)
            if estimate is not None:
                step.usage_estimate.CopyFrom(estimate)
            step.rate_limits.extend(
                limits_pb2.RateLimitKey(key=k.key, key_expression=k.expression)
                for k in n.rate_limits
            )
        case engine.ParallelSpec():
            step.parallel.failure_policy = (
                workflow_pb2.PARALLEL_FAILURE_POLICY_FAIL_FAST
                if n.fail_fast
                else workflow_pb2.PARALLEL_FAILURE_POLICY_WAIT_ALL
            )
            for b in n.branches:
                step.parallel.branches.add(name=b.name).steps.extend(
                    _node_to_proto(x) for x in b.steps
                )
        case engine.MapSpec():
            step.map.items = n.items
            step.map.step.CopyFrom(_node_to_proto(n.body))
            step.map.max_concurrency = n.max_concurrency
        case engine.ConditionSpec():
            step.condition.switch = n.switch
            for c in n.cases:
                case = step.condition.cases.add(when=c.when)
                if n.switch:
                    json_format.ParseDict(c.equals, case.equals)
                case.steps.extend(_node_to_proto(x) for x in c.steps)
            step.condition.otherwise.extend(_node_to_proto(x) for x in n.otherwise)
        case engine.WaitSpec():
            w = step.wait_for_signal
            w.signal = n.signal
            w.approval = n.approval
            if n.timeout_ms:
                w.timeout.CopyFrom(duration(n.timeout_ms))
            if n.on_timeout is not None:
                w.continue_on_timeout = True
                w.on_timeout.extend(_node_to_proto(x) for x in n.on_timeout)
        case engine.SleepSpec():
            step.sleep.duration.CopyFrom(duration(n.duration_ms))
    return step


# -- failures, status, events ---------------------------------------------------


FAILURE_KIND_TO_PROTO = {
    FailureKind.APPLICATION: common_pb2.FAILURE_KIND_APPLICATION,
    FailureKind.TIMEOUT: common_pb2.FAILURE_KIND_TIMEOUT,
    FailureKind.HEARTBEAT_TIMEOUT: common_pb2.FAILURE_KIND_HEARTBEAT_TIMEOUT,
    FailureKind.WORKER_LOST: common_pb2.FAILURE_KIND_WORKER_LOST,
    FailureKind.CANCELLED: common_pb2.FAILURE_KIND_CANCELLED,
    FailureKind.INVALID_RESULT: common_pb2.FAILURE_KIND_INVALID_RESULT,
    FailureKind.COMPENSATION_FAILED: common_pb2.FAILURE_KIND_COMPENSATION_FAILED,
    FailureKind.CHILD_WORKFLOW_FAILED: common_pb2.FAILURE_KIND_CHILD_WORKFLOW_FAILED,
    FailureKind.BUDGET_EXCEEDED: common_pb2.FAILURE_KIND_BUDGET_EXCEEDED,
}
FAILURE_KIND_FROM_PROTO = {v: k for k, v in FAILURE_KIND_TO_PROTO.items()}


def failure_to_proto(f: engine.Failure | None) -> common_pb2.Failure | None:
    if f is None:
        return None
    return common_pb2.Failure(
        message=f.message,
        type=f.type,
        non_retryable=f.non_retryable,
        stack_trace=f.stack_trace,
        kind=FAILURE_KIND_TO_PROTO[f.kind],
        cause=failure_to_proto(f.cause),
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
    """A worker's failure as the server records it: UNSPECIFIED, unknown and
    server-only kinds become APPLICATION, each stack trace of the chain is
    trimmed, the chain is cut below `MAX_CAUSE_DEPTH` (docs/protocol.md)."""
    chain = _failure_chain_from_proto(f, engine_failures.MAX_CAUSE_DEPTH)
    return engine_failures.from_worker(chain)


def _failure_chain_from_proto(f: common_pb2.Failure, depth: int) -> engine.Failure:
    # Decoding stops at the depth limit, so a deep chain costs nothing more.
    cause = None
    if f.HasField("cause") and depth > 0:
        cause = _failure_chain_from_proto(f.cause, depth - 1)
    return engine.Failure(
        message=f.message or "worker failed",
        type=f.type or "Error",
        non_retryable=f.non_retryable,
        stack_trace=trim_stack_trace(f.stack_trace),
        kind=FAILURE_KIND_FROM_PROTO.get(f.kind, FailureKind.APPLICATION),
        cause=cause,
    )


def _node_kind(node: engine.Node) -> str:
    match node:
        case engine.StepSpec():
            return "workflow" if node.workflow else "step"
        case engine.ParallelSpec():
            return "parallel"
        case engine.MapSpec():
            return "map"
        case engine.ConditionSpec():
            return "condition"
        case engine.WaitSpec():
            return "wait"
        case engine.SleepSpec():
            return "sleep"


def _branch_label(node: engine.Node, rec: engine.NodeRecord) -> str:
    chose = rec.last_failure is None or rec.last_failure.type != EXPRESSION_ERROR
    if isinstance(node, engine.ConditionSpec) and rec.status not in (
        engine.StepStatus.PENDING, engine.StepStatus.SKIPPED
    ) and chose:  # fmt: skip
        return "otherwise" if rec.choice < 0 else f"case {rec.choice + 1}"
    if isinstance(node, engine.WaitSpec) and rec.choice == 1:
        return "timed out"
    return ""


def _step_info(
    ex: engine.Execution, key: str, name: str, kind: str, node: engine.Node
) -> workflow_pb2.StepInfo:
    rec = ex.node(key)
    info = workflow_pb2.StepInfo(
        name=name,
        status=_STEP_STATUS[rec.status],
        attempts=rec.attempts,
        last_failure=failure_to_proto(rec.last_failure),
        child_transaction_id=rec.child_transaction_id,
        path=ex.path_of(key),
        kind=kind,
        branch=_branch_label(node, rec),
        usage=usage_to_proto(ex.usage_by_step.get(ex.path_of(key))),
    )
    if rec.started_ms:
        info.started_at.CopyFrom(timestamp(rec.started_ms))
    if rec.finished_ms:
        info.finished_at.CopyFrom(timestamp(rec.finished_ms))
    return info


def step_infos(ex: engine.Execution) -> list[workflow_pb2.StepInfo]:
    """Every node of the definition, depth first; a map's items after its step."""
    infos = []
    for node_id, node in enumerate(ex.spec.nodes):
        key = str(node_id)
        parent = ex.spec.nodes[node_id - 1] if node_id else None
        if isinstance(parent, engine.MapSpec) and parent.body is node:
            for index in range(len(ex.node(node_id - 1).items or ())):
                infos.append(_step_info(ex, f"{key}.{index}", node.name, "item", node))
            continue
        infos.append(_step_info(ex, key, node.name, _node_kind(node), node))
    return infos


def waiting_signals(ex: engine.Execution) -> list[workflow_pb2.WaitingSignal]:
    """The waits of `ex` that wait for a signal now."""
    out: list[workflow_pb2.WaitingSignal] = []
    if not ex.spec.has_waits:
        return out
    for key, rec in ex.nodes.items():
        node = ex.spec_of(key)
        if (
            not isinstance(node, engine.WaitSpec)
            or rec.status is not engine.StepStatus.RUNNING
            or rec.choice == 1
        ):
            continue
        waiting = workflow_pb2.WaitingSignal(
            transaction_id=ex.transaction_id,
            workflow_name=ex.spec.name,
            path=ex.path_of(key),
            signal=node.signal,
            approval=node.approval,
            since=timestamp(rec.started_ms),
        )
        if node.timeout_ms:
            waiting.timeout_at.CopyFrom(timestamp(rec.started_ms + node.timeout_ms))
        out.append(waiting)
    return out


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
        steps=step_infos(ex),
        usage=usage_to_proto(engine.usage.total(ex)),
        created_at=timestamp(ex.created_ms),
        updated_at=timestamp(ex.updated_ms),
        revision=revision,
        parent_transaction_id=ex.parent_transaction_id,
        running_steps=list(ex.running_steps),
        waiting_signals=waiting_signals(ex),
    )
    if ex.completed_ms:
        status.completed_at.CopyFrom(timestamp(ex.completed_ms))
    if ex.start_at_ms:
        status.start_at.CopyFrom(timestamp(ex.start_at_ms))
    budget = budget_to_proto(ex.budget)
    if budget is not None:
        status.budget.CopyFrom(budget)
    return status


def usage_to_proto(u: engine.Usage | None) -> common_pb2.Usage | None:
    """The wire form of a usage sum; None (field unset) when nothing was reported."""
    if not u:
        return None
    return common_pb2.Usage(
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        model=",".join(u.models),
        cost_nano_usd=u.cost_nano_usd,
    )


def usage_from_proto(u: common_pb2.Usage, field: str) -> engine.Usage | None:
    """A reported usage (None when all zero); InvalidArgument naming the field."""
    for name in ("input_tokens", "output_tokens", "cost_nano_usd"):
        if getattr(u, name) < 0:
            raise InvalidArgument(f"{field}.{name}: must be >= 0, got {getattr(u, name)}")
    check_length(u.model, f"{field}.model", MAX_ID_LENGTH)
    used = engine.Usage(
        u.input_tokens, u.output_tokens, u.cost_nano_usd, (u.model,) if u.model else ()
    )
    return used or None


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
        cancel_reason=ex.cancel_reason,
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
                    path=entry.path,
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
                    path=entry.path,
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
                    path=entry.path,
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
                    path=entry.path,
                )
            )
        case engine.StatusChanged():
            event = status_event(ex, revision, now_ms)
            event.state = STATE_TO_PROTO[entry.state]
            event.current_step = entry.current_step
            return events_pb2.WorkflowEvent(status=event)
        case engine.NodeRecorded():
            return events_pb2.WorkflowEvent(
                node=events_pb2.NodeEvent(
                    transaction_id=tx,
                    path=entry.path,
                    what=entry.what,
                    details=wire.encode(entry.detail),
                    timestamp=ts,
                )
            )
        case engine.SignalRecorded():
            return events_pb2.WorkflowEvent(
                signal=events_pb2.SignalEvent(
                    transaction_id=tx,
                    signal=entry.name,
                    payload=wire.encode(entry.payload),
                    signal_id=entry.signal_id,
                    consumed_by=entry.consumed_by,
                    timestamp=ts,
                )
            )


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
    if effect.limit_keys:
        command.rate_limits.keys.extend(effect.limit_keys)
        command.rate_limits.tokens = effect.limit_tokens
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
