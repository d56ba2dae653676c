"""Wiring and lifecycle of one server replica: Redis (embedded or external),
the gRPC server with its services, and the background loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from multiagents.v1 import (
    monitoring_service_pb2,
    monitoring_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from multiagents_server import observability
from multiagents_server.config import ConfigError, ServerConfig, check
from multiagents_server.dispatcher import Dispatcher
from multiagents_server.embedded_redis import EmbeddedRedis
from multiagents_server.events import EventHub
from multiagents_server.liveness import Liveness
from multiagents_server.orchestrator import Orchestrator
from multiagents_server.schedules import Schedules
from multiagents_server.store import (
    LeaseKeeper,
    Store,
    StoreSetupError,
    StoreUnavailable,
    open_store,
)
from multiagents_server.timers import run_timers
from multiagents_server.transport.auth import BearerAuthInterceptor
from multiagents_server.transport.malformed import MalformedRequestInterceptor
from multiagents_server.transport.monitoring_service import MonitoringService
from multiagents_server.transport.worker_service import WorkerService
from multiagents_server.transport.workflow_service import WorkflowService
from multiagents_server.web import Dashboard

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    workflow_service_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name,
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    monitoring_service_pb2.DESCRIPTOR.services_by_name["MonitoringService"].full_name,
)

# Time allowed after the drain timeout for sessions to close on shutdown.
STOP_GRACE_S = 5.0
# How often buffered monitoring counters are written to Redis.
OUTCOMES_FLUSH_S = 1.0
# How often health checks that Redis answers; the embedded one's restart backoff.
REDIS_HEALTH_PERIOD_S = 1.0
REDIS_RESTART_BACKOFF_S = (0.2, 10.0)
# How often a replica looks for commands that nobody will answer for (see
# Liveness.recover_lost_commands).
RECOVER_LOST_S = 5.0


class Server:
    """One replica. `await start()` … `await stop()`, or `async with Server(cfg)`."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.replica_id = uuid.uuid4().hex[:12]
        self.port = 0
        self.embedded_redis: EmbeddedRedis | None = None
        self._grpc: grpc.aio.Server | None = None
        self._store: Store | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._health: health.aio.HealthServicer | None = None
        self.orchestrator: Orchestrator | None = None
        self.dispatcher: Dispatcher | None = None
        self.metrics: observability.MetricsEndpoint | None = None
        self.dashboard: Dashboard | None = None
        self._lease_keeper: LeaseKeeper | None = None

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    @property
    def redis_url(self) -> str:
        if self.config.redis_url:
            return self.config.redis_url
        assert self.embedded_redis is not None
        return self.embedded_redis.url

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start Redis (when embedded), the gRPC server and the background loops."""
        try:
            await self._start()
        except BaseException as exc:
            await self.stop(grace_s=0)  # release what was started, e.g. a busy port
            if isinstance(exc, StoreUnavailable):
                # Redis went away while this replica joined: one line, not a bug.
                raise StoreSetupError(f"Redis stopped serving while starting: {exc}") from None
            raise

    async def _start(self) -> None:
        config = self.config
        check(config)
        if config.metrics_port:
            try:
                self.metrics = observability.start_metrics(config.host, config.metrics_port)
            except OSError as exc:
                raise ConfigError(
                    f"metrics_port: cannot listen on {config.host}:{config.metrics_port}: "
                    f"{exc.strerror}"
                ) from None
        if not config.redis_url:
            self.embedded_redis = EmbeddedRedis(Path(config.data_dir) / "redis")
            await self.embedded_redis.start()
        self._store = store = await open_store(
            self.redis_url,
            prefix=config.key_prefix,
            mode=config.redis_mode,
            buckets=config.buckets,
        )
        self.orchestrator = orchestrator = Orchestrator(store, config, replica_id=self.replica_id)
        schedules = Schedules(orchestrator)
        self.dispatcher = dispatcher = Dispatcher(
            orchestrator, store, config, replica_id=self.replica_id
        )
        hub = EventHub(
            store,
            on_cancel=dispatcher.cancel_local,
            on_wake=dispatcher.wake,
            on_definition=orchestrator.definitions.forget_latest,
            on_limit=dispatcher.limits.limit_changed,
        )

        options = [
            ("grpc.max_receive_message_length", config.max_payload_bytes * 2 + 1024 * 1024),
            ("grpc.max_send_message_length", config.max_payload_bytes * 4 + 1024 * 1024),
            ("grpc.keepalive_time_ms", 20_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            # gRPC sets SO_REUSEPORT by default: a second server on a busy port
            # would then start and silently take half the connections. Only
            # the replicas of one supervisor share their port, on purpose.
            ("grpc.so_reuseport", 1 if config.reuse_port else 0),
            # gRPC core cancels calls beyond 1,000 (soft) / 3,000 (hard)
            # waiting for a handler: a burst of submits would be lost as
            # CANCELLED. Calls wait instead; ExecuteWorkflow sheds load
            # itself with RESOURCE_EXHAUSTED and a retry hint.
            ("grpc.server.max_pending_requests", 1_000_000),
            ("grpc.server.max_pending_requests_hard_limit", 1_000_000),
        ]
        interceptors: list[grpc.aio.ServerInterceptor] = []
        if config.auth_enabled:
            interceptors.append(BearerAuthInterceptor(config.client_tokens, config.worker_tokens))
        interceptors.append(MalformedRequestInterceptor())
        server = grpc.aio.server(options=options, interceptors=interceptors)
        workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(
            WorkflowService(orchestrator, hub, config, schedules), server
        )
        worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(
            WorkerService(dispatcher, config), server
        )
        monitoring_service_pb2_grpc.add_MonitoringServiceServicer_to_server(
            MonitoringService(orchestrator, hub, config), server
        )
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        address = f"{config.host}:{config.port}"
        if config.tls_cert_file and config.tls_key_file:
            credentials = grpc.ssl_server_credentials(
                [(Path(config.tls_key_file).read_bytes(), Path(config.tls_cert_file).read_bytes())],
                root_certificates=(
                    Path(config.tls_client_ca_file).read_bytes()
                    if config.tls_client_ca_file
                    else None
                ),
                require_client_auth=bool(config.tls_client_ca_file),
            )
            self.port = server.add_secure_port(address, credentials)
        else:
            self.port = server.add_insecure_port(address)
        if self.port == 0:
            raise RuntimeError(f"cannot bind the gRPC port {address}")
        if config.dashboard_port:
            self.dashboard = Dashboard(config, self.replica_id)
            server.add_insecure_port(self.dashboard.grpc_target)
        liveness = Liveness(store, config, dispatcher, replica_id=self.replica_id)
        lease_fifth_s = max(config.replica_lease_ms / 5000, 0.1)
        await liveness.renew_lease()
        self._lease_keeper = LeaseKeeper(
            self.redis_url, cluster=store.cluster, key=store.keys.replicas,
            replica_id=self.replica_id, lease_ms=config.replica_lease_ms,
            stall_limit_ms=config.replica_stall_limit_ms, loop_seen=lambda: liveness.loop_seen,
        )  # fmt: skip
        self._lease_keeper.start()
        await orchestrator.join()
        self._tasks = [
            asyncio.create_task(hub.run(), name="event-hub"),
            asyncio.create_task(run_timers(orchestrator, liveness, schedules), name="timers"),
            asyncio.create_task(
                self._every(lease_fifth_s, liveness.renew_lease, "renew the lease"), name="lease"
            ),
            asyncio.create_task(
                self._every(
                    lease_fifth_s, liveness.reap_dead_replicas, "reclaim dead replicas' work"
                ),
                name="reaper",
            ),
            asyncio.create_task(
                self._every(
                    RECOVER_LOST_S, liveness.recover_lost_commands, "look for lost commands"
                ),
                name="recover-lost",
            ),
            asyncio.create_task(self._flush_outcomes(orchestrator), name="outcomes"),
            asyncio.create_task(self._watch_redis(store), name="redis-health"),
        ]
        await asyncio.wait_for(hub.ready.wait(), 10)
        await server.start()
        self._grpc = server
        self._health = health_servicer
        if self.dashboard is not None:
            await self.dashboard.start()
        for name in ("", *SERVICE_NAMES):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "server started",
            extra={"address": self.address, "replica": self.replica_id, "redis": self.redis_url},
        )

    async def _every(
        self, period: float, action: Callable[[], Awaitable[object]], what: str
    ) -> None:
        """Run `action` every `period` seconds until cancelled. The lease
        renewal (every fifth of the lease), the reaper and the search for
        lost commands each get such a loop, so that reclaiming work never
        delays the renewal."""
        task = asyncio.current_task()
        while True:
            try:
                await action()
            except StoreUnavailable as exc:
                log.warning("cannot %s", what, extra={"error": str(exc)})
            if task is not None and task.cancelling():
                # Or it came back as nothing at all: asyncio.wait_for before
                # Python 3.12 (which redis-py uses) drops a cancel that meets
                # the end of what it waits for. Without this the loop would
                # go on, and a stop waiting for it would wait for ever.
                raise asyncio.CancelledError
            await asyncio.sleep(period)

    async def _watch_redis(self, store: Store) -> None:
        """Health follows Redis: NOT_SERVING while it does not answer. The
        embedded Redis, if it died, is started again (same port, same data
        directory: its append-only file loses nothing), with backoff."""
        serving = True
        delay = REDIS_RESTART_BACKOFF_S[0]
        while True:
            await asyncio.sleep(REDIS_HEALTH_PERIOD_S)
            embedded = self.embedded_redis
            if embedded is not None and not embedded.alive:
                log.error("the embedded Redis died; restarting it in %.1f s", delay)
                if serving:
                    serving = False
                    await self._set_health(False)
                await asyncio.sleep(delay)
                try:
                    await embedded.restart()
                except RuntimeError as exc:
                    log.error("the embedded Redis did not restart: %s", exc)
                    delay = min(delay * 2, REDIS_RESTART_BACKOFF_S[1])
                    continue
                delay = REDIS_RESTART_BACKOFF_S[0]
            try:
                await store.ping()
                ok = True
            except StoreUnavailable as exc:
                ok = False
                if serving:
                    log.error("redis unreachable; health is NOT_SERVING: %s", exc)
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # see _every
            if ok != serving:
                serving = ok
                await self._set_health(serving)
                if ok:
                    log.info("redis reachable again; health is SERVING")

    async def _set_health(self, serving: bool) -> None:
        if self._health is None:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, status)

    async def _flush_outcomes(self, orchestrator: Orchestrator) -> None:
        """Write the monitoring counters every second (and once at the end)."""
        try:
            while True:
                await asyncio.sleep(OUTCOMES_FLUSH_S)
                try:
                    await orchestrator.outcomes.flush()
                except StoreUnavailable as exc:
                    log.warning("cannot write monitoring counters", extra={"error": str(exc)})
        finally:
            with contextlib.suppress(StoreUnavailable):
                await orchestrator.outcomes.flush()

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain workers, stop serving, stop the loops, close Redis."""
        grace = self.config.drain_timeout_ms / 1000 if grace_s is None else grace_s
        started = self._grpc is not None
        if self.dashboard is not None:
            await self.dashboard.stop()
            self.dashboard = None
        if self._health is not None and self._grpc is not None:
            for name in ("", *SERVICE_NAMES):
                await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.dispatcher is not None and self._grpc is not None:
            try:
                async with asyncio.timeout(grace + STOP_GRACE_S):
                    await self.dispatcher.shutdown(grace)
            except TimeoutError:
                log.warning("worker sessions did not close in time; stopping anyway")
        if self._grpc is not None:
            await self._grpc.stop(min(grace, 1.0))
            self._grpc = None
        await _cancel_all(self._tasks)
        self._tasks = []
        if self._lease_keeper is not None:
            await asyncio.to_thread(self._lease_keeper.stop)
            self._lease_keeper = None
        if self._store is not None:
            with contextlib.suppress(StoreUnavailable):
                await self._store.leave(self.replica_id)
            await self._store.close()
            self._store = None
        if self.embedded_redis is not None:
            await self.embedded_redis.stop()
            self.embedded_redis = None
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if started:
            log.info("server stopped", extra={"replica": self.replica_id})

    async def wait(self) -> None:
        if self._grpc is not None:
            await self._grpc.wait_for_termination()


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the server's loops and wait for them, cancelling again any that
    swallowed the cancel (a Redis call torn down by it can come back as a
    plain answer or error); one that still runs after STOP_GRACE_S is left,
    with a warning, rather than hanging the stop."""
    deadline = asyncio.get_running_loop().time() + STOP_GRACE_S
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            names = sorted(t.get_name() for t in pending)
            log.warning("server loops did not stop; leaving them", extra={"loops": names})
            return
        _, pending = await asyncio.wait(pending, timeout=min(left, 0.5))
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.error("server loop %s had failed", task.get_name(), exc_info=task.exception())
