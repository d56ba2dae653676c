"""Shared rate limits and concurrency keys: their declarations (the
PutRateLimit family of RPCs) and how the dispatcher waits for them.

A limit is declared for a key (`provider:openai`) or a key prefix
(`tenant:*`, each matching key limited on its own). A step names keys,
literally or by a CEL expression over its context; the engine resolves them
when it dispatches an attempt and puts them on the command. The dispatcher
takes the command's places in all its keys with one script call (every
limit lives in one Redis slot, so it is all or nothing on a cluster too)
right before it sends the command to a session, and gives them back when
the attempt is answered or its session is lost; a place held by an attempt
that nobody answers expires at the command's deadline. A command that may
not start waits in this replica's memory (it stays pending in its Redis
queue: if the replica dies, it fails as WorkerLost and is retried, like the
replica's other pending commands), grouped by its keys, and is tried
again when its keys should allow it, round-robin over the groups: one
tenant's thousand commands do not hold back another's one. A group is
tried again when a place of its keys is given back on this replica, when
its first command started (the next may fit too), when a limit governing
one of its keys is declared, replaced or deleted (on any replica: the bus
tells them all), and at the latest after a second.
Commands of steps that name no limit never reach this module.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from google.protobuf import duration_pb2

from multiagents.v1 import limits_pb2
from multiagents_server.errors import InvalidArgument

DEFAULT_PERIOD_MS = 60_000
MAX_PERIOD_MS = 86_400_000
DEFAULT_BACKOFF_MS = 1_000
MAX_BACKOFF_MS = 3_600_000
# The failure type a worker reports when its provider said "too many
# requests" (HTTP 429): the keys of the attempt back off.
RATE_LIMITED = "RateLimited"

_KEY = re.compile(r"^[^\s*]{1,200}$")


def check_key(key: str, field: str, *, prefix: bool) -> None:
    """A key: 1-200 characters, no whitespace; `*` only at the end of a prefix."""
    body = key[:-1] if prefix and key.endswith("*") else key
    if not (_KEY.match(body) or (prefix and key == "*")):
        what = "a key or a prefix ending in '*'" if prefix else "a key"
        raise InvalidArgument(
            f"{field}: must be {what} of 1-200 characters without whitespace, got {key!r}"
        )


@dataclass(frozen=True, slots=True)
class Limit:
    """One declared limit (see limits.proto RateLimit)."""

    key: str
    requests: int = 0
    tokens: int = 0
    period_ms: int = DEFAULT_PERIOD_MS
    max_concurrent: int = 0
    backoff_ms: int = DEFAULT_BACKOFF_MS

    def to_json(self) -> bytes:
        """What the Redis scripts read (scripts._LIMIT_OF)."""
        return json.dumps(
            {
                "r": self.requests,
                "t": self.tokens,
                "p": self.period_ms,
                "c": self.max_concurrent,
                "b": self.backoff_ms,
            }
        ).encode()

    @classmethod
    def from_json(cls, key: str, raw: bytes) -> Limit:
        d = json.loads(raw)
        return cls(key, d["r"], d["t"], d["p"], d["c"], d["b"])

    def to_proto(self) -> limits_pb2.RateLimit:
        return limits_pb2.RateLimit(
            key=self.key,
            requests=self.requests,
            tokens=self.tokens,
            period=_duration(self.period_ms),
            max_concurrent=self.max_concurrent,
            backoff=_duration(self.backoff_ms),
        )


def from_proto(limit: limits_pb2.RateLimit, field: str = "limit") -> Limit:
    """Validate a declared limit; errors name the field."""
    check_key(limit.key, f"{field}.key", prefix=True)
    if not (limit.requests or limit.tokens or limit.max_concurrent):
        raise InvalidArgument(f"{field}: set at least one of requests, tokens and max_concurrent")
    period = limit.period.ToMilliseconds() if limit.HasField("period") else DEFAULT_PERIOD_MS
    if not 0 < period <= MAX_PERIOD_MS:
        raise InvalidArgument(f"{field}.period: must be between 1 ms and 1 day")
    backoff = limit.backoff.ToMilliseconds() if limit.HasField("backoff") else DEFAULT_BACKOFF_MS
    if not 0 <= backoff <= MAX_BACKOFF_MS:
        raise InvalidArgument(f"{field}.backoff: must be between 0 and 1 hour")
    return Limit(limit.key, limit.requests, limit.tokens, period, limit.max_concurrent, backoff)


def _duration(ms: int) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(ms)
    return d
