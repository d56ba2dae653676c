"""The server, found through the `multiagents.server` entry points (declared
by the package that provides it) instead of imported: the SDK works installed
alone, names no server module, and a worker process never loads the server.

`multiagents serve` runs the `cli` entry point in the same process;
`create_simple_framework` starts the `embedded` one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, Protocol, cast

from multiagents.errors import ServerNotInstalledError

ENTRY_POINTS = "multiagents.server"
INSTALL_HINT = "pip install multiagents-server"


class EmbeddedServer(Protocol):
    """A server in this process: `await start()` … `await stop()`."""

    @property
    def address(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def load(name: str, *, group: str = ENTRY_POINTS) -> Any:
    """The object the entry point `name` of `group` names.

    Raises ServerNotInstalledError when no package declares it, or when the
    server cannot be imported (a dependency of the server extra is missing).
    """
    found = entry_points(group=group, name=name)
    if not found:
        raise ServerNotInstalledError(
            f"the MultiAgents server is not installed (no {group!r} entry point {name!r}): "
            f"{INSTALL_HINT}"
        )
    entry_point = next(iter(found))
    try:
        return entry_point.load()
    except ImportError as exc:
        raise ServerNotInstalledError(
            f"the MultiAgents server cannot be loaded ({exc}): {INSTALL_HINT}"
        ) from exc


def cli_main() -> Callable[..., int]:
    """The server's `main(argv, *, prog)`; returns its exit code."""
    return cast(Callable[..., int], load("cli"))


def embedded_server(**settings: Any) -> EmbeddedServer:
    """A server for this process (not started), configured by server settings."""
    return cast(EmbeddedServer, load("embedded")(**settings))


def run_cli(argv: Sequence[str], *, prog: str) -> int:
    """Run the server's command line here, in this process (so signals sent
    to this process reach the server); its exit code."""
    return cli_main()(list(argv), prog=prog)
