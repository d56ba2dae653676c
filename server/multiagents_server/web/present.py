"""What the pages show, computed from the API's messages: payloads as
pretty JSON, the step timeline (one bar per attempt), the definition's graph
with the current position, tokens and cost, the steps' output as the page
applies it. Pure functions (and the output feed's small state); the
templates only lay them out."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from google.protobuf import duration_pb2, json_format, timestamp_pb2

from multiagents.v1 import common_pb2, events_pb2, workflow_pb2
from multiagents.v1 import monitoring_service_pb2 as mpb
from multiagents.v1 import workflow_service_pb2 as pb

# A payload longer than this (pretty-printed characters) is shown cut, with a
# button that loads the whole of it.
PREVIEW_CHARS = 2_000

STATES = {
    v.number: v.name.removeprefix("WORKFLOW_STATE_").lower()
    for v in common_pb2.WorkflowState.DESCRIPTOR.values
    if v.number
}
STATE_NUMBERS = {name: number for number, name in STATES.items()}
TERMINAL_STATES = frozenset({"completed", "failed", "compensated", "cancelled"})
STEP_STATUSES = {
    v.number: v.name.removeprefix("STEP_STATUS_").lower()
    for v in workflow_pb2.StepStatus.DESCRIPTOR.values
}

WORKER_HEALTH = {
    v.number: v.name.removeprefix("WORKER_HEALTH_").lower()
    for v in mpb.WorkerHealth.DESCRIPTOR.values
}


def state_name(state: int) -> str:
    return STATES.get(state, "unspecified")


def ms(ts: timestamp_pb2.Timestamp) -> int:
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def when(ts: timestamp_pb2.Timestamp) -> str:
    """A timestamp as `YYYY-MM-DD HH:MM:SS` UTC, or "" when unset."""
    if not ts.seconds and not ts.nanos:
        return ""
    return datetime.fromtimestamp(ts.seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(millis: int) -> str:
    """`850 ms`, `12.3 s`, `4 min 05 s`, `2 h 07 min`."""
    if millis < 1000:
        return f"{max(millis, 0)} ms"
    if millis < 60_000:
        return f"{millis / 1000:.1f} s"
    seconds = millis // 1000
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


# -- payloads -------------------------------------------------------------------------


@dataclass(frozen=True)
class JsonView:
    """A payload pretty-printed; `preview` is all of it unless `truncated`."""

    preview: str
    truncated: bool
    size: int


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def payload_json(payload: common_pb2.Payload) -> str:
    """The payload's JSON pretty-printed, or its bytes shown as text when
    it is not JSON (a payload of another encoding is still shown)."""
    if not payload.data:
        return "null"
    try:
        return pretty(json.loads(payload.data))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return payload.data.decode(errors="replace")


def json_view(text: str) -> JsonView:
    if len(text) <= PREVIEW_CHARS:
        return JsonView(text, False, len(text))
    return JsonView(text[:PREVIEW_CHARS], True, len(text))


# -- usage --------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageView:
    """A Usage as shown: token counts with separators, cost in US dollars
    (as `multiagents status` prints it)."""

    input_tokens: int
    output_tokens: int
    model: str
    cost_nano_usd: int

    @property
    def inputs(self) -> str:
        return f"{self.input_tokens:,}"

    @property
    def outputs(self) -> str:
        return f"{self.output_tokens:,}"

    @property
    def tokens(self) -> str:
        return f"{self.input_tokens + self.output_tokens:,}"

    @property
    def cost(self) -> str:
        return f"${self.cost_nano_usd / 1_000_000_000:.6f}"

    @property
    def short(self) -> str:
        """`1,234 tokens · $0.002000`, for the list's column."""
        return f"{self.tokens} tokens · {self.cost}"


def usage_view(usage: common_pb2.Usage) -> UsageView | None:
    """None when nothing was reported (an unset field reads as all zero)."""
    if usage == common_pb2.Usage():
        return None
    return UsageView(usage.input_tokens, usage.output_tokens, usage.model, usage.cost_nano_usd)


def usage_table(status: workflow_pb2.WorkflowStatus) -> dict[str, Any] | None:
    """The execution page's usage: each step that reported some (by path),
    the execution's total, and the total of every execution of its workflow
    name (GetStatus sets it only when this execution reported usage)."""
    total = usage_view(status.usage)
    if total is None:
        return None
    return {
        "steps": [(s.path or s.name, view) for s in status.steps if (view := usage_view(s.usage))],
        "total": total,
        "workflow": usage_view(status.workflow_usage),
    }


# -- the steps' output ----------------------------------------------------------------

# An epoch (one attempt of a step) shows at most twice this many characters;
# beyond, the page keeps the last this many and a button loads the rest.
OUTPUT_TAIL_CHARS = 2_000
# The protocol's output offsets: "<ms>-<n>" (a Redis stream id).
OUTPUT_OFFSET = re.compile(r"\d{1,20}-\d{1,20}")


def offset_key(offset: str) -> tuple[int, int]:
    ms_part, _, seq = offset.partition("-")
    return int(ms_part), int(seq)


def output_text(chunk: pb.StepOutputChunk) -> str:
    """A chunk as the page shows it: its text, or a note for bytes."""
    if chunk.WhichOneof("data") == "binary":
        return f"[{len(chunk.binary)} bytes of binary output]\n"
    return chunk.text


Epoch = tuple[str, bool, int]  # step path, compensation, attempt


class OutputFeed:
    """StepOutput entries of one execution turned into the parts the
    execution page's output card applies (static/dashboard.js), JSON-ready:

    - `{"type": "text", step, compensation, attempt, text}`: append `text`
      to that epoch (one attempt of the step or of its compensation); the
      text of one batch is merged per epoch. With `"cut": true`, `text` is
      the epoch's last OUTPUT_TAIL_CHARS characters and replaces what is
      shown, and `expand` is the URL of the whole epoch up to here.
    - `{"type": "rewind", step, compensation, attempt}`: that attempt starts
      over; the page sets the earlier attempts' text apart (never spliced).
    - `{"type": "gap", "dropped": n}`: the stream's cap dropped entries the
      page had not read (n = 0: unknown).

    An epoch shows between OUTPUT_TAIL_CHARS and twice that many characters
    once it has more: a late page load gets a long backlog cut, and a long
    live stream keeps the page's text bounded."""

    def __init__(self, transaction_id: str) -> None:
        self.transaction_id = transaction_id
        self._shown: dict[Epoch, str] = {}  # what the page shows of each epoch

    def parts(self, outputs: Iterable[pb.StepOutput]) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        texts: dict[Epoch, tuple[dict[str, Any], list[str]]] = {}
        last: dict[Epoch, str] = {}
        for o in outputs:
            kind = o.WhichOneof("entry")
            if kind == "gap":
                parts.append({"type": "gap", "dropped": o.gap.dropped})
                continue
            epoch = (o.step, o.compensation, o.attempt)
            where = {"step": o.step, "compensation": o.compensation, "attempt": o.attempt}
            if kind == "rewind":
                for earlier in [e for e in self._shown if e[:2] == epoch[:2] and e[2] < o.attempt]:
                    del self._shown[earlier]
                parts.append({"type": "rewind", **where})
            elif kind == "chunk":
                if epoch not in texts:
                    texts[epoch] = ({"type": "text", **where}, [])
                    parts.append(texts[epoch][0])
                texts[epoch][1].append(output_text(o.chunk))
                last[epoch] = o.offset
        for epoch, (part, pieces) in texts.items():
            new = "".join(pieces)
            shown = self._shown.get(epoch, "")
            if len(shown) + len(new) <= 2 * OUTPUT_TAIL_CHARS:
                part["text"] = new
                self._shown[epoch] = shown + new
                continue
            tail = (shown[-OUTPUT_TAIL_CHARS:] + new[-OUTPUT_TAIL_CHARS:])[-OUTPUT_TAIL_CHARS:]
            part.update(text=tail, cut=True, expand=self.expand_url(epoch, last[epoch]))
            self._shown[epoch] = tail
        return parts

    def expand_url(self, epoch: Epoch, until: str) -> str:
        step, compensation, attempt = epoch
        query = {"step": step, "attempt": attempt, "compensation": int(compensation),
                 "until": until}  # fmt: skip
        return f"/executions/{quote(self.transaction_id)}/output?{urlencode(query)}"


def output_json(parts: list[dict[str, Any]]) -> str:
    """Parts as JSON with <, > and & escaped: text to set as text, never as markup."""
    text = json.dumps(parts, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# -- the timeline ---------------------------------------------------------------------


@dataclass
class Attempt:
    """One attempt of a step or of its compensation: a bar of the timeline."""

    step: str
    worker: str
    compensation: bool
    number: int
    start_ms: int
    end_ms: int | None = None
    # running, succeeded, retried (failed and retried), failed, abandoned
    # (no result: the execution was cancelled or ended meanwhile)
    outcome: str = "running"
    message: str = ""
    left: float = 0.0
    width: float = 0.0

    @property
    def label(self) -> str:
        what = "compensation" if self.compensation else "attempt"
        return f"{what} {self.number}"


@dataclass
class Timeline:
    attempts: list[Attempt]
    start_ms: int
    span_ms: int

    @property
    def span(self) -> str:
        return duration(self.span_ms)


def timeline(
    history: list[events_pb2.WorkflowEvent], status: workflow_pb2.WorkflowStatus, now_ms: int
) -> Timeline:
    """The attempts of `history` as bars placed on one time axis.

    An attempt starts with a command (or compensation) event and ends with
    the result or error event of the same command id. One still open when the
    execution is terminal ended with it, without a result (abandoned)."""
    by_command: dict[str, Attempt] = {}
    counts: dict[tuple[str, bool], int] = {}
    for event in history:
        kind = event.WhichOneof("event")
        if kind in ("command", "compensation"):
            body = event.command if kind == "command" else event.compensation
            # The path tells apart the items of a map and the steps of branches.
            where = body.path or body.step
            key = (where, kind == "compensation")
            counts[key] = counts.get(key, 0) + 1
            by_command[body.command_id] = Attempt(
                step=where,
                worker=body.worker_name,
                compensation=kind == "compensation",
                number=counts[key],
                start_ms=ms(body.timestamp),
            )
        elif kind == "result" and event.result.command_id in by_command:
            attempt = by_command[event.result.command_id]
            attempt.end_ms = ms(event.result.timestamp)
            attempt.outcome = "succeeded" if event.result.success else "failed"
        elif kind == "error" and event.error.command_id in by_command:
            attempt = by_command[event.error.command_id]
            attempt.end_ms = ms(event.error.timestamp)
            attempt.outcome = "retried" if event.error.will_retry else "failed"
            attempt.message = f"{event.error.error.type}: {event.error.error.message}".strip(": ")
    attempts = sorted(by_command.values(), key=lambda a: a.start_ms)
    terminal = state_name(status.state) in TERMINAL_STATES
    end_of_all = ms(status.completed_at) or ms(status.updated_at) if terminal else now_ms
    for attempt in attempts:
        if attempt.end_ms is None and terminal:
            attempt.end_ms = max(end_of_all, attempt.start_ms)
            attempt.outcome = "abandoned"
    start = min((a.start_ms for a in attempts), default=ms(status.created_at))
    start = min(start, ms(status.created_at) or start)
    end = max([end_of_all, *(a.end_ms or now_ms for a in attempts)])
    span = max(end - start, 1)
    for attempt in attempts:
        finish = attempt.end_ms if attempt.end_ms is not None else now_ms
        attempt.left = 100 * (attempt.start_ms - start) / span
        # At least a sliver, so a 1 ms attempt is still seen.
        attempt.width = max(100 * (finish - attempt.start_ms) / span, 0.4)
    return Timeline(attempts, start, span)


# -- the graph ------------------------------------------------------------------------


@dataclass
class Node:
    """One node of a definition's graph, rendered by the recursive
    `graph_node` macro (templates/_graph.html).

    `kind` picks the drawing: a "sequence" is a column of its children; a
    node with children (parallel, map, condition, a wait with on-timeout
    steps) is a box holding them as side-by-side lanes, each a labelled
    sequence; other nodes ("step", "workflow", "wait", "sleep") are boxes.
    A lane's `current` marks the case a condition took. Adding a construct
    to the definition is one more case in `_node_of`."""

    kind: str
    label: str
    detail: str = ""
    status: str = ""
    current: bool = False
    link: str = ""
    children: list[Node] = field(default_factory=list)


def graph(
    definition: workflow_pb2.WorkflowDefinition,
    status: workflow_pb2.WorkflowStatus | None = None,
) -> Node:
    """The definition as a tree of nodes; with `status`, each node carries
    its status (found by its path, StepInfo.path) and the running ones are
    marked."""
    infos: dict[str, workflow_pb2.StepInfo] = {}
    running: set[str] = set()
    if status is not None:
        infos = {s.path or s.name: s for s in status.steps}
        if state_name(status.state) not in TERMINAL_STATES:
            running = {*status.running_steps, status.current_step} - {""}
    return Node(
        "sequence", definition.name, children=_sequence(definition.steps, "", infos, running)
    )


def _sequence(
    steps: Iterable[workflow_pb2.StepDefinition],
    prefix: str,
    infos: dict[str, workflow_pb2.StepInfo],
    running: set[str],
) -> list[Node]:
    return [_node_of(step, prefix, infos, running) for step in steps]


def _duration_ms(d: duration_pb2.Duration) -> int:
    return d.seconds * 1000 + d.nanos // 1_000_000


def _node_of(
    step: workflow_pb2.StepDefinition,
    prefix: str,
    infos: dict[str, workflow_pb2.StepInfo],
    running: set[str],
) -> Node:
    path = prefix + step.name
    info = infos.get(path)
    status = STEP_STATUSES.get(info.status, "") if info is not None else ""
    node = Node("step", step.name, status="" if status == "unspecified" else status)
    node.current = path in running
    inner = f"{path}/"
    if step.HasField("parallel"):
        policy = step.parallel.failure_policy
        node.kind = "parallel"
        node.detail = "parallel · " + (
            "wait for all"
            if policy == workflow_pb2.PARALLEL_FAILURE_POLICY_WAIT_ALL
            else "fail fast"
        )
        node.children = [
            Node(
                "sequence", b.name, children=_sequence(b.steps, f"{inner}{b.name}/", infos, running)
            )
            for b in step.parallel.branches
        ]
    elif step.HasField("map"):
        items = [s for p, s in infos.items() if p.startswith(inner) and p[len(inner) :].isdigit()]
        done = sum(STEP_STATUSES.get(s.status) == "completed" for s in items)
        node.kind = "map"
        node.detail = f"for each of {step.map.items} · {step.map.max_concurrency or 10} at once"
        if items:
            node.detail += f" · {done}/{len(items)} items done"
        node.children = [
            Node("sequence", "each item", children=[_node_of(step.map.step, inner, {}, set())])
        ]
    elif step.HasField("condition"):
        condition = step.condition
        taken = info.branch if info is not None else ""
        node.kind = "condition"
        node.detail = f"switch {condition.switch}" if condition.switch else "condition"
        for i, case in enumerate(condition.cases, 1):
            label = (
                f"= {json.dumps(json_format.MessageToDict(case.equals))}"
                if condition.switch
                else f"when {case.when}"
            )
            lane = Node("sequence", label, children=_sequence(case.steps, inner, infos, running))
            lane.current = taken == f"case {i}"
            node.children.append(lane)
        otherwise = Node(
            "sequence", "otherwise", children=_sequence(condition.otherwise, inner, infos, running)
        )
        otherwise.current = taken == "otherwise"
        node.children.append(otherwise)
    elif step.HasField("wait_for_signal"):
        wait = step.wait_for_signal
        node.kind = "wait"
        node.detail = ("approval" if wait.approval else "signal") + f" {wait.signal}"
        if wait.HasField("timeout"):
            node.detail += f" · times out after {duration(_duration_ms(wait.timeout))}"
        if wait.on_timeout:
            node.children = [
                Node("sequence", "on timeout",
                     children=_sequence(wait.on_timeout, inner, infos, running))
            ]  # fmt: skip
    elif step.HasField("sleep"):
        node.kind = "sleep"
        node.detail = f"sleeps {duration(_duration_ms(step.sleep.duration))}"
    elif step.workflow:
        version = f" v{step.workflow_version}" if step.workflow_version else ""
        node.kind = "workflow"
        node.detail = f"sub-workflow {step.workflow}{version}"
        node.link = f"/definitions/{step.workflow}"
        if step.workflow_version:
            node.link += f"?version={step.workflow_version}"
        if info is not None and info.child_transaction_id:
            node.link = f"/executions/{info.child_transaction_id}"
    else:
        node.detail = step.worker
        if step.compensation:
            node.detail += f" · undo: {step.compensation}"
        if info is not None and info.attempts > 1:
            node.detail += f" · {info.attempts} attempts"
    return node


# -- history --------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    sequence: int
    kind: str
    step: str
    at: str
    summary: str


def history_rows(history: list[events_pb2.WorkflowEvent]) -> list[HistoryRow]:
    """One line per event of the execution's history, in order."""
    rows = []
    for event in history:
        kind = event.WhichOneof("event") or ""
        step, summary, at = "", "", ""
        if kind == "command":
            c = event.command
            step, at = c.step, when(c.timestamp)
            summary = f"dispatched to {c.worker_name}"
            if c.retry_count:
                summary += f" (retry {c.retry_count})"
            if c.child_transaction_id:
                summary += f", child execution {c.child_transaction_id}"
        elif kind == "result":
            r = event.result
            step, at = r.step, when(r.timestamp)
            what = "compensated" if r.compensation else "completed"
            summary = f"{what} by {r.worker_name}" if r.success else f"failed on {r.worker_name}"
        elif kind == "error":
            e = event.error
            step, at = e.step, when(e.timestamp)
            summary = f"{e.error.type or 'error'}: {e.error.message}"
            if e.compensation:
                summary = f"compensation {summary}"
            summary += " (will retry)" if e.will_retry else ""
        elif kind == "compensation":
            c2 = event.compensation
            step, at = c2.step, when(c2.timestamp)
            summary = f"compensation dispatched to {c2.worker_name}"
        elif kind == "status":
            s = event.status
            step, at = s.current_step, when(s.timestamp)
            summary = f"state {state_name(s.state)}"
            if s.failure.message:
                summary += f": {s.failure.message}"
        rows.append(HistoryRow(event.sequence, kind, step, at, summary))
    return rows
