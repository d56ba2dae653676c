package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/multiagents/multiagents/workers/go/worker"
)

func TestRegistersExactlyTheConformanceWorkers(t *testing.T) {
	var names []string
	for name := range handlers("conf") {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{"conf.compensate", "conf.fail", "conf.flaky", "conf.invalid", "conf.slow", "conf.step", "conf.stream"}
	if !slices.Equal(names, want) {
		t.Errorf("names %v", names)
	}
}

func TestStepAppendsToVisited(t *testing.T) {
	for _, ctx := range []map[string]any{{}, {"visited": []any{"python"}}, {"visited": "junk"}} {
		got, err := step(context.Background(), &worker.Task{Step: "b", Context: ctx})
		if err != nil {
			t.Fatal(err)
		}
		prior, _ := ctx["visited"].([]any)
		want := fmt.Sprint(map[string]any{"visited": append(slices.Clone(prior), "go"), "last_lang": "go", "step_b": "go"})
		if fmt.Sprint(got) != want {
			t.Errorf("step(%v) = %v, want %v", ctx, got, want)
		}
	}
}

func TestFlakyFailsUntilTheConfiguredAttempt(t *testing.T) {
	cases := []struct {
		ctx     map[string]any
		attempt int
		fails   bool
	}{
		{map[string]any{}, 1, true},
		{map[string]any{}, 2, false},
		{map[string]any{"succeed_on_attempt": 3.0}, 2, true},
		{map[string]any{"succeed_on_attempt": 3.0}, 3, false},
	}
	for _, c := range cases {
		got, err := flaky(context.Background(), &worker.Task{Attempt: c.attempt, Context: c.ctx})
		switch {
		case c.fails && (err == nil || err.Error() != fmt.Sprintf("flaky attempt %d", c.attempt) || worker.IsNonRetryable(err)):
			t.Errorf("%v attempt %d: %v", c.ctx, c.attempt, err)
		case !c.fails && (err != nil || got["flaky_attempts"] != c.attempt || got["last_lang"] != "go"):
			t.Errorf("%v attempt %d: %v %v", c.ctx, c.attempt, got, err)
		}
	}
}

func TestInvalidIsANonRetryableValueError(t *testing.T) {
	_, err := invalid(context.Background(), &worker.Task{})
	var e *worker.Error
	if !errors.As(err, &e) || e.Type != "ValueError" || err.Error() != "invalid input" || !worker.IsNonRetryable(err) {
		t.Errorf("invalid: %#v", err)
	}
}

func TestFailAndCompensate(t *testing.T) {
	if _, err := fail(context.Background(), &worker.Task{}); err == nil || err.Error() != "boom from go" || worker.IsNonRetryable(err) ||
		errors.Unwrap(err) == nil || errors.Unwrap(err).Error() != "gateway refused go" {
		t.Errorf("fail: %v", err)
	}
	got, _ := compensate(context.Background(), &worker.Task{Step: "charge"})
	if got["compensated_by"] != "go" || got["compensated_step"] != "charge" {
		t.Errorf("compensate: %v", got)
	}
}

func TestSlowSleepsAndStopsWhenCancelled(t *testing.T) {
	got, err := slow(context.Background(), &worker.Task{Context: map[string]any{"sleep_ms": 120.0}})
	if err != nil || got["slept_ms"] != 120 || got["last_lang"] != "go" {
		t.Errorf("slow: %v %v", got, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := slow(ctx, &worker.Task{Context: map[string]any{"sleep_ms": 5000.0}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled slow: %v", err)
	}
	if time.Since(start) > time.Second {
		t.Errorf("cancelled slow took %v", time.Since(start))
	}
}
