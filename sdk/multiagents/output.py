"""Streaming a step's output and reporting its usage, from inside a worker.

    @worker("writer")
    async def writer(ctx):
        async for token in llm.stream(ctx["prompt"]):
            await multiagents.emit(token)
        multiagents.report_usage(input_tokens=12, output_tokens=340,
                                 model="openai/gpt-4o-mini", cost_usd=0.0002)
        return {"text": ...}

`emit` sends a chunk over the worker's session; the server appends it to
the execution's durable output stream, which `multiagents watch` and
`Client.stream_output` follow. It returns once the chunk is handed to the
session (it does not wait for the server's acknowledgement) unless more
than `MAX_UNACKED` chunks of the command are not acknowledged yet, which
bounds the memory a fast producer can take. `report_usage` adds to what
the command reports with its answer (result or failure). Both are no-ops
outside a command, so worker functions stay unit-testable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from multiagents.v1 import common_pb2
from multiagents.v1 import worker_service_pb2 as wpb

log = logging.getLogger("multiagents.worker")

MAX_CHUNK_BYTES = 64 * 1024
MAX_UNACKED = 1_000
NANO_USD_PER_USD = 1_000_000_000
KINDS = {
    "token": common_pb2.OUTPUT_KIND_TOKEN,
    "json": common_pb2.OUTPUT_KIND_JSON,
    "log": common_pb2.OUTPUT_KIND_LOG,
}


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and cost; `cost_nano_usd` is in 1e-9 US dollars (exact sums)."""

    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    cost_nano_usd: int = 0

    @property
    def cost_usd(self) -> float:
        return self.cost_nano_usd / NANO_USD_PER_USD

    def __add__(self, other: Usage) -> Usage:
        models = sorted({m for u in (self, other) for m in u.model.split(",") if m})
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            ",".join(models),
            self.cost_nano_usd + other.cost_nano_usd,
        )

    def __bool__(self) -> bool:
        return bool(self.input_tokens or self.output_tokens or self.cost_nano_usd or self.model)

    def to_proto(self) -> common_pb2.Usage:
        return common_pb2.Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            model=self.model,
            cost_nano_usd=self.cost_nano_usd,
        )

    @classmethod
    def from_proto(cls, u: common_pb2.Usage) -> Usage:
        return cls(u.input_tokens, u.output_tokens, u.model, u.cost_nano_usd)


class CommandOutput:
    """The output stream and usage of one running command (made by the runtime)."""

    def __init__(self, command_id: str, send: Callable[[wpb.ConnectRequest], None]) -> None:
        self.command_id = command_id
        self.usage = Usage()
        self._send = send
        self._sequence = 0
        self._acked = 0
        # Chunks up to here went to a session that ended: never acknowledged.
        self._lost = 0
        self._refused = ""
        self._changed = asyncio.Event()

    @property
    def acknowledged_sequence(self) -> int:
        """How many of the chunks emitted so far the server has stored (every
        chunk up to this number, counting from 1 in `emit` order)."""
        return self._acked

    @property
    def refused(self) -> str:
        """Why the server refused this command's output ('' if it did not)."""
        return self._refused

    async def emit(self, data: str | bytes, kind: str = "token") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
        size = len(data.encode() if isinstance(data, str) else data)
        if size > MAX_CHUNK_BYTES:
            raise ValueError(f"an output chunk is at most {MAX_CHUNK_BYTES} bytes, got {size}")
        if self._refused or not data:
            return
        self._sequence += 1
        chunk = wpb.OutputChunk(
            command_id=self.command_id, sequence=self._sequence, kind=KINDS[kind]
        )
        if isinstance(data, str):
            chunk.text = data
        else:
            chunk.binary = data
        self._send(wpb.ConnectRequest(output_chunk=chunk))
        while self._sequence - max(self._acked, self._lost) > MAX_UNACKED and not self._refused:
            self._changed.clear()
            await self._changed.wait()

    def acknowledged(self, ack: wpb.OutputAck) -> None:
        if ack.refused:
            if not self._refused:
                log.warning("output of %s refused: %s", self.command_id, ack.refused)
            self._refused = ack.refused
        else:
            self._acked = max(self._acked, ack.sequence)
        self._changed.set()

    def session_lost(self) -> None:
        """The session ended: chunks not acknowledged yet never will be (the
        next session does not hold the command); stop waiting for them."""
        self._lost = self._sequence
        self._changed.set()


def merge_chunks(first: wpb.OutputChunk, following: wpb.OutputChunk) -> bool:
    """Append `following` to `first` when both are text of one command and
    kind (one message for a burst of tokens); False when they differ."""
    if (
        first.command_id != following.command_id
        or first.kind != following.kind
        or first.WhichOneof("data") != "text"
        or following.WhichOneof("data") != "text"
        or len(first.text) + len(following.text) > MAX_CHUNK_BYTES // 4
    ):
        return False
    first.text += following.text
    first.sequence = following.sequence
    return True


def usage_from_cost(
    input_tokens: int, output_tokens: int, model: str, cost_usd: float | None, cost_nano_usd: int
) -> Usage:
    if min(input_tokens, output_tokens, cost_nano_usd) < 0 or (cost_usd or 0) < 0:
        raise ValueError("usage: tokens and cost must be >= 0")
    if cost_usd is not None:
        cost_nano_usd += round(cost_usd * NANO_USD_PER_USD)
    return Usage(input_tokens, output_tokens, model, cost_nano_usd)
