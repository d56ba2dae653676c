"""Token and cost accounting: the `Usage` value and its arithmetic.

A worker reports what an attempt used with its answer (result or failure);
the engine adds it to the step's sum when it accepts the answer (the answer
of the current attempt; a stale or duplicate answer changes nothing, so it
is not counted twice). The execution's total is the sum of its steps. Cost
is an integer of nano-US-dollars, so sums are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiagents_server.engine.model import Event, Execution, Transition


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and cost; `models` are the distinct models that contributed."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_nano_usd: int = 0
    models: tuple[str, ...] = ()

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cost_nano_usd + other.cost_nano_usd,
            tuple(sorted({*self.models, *other.models})),
        )

    def __bool__(self) -> bool:
        return bool(self.input_tokens or self.output_tokens or self.cost_nano_usd or self.models)


def total(ex: Execution) -> Usage:
    """The execution's usage: the sum over its steps."""
    out = Usage()
    for step in ex.usage_by_step.values():
        out += step
    return out


def account(before: Execution, event: Event, transition: Transition) -> Transition:
    """Add the usage an accepted answer reports to the step it answers (by
    the step's path; a map item's usage goes to its item path)."""
    # Imported here: model imports this module (for the Usage of its events).
    from multiagents_server.engine.model import parse_command_id

    reported: Usage | None = getattr(event, "usage", None)
    if not reported or not transition.changed:
        return transition
    parsed = parse_command_id(getattr(event, "command_id", ""))
    if parsed is None:
        return transition
    step = before.path_of(parsed[2])
    by_step = dict(transition.execution.usage_by_step)
    by_step[step] = by_step.get(step, Usage()) + reported
    return replace(transition, execution=replace(transition.execution, usage_by_step=by_step))


def to_json(u: Usage) -> dict[str, Any]:
    return {
        "in": u.input_tokens,
        "out": u.output_tokens,
        "cost": u.cost_nano_usd,
        "models": list(u.models),
    }


def from_json(d: dict[str, Any]) -> Usage:
    return Usage(d["in"], d["out"], d["cost"], tuple(d["models"]))
