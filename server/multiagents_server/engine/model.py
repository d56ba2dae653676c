"""Values the workflow engine works on: definitions, executions, events, effects.

Everything here is a frozen dataclass of plain values, serialisable to JSON by
`multiagents_server.engine.codec`. Times are integer milliseconds since the
epoch, passed in by the caller: the engine never reads a clock.

A definition is a tree (DESIGN.md §3a): a workflow is a sequence of nodes; a
node is a step (a worker, or a sub-workflow), a parallel group of branches
(each a sequence), a map of one step over a list, a condition choosing one
sequence, a wait for a signal, or a sleep. Every node has an id, its index
in a pre-order walk of the definition (so a sequence of plain steps numbers
them 0, 1, 2 as version 1 did), and a path of names (`fanout/legal/review`)
for people. One map item is the key `<id>.<item>`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from multiagents_server.engine.failures import Failure as Failure  # re-exported
from multiagents_server.engine.usage import NO_BUDGET, NO_USAGE, Budget, Usage

JsonObject = dict[str, Any]
_T = TypeVar("_T")


class State(StrEnum):
    """Lifecycle state of one execution."""

    PENDING = "pending"
    RUNNING = "running"
    # A step failed for good (or a cancel came): completed steps are being undone.
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATED = "compensated"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({State.COMPLETED, State.FAILED, State.COMPENSATED, State.CANCELLED})


class StepStatus(StrEnum):
    """State of one node (or map item) inside an execution."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    CANCELLED = "cancelled"
    # A condition's branch that was not taken, or a node after it.
    SKIPPED = "skipped"


class CommandKind(StrEnum):
    """Whether a command runs a step or undoes it."""

    EXECUTE = "execute"
    COMPENSATE = "compensate"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed attempts are retried: exponential backoff, bounded attempts."""

    max_attempts: int = 3
    initial_interval_ms: int = 1000
    backoff_coefficient: float = 2.0
    max_interval_ms: int = 100_000
    non_retryable_error_types: tuple[str, ...] = ()

    def backoff_ms(self, failed_attempt: int) -> int:
        """Delay before the attempt that follows `failed_attempt` (1-based),
        capped by `max_interval_ms`; computed in logarithms first, so a large
        attempt number or coefficient cannot overflow."""
        initial, cap = self.initial_interval_ms, self.max_interval_ms
        if initial <= 0:
            return 0
        if initial >= cap:
            return cap
        exponent = failed_attempt - 1
        if exponent <= 0 or self.backoff_coefficient <= 1:
            return initial
        if exponent * math.log(self.backoff_coefficient) >= math.log(cap / initial):
            return cap
        return int(min(initial * self.backoff_coefficient**exponent, cap))


# -- the definition tree --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LimitKey:
    """A shared limit a step takes part in: a literal `key`, or a CEL
    `expression` over the context giving it (exactly one is set)."""

    key: str = ""
    expression: str = ""


@dataclass(frozen=True, slots=True)
class StepSpec:
    """A step run by a worker, or a sub-workflow (exactly one of worker/workflow)."""

    name: str
    worker: str
    compensation: str = ""
    retry: RetryPolicy = RetryPolicy()
    compensation_retry: RetryPolicy | None = None
    timeout_ms: int = 600_000
    heartbeat_timeout_ms: int = 0
    workflow: str = ""
    workflow_version: int = 0
    # Reserved against the execution's budget while an attempt runs (its
    # reported usage replaces it when the answer comes).
    estimate: Usage = NO_USAGE
    # Shared limits an attempt of the step (not its compensation) waits for.
    rate_limits: tuple[LimitKey, ...] = ()


@dataclass(frozen=True, slots=True)
class Branch:
    """A named sequence of nodes; a parallel branch's result lands under its name."""

    name: str
    steps: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class ParallelSpec:
    """Branches run at once, joined when all are done.

    `fail_fast`: a failed branch cancels the others at once; else the group
    waits for every branch, then fails. Result: {branch name: what the
    branch's steps returned, merged}.
    """

    name: str
    branches: tuple[Branch, ...]
    fail_fast: bool = True


@dataclass(frozen=True, slots=True)
class MapSpec:
    """`body` once per item of the list that `items` (CEL) evaluates to, at
    most `max_concurrency` at once. Each item's context is the enclosing one
    plus `item` and `index`; the result is {name: [result of each item, in
    order]}."""

    name: str
    items: str
    body: StepSpec
    max_concurrency: int = 10


@dataclass(frozen=True, slots=True)
class Case:
    """One case of a condition: `when` (CEL, boolean) in the if/else form, or
    `equals` (a JSON value compared with the switch value) in the switch form."""

    steps: tuple[Node, ...]
    when: str = ""
    equals: Any = None


@dataclass(frozen=True, slots=True)
class ConditionSpec:
    """Runs the steps of the first matching case, else `otherwise` (may be
    empty). With `switch` set (CEL), cases match by `equals`."""

    name: str
    cases: tuple[Case, ...]
    otherwise: tuple[Node, ...] = ()
    switch: str = ""


@dataclass(frozen=True, slots=True)
class WaitSpec:
    """Waits for the signal `signal`; its payload is the node's result.

    `timeout_ms` 0 waits for ever. On timeout the node fails (SignalTimeout),
    unless `on_timeout` is set: those steps run instead. With `approval` the
    payload must say {"approved": true|false}; false fails the node
    (Rejected), so the workflow compensates.
    """

    name: str
    signal: str
    timeout_ms: int = 0
    on_timeout: tuple[Node, ...] | None = None
    approval: bool = False


@dataclass(frozen=True, slots=True)
class SleepSpec:
    """A durable timer: the node completes `duration_ms` after it starts."""

    name: str
    duration_ms: int


Node = StepSpec | ParallelSpec | MapSpec | ConditionSpec | WaitSpec | SleepSpec


def children(node: Node) -> Iterator[Node]:
    """The nodes directly inside `node`, in pre-order."""
    match node:
        case ParallelSpec():
            for b in node.branches:
                yield from b.steps
        case MapSpec():
            yield node.body
        case ConditionSpec():
            for c in node.cases:
                yield from c.steps
            yield from node.otherwise
        case WaitSpec():
            yield from node.on_timeout or ()
        case _:
            return


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    """A named, versioned definition: a sequence of nodes."""

    name: str
    version: int
    steps: tuple[Node, ...]
    description: str = ""
    # What one execution may use in all (tokens, cost); none by default.
    budget: Budget = NO_BUDGET
    # Filled in __post_init__, by node id: the node, its path of names, and
    # the id after its subtree (ids of a subtree are contiguous).
    nodes: tuple[Node, ...] = field(default=(), compare=False, repr=False)
    paths: tuple[str, ...] = field(default=(), compare=False, repr=False)
    ends: tuple[int, ...] = field(default=(), compare=False, repr=False)
    _ids: dict[int, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        nodes: list[Node] = []
        paths: list[str] = []
        ends: list[int] = []

        def walk(seq: tuple[Node, ...], prefix: str) -> None:
            for n in seq:
                index = len(nodes)
                nodes.append(n)
                ends.append(0)
                path = prefix + n.name
                paths.append(path)
                if isinstance(n, ParallelSpec):
                    for b in n.branches:
                        walk(b.steps, f"{path}/{b.name}/")
                elif isinstance(n, MapSpec):
                    nodes.append(n.body)
                    paths.append(f"{path}/*")
                    ends.append(len(nodes))
                else:
                    walk(tuple(children(n)), f"{path}/")
                ends[index] = len(nodes)

        walk(self.steps, "")
        object.__setattr__(self, "nodes", tuple(nodes))
        object.__setattr__(self, "paths", tuple(paths))
        object.__setattr__(self, "ends", tuple(ends))
        self._ids.update({id(n): i for i, n in enumerate(nodes)})

    @property
    def has_waits(self) -> bool:
        """Whether any node waits for a signal (most definitions: none)."""
        return any(isinstance(n, WaitSpec) for n in self.nodes)

    def id_of(self, node: Node) -> int:
        """The id of a node of this definition (by identity)."""
        return self._ids[id(node)]


# -- the execution --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """An outstanding attempt of one step (or map item).

    `dispatched` is False while the attempt waits for its retry backoff.
    """

    kind: CommandKind
    key: str
    number: int
    dispatched: bool


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """Progress of one node, or of one map item (key `<id>.<item>`)."""

    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    compensation_attempts: int = 0
    last_failure: Failure | None = None
    child_transaction_id: str = ""
    # A step's (or map item's, or wait's) result once completed.
    result: JsonObject | None = None
    # Condition: the case taken (-1: otherwise). Wait: 1 once it timed out.
    choice: int = -1
    # Map: the items, evaluated when it started.
    items: tuple[Any, ...] | None = None
    # Attempts made before the last resume (retry budgets restart there).
    retry_base: int = 0
    compensation_retry_base: int = 0
    # Order of completion among steps (compensation runs in reverse).
    completed_seq: int = 0
    started_ms: int = 0
    finished_ms: int = 0
    # Its stored (JSON) form once encoded, so the records a transition did
    # not change are not encoded again (codec; cleared when a copy changes).
    encoded: dict[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Signal:
    """A signal received and not consumed yet by a wait."""

    name: str
    payload: JsonObject
    signal_id: str = ""


@dataclass(frozen=True, slots=True)
class Execution:
    """The whole state of one workflow execution."""

    transaction_id: str
    correlation_id: str
    spec: WorkflowSpec
    state: State
    input: JsonObject
    # The workflow's context: input plus the results of its top-level nodes.
    context: JsonObject
    step_results: dict[str, Any]
    nodes: dict[str, NodeRecord]
    created_ms: int
    updated_ms: int
    # Outstanding attempts by node key.
    attempts: dict[str, Attempt] = field(default_factory=dict)
    compensation_queue: tuple[str, ...] = ()
    failure: Failure | None = None
    cancel_requested: bool = False
    # Why it is cancelled (set with cancel_requested).
    cancel_reason: str = ""
    requires_manual_intervention: bool = False
    completed_ms: int = 0
    request_fingerprint: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    # Set when this execution is a sub-workflow step of another one.
    parent_transaction_id: str = ""
    parent_command_id: str = ""
    # Signals received before a wait took them; ids of every signal taken.
    signals: tuple[Signal, ...] = ()
    signal_ids: dict[str, str] = field(default_factory=dict)
    completions: int = 0
    start_at_ms: int = 0
    # Tokens and cost reported by the answers, by step path (engine.usage).
    usage_by_step: dict[str, Usage] = field(default_factory=dict)
    # The definition's budget, or the one given at submit.
    budget: Budget = NO_BUDGET

    def node(self, key: str | int) -> NodeRecord:
        return self.nodes.get(str(key), PENDING_RECORD)

    def spec_of(self, key: str) -> Node:
        return self.spec.nodes[int(key.partition(".")[0])]

    def path_of(self, key: str) -> str:
        """The path of names of a node key (`fanout/legal/review`, `each/3`)."""
        node_id, _, item = key.partition(".")
        path = self.spec.paths[int(node_id)]
        return path.removesuffix("*") + item if item else path

    @property
    def current_step(self) -> str:
        """Path of the first outstanding attempt's step, or ''."""
        for key in self.attempts:
            return self.path_of(key)
        return ""

    @property
    def running_steps(self) -> tuple[str, ...]:
        return tuple(self.path_of(k) for k in self.attempts)

    @property
    def waiting_for(self) -> tuple[tuple[str, str], ...]:
        """(path, signal name) of every wait node waiting now."""
        out = []
        for key, rec in self.nodes.items():
            node = self.spec_of(key)
            if isinstance(node, WaitSpec) and rec.status is StepStatus.RUNNING and rec.choice != 1:
                out.append((self.path_of(key), node.signal))
        return tuple(out)

    def command_id(self, attempt: Attempt) -> str:
        return command_id(self.transaction_id, attempt)


# The record of a node that has not started (shared: records are only
# changed on copies).
PENDING_RECORD = NodeRecord()


def evolve(obj: _T, **changes: Any) -> _T:
    """`dataclasses.replace` for the engine's slotted records, without its
    per-call field introspection (the engine replaces records on every event;
    replace() was a quarter of a step's engine time). No __post_init__ runs:
    only for records that have none (Execution, NodeRecord)."""
    new = object.__new__(type(obj))
    for name in type(obj).__slots__:  # type: ignore[attr-defined]
        object.__setattr__(new, name, changes[name] if name in changes else getattr(obj, name))
    return new


def child_transaction_id(transaction_id: str, attempt: Attempt) -> str:
    """Deterministic id of the sub-workflow started by an attempt (idempotent start)."""
    return f"{transaction_id}.{attempt.key}.{attempt.number}"


def command_id(transaction_id: str, attempt: Attempt) -> str:
    """Attempt-scoped id of a command: unique per (transaction, kind, node, attempt)."""
    kind = "x" if attempt.kind is CommandKind.EXECUTE else "c"
    return f"{transaction_id}:{kind}{attempt.key}:{attempt.number}"


def parse_command_id(command: str) -> tuple[str, CommandKind, str, int] | None:
    """(transaction id, kind, node key, attempt) of a command id, or None."""
    tx, sep, rest = command.rpartition(":")
    tx, sep2, step = tx.rpartition(":")
    if not sep or not sep2 or not rest.isdigit() or step[:1] not in ("x", "c"):
        return None
    kind = CommandKind.EXECUTE if step[0] == "x" else CommandKind.COMPENSATE
    return tx, kind, step[1:], int(rest)


# -- events: what happens to an execution ----------------------------------


@dataclass(frozen=True, slots=True)
class StepCompleted:
    """A worker answered `command_id` with a result."""

    command_id: str
    result: JsonObject
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class StepFailed:
    """An attempt failed: reported by the worker, or the worker was lost."""

    command_id: str
    failure: Failure
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer scheduled by a `ScheduleTimer` effect is due."""

    timer_id: str


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """A client asked to cancel the execution."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class SignalReceived:
    """A client sent a signal (`signal_id` deduplicates a resend)."""

    name: str
    payload: JsonObject
    signal_id: str = ""


@dataclass(frozen=True, slots=True)
class ResumeRequested:
    """A client asked to pick a failed execution up again."""


Event = StepCompleted | StepFailed | TimerFired | CancelRequested | SignalReceived | ResumeRequested


# -- effects: what the caller must do after storing the new state ----------


@dataclass(frozen=True, slots=True)
class DispatchCommand:
    """Queue a command for a worker."""

    command_id: str
    kind: CommandKind
    worker: str
    step: str
    attempt: int
    context: JsonObject
    deadline_ms: int
    heartbeat_timeout_ms: int
    # The shared limits the attempt waits for (resolved keys), and the
    # tokens it reserves in them.
    limit_keys: tuple[str, ...] = ()
    limit_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    """Deliver `TimerFired(timer_id)` to this execution at `due_ms`."""

    timer_id: str
    due_ms: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Forget a scheduled timer."""

    timer_id: str


@dataclass(frozen=True, slots=True)
class CancelCommand:
    """Tell the worker running `command_id` to stop."""

    command_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class StartChild:
    """Start a sub-workflow; its end answers `command_id` of the parent."""

    command_id: str
    workflow: str
    version: int
    child_transaction_id: str
    context: JsonObject


@dataclass(frozen=True, slots=True)
class CancelChild:
    """Cancel a sub-workflow that the parent no longer waits for."""

    child_transaction_id: str
    reason: str


Effect = DispatchCommand | ScheduleTimer | CancelTimer | CancelCommand | StartChild | CancelChild


# -- history: what is recorded (mirrors the seed's event types) ------------


@dataclass(frozen=True, slots=True)
class CommandRecorded:
    """A step (CommandEvent) or compensation (CompensationEvent) was dispatched."""

    kind: CommandKind
    worker: str
    step: str
    command_id: str
    attempt: int
    context: JsonObject
    child_transaction_id: str = ""
    path: str = ""


@dataclass(frozen=True, slots=True)
class ResultRecorded:
    """A step or compensation completed (ResultEvent)."""

    kind: CommandKind
    worker: str
    step: str
    command_id: str
    result: JsonObject
    path: str = ""
    # The usage a worker reported with the answer (added to the step's sum;
    # None for a sub-workflow step, whose usage its child's steps recorded).
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class ErrorRecorded:
    """An attempt failed (ErrorEvent)."""

    kind: CommandKind
    worker: str
    step: str
    command_id: str
    attempt: int
    failure: Failure
    will_retry: bool
    path: str = ""
    # The usage a worker reported with the answer (added to the step's sum;
    # None for a sub-workflow step, whose usage its child's steps recorded).
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """The state or current step changed (StatusEvent)."""

    state: State
    current_step: str


@dataclass(frozen=True, slots=True)
class NodeRecorded:
    """A construct did something worth a line of history: a condition chose
    a case, a wait got its signal or timed out, a sleep began or ended, a
    map or group started or finished (NodeEvent)."""

    path: str
    what: str
    detail: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SignalRecorded:
    """A signal arrived (SignalEvent); `consumed_by` is the wait that took it."""

    name: str
    payload: JsonObject
    signal_id: str
    consumed_by: str = ""


HistoryEntry = (
    CommandRecorded | ResultRecorded | ErrorRecorded | StatusChanged | NodeRecorded | SignalRecorded
)


@dataclass(frozen=True, slots=True)
class Transition:
    """The engine's answer: the new execution, what to do, what to record.

    `changed` is False when the event was stale or a duplicate; the caller
    then stores nothing.
    """

    execution: Execution
    effects: tuple[Effect, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    changed: bool = True


class InvalidTransition(Exception):
    """The event is not allowed in the execution's state (e.g. cancel when finished)."""


class SignalRefused(InvalidTransition):
    """A signal the execution cannot take (duplicate id with another payload)."""
