"""The tracer provider `multiagents serve` installs from the OTEL_* variables:
whether it records at all, and which workflows it samples (a tenth of those
without a sampled caller by default, every one a caller traces, or what
OTEL_TRACES_SAMPLER says)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from multiagents_server.observability import tracing

ROOTS = 2000


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The SDK reads its own variables (OTEL_TRACES_SAMPLER) from os.environ."""
    for name in ("OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_SDK_DISABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    yield


def provider() -> TracerProvider:
    made = tracing.provider_from_env()
    assert made is not None
    return made


def sampled_roots(made: TracerProvider) -> int:
    """How many of ROOTS spans without a parent the provider samples (spans
    never ended, so nothing is exported)."""
    tracer = made.get_tracer("test")
    return sum(
        tracer.start_span("submit").get_span_context().trace_flags.sampled for _ in range(ROOTS)
    )


def child_of(made: TracerProvider, sampled: bool) -> bool:
    """Whether a span under a caller's remote span is sampled."""
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    parent = NonRecordingSpan(SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=flags))
    span = made.get_tracer("test").start_span("submit", trace.set_span_in_context(parent))
    return span.get_span_context().trace_flags.sampled


def test_by_default_a_tenth_of_root_workflows_and_every_traced_caller_are_sampled() -> None:
    made = provider()
    # Binomial(2000, 0.1): 200 expected, standard deviation 13.4.
    assert 130 <= sampled_roots(made) <= 270
    assert child_of(made, sampled=True)
    assert not child_of(made, sampled=False)
    made.shutdown()


def test_the_sampler_arg_alone_sets_the_default_ratio(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "1")
    made = provider()
    assert sampled_roots(made) == ROOTS
    made.shutdown()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    made = provider()
    assert sampled_roots(made) == 0
    assert child_of(made, sampled=True)
    made.shutdown()


def test_otel_traces_sampler_is_the_sdks_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
    made = provider()
    assert sampled_roots(made) == ROOTS
    assert not child_of(made, sampled=False)
    made.shutdown()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    made = provider()
    assert child_of(made, sampled=False)
    made.shutdown()


@pytest.mark.parametrize("arg", ["ten percent", "1.5", "-0.1"])
def test_a_bad_sampler_arg_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, arg: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", arg)
    with pytest.raises(
        tracing.TracingSetupError, match=r"OTEL_TRACES_SAMPLER_ARG: .* between 0 and 1"
    ):
        tracing.provider_from_env()


def test_no_exporter_no_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert tracing.provider_from_env() is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.provider_from_env() is None
