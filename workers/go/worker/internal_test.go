package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
	"github.com/multiagents/multiagents/workers/go/internal/payload"
)

func TestFailureOfMapsErrorsToTypesAndRetryability(t *testing.T) {
	typed := &Error{Type: "CardDeclined", Message: "declined", Details: map[string]any{"code": "51"}}
	cases := []struct {
		name         string
		err          error
		typ, message string
		nonRetryable bool
		details      string
	}{
		{"plain error", errors.New("boom"), "Error", "boom", false, ""},
		{"typed error", NewError("ValueError", "bad"), "ValueError", "bad", false, ""},
		{"non-retryable plain", NonRetryable(errors.New("bad input")), "Error", "bad input", true, ""},
		{"non-retryable typed", NonRetryable(NewError("ValueError", "invalid input")), "ValueError", "invalid input", true, ""},
		{"wrapped typed keeps type and details", fmt.Errorf("charging: %w", typed), "CardDeclined", "charging: declined", false, `{"code":"51"}`},
		{"non-retryable wrapped", NonRetryable(fmt.Errorf("charging: %w", typed)), "CardDeclined", "charging: declined", true, `{"code":"51"}`},
		{"wrapped non-retryable stays non-retryable", fmt.Errorf("step: %w", NonRetryable(errors.New("x"))), "Error", "step: x", true, ""},
		{"joined", errors.Join(errors.New("a"), NonRetryable(NewError("ValueError", "b"))), "ValueError", "a\nb", true, ""},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), "DeadlineExceeded", "call: context deadline exceeded", false, ""},
		{"cancelled", context.Canceled, "Cancelled", "context canceled", false, ""},
		{"type only", &Error{Type: "Oops"}, "Oops", "Oops", false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := failureOf(c.err)
			if f.GetType() != c.typ || f.GetMessage() != c.message || f.GetNonRetryable() != c.nonRetryable ||
				string(f.GetDetails().GetData()) != c.details {
				t.Errorf("got %v", f)
			}
		})
	}
}

func TestWrappedErrorsAreTheCauseChainUpToItsLimit(t *testing.T) {
	typed := &Error{Type: "CardDeclined", Message: "declined", Err: errors.New("code 51")}
	f := failureOf(fmt.Errorf("charging: %w", typed))
	var chain []string
	for c := f; c != nil; c = c.GetCause() {
		if c.GetKind() != pb.FailureKind_FAILURE_KIND_APPLICATION {
			t.Errorf("kind of %v", c)
		}
		chain = append(chain, c.GetType()+": "+c.GetMessage())
	}
	want := []string{"CardDeclined: charging: declined", "CardDeclined: declined", "Error: code 51"}
	if !slices.Equal(chain, want) {
		t.Errorf("chain %q, want %q", chain, want)
	}

	deep := errors.New("root")
	for i := range 12 {
		deep = fmt.Errorf("level %d: %w", i, deep)
	}
	depth := 0
	for c := failureOf(deep).GetCause(); c != nil; c = c.GetCause() {
		depth++
	}
	if depth != MaxCauseDepth {
		t.Errorf("%d causes, want %d", depth, MaxCauseDepth)
	}
}

func TestNonRetryableOfNilIsNil(t *testing.T) {
	if NonRetryable(nil) != nil {
		t.Error("NonRetryable(nil) != nil")
	}
}

func TestFlushBatchesAnswersUnderTheSizeLimit(t *testing.T) {
	w := New(Options{})
	big := strings.Repeat("x", maxBatchBytes/2)
	for i := range 5 {
		p, _ := payload.Encode(map[string]any{"v": big})
		w.outcomes = append(w.outcomes, &pb.CommandOutcome{Outcome: &pb.CommandOutcome_Result{
			Result: &pb.CommandResult{CommandId: fmt.Sprint(i), Result: p}}})
	}
	small := &pb.CommandOutcome{Outcome: &pb.CommandOutcome_Failure{Failure: &pb.CommandFailure{CommandId: "f"}}}
	w.outcomes = append(w.outcomes, small)
	var msgs []*pb.ConnectRequest
	err := w.flush(func(m *pb.ConnectRequest) error { msgs = append(msgs, m); return nil }, "s")
	if err != nil || len(w.sent) != 6 {
		t.Fatalf("flush = %d, %v", len(w.sent), err)
	}
	// Two half-megabyte answers never fit together with envelope overhead:
	// each goes alone, and the last one shares a batch with the small failure.
	var sizes []int
	for _, m := range msgs {
		if o := m.GetOutcomes(); o != nil {
			sizes = append(sizes, len(o.GetOutcomes()))
		} else {
			sizes = append(sizes, 1)
		}
	}
	if fmt.Sprint(sizes) != "[1 1 1 1 2]" {
		t.Errorf("batch sizes %v", sizes)
	}
	if msgs[0].GetResult() == nil {
		t.Errorf("single answer not sent as CommandResult: %v", msgs[0])
	}
}

func TestFlushKeepsUnsentAnswersPending(t *testing.T) {
	w := New(Options{})
	for i := range 3 {
		w.outcomes = append(w.outcomes, &pb.CommandOutcome{Outcome: &pb.CommandOutcome_Failure{
			Failure: &pb.CommandFailure{CommandId: fmt.Sprint(i)}}})
	}
	boom := errors.New("stream broken")
	if err := w.flush(func(*pb.ConnectRequest) error { return boom }, "s"); err != boom {
		t.Fatalf("flush = %v", err)
	}
	if len(w.outcomes) != 3 {
		t.Errorf("pending after failed flush: %d", len(w.outcomes))
	}
}

func TestFlushSendsTaskHeartbeatsWithoutDetailsTogether(t *testing.T) {
	w := New(Options{})
	details, _ := payload.Encode(map[string]any{"progress": 0.5})
	w.beats = map[string]*pb.Payload{"a": nil, "b": details, "c": nil}
	var got []string
	if err := w.flush(func(m *pb.ConnectRequest) error {
		hb := m.GetHeartbeat()
		got = append(got, fmt.Sprintf("%v%s", hb.GetCommandIds(), hb.GetDetails().GetData()))
		return nil
	}, "s"); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != `[[b]{"progress":0.5} [a c]]` {
		t.Errorf("heartbeats %v", got)
	}
}
