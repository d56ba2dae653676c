"""Token and cost accounting: the `Usage` value and its arithmetic, and
the `Budget` an execution may use.

A worker reports what an attempt used with its answer (result or failure);
the engine adds it to the step's sum when it accepts the answer (the answer
of the current attempt; a stale or duplicate answer changes nothing, so it
is not counted twice). The execution's total is the sum of its steps. Cost
is an integer of nano-US-dollars, so sums are exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from multiagents_server.engine.model import Execution


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


@dataclass(frozen=True, slots=True)
class Budget:
    """What an execution may use in all: tokens (input + output) and cost;
    0 is no limit."""

    max_tokens: int = 0
    max_cost_nano_usd: int = 0

    def __bool__(self) -> bool:
        return bool(self.max_tokens or self.max_cost_nano_usd)

    def exceeded_by(self, used: Usage) -> str:
        """What `used` goes over, in words; '' when within."""
        tokens = used.input_tokens + used.output_tokens
        if self.max_tokens and tokens > self.max_tokens:
            return f"{tokens} tokens over the budget of {self.max_tokens}"
        if self.max_cost_nano_usd and used.cost_nano_usd > self.max_cost_nano_usd:
            return f"cost {used.cost_nano_usd} nano-USD over the budget of {self.max_cost_nano_usd}"
        return ""


NO_USAGE = Usage()
NO_BUDGET = Budget()


def total(ex: Execution) -> Usage:
    """The execution's usage: the sum over its steps."""
    out = Usage()
    for step in ex.usage_by_step.values():
        out += step
    return out


def add(by_step: dict[str, Usage], step: str, reported: Usage | None) -> dict[str, Usage]:
    """`by_step` with `reported` added to `step`'s sum (a new dict)."""
    if not reported:
        return by_step
    out = dict(by_step)
    out[step] = out.get(step, Usage()) + reported
    return out


def to_json(u: Usage) -> dict[str, Any]:
    return {
        "in": u.input_tokens,
        "out": u.output_tokens,
        "cost": u.cost_nano_usd,
        "models": list(u.models),
    }


def from_json(d: dict[str, Any]) -> Usage:
    return Usage(d["in"], d["out"], d["cost"], tuple(d["models"]))


def budget_to_json(b: Budget) -> list[int]:
    return [b.max_tokens, b.max_cost_nano_usd]


def budget_from_json(d: list[int] | None) -> Budget:
    return Budget(*d) if d else Budget()
