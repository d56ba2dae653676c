// Package worker runs MultiAgents workers written in Go.
//
// A Worker holds one session (a WorkerService.Connect stream) with a
// MultiAgents server, announces the worker names it serves, runs the commands
// the server sends with bounded concurrency, and answers each with a result
// or a structured failure. It heartbeats at the interval the server chooses,
// reconnects with exponential backoff when the stream breaks (answers of
// commands that finish while disconnected are sent after reconnecting), and
// drains gracefully: when the server asks (DrainRequest) and when the
// context given to Run is cancelled.
//
//	w := worker.New(worker.Options{Address: "127.0.0.1:50051"})
//	w.Register("charge_payment", func(ctx context.Context, t *worker.Task) (map[string]any, error) {
//		if t.Context["amount"] == nil {
//			return nil, worker.NonRetryable(worker.NewError("ValueError", "amount is required"))
//		}
//		return map[string]any{"charge_id": "ch_1"}, nil
//	})
//	err := w.Run(ctx) // returns nil after a graceful drain once ctx is cancelled
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
	"github.com/multiagents/multiagents/workers/go/internal/payload"
)

// Version is the SDK version announced in Hello.
const Version = "0.1.0"

// Defaults of Options.
const (
	DefaultAddress        = "127.0.0.1:50051"
	DefaultMaxConcurrency = 8
)

// Protocol timings. Backoff delays get jitter: a delay d sleeps in [d/2, d].
const (
	minBackoff               = 100 * time.Millisecond
	maxBackoff               = 5 * time.Second
	defaultHeartbeatInterval = 5 * time.Second
	welcomeTimeout           = 30 * time.Second
	closeTimeout             = 5 * time.Second
	// resendWindow: answers sent this recently are remembered, to be sent
	// again when the server lists their command in Resumed: a successful
	// Send does not prove the server read them (docs/protocol.md). The
	// default step timeout, after which no answer to them counts.
	resendWindow = 10 * time.Minute
	// resendMaxBytes: and at most this many bytes of them, resendEntryBytes
	// more each (the oldest are forgotten first).
	resendMaxBytes   = 32 << 20
	resendEntryBytes = 256
	// maxBatchBytes bounds one CommandOutcomes message; a single larger
	// outcome is still sent, alone.
	maxBatchBytes = 1 << 20
)

// Handler runs one command. ctx is cancelled at the command's deadline and
// when the server cancels the command (then context.Cause(ctx) says why).
// The returned map is the result, a JSON object (nil is {}). A returned
// error fails the attempt: wrap it with NonRetryable for validation errors,
// which are never retried; any other error is retried by the step's policy.
type Handler func(ctx context.Context, t *Task) (map[string]any, error)

// Options configures a Worker. The zero value connects to EnvAddress()
// over plaintext gRPC without a token.
type Options struct {
	// Address of the server, host:port (or any gRPC target). Default
	// EnvAddress(): $MULTIAGENTS_SERVER, else DefaultAddress.
	Address string
	// Token, when set, is sent as "authorization: Bearer <token>" metadata.
	Token string
	// MaxConcurrency is the most commands run at once. Default
	// DefaultMaxConcurrency.
	MaxConcurrency int
	// WorkerID identifies the process to the server. Default "<host>-<pid>".
	WorkerID string
	// Credentials secures the connection (TLS, mTLS); nil is plaintext.
	Credentials credentials.TransportCredentials
	// DialOptions are extra gRPC dial options.
	DialOptions []grpc.DialOption
	// Logger receives connection events. Default slog.Default().
	Logger *slog.Logger
}

// Worker serves registered handlers over one session with the server.
// Create it with New, Register handlers, then call Run once.
type Worker struct {
	opts       Options
	log        *slog.Logger
	handlers   map[string]Handler
	running    atomic.Bool
	ready      chan struct{}
	readyOnce  sync.Once
	slots      chan struct{}
	maxPayload atomic.Int64
	// resumeToken is the last Welcome's, sent in the next Hello so the
	// commands in flight stay this process's across a reconnect.
	resumeToken atomic.Value // string
	handlersWG  sync.WaitGroup
	// sent: answers first sent in the last resendWindow, oldest first, and
	// by command id. An answer sent again keeps its first time, so it is not
	// sent for ever. Used by the session loop only.
	sent      []sentOutcome
	sentByID  map[string]sentOutcome
	sentBytes int

	mu       sync.Mutex
	inflight map[string]context.CancelCauseFunc // running commands by id
	outcomes []*pb.CommandOutcome               // finished, not yet sent
	beats    map[string]*pb.Payload             // task heartbeats to send, by command id
	chunks   []*pb.OutputChunk                  // output chunks to send, in order
	outputs  map[string]*taskOutput             // output and usage of running commands

	outcomeReady chan struct{}
	beatReady    chan struct{}
}

// New returns a Worker with opts; unset options take their defaults.
func New(opts Options) *Worker {
	if opts.Address == "" {
		opts.Address = EnvAddress()
	}
	if opts.MaxConcurrency <= 0 {
		opts.MaxConcurrency = DefaultMaxConcurrency
	}
	if opts.WorkerID == "" {
		host, err := os.Hostname()
		if err != nil {
			host = "unknown"
		}
		opts.WorkerID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Worker{
		opts:         opts,
		log:          opts.Logger,
		handlers:     map[string]Handler{},
		ready:        make(chan struct{}),
		slots:        make(chan struct{}, opts.MaxConcurrency),
		inflight:     map[string]context.CancelCauseFunc{},
		beats:        map[string]*pb.Payload{},
		outputs:      map[string]*taskOutput{},
		sentByID:     map[string]sentOutcome{},
		outcomeReady: make(chan struct{}, 1),
		beatReady:    make(chan struct{}, 1),
	}
}

// Register serves the worker name with h. It panics on an empty name, a nil
// handler, a name registered twice, or a call after Run started.
func (w *Worker) Register(name string, h Handler) {
	switch {
	case name == "":
		panic("worker: Register with an empty name")
	case h == nil:
		panic("worker: Register " + name + " with a nil handler")
	case w.running.Load():
		panic("worker: Register " + name + " after Run started")
	}
	if _, dup := w.handlers[name]; dup {
		panic("worker: " + name + " registered twice")
	}
	w.handlers[name] = h
}

// Ready is closed when the first session is accepted (Welcome received).
func (w *Worker) Ready() <-chan struct{} { return w.ready }

// Run connects and serves commands until ctx is cancelled, reconnecting with
// backoff whenever the session ends. When ctx is cancelled it drains: it
// sends Drain, lets in-flight commands finish (they keep their own deadlines),
// sends their answers, closes the stream and returns nil. It returns an
// error only when nothing is registered, when Run was called before, or when
// the server rejects the session for good (INVALID_ARGUMENT,
// UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED before Welcome).
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("worker: Run called twice")
	}
	if len(w.handlers) == 0 {
		return errors.New("worker: no handlers registered")
	}
	creds := w.opts.Credentials
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		// gRPC's own reconnect backoff (up to 120 s by default) would hold
		// the channel in TRANSIENT_FAILURE longer than our session backoff.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: minBackoff, Multiplier: 2, Jitter: 0.2, MaxDelay: maxBackoff}}),
	}, w.opts.DialOptions...)
	conn, err := grpc.NewClient(w.opts.Address, dial...)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer conn.Close()
	defer w.handlersWG.Wait() // runs before conn.Close
	client := pb.NewWorkerServiceClient(conn)

	delay := minBackoff
	for {
		if ctx.Err() != nil && w.idle() {
			return nil // cancelled while disconnected, with nothing left to deliver
		}
		welcomed, err := w.session(ctx, client)
		if ctx.Err() != nil {
			w.handlersWG.Wait()
			w.mu.Lock()
			lost := len(w.outcomes)
			w.mu.Unlock()
			if (err != nil && !errors.Is(err, errServerDrained)) || lost > 0 {
				w.log.Warn("multiagents worker stopped without a clean drain", "error", err, "undelivered_outcomes", lost)
			} else {
				w.log.Info("multiagents worker drained and stopped")
			}
			return nil
		}
		if !welcomed && isPermanent(err) {
			return fmt.Errorf("worker: server rejected the session: %w", err)
		}
		if welcomed {
			delay = minBackoff
		}
		sleep := delay/2 + rand.N(delay/2+1)
		level := slog.LevelWarn
		if errors.Is(err, errServerDrained) {
			level = slog.LevelInfo
		}
		w.log.Log(ctx, level, "multiagents session ended; reconnecting", "address", w.opts.Address, "error", err, "backoff", sleep)
		select {
		case <-ctx.Done():
		case <-time.After(sleep):
		}
		delay = min(delay*2, maxBackoff)
		conn.ResetConnectBackoff() // dial now, not when gRPC's channel backoff says
	}
}

func isPermanent(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.Unauthenticated, codes.PermissionDenied, codes.Unimplemented:
		return true
	}
	return false
}

var errServerDrained = errors.New("server asked to drain; session closed")

// session runs one Connect stream until it breaks, the server's drain
// completes (errServerDrained) or ctx's drain completes (nil).
func (w *Worker) session(ctx context.Context, client pb.WorkerServiceClient) (welcomed bool, err error) {
	// The stream outlives ctx: after ctx is cancelled the session still has
	// to deliver the answers of in-flight commands.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	if w.opts.Token != "" {
		sctx = metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+w.opts.Token)
	}
	stream, err := client.Connect(sctx)
	if err != nil {
		return false, err
	}
	msgs := make(chan *pb.ConnectResponse)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-sctx.Done():
				return
			}
		}
	}()
	// send returns the stream's real error when Send fails.
	send := func(m *pb.ConnectRequest) error {
		err := stream.Send(m)
		if err == nil {
			return nil
		}
		// The stream is dead: drop what it still delivers until Recv fails.
		timeout := time.NewTimer(closeTimeout)
		defer timeout.Stop()
		for {
			select {
			case <-msgs:
			case rerr := <-recvErr:
				if rerr != io.EOF {
					return rerr
				}
				return err
			case <-timeout.C:
				return err
			}
		}
	}

	if err := send(&pb.ConnectRequest{Message: &pb.ConnectRequest_Hello{Hello: w.hello()}}); err != nil {
		return false, err
	}
	var (
		ticker          *time.Ticker
		heartbeat       <-chan time.Time
		noWelcome       = time.NewTimer(welcomeTimeout)
		done            = ctx.Done()
		shutdown, drain bool
		sessionID       string
	)
	defer func() {
		noWelcome.Stop()
		if ticker != nil {
			ticker.Stop()
		}
	}()
	for {
		if welcomed {
			if err = w.flush(send, sessionID); err != nil {
				return true, err
			}
			if (shutdown || drain) && w.idle() {
				return true, w.closeSession(stream, msgs, recvErr, shutdown)
			}
		}
		select {
		case <-done:
			done, shutdown = nil, true
			w.log.Info("multiagents worker draining", "in_flight", w.inflightCount())
			if err := send(&pb.ConnectRequest{Message: &pb.ConnectRequest_Drain{Drain: &pb.Drain{}}}); err != nil {
				return welcomed, err
			}
		case m := <-msgs:
			switch x := m.GetMessage().(type) {
			case *pb.ConnectResponse_Welcome:
				if welcomed {
					continue
				}
				welcomed = true
				sessionID = x.Welcome.GetSessionId()
				// Chunks queued before this session belong to commands it does not hold.
				w.mu.Lock()
				w.chunks = nil
				w.mu.Unlock()
				noWelcome.Stop()
				interval := x.Welcome.GetHeartbeatInterval().AsDuration()
				if interval <= 0 {
					interval = defaultHeartbeatInterval
				}
				ticker = time.NewTicker(interval)
				heartbeat = ticker.C
				w.maxPayload.Store(x.Welcome.GetMaxPayloadBytes())
				w.resumeToken.Store(x.Welcome.GetResumeToken())
				w.log.Info("multiagents session open", "address", w.opts.Address,
					"session_id", x.Welcome.GetSessionId(), "heartbeat_interval", interval,
					"workers", w.names())
				w.readyOnce.Do(func() { close(w.ready) })
			case *pb.ConnectResponse_Command:
				w.start(ctx, x.Command)
			case *pb.ConnectResponse_Commands:
				for _, c := range x.Commands.GetCommands() {
					w.start(ctx, c)
				}
			case *pb.ConnectResponse_Cancel:
				w.cancel(x.Cancel.GetCommandId(), x.Cancel.GetReason())
			case *pb.ConnectResponse_Ping:
				if err := send(w.heartbeatAll()); err != nil {
					return welcomed, err
				}
			case *pb.ConnectResponse_OutputAck:
				w.mu.Lock()
				output := w.outputs[x.OutputAck.GetCommandId()]
				w.mu.Unlock()
				if output != nil {
					output.acknowledged(x.OutputAck)
				}
			case *pb.ConnectResponse_Resumed:
				w.resumed(x.Resumed.GetCommandIds(), sessionID)
			case *pb.ConnectResponse_DrainRequest:
				drain = true
				w.log.Info("multiagents server asked to drain", "reason", x.DrainRequest.GetReason(),
					"in_flight", w.inflightCount())
			}
		case err := <-recvErr:
			if err == io.EOF {
				err = errors.New("server ended the session")
			}
			return welcomed, err
		case <-heartbeat:
			if err := send(w.heartbeatAll()); err != nil {
				return welcomed, err
			}
		case <-noWelcome.C:
			return false, fmt.Errorf("no Welcome within %s", welcomeTimeout)
		case <-w.outcomeReady:
		case <-w.beatReady:
		}
	}
}

// closeSession half-closes the stream and waits for the server to end it.
// Commands that still arrive are not started: the server gets them back when
// the session ends.
func (w *Worker) closeSession(stream pb.WorkerService_ConnectClient, msgs <-chan *pb.ConnectResponse, recvErr <-chan error, shutdown bool) error {
	if err := stream.CloseSend(); err != nil {
		return err
	}
	timeout := time.NewTimer(closeTimeout)
	defer timeout.Stop()
	for waiting := true; waiting; {
		select {
		case m := <-msgs:
			if m.GetCommand() != nil || m.GetCommands() != nil {
				w.log.Warn("multiagents command received after drain; left to the server to redeliver")
			}
		case <-recvErr:
			waiting = false
		case <-timeout.C:
			waiting = false
		}
	}
	if shutdown {
		return nil
	}
	return errServerDrained
}

func (w *Worker) hello() *pb.Hello {
	token, _ := w.resumeToken.Load().(string)
	return &pb.Hello{
		ResumeToken:     token,
		WorkerId:        w.opts.WorkerID,
		WorkerNames:     w.names(),
		MaxConcurrency:  int32(min(w.opts.MaxConcurrency, math.MaxInt32)),
		SdkLanguage:     "go",
		SdkVersion:      Version,
		ProtocolVersion: pb.ProtocolVersion_PROTOCOL_VERSION_1,
	}
}

func (w *Worker) names() []string { return slices.Sorted(maps.Keys(w.handlers)) }

// start runs cmd in its own goroutine unless it is already running.
func (w *Worker) start(runCtx context.Context, cmd *pb.Command) {
	id := cmd.GetCommandId()
	w.mu.Lock()
	if _, dup := w.inflight[id]; dup {
		w.mu.Unlock()
		return
	}
	// Handlers keep the values of Run's context but not its cancellation:
	// a drain lets them finish.
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(runCtx))
	stopTimer := context.CancelFunc(func() {})
	if dl := cmd.GetDeadline(); dl != nil {
		ctx, stopTimer = context.WithDeadline(ctx, dl.AsTime())
	}
	w.inflight[id] = cancel
	w.mu.Unlock()

	w.handlersWG.Add(1)
	go func() {
		defer w.handlersWG.Done()
		out := w.execute(ctx, cmd)
		stopTimer()
		cancel(nil)
		w.mu.Lock()
		delete(w.inflight, id)
		delete(w.beats, id)
		delete(w.outputs, id)
		w.outcomes = append(w.outcomes, out)
		w.mu.Unlock()
		notify(w.outcomeReady)
	}()
}

func (w *Worker) cancel(id, reason string) {
	w.mu.Lock()
	cancel, ok := w.inflight[id]
	w.mu.Unlock()
	if ok {
		cancel(&CancelledError{Reason: reason})
	}
}

// execute runs one command and returns its answer, with the usage the
// handler reported (a failed attempt reports it too).
func (w *Worker) execute(ctx context.Context, cmd *pb.Command) (out *pb.CommandOutcome) {
	id := cmd.GetCommandId()
	var task *Task
	defer func() {
		if task == nil {
			return
		}
		switch o := out.GetOutcome().(type) {
		case *pb.CommandOutcome_Result:
			o.Result.Usage = task.output.proto()
		case *pb.CommandOutcome_Failure:
			o.Failure.Usage = task.output.proto()
		}
	}()
	fail := func(f *pb.Failure) *pb.CommandOutcome {
		return &pb.CommandOutcome{Outcome: &pb.CommandOutcome_Failure{
			Failure: &pb.CommandFailure{CommandId: id, Failure: f}}}
	}
	h, ok := w.handlers[cmd.GetWorkerName()]
	if !ok {
		return fail(&pb.Failure{Type: "UnknownWorker",
			Message: fmt.Sprintf("worker %q is not registered in this process", cmd.GetWorkerName())})
	}
	task, err := w.newTask(cmd)
	if err != nil {
		return fail(&pb.Failure{Type: "InvalidPayload", Message: "context: " + err.Error(), NonRetryable: true})
	}
	select {
	case w.slots <- struct{}{}:
		defer func() { <-w.slots }()
	case <-ctx.Done():
		return fail(contextFailure(ctx, failureOf(context.Cause(ctx))))
	}
	result, stack, err := call(ctx, h, task)
	if err != nil {
		f := failureOf(err)
		f.StackTrace = stack
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			f = contextFailure(ctx, f)
		}
		return fail(f)
	}
	p, err := payload.Encode(result)
	if err != nil {
		return fail(&pb.Failure{Type: "EncodingError", NonRetryable: true, Kind: pb.FailureKind_FAILURE_KIND_INVALID_RESULT,
			Message: "result is not JSON-encodable: " + err.Error()})
	}
	if limit := w.maxPayload.Load(); limit > 0 && int64(len(p.GetData())) > limit {
		return fail(&pb.Failure{Type: "PayloadTooLarge", NonRetryable: true, Kind: pb.FailureKind_FAILURE_KIND_INVALID_RESULT,
			Message: fmt.Sprintf("result is %d bytes, over the server's limit of %d bytes", len(p.GetData()), limit)})
	}
	return &pb.CommandOutcome{Outcome: &pb.CommandOutcome_Result{
		Result: &pb.CommandResult{CommandId: id, Result: p}}}
}

// contextFailure is f for a handler that stopped because its context ended:
// at the command's deadline, type "StepTimeout" (the server's own type, as
// the Python and Node workers report it) and kind TIMEOUT; on the server's
// Cancel, type "Cancelled", kind CANCELLED and the Cancel's reason as message.
func contextFailure(ctx context.Context, f *pb.Failure) *pb.Failure {
	var cancelled *CancelledError
	switch {
	case errors.As(context.Cause(ctx), &cancelled):
		return &pb.Failure{Type: "Cancelled", Kind: pb.FailureKind_FAILURE_KIND_CANCELLED,
			Message: cancelled.Reason, StackTrace: f.GetStackTrace()}
	case f.GetType() == "DeadlineExceeded" && errors.Is(ctx.Err(), context.DeadlineExceeded):
		f.Type = "StepTimeout"
		f.Kind = pb.FailureKind_FAILURE_KIND_TIMEOUT
	}
	return f
}

// EnvAddress is the server address of the environment, $MULTIAGENTS_SERVER
// (the variable every MultiAgents SDK reads), else DefaultAddress.
func EnvAddress() string {
	if address := os.Getenv("MULTIAGENTS_SERVER"); address != "" {
		return address
	}
	return DefaultAddress
}

// call runs h, turning a panic into an error of type "Panic" with its stack.
func call(ctx context.Context, h Handler, t *Task) (result map[string]any, stack string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &Error{Type: "Panic", Message: fmt.Sprintf("panic: %v", r)}
			stack = string(debug.Stack())
		}
	}()
	result, err = h(ctx, t)
	return result, errorStack(err), err
}

// errorStack is the stack trace of an error a handler returned: its "%+v"
// form when that says more than Error() (errors that carry a stack, such as
// those of github.com/pkg/errors or cockroachdb/errors, print it so), else "".
func errorStack(err error) string {
	if err == nil {
		return ""
	}
	if detailed := fmt.Sprintf("%+v", err); detailed != err.Error() {
		return detailed
	}
	return ""
}

func (w *Worker) newTask(cmd *pb.Command) (*Task, error) {
	raw, err := payload.JSON(cmd.GetContext())
	if err != nil {
		return nil, err
	}
	values, err := payload.Decode(cmd.GetContext())
	if err != nil {
		return nil, err
	}
	id := cmd.GetCommandId()
	t := &Task{
		CommandID:        id,
		Kind:             Kind(cmd.GetKind()),
		WorkerName:       cmd.GetWorkerName(),
		TransactionID:    cmd.GetTransactionId(),
		CorrelationID:    cmd.GetCorrelationId(),
		Step:             cmd.GetStep(),
		Attempt:          int(cmd.GetAttempt()),
		HeartbeatTimeout: cmd.GetHeartbeatTimeout().AsDuration(),
		Context:          values,
		RawContext:       raw,
		Metadata:         cmd.GetMetadata(),
		heartbeat:        func(details map[string]any) { w.taskHeartbeat(id, details) },
		output:           &taskOutput{id: id, send: func(c *pb.OutputChunk) { w.queueChunk(id, c) }},
	}
	w.mu.Lock()
	w.outputs[id] = t.output
	w.mu.Unlock()
	if t.Metadata == nil {
		t.Metadata = map[string]string{}
	}
	if cmd.GetDeadline() != nil {
		t.Deadline = cmd.GetDeadline().AsTime()
	}
	return t, nil
}

func (w *Worker) taskHeartbeat(id string, details map[string]any) {
	var p *pb.Payload
	if details != nil {
		var err error
		if p, err = payload.Encode(details); err != nil {
			w.log.Warn("multiagents heartbeat details are not JSON-encodable; sent without", "command_id", id, "error", err)
		}
	}
	w.mu.Lock()
	if _, running := w.inflight[id]; running {
		w.beats[id] = p
	}
	w.mu.Unlock()
	notify(w.beatReady)
}

// maxQueuedChunks bounds the output chunks waiting for a session (while
// disconnected); beyond, chunks are dropped.
const maxQueuedChunks = 10_000

// queueChunk queues an output chunk of a running command for the session.
func (w *Worker) queueChunk(id string, c *pb.OutputChunk) {
	w.mu.Lock()
	if _, running := w.inflight[id]; running && len(w.chunks) < maxQueuedChunks {
		w.chunks = append(w.chunks, c)
	}
	w.mu.Unlock()
	notify(w.beatReady)
}

type sentOutcome struct {
	at      time.Time
	session string // the session it was sent on
	outcome *pb.CommandOutcome
	bytes   int
}

// resumed handles Resumed: the session took over these commands of the
// previous one. Answers sent there are sent again; a command neither running
// nor answered here (never received, or its answer forgotten) is failed at
// once as WORKER_LOST, retryable, so the server retries it now instead of at
// its timeout.
func (w *Worker) resumed(ids []string, sessionID string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		if _, running := w.inflight[id]; running || slices.ContainsFunc(w.outcomes, answers(id)) {
			continue // its answer goes on this session
		}
		if sent, ok := w.sentByID[id]; ok && sent.session == sessionID {
			continue // answered on this session already
		} else if ok {
			w.log.Info("multiagents sending again the answer to a resumed command", "command_id", id)
			w.outcomes = append(w.outcomes, sent.outcome)
			continue
		}
		w.log.Warn("multiagents resumed command unknown here; failing it as lost", "command_id", id)
		w.outcomes = append(w.outcomes, &pb.CommandOutcome{Outcome: &pb.CommandOutcome_Failure{
			Failure: &pb.CommandFailure{CommandId: id, Failure: &pb.Failure{
				Message: "the worker does not have this command (never received, or its answer is forgotten)",
				Type:    "WorkerLost",
				Kind:    pb.FailureKind_FAILURE_KIND_WORKER_LOST,
			}},
		}})
	}
	notify(w.outcomeReady)
}

// answers reports whether an outcome answers command id.
func answers(id string) func(*pb.CommandOutcome) bool {
	return func(o *pb.CommandOutcome) bool { return outcomeID(o) == id }
}

// outcomeID is the command an outcome answers.
func outcomeID(o *pb.CommandOutcome) string {
	if r := o.GetResult(); r != nil {
		return r.GetCommandId()
	}
	return o.GetFailure().GetCommandId()
}

// flush sends pending task heartbeats, then pending answers, batching the
// answers. Answers that could not be sent stay pending for the next session;
// those sent are remembered in w.sent for resendWindow.
func (w *Worker) flush(send func(*pb.ConnectRequest) error, sessionID string) error {
	w.mu.Lock()
	outs, beats, chunks := w.outcomes, w.beats, w.chunks
	w.outcomes, w.beats, w.chunks = nil, map[string]*pb.Payload{}, nil
	w.mu.Unlock()
	// A command's chunks go before its answer. Chunks that cannot be sent
	// are dropped: the next session does not hold their command.
	for _, c := range mergeChunks(chunks) {
		if err := send(&pb.ConnectRequest{Message: &pb.ConnectRequest_OutputChunk{OutputChunk: c}}); err != nil {
			w.requeue(outs)
			return err
		}
	}
	// Heartbeats without details share one message; details are per command.
	var plain []string
	var hbs []*pb.Heartbeat
	for _, id := range slices.Sorted(maps.Keys(beats)) {
		if beats[id] == nil {
			plain = append(plain, id)
		} else {
			hbs = append(hbs, &pb.Heartbeat{CommandIds: []string{id}, Details: beats[id]})
		}
	}
	if len(plain) > 0 {
		hbs = append(hbs, &pb.Heartbeat{CommandIds: plain})
	}
	for _, hb := range hbs {
		if err := send(&pb.ConnectRequest{Message: &pb.ConnectRequest_Heartbeat{Heartbeat: hb}}); err != nil {
			w.requeue(outs)
			return err
		}
	}
	for len(outs) > 0 {
		n, size := 0, 0
		for n < len(outs) && (n == 0 || size+proto.Size(outs[n]) <= maxBatchBytes) {
			size += proto.Size(outs[n])
			n++
		}
		if err := send(outcomeMessage(outs[:n])); err != nil {
			w.requeue(outs)
			return err
		}
		now := time.Now()
		for _, o := range outs[:n] {
			if id := outcomeID(o); w.sentByID[id].outcome == nil {
				w.sentByID[id] = sentOutcome{now, sessionID, o, proto.Size(o) + resendEntryBytes}
				w.sent = append(w.sent, w.sentByID[id])
				w.sentBytes += w.sentByID[id].bytes
			}
		}
		w.forgetSent(now)
		outs = outs[n:]
	}
	return nil
}

// forgetSent drops the answers first sent over resendWindow ago, and the
// oldest beyond resendMaxBytes.
func (w *Worker) forgetSent(now time.Time) {
	n := 0
	for n < len(w.sent) && (now.Sub(w.sent[n].at) > resendWindow || w.sentBytes > resendMaxBytes) {
		delete(w.sentByID, outcomeID(w.sent[n].outcome))
		w.sentBytes -= w.sent[n].bytes
		n++
	}
	w.sent = w.sent[n:]
}

func (w *Worker) requeue(outs []*pb.CommandOutcome) {
	w.mu.Lock()
	w.outcomes = slices.Concat(outs, w.outcomes)
	w.mu.Unlock()
}

func outcomeMessage(outs []*pb.CommandOutcome) *pb.ConnectRequest {
	if len(outs) > 1 {
		return &pb.ConnectRequest{Message: &pb.ConnectRequest_Outcomes{
			Outcomes: &pb.CommandOutcomes{Outcomes: outs}}}
	}
	switch o := outs[0].GetOutcome().(type) {
	case *pb.CommandOutcome_Result:
		return &pb.ConnectRequest{Message: &pb.ConnectRequest_Result{Result: o.Result}}
	case *pb.CommandOutcome_Failure:
		return &pb.ConnectRequest{Message: &pb.ConnectRequest_Failure{Failure: o.Failure}}
	}
	panic("worker: empty outcome")
}

// heartbeatAll is the periodic session heartbeat. It names no command: only
// Task.Heartbeat extends a command's heartbeat timeout, so a hung handler in a
// live process still times out.
func (w *Worker) heartbeatAll() *pb.ConnectRequest {
	return &pb.ConnectRequest{Message: &pb.ConnectRequest_Heartbeat{Heartbeat: &pb.Heartbeat{}}}
}

func (w *Worker) idle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.inflight) == 0 && len(w.outcomes) == 0
}

func (w *Worker) inflightCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.inflight)
}

func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
