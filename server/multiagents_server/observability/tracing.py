"""OpenTelemetry traces of executions: one trace per workflow.

The trace of an execution holds
- the server span of its ExecuteWorkflow call (`submit`), child of the
  caller's span when the call carried a W3C `traceparent` header;
- one span for the execution (`workflow <name>`), from its start to its
  final state, child of the submit span;
- one span per step attempt (`step <step>`, compensations included), from
  the commit that queued the command to the commit of its answer (or
  timeout), child of the workflow span (a sub-workflow's workflow span is a
  child of its parent step's attempt span);
- the workers' spans: each command carries a `traceparent` naming its
  attempt span, which the Python, Node and Go SDKs continue.

An execution lives across processes (the attempt that one replica
dispatches, another may close) and for as long as it takes, so no span is
held open: the submit span's `traceparent` is stored with the execution
(its metadata, as before), and the ids of the workflow and attempt spans
are derived from the transaction and command ids (SHA-256), so any replica
can name them, and emit each span once, with its start time, when it ends.

The sampler decides once per workflow, at the submit span: a workflow
whose submit span is not sampled records no other span, and its commands
carry the submit's `traceparent` (flags 00), so no worker records one
either. `multiagents serve` samples a tenth of the workflows not submitted
under a caller's sampled span unless told otherwise (`provider_from_env`):
a span costs the server CPU to build and to export (docs/performance.md,
"Observability").

Spans are recorded only while an OpenTelemetry SDK `TracerProvider` is the
global one (`opentelemetry.trace.set_tracer_provider`): the embedding
application installs it, or `multiagents serve` from the standard OTEL_*
variables (`configure_from_env`). Otherwise these functions do nothing
but copy the caller's `traceparent`, as a server without tracing did.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Tracer, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from multiagents_server import engine

TRACEPARENT = "traceparent"
SCOPE = "multiagents_server"
# Attempt timings kept until the commit of the attempt's end (per process).
TIMINGS_KEPT = 10_000

_propagator = TraceContextTextMapPropagator()
# The span id `start_span` must give the span being started (see _ChosenIds).
_chosen_span_id: contextvars.ContextVar[int] = contextvars.ContextVar("span_id", default=0)


class _ChosenIds(IdGenerator):
    """Gives a started span the id chosen for it, else a random one."""

    def __init__(self, fallback: IdGenerator) -> None:
        self._fallback = fallback

    def generate_span_id(self) -> int:
        return _chosen_span_id.get() or self._fallback.generate_span_id()

    def generate_trace_id(self) -> int:
        return self._fallback.generate_trace_id()


_tracer_of: tuple[object, Tracer | None] = (None, None)


def tracer() -> Tracer | None:
    """The server's tracer, or None while no SDK tracer provider is installed."""
    global _tracer_of
    provider = trace.get_tracer_provider()
    known, found = _tracer_of
    if provider is known:
        return found
    found = None
    if isinstance(provider, TracerProvider):
        candidate = provider.get_tracer(SCOPE)
        if isinstance(candidate, Tracer):  # else the provider is disabled
            candidate.id_generator = _ChosenIds(candidate.id_generator)
            found = candidate
    _tracer_of = (provider, found)
    return found


def attempt_of(command_id: str) -> int:
    """The attempt number at the end of a command id (`<tx>:x0:3` -> 3)."""
    return int(command_id.rsplit(":", 1)[1])


def _id(kind: str, key: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{kind}|{key}".encode()).digest()[:size]) or 1


# Cached: a workflow's span id is asked for by each of its attempts' spans,
# an attempt's by its command and its span.
@functools.lru_cache(maxsize=4096)
def workflow_span_id(transaction_id: str) -> int:
    return _id("workflow", transaction_id, 8)


@functools.lru_cache(maxsize=4096)
def attempt_span_id(command_id: str) -> int:
    return _id("attempt", command_id, 8)


def _traceparent(trace_id: int, span_id: int, flags: int) -> str:
    """A W3C `traceparent` value (version 00), as the propagator writes it."""
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


@functools.lru_cache(maxsize=4096)
def _submitted(transaction_id: str, traceparent: str | None) -> SpanContext:
    """The submit span, from the `traceparent` stored with the execution; a
    trace id derived from the root transaction when there is none (submitted
    while tracing was off) or it is malformed. (Cached: every command and
    span of a workflow asks.)"""
    if traceparent:
        span = trace.get_current_span(_propagator.extract({TRACEPARENT: traceparent}))
        context = span.get_span_context()
        if context.is_valid:
            return context
    root = transaction_id.split(".", 1)[0]
    return SpanContext(
        _id("trace", root, 16), 0, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )


def _submit_of(ex: engine.Execution) -> SpanContext:
    return _submitted(ex.transaction_id, ex.metadata.get(TRACEPARENT))


def _workflow_parent(ex: engine.Execution) -> SpanContext | None:
    """The parent of the workflow span: the parent step's attempt span for a
    sub-workflow, else the submit span (None when there is none)."""
    submitted = _submit_of(ex)
    if ex.parent_command_id:
        span_id = attempt_span_id(ex.parent_command_id)
    elif submitted.span_id:
        span_id = submitted.span_id
    else:
        return None
    return SpanContext(
        submitted.trace_id, span_id, is_remote=True, trace_flags=submitted.trace_flags
    )


def _workflow_context(ex: engine.Execution) -> SpanContext:
    submitted = _submit_of(ex)
    return SpanContext(
        submitted.trace_id,
        workflow_span_id(ex.transaction_id),
        is_remote=True,
        trace_flags=submitted.trace_flags,
    )


def command_metadata(ex: engine.Execution, command_id: str) -> dict[str, str]:
    """The metadata of a command: the execution's, with a `traceparent` that
    names the command's attempt span while tracing is on. A workflow the
    sampler dropped keeps the submit's `traceparent` (flags 00): the worker
    records no span of it either, so no span needs naming."""
    if tracer() is None:
        return ex.metadata
    submitted = _submit_of(ex)
    if not submitted.trace_flags.sampled and TRACEPARENT in ex.metadata:
        return ex.metadata
    flags = submitted.trace_flags & TraceFlags.SAMPLED
    traceparent = _traceparent(submitted.trace_id, attempt_span_id(command_id), flags)
    return {**ex.metadata, TRACEPARENT: traceparent}


def _parent(context: SpanContext | None) -> otel_context.Context:
    if context is None:
        return otel_context.Context()
    return trace.set_span_in_context(NonRecordingSpan(context), otel_context.Context())


def _emit(
    t: Tracer,
    name: str,
    span_id: int,
    parent: SpanContext | None,
    start_ms: int,
    attributes: dict[str, Any],
    failure: engine.Failure | None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> None:
    """Record a span with the chosen id, from `start_ms` to now (in
    nanoseconds: a worker's span, on this host, ends before it)."""
    if failure is not None:
        attributes["multiagents.error_type"] = failure.type
    token = _chosen_span_id.set(span_id)
    try:
        span = t.start_span(
            name, _parent(parent), kind=kind, attributes=attributes, start_time=start_ms * 10**6
        )
    finally:
        _chosen_span_id.reset(token)
    if failure is not None:
        span.set_status(Status(StatusCode.ERROR, failure.message))
    span.end(end_time=max(time.time_ns(), start_ms * 10**6))


# -- attempt timings, between their dispatch and the commit of their end ------


class _Timings:
    """When attempts were queued and delivered, as this process saw them."""

    def __init__(self) -> None:
        self.dispatched: OrderedDict[str, int] = OrderedDict()
        self.delivered: OrderedDict[str, int] = OrderedDict()

    @staticmethod
    def _keep(kept: OrderedDict[str, int], command_id: str, ms: int) -> None:
        kept[command_id] = ms
        if len(kept) > TIMINGS_KEPT:
            kept.popitem(last=False)


_timings = _Timings()


def attempt_dispatched(command_id: str, now_ms: int) -> None:
    _Timings._keep(_timings.dispatched, command_id, now_ms)


def attempt_timing(command_id: str, dispatched_ms: int, delivered_ms: int) -> None:
    """The dispatcher's view of an answered attempt (its queue entry's time
    and the delivery to the session)."""
    _Timings._keep(_timings.dispatched, command_id, dispatched_ms)
    _Timings._keep(_timings.delivered, command_id, delivered_ms)


def attempt_duration_ms(command_id: str, now_ms: int) -> int | None:
    """How long the attempt took since its dispatch, when this process knows."""
    dispatched = _timings.dispatched.get(command_id)
    return None if dispatched is None else now_ms - dispatched


def attempt_ended(
    ex: engine.Execution,
    entry: engine.ResultRecorded | engine.ErrorRecorded,
    failure: engine.Failure | None,
    now_ms: int,
) -> None:
    """Emit the span of a step attempt whose end was committed."""
    command_id = entry.command_id
    start = _timings.dispatched.pop(command_id, now_ms)
    delivered = _timings.delivered.pop(command_id, None)
    t = tracer()
    if t is None or not _submit_of(ex).trace_flags.sampled:
        return  # no tracing, or the sampler dropped the workflow's trace
    # Few attributes (each costs, in the span and in its export): the step
    # and whether it compensates are in the span's name, the transaction id
    # begins the command id, the workflow is its parent's.
    attributes: dict[str, Any] = {
        "multiagents.command_id": command_id,
        "multiagents.attempt": attempt_of(command_id),
        "multiagents.worker": entry.worker,
    }
    if delivered is not None:
        attributes["multiagents.queue_wait_ms"] = delivered - start
    if isinstance(entry, engine.ErrorRecorded):
        attributes["multiagents.will_retry"] = entry.will_retry
    prefix = "compensate" if entry.kind is engine.CommandKind.COMPENSATE else "step"
    _emit(
        t,
        f"{prefix} {entry.step}",
        attempt_span_id(command_id),
        _workflow_context(ex),
        start,
        attributes,
        failure,
        SpanKind.PRODUCER,
    )


def workflow_ended(ex: engine.Execution) -> None:
    """Emit the span of an execution that reached its final state."""
    t = tracer()
    if t is None or not _submit_of(ex).trace_flags.sampled:
        return
    attributes = {
        "multiagents.transaction_id": ex.transaction_id,
        "multiagents.correlation_id": ex.correlation_id,
        "multiagents.workflow": ex.spec.name,
        "multiagents.workflow_version": ex.spec.version,
        "multiagents.state": ex.state.value,
    }
    failed = ex.state is not engine.State.COMPLETED
    failure = (ex.failure or engine.Failure(f"workflow {ex.state.value}")) if failed else None
    _emit(
        t,
        f"workflow {ex.spec.name}",
        workflow_span_id(ex.transaction_id),
        _workflow_parent(ex),
        ex.created_ms,
        attributes,
        failure,
    )


@contextmanager
def submit_span(workflow: str, metadata: MutableMapping[str, str]) -> Iterator[None]:
    """The server span of an ExecuteWorkflow call, child of the caller's
    `traceparent` (in `metadata`, from the call's headers) when there is one;
    `metadata[traceparent]` then names this span, and is stored with the
    execution, which so joins the submit's trace."""
    t = tracer()
    if t is None:
        yield
        return
    carried = metadata.get(TRACEPARENT)
    parent = _propagator.extract({TRACEPARENT: carried}) if carried else otel_context.Context()
    with t.start_as_current_span(
        "multiagents.v1.WorkflowService/ExecuteWorkflow",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"multiagents.workflow": workflow},
    ) as span:
        context = span.get_span_context()
        metadata[TRACEPARENT] = _traceparent(context.trace_id, context.span_id, context.trace_flags)
        yield


# -- `multiagents serve`: an SDK provider from the OTEL_* variables -------------

# The share of workflows traced when OTEL_TRACES_SAMPLER is not set (the
# SDK's own default would trace every one): docs/performance.md,
# "Observability".
DEFAULT_SAMPLE = 0.1


class TracingSetupError(ValueError):
    """The OTEL_* variables ask for an exporter or a sampler that cannot be used."""


def configure_from_env(environ: MutableMapping[str, str] | None = None) -> bool:
    """Install an SDK tracer provider when the OTEL_* variables ask for
    traces (see `provider_from_env`). Returns whether it did."""
    provider = provider_from_env(environ)
    if provider is None:
        return False
    trace.set_tracer_provider(provider)
    return True


def provider_from_env(environ: MutableMapping[str, str] | None = None) -> TracerProvider | None:
    """An SDK tracer provider when the OTEL_* variables ask for traces:
    `OTEL_TRACES_EXPORTER` (`otlp`, `console`; comma-separated), or an OTLP
    endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `..._TRACES_ENDPOINT`), which
    means `otlp`; None otherwise. Spans go to each exporter through the
    SDK's batch span processor (its OTEL_BSP_* settings apply). The OTLP
    exporter (package opentelemetry-exporter-otlp: the server's `otlp`
    extra) reads its own OTEL_EXPORTER_OTLP_* settings; `OTEL_SERVICE_NAME`
    names the service (default multiagents-server).

    The sampler is the SDK's from `OTEL_TRACES_SAMPLER` when that is set;
    otherwise `parentbased_traceidratio` at `OTEL_TRACES_SAMPLER_ARG`
    (default `DEFAULT_SAMPLE`): a workflow submitted under a caller's sampled
    span is always traced, others one in ten."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names and (
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        names = ["otlp"]
    names = [n for n in names if n != "none"]
    if not names:
        return None
    sampler = None if env.get("OTEL_TRACES_SAMPLER") else _default_sampler(env)
    exporters = [_exporter(name, env) for name in names]
    attributes = {"service.name": env.get("OTEL_SERVICE_NAME") or "multiagents-server"}
    provider = TracerProvider(resource=Resource.create(attributes), sampler=sampler)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _default_sampler(env: MutableMapping[str, str]) -> Sampler:
    text = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        ratio = float(text) if text else DEFAULT_SAMPLE
    except ValueError:
        ratio = -1.0
    if not 0 <= ratio <= 1:
        raise TracingSetupError(
            f"OTEL_TRACES_SAMPLER_ARG: {text!r} is not a ratio between 0 and 1 "
            "(the share of workflows traced)"
        )
    return ParentBased(TraceIdRatioBased(ratio))


def _exporter(name: str, env: MutableMapping[str, str]) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        raise TracingSetupError(
            f"OTEL_TRACES_EXPORTER: unknown exporter {name!r}; expected otlp, console or none"
        )
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"
    )
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc import trace_exporter as grpc_exporter

            return grpc_exporter.OTLPSpanExporter()
        from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_exporter

        return http_exporter.OTLPSpanExporter()
    except ImportError:
        raise TracingSetupError(
            "OTEL_TRACES_EXPORTER: the OTLP exporter needs the package "
            "opentelemetry-exporter-otlp (pip install 'multiagents-server[otlp]')"
        ) from None
