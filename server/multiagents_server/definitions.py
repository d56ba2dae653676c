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
from multiagents_server.errors import AlreadyExists, InvalidArgument, NotFound
from multiagents_server.store import Store

log = logging.getLogger(__name__)


class Definitions:
    """The definitions of one keyspace, as one replica sees them."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._definitions: dict[tuple[str, int], engine.WorkflowSpec] = {}
        self._latest: dict[str, int] = {}

    async def register(self, spec: engine.WorkflowSpec) -> bool:
        """Store a definition; False if the identical one exists already.

        A definition whose sub-workflow steps lead back to itself through
        registered definitions is refused (it would start children for ever).
        """
        await self._refuse_cycle(spec)
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

    async def _refuse_cycle(self, spec: engine.WorkflowSpec) -> None:
        seen: set[tuple[str, int]] = set()

        async def visit(node: engine.StepSpec, trail: list[str]) -> None:
            trail = [*trail, node.workflow]
            if node.workflow == spec.name:
                raise InvalidArgument(
                    f"definition: step {node.name!r} starts a cycle of sub-workflows: "
                    + " -> ".join(trail)
                )
            key = (node.workflow, node.workflow_version)
            if key in seen:
                return
            seen.add(key)
            try:
                child = await self.get(node.workflow, node.workflow_version)
            except NotFound:
                return  # not registered yet: looked up when the step starts
            for inner in _sub_workflow_steps(child):
                await visit(inner, trail)

        for node in _sub_workflow_steps(spec):
            await visit(node, [spec.name])

    def forget_latest(self, name: str | None) -> None:
        """The latest version of `name` (of every name when None) may have changed."""
        if name is None:
            self._latest.clear()
        else:
            self._latest.pop(name, None)

    async def all(self) -> list[engine.WorkflowSpec]:
        """The latest version of every registered name."""
        return [await self.get(name) for name in await self.store.definition_names()]


def _sub_workflow_steps(spec: engine.WorkflowSpec) -> list[engine.StepSpec]:
    return [n for n in spec.nodes if isinstance(n, engine.StepSpec) and n.workflow]
