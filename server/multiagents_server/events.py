"""Live fan-out of notifications on this replica.

One subscription per replica to the store's bus receives every committed
transition's history events (one notification per transition), command
cancellations, queue wake-ups, registered definitions and changed rate
limits; watchers register a local queue per transaction (or for all). The
bus is only the live feed: the history stream is the record, and pullers
poll as a safety net for lost wake-ups.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Callable, Iterator, Sequence

from multiagents.v1 import events_pb2
from multiagents_server.store import RETRY_AFTER_UNAVAILABLE_S, Store, StoreUnavailable

log = logging.getLogger(__name__)

ALL = "*"
QUEUE_LIMIT = 10_000
_LENGTH = struct.Struct(">I")


def event_transaction(event: events_pb2.WorkflowEvent) -> str:
    kind = event.WhichOneof("event")
    return getattr(event, kind).transaction_id if kind else ""


def frame(transaction_id: str, events: Sequence[bytes]) -> bytes:
    """The serialized events of one transition as one notification: the
    transaction id (so a replica with no watcher of it skips the rest), then
    the events, length-prefixed."""
    return transaction_id.encode() + b"|" + b"".join(_LENGTH.pack(len(e)) + e for e in events)


def unframe(data: bytes) -> tuple[str, list[bytes]]:
    head, _, data = data.partition(b"|")
    out, at = [], 0
    while at < len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        at += _LENGTH.size
        out.append(data[at : at + size])
        at += size
    return head.decode(), out


class EventHub:
    """Receives the bus and hands its notifications to local subscribers."""

    def __init__(
        self,
        store: Store,
        *,
        on_cancel: Callable[[str, str], None],
        on_wake: Callable[[int, str], None],
        on_definition: Callable[[str | None], None],
        on_limit: Callable[[str | None], None],
    ) -> None:
        self._store = store
        self._on_cancel = on_cancel
        self._on_wake = on_wake
        # A definition name was registered; None: any may have been (the
        # feed was lost for a while).
        self._on_definition = on_definition
        # A rate limit was declared, replaced or deleted (its key as
        # declared); None: any may have been.
        self._on_limit = on_limit
        self._subscribers: dict[str, set[asyncio.Queue[events_pb2.WorkflowEvent]]] = {}
        # Readers of executions' output streams, woken when output is appended.
        self._output_readers: dict[str, set[asyncio.Event]] = {}
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def subscribe(
        self, transaction_id: str = ALL
    ) -> Iterator[asyncio.Queue[events_pb2.WorkflowEvent]]:
        """A queue of the events of one transaction (or of all) while in the block."""
        queue: asyncio.Queue[events_pb2.WorkflowEvent] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers.setdefault(transaction_id, set()).add(queue)
        try:
            yield queue
        finally:
            subscribers = self._subscribers.get(transaction_id)
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[transaction_id]

    @contextlib.contextmanager
    def watch_output(self, transaction_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever output of the transaction is appended, or a
        worker reported progress of one of its steps (the reader clears it,
        then reads the stream from its offset and the progress)."""
        event = asyncio.Event()
        self._output_readers.setdefault(transaction_id, set()).add(event)
        try:
            yield event
        finally:
            readers = self._output_readers.get(transaction_id)
            if readers is not None:
                readers.discard(event)
                if not readers:
                    del self._output_readers[transaction_id]

    async def run(self) -> None:
        """Listen until cancelled; reconnects after connection errors."""

        def subscribed() -> None:
            self._on_definition(None)
            self._on_limit(None)
            for readers in self._output_readers.values():
                for event in readers:
                    event.set()  # output may have been appended while the feed was down
            self.ready.set()

        while True:
            try:
                async for message in self._store.listen(subscribed):
                    if message.kind == "events":
                        self._events(message.data)
                    elif message.kind == "output":
                        for event in self._output_readers.get(message.data.decode(), ()):
                            event.set()
                    elif message.kind == "definition":
                        self._on_definition(message.data.decode())
                    elif message.kind == "limit":
                        self._on_limit(message.data.decode())
                    elif message.kind == "wake":
                        bucket, _, worker = message.data.decode().partition("|")
                        self._on_wake(int(bucket), worker)
                    else:
                        command_id, _, reason = message.data.decode().partition("|")
                        self._on_cancel(command_id, reason)
            except StoreUnavailable as exc:
                log.warning("event feed lost, reconnecting", extra={"error": str(exc)})
                await asyncio.sleep(RETRY_AFTER_UNAVAILABLE_S)

    def _events(self, data: bytes) -> None:
        if not self._subscribers:
            return
        tx = data[: data.find(b"|")].decode()
        queues = [*self._subscribers.get(tx, ()), *self._subscribers.get(ALL, ())]
        if not queues:
            return
        for raw in unframe(data)[1]:
            event = events_pb2.WorkflowEvent.FromString(raw)
            for queue in queues:
                if queue.full():
                    log.warning(
                        "slow event subscriber, dropping an event", extra={"transaction_id": tx}
                    )
                    continue
                queue.put_nowait(event)
