"""The stored form of a transition's effects (the outbox).

Compact JSON rows, one per effect. A dispatched command's context is not
repeated: it equals the stored execution's context, since nothing changes
the context after a dispatch within one transition.
"""

from __future__ import annotations

import json
from typing import Any

from multiagents import _payload
from multiagents_server import engine


def encode(effects: tuple[engine.Effect, ...]) -> bytes | None:
    """The outbox of `effects`; None when there is nothing to carry out."""
    if not effects:
        return None
    rows: list[list[Any]] = []
    for e in effects:
        match e:
            case engine.DispatchCommand():
                rows.append(
                    ["d", e.command_id, e.kind.value, e.worker, e.step, e.attempt,
                     e.deadline_ms, e.heartbeat_timeout_ms]
                )  # fmt: skip
            case engine.ScheduleTimer():
                rows.append(["s", e.timer_id, e.due_ms])
            case engine.CancelTimer():
                rows.append(["u", e.timer_id])
            case engine.CancelCommand():
                rows.append(["c", e.command_id, e.reason])
            case engine.StartChild():
                rows.append(["w", e.command_id, e.workflow, e.version, e.child_transaction_id])
            case engine.CancelChild():
                rows.append(["k", e.child_transaction_id, e.reason])
    return _payload.dumps(rows)


def decode(raw: bytes, ex: engine.Execution) -> tuple[engine.Effect, ...]:
    """The effects of a stored outbox; contexts come from the stored `ex`."""
    rows: list[list[Any]] = json.loads(raw)
    effects: list[engine.Effect] = []
    for row in rows or []:
        match row:
            case ["d", cid, kind, worker, step, attempt, deadline, heartbeat]:
                effects.append(
                    engine.DispatchCommand(
                        cid, engine.CommandKind(kind), worker, step, attempt, ex.context,
                        deadline, heartbeat,
                    )
                )  # fmt: skip
            case ["s", timer, due]:
                effects.append(engine.ScheduleTimer(timer, due))
            case ["u", timer]:
                effects.append(engine.CancelTimer(timer))
            case ["c", cid, reason]:
                effects.append(engine.CancelCommand(cid, reason))
            case ["w", cid, workflow, version, child]:
                effects.append(engine.StartChild(cid, workflow, version, child, ex.context))
            case ["k", child, reason]:
                effects.append(engine.CancelChild(child, reason))
    return tuple(effects)
