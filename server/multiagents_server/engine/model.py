"""Values the saga engine works on: definitions, executions, events, effects.

Everything here is a frozen dataclass of plain values, serialisable to JSON by
`multiagents_server.engine.codec`. Times are integer milliseconds since the
epoch, passed in by the caller: the engine never reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from multiagents_server.engine.failures import Failure as Failure  # re-exported

JsonObject = dict[str, Any]


class State(StrEnum):
    """Lifecycle state of one execution (the seed's six states)."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATED = "compensated"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset({State.COMPLETED, State.FAILED, State.COMPENSATED, State.CANCELLED})


class StepStatus(StrEnum):
    """State of one step inside an execution."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    CANCELLED = "cancelled"


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


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step of a workflow definition."""

    name: str
    worker: str
    compensation: str = ""
    retry: RetryPolicy = RetryPolicy()
    compensation_retry: RetryPolicy | None = None
    timeout_ms: int = 600_000
    heartbeat_timeout_ms: int = 0
    # A sub-workflow run instead of a worker (exactly one of worker/workflow).
    workflow: str = ""
    workflow_version: int = 0


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    """A named, versioned sequence of steps."""

    name: str
    version: int
    steps: tuple[StepSpec, ...]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Attempt:
    """The one outstanding attempt of an execution.

    `dispatched` is False while the attempt waits for its retry backoff.
    """

    kind: CommandKind
    step_index: int
    number: int
    dispatched: bool


@dataclass(frozen=True, slots=True)
class StepRecord:
    """Progress of one step."""

    status: StepStatus = StepStatus.PENDING
    attempts: int = 0
    compensation_attempts: int = 0
    last_failure: Failure | None = None
    child_transaction_id: str = ""


@dataclass(frozen=True, slots=True)
class Execution:
    """The whole state of one workflow execution."""

    transaction_id: str
    correlation_id: str
    spec: WorkflowSpec
    state: State
    input: JsonObject
    context: JsonObject
    step_results: dict[str, JsonObject]
    steps: tuple[StepRecord, ...]
    created_ms: int
    updated_ms: int
    current: Attempt | None = None
    compensation_queue: tuple[int, ...] = ()
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

    @property
    def current_step(self) -> str:
        """Name of the step being executed or compensated, or ''."""
        if self.current is None:
            return ""
        return self.spec.steps[self.current.step_index].name

    def command_id(self, attempt: Attempt) -> str:
        return command_id(self.transaction_id, attempt)


def child_transaction_id(transaction_id: str, attempt: Attempt) -> str:
    """Deterministic id of the sub-workflow started by an attempt (idempotent start)."""
    return f"{transaction_id}.{attempt.step_index}.{attempt.number}"


def command_id(transaction_id: str, attempt: Attempt) -> str:
    """Attempt-scoped id of a command: unique per (transaction, kind, step, attempt)."""
    kind = "x" if attempt.kind is CommandKind.EXECUTE else "c"
    return f"{transaction_id}:{kind}{attempt.step_index}:{attempt.number}"


# -- events: what happens to an execution ----------------------------------


@dataclass(frozen=True, slots=True)
class StepCompleted:
    """A worker answered `command_id` with a result."""

    command_id: str
    result: JsonObject


@dataclass(frozen=True, slots=True)
class StepFailed:
    """An attempt failed: reported by the worker, or the worker was lost."""

    command_id: str
    failure: Failure


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer scheduled by a `ScheduleTimer` effect is due."""

    timer_id: str


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """A client asked to cancel the execution."""

    reason: str = ""


Event = StepCompleted | StepFailed | TimerFired | CancelRequested


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


@dataclass(frozen=True, slots=True)
class ResultRecorded:
    """A step or compensation completed (ResultEvent)."""

    kind: CommandKind
    worker: str
    step: str
    command_id: str
    result: JsonObject


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


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """The state or current step changed (StatusEvent)."""

    state: State
    current_step: str


HistoryEntry = CommandRecorded | ResultRecorded | ErrorRecorded | StatusChanged


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
