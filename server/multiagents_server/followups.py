"""Follow-ups: what a committed transition asks of other executions (start
or cancel a sub-workflow, answer the parent of a finished one), and their
stored form.

Everything a transition does to its own execution is in its one commit.
Work on another execution cannot be (it may live in another slot), so the
commit also stores these rows; they are carried out right after it and
cleared, and a flush timer set by the same commit makes some replica carry
them out if this one dies first. Each is idempotent: a child is created
only once (its id is deterministic), a cancel of a finished child is a
no-op, an answer to an attempt the parent has left is stale.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from multiagents import wire
from multiagents_server import engine


@dataclass(frozen=True, slots=True)
class AnswerParent:
    """The execution finished: report its outcome to the parent's step."""


Followup = engine.StartChild | engine.CancelChild | AnswerParent


def of_transition(transition: engine.Transition) -> tuple[Followup, ...]:
    """The follow-ups of a changed transition."""
    out: list[Followup] = [
        e for e in transition.effects if isinstance(e, engine.StartChild | engine.CancelChild)
    ]
    ex = transition.execution
    if ex.state.terminal and ex.parent_transaction_id:
        out.append(AnswerParent())
    return tuple(out)


def encode(followups: tuple[Followup, ...]) -> bytes | None:
    """The stored form of `followups`; None when there are none."""
    if not followups:
        return None
    rows: list[list[Any]] = []
    for f in followups:
        match f:
            case engine.StartChild():
                rows.append(["w", f.command_id, f.workflow, f.version, f.child_transaction_id])
            case engine.CancelChild():
                rows.append(["k", f.child_transaction_id, f.reason])
            case AnswerParent():
                rows.append(["p"])
    return wire.dumps(rows)


def decode(raw: bytes, ex: engine.Execution) -> tuple[Followup, ...]:
    """The follow-ups stored as `raw`; a child's input is the context its
    step was given in the stored `ex` (it does not change while the step
    waits for the child)."""
    rows: list[list[Any]] = json.loads(raw)
    out: list[Followup] = []
    for row in rows or []:
        match row:
            case ["w", cid, workflow, version, child]:
                context = engine.command_context(ex, cid)
                out.append(engine.StartChild(cid, workflow, version, child, context))
            case ["k", child, reason]:
                out.append(engine.CancelChild(child, reason))
            case ["p"]:
                out.append(AnswerParent())
    return tuple(out)
