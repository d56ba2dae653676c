"""The executions list: filters the API does not have (time range, text on
the transaction or correlation id) applied over ListWorkflows pages, the
dashboard's own paging cursor, and the counts per state."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import grpc

from multiagents.v1 import common_pb2, workflow_pb2
from multiagents_server.web.backend import Backend
from multiagents_server.web.present import STATE_NUMBERS, STATES, ms

# Executions read from ListWorkflows per call while searching or counting.
SCAN_PAGE = 500
# A search stops after reading this many executions without filling the page.
SEARCH_SCAN_LIMIT = 5_000
# The counts per state are taken over at most this many (the newest) executions.
COUNT_SCAN_LIMIT = 2_000
PAGE_SIZES = (20, 50, 100)


class FilterError(ValueError):
    """A filter of the query string is malformed; the message names it."""


@dataclass(frozen=True)
class Filters:
    state: str = ""
    name: str = ""
    since_ms: int = 0
    until_ms: int = 0
    text: str = ""
    page_size: int = PAGE_SIZES[0]

    def matches(self, status: workflow_pb2.WorkflowStatus) -> bool:
        created = ms(status.created_at)
        if self.since_ms and created < self.since_ms:
            return False
        if self.until_ms and created > self.until_ms:
            return False
        text = self.text.lower()
        return (
            not text
            or text in status.transaction_id.lower()
            or (text in status.correlation_id.lower())
        )

    @property
    def local(self) -> bool:
        """Whether filters the API does not apply are set (applied here)."""
        return bool(self.text or self.since_ms or self.until_ms)

    @property
    def state_number(self) -> int:
        return STATE_NUMBERS.get(self.state, common_pb2.WORKFLOW_STATE_UNSPECIFIED)


def _time(params: Mapping[str, str], key: str) -> int:
    """A `YYYY-MM-DDTHH:MM[:SS]` UTC time of the query string, in ms (0: none)."""
    value = params.get(key, "").strip()
    if not value:
        return 0
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(
            f"{key}: expected a UTC time like 2026-01-31T12:00, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def parse_filters(params: Mapping[str, str]) -> Filters:
    state = params.get("state", "").strip().lower()
    if state and state not in STATE_NUMBERS:
        raise FilterError(f"state: expected one of {', '.join(STATES.values())}, got {state!r}")
    size_text = params.get("page_size", "") or str(PAGE_SIZES[0])
    if not size_text.isdigit() or int(size_text) not in PAGE_SIZES:
        raise FilterError(f"page_size: expected one of {PAGE_SIZES}, got {size_text!r}")
    filters = Filters(
        state=state,
        name=params.get("workflow", "").strip(),
        since_ms=_time(params, "since"),
        until_ms=_time(params, "until"),
        text=params.get("q", "").strip(),
        page_size=int(size_text),
    )
    if filters.since_ms and filters.until_ms and filters.since_ms > filters.until_ms:
        raise FilterError("until: must not be before since")
    return filters


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: the ListWorkflows page token to read, and the id
    of the last execution shown (the page resumes right after it)."""

    page_token: str = ""
    after: str = ""

    def encode(self) -> str:
        raw = json.dumps([self.page_token, self.after]).encode()
        return base64.urlsafe_b64encode(raw).decode()

    @staticmethod
    def decode(text: str) -> Cursor:
        if not text:
            return Cursor()
        try:
            token, after = json.loads(base64.urlsafe_b64decode(text.encode()))
        except (binascii.Error, ValueError, TypeError):
            raise FilterError("cursor: malformed; use the Next link") from None
        if not isinstance(token, str) or not isinstance(after, str):
            raise FilterError("cursor: malformed; use the Next link")
        return Cursor(token, after)


@dataclass
class Page:
    rows: list[workflow_pb2.WorkflowStatus]
    next: Cursor | None
    # True when the search stopped at SEARCH_SCAN_LIMIT before the page was full.
    scan_limited: bool = False


async def search(backend: Backend, token: str | None, filters: Filters, cursor: Cursor) -> Page:
    """One page of executions, newest first, matching `filters`. A search
    text that is a whole transaction id finds that execution directly."""
    if filters.text and cursor == Cursor():
        try:
            found = await backend.status(token, filters.text)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise
        else:
            state_ok = not filters.state or found.state == filters.state_number
            name_ok = not filters.name or found.workflow_name == filters.name
            return Page([found] if state_ok and name_ok and filters.matches(found) else [], None)
    rows: list[workflow_pb2.WorkflowStatus] = []
    page_token, after = cursor.page_token, cursor.after
    # Without local filters every execution the API returns is shown: read
    # a page and the one after the last shown (a Next link only if it exists).
    batch_size = SCAN_PAGE if filters.local else filters.page_size + 1
    scanned = 0
    while scanned < SEARCH_SCAN_LIMIT:
        batch, next_token = await backend.executions(
            token, state=filters.state_number, name=filters.name,
            page_size=batch_size, page_token=page_token,
        )  # fmt: skip
        start = 0
        if after:
            ids = [s.transaction_id for s in batch]
            start = ids.index(after) + 1 if after in ids else 0
            after = ""
        for i, status in enumerate(batch[start:], start):
            scanned += 1
            if filters.since_ms and ms(status.created_at) < filters.since_ms:
                return Page(rows, None)  # newest first: nothing older matches
            if filters.matches(status):
                rows.append(status)
                if len(rows) == filters.page_size:
                    more = i + 1 < len(batch) or bool(next_token)
                    return Page(rows, Cursor(page_token, status.transaction_id) if more else None)
        if not next_token:
            return Page(rows, None)
        page_token = next_token
    return Page(rows, Cursor(page_token, ""), scan_limited=True)


@dataclass
class Counts:
    by_state: dict[str, int]
    # True when more executions exist than were counted (COUNT_SCAN_LIMIT).
    capped: bool

    @property
    def total(self) -> int:
        return sum(self.by_state.values())


async def count_states(backend: Backend, token: str | None, filters: Filters) -> Counts:
    """Executions per state under the name, time and text filters (the state
    filter is not applied: every state is counted)."""
    counts = dict.fromkeys(STATES.values(), 0)
    page_token, scanned = "", 0
    while scanned < COUNT_SCAN_LIMIT:
        batch, page_token = await backend.executions(
            token, state=common_pb2.WORKFLOW_STATE_UNSPECIFIED, name=filters.name,
            page_size=min(SCAN_PAGE, COUNT_SCAN_LIMIT - scanned), page_token=page_token,
        )  # fmt: skip
        for status in batch:
            scanned += 1
            if filters.since_ms and ms(status.created_at) < filters.since_ms:
                return Counts(counts, False)
            if filters.matches(status):
                counts[STATES.get(status.state, "pending")] += 1
        if not page_token:
            return Counts(counts, False)
    return Counts(counts, True)
