"""The stored outbox decodes to exactly the effects that were encoded."""

from __future__ import annotations

from multiagents_server import engine, outbox_codec
from multiagents_server.engine import CancelRequested, StepSpec, WorkflowSpec, apply, start


def test_every_kind_of_effect_round_trips_with_the_context_from_the_execution() -> None:
    spec = WorkflowSpec(
        "wf",
        1,
        (
            StepSpec("a", "worker-a", compensation="undo-a", heartbeat_timeout_ms=500),
            StepSpec("b", "", workflow="child", workflow_version=3),
        ),
    )
    first = start(spec, transaction_id="tx", correlation_id="", input={"k": 1}, now_ms=0)
    second = apply(first.execution, engine.StepCompleted("tx:x0:1", {"r": 2}), 10)
    cancelled = apply(second.execution, CancelRequested("stop"), 20)
    for transition in (first, second, cancelled):
        raw = outbox_codec.encode(transition.effects)
        assert raw is not None
        assert outbox_codec.decode(raw, transition.execution) == transition.effects
    assert {type(e) for t in (first, second, cancelled) for e in t.effects} == {
        engine.DispatchCommand, engine.ScheduleTimer, engine.CancelTimer,
        engine.StartChild, engine.CancelChild,
    }  # fmt: skip


def test_no_effects_store_no_outbox() -> None:
    assert outbox_codec.encode(()) is None
