"""Stored follow-ups decode to exactly the follow-ups of the transition."""

from __future__ import annotations

from multiagents_server import engine, followups
from multiagents_server.engine import CancelRequested, StepSpec, WorkflowSpec, apply, start


def test_every_kind_of_followup_round_trips_with_the_context_from_the_execution() -> None:
    spec = WorkflowSpec("wf", 1, (StepSpec("a", "", workflow="child", workflow_version=3),))
    child_of = dict(parent_transaction_id="p", parent_command_id="p:x0:1")
    started = start(spec, transaction_id="tx", correlation_id="", input={"k": 1}, now_ms=0,
                    **child_of)  # fmt: skip
    cancelled = apply(started.execution, CancelRequested("stop"), 20)
    seen: set[type] = set()
    for transition in (started, cancelled):
        found = followups.of_transition(transition)
        seen |= {type(f) for f in found}
        raw = followups.encode(found)
        assert raw is not None
        assert followups.decode(raw, transition.execution) == found
    assert seen == {engine.StartChild, engine.CancelChild, followups.AnswerParent}


def test_a_transition_without_followups_stores_none() -> None:
    spec = WorkflowSpec("wf", 1, (StepSpec("a", "worker-a"),))
    first = start(spec, transaction_id="tx", correlation_id="", input={}, now_ms=0)
    assert followups.of_transition(first) == ()
    assert followups.encode(()) is None
