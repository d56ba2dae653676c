"""Worker spans that join the workflow's trace, and the caller's trace
context sent with a submit: with the OpenTelemetry API when it is installed
(`pip install multiagents[otel]`), nothing otherwise.

Each command carries a W3C `traceparent` in its metadata naming the
server's span of its step attempt (docs/protocol.md, "Tracing"). The
runtime runs the worker function inside a span that continues it, and makes
that span current, so spans the function creates (and outgoing calls that
an instrumentation library traces) are part of the workflow's trace. Spans
are recorded by the tracer provider the worker process installs (the API's
default records nothing).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

TRACEPARENT = "traceparent"
SCOPE = "multiagents"

# The OpenTelemetry API once looked for: the module, or None when absent.
_found: list[ModuleType | None] = []


def _otel() -> ModuleType | None:
    """`opentelemetry.trace` when the API is installed (imported on first
    use: a worker process without it imports nothing more than grpc)."""
    if not _found:
        try:
            from opentelemetry import trace
        except ImportError:
            _found.append(None)
        else:
            _found.append(trace)
    return _found[0]


def _propagator() -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


@contextmanager
def step_span(command: Any) -> Iterator[None]:
    """The span of one command run by this worker, child of the command's
    `traceparent` (a Command message)."""
    trace = _otel()
    if trace is None:
        yield
        return
    parent = _propagator().extract(dict(command.metadata))
    attributes = {
        "multiagents.transaction_id": command.transaction_id,
        "multiagents.step": command.step,
        "multiagents.attempt": command.attempt,
        "multiagents.command_id": command.command_id,
        "multiagents.worker": command.worker_name,
    }
    with trace.get_tracer(SCOPE).start_as_current_span(
        f"run {command.worker_name}",
        context=parent,
        kind=trace.SpanKind.CONSUMER,
        attributes=attributes,
    ):
        yield


def outgoing_metadata() -> tuple[tuple[str, str], ...]:
    """The `traceparent` of the caller's current span, as gRPC metadata (none
    without the API or outside a span)."""
    if _otel() is None:
        return ()
    carrier: dict[str, str] = {}
    _propagator().inject(carrier)
    return tuple((k, v) for k, v in carrier.items() if k == TRACEPARENT)
