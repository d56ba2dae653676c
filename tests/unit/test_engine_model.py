"""Workflow model v2 in the pure engine: parallel groups, maps, conditions,
waits for signals, sleeps, delayed starts and resume; no Redis, no gRPC."""

from __future__ import annotations

import json
from typing import Any

import pytest

from multiagents_server.engine import (
    Branch,
    CancelCommand,
    CancelRequested,
    CancelTimer,
    Case,
    ConditionSpec,
    DispatchCommand,
    Execution,
    Failure,
    InvalidTransition,
    MapSpec,
    NodeRecorded,
    ParallelSpec,
    ResumeRequested,
    RetryPolicy,
    ScheduleTimer,
    SignalReceived,
    SignalRefused,
    SleepSpec,
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
    apply,
    codec,
    command_context,
    start,
)

TX = "tx"
ONCE = RetryPolicy(max_attempts=1)
BAD = Failure("bad", "ValueError", non_retryable=True)


def s(name: str, *, undo: bool = False, retry: RetryPolicy = ONCE) -> StepSpec:
    return StepSpec(name, f"do_{name}", compensation=f"undo_{name}" if undo else "", retry=retry)


def begin(*steps: Any, input: dict[str, Any] | None = None, now: int = 0) -> Transition:
    return start(
        WorkflowSpec("wf", 1, steps), transaction_id=TX, correlation_id="", input=input or {},
        now_ms=now,
    )  # fmt: skip


def dispatched(t: Transition) -> list[DispatchCommand]:
    return [e for e in t.effects if isinstance(e, DispatchCommand)]


def ids(t: Transition) -> list[str]:
    return [d.command_id for d in dispatched(t)]


def ok(ex: Execution, command: str, result: dict[str, Any] | None = None) -> Transition:
    t = apply(ex, StepCompleted(command, result or {}), 1)
    assert t.changed, command
    return t


def fail(ex: Execution, command: str, failure: Failure = BAD) -> Transition:
    t = apply(ex, StepFailed(command, failure), 1)
    assert t.changed, command
    return t


def round_trip(ex: Execution) -> Execution:
    return codec.execution_from_json(json.loads(json.dumps(codec.execution_to_json(ex))))


# -- parallel ----------------------------------------------------------------------


def group(fail_fast: bool = True) -> ParallelSpec:
    return ParallelSpec(
        "g",
        (
            Branch("a", (s("a1", undo=True), s("a2"))),
            Branch("b", (s("b1", undo=True),)),
        ),
        fail_fast,
    )


def test_branches_start_together_and_join_under_their_names() -> None:
    t = begin(s("first"), group(), s("last"), input={"k": 1})
    t = ok(t.execution, "tx:x0:1", {"f": 1})
    assert ids(t) == ["tx:x2:1", "tx:x4:1"]  # a1 and b1 at once
    assert all(d.context == {"k": 1, "f": 1} for d in dispatched(t))
    t = ok(t.execution, "tx:x4:1", {"rb": 2})
    assert ids(t) == []
    t = ok(t.execution, "tx:x2:1", {"ra": 1})
    assert ids(t) == ["tx:x3:1"]
    assert dispatched(t)[0].context == {"k": 1, "f": 1, "ra": 1}  # only its branch's results
    t = ok(t.execution, "tx:x3:1", {"a2": True})
    (last,) = dispatched(t)
    assert last.context == {"k": 1, "f": 1, "g": {"a": {"ra": 1, "a2": True}, "b": {"rb": 2}}}
    assert t.execution.step_results["g"] == {"a": {"ra": 1, "a2": True}, "b": {"rb": 2}}
    assert [h.path for h in t.history if isinstance(h, NodeRecorded)] == ["g"]


def test_fail_fast_cancels_the_other_branches_then_compensates_newest_first() -> None:
    t = begin(s("first", undo=True), group(fail_fast=True))
    t = ok(t.execution, "tx:x0:1")
    t = ok(t.execution, "tx:x2:1")  # a1 done, a2 and b1 run
    t = fail(t.execution, "tx:x4:1")  # b1 fails
    cancels = [e.command_id for e in t.effects if isinstance(e, CancelCommand)]
    assert cancels == ["tx:x3:1"]
    ex = t.execution
    assert ex.state is State.COMPENSATING
    assert ex.node(3).status is StepStatus.CANCELLED
    assert ids(t) == ["tx:c2:1"]  # a1 completed after first: undone first
    t = ok(ex, "tx:c2:1")
    assert ids(t) == ["tx:c0:1"]
    t = ok(t.execution, "tx:c0:1")
    assert t.execution.state is State.COMPENSATED
    assert t.execution.failure == BAD


def test_wait_all_lets_the_other_branches_finish_before_failing() -> None:
    t = begin(group(fail_fast=False))
    t = fail(t.execution, "tx:x3:1")  # b1 fails; branch a goes on
    assert not [e for e in t.effects if isinstance(e, CancelCommand)]
    assert t.execution.state is State.RUNNING
    t = ok(t.execution, "tx:x1:1")
    assert ids(t) == ["tx:x2:1"]
    t = ok(t.execution, "tx:x2:1")
    assert t.execution.state is State.COMPENSATING
    assert ids(t) == ["tx:c1:1"]


# -- map -----------------------------------------------------------------------------


def test_a_map_keeps_its_concurrency_and_gathers_results_in_order() -> None:
    spec = MapSpec("each", "context.xs", s("sq"), max_concurrency=2)
    t = begin(spec, input={"xs": [3, 4, 5]})
    assert ids(t) == ["tx:x1.0:1", "tx:x1.1:1"]
    assert [d.context["item"] for d in dispatched(t)] == [3, 4]
    t = ok(t.execution, "tx:x1.1:1", {"sq": 16})
    assert ids(t) == ["tx:x1.2:1"]
    assert dispatched(t)[0].context == {"xs": [3, 4, 5], "item": 5, "index": 2}
    t = ok(t.execution, "tx:x1.2:1", {"sq": 25})
    t = ok(t.execution, "tx:x1.0:1", {"sq": 9})
    assert t.execution.state is State.COMPLETED
    assert t.execution.context["each"] == [{"sq": 9}, {"sq": 16}, {"sq": 25}]
    assert t.execution.path_of("1.2") == "each/2"


@pytest.mark.parametrize(("items", "why"), [({}, "no such member"), ({"xs": 3}, "not a list")])
def test_a_map_over_a_missing_or_non_list_value_fails(items: dict[str, Any], why: str) -> None:
    t = begin(MapSpec("each", "context.xs", s("sq")), input=items)
    assert t.execution.state is State.FAILED
    assert t.execution.failure is not None
    assert t.execution.failure.type == "ExpressionError"
    assert why in t.execution.failure.message


def test_an_empty_map_completes_at_once() -> None:
    t = begin(MapSpec("each", "context.xs", s("sq")), s("after"), input={"xs": []})
    assert ids(t) == ["tx:x2:1"]
    assert dispatched(t)[0].context["each"] == []


def test_a_failed_item_cancels_the_running_ones() -> None:
    t = begin(MapSpec("each", "context.xs", s("sq", undo=True), 3), input={"xs": [1, 2, 3]})
    t = ok(t.execution, "tx:x1.0:1")
    t = fail(t.execution, "tx:x1.1:1")
    assert [e.command_id for e in t.effects if isinstance(e, CancelCommand)] == ["tx:x1.2:1"]
    assert ids(t) == ["tx:c1.0:1"]


# -- conditions ------------------------------------------------------------------------


def condition() -> ConditionSpec:
    high = Case((s("hi"),), when="context.score >= 0.8")
    middle = Case((s("mid"),), when="context.score > 0.4")
    return ConditionSpec("c", (high, middle), (s("low"),))


@pytest.mark.parametrize(
    ("score", "runs", "choice"), [(0.9, "hi", 0), (0.5, "mid", 1), (0.1, "low", -1)]
)
def test_a_condition_runs_the_first_matching_case_and_skips_the_others(
    score: float, runs: str, choice: int
) -> None:
    t = begin(condition(), input={"score": score})
    (command,) = dispatched(t)
    assert command.step == runs
    assert t.execution.node(0).choice == choice
    skipped = {t.execution.spec.nodes[int(k)].name for k, r in t.execution.nodes.items()
               if r.status is StepStatus.SKIPPED}  # fmt: skip
    assert skipped == {"hi", "mid", "low"} - {runs}
    assert NodeRecorded("c", "chose", {"case": choice}) in t.history


def test_a_switch_matches_values_numbers_by_value() -> None:
    spec = ConditionSpec(
        "c", (Case((s("a"),), equals="a"), Case((s("two"),), equals=2.0)), (), switch="context.k"
    )
    assert dispatched(begin(spec, input={"k": 2}))[0].step == "two"
    assert begin(spec, input={"k": "z"}).execution.state is State.COMPLETED  # otherwise: nothing


def test_an_expression_failing_at_run_time_fails_the_workflow() -> None:
    t = begin(ConditionSpec("c", (Case((s("a"),), when="context.score > 1"),)), input={})
    assert t.execution.state is State.FAILED
    assert t.execution.failure is not None and t.execution.failure.type == "ExpressionError"


# -- signals -------------------------------------------------------------------------------


def test_a_wait_takes_a_signal_and_its_payload_is_the_result() -> None:
    t = begin(WaitSpec("w", "go", timeout_ms=5000), s("next"))
    assert ScheduleTimer("wait:0", 5000) in t.effects
    assert t.execution.waiting_for == (("w", "go"),)
    t = apply(t.execution, SignalReceived("go", {"n": 1}, "id-1"), 10)
    assert CancelTimer("wait:0") in t.effects
    assert dispatched(t)[0].context == {"w": {"n": 1}}
    assert t.execution.waiting_for == ()


def test_an_early_signal_is_kept_and_a_resend_is_deduplicated() -> None:
    t = begin(s("first"), WaitSpec("w", "go"))
    t = apply(t.execution, SignalReceived("go", {"n": 1}, "id-1"), 1)
    assert t.execution.signals and not t.execution.waiting_for
    assert not apply(t.execution, SignalReceived("go", {"n": 1}, "id-1"), 2).changed
    with pytest.raises(SignalRefused):
        apply(t.execution, SignalReceived("go", {"n": 2}, "id-1"), 2)
    t = ok(t.execution, "tx:x0:1")
    assert t.execution.state is State.COMPLETED
    assert t.execution.context == {"w": {"n": 1}}


@pytest.mark.parametrize("approved", [True, False])
def test_an_approval_goes_on_or_fails_with_rejected(approved: bool) -> None:
    t = begin(s("book", undo=True), WaitSpec("ok", "approval", approval=True))
    t = ok(t.execution, "tx:x0:1")
    t = apply(t.execution, SignalReceived("approval", {"approved": approved, "comment": "no"}), 2)
    if approved:
        assert t.execution.state is State.COMPLETED
    else:
        assert t.execution.state is State.COMPENSATING
        assert t.execution.failure is not None
        assert (t.execution.failure.type, t.execution.failure.message) == (
            "Rejected", "ok: rejected: no")  # fmt: skip


def test_a_wait_times_out_into_a_failure_or_its_timeout_steps() -> None:
    failing = begin(WaitSpec("w", "go", timeout_ms=100))
    t = apply(failing.execution, TimerFired("wait:0"), 100)
    assert t.execution.state is State.FAILED
    assert t.execution.failure is not None and t.execution.failure.type == "SignalTimeout"
    going_on = begin(WaitSpec("w", "go", timeout_ms=100, on_timeout=(s("remind"),)))
    t = apply(going_on.execution, TimerFired("wait:0"), 100)
    assert ids(t) == ["tx:x1:1"]
    with pytest.raises(InvalidTransition):
        apply(ok(t.execution, "tx:x1:1").execution, SignalReceived("go", {}), 200)


# -- timers ------------------------------------------------------------------------------------


def test_a_sleep_and_a_delayed_start_are_timers() -> None:
    t = begin(SleepSpec("nap", 500), s("after"), now=1000)
    assert ScheduleTimer("sleep:0", 1500) in t.effects
    assert t.execution.state is State.RUNNING and not ids(t)
    assert not apply(t.execution, TimerFired("sleep:1"), 1500).changed
    t = apply(t.execution, TimerFired("sleep:0"), 1500)
    assert ids(t) == ["tx:x1:1"]
    delayed = start(
        WorkflowSpec("wf", 1, (s("a"),)), transaction_id=TX, correlation_id="", input={},
        now_ms=0, start_at_ms=700,
    )  # fmt: skip
    assert delayed.execution.state is State.PENDING and not ids(delayed)
    assert ScheduleTimer("start:at", 700) in delayed.effects
    assert ids(apply(delayed.execution, TimerFired("start:at"), 700)) == ["tx:x0:1"]
    cancelled = apply(delayed.execution, CancelRequested("no"), 1)
    assert CancelTimer("start:at") in cancelled.effects
    assert cancelled.execution.state is State.CANCELLED


# -- resume, cancel ------------------------------------------------------------------------------


def test_resume_reruns_the_failed_step_with_a_new_attempt_and_retry_budget() -> None:
    retry = RetryPolicy(max_attempts=2, initial_interval_ms=0)
    t = begin(s("a"), s("b", retry=retry))
    t = ok(t.execution, "tx:x0:1")
    t = fail(t.execution, "tx:x1:1", Failure("flaky", "Error"))
    t = apply(t.execution, TimerFired("retry:tx:x1:2"), 2)
    t = fail(t.execution, "tx:x1:2", Failure("flaky", "Error"))
    assert t.execution.state is State.FAILED
    t = apply(t.execution, ResumeRequested(), 3)
    assert ids(t) == ["tx:x1:3"]
    assert StatusChanged(State.RUNNING, "") in t.history
    t = fail(t.execution, "tx:x1:3", Failure("flaky", "Error"))
    assert t.execution.state is State.RUNNING  # the budget of 2 restarted at the resume
    with pytest.raises(InvalidTransition):
        apply(t.execution, ResumeRequested(), 4)


def test_resume_reruns_failed_compensations() -> None:
    t = begin(s("a", undo=True), s("b"))
    t = ok(t.execution, "tx:x0:1")
    t = fail(t.execution, "tx:x1:1")
    t = fail(t.execution, "tx:c0:1")
    assert t.execution.requires_manual_intervention
    t = apply(t.execution, ResumeRequested(), 5)
    assert ids(t) == ["tx:c0:2"]
    t = ok(t.execution, "tx:c0:2")
    assert t.execution.state is State.COMPENSATED
    assert not t.execution.requires_manual_intervention


def test_cancel_stops_every_branch_and_says_why() -> None:
    t = begin(group())
    t = apply(t.execution, CancelRequested("user said stop"), 5)
    cancels = sorted(e.command_id for e in t.effects if isinstance(e, CancelCommand))
    assert cancels == ["tx:x1:1", "tx:x3:1"]
    assert t.execution.state is State.CANCELLED
    assert t.history[-1] == StatusChanged(State.CANCELLED, "")
    assert t.execution.cancel_reason == "user said stop"


# -- storage ----------------------------------------------------------------


def test_a_tree_execution_round_trips_and_recomputes_contexts() -> None:
    t = begin(s("first"), group(), MapSpec("each", "context.xs", s("sq")), input={"xs": [1]})
    t = ok(t.execution, "tx:x0:1", {"f": 1})
    t = ok(t.execution, "tx:x2:1", {"ra": 1})
    ex = round_trip(t.execution)
    assert codec.execution_to_json(ex) == codec.execution_to_json(t.execution)
    assert command_context(ex, "tx:x3:1") == {"xs": [1], "f": 1, "ra": 1}
    assert apply(ex, StepCompleted("tx:x3:1", {}), 9) == apply(
        t.execution, StepCompleted("tx:x3:1", {}), 9
    )


def test_a_version_1_execution_is_read_as_a_tree() -> None:
    v1 = {
        "transaction_id": "old", "correlation_id": "old",
        "spec": {"name": "wf", "version": 1, "description": "", "steps": [
            {"name": n, "worker": f"do_{n}", "compensation": "", "timeout_ms": 1000,
             "heartbeat_timeout_ms": 0, "compensation_retry": None,
             "retry": {"max_attempts": 1, "initial_interval_ms": 0, "backoff_coefficient": 2.0,
                       "max_interval_ms": 1, "non_retryable_error_types": []}}
            for n in ("a", "b")]},
        "state": "running", "input": {}, "context": {"ra": 1},
        "step_results": {"a": {"ra": 1}},
        "steps": [
            {"status": "completed", "attempts": 1, "compensation_attempts": 0,
             "last_failure": None},
            {"status": "running", "attempts": 1, "compensation_attempts": 0,
             "last_failure": None}],
        "created_ms": 0, "updated_ms": 0, "current": ["execute", 1, 1, True],
        "compensation_queue": [], "failure": None, "cancel_requested": False,
        "requires_manual_intervention": False, "completed_ms": 0, "request_fingerprint": "",
        "metadata": {},
    }  # fmt: skip
    ex = codec.execution_from_json(v1)
    assert ex.node(0).result == {"ra": 1}
    t = ok(ex, "old:x1:1", {"rb": 2})
    assert t.execution.state is State.COMPLETED
    assert t.execution.context == {"ra": 1, "rb": 2}


# -- budgets ----------------------------------------------------------------


def test_a_step_that_would_go_over_the_budget_is_not_started_and_compensates() -> None:
    from multiagents_server.engine import Budget, Usage

    spec = WorkflowSpec(
        "wf",
        1,
        (s("a", undo=True), StepSpec("b", "do_b", estimate=Usage(input_tokens=400))),
        budget=Budget(max_tokens=1000),
    )
    t = start(spec, transaction_id=TX, correlation_id="", input={}, now_ms=0)
    t = apply(t.execution, StepCompleted("tx:x0:1", {}, usage=Usage(300, 400)), 1)
    # 700 used + 400 reserved for b > 1000: b is not started.
    assert not [d for d in dispatched(t) if d.command_id.startswith("tx:x1")]
    assert t.execution.failure is not None
    assert t.execution.failure.type == "BudgetExceeded"
    assert "1100 tokens over the budget of 1000" in t.execution.failure.message
    assert ids(t) == ["tx:c0:1"]
    assert t.execution.usage_by_step["a"] == Usage(300, 400)


def test_running_attempts_reserve_their_estimate_until_they_report() -> None:
    from multiagents_server.engine import Budget, Usage

    body = StepSpec("item", "do_item", estimate=Usage(cost_nano_usd=40))
    spec = WorkflowSpec(
        "wf", 1, (MapSpec("each", "context.xs", body, 5),), budget=Budget(max_cost_nano_usd=100)
    )
    t = start(spec, transaction_id=TX, correlation_id="", input={"xs": [1, 2, 3]}, now_ms=0)
    # Two reservations of 40 fit in 100; a third would not: the map fails fast.
    assert t.execution.state is State.FAILED
    assert t.execution.failure is not None and t.execution.failure.type == "BudgetExceeded"
    # With the estimate replaced by a smaller reported cost, the third fits.
    t = start(spec, transaction_id=TX, correlation_id="", input={"xs": [1, 2]}, now_ms=0)
    assert ids(t) == ["tx:x1.0:1", "tx:x1.1:1"]
    t = apply(t.execution, StepCompleted("tx:x1.0:1", {}, usage=Usage(cost_nano_usd=10)), 1)
    t = apply(t.execution, StepCompleted("tx:x1.1:1", {}, usage=Usage(cost_nano_usd=10)), 1)
    assert t.execution.state is State.COMPLETED
