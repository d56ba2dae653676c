"""Step output streams: what workers publish while a step runs (LLM tokens,
partial JSON, log lines), stored in the execution's capped output stream
and followed by watchers.

Writing: a session's chunks go to the `OutputAppender`, which gathers the
chunks of each execution that arrive in one turn of the event loop and
appends them with one script call (the auto-pipeline sends the calls of
every execution in one round trip), one call in flight per execution so the
stream keeps the order the worker sent. `SessionOutput` checks each chunk
(the session must hold its command), and acknowledges the stored chunks
of a batch with one `OutputAck` per command. A command's answer is applied
only after its chunks are stored, so a watcher that sees the step end has
seen all of its output.

Reading: an `OutputCursor` reads the stream after an offset and turns the
entries into `StepOutput` messages, with a gap where the cap dropped
entries the reader had not seen (entries are numbered with no holes).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING

from multiagents.v1 import common_pb2
from multiagents.v1 import worker_service_pb2 as wpb
from multiagents.v1 import workflow_service_pb2 as pb
from multiagents_server.errors import InvalidArgument
from multiagents_server.store import OutputEntry, OutputRow, Store, StoreError

if TYPE_CHECKING:
    from multiagents_server.dispatcher import Session

log = logging.getLogger(__name__)

MAX_CHUNK_BYTES = 64 * 1024
READ_BATCH = 500
OFFSET = re.compile(r"\d{1,20}-\d{1,20}")
# Chunks kinds the server knows; others are refused.
KINDS = frozenset(common_pb2.OutputKind.values())


class OutputRefused(Exception):
    """A chunk was not stored; the message says why."""


def lane_of(command_id: str) -> tuple[str, int]:
    """A command id's lane (its step and kind: the id without transaction and
    attempt) and its attempt number."""
    head, _, attempt = command_id.rpartition(":")
    return head[head.rindex(":") + 1 :], int(attempt)


def transaction_of(command_id: str) -> str:
    return command_id.rsplit(":", 2)[0]


def check_offset(offset: str, field: str) -> str:
    if offset and not OFFSET.fullmatch(offset):
        raise InvalidArgument(f"{field}: {offset!r} is not an output offset (<ms>-<seq>)")
    return offset


def _offset_key(offset: str) -> tuple[int, int]:
    ms, _, seq = offset.partition("-")
    return int(ms), int(seq)


class OutputAppender:
    """Appends chunks in batches: per execution, one script call at a time."""

    def __init__(self, store: Store, cap: int) -> None:
        self._store = store
        self._cap = cap
        self._pending: dict[str, list[tuple[OutputRow, asyncio.Future[str]]]] = {}
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def append(self, transaction_id: str, row: OutputRow) -> asyncio.Future[str]:
        """The chunk's offset once stored; OutputRefused if it is not."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(transaction_id, []).append((row, future))
        if transaction_id not in self._busy:
            self._busy.add(transaction_id)
            task = asyncio.create_task(self._flush(transaction_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return future

    async def _flush(self, transaction_id: str) -> None:
        try:
            while batch := self._pending.pop(transaction_id, None):
                try:
                    offsets = await self._store.append_output(
                        transaction_id, [row for row, _ in batch], self._cap
                    )
                except StoreError as exc:
                    log.warning("cannot store output of %s: %s", transaction_id, exc)
                    _settle(batch, None, f"storage unavailable: {exc}")
                except Exception:
                    # Never leave a chunk unsettled: the command's answer waits for it.
                    log.exception("storing output of %s failed", transaction_id)
                    _settle(batch, None, "internal error")
                else:
                    reason = "execution not found" if offsets is None else "attempt superseded"
                    _settle(batch, offsets, reason)
        finally:
            self._busy.discard(transaction_id)

    async def stop(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _settle(
    batch: list[tuple[OutputRow, asyncio.Future[str]]], offsets: list[str] | None, reason: str
) -> None:
    for i, (_, future) in enumerate(batch):
        if future.done():
            continue
        if offsets is not None and offsets[i]:
            future.set_result(offsets[i])
        else:
            future.set_exception(OutputRefused(reason))


class SessionOutput:
    """The output chunks of one worker session: checked, appended, acknowledged."""

    def __init__(self, session: Session, appender: OutputAppender) -> None:
        self._session = session
        self._appender = appender
        # The last chunk sent for appending, per command (answers wait for it).
        self._last: dict[str, asyncio.Future[str]] = {}
        self._acks: dict[str, wpb.OutputAck] = {}
        self._ack_scheduled = False

    def chunk(self, chunk: wpb.OutputChunk) -> None:
        cid = chunk.command_id
        inflight = self._session.inflight.get(cid)
        if inflight is None:
            self._ack(wpb.OutputAck(command_id=cid, sequence=chunk.sequence,
                                    refused="command not held by this session"))  # fmt: skip
            return
        try:
            row = _row(chunk, inflight.step)
        except InvalidArgument as exc:
            self._ack(wpb.OutputAck(command_id=cid, sequence=chunk.sequence, refused=str(exc)))
            return
        future = self._appender.append(transaction_of(cid), row)
        self._last[cid] = future
        future.add_done_callback(lambda f: self._stored(cid, chunk.sequence, f))

    def _stored(self, command_id: str, sequence: int, future: asyncio.Future[str]) -> None:
        if self._last.get(command_id) is future:
            del self._last[command_id]
        error = future.exception()
        ack = wpb.OutputAck(command_id=command_id, sequence=sequence)
        if error is not None:
            ack.refused = str(error)
        else:
            ack.offset = future.result()
        self._ack(ack)

    def _ack(self, ack: wpb.OutputAck) -> None:
        """Queue an ack; the acks of one batch go out together, the latest
        per command (a refusal is kept over later acks of its command)."""
        previous = self._acks.get(ack.command_id)
        if previous is None or not previous.refused:
            self._acks[ack.command_id] = ack
        if not self._ack_scheduled:
            self._ack_scheduled = True
            asyncio.get_running_loop().call_soon(self._send_acks)

    def _send_acks(self) -> None:
        self._ack_scheduled = False
        acks, self._acks = self._acks, {}
        if self._session.closed:
            return
        for ack in acks.values():
            self._session.outgoing.put_nowait(wpb.ConnectResponse(output_ack=ack))

    async def settled(self, command_id: str) -> None:
        """Wait until the chunks sent so far for `command_id` are stored or refused."""
        last = self._last.get(command_id)
        if last is not None:
            await asyncio.wait({last})


def _row(chunk: wpb.OutputChunk, step: str) -> OutputRow:
    which = chunk.WhichOneof("data")
    if which is None:
        raise InvalidArgument("output_chunk.data: text or binary is required")
    data = chunk.text.encode() if which == "text" else chunk.binary
    if len(data) > MAX_CHUNK_BYTES:
        raise InvalidArgument(
            f"output_chunk.{which}: {len(data)} bytes, over the limit of {MAX_CHUNK_BYTES}"
        )
    if chunk.kind not in KINDS:
        raise InvalidArgument(f"output_chunk.kind: unknown value {chunk.kind}")
    lane, attempt = lane_of(chunk.command_id)
    return OutputRow(
        lane=lane,
        attempt=attempt,
        step=step,
        compensation=lane.startswith("c"),
        kind=chunk.kind or common_pb2.OUTPUT_KIND_TOKEN,
        data=data,
        binary=which == "binary",
    )


class OutputCursor:
    """Reads an execution's output stream after an offset, in order, each
    entry once; `step` keeps only that step's entries."""

    def __init__(self, store: Store, transaction_id: str, after: str, step: str = "") -> None:
        self._store = store
        self._tx = transaction_id
        self.after = after
        self._step = step
        self._number: int | None = None  # number of the entry at `after`, when known

    async def read(self) -> list[pb.StepOutput]:
        """Everything stored after the cursor, and moves past it."""
        out: list[pb.StepOutput] = []
        while True:
            entries = await self._store.read_output(self._tx, self.after, READ_BATCH)
            if not entries:
                return out
            out += await self._gap(entries[0])
            for entry in entries:
                self._number = entry.number
                if not self._step or entry.step == self._step:
                    out.append(step_output(entry))
            self.after = entries[-1].offset
            if len(entries) < READ_BATCH:
                return out

    async def _gap(self, first: OutputEntry) -> list[pb.StepOutput]:
        """A gap before `first` if the cap dropped entries this reader missed."""
        if self._number is not None:
            dropped = first.number - self._number - 1
        elif not self.after:
            dropped = first.number - 1
        elif first.number == 1:
            dropped = 0
        else:
            # Resumed from an offset: if that entry is gone, some may be too.
            head = await self._store.first_output(self._tx)
            if head is None or _offset_key(head.offset) <= _offset_key(self.after):
                return []
            return [_gap_output(first, 0)]
        return [_gap_output(first, dropped)] if dropped > 0 else []


def _gap_output(first: OutputEntry, dropped: int) -> pb.StepOutput:
    out = pb.StepOutput(offset=first.offset, sequence=first.number)
    out.gap.dropped = dropped
    out.time.FromMilliseconds(_offset_key(first.offset)[0])
    return out


def step_output(entry: OutputEntry) -> pb.StepOutput:
    out = pb.StepOutput(
        offset=entry.offset,
        step=entry.step,
        attempt=entry.attempt,
        compensation=entry.compensation,
        sequence=entry.number,
    )
    out.time.FromMilliseconds(_offset_key(entry.offset)[0])
    if entry.rewind:
        out.rewind.SetInParent()
    elif entry.binary:
        out.chunk.kind = entry.kind  # type: ignore[assignment]
        out.chunk.binary = entry.data
    else:
        out.chunk.kind = entry.kind  # type: ignore[assignment]
        out.chunk.text = entry.data.decode()
    return out
