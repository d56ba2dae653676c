"""The workflow state machine: pure functions from (execution, event, now) to
a `Transition` (new execution, effects, history).

After every event the engine walks the definition tree from the top
(`_Builder.advance`): a sequence runs its nodes in order, each node's result
merged into the context the next one receives; a parallel group walks all its
branches, a map keeps up to its concurrency of items running, a condition
walks the case it chose, a wait and a sleep hold a timer. Whatever the walk
reaches that has not started is started; whatever finished is joined. The
walk is idempotent, so every event handler only records what happened to one
step and lets the walk decide what follows.

A step that fails for good fails its sequence, which fails the enclosing
node, up to the workflow (a fail-fast group cancels its other branches on the
way). The workflow then compensates the completed steps that have a
compensation worker, newest completion first. Cancellation abandons every
running attempt and compensates the same way. No I/O, no clock: `now_ms` is
passed in.
"""

from __future__ import annotations

from typing import Any

from multiagents_server.engine import expressions, usage
from multiagents_server.engine.failures import FailureKind
from multiagents_server.engine.model import (
    PENDING_RECORD,
    Attempt,
    CancelChild,
    CancelCommand,
    CancelRequested,
    CancelTimer,
    CommandKind,
    CommandRecorded,
    ConditionSpec,
    DispatchCommand,
    Effect,
    ErrorRecorded,
    Event,
    Execution,
    Failure,
    HistoryEntry,
    InvalidTransition,
    JsonObject,
    MapSpec,
    Node,
    NodeRecord,
    NodeRecorded,
    ParallelSpec,
    ResultRecorded,
    ResumeRequested,
    RetryPolicy,
    ScheduleTimer,
    Signal,
    SignalReceived,
    SignalRecorded,
    SignalRefused,
    SleepSpec,
    StartChild,
    State,
    StatusChanged,
    StepCompleted,
    StepFailed,
    StepSpec,
    StepStatus,
    TimerFired,
    Transition,
    WaitSpec,
    WorkflowSpec,
    child_transaction_id,
    evolve,
    parse_command_id,
)

RETRY_TIMER = "retry"
TIMEOUT_TIMER = "timeout"
HEARTBEAT_TIMER = "heartbeat"
SLEEP_TIMER = "sleep"
WAIT_TIMER = "wait"
START_TIMER = "start"

# Failure types the server itself reports.
STEP_TIMEOUT = "StepTimeout"
HEARTBEAT_TIMEOUT = "HeartbeatTimeout"
SIGNAL_TIMEOUT = "SignalTimeout"
REJECTED = "Rejected"
EXPRESSION_ERROR = "ExpressionError"
BUDGET_EXCEEDED = "BudgetExceeded"

# The walk's verdict on a node or a sequence.
_DONE, _RUNNING, _FAILED, _STOPPED = "done", "running", "failed", "stopped"


def timer_id(kind: str, command_id: str) -> str:
    """Id of a timer of `kind` that belongs to `command_id` (or to a node key)."""
    return f"{kind}:{command_id}"


class _Builder:
    """Accumulates the new execution, effects and history of one transition."""

    def __init__(self, execution: Execution, now_ms: int) -> None:
        self.now_ms = now_ms
        self.effects: list[Effect] = []
        self.history: list[HistoryEntry] = []
        # The builder's own copy of the execution and of the records it
        # changes: updated in place (nobody else sees them until `done`).
        self.ex = evolve(execution)
        self.nodes = dict(execution.nodes)
        self._own: set[str] = set()
        self.attempts = dict(execution.attempts)
        self.step_results = dict(execution.step_results)

    def done(self) -> Transition:
        self.update(
            nodes=self.nodes,
            attempts=self.attempts,
            step_results=self.step_results,
            updated_ms=self.now_ms,
        )
        return Transition(self.ex, tuple(self.effects), tuple(self.history))

    def update(self, **changes: Any) -> None:
        """Change fields of the builder's own copy of the execution."""
        for name, value in changes.items():
            object.__setattr__(self.ex, name, value)

    # -- records -------------------------------------------------------------

    def rec(self, key: str) -> NodeRecord:
        return self.nodes.get(key) or PENDING_RECORD

    def set(self, key: str, **changes: Any) -> NodeRecord:
        """Change a node's record (copied the first time in this transition)."""
        if key not in self._own:
            self.nodes[key] = evolve(self.rec(key), encoded=None)
            self._own.add(key)
        record = self.nodes[key]
        for name, value in changes.items():
            object.__setattr__(record, name, value)
        return record

    def path(self, key: str) -> str:
        return self.ex.path_of(key)

    def status(self, state: State) -> None:
        self.update(state=state)
        if state.terminal:
            self.attempts.clear()
            self.update(completed_ms=self.now_ms)
        current = next((self.path(k) for k in self.attempts), "")
        self.history.append(StatusChanged(state, current))

    # -- attempts --------------------------------------------------------------

    def dispatch(
        self,
        kind: CommandKind,
        key: str,
        number: int,
        context: JsonObject,
        *,
        announce: bool = True,
    ) -> None:
        """Dispatch an attempt; `announce` records the new current step (not
        for a retry)."""
        spec = self.ex.spec_of(key)
        assert isinstance(spec, StepSpec)
        attempt = Attempt(kind, key, number, dispatched=True)
        cid = self.ex.command_id(attempt)
        worker = spec.worker if kind is CommandKind.EXECUTE else spec.compensation
        self.attempts[key] = attempt
        path = self.path(key)
        child = ""
        if kind is CommandKind.EXECUTE:
            changes: dict[str, Any] = {"status": StepStatus.RUNNING, "attempts": number}
            if not self.rec(key).started_ms:
                changes["started_ms"] = self.now_ms
            if spec.workflow:
                child = child_transaction_id(self.ex.transaction_id, attempt)
                worker = spec.workflow
                changes["child_transaction_id"] = child
            self.set(key, **changes)
        else:
            self.set(key, compensation_attempts=number)
        if child:
            self.effects.append(
                StartChild(cid, spec.workflow, spec.workflow_version, child, context)
            )
        else:
            self.effects.append(
                DispatchCommand(
                    command_id=cid,
                    kind=kind,
                    worker=worker,
                    step=spec.name,
                    attempt=number,
                    context=context,
                    deadline_ms=self.now_ms + spec.timeout_ms,
                    heartbeat_timeout_ms=spec.heartbeat_timeout_ms,
                    **_limits(spec, kind, context),
                )
            )
        self.effects.append(
            ScheduleTimer(timer_id(TIMEOUT_TIMER, cid), self.now_ms + spec.timeout_ms)
        )
        if spec.heartbeat_timeout_ms > 0:
            due = self.now_ms + spec.heartbeat_timeout_ms
            self.effects.append(ScheduleTimer(timer_id(HEARTBEAT_TIMER, cid), due))
        self.history.append(
            CommandRecorded(kind, worker, spec.name, cid, number, context, child, path)
        )
        if announce:
            self.history.append(StatusChanged(self.ex.state, path))

    def over_budget(self, key: str) -> Failure | None:
        """The failure of starting an attempt of `key` when the execution's
        budget does not cover what was used, what the running attempts have
        reserved and this step's estimate; None when it does."""
        budget = self.ex.budget
        if not budget:
            return None
        spent = usage.Usage()
        for used in self.ex.usage_by_step.values():
            spent += used
        for other in self.attempts.values():
            if other.key != key and other.kind is CommandKind.EXECUTE and other.dispatched:
                spent += _estimate(self.ex, other.key)
        over = budget.exceeded_by(spent + _estimate(self.ex, key))
        if not over:
            return None
        return Failure(
            f"step {self.path(key)!r} not started: {over}",
            BUDGET_EXCEEDED,
            non_retryable=True,
            kind=FailureKind.BUDGET_EXCEEDED,
        )

    def refusal(self, key: str, context: JsonObject) -> Failure | None:
        """Why an attempt of `key` may not start: over the budget, or a rate
        limit key that its expression cannot give on this context."""
        refused = self.over_budget(key)
        if refused is not None:
            return refused
        spec = self.ex.spec_of(key)
        if isinstance(spec, StepSpec) and spec.rate_limits:
            try:
                expressions.limit_keys(spec.rate_limits, context)
            except expressions.ExpressionError as exc:
                return self.expression_failure(key, exc)
        return None

    def fail(self, key: str, failure: Failure | None) -> None:
        """A node fails for good with `failure` (the walk takes it up)."""
        self.set(key, status=StepStatus.FAILED, last_failure=failure, finished_ms=self.now_ms)

    def expression_failure(self, key: str, exc: Exception) -> Failure:
        """A condition, map or limit key expression failed on the context."""
        return Failure(f"{self.path(key)}: {exc}", EXPRESSION_ERROR, non_retryable=True)

    def refuse(self, key: str, failure: Failure) -> None:
        """A step that may not start fails at once (without an attempt)."""
        self.attempts.pop(key, None)
        self.fail(key, failure)

    def stop_attempt_timers(self, attempt: Attempt) -> None:
        cid = self.ex.command_id(attempt)
        self.effects.append(CancelTimer(timer_id(TIMEOUT_TIMER, cid)))
        spec = self.ex.spec_of(attempt.key)
        if isinstance(spec, StepSpec) and spec.heartbeat_timeout_ms > 0:
            self.effects.append(CancelTimer(timer_id(HEARTBEAT_TIMER, cid)))

    def abandon(self, key: str, reason: str) -> None:
        """Stop the outstanding attempt of `key`, dispatched or waiting to retry."""
        attempt = self.attempts.pop(key)
        cid = self.ex.command_id(attempt)
        if attempt.dispatched:
            self.stop_attempt_timers(attempt)
            spec = self.ex.spec_of(key)
            if attempt.kind is CommandKind.EXECUTE and isinstance(spec, StepSpec) and spec.workflow:
                child = child_transaction_id(self.ex.transaction_id, attempt)
                self.effects.append(CancelChild(child, reason))
            else:
                self.effects.append(CancelCommand(cid, reason))
        else:
            self.effects.append(CancelTimer(timer_id(RETRY_TIMER, cid)))
        if attempt.kind is CommandKind.EXECUTE:
            self.set(key, status=StepStatus.CANCELLED, finished_ms=self.now_ms)

    def stop_subtree(self, first: int, end: int, reason: str) -> None:
        """Cancel everything running among node ids [first, end)."""
        for key in [k for k in self.attempts if first <= _node_id(k) < end]:
            self.abandon(key, reason)
        for key, rec in list(self.nodes.items()):
            if not first <= _node_id(key) < end or rec.status is not StepStatus.RUNNING:
                continue
            node = self.ex.spec_of(key)
            if isinstance(node, SleepSpec):
                self.effects.append(CancelTimer(timer_id(SLEEP_TIMER, key)))
            elif isinstance(node, WaitSpec) and node.timeout_ms and rec.choice != 1:
                self.effects.append(CancelTimer(timer_id(WAIT_TIMER, key)))
            self.set(key, status=StepStatus.CANCELLED, finished_ms=self.now_ms)

    # -- the walk ------------------------------------------------------------------

    def advance(self) -> None:
        """Start what is ready, join what finished; end or compensate the workflow."""
        if self.ex.state is not State.RUNNING:
            return
        verdict, delta, failure = self.sequence(self.ex.spec.steps, self.ex.input)
        self.update(context={**self.ex.input, **delta})
        if verdict == _DONE:
            self.status(State.COMPLETED)
        elif verdict == _FAILED:
            assert failure is not None
            self.update(failure=failure)
            self.stop_subtree(0, len(self.ex.spec.nodes), f"workflow failed: {failure.message}")
            self.begin_compensation()

    def sequence(
        self, steps: tuple[Node, ...], base: JsonObject
    ) -> tuple[str, JsonObject, Failure | None]:
        """Walk a sequence: (verdict, merged results of its finished prefix, failure)."""
        delta: JsonObject = {}
        for node in steps:
            verdict, failure = self.node(node, {**base, **delta} if delta else base)
            if verdict != _DONE:
                return verdict, delta, failure
            result = self.rec(str(self.ex.spec.id_of(node))).result
            if result:
                delta = {**delta, **result}
        return _DONE, delta, None

    def node(self, node: Node, context: JsonObject) -> tuple[str, Failure | None]:
        key = str(self.ex.spec.id_of(node))
        rec = self.rec(key)
        match rec.status:
            case StepStatus.COMPLETED | StepStatus.SKIPPED:
                return _DONE, None
            case StepStatus.FAILED:
                return _FAILED, rec.last_failure
            case StepStatus.CANCELLED:
                return _STOPPED, None
            case StepStatus.PENDING:
                if not self.start(node, key, context):
                    return _RUNNING, None
        return self.drive(node, key, context)

    def start(self, node: Node, key: str, context: JsonObject) -> bool:
        """Start a pending node; False when it waits for an event to go on."""
        self.set(key, status=StepStatus.RUNNING, started_ms=self.now_ms)
        match node:
            case StepSpec():
                refused = self.refusal(key, context)
                if refused is not None:
                    self.refuse(key, refused)
                    return True
                self.dispatch(CommandKind.EXECUTE, key, self.rec(key).attempts + 1, context)
                return False
            case SleepSpec():
                due = self.now_ms + node.duration_ms
                self.effects.append(ScheduleTimer(timer_id(SLEEP_TIMER, key), due))
                self.history.append(NodeRecorded(self.path(key), "sleeping", {"until_ms": due}))
                return False
            case WaitSpec():
                return self.start_wait(node, key)
            case ConditionSpec():
                return self.choose(node, key, context)
            case MapSpec():
                return self.start_map(node, key, context)
            case ParallelSpec():
                self.history.append(NodeRecorded(self.path(key), "started"))
                return True

    def start_wait(self, node: WaitSpec, key: str) -> bool:
        for signal in self.ex.signals:
            if signal.name == node.signal:
                rest = list(self.ex.signals)
                rest.remove(signal)
                self.update(signals=tuple(rest))
                self.take_signal(node, key, signal)
                return True
        if node.timeout_ms:
            due = self.now_ms + node.timeout_ms
            self.effects.append(ScheduleTimer(timer_id(WAIT_TIMER, key), due))
        self.history.append(NodeRecorded(self.path(key), "waiting", {"signal": node.signal}))
        return False

    def take_signal(self, node: WaitSpec, key: str, signal: Signal) -> None:
        """A running wait takes `signal`: done, or failed when it rejects an approval."""
        self.history.append(
            SignalRecorded(signal.name, signal.payload, signal.signal_id, self.path(key))
        )
        if node.approval and signal.payload.get("approved") is not True:
            failure = Failure(
                f"{self.path(key)}: rejected"
                + (f": {signal.payload['comment']}" if signal.payload.get("comment") else ""),
                REJECTED,
                non_retryable=True,
            )
            self.fail(key, failure)
            return
        self.finish(key, {node.name: signal.payload})

    def finish(self, key: str, result: JsonObject, *, compensable: bool = False) -> None:
        changes: dict[str, Any] = {}
        if compensable:
            self.update(completions=self.ex.completions + 1)
            changes["completed_seq"] = self.ex.completions
        self.set(
            key, status=StepStatus.COMPLETED, result=result, finished_ms=self.now_ms, **changes
        )

    def choose(self, node: ConditionSpec, key: str, context: JsonObject) -> bool:
        try:
            choice = expressions.choose(node, context)
        except expressions.ExpressionError as exc:
            self.fail(key, self.expression_failure(key, exc))
            return True
        self.set(key, choice=choice)
        self.history.append(NodeRecorded(self.path(key), "chose", {"case": choice}))
        # The nodes of the cases not taken are skipped, for those who look.
        for index, steps in enumerate((*(c.steps for c in node.cases), node.otherwise)):
            if index == choice or (choice < 0 and index == len(node.cases)):
                continue
            for skipped in steps:
                first = self.ex.spec.id_of(skipped)
                for i in range(first, self.ex.spec.ends[first]):
                    self.set(str(i), status=StepStatus.SKIPPED)
        return True

    def start_map(self, node: MapSpec, key: str, context: JsonObject) -> bool:
        try:
            items = expressions.items(node, context)
        except expressions.ExpressionError as exc:
            self.fail(key, self.expression_failure(key, exc))
            return True
        self.set(key, items=tuple(items))
        self.history.append(NodeRecorded(self.path(key), "started", {"items": len(items)}))
        return True

    def drive(self, node: Node, key: str, context: JsonObject) -> tuple[str, Failure | None]:
        """Walk a running node; join it when its parts are done."""
        rec = self.rec(key)
        if rec.status is StepStatus.FAILED:
            return _FAILED, rec.last_failure
        if rec.status is StepStatus.COMPLETED:
            return _DONE, None
        match node:
            case ConditionSpec():
                steps = node.otherwise if rec.choice < 0 else node.cases[rec.choice].steps
                return self.join_inline(key, steps, context)
            case WaitSpec() if rec.choice == 1:
                return self.join_inline(key, node.on_timeout or (), context)
            case ParallelSpec():
                return self.drive_parallel(node, key, context)
            case MapSpec():
                return self.drive_map(node, key, context)
        return _RUNNING, None

    def join_inline(
        self, key: str, steps: tuple[Node, ...], context: JsonObject
    ) -> tuple[str, Failure | None]:
        """A node that runs a sequence in its place (a condition's case)."""
        verdict, delta, failure = self.sequence(steps, context)
        if verdict == _DONE:
            self.finish(key, delta)
        elif verdict == _FAILED:
            self.fail(key, failure)
        return verdict, failure

    def drive_parallel(
        self, node: ParallelSpec, key: str, context: JsonObject
    ) -> tuple[str, Failure | None]:
        verdicts: list[str] = []
        results: JsonObject = {}
        failure: Failure | None = None
        for branch in node.branches:
            verdict, delta, branch_failure = self.sequence(branch.steps, context)
            verdicts.append(verdict)
            results[branch.name] = delta
            if verdict == _FAILED and failure is None:
                failure = branch_failure
                if node.fail_fast:
                    first = int(key)
                    reason = f"branch {branch.name!r} of {self.path(key)} failed"
                    self.stop_subtree(first + 1, self.ex.spec.ends[first], reason)
                    break
        if failure is not None and (node.fail_fast or _RUNNING not in verdicts):
            self.fail(key, failure)
            return _FAILED, failure
        if _RUNNING in verdicts:
            return _RUNNING, None
        if _STOPPED in verdicts:
            return _STOPPED, None
        self.finish(key, {node.name: results})
        self.step_results[node.name] = results
        self.history.append(NodeRecorded(self.path(key), "joined"))
        return _DONE, None

    def drive_map(self, node: MapSpec, key: str, context: JsonObject) -> tuple[str, Failure | None]:
        items = self.rec(key).items or ()
        body = str(self.ex.spec.id_of(node.body))
        running = 0
        finished = 0
        for index, item in enumerate(items):
            item_key = f"{body}.{index}"
            rec = self.rec(item_key)
            if rec.status is StepStatus.COMPLETED:
                finished += 1
            elif rec.status is StepStatus.FAILED:
                first = int(key)
                self.stop_subtree(
                    first + 1, self.ex.spec.ends[first], f"{self.path(item_key)} failed"
                )
                failure = rec.last_failure
                self.fail(key, failure)
                return _FAILED, failure
            elif rec.status is StepStatus.CANCELLED:
                return _STOPPED, None
            elif rec.status is StepStatus.RUNNING:
                running += 1
            elif running < node.max_concurrency:
                item_context = {**context, "item": item, "index": index}
                refused = self.refusal(item_key, item_context)
                if refused is not None:
                    self.refuse(item_key, refused)
                    return self.drive_map(node, key, context)
                running += 1
                self.set(item_key, status=StepStatus.RUNNING, started_ms=self.now_ms)
                self.dispatch(CommandKind.EXECUTE, item_key, rec.attempts + 1, item_context)
        if finished < len(items):
            return _RUNNING, None
        gathered = [self.rec(f"{body}.{i}").result or {} for i in range(len(items))]
        self.finish(key, {node.name: gathered})
        self.step_results[node.name] = gathered
        self.history.append(NodeRecorded(self.path(key), "joined", {"items": len(items)}))
        return _DONE, None

    # -- compensation ------------------------------------------------------------------

    def begin_compensation(self) -> None:
        """Queue the completed steps that have a compensation, newest first."""
        done = [
            (rec.completed_seq, key)
            for key, rec in self.nodes.items()
            if rec.status is StepStatus.COMPLETED
            and isinstance(spec := self.ex.spec_of(key), StepSpec)
            and spec.compensation
        ]
        queue = tuple(key for _, key in sorted(done, reverse=True))
        self.update(compensation_queue=queue)
        if not queue:
            if self.ex.failure is not None:
                self.status(State.FAILED)
            else:
                self.status(State.CANCELLED)
            return
        # The first compensation's status change says it.
        self.update(state=State.COMPENSATING)
        self.next_compensation_or_finish()

    def next_compensation_or_finish(self) -> None:
        queue = self.ex.compensation_queue
        if queue:
            self.update(compensation_queue=queue[1:])
            key = queue[0]
            context = {**self.ex.context, **(self.rec(key).result or {})}
            self.dispatch(
                CommandKind.COMPENSATE, key, self.rec(key).compensation_attempts + 1, context
            )
            return
        if self.ex.requires_manual_intervention:
            self.status(State.FAILED)
        elif self.ex.failure is None and self.ex.cancel_requested:
            self.status(State.CANCELLED)
        elif any(r.status is StepStatus.COMPENSATED for r in self.nodes.values()):
            self.status(State.COMPENSATED)
        else:
            self.status(State.FAILED)


def _limits(spec: StepSpec, kind: CommandKind, context: JsonObject) -> dict[str, Any]:
    """The shared limits an attempt waits for: an execution's (checked by
    `refusal` before), never a compensation's, so a saga can always undo."""
    if kind is not CommandKind.EXECUTE or not spec.rate_limits:
        return {}
    return {
        "limit_keys": expressions.limit_keys(spec.rate_limits, context),
        "limit_tokens": spec.estimate.input_tokens + spec.estimate.output_tokens,
    }


def _estimate(ex: Execution, key: str) -> usage.Usage:
    spec = ex.spec_of(key)
    return spec.estimate if isinstance(spec, StepSpec) else usage.Usage()


def _node_id(key: str) -> int:
    return int(key.partition(".")[0])


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
    start_at_ms: int = 0,
    budget: usage.Budget | None = None,
) -> Transition:
    """Create an execution and start it (at `start_at_ms`, when later than
    now). `budget` replaces the definition's."""
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
        nodes={},
        created_ms=now_ms,
        updated_ms=now_ms,
        request_fingerprint=request_fingerprint,
        metadata=dict(metadata or {}),
        parent_transaction_id=parent_transaction_id,
        parent_command_id=parent_command_id,
        start_at_ms=start_at_ms if start_at_ms > now_ms else 0,
        budget=spec.budget if budget is None else budget,
    )
    b = _Builder(execution, now_ms)
    b.history.append(StatusChanged(State.PENDING, ""))
    if execution.start_at_ms:
        b.effects.append(ScheduleTimer(timer_id(START_TIMER, "at"), execution.start_at_ms))
        return b.done()
    _run(b)
    return b.done()


def _run(b: _Builder) -> None:
    """Start a pending execution (its status says so even when the first node
    dispatches nothing, like a sleep)."""
    b.update(state=State.RUNNING)
    mark = len(b.history)
    b.advance()
    if not any(isinstance(h, StatusChanged) for h in b.history[mark:]):
        b.history.insert(mark, StatusChanged(State.RUNNING, ""))


def apply(execution: Execution, event: Event, now_ms: int) -> Transition:
    """Apply one event. Stale or duplicate events return `changed=False`.

    Raises `InvalidTransition` for an event the execution's state refuses
    (cancel, signal or resume of a finished execution, ...).
    """
    return _apply(execution, event, now_ms)


def _apply(execution: Execution, event: Event, now_ms: int) -> Transition:
    match event:
        case StepCompleted():
            return _on_completed(execution, event, now_ms)
        case StepFailed():
            return _on_failed(execution, event.command_id, event.failure, now_ms, event.usage)
        case TimerFired():
            return _on_timer(execution, event.timer_id, now_ms)
        case CancelRequested():
            return _on_cancel(execution, event, now_ms)
        case SignalReceived():
            return _on_signal(execution, event, now_ms)
        case ResumeRequested():
            return _on_resume(execution, now_ms)


def _unchanged(execution: Execution) -> Transition:
    return Transition(execution, changed=False)


def _current(execution: Execution, command_id: str) -> Attempt | None:
    """The dispatched attempt that `command_id` names, if it is outstanding."""
    parsed = parse_command_id(command_id)
    if parsed is None or execution.state.terminal:
        return None
    attempt = execution.attempts.get(parsed[2])
    if attempt is None or not attempt.dispatched or execution.command_id(attempt) != command_id:
        return None
    return attempt


def _on_completed(ex: Execution, event: StepCompleted, now_ms: int) -> Transition:
    attempt = _current(ex, event.command_id)
    if attempt is None:
        return _unchanged(ex)
    b = _Builder(ex, now_ms)
    b.update(usage_by_step=usage.add(ex.usage_by_step, b.path(attempt.key), event.usage))
    b.stop_attempt_timers(attempt)
    del b.attempts[attempt.key]
    spec = ex.spec_of(attempt.key)
    assert isinstance(spec, StepSpec)
    worker = spec.worker if attempt.kind is CommandKind.EXECUTE else spec.compensation
    path = b.path(attempt.key)
    b.history.append(
        ResultRecorded(
            attempt.kind,
            worker,
            spec.name,
            event.command_id,
            event.result,
            path,
            _worker_usage(spec, attempt, event.usage),
        )
    )
    if attempt.kind is CommandKind.EXECUTE:
        b.finish(attempt.key, event.result, compensable=True)
        if "." not in attempt.key:  # a map item's result is gathered by its map
            b.step_results[spec.name] = event.result
        b.advance()
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
        b.set(attempt.key, status=StepStatus.COMPENSATION_FAILED, last_failure=failure)
        b.update(requires_manual_intervention=True)
    else:
        b.set(attempt.key, status=StepStatus.COMPENSATED)
    b.next_compensation_or_finish()
    return b.done()


def _worker_usage(spec: StepSpec, attempt: Attempt, used: usage.Usage | None) -> usage.Usage | None:
    """What a worker reported with an answer; None for a sub-workflow
    step's outcome (the usage of its child, recorded by the child's steps)."""
    if not used or (spec.workflow and attempt.kind is CommandKind.EXECUTE):
        return None
    return used


def _retryable(policy: RetryPolicy, failure: Failure, attempt: int) -> bool:
    if failure.non_retryable or failure.type in policy.non_retryable_error_types:
        return False
    return attempt < policy.max_attempts


def _on_failed(
    ex: Execution,
    command_id: str,
    failure: Failure,
    now_ms: int,
    used: usage.Usage | None = None,
) -> Transition:
    attempt = _current(ex, command_id)
    if attempt is None:
        return _unchanged(ex)
    spec = ex.spec_of(attempt.key)
    assert isinstance(spec, StepSpec)
    compensating = attempt.kind is CommandKind.COMPENSATE
    policy = (spec.compensation_retry or spec.retry) if compensating else spec.retry
    rec = ex.node(attempt.key)
    tries = attempt.number - (rec.compensation_retry_base if compensating else rec.retry_base)
    will_retry = _retryable(policy, failure, tries)
    b = _Builder(ex, now_ms)
    b.update(usage_by_step=usage.add(ex.usage_by_step, b.path(attempt.key), used))
    b.stop_attempt_timers(attempt)
    worker = spec.compensation if compensating else spec.worker
    b.history.append(
        ErrorRecorded(
            attempt.kind,
            worker,
            spec.name,
            command_id,
            attempt.number,
            failure,
            will_retry,
            b.path(attempt.key),
            _worker_usage(spec, attempt, used),
        )
    )
    b.set(attempt.key, last_failure=failure)
    if will_retry:
        following = Attempt(attempt.kind, attempt.key, attempt.number + 1, False)
        b.attempts[attempt.key] = following
        due = now_ms + policy.backoff_ms(tries)
        b.effects.append(ScheduleTimer(timer_id(RETRY_TIMER, ex.command_id(following)), due))
        return b.done()
    del b.attempts[attempt.key]
    if compensating:
        b.set(attempt.key, status=StepStatus.COMPENSATION_FAILED)
        # A cancelled execution has no forward failure: record this one, so a
        # FAILED execution always says why.
        b.update(requires_manual_intervention=True, failure=b.ex.failure or failure)
        b.next_compensation_or_finish()
    else:
        b.set(attempt.key, status=StepStatus.FAILED, finished_ms=now_ms)
        b.advance()
    return b.done()


def _on_timer(ex: Execution, timer: str, now_ms: int) -> Transition:
    kind, _, target = timer.partition(":")
    if ex.state.terminal:
        return _unchanged(ex)
    if kind == START_TIMER:
        if ex.state is not State.PENDING:
            return _unchanged(ex)
        b = _Builder(ex, now_ms)
        _run(b)
        return b.done()
    if kind in (SLEEP_TIMER, WAIT_TIMER):
        return _on_node_timer(ex, kind, target, now_ms)
    parsed = parse_command_id(target)
    attempt = ex.attempts.get(parsed[2]) if parsed else None
    if attempt is None or ex.command_id(attempt) != target:
        return _unchanged(ex)
    if kind == RETRY_TIMER and not attempt.dispatched:
        b = _Builder(ex, now_ms)
        if attempt.kind is CommandKind.EXECUTE:
            context = _context_of(ex, attempt.key)
            refused = b.refusal(attempt.key, context)
            if refused is not None:
                b.refuse(attempt.key, refused)
                b.advance()
                return b.done()
        else:
            context = {**ex.context, **(ex.node(attempt.key).result or {})}
        b.dispatch(attempt.kind, attempt.key, attempt.number, context, announce=False)
        return b.done()
    if kind in (TIMEOUT_TIMER, HEARTBEAT_TIMER) and attempt.dispatched:
        spec = ex.spec_of(attempt.key)
        assert isinstance(spec, StepSpec)
        path = ex.path_of(attempt.key)
        if kind == TIMEOUT_TIMER:
            failure = Failure(
                f"step {path!r} timed out after {spec.timeout_ms} ms",
                STEP_TIMEOUT,
                kind=FailureKind.TIMEOUT,
            )
        else:
            limit = spec.heartbeat_timeout_ms
            failure = Failure(
                f"no heartbeat from step {path!r} for {limit} ms",
                HEARTBEAT_TIMEOUT,
                kind=FailureKind.HEARTBEAT_TIMEOUT,
            )
        transition = _on_failed(ex, target, failure, now_ms)
        cancel: Effect
        if attempt.kind is CommandKind.EXECUTE and spec.workflow:
            cancel = CancelChild(child_transaction_id(ex.transaction_id, attempt), failure.message)
        else:
            cancel = CancelCommand(target, failure.message)
        return evolve(transition, effects=(cancel, *transition.effects))
    return _unchanged(ex)


def _on_node_timer(ex: Execution, kind: str, key: str, now_ms: int) -> Transition:
    rec = ex.node(key)
    if ex.state is not State.RUNNING or rec.status is not StepStatus.RUNNING:
        return _unchanged(ex)
    node = ex.spec_of(key)
    b = _Builder(ex, now_ms)
    if kind == SLEEP_TIMER and isinstance(node, SleepSpec):
        b.history.append(NodeRecorded(b.path(key), "woke"))
        b.finish(key, {})
    elif kind == WAIT_TIMER and isinstance(node, WaitSpec) and rec.choice != 1:
        b.history.append(NodeRecorded(b.path(key), "timed out", {"signal": node.signal}))
        if node.on_timeout is None:
            failure = Failure(
                f"{b.path(key)}: no signal {node.signal!r} within {node.timeout_ms} ms",
                SIGNAL_TIMEOUT,
                non_retryable=True,
                kind=FailureKind.TIMEOUT,
            )
            b.fail(key, failure)
        else:
            b.set(key, choice=1)
    else:
        return _unchanged(ex)
    b.advance()
    return b.done()


def _context_of(ex: Execution, key: str) -> JsonObject:
    """The context a step (or map item) receives: walk the definition to it."""
    target = _node_id(key)
    found: list[JsonObject] = []

    def seq(steps: tuple[Node, ...], base: JsonObject) -> bool:
        delta: JsonObject = {}
        for node in steps:
            context = {**base, **delta}
            node_id = ex.spec.id_of(node)
            if node_id == target:
                found.append(context)
                return True
            if node_id < target < ex.spec.ends[node_id]:
                return inside(node, node_id, context)
            delta = {**delta, **(ex.node(node_id).result or {})}
        return False

    def inside(node: Node, node_id: int, context: JsonObject) -> bool:
        rec = ex.node(node_id)
        match node:
            case ParallelSpec():
                return any(seq(b.steps, context) for b in node.branches)
            case MapSpec():
                index = int(key.partition(".")[2] or 0)
                items = rec.items or ()
                item = items[index] if index < len(items) else None
                found.append({**context, "item": item, "index": index})
                return True
            case ConditionSpec():
                steps = node.otherwise if rec.choice < 0 else node.cases[rec.choice].steps
                return seq(steps, context)
            case WaitSpec():
                return seq(node.on_timeout or (), context)
        return False

    seq(ex.spec.steps, ex.input)
    return found[0] if found else dict(ex.context)


def command_context(ex: Execution, command_id: str) -> JsonObject:
    """The context that the command `command_id` was (or is) given."""
    parsed = parse_command_id(command_id)
    if parsed is None:
        return dict(ex.context)
    _, kind, key, _ = parsed
    if kind is CommandKind.COMPENSATE:
        return {**ex.context, **(ex.node(key).result or {})}
    return _context_of(ex, key)


def _on_cancel(ex: Execution, event: CancelRequested, now_ms: int) -> Transition:
    if ex.state.terminal:
        raise InvalidTransition(f"workflow {ex.transaction_id} is already {ex.state.value}")
    if ex.cancel_requested:
        return _unchanged(ex)
    reason = event.reason or "workflow cancelled"
    b = _Builder(ex, now_ms)
    b.update(cancel_requested=True, cancel_reason=reason)
    # The request itself is a status change in the history (its StatusEvent
    # carries the reason, as every later one does).
    b.history.append(StatusChanged(b.ex.state, b.ex.current_step))
    if ex.state is State.COMPENSATING:
        # Compensation already runs; it finishes, and the failure decides the end state.
        return b.done()
    if ex.state is State.PENDING:
        b.effects.append(CancelTimer(timer_id(START_TIMER, "at")))
    b.stop_subtree(0, len(ex.spec.nodes), reason)
    b.begin_compensation()
    return b.done()


def _on_signal(ex: Execution, event: SignalReceived, now_ms: int) -> Transition:
    if ex.state.terminal or ex.state is State.COMPENSATING:
        raise InvalidTransition(
            f"workflow {ex.transaction_id} is {ex.state.value}: it takes no more signals"
        )
    fingerprint = expressions.fingerprint(event.name, event.payload)
    if event.signal_id:
        seen = ex.signal_ids.get(event.signal_id)
        if seen == fingerprint:
            return _unchanged(ex)
        if seen is not None:
            raise SignalRefused(
                f"signal_id: {event.signal_id!r} was already used for a different signal"
            )
    b = _Builder(ex, now_ms)
    if event.signal_id:
        b.update(signal_ids={**ex.signal_ids, event.signal_id: fingerprint})
    signal = Signal(event.name, event.payload, event.signal_id)
    waiting = sorted(
        (_node_id(k), k)
        for k, rec in ex.nodes.items()
        if rec.status is StepStatus.RUNNING
        and isinstance(node := ex.spec_of(k), WaitSpec)
        and node.signal == event.name
        and rec.choice != 1
    )
    if not waiting:
        b.update(signals=(*b.ex.signals, signal))
        b.history.append(SignalRecorded(signal.name, signal.payload, signal.signal_id))
        return b.done()
    key = waiting[0][1]
    node = ex.spec_of(key)
    assert isinstance(node, WaitSpec)
    if node.timeout_ms:
        b.effects.append(CancelTimer(timer_id(WAIT_TIMER, key)))
    b.take_signal(node, key, signal)
    b.advance()
    return b.done()


def _on_resume(ex: Execution, now_ms: int) -> Transition:
    """Pick a FAILED execution up where it failed, history and id kept: re-run
    its failed compensations (when it needs manual intervention), else its
    failed and cancelled steps, each with a new attempt and a fresh retry budget."""
    if ex.state is not State.FAILED:
        raise InvalidTransition(
            f"workflow {ex.transaction_id} is {ex.state.value}: only a failed workflow resumes"
        )
    b = _Builder(ex, now_ms)
    b.update(completed_ms=0, failure=None)
    if ex.requires_manual_intervention:
        failed = sorted(
            ((rec.completed_seq, key) for key, rec in ex.nodes.items()
             if rec.status is StepStatus.COMPENSATION_FAILED),
            reverse=True,
        )  # fmt: skip
        b.update(
            requires_manual_intervention=False,
            failure=ex.failure if not ex.cancel_requested else None,
            compensation_queue=tuple(k for _, k in failed),
        )
        for _, key in failed:
            rec = ex.node(key)
            b.set(
                key,
                status=StepStatus.COMPLETED,
                compensation_retry_base=rec.compensation_attempts,
            )
        b.update(state=State.COMPENSATING)
        b.next_compensation_or_finish()
        return b.done()
    if ex.cancel_requested:
        raise InvalidTransition(f"workflow {ex.transaction_id} was cancelled: it does not resume")
    for key, rec in ex.nodes.items():
        if rec.status in (StepStatus.FAILED, StepStatus.CANCELLED):
            node = ex.spec_of(key)
            if isinstance(node, StepSpec | SleepSpec) or (
                isinstance(node, WaitSpec) and rec.choice != 1
            ):
                b.set(
                    key,
                    status=StepStatus.PENDING,
                    retry_base=rec.attempts,
                    choice=-1,
                    finished_ms=0,
                )
            elif (isinstance(node, MapSpec) and rec.items is None) or (
                isinstance(node, ConditionSpec) and not _chose(rec)
            ):
                b.set(key, status=StepStatus.PENDING, finished_ms=0)
            else:
                b.set(key, status=StepStatus.RUNNING, finished_ms=0)
    b.update(state=State.RUNNING)
    b.history.append(StatusChanged(State.RUNNING, ""))
    b.advance()
    return b.done()


def _chose(rec: NodeRecord) -> bool:
    """Whether a condition got as far as choosing (a failed evaluation did not)."""
    return rec.last_failure is None or rec.last_failure.type != EXPRESSION_ERROR
