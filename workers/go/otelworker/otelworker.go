// Package otelworker runs Go worker handlers in OpenTelemetry spans that
// join the workflow's trace (docs/protocol.md, "Tracing"). It is a module of
// its own, so the worker module itself takes no OpenTelemetry dependency.
//
//	w.Register("charge", otelworker.Wrap("charge", charge))
//
// Each command carries a W3C traceparent in its metadata naming the
// server's span of its step attempt; the wrapped handler runs in a span
// "run <worker name>" (kind CONSUMER) that continues it, with the span in
// its context, so spans the handler starts join the workflow's trace. Spans
// are recorded by the global tracer provider the application installs
// (otel.SetTracerProvider); without one, nothing is recorded.
package otelworker

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/multiagents/multiagents/workers/go/worker"
)

// Scope is the instrumentation scope of the spans.
const Scope = "github.com/multiagents/multiagents/workers/go/otelworker"

// Wrap returns handler h run inside the span of each command of worker name.
func Wrap(name string, h worker.Handler) worker.Handler {
	return func(ctx context.Context, t *worker.Task) (map[string]any, error) {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(t.Metadata))
		ctx, span := otel.Tracer(Scope).Start(ctx, "run "+name,
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				attribute.String("multiagents.transaction_id", t.TransactionID),
				attribute.String("multiagents.step", t.Step),
				attribute.Int("multiagents.attempt", t.Attempt),
				attribute.String("multiagents.command_id", t.CommandID),
				attribute.String("multiagents.worker", t.WorkerName),
			))
		defer span.End()
		result, err := h(ctx, t)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		return result, err
	}
}
