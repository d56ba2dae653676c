"""A correction to redis-py, applied when the store package is imported.

redis-py 8.1 (the newest release) writes a command through the connection's
`_writer` after a scheduling point (with a socket timeout, in a task of
`asyncio.wait_for`), so a connection closed meanwhile by another task — the
cluster client closes every connection when it rebuilds its view of the
cluster, in use or not — fails with `AttributeError: 'NoneType' object has no
attribute 'writelines'`; and a transport that its peer reset may fail with a
`TypeError` (CPython gh-136234, Python 3.12 and 3.13 before 3.13.10). Neither
is a `ConnectionError`, so no retry of redis-py and no error mapping of the
store recognised them: they ended whatever background task met them (the
chaos test on a Redis Cluster saw a replica's command puller end that way,
its commands left waiting). Here they are what they are, a `ConnectionError`
(the connection is already closed by redis-py when the error leaves it).
redis/redis-py#3546 and #4287; fixed upstream by #4288, not released yet.
"""

from __future__ import annotations

import functools
from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError


def install() -> None:
    """Make a write to a connection closed under it raise ConnectionError (once)."""
    original = AbstractConnection.send_packed_command
    if getattr(original, "_closed_writer_is_connection_error", False):
        return

    @functools.wraps(original)
    async def send_packed_command(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        try:
            await original(self, *args, **kwargs)
        except (AttributeError, TypeError) as exc:
            raise ConnectionError(f"connection closed while writing to it: {exc}") from exc

    send_packed_command._closed_writer_is_connection_error = True  # type: ignore[attr-defined]
    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
