"""What an operator can do to one execution from its page. Each action is a
form on the page and one call of the API with the user's token.

Extension point: an action the API gains is one more `Action` in
`ACTIONS`: the page shows its form while the execution is in one of
`states`, and POST /executions/{id}/actions/{name} runs it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from multiagents_server.web.backend import Backend

MAX_FIELD_CHARS = 4_096


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    required: bool = False


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    # The states (present.STATES names) in which the action is offered.
    states: frozenset[str]
    fields: tuple[Field, ...]
    # Runs the action: (backend, token, transaction id, form values) -> a
    # message for the user. gRPC errors propagate (the view answers them).
    run: Callable[[Backend, str | None, str, Mapping[str, str]], Awaitable[str]]
    # Styles the button: "danger" for what cannot be undone.
    tone: str = ""


class ActionInputError(ValueError):
    """A form value is missing or too long; the message names the field."""


def form_values(action: Action, body: object) -> dict[str, str]:
    """The action's fields from a JSON request body, checked."""
    if not isinstance(body, dict):
        raise ActionInputError("body: expected a JSON object of the form's fields")
    values: dict[str, str] = {}
    for f in action.fields:
        value = body.get(f.name, "")
        if not isinstance(value, str):
            raise ActionInputError(f"{f.name}: expected a string")
        if f.required and not value.strip():
            raise ActionInputError(f"{f.name}: required")
        if len(value) > MAX_FIELD_CHARS:
            raise ActionInputError(f"{f.name}: at most {MAX_FIELD_CHARS} characters")
        values[f.name] = value
    return values


async def _cancel(backend: Backend, token: str | None, tx: str, form: Mapping[str, str]) -> str:
    await backend.cancel(token, tx, form.get("reason", ""))
    return "cancellation requested: the running step is cancelled, completed steps compensated"


def _payload(form: Mapping[str, str]) -> object:
    text = form.get("payload", "").strip()
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ActionInputError(f"payload: not JSON: {exc.msg} at character {exc.pos}") from None


async def _signal(backend: Backend, token: str | None, tx: str, form: Mapping[str, str]) -> str:
    await backend.signal(token, tx, form["signal"].strip(), _payload(form))
    return f"signal {form['signal'].strip()} sent"


def _approval(
    approved: bool,
) -> Callable[[Backend, str | None, str, Mapping[str, str]], Awaitable[str]]:
    async def run(backend: Backend, token: str | None, tx: str, form: Mapping[str, str]) -> str:
        payload = {"approved": approved, "comment": form.get("comment", "")}
        await backend.signal(token, tx, form["signal"].strip(), payload)
        return f"{'approved' if approved else 'rejected'} ({form['signal'].strip()})"

    return run


async def _resume(backend: Backend, token: str | None, tx: str, form: Mapping[str, str]) -> str:
    await backend.resume(token, tx)
    return "resumed: the failed step runs again"


WAITING = frozenset({"pending", "running"})

ACTIONS: tuple[Action, ...] = (
    Action(
        name="cancel",
        label="Cancel",
        states=frozenset({"pending", "running"}),
        fields=(Field("reason", "Reason"),),
        run=_cancel,
        tone="danger",
    ),
    Action(
        name="approve",
        label="Approve",
        states=WAITING,
        fields=(Field("signal", "Approval signal", required=True), Field("comment", "Comment")),
        run=_approval(True),
    ),
    Action(
        name="reject",
        label="Reject",
        states=WAITING,
        fields=(Field("signal", "Approval signal", required=True), Field("comment", "Comment")),
        run=_approval(False),
        tone="danger",
    ),
    Action(
        name="signal",
        label="Send signal",
        states=WAITING,
        fields=(Field("signal", "Signal", required=True), Field("payload", "Payload (JSON)")),
        run=_signal,
    ),
    Action(name="resume", label="Resume", states=frozenset({"failed"}), fields=(), run=_resume),
)
ACTIONS_BY_NAME = {a.name: a for a in ACTIONS}
