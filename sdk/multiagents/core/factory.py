"""`create_simple_framework`: the seed's in-process setup, on the real stack.

The three objects the seed expects are thin handles over one code path:
`EventBus` starts an embedded server (gRPC on localhost, its own real Redis
child process), `WorkerManager` serves registered workers to it through a
`WorkerRuntime` over gRPC, and `Orchestrator` is a `Client` that registers the
workflows and runs them. The server is not imported: `EventBus.start()`
loads it through the `multiagents.server` entry points, so the SDK works
installed alone and a worker process never loads the server.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from typing import Any

from multiagents._server import EmbeddedServer, embedded_server
from multiagents.client import Client, WorkflowStatus
from multiagents.monitoring import MonitoringConfig, current_server
from multiagents.runtime import WorkerRuntime
from multiagents.worker import WorkerFunction, check_unique_name
from multiagents.workflow import Workflow


class EventBus:
    """The embedded server and its Redis: every event is routed through them."""

    def __init__(
        self,
        *,
        data_dir: str | None = None,
        redis_url: str | None = None,
        monitoring: MonitoringConfig | None = None,
        **server_settings: Any,
    ) -> None:
        self._data_dir = data_dir
        self._own_dir: str | None = None
        self._redis_url = redis_url
        self._monitoring = monitoring
        self._settings = server_settings
        self.server: EmbeddedServer | None = None

    @property
    def address(self) -> str:
        if self.server is None:
            raise RuntimeError("the event bus is not started: await event_bus.start() first")
        return self.server.address

    async def start(self) -> None:
        if self.server is not None:
            return
        if self._data_dir is None:
            self._own_dir = tempfile.mkdtemp(prefix="multiagents-")
        settings: dict[str, Any] = {
            "port": 0,
            "data_dir": self._data_dir or self._own_dir,
            "redis_url": self._redis_url,
            "heartbeat_interval_ms": 1000,
        }
        if self._monitoring is not None:
            settings.update(self._monitoring.server_settings())
            self._monitoring.configure_logging()
        settings.update(self._settings)
        server = embedded_server(**settings)
        await server.start()
        self.server = server
        current_server.set(server.address)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None


class WorkerManager:
    """Serves registered workers to the event bus's server over gRPC."""

    def __init__(self, bus: EventBus, *, max_concurrency: int = 16) -> None:
        self._bus = bus
        self._workers: dict[str, WorkerFunction] = {}
        self._max_concurrency = max_concurrency
        self.runtime: WorkerRuntime | None = None

    def register(self, worker: WorkerFunction) -> None:
        """Add a `@worker` (or `@dspy_worker`); call before `start()`.

        Raises ValueError when another function is registered under that name.
        """
        if not isinstance(worker, WorkerFunction):
            raise TypeError(f"{worker!r} is not a worker: decorate it with @worker(name)")
        if self.runtime is not None:
            raise RuntimeError("register workers before worker_manager.start()")
        check_unique_name(self._workers, worker)
        self._workers[worker.name] = worker

    async def start(self) -> None:
        if self.runtime is not None:
            return
        if not self._workers:
            raise RuntimeError("no workers registered: call worker_manager.register(fn) first")
        self.runtime = WorkerRuntime(
            self._workers.values(),
            servers=self._bus.address,
            max_concurrency=self._max_concurrency,
            drain_timeout=10,
        )
        await self.runtime.start()

    async def stop(self) -> None:
        if self.runtime is not None:
            await self.runtime.stop()
            self.runtime = None


class Orchestrator:
    """Runs the framework's workflows: the seed's `orchestrator` object."""

    def __init__(self, bus: EventBus, workflows: Sequence[Workflow]) -> None:
        self._bus = bus
        self._workflows = list(workflows)
        self.client: Client | None = None

    async def start(self) -> None:
        if self.client is not None:
            return
        self.client = Client(self._bus.address)
        for workflow in self._workflows:
            await self.client.register_workflow(workflow)

    async def stop(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None

    def _client(self) -> Client:
        if self.client is None:
            raise RuntimeError("the orchestrator is not started: await orchestrator.start() first")
        return self.client

    async def register_workflow(self, workflow: Workflow) -> None:
        """Add another workflow; it may share workers with the first."""
        self._workflows.append(workflow)
        if self.client is not None:
            await self.client.register_workflow(workflow)

    async def execute_workflow(
        self, workflow_name: str, input_data: dict[str, Any] | None = None, **options: Any
    ) -> str:
        """Start a workflow; returns its transaction id."""
        return await self._client().execute_workflow(workflow_name, input_data or {}, **options)

    async def get_status(self, transaction_id: str) -> dict[str, Any]:
        """The seed's status dict: `state`, `current_step`, `step_results`, `error`, ..."""
        return (await self._client().get_status(transaction_id)).to_dict()

    async def wait(self, transaction_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait (on the watch stream, no polling) until terminal; the final status dict."""
        status: WorkflowStatus = await self._client().wait(transaction_id, timeout=timeout)
        return status.to_dict()

    async def cancel_workflow(self, transaction_id: str, reason: str = "") -> None:
        await self._client().cancel_workflow(transaction_id, reason)


async def create_simple_framework(
    workflow: Workflow | Sequence[Workflow],
    *,
    monitoring_config: MonitoringConfig | None = None,
    data_dir: str | None = None,
    redis_url: str | None = None,
    max_concurrency: int = 16,
    **server_settings: Any,
) -> tuple[EventBus, WorkerManager, Orchestrator]:
    """The seed's setup: `event_bus, worker_manager, orchestrator`.

    Nothing runs until the seed's start sequence: `event_bus.start()`, then
    `worker_manager.register(...)` and `worker_manager.start()`, then
    `orchestrator.start()`. Without `redis_url` the server runs its own Redis
    in a temporary directory (or `data_dir`). Extra keyword arguments are
    server settings (`ServerConfig` fields).
    """
    workflows = [workflow] if isinstance(workflow, Workflow) else list(workflow)
    bus = EventBus(
        data_dir=data_dir, redis_url=redis_url, monitoring=monitoring_config, **server_settings
    )
    return bus, WorkerManager(bus, max_concurrency=max_concurrency), Orchestrator(bus, workflows)
