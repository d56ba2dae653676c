"""Workflow definitions as data: `WorkflowBuilder` builds a `Workflow`, which
converts to the protobuf definition and to/from a JSON/YAML-friendly dict."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from google.protobuf import duration_pb2, json_format

from multiagents.v1 import common_pb2, limits_pb2, workflow_pb2
from multiagents.worker import WorkerFunction


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry of failed attempts: `max_attempts` in all, exponential backoff."""

    max_attempts: int = 3
    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    maximum_interval: float | None = None
    non_retryable_error_types: tuple[str, ...] = ()

    def to_proto(self) -> workflow_pb2.RetryPolicy:
        policy = workflow_pb2.RetryPolicy(
            maximum_attempts=self.max_attempts,
            initial_interval=_duration(self.initial_interval),
            backoff_coefficient=self.backoff_coefficient,
            non_retryable_error_types=list(self.non_retryable_error_types),
        )
        if self.maximum_interval is not None:
            policy.maximum_interval.CopyFrom(_duration(self.maximum_interval))
        return policy

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RetryPolicy:
        """From the JSON/YAML form; ValueError names unknown keys."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a mapping of {', '.join(_RETRY_KEYS)}")
        unknown = set(d) - set(_RETRY_KEYS)
        if unknown:
            raise ValueError(
                f"unknown keys {sorted(unknown)} (expected some of {', '.join(_RETRY_KEYS)})"
            )
        d = dict(d)
        if "non_retryable_error_types" in d:
            d["non_retryable_error_types"] = tuple(d["non_retryable_error_types"])
        return cls(**d)


_RETRY_KEYS = tuple(f.name for f in fields(RetryPolicy))

NANO_USD_PER_USD = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Budget:
    """What one execution may use in all; 0 (or None) is no limit. A step
    that would go over is not started: it fails (BudgetExceeded) and the
    workflow compensates."""

    max_tokens: int = 0
    max_cost_usd: float = 0.0

    def to_proto(self) -> common_pb2.Budget:
        return common_pb2.Budget(
            max_tokens=self.max_tokens,
            max_cost_nano_usd=round(self.max_cost_usd * NANO_USD_PER_USD),
        )


@dataclass(frozen=True, slots=True)
class Estimate:
    """What one attempt of a step is expected to use, reserved against the
    budget while it runs (its reported usage replaces it)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    def to_proto(self) -> common_pb2.Usage:
        return common_pb2.Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_nano_usd=round(self.cost_usd * NANO_USD_PER_USD),
        )


@dataclass(frozen=True, slots=True)
class LimitKey:
    """A shared limit (`Client.put_rate_limit`) a step takes part in: a
    literal `key`, or a CEL `expression` over the context that gives it,
    e.g. `LimitKey(expression='"tenant:" + context.customer_id')`. A plain
    string in `rate_limits` is a literal key."""

    key: str = ""
    expression: str = ""

    def to_proto(self) -> limits_pb2.RateLimitKey:
        return limits_pb2.RateLimitKey(key=self.key, key_expression=self.expression)


@dataclass(frozen=True, slots=True)
class Step:
    """One step: the worker that runs it and what undoes it."""

    name: str
    worker: str
    compensation: str | None = None
    retry: RetryPolicy | None = None
    timeout: float | None = None
    heartbeat_timeout: float | None = None
    compensation_retry: RetryPolicy | None = None
    # A sub-workflow run instead of a worker (then `worker` is "").
    workflow: str | None = None
    workflow_version: int = 0
    estimate: Estimate | None = None
    # Shared limits an attempt waits for: keys, or LimitKey expressions.
    rate_limits: tuple[str | LimitKey, ...] = ()

    def to_proto(self) -> workflow_pb2.StepDefinition:
        step = workflow_pb2.StepDefinition(
            name=self.name,
            worker=self.worker,
            compensation=self.compensation or "",
            workflow=self.workflow or "",
            workflow_version=self.workflow_version,
        )
        if self.retry is not None:
            step.retry_policy.CopyFrom(self.retry.to_proto())
        if self.compensation_retry is not None:
            step.compensation_retry_policy.CopyFrom(self.compensation_retry.to_proto())
        if self.timeout is not None:
            step.timeout.CopyFrom(_duration(self.timeout))
        if self.heartbeat_timeout is not None:
            step.heartbeat_timeout.CopyFrom(_duration(self.heartbeat_timeout))
        if self.estimate is not None:
            step.usage_estimate.CopyFrom(self.estimate.to_proto())
        step.rate_limits.extend(
            (LimitKey(k) if isinstance(k, str) else k).to_proto() for k in self.rate_limits
        )
        return step


@dataclass(frozen=True, slots=True)
class Branch:
    """A named sequence of steps in a parallel group; its result lands under its name."""

    name: str
    steps: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Parallel:
    """Branches run at once and joined (`fail_fast`: a failed branch cancels the others)."""

    name: str
    branches: tuple[Branch, ...]
    fail_fast: bool = True

    def to_proto(self) -> workflow_pb2.StepDefinition:
        policy = (
            workflow_pb2.PARALLEL_FAILURE_POLICY_FAIL_FAST
            if self.fail_fast
            else workflow_pb2.PARALLEL_FAILURE_POLICY_WAIT_ALL
        )
        step = workflow_pb2.StepDefinition(name=self.name)
        step.parallel.failure_policy = policy
        for b in self.branches:
            step.parallel.branches.add(name=b.name, steps=[n.to_proto() for n in b.steps])
        return step


@dataclass(frozen=True, slots=True)
class Map:
    """`step` once per item of the list `items` (a CEL expression, e.g.
    "context.documents"), at most `max_concurrency` at once."""

    name: str
    items: str
    step: Step
    max_concurrency: int = 10

    def to_proto(self) -> workflow_pb2.StepDefinition:
        step = workflow_pb2.StepDefinition(name=self.name)
        step.map.items = self.items
        step.map.step.CopyFrom(self.step.to_proto())
        step.map.max_concurrency = self.max_concurrency
        return step


@dataclass(frozen=True, slots=True)
class Case:
    """A condition's case: `when` (CEL, true/false), or `equals` in a switch."""

    steps: tuple[Node, ...]
    when: str = ""
    equals: Any = None


@dataclass(frozen=True, slots=True)
class Condition:
    """The steps of the first matching case run, else `otherwise`."""

    name: str
    cases: tuple[Case, ...]
    otherwise: tuple[Node, ...] = ()
    switch: str = ""

    def to_proto(self) -> workflow_pb2.StepDefinition:
        step = workflow_pb2.StepDefinition(name=self.name)
        step.condition.switch = self.switch
        for c in self.cases:
            case = step.condition.cases.add(when=c.when, steps=[n.to_proto() for n in c.steps])
            if self.switch:
                json_format.ParseDict(c.equals, case.equals)
        step.condition.otherwise.extend(n.to_proto() for n in self.otherwise)
        return step


@dataclass(frozen=True, slots=True)
class WaitForSignal:
    """Waits for a signal; `approval`: the payload says {"approved": bool}.
    `timeout` (seconds) fails the step, unless `on_timeout` steps are given
    (possibly none: `on_timeout=()`), which then run instead."""

    name: str
    signal: str
    timeout: float | None = None
    on_timeout: tuple[Node, ...] | None = None
    approval: bool = False

    def to_proto(self) -> workflow_pb2.StepDefinition:
        step = workflow_pb2.StepDefinition(name=self.name)
        w = step.wait_for_signal
        w.signal = self.signal
        w.approval = self.approval
        if self.timeout is not None:
            w.timeout.CopyFrom(_duration(self.timeout))
        if self.on_timeout is not None:
            w.continue_on_timeout = True
            w.on_timeout.extend(n.to_proto() for n in self.on_timeout)
        return step


@dataclass(frozen=True, slots=True)
class Sleep:
    """A durable timer of `seconds`."""

    name: str
    seconds: float

    def to_proto(self) -> workflow_pb2.StepDefinition:
        step = workflow_pb2.StepDefinition(name=self.name)
        step.sleep.duration.CopyFrom(_duration(self.seconds))
        return step


Node = Step | Parallel | Map | Condition | WaitForSignal | Sleep


def step(
    name: str,
    worker: str | WorkerFunction,
    compensation: str | WorkerFunction | None = None,
    *,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    heartbeat_timeout: float | None = None,
    compensation_retry: RetryPolicy | None = None,
    estimate: Estimate | None = None,
    rate_limits: Sequence[str | LimitKey] = (),
) -> Step:
    """A worker step, for a branch, a case or a map (`WorkflowBuilder.add_step` at the top).
    `rate_limits`: shared limits an attempt waits for (keys, or LimitKey
    expressions over the context); its `estimate`'s tokens count against
    token limits."""
    return Step(
        name=name,
        worker=_name(worker),
        compensation=None if compensation is None else _name(compensation),
        retry=retry,
        timeout=timeout,
        heartbeat_timeout=heartbeat_timeout,
        compensation_retry=compensation_retry,
        estimate=estimate,
        rate_limits=tuple(rate_limits),
    )


def branch(name: str, *steps: Node) -> Branch:
    """A parallel branch: `branch("legal", step("review", legal_agent))`."""
    return Branch(name, steps)


def case(when: str, *steps: Node) -> Case:
    """An if/else case: `case("context.score > 0.8", step("publish", publisher))`."""
    return Case(steps, when=when)


def case_equals(value: Any, *steps: Node) -> Case:
    """A switch case, taken when the switch expression equals `value`."""
    return Case(steps, equals=value)


def _name(worker: str | WorkerFunction) -> str:
    return worker.name if isinstance(worker, WorkerFunction) else worker


@dataclass(frozen=True, slots=True)
class Workflow:
    """A built workflow definition: name, version, steps."""

    name: str
    steps: tuple[Node, ...]
    version: int = 1
    description: str = ""
    workers: tuple[WorkerFunction, ...] = field(default=(), compare=False, repr=False)
    budget: Budget | None = None

    def to_proto(self) -> workflow_pb2.WorkflowDefinition:
        definition = workflow_pb2.WorkflowDefinition(
            name=self.name,
            version=self.version,
            description=self.description,
            steps=[s.to_proto() for s in self.steps],
        )
        if self.budget is not None:
            definition.budget.CopyFrom(self.budget.to_proto())
        return definition

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Workflow:
        """From the JSON/YAML form (docs/definition.schema.json): {name,
        version, steps: [...]}, a step being a worker step {name, worker,
        ...}, a sub-workflow {name, workflow, ...}, or one of {name,
        parallel}, {name, map}, {name, condition}, {name, wait_for_signal},
        {name, sleep}. ValueError names the offending place."""
        unknown = set(d) - {"name", "version", "description", "steps", "budget"}
        if unknown:
            raise ValueError(f"workflow: unknown keys {sorted(unknown)}")
        steps = _nodes(d.get("steps", []), "workflow.steps")
        if not steps:
            raise ValueError(f"workflow {d.get('name')!r} has no steps")
        _check_unique(steps)
        budget = None
        if "budget" in d:
            budget = Budget(
                **_mapping(d["budget"], "workflow.budget", {"max_tokens", "max_cost_usd"})
            )
        return Workflow(
            d["name"], steps, int(d.get("version", 1)), d.get("description", ""), budget=budget
        )


_STEP_KEYS = {"name", "worker", "compensation", "retry", "timeout", "heartbeat_timeout",
              "compensation_retry", "workflow", "workflow_version", "usage_estimate",
              "rate_limits"}  # fmt: skip
_KINDS = ("parallel", "map", "condition", "wait_for_signal", "sleep")


def _nodes(rows: Any, where: str) -> tuple[Node, ...]:
    if not isinstance(rows, list):
        raise ValueError(f"{where}: expected a list of steps")
    return tuple(_node(r, f"{where}[{i}]") for i, r in enumerate(rows))


def _mapping(value: Any, where: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping")
    extra = set(value) - allowed
    if extra:
        raise ValueError(f"{where}: unknown keys {sorted(extra)}")
    return value


def _node(s: Any, where: str) -> Node:
    kinds = [k for k in _KINDS if isinstance(s, dict) and k in s]
    if not kinds:
        return _step(_mapping(s, where, _STEP_KEYS), where)
    if len(kinds) > 1:
        raise ValueError(f"{where}: set one of {', '.join(_KINDS)}, not {' and '.join(kinds)}")
    kind = kinds[0]
    s = _mapping(s, where, {"name", kind})
    name, body, at = s.get("name", ""), s[kind], f"{where}.{kind}"
    match kind:
        case "parallel":
            body = _mapping(body, at, {"branches", "fail_fast"})
            branches = tuple(
                Branch(b.get("name", ""), _nodes(b.get("steps", []), f"{at}.branches[{i}].steps"))
                for i, b in enumerate(
                    _mapping(b, f"{at}.branches[{i}]", {"name", "steps"})
                    for i, b in enumerate(body.get("branches", []))
                )
            )
            return Parallel(name, branches, bool(body.get("fail_fast", True)))
        case "map":
            body = _mapping(body, at, {"items", "step", "max_concurrency"})
            inner = _node(body.get("step", {}), f"{at}.step")
            if not isinstance(inner, Step):
                raise ValueError(f"{at}.step: must be a worker or workflow step")
            return Map(name, body.get("items", ""), inner, int(body.get("max_concurrency", 10)))
        case "condition":
            body = _mapping(body, at, {"cases", "otherwise", "switch"})
            cases = []
            for i, c in enumerate(body.get("cases", [])):
                c = _mapping(c, f"{at}.cases[{i}]", {"when", "equals", "steps"})
                steps = _nodes(c.get("steps", []), f"{at}.cases[{i}].steps")
                cases.append(Case(steps, c.get("when", ""), c.get("equals")))
            otherwise = _nodes(body.get("otherwise", []), f"{at}.otherwise")
            return Condition(name, tuple(cases), otherwise, body.get("switch", ""))
        case "wait_for_signal":
            body = _mapping(body, at, {"signal", "timeout", "on_timeout", "approval"})
            on_timeout = body.get("on_timeout")
            return WaitForSignal(
                name,
                body.get("signal", ""),
                body.get("timeout"),
                None if on_timeout is None else _nodes(on_timeout, f"{at}.on_timeout"),
                bool(body.get("approval", False)),
            )
    if not isinstance(body, int | float) or isinstance(body, bool):
        raise ValueError(f"{at}: expected seconds (a number)")
    return Sleep(name, float(body))


def _step(s: dict[str, Any], where: str) -> Step:
    return Step(
        name=s.get("name", ""),
        worker=s.get("worker", ""),
        compensation=s.get("compensation"),
        retry=_retry(s, "retry", where),
        timeout=s.get("timeout"),
        heartbeat_timeout=s.get("heartbeat_timeout"),
        compensation_retry=_retry(s, "compensation_retry", where),
        workflow=s.get("workflow"),
        workflow_version=int(s.get("workflow_version", 0)),
        estimate=_estimate(s, where),
        rate_limits=_rate_limits(s, where),
    )


def _rate_limits(s: dict[str, Any], where: str) -> tuple[str | LimitKey, ...]:
    """`rate_limits`: keys (strings) or {key_expression: CEL} mappings."""
    rows = s.get("rate_limits", [])
    if not isinstance(rows, list):
        raise ValueError(f"{where}.rate_limits: expected a list")
    keys: list[str | LimitKey] = []
    for i, row in enumerate(rows):
        if isinstance(row, str):
            keys.append(row)
        else:
            row = _mapping(row, f"{where}.rate_limits[{i}]", {"key", "key_expression"})
            keys.append(LimitKey(row.get("key", ""), row.get("key_expression", "")))
    return tuple(keys)


def _estimate(s: dict[str, Any], where: str) -> Estimate | None:
    if "usage_estimate" not in s:
        return None
    keys = {"input_tokens", "output_tokens", "cost_usd"}
    return Estimate(**_mapping(s["usage_estimate"], f"{where}.usage_estimate", keys))


def _all_names(nodes: tuple[Node, ...]) -> list[str]:
    names = []
    for n in nodes:
        names.append(n.name)
        match n:
            case Parallel():
                for b in n.branches:
                    names += _all_names(b.steps)
            case Map():
                names.append(n.step.name)
            case Condition():
                for c in n.cases:
                    names += _all_names(c.steps)
                names += _all_names(n.otherwise)
            case WaitForSignal():
                names += _all_names(n.on_timeout or ())
    return names


def _check_unique(nodes: tuple[Node, ...]) -> None:
    seen: set[str] = set()
    for name in _all_names(nodes):
        if name in seen:
            raise ValueError(f"duplicate step name {name!r}")
        seen.add(name)


class WorkflowBuilder:
    """Builds a workflow step by step:

        WorkflowBuilder("order").add_step("reserve", "reserve_inventory",
                                          compensation="release_inventory").build()

    Workers may be given by name or as `@worker` functions. Timeouts are
    seconds. Beyond steps in a row: `add_parallel`, `add_map`,
    `add_condition`, `add_wait_for_signal`, `add_sleep` (docs/workflows.md).
    """

    def __init__(
        self, name: str, *, version: int = 1, description: str = "", budget: Budget | None = None
    ) -> None:
        self.name = name
        self.version = version
        self.description = description
        self.budget = budget
        self._steps: list[Node] = []
        self._workers: list[WorkerFunction] = []

    def add_step(
        self,
        name: str,
        worker: str | WorkerFunction,
        compensation: str | WorkerFunction | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        heartbeat_timeout: float | None = None,
        compensation_retry: RetryPolicy | None = None,
        estimate: Estimate | None = None,
        rate_limits: Sequence[str | LimitKey] = (),
    ) -> WorkflowBuilder:
        """Append a step; returns the builder for chaining. `rate_limits`:
        shared limits an attempt waits for (see `step`)."""
        self._keep_worker(worker)
        if compensation is not None:
            self._keep_worker(compensation)
        return self._add(
            step(
                name,
                worker,
                compensation,
                retry=retry,
                timeout=timeout,
                heartbeat_timeout=heartbeat_timeout,
                compensation_retry=compensation_retry,
                estimate=estimate,
                rate_limits=rate_limits,
            )
        )

    def add_workflow_step(
        self,
        name: str,
        workflow: str | Workflow,
        *,
        version: int = 0,
        compensation: str | WorkerFunction | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> WorkflowBuilder:
        """Append a step that runs another workflow as a sub-workflow.

        The step receives the child's final context as its result; a child
        that does not complete fails the step (and its retry policy decides).
        Cancelling the parent cancels the child. `version=0` means the latest
        version when the step starts.
        """
        if isinstance(workflow, Workflow):
            version = version or workflow.version
            workflow = workflow.name
        if compensation is not None:
            self._keep_worker(compensation)
        return self._add(
            Step(
                name=name,
                worker="",
                compensation=None if compensation is None else _name(compensation),
                retry=retry,
                timeout=timeout,
                workflow=workflow,
                workflow_version=version,
            )
        )

    def add_parallel(
        self, name: str, branches: list[Branch], *, fail_fast: bool = True
    ) -> WorkflowBuilder:
        """Run branches at once: `add_parallel("ask", [branch("a", step(...)), ...])`.
        The context gets {name: {branch: its results}}."""
        return self._add(Parallel(name, tuple(branches), fail_fast))

    def add_map(
        self, name: str, items: str, body: Step, *, max_concurrency: int = 10
    ) -> WorkflowBuilder:
        """Run `body` once per item of the list `items` (CEL, e.g.
        "context.documents"); each gets "item" and "index" in its context,
        and the context gets {name: [results in order]}."""
        return self._add(Map(name, items, body, max_concurrency))

    def add_condition(
        self,
        name: str,
        cases: list[Case],
        *,
        otherwise: list[Node] | None = None,
        switch: str = "",
    ) -> WorkflowBuilder:
        """Run the first matching case's steps, else `otherwise`."""
        return self._add(Condition(name, tuple(cases), tuple(otherwise or ()), switch))

    def add_wait_for_signal(
        self,
        name: str,
        signal: str,
        *,
        timeout: float | None = None,
        on_timeout: list[Node] | None = None,
        approval: bool = False,
    ) -> WorkflowBuilder:
        """Wait for `signal` (its payload lands under `name`)."""
        steps = None if on_timeout is None else tuple(on_timeout)
        return self._add(WaitForSignal(name, signal, timeout, steps, approval))

    def add_sleep(self, name: str, seconds: float) -> WorkflowBuilder:
        """Wait `seconds` (a durable timer)."""
        return self._add(Sleep(name, seconds))

    def _add(self, node: Node) -> WorkflowBuilder:
        names = set(_all_names(tuple(self._steps)))
        for name in _all_names((node,)):
            if name in names:
                raise ValueError(f"duplicate step name {name!r}")
            names.add(name)
        self._steps.append(node)
        return self

    def _keep_worker(self, worker: str | WorkerFunction) -> None:
        if isinstance(worker, WorkerFunction):
            self._workers.append(worker)

    def build(self) -> Workflow:
        if not self._steps:
            raise ValueError(f"workflow {self.name!r} has no steps")
        return Workflow(
            self.name,
            tuple(self._steps),
            self.version,
            self.description,
            tuple(self._workers),
            self.budget,
        )


def _retry(row: dict[str, Any], key: str, where: str) -> RetryPolicy | None:
    if key not in row:
        return None
    try:
        return RetryPolicy.from_dict(row[key])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}.{key}: {exc}") from None


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(round(seconds * 1000))
    return d
