"""Automatic pipelining: the Redis commands of concurrent store operations
share one pipeline, so a burst of transitions costs a few round trips, not
a few per transition.

An operation queues its commands (in order, contiguous) and awaits its own
replies. Queued operations go out together on the next turn of the event
loop, or, when `slots` pipelines are already in flight, as soon as one of
them returns; so the busier the server, the larger the batches, and the
client never holds more than `slots` connections for them. Each operation
gets exactly the replies to its own commands, and the first error among
them is raised to it alone (or all are returned in place, `execute_raw`),
as if it had sent its own pipeline.

A batch is sent on a connection from the client's pool (which checks it
as for any command) with one deadline for the whole batch instead of
redis-py's timer per reply (a measurable share of the server's CPU), and
is retried on a connection error as the client's retry policy says, as
redis-py does for its own pipelines.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ResponseError

_Call = tuple[str, tuple[Any, ...], dict[str, Any]]
# A batch that has not been answered within this many seconds fails (as
# redis-py's default socket timeout would fail one reply).
BATCH_TIMEOUT_S = 5.0
# Operations in one batch at most, so that a batch stays well within its deadline.
MAX_BATCH = 500
# Options of redis-py commands that are not arguments of their reply callback.
_NOT_CALLBACK_OPTIONS = frozenset({"keys", NEVER_DECODE, EMPTY_RESPONSE})


class Commands:
    """The commands of one store operation, recorded with the redis-py pipeline API
    (`cmds.hset(...)`, `cmds.eval(...)`) and sent by `await cmds.execute()`."""

    __slots__ = ("_calls", "_pipeline")

    def __init__(self, pipeline: AutoPipeline) -> None:
        self._pipeline = pipeline
        self._calls: list[_Call] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        def record(*args: Any, **kwargs: Any) -> None:
            self._calls.append((name, args, kwargs))

        return record

    def __len__(self) -> int:
        return len(self._calls)

    async def execute(self) -> list[Any]:
        """The replies to these commands, in order; raises the first error."""
        replies = await self.execute_raw()
        failed = next((r for r in replies if isinstance(r, Exception)), None)
        if failed is not None:
            raise failed
        return replies

    async def execute_raw(self) -> list[Any]:
        """The replies to these commands, in order, errors in place."""
        if not self._calls:
            return []
        return await self._pipeline.send(self._calls)


class AutoPipeline:
    """Merges the commands of concurrent operations into shared pipelines."""

    def __init__(self, client: Any, *, cluster: bool = False, slots: int = 4) -> None:
        self._client = client
        # On a cluster, redis-py's cluster pipeline sends each node its share
        # of a batch (one round trip per node) and follows MOVED/ASK.
        self._cluster = cluster
        self._slots = slots
        self._in_flight = 0
        self._scheduled = False
        self._queued: list[tuple[list[_Call], asyncio.Future[list[Any]]]] = []
        # Runs in flight; each is awaited through the futures it resolves.
        self._runs: set[asyncio.Task[None]] = set()

    def commands(self) -> Commands:
        return Commands(self)

    async def send(self, calls: list[_Call]) -> list[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queued.append((calls, future))
        if not self._scheduled and self._in_flight < self._slots:
            self._scheduled = True
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        self._scheduled = False
        if not self._queued or self._in_flight >= self._slots:
            return
        batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
        self._in_flight += 1
        loop = asyncio.get_running_loop()
        run = loop.create_task(self._run(batch))
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        if self._queued and self._in_flight < self._slots:
            self._scheduled = True
            loop.call_soon(self._start)

    async def _run(self, batch: list[tuple[list[_Call], asyncio.Future[list[Any]]]]) -> None:
        try:
            # redis-py's pipeline only builds the commands (arguments, reply options).
            pipe = self._client.pipeline(transaction=False)
            for calls, _ in batch:
                for name, args, kwargs in calls:
                    getattr(pipe, name)(*args, **kwargs)
            if self._cluster:
                replies = await pipe.execute(raise_on_error=False)
            else:
                replies = await self._send(pipe.command_stack)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else ConnectionError("redis call cancelled")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            return
        finally:
            self._in_flight -= 1
            if self._queued and not self._scheduled:
                self._scheduled = True
                asyncio.get_running_loop().call_soon(self._start)
        start = 0
        for calls, future in batch:
            own = replies[start : start + len(calls)]
            start += len(calls)
            if not future.done():  # else the caller was cancelled
                future.set_result(own)

    async def _send(self, commands: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
        """One write of every command, then every reply, errors in place."""
        pool = self._client.connection_pool
        connection = await pool.get_connection()
        try:
            replies: list[Any] = await connection.retry.call_with_retry(
                lambda: self._exchange(connection, commands),
                lambda error: connection.disconnect(nowait=True),
            )
        except BaseException:
            # Unread replies would desynchronise the connection: drop it.
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)
        return replies

    async def _exchange(
        self, connection: Any, commands: list[tuple[tuple[Any, ...], dict[str, Any]]]
    ) -> list[Any]:
        replies: list[Any] = []
        await connection.send_packed_command(
            connection.pack_commands([args for args, _ in commands]), check_health=False
        )
        async with asyncio.timeout(BATCH_TIMEOUT_S):
            for args, options in commands:
                try:
                    # math.inf: no timer per reply; the batch has one deadline.
                    reply = await connection.read_response(timeout=math.inf)
                except ResponseError as error:
                    replies.append(error)
                else:
                    replies.append(self._parse(args[0], reply, options))
        return replies

    def _parse(self, command: str, reply: Any, options: dict[str, Any]) -> Any:
        """A reply as redis-py returns it for `command` (its response callback)."""
        callback = self._client.response_callbacks.get(command)
        if callback is None:
            return reply
        kwargs = {k: v for k, v in options.items() if k not in _NOT_CALLBACK_OPTIONS}
        return callback(reply, **kwargs)
