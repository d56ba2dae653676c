"""Workflow definitions: registration and the cached, parsed definitions.

A version never changes once registered (`HSETNX`), so parsed definitions
are cached by (name, version). The latest version of a name is cached too,
until the bus says that name was registered again on some replica (or the
bus was lost for a while: then every name is looked up again).
"""

from __future__ import annotations

import json
import logging

from multiagents import wire
from multiagents_server import engine
from multiagents_server.engine import codec
from multiagents_server.errors import AlreadyExists, NotFound
from multiagents_server.store import Store

log = logging.getLogger(__name__)


class Definitions:
    """The definitions of one keyspace, as one replica sees them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._definitions: dict[tuple[str, int], engine.WorkflowSpec] = {}
        self._latest: dict[str, int] = {}

    async def register(self, spec: engine.WorkflowSpec) -> bool:
        """Store a definition; False if the identical one exists already."""
        encoded = wire.dumps(codec.spec_to_json(spec))
        existing = await self.store.add_definition(spec.name, spec.version, encoded)
        self.forget_latest(spec.name)  # at once here; the bus tells the other replicas
        if existing is None:
            log.info("workflow registered", extra={"workflow": spec.name, "version": spec.version})
            return True
        if codec.spec_from_json(json.loads(existing)) == spec:
            return False
        raise AlreadyExists(
            f"definition: workflow {spec.name!r} version {spec.version} is registered with a "
            "different definition; register it under a new version"
        )

    async def get(self, name: str, version: int = 0) -> engine.WorkflowSpec:
        """A registered definition; version 0 is the latest. A version never
        changes once registered, so parsed definitions are cached, and so is
        the latest version of a name, until the bus says that name was
        registered again (or the bus was lost: then all are forgotten)."""
        if version:
            spec = self._definitions.get((name, version))
            if spec is not None:
                return spec
            chosen = version
        else:
            latest = self._latest.get(name)
            if latest is None:
                versions = await self.store.definition_version_numbers(name)
                if not versions:
                    raise NotFound(f"workflow_name: no workflow named {name!r}")
                latest = self._latest[name] = max(versions)
            chosen = latest
            spec = self._definitions.get((name, chosen))
            if spec is not None:
                return spec
        raw = await self.store.definition(name, chosen)
        if raw is None:
            if version and not await self.store.definition_version_numbers(name):
                raise NotFound(f"workflow_name: no workflow named {name!r}")
            raise NotFound(f"version: workflow {name!r} has no version {version}")
        spec = codec.spec_from_json(json.loads(raw))
        self._definitions[(name, chosen)] = spec
        return spec

    def forget_latest(self, name: str | None) -> None:
        """The latest version of `name` (of every name when None) may have changed."""
        if name is None:
            self._latest.clear()
        else:
            self._latest.pop(name, None)

    async def all(self) -> list[engine.WorkflowSpec]:
        """The latest version of every registered name."""
        return [await self.get(name) for name in await self.store.definition_names()]
