"""The saga state machine: pure functions from (execution, event, now) to a
`Transition` (new execution, effects, history).

Forward path: steps run in order; each result is merged into the context
(later keys win) and kept by step name. A failed attempt is retried with
backoff while its retry policy allows; a step that fails for good starts
compensation of the completed steps that have a compensation worker, newest
first. Cancellation abandons the running attempt and compensates the same way.
No I/O, no clock: `now_ms` is passed in.
"""

from __future__ import annotations

from dataclasses import replace

from multiagents_server.engine.failures import FailureKind
from multiagents_server.engine.model import (
    Attempt,
    CancelChild,
    CancelCommand,
    CancelRequested,
    CancelTimer,
    CommandKind,
    CommandRecorded,
    DispatchCommand,
    Effect,
    ErrorRecorded,
    Event,
    Execution,
    Failure,
    HistoryEntry,
    InvalidTransition,
    JsonObject,
    ResultRecorded,
    RetryPolicy,
    ScheduleTimer,
    StartChild,
    State,
    StatusChanged,
    StepCompleted,
    StepFailed,
    StepRecord,
    StepStatus,
    TimerFired,
    Transition,
    WorkflowSpec,
    child_transaction_id,
)

RETRY_TIMER = "retry"
TIMEOUT_TIMER = "timeout"
HEARTBEAT_TIMER = "heartbeat"

# Failure types the server itself reports.
STEP_TIMEOUT = "StepTimeout"
HEARTBEAT_TIMEOUT = "HeartbeatTimeout"
WORKER_LOST = "WorkerLost"
CANCELLED = "Cancelled"


def cancel_effect(ex: Execution, attempt: Attempt, reason: str) -> Effect:
    """How to stop a dispatched attempt: cancel its command, or its sub-workflow."""
    spec = ex.spec.steps[attempt.step_index]
    if attempt.kind is CommandKind.EXECUTE and spec.workflow:
        return CancelChild(child_transaction_id(ex.transaction_id, attempt), reason)
    return CancelCommand(ex.command_id(attempt), reason)


def timer_id(kind: str, command_id: str) -> str:
    """Id of a timer of `kind` that belongs to `command_id`."""
    return f"{kind}:{command_id}"


class _Builder:
    """Accumulates the new execution, effects and history of one transition."""

    def __init__(self, execution: Execution, now_ms: int) -> None:
        self.ex = execution
        self.now_ms = now_ms
        self.effects: list[Effect] = []
        self.history: list[HistoryEntry] = []

    def done(self) -> Transition:
        ex = replace(self.ex, updated_ms=self.now_ms)
        return Transition(ex, tuple(self.effects), tuple(self.history))

    def set_step(self, index: int, **changes: object) -> None:
        steps = list(self.ex.steps)
        steps[index] = replace(steps[index], **changes)  # type: ignore[arg-type]
        self.ex = replace(self.ex, steps=tuple(steps))

    def status(self, state: State) -> None:
        self.ex = replace(self.ex, state=state)
        if state.terminal:
            self.ex = replace(self.ex, current=None, completed_ms=self.now_ms)
        self.history.append(StatusChanged(state, self.ex.current_step))

    def dispatch(self, kind: CommandKind, step_index: int, number: int) -> None:
        ex = self.ex
        spec = ex.spec.steps[step_index]
        attempt = Attempt(kind, step_index, number, dispatched=True)
        cid = ex.command_id(attempt)
        worker = spec.worker if kind is CommandKind.EXECUTE else spec.compensation
        new_step = (
            ex.current is None
            or ex.current.step_index != step_index
            or (ex.current.kind is not kind)
        )
        self.ex = replace(ex, current=attempt)
        child = ""
        if kind is CommandKind.EXECUTE and spec.workflow:
            child = child_transaction_id(ex.transaction_id, attempt)
            worker = spec.workflow
            self.set_step(
                step_index, status=StepStatus.RUNNING, attempts=number, child_transaction_id=child
            )
            self.effects.append(
                StartChild(cid, spec.workflow, spec.workflow_version, child, ex.context)
            )
        else:
            if kind is CommandKind.EXECUTE:
                self.set_step(step_index, status=StepStatus.RUNNING, attempts=number)
            else:
                self.set_step(step_index, compensation_attempts=number)
            self.effects.append(
                DispatchCommand(
                    command_id=cid,
                    kind=kind,
                    worker=worker,
                    step=spec.name,
                    attempt=number,
                    context=ex.context,
                    deadline_ms=self.now_ms + spec.timeout_ms,
                    heartbeat_timeout_ms=spec.heartbeat_timeout_ms,
                )
            )
        self.effects.append(
            ScheduleTimer(timer_id(TIMEOUT_TIMER, cid), self.now_ms + spec.timeout_ms)
        )
        if spec.heartbeat_timeout_ms > 0:
            due = self.now_ms + spec.heartbeat_timeout_ms
            self.effects.append(ScheduleTimer(timer_id(HEARTBEAT_TIMER, cid), due))
        self.history.append(
            CommandRecorded(kind, worker, spec.name, cid, number, ex.context, child)
        )
        if new_step:
            self.history.append(StatusChanged(self.ex.state, spec.name))

    def stop_attempt_timers(self, attempt: Attempt) -> None:
        cid = self.ex.command_id(attempt)
        self.effects.append(CancelTimer(timer_id(TIMEOUT_TIMER, cid)))
        if self.ex.spec.steps[attempt.step_index].heartbeat_timeout_ms > 0:
            self.effects.append(CancelTimer(timer_id(HEARTBEAT_TIMER, cid)))

    def abandon_current(self, reason: str) -> None:
        """Stop the outstanding attempt, whether dispatched or waiting to retry."""
        attempt = self.ex.current
        if attempt is None:
            return
        cid = self.ex.command_id(attempt)
        if attempt.dispatched:
            self.stop_attempt_timers(attempt)
            self.effects.append(cancel_effect(self.ex, attempt, reason))
        else:
            self.effects.append(CancelTimer(timer_id(RETRY_TIMER, cid)))
        if attempt.kind is CommandKind.EXECUTE:
            self.set_step(attempt.step_index, status=StepStatus.CANCELLED)
        self.ex = replace(self.ex, current=None)

    def next_compensation_or_finish(self) -> None:
        queue = self.ex.compensation_queue
        if queue:
            self.ex = replace(self.ex, compensation_queue=queue[1:])
            self.dispatch(CommandKind.COMPENSATE, queue[0], 1)
            return
        self.ex = replace(self.ex, current=None)
        if self.ex.requires_manual_intervention:
            self.status(State.FAILED)
        elif self.ex.failure is None and self.ex.cancel_requested:
            self.status(State.CANCELLED)
        elif any(s.status is StepStatus.COMPENSATED for s in self.ex.steps):
            self.status(State.COMPENSATED)
        else:
            self.status(State.FAILED)

    def begin_compensation(self) -> None:
        """Queue the completed steps that have a compensation, newest first."""
        ex = self.ex
        queue = tuple(
            i
            for i in reversed(range(len(ex.steps)))
            if ex.steps[i].status is StepStatus.COMPLETED and ex.spec.steps[i].compensation
        )
        self.ex = replace(ex, current=None, compensation_queue=queue)
        if not queue:
            state = State.FAILED if ex.failure is not None else State.CANCELLED
            self.status(state)
            return
        self.next_compensation_or_finish()


def start(
    spec: WorkflowSpec,
    *,
    transaction_id: str,
    correlation_id: str,
    input: JsonObject,
    now_ms: int,
    request_fingerprint: str = "",
    metadata: dict[str, str] | None = None,
    parent_transaction_id: str = "",
    parent_command_id: str = "",
) -> Transition:
    """Create an execution and dispatch its first step."""
    if not spec.steps:
        raise InvalidTransition("a workflow needs at least one step")
    execution = Execution(
        transaction_id=transaction_id,
        correlation_id=correlation_id or transaction_id,
        spec=spec,
        state=State.PENDING,
        input=dict(input),
        context=dict(input),
        step_results={},
        steps=tuple(StepRecord() for _ in spec.steps),
        created_ms=now_ms,
        updated_ms=now_ms,
        request_fingerprint=request_fingerprint,
        metadata=dict(metadata or {}),
        parent_transaction_id=parent_transaction_id,
        parent_command_id=parent_command_id,
    )
    b = _Builder(execution, now_ms)
    b.history.append(StatusChanged(State.PENDING, ""))
    b.ex = replace(b.ex, state=State.RUNNING)
    b.dispatch(CommandKind.EXECUTE, 0, 1)
    return b.done()


def apply(execution: Execution, event: Event, now_ms: int) -> Transition:
    """Apply one event. Stale or duplicate events return `changed=False`.

    Raises `InvalidTransition` for a cancel of a finished execution.
    """
    match event:
        case StepCompleted():
            return _on_completed(execution, event, now_ms)
        case StepFailed():
            return _on_failed(execution, event.command_id, event.failure, now_ms)
        case TimerFired():
            return _on_timer(execution, event.timer_id, now_ms)
        case CancelRequested():
            return _on_cancel(execution, event, now_ms)


def _unchanged(execution: Execution) -> Transition:
    return Transition(execution, changed=False)


def _is_current(execution: Execution, command_id: str) -> bool:
    attempt = execution.current
    return (
        attempt is not None
        and attempt.dispatched
        and not execution.state.terminal
        and execution.command_id(attempt) == command_id
    )


def _on_completed(ex: Execution, event: StepCompleted, now_ms: int) -> Transition:
    if not _is_current(ex, event.command_id):
        return _unchanged(ex)
    attempt = ex.current
    assert attempt is not None
    b = _Builder(ex, now_ms)
    b.stop_attempt_timers(attempt)
    spec = ex.spec.steps[attempt.step_index]
    worker = spec.worker if attempt.kind is CommandKind.EXECUTE else spec.compensation
    b.history.append(
        ResultRecorded(attempt.kind, worker, spec.name, event.command_id, event.result)
    )
    if attempt.kind is CommandKind.EXECUTE:
        results = dict(ex.step_results)
        results[spec.name] = event.result
        b.ex = replace(b.ex, context={**ex.context, **event.result}, step_results=results)
        b.set_step(attempt.step_index, status=StepStatus.COMPLETED)
        following = attempt.step_index + 1
        if following < len(ex.spec.steps):
            b.dispatch(CommandKind.EXECUTE, following, 1)
        else:
            b.status(State.COMPLETED)
        return b.done()
    # A compensation may report that it could not undo the step without
    # raising (the seed's compensation pattern): that needs a person too.
    if event.result.get("requires_manual_intervention") is True:
        failure = Failure(
            message=str(event.result.get("error", "compensation reported failure")),
            type="CompensationFailed",
            non_retryable=True,
            kind=FailureKind.COMPENSATION_FAILED,
        )
        b.set_step(attempt.step_index, status=StepStatus.COMPENSATION_FAILED, last_failure=failure)
        b.ex = replace(b.ex, requires_manual_intervention=True)
    else:
        b.set_step(attempt.step_index, status=StepStatus.COMPENSATED)
    b.next_compensation_or_finish()
    return b.done()


def _retryable(policy: RetryPolicy, failure: Failure, attempt: int) -> bool:
    if failure.non_retryable or failure.type in policy.non_retryable_error_types:
        return False
    return attempt < policy.max_attempts


def _on_failed(ex: Execution, command_id: str, failure: Failure, now_ms: int) -> Transition:
    if not _is_current(ex, command_id):
        return _unchanged(ex)
    attempt = ex.current
    assert attempt is not None
    spec = ex.spec.steps[attempt.step_index]
    compensating = attempt.kind is CommandKind.COMPENSATE
    policy = (spec.compensation_retry or spec.retry) if compensating else spec.retry
    will_retry = _retryable(policy, failure, attempt.number)
    b = _Builder(ex, now_ms)
    b.stop_attempt_timers(attempt)
    worker = spec.compensation if compensating else spec.worker
    b.history.append(
        ErrorRecorded(
            attempt.kind, worker, spec.name, command_id, attempt.number, failure, will_retry
        )
    )
    b.set_step(attempt.step_index, last_failure=failure)
    if will_retry:
        following = Attempt(attempt.kind, attempt.step_index, attempt.number + 1, False)
        b.ex = replace(b.ex, current=following)
        due = now_ms + policy.backoff_ms(attempt.number)
        b.effects.append(ScheduleTimer(timer_id(RETRY_TIMER, ex.command_id(following)), due))
        return b.done()
    if compensating:
        b.set_step(attempt.step_index, status=StepStatus.COMPENSATION_FAILED)
        # A cancelled execution has no forward failure: record this one, so a
        # FAILED execution always says why.
        b.ex = replace(b.ex, requires_manual_intervention=True, failure=b.ex.failure or failure)
        b.next_compensation_or_finish()
    else:
        b.set_step(attempt.step_index, status=StepStatus.FAILED)
        b.ex = replace(b.ex, failure=failure)
        b.begin_compensation()
    return b.done()


def _on_timer(ex: Execution, timer: str, now_ms: int) -> Transition:
    kind, _, command_id = timer.partition(":")
    attempt = ex.current
    if attempt is None or ex.state.terminal or ex.command_id(attempt) != command_id:
        return _unchanged(ex)
    if kind == RETRY_TIMER and not attempt.dispatched:
        b = _Builder(ex, now_ms)
        b.dispatch(attempt.kind, attempt.step_index, attempt.number)
        return b.done()
    if kind in (TIMEOUT_TIMER, HEARTBEAT_TIMER) and attempt.dispatched:
        spec = ex.spec.steps[attempt.step_index]
        if kind == TIMEOUT_TIMER:
            failure = Failure(
                f"step {spec.name!r} timed out after {spec.timeout_ms} ms",
                STEP_TIMEOUT,
                kind=FailureKind.TIMEOUT,
            )
        else:
            limit = spec.heartbeat_timeout_ms
            failure = Failure(
                f"no heartbeat from step {spec.name!r} for {limit} ms",
                HEARTBEAT_TIMEOUT,
                kind=FailureKind.HEARTBEAT_TIMEOUT,
            )
        transition = _on_failed(ex, command_id, failure, now_ms)
        cancel = cancel_effect(ex, attempt, failure.message)
        return replace(transition, effects=(cancel, *transition.effects))
    return _unchanged(ex)


def _on_cancel(ex: Execution, event: CancelRequested, now_ms: int) -> Transition:
    if ex.state.terminal:
        raise InvalidTransition(f"workflow {ex.transaction_id} is already {ex.state.value}")
    if ex.cancel_requested:
        return _unchanged(ex)
    b = _Builder(ex, now_ms)
    reason = event.reason or "workflow cancelled"
    b.ex = replace(b.ex, cancel_requested=True, cancel_reason=reason)
    # The request itself, with its reason, is a StatusEvent in the history.
    b.history.append(StatusChanged(b.ex.state, b.ex.current_step))
    compensating = ex.failure is not None or (
        ex.current is not None and ex.current.kind is CommandKind.COMPENSATE
    )
    if compensating:
        # Compensation already runs; it finishes, and the failure decides the end state.
        return b.done()
    b.abandon_current(reason)
    b.begin_compensation()
    return b.done()
