"""Observability of the server: Prometheus metrics, OpenTelemetry traces and
the log lines about workflows, behind one-line hooks that the dispatcher,
the orchestrator and the store call.

Every hook is cheap when its output is off: metrics are recorded only once
`enable_metrics` ran in this process (the server does when `metrics_port` is
set, a supervisor's replica when the supervisor serves the metrics), spans
only while an OpenTelemetry SDK tracer provider is installed (see
`tracing`), and the per-step log lines are DEBUG.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry

from multiagents_server import engine, store
from multiagents_server.observability import tracing
from multiagents_server.observability.metrics import (
    MULTIPROC_ENV,
    Metrics,
    MetricsEndpoint,
    serve,
)
from multiagents_server.observability.tracing import attempt_of

if TYPE_CHECKING:
    from multiagents_server.dispatcher import Inflight, Session

__all__ = [
    "MetricsEndpoint",
    "committed",
    "enable_metrics",
    "followups_recovered",
    "outbox",
    "session_closed",
    "session_opened",
    "start_metrics",
    "step_answered",
    "step_sent",
    "submit_span",
    "waiting_for_limit",
]

# The log of what executions did: ends and step failures (INFO), step
# completions (DEBUG). (Starts are logged by the orchestrator.)
log = logging.getLogger("multiagents_server.workflows")

_metrics: Metrics | None = None
REGISTRY = CollectorRegistry()

# The `model` label of the usage metrics takes the first MAX_MODEL_LABELS
# distinct values this process sees (models are the workers' strings);
# later ones count as "other".
MAX_MODEL_LABELS = 100
OTHER_MODEL = "other"
_model_labels: set[str] = set()

P = ParamSpec("P")
R = TypeVar("R")


def _hook(function: Callable[P, None]) -> Callable[P, None]:
    """A hook never fails its caller (a commit, a delivery): a bug in it is
    logged, and the work it observes goes on."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            function(*args, **kwargs)
        except Exception:
            log.exception("observability hook %s failed", function.__name__)

    return wrapper


def enable_metrics() -> Metrics:
    """Record metrics in this process from now on (idempotent)."""
    global _metrics
    if _metrics is None:
        _metrics = metrics = Metrics(REGISTRY)
        store.observe_operations(
            lambda operation, seconds: metrics.redis_seconds.labels(operation).observe(seconds)
        )
    return _metrics


def start_metrics(host: str, port: int) -> MetricsEndpoint | None:
    """Record metrics, and serve them on host:port unless this process is a
    replica of a supervisor (which serves its replicas' metrics itself: see
    `metrics`). Raises OSError when the port cannot be bound."""
    enable_metrics()
    if os.environ.get(MULTIPROC_ENV):
        return None
    return serve(REGISTRY, host, port)


def _ms_to_s(ms: int) -> float:
    return max(ms, 0) / 1000


# -- the dispatcher ---------------------------------------------------------------


@_hook
def session_opened(session: Session) -> None:
    if _metrics is not None:
        _metrics.sessions.labels(session.sdk_language or "unknown").inc()


@_hook
def session_closed(session: Session) -> None:
    if _metrics is not None:
        _metrics.sessions.labels(session.sdk_language or "unknown").dec()


@_hook
def step_sent(inflight: Inflight) -> None:
    """A command was delivered to a session."""
    if _metrics is not None:
        worker = inflight.worker
        _metrics.queue_wait.labels(worker).observe(
            _ms_to_s(inflight.started_ms - inflight.dispatched_ms)
        )
        _metrics.in_flight.labels(worker).inc()


@_hook
def step_answered(inflight: Inflight, failure: engine.Failure | None, now_ms: int) -> None:
    """A delivered command was answered, or lost with its session."""
    if _metrics is not None:
        if failure is None:
            outcome = "completed"
        elif failure.kind is engine.FailureKind.WORKER_LOST:
            outcome = "lost"
        else:
            outcome = "failed"
        worker = inflight.worker
        _metrics.in_flight.labels(worker).dec()
        _metrics.step_attempts.labels(worker, outcome).inc()
        _metrics.step_duration.labels(worker, outcome).observe(
            _ms_to_s(now_ms - inflight.started_ms)
        )
    tracing.attempt_timing(inflight.command_id, inflight.dispatched_ms, inflight.started_ms)


@_hook
def waiting_for_limit(limit: str, reason: str, delta: int) -> None:
    """`delta` commands more (or fewer) wait for their places in shared rate
    limits, refused by the limit declared as `limit` for `reason`."""
    if _metrics is not None:
        _metrics.waiting_for_limit.labels(limit, reason).inc(delta)


# -- the orchestrator --------------------------------------------------------------


@_hook
def committed(transition: engine.Transition, now_ms: int) -> None:
    """A transition was committed: count, log and trace what it recorded."""
    ex = transition.execution
    for entry in transition.history:
        match entry:
            case engine.CommandRecorded():
                tracing.attempt_dispatched(entry.command_id, now_ms)
            case engine.ResultRecorded():
                _usage_reported(ex, entry.usage)
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("step completed", extra=_step_fields(ex, entry))
                tracing.attempt_ended(ex, entry, None, now_ms)
            case engine.ErrorRecorded():
                _usage_reported(ex, entry.usage)
                _step_failed(ex, entry, now_ms)
            case engine.StatusChanged(state=engine.State.PENDING):
                if _metrics is not None:
                    _metrics.workflows_started.labels(ex.spec.name).inc()
            case engine.StatusChanged() if entry.state.terminal:
                _workflow_finished(ex, now_ms)


def _usage_reported(ex: engine.Execution, used: engine.Usage | None) -> None:
    if _metrics is None or used is None:
        return
    workflow = ex.spec.name
    model = ",".join(used.models)
    if model not in _model_labels:
        if len(_model_labels) < MAX_MODEL_LABELS:
            _model_labels.add(model)
        else:
            model = OTHER_MODEL
    if used.input_tokens:
        _metrics.tokens.labels(workflow, model, "input").inc(used.input_tokens)
    if used.output_tokens:
        _metrics.tokens.labels(workflow, model, "output").inc(used.output_tokens)
    if used.cost_nano_usd:
        _metrics.cost.labels(workflow, model).inc(used.cost_nano_usd / 1e9)


def _step_fields(
    ex: engine.Execution, entry: engine.ResultRecorded | engine.ErrorRecorded
) -> dict[str, Any]:
    return {
        "transaction_id": ex.transaction_id,
        "workflow": ex.spec.name,
        "step": entry.step,
        "attempt": attempt_of(entry.command_id),
        "command_id": entry.command_id,
        "worker": entry.worker,
        "kind": entry.kind.value,
    }


def _step_failed(ex: engine.Execution, entry: engine.ErrorRecorded, now_ms: int) -> None:
    if _metrics is not None and entry.will_retry:
        _metrics.retries.labels(entry.worker).inc()
    fields = _step_fields(ex, entry)
    fields.update(
        error_type=entry.failure.type, error=entry.failure.message, will_retry=entry.will_retry
    )
    duration = tracing.attempt_duration_ms(entry.command_id, now_ms)
    if duration is not None:
        fields["duration_ms"] = duration
    log.info("step failed", extra=fields)
    tracing.attempt_ended(ex, entry, entry.failure, now_ms)


def _workflow_finished(ex: engine.Execution, now_ms: int) -> None:
    state = ex.state.value
    duration_ms = now_ms - ex.created_ms
    if _metrics is not None:
        _metrics.workflows_finished.labels(ex.spec.name, state).inc()
        _metrics.workflow_duration.labels(ex.spec.name, state).observe(_ms_to_s(duration_ms))
        failed = ex.state in (engine.State.FAILED, engine.State.COMPENSATED)
        if failed and ex.failure is not None:
            _metrics.workflow_failures.labels(ex.spec.name, ex.failure.kind.value).inc()
    fields: dict[str, Any] = {
        "transaction_id": ex.transaction_id,
        "workflow": ex.spec.name,
        "state": state,
        "duration_ms": duration_ms,
    }
    if ex.failure is not None:
        fields.update(error_type=ex.failure.type, error=ex.failure.message)
    log.info("workflow %s", state, extra=fields)
    tracing.workflow_ended(ex)


def outbox(
    method: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R]]:
    """Decorates the method that carries out a commit's follow-ups: counts
    them as pending while it runs."""

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if _metrics is None:
            return await method(*args, **kwargs)
        _metrics.followups_pending.inc()
        try:
            return await method(*args, **kwargs)
        finally:
            _metrics.followups_pending.dec()

    return wrapper


@_hook
def followups_recovered(count: int) -> None:
    """Follow-ups left behind by a dead replica are being carried out."""
    if _metrics is not None:
        _metrics.followups_recovered.inc(count)


# -- the transport and the store ---------------------------------------------------


@contextmanager
def submit_span(workflow: str, metadata: MutableMapping[str, str]) -> Iterator[None]:
    """The span of an ExecuteWorkflow call (see `tracing.submit_span`)."""
    with tracing.submit_span(workflow, metadata):
        yield
