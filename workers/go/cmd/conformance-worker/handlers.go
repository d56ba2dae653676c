package main

import (
	"context"
	"fmt"
	"time"

	"github.com/multiagents/multiagents/workers/go/worker"
)

// lang is the language tag the conformance scenarios look for.
const lang = "go"

// handlers returns the conformance workers under prefix.
func handlers(prefix string) map[string]worker.Handler {
	return map[string]worker.Handler{
		prefix + ".step":       step,
		prefix + ".flaky":      flaky,
		prefix + ".invalid":    invalid,
		prefix + ".fail":       fail,
		prefix + ".compensate": compensate,
		prefix + ".slow":       slow,
		prefix + ".stream":     stream,
	}
}

// stream publishes `chunks` (default 20) tokens "go:<i>;" and a log line,
// reports usage (7 input tokens, one output token and 1,000 nano-USD per
// chunk, model "go-model"), and fails its first attempt when fail_first.
func stream(_ context.Context, t *worker.Task) (map[string]any, error) {
	n := intOr(t.Context["chunks"], 20)
	for i := range n {
		if err := t.Emit(fmt.Sprintf("%s:%d;", lang, i)); err != nil {
			return nil, err
		}
	}
	if err := t.EmitOutput(worker.OutputLog, "done\n"); err != nil {
		return nil, err
	}
	usage := worker.Usage{InputTokens: 7, OutputTokens: int64(n), Model: lang + "-model", CostNanoUSD: 1000 * int64(n)}
	if err := t.ReportUsage(usage); err != nil {
		return nil, err
	}
	if failFirst, _ := t.Context["fail_first"].(bool); failFirst && t.Attempt == 1 {
		return nil, fmt.Errorf("stream attempt %d failed", t.Attempt)
	}
	return map[string]any{"streamed": n, "last_lang": lang}, nil
}

// step records that this language ran the step.
func step(_ context.Context, t *worker.Task) (map[string]any, error) {
	visited, _ := t.Context["visited"].([]any)
	return map[string]any{
		"visited":        append(visited, lang),
		"last_lang":      lang,
		"step_" + t.Step: lang,
	}, nil
}

// flaky fails with a retryable error until attempt succeed_on_attempt (default 2).
func flaky(_ context.Context, t *worker.Task) (map[string]any, error) {
	succeedOn := intOr(t.Context["succeed_on_attempt"], 2)
	if t.Attempt < succeedOn {
		return nil, fmt.Errorf("flaky attempt %d", t.Attempt)
	}
	return map[string]any{"flaky_attempts": t.Attempt, "last_lang": lang}, nil
}

// invalid fails with a validation error, never retried.
func invalid(context.Context, *worker.Task) (map[string]any, error) {
	return nil, worker.NonRetryable(worker.NewError("ValueError", "invalid input"))
}

// fail always fails with a retryable error, caused by another one.
func fail(context.Context, *worker.Task) (map[string]any, error) {
	return nil, &worker.Error{Message: "boom from " + lang, Err: fmt.Errorf("gateway refused %s", lang)}
}

// compensate undoes a step.
func compensate(_ context.Context, t *worker.Task) (map[string]any, error) {
	return map[string]any{"compensated_by": lang, "compensated_step": t.Step}, nil
}

// slow sleeps sleep_ms (default 1000) in 50 ms slices, heartbeating its
// progress every 100 ms, and stops when its context is cancelled.
func slow(ctx context.Context, t *worker.Task) (map[string]any, error) {
	sleepMS := intOr(t.Context["sleep_ms"], 1000)
	total := time.Duration(sleepMS) * time.Millisecond
	start := time.Now()
	lastBeat := start
	for elapsed := time.Duration(0); elapsed < total; elapsed = time.Since(start) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(50*time.Millisecond, total-elapsed)):
		}
		if time.Since(lastBeat) >= 100*time.Millisecond {
			lastBeat = time.Now()
			t.Heartbeat(map[string]any{"progress": min(1, float64(time.Since(start))/float64(total))})
		}
	}
	return map[string]any{"slept_ms": sleepMS, "last_lang": lang}, nil
}

// intOr returns v as an int when it is a JSON number, else def.
func intOr(v any, def int) int {
	if f, ok := v.(float64); ok {
		return int(f)
	}
	return def
}
