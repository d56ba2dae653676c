"""Monitoring, as the seed's "Monitoring Integration" shows it.

The server records every command's lifecycle (dispatch → pickup → processing
→ completion) and per-worker statistics, for workers in every language.
`EventMonitor` and `WorkerMonitor` read them over `MonitoringService`;
`MonitoringConfig` carries the seed's settings to the server and to logging.
"""

from __future__ import annotations

import contextvars
import json
import logging as pylogging
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from multiagents.channel import open_channel
from multiagents.errors import from_rpc_error
from multiagents.v1 import events_pb2, monitoring_service_pb2_grpc
from multiagents.v1 import monitoring_service_pb2 as mpb

DEFAULT_SERVER = "127.0.0.1:50051"

# The address of the framework started last in this async context (set by
# `create_simple_framework`), so `EventMonitor(logger=logger)` finds it.
current_server: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "multiagents_server_address", default=None
)


def resolve_address(address: str | None) -> str:
    return address or current_server.get() or os.environ.get("MULTIAGENTS_SERVER", DEFAULT_SERVER)


# -- configuration ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    """`logging:` — where the framework's logs go."""

    default_logger: str = "console"
    level: str = "INFO"
    file_path: str = "multiagents.log"


@dataclass(frozen=True, slots=True)
class EventMonitoringSettings:
    """`event_monitoring:` — command lifecycle traces kept by the server."""

    enabled: bool = True
    trace_retention_hours: float = 24


@dataclass(frozen=True, slots=True)
class WorkerMonitoringSettings:
    """`worker_monitoring:` — per-worker counters, timings and health."""

    enabled: bool = True
    health_check_interval_seconds: float = 30


def _section(cls: type[Any], name: str, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    if value is None:
        return cls()
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected a mapping, got {type(value).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(
            f"{name}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return cls(**value)


@dataclass(frozen=True, init=False)
class MonitoringConfig:
    """The seed's monitoring configuration; every key has an effect.

    `logging.default_logger` ("console" or "file") and `logging.level` set up
    the `multiagents` logger; `event_monitoring.*` and `worker_monitoring.*`
    go to the server (trace recording and retention, worker statistics and
    the heartbeat age that counts as healthy).
    """

    logging: LoggingSettings = field(default_factory=LoggingSettings)
    event_monitoring: EventMonitoringSettings = field(default_factory=EventMonitoringSettings)
    worker_monitoring: WorkerMonitoringSettings = field(default_factory=WorkerMonitoringSettings)

    def __init__(
        self,
        logging: Mapping[str, Any] | LoggingSettings | None = None,
        event_monitoring: Mapping[str, Any] | EventMonitoringSettings | None = None,
        worker_monitoring: Mapping[str, Any] | WorkerMonitoringSettings | None = None,
    ) -> None:
        log_settings = _section(LoggingSettings, "logging", logging)
        if log_settings.default_logger not in ("console", "file"):
            raise ValueError(
                "logging.default_logger: expected 'console' or 'file', "
                f"got {log_settings.default_logger!r}"
            )
        if not isinstance(_level(log_settings.level), int):
            raise ValueError(f"logging.level: unknown level {log_settings.level!r}")
        events = _section(EventMonitoringSettings, "event_monitoring", event_monitoring)
        if events.trace_retention_hours <= 0:
            raise ValueError("event_monitoring.trace_retention_hours: must be positive")
        workers = _section(WorkerMonitoringSettings, "worker_monitoring", worker_monitoring)
        if workers.health_check_interval_seconds <= 0:
            raise ValueError("worker_monitoring.health_check_interval_seconds: must be positive")
        object.__setattr__(self, "logging", log_settings)
        object.__setattr__(self, "event_monitoring", events)
        object.__setattr__(self, "worker_monitoring", workers)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitoringConfig:
        known = {"logging", "event_monitoring", "worker_monitoring"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"monitoring config: unknown keys {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> MonitoringConfig:
        """Load a YAML (or JSON) file with the seed's keys."""
        text = Path(path).read_text()
        if str(path).endswith(".json"):
            data = json.loads(text)
        else:
            try:
                import yaml
            except ImportError:
                raise ValueError(
                    f"{path}: reading YAML needs PyYAML (pip install pyyaml)"
                ) from None
            data = yaml.safe_load(text) or {}
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected a mapping at the top level")
        return cls.from_dict(data)

    def server_settings(self) -> dict[str, Any]:
        """The server configuration fields this config sets."""
        return {
            "event_monitoring": self.event_monitoring.enabled,
            "trace_retention_ms": int(self.event_monitoring.trace_retention_hours * 3_600_000),
            "worker_monitoring": self.worker_monitoring.enabled,
            "health_check_interval_ms": int(
                self.worker_monitoring.health_check_interval_seconds * 1000
            ),
        }

    def configure_logging(self) -> pylogging.Logger:
        """Send the SDK's and the server's logs to the console or a file, at `level`."""
        handler: pylogging.Handler
        if self.logging.default_logger == "file":
            handler = pylogging.FileHandler(self.logging.file_path)
        else:
            handler = pylogging.StreamHandler()
        handler.setFormatter(pylogging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        setattr(handler, "_multiagents", True)  # noqa: B010 - marks our own handler
        for name in ("multiagents", "multiagents_server"):
            logger = pylogging.getLogger(name)
            logger.setLevel(_level(self.logging.level))
            for old in [h for h in logger.handlers if getattr(h, "_multiagents", False)]:
                logger.removeHandler(old)
                old.close()
            logger.addHandler(handler)
        return pylogging.getLogger("multiagents")


def _level(name: str) -> Any:
    return pylogging.getLevelName(name.upper())


# -- readers ----------------------------------------------------------------------


def _dt(ts: Any) -> datetime | None:
    return ts.ToDatetime() if ts.seconds or ts.nanos else None


@dataclass(frozen=True, slots=True)
class EventTrace:
    """Lifecycle of one command: dispatch → pickup → processing → completion."""

    command_id: str
    transaction_id: str
    correlation_id: str
    worker_name: str
    step: str
    dispatched_at: datetime | None
    picked_up_at: datetime | None
    completed_at: datetime | None
    queue_latency_ms: int
    processing_ms: int
    success: bool
    error: dict[str, str] | None

    @classmethod
    def from_proto(cls, t: mpb.EventTrace) -> EventTrace:
        return cls(
            command_id=t.command_id,
            transaction_id=t.transaction_id,
            correlation_id=t.correlation_id,
            worker_name=t.worker_name,
            step=t.step,
            dispatched_at=_dt(t.dispatched_at),
            picked_up_at=_dt(t.picked_up_at),
            completed_at=_dt(t.completed_at),
            queue_latency_ms=t.queue_latency.ToMilliseconds(),
            processing_ms=t.processing_time.ToMilliseconds(),
            success=t.success,
            error={"type": t.failure.type, "message": t.failure.message}
            if t.HasField("failure")
            else None,
        )


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """Statistics of one worker name, across every replica and language."""

    worker_name: str
    succeeded: int
    failed: int
    success_rate: float
    p50_ms: int
    p95_ms: int
    p99_ms: int
    health: str
    error_types: dict[str, int]
    sessions: int
    languages: tuple[str, ...]

    @classmethod
    def from_proto(cls, s: mpb.WorkerStats) -> WorkerStats:
        return cls(
            worker_name=s.worker_name,
            succeeded=s.succeeded,
            failed=s.failed,
            success_rate=s.success_rate,
            p50_ms=s.p50.ToMilliseconds(),
            p95_ms=s.p95.ToMilliseconds(),
            p99_ms=s.p99.ToMilliseconds(),
            health=mpb.WorkerHealth.Name(s.health).removeprefix("WORKER_HEALTH_").lower(),
            error_types=dict(s.error_types),
            sessions=s.sessions,
            languages=tuple(s.sdk_languages),
        )


class _MonitorClient:
    def __init__(
        self,
        logger: pylogging.Logger | None = None,
        *,
        address: str | None = None,
        token: str | None = None,
    ) -> None:
        self.logger = logger or pylogging.getLogger("multiagents.monitoring")
        self._address = address
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> monitoring_service_pb2_grpc.MonitoringServiceStub:
        if self._channel is None:
            self._channel = open_channel(resolve_address(self._address))
        return monitoring_service_pb2_grpc.MonitoringServiceStub(self._channel)

    async def _call(self, name: str, request: Any) -> Any:
        try:
            return await getattr(self._stub(), name)(request, metadata=self._metadata, timeout=30)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


class EventMonitor(_MonitorClient):
    """Reads command lifecycles and follows the live event feed.

    `EventMonitor(logger=logger)` finds the framework started in this context
    (or MULTIAGENTS_SERVER); pass `address=` to watch another server.
    """

    async def traces(
        self, *, transaction_id: str = "", correlation_id: str = "", limit: int = 100
    ) -> list[EventTrace]:
        """Command traces, oldest first, of one transaction or correlation id (or the newest)."""
        request = mpb.GetEventTracesRequest(
            transaction_id=transaction_id, correlation_id=correlation_id, limit=limit
        )
        response = await self._call("GetEventTraces", request)
        return [EventTrace.from_proto(t) for t in response.traces]

    async def lifecycle(self, transaction_id: str) -> list[EventTrace]:
        """Every command of one execution in dispatch order, and log each one."""
        traces = await self.traces(transaction_id=transaction_id, limit=10_000)
        for t in traces:
            self.logger.info(
                "command %s step=%s worker=%s queue=%dms processing=%dms success=%s",
                t.command_id, t.step, t.worker_name, t.queue_latency_ms, t.processing_ms, t.success,
            )  # fmt: skip
        return traces

    async def events(
        self, *, transaction_id: str = "", correlation_id: str = ""
    ) -> AsyncIterator[events_pb2.WorkflowEvent]:
        """The live event feed, optionally filtered; runs until the caller stops."""
        request = mpb.StreamEventsRequest(
            transaction_id=transaction_id, correlation_id=correlation_id
        )
        call = self._stub().StreamEvents(request, metadata=self._metadata)
        try:
            async for response in call:
                self.logger.debug("event %s", response.event.WhichOneof("event"))
                yield response.event
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            call.cancel()


class WorkerMonitor(_MonitorClient):
    """Reads per-worker success/failure rates, timings, health and error patterns."""

    async def stats(self, *worker_names: str) -> dict[str, WorkerStats]:
        """Statistics by worker name (all known names when none are given)."""
        request = mpb.GetWorkerStatsRequest(worker_names=list(worker_names))
        response = await self._call("GetWorkerStats", request)
        result = {s.worker_name: WorkerStats.from_proto(s) for s in response.stats}
        for s in result.values():
            self.logger.info(
                "worker %s: %d ok, %d failed (%.0f%%), p50=%dms p99=%dms, %s",
                s.worker_name, s.succeeded, s.failed, 100 * s.success_rate, s.p50_ms, s.p99_ms,
                s.health,
            )  # fmt: skip
        return result

    async def sessions(self) -> list[mpb.WorkerSession]:
        """Connected worker sessions across every server replica."""
        response = await self._call("ListWorkers", mpb.ListWorkersRequest())
        return list(response.sessions)
