"""Live fan-out of history events to watchers on this replica.

One pub/sub connection per replica receives every event and every command
cancellation; watchers register a local queue per transaction (or for all).
Pub/sub is only the live feed: the history stream is the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

import redis.asyncio as redis

from multiagents.v1 import events_pb2

log = logging.getLogger(__name__)

ALL = "*"
QUEUE_LIMIT = 10_000


def event_transaction(event: events_pb2.WorkflowEvent) -> str:
    kind = event.WhichOneof("event")
    return getattr(event, kind).transaction_id if kind else ""


class EventHub:
    """Receives the events channel and hands events to local subscribers."""

    def __init__(
        self,
        client: redis.Redis,
        events_channel: str,
        cancel_channel: str,
        on_cancel: Callable[[str], None],
    ) -> None:
        self._client = client
        self._events_channel = events_channel
        self._cancel_channel = cancel_channel
        self._on_cancel = on_cancel
        self._subscribers: dict[str, set[asyncio.Queue[events_pb2.WorkflowEvent]]] = {}
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

    async def run(self) -> None:
        """Listen until cancelled; reconnects after connection errors."""
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._events_channel, self._cancel_channel)
                self.ready.set()
                async for message in pubsub.listen():
                    if message["type"] != "message":
                        continue
                    self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                log.warning("event feed lost, reconnecting", extra={"error": str(exc)})
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        if channel.decode() == self._cancel_channel:
            self._on_cancel(data.decode())
            return
        if not self._subscribers:
            return
        event = events_pb2.WorkflowEvent.FromString(data)
        tx = event_transaction(event)
        for key in (tx, ALL):
            for queue in self._subscribers.get(key, ()):
                if queue.full():
                    log.warning(
                        "slow event subscriber, dropping an event", extra={"transaction_id": tx}
                    )
                    continue
                queue.put_nowait(event)
