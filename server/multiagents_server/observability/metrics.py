"""Prometheus metrics of the server (prometheus-client), served on their own
port (`metrics_port`), like Temporal's separate Prometheus listen address.

One process (`serve --processes 1`, or an embedded server) keeps its metrics
in memory and serves them itself. Under a supervisor (`serve --processes
N`), prometheus-client's multiprocess mode: every replica writes its values
to files in one directory (`PROMETHEUS_MULTIPROC_DIR`, set by the
supervisor before the replica starts), and the supervisor alone serves
`/metrics`, adding up the files of all its replicas, dead ones included for
counters and histograms (a restarted replica's counts are not lost), live
ones only for gauges. A scrape therefore sees the whole server, never one
replica picked by SO_REUSEPORT.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: from a few milliseconds (a local step) to 15 minutes (an LLM call).
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
WORKFLOW_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, 86400)
REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)


class Metrics:
    """Every metric of the server, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: Any) -> Histogram:
            return Histogram(name, doc, labels, registry=registry, buckets=buckets)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            # livesum: under a supervisor, the sum over the replicas alive.
            return Gauge(name, doc, labels, registry=registry, multiprocess_mode="livesum")

        self.workflows_started = counter(
            "multiagents_workflows_started_total",
            "Executions started (sub-workflows included), by workflow name.",
            ("workflow",),
        )
        self.workflows_finished = counter(
            "multiagents_workflows_finished_total",
            "Executions that reached a final state (completed, failed, compensated, "
            "cancelled), by workflow name and state.",
            ("workflow", "state"),
        )
        self.workflow_failures = counter(
            "multiagents_workflow_failures_total",
            "Executions that ended failed or compensated, by workflow name and the kind of "
            "their failure (application, timeout, budget_exceeded, ...).",
            ("workflow", "kind"),
        )
        self.workflow_duration = histogram(
            "multiagents_workflow_duration_seconds",
            "Time from the start of an execution to its final state.",
            ("workflow", "state"),
            WORKFLOW_BUCKETS,
        )
        self.step_attempts = counter(
            "multiagents_step_attempts_total",
            "Commands answered by workers, by worker name and outcome (completed, failed, "
            "lost: the session or replica holding it went away).",
            ("worker", "outcome"),
        )
        self.step_duration = histogram(
            "multiagents_step_duration_seconds",
            "Time a worker spent on a command: from its delivery to the session to its answer.",
            ("worker", "outcome"),
            STEP_BUCKETS,
        )
        self.queue_wait = histogram(
            "multiagents_step_queue_wait_seconds",
            "Time a command waited in its queue: from its commit to its delivery to a session.",
            ("worker",),
            STEP_BUCKETS,
        )
        self.retries = counter(
            "multiagents_step_retries_total",
            "Failed attempts that will be retried, by worker name.",
            ("worker",),
        )
        self.tokens = counter(
            "multiagents_step_tokens_total",
            "Tokens that workers reported with the answers the server accepted (a stale or "
            "duplicate answer does not count), by workflow name, model and direction "
            "(input, output).",
            ("workflow", "model", "direction"),
        )
        self.cost = counter(
            "multiagents_step_cost_usd_total",
            "Cost in US dollars that workers reported with the answers the server accepted, "
            "by workflow name and model.",
            ("workflow", "model"),
        )
        self.waiting_for_limit = gauge(
            "multiagents_steps_waiting_for_rate_limit",
            "Commands waiting for their places in shared rate limits, by the limit that "
            "refused them as declared (a key, or a prefix such as tenant:*) and the reason "
            "(concurrency, requests, tokens, backoff, unavailable).",
            ("limit", "reason"),
        )
        self.in_flight = gauge(
            "multiagents_steps_in_flight",
            "Commands delivered to worker sessions and not answered yet, by worker name.",
            ("worker",),
        )
        self.sessions = gauge(
            "multiagents_worker_sessions",
            "Connected worker sessions (processes), by SDK language.",
            ("language",),
        )
        self.redis_seconds = histogram(
            "multiagents_redis_operation_seconds",
            "Latency of the store's Redis operations (one operation: one pipeline or one "
            "Lua call, shared with concurrent ones), by operation.",
            ("operation",),
            REDIS_BUCKETS,
        )
        self.followups_pending = gauge(
            "multiagents_followups_pending",
            "Follow-ups (the outbox: starting or cancelling sub-workflows, answering a "
            "parent) committed and not carried out yet by this server.",
        )
        self.followups_recovered = counter(
            "multiagents_followups_recovered_total",
            "Follow-ups left behind by a replica that died after its commit, carried out "
            "by another one after their flush timer.",
        )


class MetricsEndpoint:
    """The HTTP listener of `/metrics` (a prometheus-client thread)."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Serve `registry` on http://host:port/metrics (port 0 picks a free one)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(server, thread)


def multiprocess_registry(directory: str | os.PathLike[str]) -> CollectorRegistry:
    """A registry that adds up the values written by the replicas in `directory`."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return registry


def prepare_multiprocess_dir(directory: Path) -> None:
    """An empty directory for the replicas' files (old ones would count twice)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def replica_exited(directory: str | os.PathLike[str], pid: int) -> None:
    """Forget the gauges of a replica that exited (its counters stay)."""
    mark_process_dead(pid, path=str(directory))  # type: ignore[no-untyped-call]
