"""Server configuration: one frozen dataclass built from flags, environment
variables (`MULTIAGENTS_<FIELD>`) and a YAML file, in that precedence."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from multiagents.syntax import yaml_error
from multiagents_server.observability.logs import LOG_FORMATS


class ConfigError(ValueError):
    """A configuration value is missing, unknown or malformed; names the key."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything a server replica needs to run."""

    host: str = "127.0.0.1"
    port: int = 50051
    # Replicas run by `serve` on this machine behind the one port (0 = one
    # per core); see supervisor.py.
    processes: int = 0
    # Set by the supervisor for its replicas: share the port (SO_REUSEPORT).
    reuse_port: bool = False
    # None starts the embedded Redis in data_dir.
    redis_url: str | None = None
    data_dir: str = ".multiagents"
    # Prefix of every Redis key; lets several deployments (or tests) share a Redis.
    key_prefix: str = "ma"
    # "auto" detects a Redis Cluster (cluster_enabled); "standalone" or
    # "cluster" insist, and a server pointed at the other kind fails at start.
    redis_mode: str = "auto"
    # Buckets of the keyspace (the unit of a commit's slot and of timer
    # ownership); fixed by the first server that uses a keyspace.
    buckets: int = 64
    heartbeat_interval_ms: int = 5_000
    # How long the in-flight commands of a worker session that ended are kept
    # for the same worker to reconnect with its resume token and answer them;
    # after it they fail as WorkerLost and are retried (0: at once).
    resume_window_ms: int = 3_000
    default_step_timeout_ms: int = 600_000
    max_payload_bytes: int = 2 * 1024 * 1024
    # ExecuteWorkflow calls handled at once; beyond, RESOURCE_EXHAUSTED with
    # a retry hint (nothing applied), which the SDK clients retry.
    max_inflight_submits: int = 2_000
    # How long finished executions (state and history) are kept.
    retention_ms: int = 7 * 24 * 3600 * 1000
    # Entries (output chunks, rewinds) of an execution's output stream kept
    # at most; older ones are dropped (Redis trims approximately: up to ~100
    # more may stay) and a reader that had not read them gets a gap.
    output_stream_max_entries: int = 10_000
    # A replica that has not renewed its lease for this long is dead: it is
    # fenced off and its in-flight commands are reclaimed by another replica.
    # Renewed (and dead replicas looked for) every fifth of it, so work resumes
    # elsewhere within lease + lease/5 (3 s), and a pause of up to 4/5 of it
    # (2 s) is not taken for a death.
    replica_lease_ms: int = 2_500
    # A replica's lease is also renewed by a thread of its own while its event
    # loop has turned within this long, so a loop slowed by a burst of work is
    # not taken for a dead replica; one stuck longer loses its lease.
    replica_stall_limit_ms: int = 15_000
    drain_timeout_ms: int = 10_000
    client_tokens: tuple[str, ...] = ()
    worker_tokens: tuple[str, ...] = ()
    # With client tokens set, a server without worker tokens refuses to start
    # unless this says that anonymous workers are meant.
    allow_anonymous_workers: bool = False
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    # When set, clients must present a certificate signed by this CA (mTLS).
    tls_client_ca_file: str | None = None
    log_level: str = "INFO"
    # `text` (key=value fields) or `json` (one object per line); see observability/logs.py.
    log_format: str = "text"
    # Port of the Prometheus `/metrics` endpoint, on `host`; 0 = no metrics.
    metrics_port: int = 0
    # Monitoring (the seed's MonitoringConfig maps onto these).
    event_monitoring: bool = True
    trace_retention_ms: int = 24 * 3600 * 1000
    worker_monitoring: bool = True
    # A worker whose last heartbeat is older than this is not healthy.
    health_check_interval_ms: int = 30_000
    # The web dashboard's HTTP port on `host` (0 = no dashboard); every
    # replica of `serve --processes N` serves it on the one port.
    dashboard_port: int = 0

    @property
    def auth_enabled(self) -> bool:
        return bool(self.client_tokens or self.worker_tokens)

    def replace(self, **changes: Any) -> ServerConfig:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in fields(ServerConfig)}


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _convert(key: str, value: Any) -> Any:
    default = _FIELDS[key].default
    if key == "log_level":
        level = str(value).upper()
        if level not in LOG_LEVELS:
            raise ConfigError(f"log_level: expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return level
    if key == "log_format":
        if value not in LOG_FORMATS:
            expected = ", ".join(LOG_FORMATS)
            raise ConfigError(f"log_format: expected one of {expected}, got {value!r}")
        return value
    if isinstance(default, bool):
        if isinstance(value, str):
            return value.lower() in ("1", "true", "yes", "on")
        return bool(value)
    if isinstance(default, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if isinstance(default, tuple):
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if isinstance(value, list | tuple):
            return tuple(str(v) for v in value)
        raise ConfigError(f"{key}: expected a list or comma-separated string")
    return None if value is None else str(value)


def load_config(
    flags: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
) -> ServerConfig:
    """Build the configuration: flags win over env, env over the YAML file.

    Flags whose value is None are treated as not given. Unknown keys in the
    file are an error that names them.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or environ.get("MULTIAGENTS_CONFIG")
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {yaml_error(path, exc)}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: expected a mapping at the top level")
        unknown = sorted(set(loaded) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"config file {path}: unknown keys: {', '.join(unknown)}")
        values.update({k: _convert(k, v) for k, v in loaded.items()})
    for key in _FIELDS:
        env_value = environ.get(f"MULTIAGENTS_{key.upper()}")
        if env_value is not None:
            values[key] = _convert(key, env_value)
    for key, value in (flags or {}).items():
        if key not in _FIELDS:
            raise ConfigError(f"unknown setting: {key}")
        if value is not None:
            values[key] = _convert(key, value)
    config = ServerConfig(**values)
    check(config)
    return config


def check(config: ServerConfig) -> None:
    """Settings out of range, or each fine but wrong together: ConfigError."""
    if not 0 <= config.metrics_port <= 65535:
        raise ConfigError(
            f"metrics_port: must be a port number (0 = off), got {config.metrics_port}"
        )
    if not 0 <= config.dashboard_port <= 65535:
        raise ConfigError(f"dashboard_port: must be 0 (off) to 65535, got {config.dashboard_port}")
    for name in ("replica_lease_ms", "replica_stall_limit_ms"):
        if getattr(config, name) <= 0:
            raise ConfigError(
                f"{name}: must be a positive number of ms, got {getattr(config, name)}"
            )
    if config.dashboard_port and config.dashboard_port == config.port:
        raise ConfigError(f"dashboard_port: {config.dashboard_port} is the gRPC port too")
    if config.client_tokens and not config.worker_tokens and not config.allow_anonymous_workers:
        raise ConfigError(
            "worker_tokens: client tokens are set but no worker tokens, so any process "
            "could connect as a worker; set worker_tokens, or allow_anonymous_workers: true"
        )
