"""`MonitoringConfig`: the seed's monitoring settings, carried to the server
(trace recording and retention, worker statistics and health) and to
logging (the `multiagents` and `multiagents_server` loggers)."""

from __future__ import annotations

import json
import logging as pylogging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


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
