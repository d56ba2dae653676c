"""Usage accounting in the engine: what accepted answers report is summed
per step (every attempt, failed ones too, and the compensation) and per
execution; stale or duplicate answers add nothing. No I/O."""

from __future__ import annotations

from multiagents_server.engine import (
    Failure,
    RetryPolicy,
    StepCompleted,
    StepFailed,
    StepSpec,
    TimerFired,
    Usage,
    WorkflowSpec,
    apply,
    start,
    usage,
)
from multiagents_server.engine.codec import execution_from_json, execution_to_json

T0 = 1_700_000_000_000
RETRY = RetryPolicy(max_attempts=2, initial_interval_ms=10)
BOOM = Failure("boom", "WorkerExecutionError")
FINAL = Failure("bad", "ValueError", non_retryable=True)


def spec() -> WorkflowSpec:
    return WorkflowSpec(
        "wf",
        1,
        (
            StepSpec("plan", "do_plan", compensation="undo_plan", retry=RETRY),
            StepSpec("write", "do_write"),
        ),
    )


def test_usage_is_summed_per_step_over_attempts_and_compensation_and_per_execution() -> None:
    ex = start(spec(), transaction_id="tx", correlation_id="", input={}, now_ms=T0).execution
    small, large = Usage(10, 1, 5, ("small",)), Usage(100, 20, 70, ("large",))
    # plan: attempt 1 fails (it still cost), attempt 2 completes.
    ex = apply(ex, StepFailed("tx:x0:1", BOOM, small), T0).execution
    ex = apply(ex, TimerFired("retry:tx:x0:2"), T0).execution
    ex = apply(ex, StepCompleted("tx:x0:2", {}, small), T0).execution
    # A duplicate of that answer is stale: it changes nothing and is not counted.
    stale = apply(ex, StepCompleted("tx:x0:2", {}, small), T0)
    assert not stale.changed
    # write fails for good; plan's compensation runs and reports usage too.
    ex = apply(ex, StepFailed("tx:x1:1", FINAL, large), T0).execution
    ex = apply(ex, StepCompleted("tx:c0:1", {}, small), T0).execution
    assert ex.usage_by_step == {
        "plan": Usage(30, 3, 15, ("small",)),
        "write": large,
    }
    assert usage.total(ex) == Usage(130, 23, 85, ("large", "small"))
    assert execution_from_json(execution_to_json(ex)).usage_by_step == ex.usage_by_step


def test_answers_without_usage_leave_no_entry() -> None:
    ex = start(spec(), transaction_id="tx", correlation_id="", input={}, now_ms=T0).execution
    ex = apply(ex, StepCompleted("tx:x0:1", {}), T0).execution
    ex = apply(ex, StepCompleted("tx:x1:1", {}, Usage()), T0).execution
    assert ex.usage_by_step == {}
    assert not usage.total(ex)
