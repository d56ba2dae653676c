package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
	"github.com/multiagents/multiagents/workers/go/internal/payload"
	"github.com/multiagents/multiagents/workers/go/worker"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func opts(f *fakeServer) worker.Options {
	return worker.Options{Address: f.addr, MaxConcurrency: 4, Logger: quiet}
}

func ctxPayload(t *testing.T, m map[string]any) *pb.Payload {
	t.Helper()
	p, err := payload.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func resultOf(t *testing.T, o *pb.CommandOutcome) (string, map[string]any) {
	t.Helper()
	r := o.GetResult()
	if r == nil {
		t.Fatalf("got %v, want a result", o)
	}
	if enc := string(r.GetResult().GetMetadata()["encoding"]); enc != "json/plain" {
		t.Fatalf("result encoding %q", enc)
	}
	var m map[string]any
	if err := json.Unmarshal(r.GetResult().GetData(), &m); err != nil || m == nil {
		t.Fatalf("result %q is not a JSON object: %v", r.GetResult().GetData(), err)
	}
	return r.GetCommandId(), m
}

func failureOf(t *testing.T, o *pb.CommandOutcome) (string, *pb.Failure) {
	t.Helper()
	f := o.GetFailure()
	if f == nil {
		t.Fatalf("got %v, want a failure", o)
	}
	return f.GetCommandId(), f.GetFailure()
}

// blocking returns a handler that waits for release (or its context) and
// a channel on which it reports each start.
func blocking(release <-chan struct{}) (worker.Handler, <-chan *worker.Task) {
	started := make(chan *worker.Task, 100)
	return func(ctx context.Context, t *worker.Task) (map[string]any, error) {
		started <- t
		select {
		case <-release:
			return map[string]any{"done": t.CommandID}, nil
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}, started
}

func waitStarted(t *testing.T, started <-chan *worker.Task) *worker.Task {
	t.Helper()
	select {
	case task := <-started:
		return task
	case <-time.After(waitFor):
		t.Fatal("handler did not start")
		return nil
	}
}

func TestHelloAnnouncesWorkersAndSendsBearerToken(t *testing.T) {
	f := startFakeServer(t)
	o := opts(f)
	o.Token, o.MaxConcurrency, o.WorkerID = "s3cret", 3, "host-1"
	nop := func(context.Context, *worker.Task) (map[string]any, error) { return nil, nil }
	r := runWorker(t, o, map[string]worker.Handler{"b.step": nop, "a.step": nop})

	s, hello := f.open(t, time.Minute)
	if got := s.md.Get("authorization"); !slices.Equal(got, []string{"Bearer s3cret"}) {
		t.Errorf("authorization metadata %q", got)
	}
	want := &pb.Hello{WorkerId: "host-1", WorkerNames: []string{"a.step", "b.step"}, MaxConcurrency: 3,
		SdkLanguage: "go", SdkVersion: worker.Version, ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1}
	if hello.String() != want.String() {
		t.Errorf("hello = %v, want %v", hello, want)
	}
	select {
	case <-r.w.Ready():
	case <-time.After(waitFor):
		t.Fatal("Ready not closed after Welcome")
	}
}

func TestDefaultWorkerIDIsHostAndPid(t *testing.T) {
	f := startFakeServer(t)
	runWorker(t, opts(f), map[string]worker.Handler{"x": func(context.Context, *worker.Task) (map[string]any, error) { return nil, nil }})
	_, hello := f.open(t, time.Minute)
	if id := hello.GetWorkerId(); id == "" || id[len(id)-len(fmt.Sprint(osPid())):] != fmt.Sprint(osPid()) {
		t.Errorf("worker id %q does not end with the pid", id)
	}
}

func TestCommandIsAnsweredWithTheHandlersResultAndSeesTheTask(t *testing.T) {
	f := startFakeServer(t)
	deadline := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	runWorker(t, opts(f), map[string]worker.Handler{
		"echo": func(ctx context.Context, task *worker.Task) (map[string]any, error) {
			if dl, ok := ctx.Deadline(); !ok || !dl.Equal(deadline) {
				return nil, fmt.Errorf("ctx deadline %v, want %v", dl, deadline)
			}
			var bound struct {
				Big int64 `json:"big"`
			}
			if err := task.Bind(&bound); err != nil {
				return nil, err
			}
			return map[string]any{
				"id": task.CommandID, "kind": task.Kind.String(), "worker": task.WorkerName,
				"tx": task.TransactionID, "corr": task.CorrelationID, "step": task.Step,
				"attempt": task.Attempt, "deadline_ok": task.Deadline.Equal(deadline),
				"hb_timeout": task.HeartbeatTimeout.String(), "traceparent": task.Metadata["traceparent"],
				"name": task.Context["name"], "big": bound.Big,
			}, nil
		},
		"nothing": func(context.Context, *worker.Task) (map[string]any, error) { return nil, nil },
	})
	s, _ := f.open(t, time.Minute)
	s.command(t, &pb.Command{
		CommandId: "c1", Kind: pb.CommandKind_COMMAND_KIND_COMPENSATE, WorkerName: "echo",
		TransactionId: "tx1", CorrelationId: "corr1", Step: "charge", Attempt: 2,
		Context:  payload.FromJSON([]byte(`{"name":"ada","big":9007199254740993}`)),
		Deadline: timestamppb.New(deadline), HeartbeatTimeout: durationPB(3 * time.Second),
		Metadata: map[string]string{"traceparent": "00-abc-def-01"},
	})
	id, got := resultOf(t, s.nextOutcome(t))
	want := map[string]any{
		"id": "c1", "kind": "compensate", "worker": "echo", "tx": "tx1", "corr": "corr1",
		"step": "charge", "attempt": float64(2), "deadline_ok": true, "hb_timeout": "3s",
		"traceparent": "00-abc-def-01", "name": "ada", "big": float64(9007199254740993),
	}
	if id != "c1" || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("result %s %v, want %v", id, got, want)
	}

	s.command(t, &pb.Command{CommandId: "c2", WorkerName: "nothing", Attempt: 1})
	if id, got := resultOf(t, s.nextOutcome(t)); id != "c2" || len(got) != 0 {
		t.Errorf("nil result: got %s %v, want {}", id, got)
	}
}

func TestHandlerErrorsAreReportedAsStructuredFailures(t *testing.T) {
	f := startFakeServer(t)
	runWorker(t, opts(f), map[string]worker.Handler{
		"invalid": func(context.Context, *worker.Task) (map[string]any, error) {
			return nil, worker.NonRetryable(worker.NewError("ValueError", "invalid input"))
		},
		"fail": func(context.Context, *worker.Task) (map[string]any, error) {
			return nil, errors.New("boom")
		},
		"panics": func(context.Context, *worker.Task) (map[string]any, error) {
			panic("kaput")
		},
		"stacked": func(context.Context, *worker.Task) (map[string]any, error) {
			return nil, stackedError{}
		},
		"unencodable": func(context.Context, *worker.Task) (map[string]any, error) {
			return map[string]any{"ch": make(chan int)}, nil
		},
	})
	s, _ := f.open(t, time.Minute)
	cases := []struct {
		worker       string
		ctx          *pb.Payload
		typ, message string
		nonRetryable bool
		stack        bool
	}{
		{"invalid", nil, "ValueError", "invalid input", true, false},
		{"fail", nil, "Error", "boom", false, false},
		{"panics", nil, "Panic", "panic: kaput", false, true},
		{"stacked", nil, "Error", "stacked", false, true},
		{"unencodable", nil, "EncodingError", "", true, false},
		{"missing", nil, "UnknownWorker", `worker "missing" is not registered in this process`, false, false},
		{"fail", &pb.Payload{Metadata: map[string][]byte{"encoding": []byte("binary/x")}}, "InvalidPayload", "", true, false},
		{"fail", payload.FromJSON([]byte(`[1]`)), "InvalidPayload", "", true, false},
	}
	for i, c := range cases {
		id := fmt.Sprintf("c%d", i)
		s.command(t, &pb.Command{CommandId: id, WorkerName: c.worker, Attempt: 1, Context: c.ctx})
		gotID, fl := failureOf(t, s.nextOutcome(t))
		if gotID != id || fl.GetType() != c.typ || fl.GetNonRetryable() != c.nonRetryable ||
			(c.message != "" && fl.GetMessage() != c.message) || (fl.GetStackTrace() != "") != c.stack {
			t.Errorf("%s: got %s %v", c.worker, gotID, fl)
		}
	}
}

func TestCancelCancelsTheHandlersContext(t *testing.T) {
	f := startFakeServer(t)
	h, started := blocking(nil)
	runWorker(t, opts(f), map[string]worker.Handler{"slow": h})
	s, _ := f.open(t, time.Minute)
	s.command(t, &pb.Command{CommandId: "c1", WorkerName: "slow", Attempt: 1})
	waitStarted(t, started)
	s.send(t, &pb.ConnectResponse{Message: &pb.ConnectResponse_Cancel{Cancel: &pb.Cancel{CommandId: "c1", Reason: "workflow cancelled"}}})
	_, fl := failureOf(t, s.nextOutcome(t))
	if fl.GetType() != "Cancelled" || fl.GetKind() != pb.FailureKind_FAILURE_KIND_CANCELLED ||
		fl.GetMessage() != "workflow cancelled" || fl.GetCause() != nil {
		t.Errorf("failure %v", fl)
	}
}

func TestACancelledHandlerSeesTheReasonAsItsContextsCause(t *testing.T) {
	f := startFakeServer(t)
	causes := make(chan error, 1)
	h := func(ctx context.Context, _ *worker.Task) (map[string]any, error) {
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return nil, ctx.Err()
	}
	runWorker(t, opts(f), map[string]worker.Handler{"slow": h})
	s, _ := f.open(t, time.Minute)
	s.command(t, &pb.Command{CommandId: "c1", WorkerName: "slow", Attempt: 1})
	s.send(t, &pb.ConnectResponse{Message: &pb.ConnectResponse_Cancel{Cancel: &pb.Cancel{CommandId: "c1", Reason: "operator said so"}}})
	var cancelled *worker.CancelledError
	select {
	case cause := <-causes:
		if !errors.As(cause, &cancelled) || cancelled.Reason != "operator said so" || !errors.Is(cause, context.Canceled) {
			t.Errorf("cause %v", cause)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
	if _, fl := failureOf(t, s.nextOutcome(t)); fl.GetMessage() != "operator said so" {
		t.Errorf("failure %v", fl)
	}
}

func TestDeadlineCancelsTheHandlersContext(t *testing.T) {
	f := startFakeServer(t)
	h, _ := blocking(nil)
	runWorker(t, opts(f), map[string]worker.Handler{"slow": h})
	s, _ := f.open(t, time.Minute)
	s.command(t, &pb.Command{CommandId: "c1", WorkerName: "slow", Attempt: 1,
		Deadline: timestamppb.New(time.Now().Add(100 * time.Millisecond))})
	if _, fl := failureOf(t, s.nextOutcome(t)); fl.GetType() != "StepTimeout" || fl.GetKind() != pb.FailureKind_FAILURE_KIND_TIMEOUT {
		t.Errorf("failure %v", fl)
	}
}

func TestPeriodicHeartbeatsNameNoCommandSoHungHandlersStillTimeOut(t *testing.T) {
	f := startFakeServer(t)
	release := make(chan struct{})
	h, started := blocking(release)
	runWorker(t, opts(f), map[string]worker.Handler{"slow": h})
	s, _ := f.open(t, 50*time.Millisecond)
	if hb := s.nextHeartbeat(t); len(hb.GetCommandIds()) != 0 {
		t.Errorf("idle heartbeat carries %v", hb.GetCommandIds())
	}
	s.command(t, &pb.Command{CommandId: "c1", WorkerName: "slow", Attempt: 1})
	waitStarted(t, started)
	for range 3 { // several intervals while c1 runs without calling Heartbeat
		if hb := s.nextHeartbeat(t); len(hb.GetCommandIds()) != 0 {
			t.Errorf("periodic heartbeat carries %v", hb.GetCommandIds())
		}
	}
	close(release)
	resultOf(t, s.nextOutcome(t))
}

func TestPingIsAnsweredAndTaskHeartbeatIsSentAtOnce(t *testing.T) {
	f := startFakeServer(t)
	beat, release := make(chan struct{}), make(chan struct{})
	runWorker(t, opts(f), map[string]worker.Handler{
		"slow": func(ctx context.Context, task *worker.Task) (map[string]any, error) {
			<-beat
			task.Heartbeat(map[string]any{"progress": 0.5})
			<-release
			return nil, nil
		},
	})
	s, _ := f.open(t, time.Minute)
	s.command(t, &pb.Command{CommandId: "c1", WorkerName: "slow", Attempt: 1})
	s.send(t, &pb.ConnectResponse{Message: &pb.ConnectResponse_Ping{Ping: &pb.Ping{}}})
	if hb := s.nextHeartbeat(t); len(hb.GetCommandIds()) != 0 || hb.GetDetails() != nil {
		t.Errorf("ping answer %v", hb)
	}
	close(beat)
	hb := s.nextHeartbeat(t)
	if !slices.Equal(hb.GetCommandIds(), []string{"c1"}) || string(hb.GetDetails().GetData()) != `{"progress":0.5}` {
		t.Errorf("task heartbeat %v", hb)
	}
	close(release)
	resultOf(t, s.nextOutcome(t))
}

func TestDrainRequestFinishesInFlightCommandsThenReconnects(t *testing.T) {
	f := startFakeServer(t)
	release := make(chan struct{})
	h, started := blocking(release)
	runWorker(t, opts(f), map[string]worker.Handler{"slow": h})
	s, _ := f.open(t, time.Minute)
	s.command(t, &pb.Command{CommandId: "c1", WorkerName: "slow", Attempt: 1})
	waitStarted(t, started)
	s.send(t, &pb.ConnectResponse{Message: &pb.ConnectResponse_DrainRequest{DrainRequest: &pb.DrainRequest{Reason: "shutdown"}}})
	close(release)
	if id, _ := resultOf(t, s.nextOutcome(t)); id != "c1" {
		t.Errorf("answered %s", id)
	}
	if rest := s.waitClosed(t); len(rest) != 0 {
		t.Errorf("sent after its answers: %v", rest)
	}
	f.open(t, time.Minute) // a new session with a new Hello
}

func TestCancellingRunDrainsGracefully(t *testing.T) {
	f := startFakeServer(t)
	release := make(chan struct{})
	h, started := blocking(release)
	r := runWorker(t, opts(f), map[string]worker.Handler{"slow": h})
	s, _ := f.open(t, time.Minute)
	s.command(t, &pb.Command{CommandId: "c1", WorkerName: "slow", Attempt: 1})
	waitStarted(t, started)
	r.cancel()
	if m := s.next(t); m.GetDrain() == nil {
		t.Fatalf("got %v, want Drain", m)
	}
	// A command dispatched before the server saw Drain still runs.
	s.command(t, &pb.Command{CommandId: "c2", WorkerName: "slow", Attempt: 1})
	waitStarted(t, started)
	close(release)
	var ids []string
	for len(ids) < 2 {
		for _, o := range s.nextOutcomes(t) {
			id, _ := resultOf(t, o)
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"c1", "c2"}) {
		t.Errorf("answered %v", ids)
	}
	s.waitClosed(t)
	if err := r.wait(t); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
}

func TestAnswersOfCommandsFinishedWhileDisconnectedAreSentAfterReconnecting(t *testing.T) {
	f := startFakeServer(t)
	release := make(chan struct{})
	h, started := blocking(release)
	runWorker(t, opts(f), map[string]worker.Handler{"slow": h})
	s, hello := f.open(t, time.Minute)
	if hello.GetResumeToken() != "" {
		t.Errorf("first Hello resumes %q", hello.GetResumeToken())
	}
	s.command(t, &pb.Command{CommandId: "c1", WorkerName: "slow", Attempt: 1})
	waitStarted(t, started)
	s.end <- status.Error(codes.Unavailable, "server going away")
	s.waitClosed(t)
	close(release) // finishes while the worker is disconnected or reconnecting

	s2 := f.accept(t)
	hello2 := s2.next(t).GetHello()
	if hello2 == nil {
		t.Fatal("no Hello on the new session")
	}
	// The previous session's token, so that the server re-attaches c1 to this one.
	if hello2.GetResumeToken() != "token-of-s-1" {
		t.Errorf("reconnecting Hello resumes %q, want token-of-s-1", hello2.GetResumeToken())
	}
	s2.send(t, &pb.ConnectResponse{Message: &pb.ConnectResponse_Welcome{Welcome: &pb.Welcome{SessionId: "s-2"}}})
	// As the real server does: c1 was taken over. Whether its answer was
	// queued (sent after Welcome) or written on the ended session (sent
	// again now), it is answered once; c9 never reached this process, so
	// it is failed at once as WORKER_LOST.
	s2.send(t, &pb.ConnectResponse{Message: &pb.ConnectResponse_Resumed{Resumed: &pb.Resumed{CommandIds: []string{"c1", "c9"}}}})
	got := map[string]*pb.CommandOutcome{}
	for len(got) < 2 {
		for _, o := range s2.nextOutcomes(t) {
			if got[outcomeCommandID(o)] != nil {
				t.Fatalf("%s answered twice", outcomeCommandID(o))
			}
			got[outcomeCommandID(o)] = o
		}
	}
	if id, result := resultOf(t, got["c1"]); id != "c1" || result["done"] != "c1" {
		t.Errorf("answered %s %v", id, result)
	}
	if _, f := failureOf(t, got["c9"]); f.GetKind() != pb.FailureKind_FAILURE_KIND_WORKER_LOST || f.GetType() != "WorkerLost" || f.GetNonRetryable() {
		t.Errorf("unknown resumed command answered %v", f)
	}
	s2.send(t, &pb.ConnectResponse{Message: &pb.ConnectResponse_Ping{Ping: &pb.Ping{}}})
	s2.nextHeartbeat(t) // nothing more was answered before it
}

func outcomeCommandID(o *pb.CommandOutcome) string {
	if r := o.GetResult(); r != nil {
		return r.GetCommandId()
	}
	return o.GetFailure().GetCommandId()
}

func TestDuplicateCommandIsRunOnce(t *testing.T) {
	f := startFakeServer(t)
	release := make(chan struct{})
	h, started := blocking(release)
	runWorker(t, opts(f), map[string]worker.Handler{"slow": h})
	s, _ := f.open(t, time.Minute)
	cmd := &pb.Command{CommandId: "c1", WorkerName: "slow", Attempt: 1}
	s.command(t, cmd)
	waitStarted(t, started)
	s.command(t, cmd)
	s.send(t, &pb.ConnectResponse{Message: &pb.ConnectResponse_Ping{Ping: &pb.Ping{}}})
	s.nextHeartbeat(t) // the duplicate has been seen
	close(release)
	resultOf(t, s.nextOutcome(t))
	if len(started) != 0 {
		t.Error("duplicate command ran twice")
	}
}

func TestRejectedHelloEndsRun(t *testing.T) {
	f := startFakeServer(t)
	r := runWorker(t, opts(f), map[string]worker.Handler{"x": func(context.Context, *worker.Task) (map[string]any, error) { return nil, nil }})
	s := f.accept(t)
	s.next(t)
	s.end <- status.Error(codes.InvalidArgument, "hello.worker_names: empty")
	if err := r.wait(t); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Run = %v, want INVALID_ARGUMENT", err)
	}
}

func TestReconnectsUntilTheServerIsUp(t *testing.T) {
	f := startFakeServer(t)
	f.sessions = make(chan *fakeSession) // unbuffered: refuse until accept
	first := make(chan struct{})
	var failed atomic.Int32
	runWorker(t, opts(f), map[string]worker.Handler{"x": func(context.Context, *worker.Task) (map[string]any, error) { return nil, nil }})
	// End the first two sessions with UNAVAILABLE; the worker keeps trying.
	go func() {
		for range 2 {
			s := <-f.sessions
			s.end <- status.Error(codes.Unavailable, "not yet")
			failed.Add(1)
		}
		close(first)
	}()
	<-first
	f.open(t, time.Minute)
	if failed.Load() != 2 {
		t.Errorf("failed sessions %d", failed.Load())
	}
}

func TestConcurrencyIsBoundedLocally(t *testing.T) {
	f := startFakeServer(t)
	var mu sync.Mutex
	now, peak := 0, 0
	release := make(chan struct{})
	o := opts(f)
	o.MaxConcurrency = 2
	runWorker(t, o, map[string]worker.Handler{"x": func(ctx context.Context, task *worker.Task) (map[string]any, error) {
		mu.Lock()
		now++
		peak = max(peak, now)
		mu.Unlock()
		<-release
		mu.Lock()
		now--
		mu.Unlock()
		return map[string]any{"id": task.CommandID}, nil
	}})
	s, _ := f.open(t, time.Minute)
	var batch []*pb.Command
	for i := range 5 {
		batch = append(batch, &pb.Command{CommandId: fmt.Sprint("c", i), WorkerName: "x", Attempt: 1})
	}
	s.send(t, &pb.ConnectResponse{Message: &pb.ConnectResponse_Commands{Commands: &pb.Commands{Commands: batch}}})
	time.Sleep(100 * time.Millisecond) // let every goroutine try to start
	close(release)
	n := 0
	for n < 5 {
		n += len(s.nextOutcomes(t))
	}
	if peak != 2 {
		t.Errorf("peak concurrency %d, want 2", peak)
	}
}

func TestRegisterRejectsDuplicatesAndRunNeedsHandlers(t *testing.T) {
	w := worker.New(worker.Options{Logger: quiet})
	if err := w.Run(context.Background()); err == nil {
		t.Error("Run without handlers succeeded")
	}
	w = worker.New(worker.Options{Logger: quiet})
	w.Register("x", func(context.Context, *worker.Task) (map[string]any, error) { return nil, nil })
	defer func() {
		if recover() == nil {
			t.Error("duplicate Register did not panic")
		}
	}()
	w.Register("x", func(context.Context, *worker.Task) (map[string]any, error) { return nil, nil })
}

// stackedError carries a stack, printed by %+v (as github.com/pkg/errors does).
type stackedError struct{}

func (stackedError) Error() string { return "stacked" }

func (e stackedError) Format(s fmt.State, verb rune) {
	if verb == 'v' && s.Flag('+') {
		fmt.Fprint(s, "stacked\nmain.handler\n\t/src/main.go:12")
		return
	}
	fmt.Fprint(s, e.Error())
}

func TestEnvAddressReadsMultiagentsServer(t *testing.T) {
	t.Setenv("MULTIAGENTS_SERVER", "")
	if got := worker.EnvAddress(); got != worker.DefaultAddress {
		t.Errorf("unset: got %q", got)
	}
	t.Setenv("MULTIAGENTS_SERVER", "10.0.0.1:7000")
	if got := worker.EnvAddress(); got != "10.0.0.1:7000" {
		t.Errorf("set: got %q", got)
	}
}
