"""What the SDK finds through the `multiagents.server` entry points, declared
in pyproject.toml, instead of importing this package: the SDK must work
installed alone, and a worker process never loads the server.

- `cli`: `multiagents_server.cli:main`, which `multiagents serve` runs in
  its own process.
- `embedded`: `embedded_server` below, the in-process server that the seed's
  `create_simple_framework` starts.
"""

from __future__ import annotations

from typing import Any

from multiagents_server.app import Server
from multiagents_server.config import ServerConfig


def embedded_server(**settings: Any) -> Server:
    """A server (not started) configured by `ServerConfig` fields; the caller
    awaits `start()` and `stop()` and reads `address`. An unknown setting is a
    TypeError naming it."""
    return Server(ServerConfig(**settings))
