package otelworker_test

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/multiagents/multiagents/workers/go/otelworker"
	"github.com/multiagents/multiagents/workers/go/worker"
)

const (
	traceID       = "0af7651916cd43dd8448eb211c80319c"
	attemptSpanID = "b7ad6b7169203331"
)

func TestWrappedHandlerSpanContinuesTheCommandsTraceparent(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	otel.SetTracerProvider(provider)
	defer otel.SetTracerProvider(noop.NewTracerProvider())

	var inside trace.SpanContext
	ok := otelworker.Wrap("pay", func(ctx context.Context, _ *worker.Task) (map[string]any, error) {
		_, span := otel.Tracer("app").Start(ctx, "inside the handler")
		span.End()
		inside = span.SpanContext()
		return map[string]any{}, nil
	})
	boom := otelworker.Wrap("boom", func(context.Context, *worker.Task) (map[string]any, error) {
		return nil, errors.New("no")
	})
	task := &worker.Task{
		CommandID: "tx:x0:1", WorkerName: "pay", TransactionID: "tx", Step: "a", Attempt: 1,
		Metadata: map[string]string{"traceparent": "00-" + traceID + "-" + attemptSpanID + "-01"},
	}
	if _, err := ok(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	if _, err := boom(context.Background(), task); err == nil {
		t.Fatal("the wrapped handler's error was lost")
	}

	spans := map[string]tracetest.SpanStub{}
	for _, s := range exporter.GetSpans() {
		spans[s.Name] = s
	}
	run := spans["run pay"]
	if got := run.SpanContext.TraceID().String(); got != traceID {
		t.Errorf("run span trace id %s, want %s", got, traceID)
	}
	if got := run.Parent.SpanID().String(); got != attemptSpanID {
		t.Errorf("run span parent %s, want the attempt span %s", got, attemptSpanID)
	}
	if run.SpanKind != trace.SpanKindConsumer {
		t.Errorf("run span kind %v", run.SpanKind)
	}
	user := spans["inside the handler"]
	if user.Parent.SpanID() != run.SpanContext.SpanID() || inside.TraceID().String() != traceID {
		t.Errorf("the handler's span is not a child of the run span: %v", user.Parent)
	}
	if failed := spans["run boom"]; failed.Status.Code != codes.Error {
		t.Errorf("failed handler span status %v", failed.Status)
	}
}
