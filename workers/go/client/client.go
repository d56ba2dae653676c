// Package client submits and follows MultiAgents workflows
// (multiagents.v1.WorkflowService).
//
//	c, err := client.New("127.0.0.1:50051", client.Options{Token: os.Getenv("MULTIAGENTS_TOKEN")})
//	if err != nil { ... }
//	defer c.Close()
//	tx, err := c.ExecuteWorkflow(ctx, "order", map[string]any{"amount": 42}, client.ExecuteOptions{})
//	final, err := c.Watch(ctx, tx, func(e *client.StatusEvent) { fmt.Println(e.State, e.CurrentStep) })
//
// Definitions are built with NewWorkflow and the node constructors (Step,
// Parallel, Map, Condition, Switch, WaitForSignal, Sleep) or read from a
// definition file with ParseDefinition; SignalWorkflow, Approve, Reject,
// ResumeWorkflow and ListWaitingSignals drive the constructs of
// docs/workflows.md; CreateSchedule, GetSchedule, ListSchedules,
// PauseSchedule, UnpauseSchedule and DeleteSchedule manage cron schedules;
// PutRateLimit, GetRateLimit, ListRateLimits and DeleteRateLimit manage the
// shared limits that steps name with the RateLimits option.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
	"github.com/multiagents/multiagents/workers/go/internal/payload"
)

// Options configures a Client.
type Options struct {
	// Token, when set, is sent as "authorization: Bearer <token>" metadata
	// on every call.
	Token string
	// Credentials secures the connection (TLS, mTLS); nil is plaintext.
	Credentials credentials.TransportCredentials
	// DialOptions are extra gRPC dial options.
	DialOptions []grpc.DialOption
}

// Client calls WorkflowService. It is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	svc  pb.WorkflowServiceClient
}

// New returns a Client for the server at address (host:port). It connects
// lazily, on the first call.
func New(address string, opts Options) (*Client, error) {
	creds := opts.Credentials
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	dial := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 100 * time.Millisecond, Multiplier: 2, Jitter: 0.2, MaxDelay: 5 * time.Second}}),
	}
	if opts.Token != "" {
		dial = append(dial, grpc.WithPerRPCCredentials(bearer{opts.Token, opts.Credentials != nil}))
	}
	conn, err := grpc.NewClient(address, append(dial, opts.DialOptions...)...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, svc: pb.NewWorkflowServiceClient(conn)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Service returns the generated WorkflowService client on the same
// connection (with the same token), for the calls this package does not wrap.
func (c *Client) Service() pb.WorkflowServiceClient { return c.svc }

type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearer) RequireTransportSecurity() bool { return b.secure }

// ExecuteOptions are the optional parts of ExecuteWorkflow.
type ExecuteOptions struct {
	// Version of the workflow; 0 means the latest.
	Version int
	// RequestID makes the submit idempotent: a second submit with the same id
	// returns the first one's transaction id and starts nothing.
	RequestID string
	// CorrelationID defaults to the transaction id.
	CorrelationID string
	// StartDelay delays the start: the execution stays PENDING that long (a
	// durable timer). Zero starts at once.
	StartDelay time.Duration
}

// RegisterWorkflow registers a workflow definition. It reports false when the
// identical definition was registered already.
func (c *Client) RegisterWorkflow(ctx context.Context, def *pb.WorkflowDefinition) (created bool, err error) {
	resp, err := c.svc.RegisterWorkflow(ctx, &pb.RegisterWorkflowRequest{Definition: def})
	return resp.GetCreated(), err
}

// ExecuteWorkflow starts the named workflow with input (a JSON object, nil
// is {}) and returns the transaction id of the execution.
func (c *Client) ExecuteWorkflow(ctx context.Context, name string, input map[string]any, opts ExecuteOptions) (string, error) {
	p, err := payload.Encode(input)
	if err != nil {
		return "", fmt.Errorf("client: input is not JSON-encodable: %w", err)
	}
	req := &pb.ExecuteWorkflowRequest{
		WorkflowName:  name,
		Version:       int32(opts.Version),
		Input:         p,
		RequestId:     opts.RequestID,
		CorrelationId: opts.CorrelationID,
	}
	if opts.StartDelay > 0 {
		req.StartDelay = millis(opts.StartDelay)
	}
	resp, err := c.svc.ExecuteWorkflow(ctx, req)
	if err != nil {
		return "", err
	}
	return resp.GetTransactionId(), nil
}

// GetStatus returns a snapshot of one execution.
func (c *Client) GetStatus(ctx context.Context, transactionID string) (*Status, error) {
	resp, err := c.svc.GetStatus(ctx, &pb.GetStatusRequest{TransactionId: transactionID})
	if err != nil {
		return nil, err
	}
	return statusFromProto(resp.GetStatus())
}

// CancelWorkflow cancels a running execution.
func (c *Client) CancelWorkflow(ctx context.Context, transactionID, reason string) error {
	_, err := c.svc.CancelWorkflow(ctx, &pb.CancelWorkflowRequest{TransactionId: transactionID, Reason: reason})
	return err
}

// SignalWorkflow sends a signal to an execution; a wait_for_signal step for
// it takes it (one sent before the wait starts is kept). data (a JSON
// object, nil is {}) is its payload: the wait's result. With a signalID a resend is
// accepted once: duplicate reports that the id had been taken already.
func (c *Client) SignalWorkflow(ctx context.Context, transactionID, signal string, data map[string]any, signalID string) (duplicate bool, err error) {
	p, err := payload.Encode(data)
	if err != nil {
		return false, fmt.Errorf("client: signal payload is not JSON-encodable: %w", err)
	}
	resp, err := c.svc.SignalWorkflow(ctx, &pb.SignalWorkflowRequest{
		TransactionId: transactionID, Signal: signal, Payload: p, SignalId: signalID,
	})
	return resp.GetDuplicate(), err
}

// Decision is what Approve and Reject send to an approval wait
// (a wait_for_signal step with approval set).
type Decision struct {
	// Signal is the wait's signal name; "" means "approval".
	Signal string
	// Comment says why; a rejection's comment goes into the failure's message.
	Comment string
	// By says who decided.
	By string
}

// decide sends a Decision to an approval wait.
func (c *Client) decide(ctx context.Context, transactionID string, d Decision, approved bool) (bool, error) {
	signal := d.Signal
	if signal == "" {
		signal = "approval"
	}
	p := map[string]any{"approved": approved}
	if d.Comment != "" {
		p["comment"] = d.Comment
	}
	if d.By != "" {
		p["by"] = d.By
	}
	return c.SignalWorkflow(ctx, transactionID, signal, p, "")
}

// Approve approves an approval wait (payload {"approved": true, "comment", "by"}).
func (c *Client) Approve(ctx context.Context, transactionID string, d Decision) (duplicate bool, err error) {
	return c.decide(ctx, transactionID, d, true)
}

// Reject rejects an approval wait: it fails (type Rejected) and the workflow
// compensates.
func (c *Client) Reject(ctx context.Context, transactionID string, d Decision) (duplicate bool, err error) {
	return c.decide(ctx, transactionID, d, false)
}

// ResumeWorkflow picks a FAILED execution up again, same id, history kept:
// its failed step runs again (or its failed compensations, when it requires
// manual intervention). Any other state is FAILED_PRECONDITION.
func (c *Client) ResumeWorkflow(ctx context.Context, transactionID string) error {
	_, err := c.svc.ResumeWorkflow(ctx, &pb.ResumeWorkflowRequest{TransactionId: transactionID})
	return err
}

// WaitingFilter narrows ListWaitingSignals; the zero value lists every wait.
type WaitingFilter struct {
	// Signal keeps the waits for this signal.
	Signal string
	// WorkflowName keeps the executions of this workflow.
	WorkflowName string
	// ApprovalsOnly keeps approvals.
	ApprovalsOnly bool
	// Limit is the most returned; 0 means 100, at most 1,000.
	Limit int
}

// WaitingSignal is a wait that waits for a signal now: an entry of the
// approval inbox.
type WaitingSignal struct {
	TransactionID string
	WorkflowName  string
	// Path is the wait node's path ("review/approval").
	Path     string
	Signal   string
	Approval bool
	Since    time.Time
	// TimeoutAt is zero when the wait waits for ever.
	TimeoutAt time.Time
}

func waitingFromProto(w *pb.WaitingSignal) WaitingSignal {
	return WaitingSignal{TransactionID: w.GetTransactionId(), WorkflowName: w.GetWorkflowName(), Path: w.GetPath(),
		Signal: w.GetSignal(), Approval: w.GetApproval(), Since: timeOf(w.GetSince()), TimeoutAt: timeOf(w.GetTimeoutAt())}
}

// ListWaitingSignals returns the approval inbox: the waits waiting for a
// signal now, across executions, oldest first.
func (c *Client) ListWaitingSignals(ctx context.Context, f WaitingFilter) ([]WaitingSignal, error) {
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	resp, err := c.svc.ListWaitingSignals(ctx, &pb.ListWaitingSignalsRequest{
		Signal: f.Signal, WorkflowName: f.WorkflowName, ApprovalsOnly: f.ApprovalsOnly, PageSize: int32(limit),
	})
	if err != nil {
		return nil, err
	}
	out := make([]WaitingSignal, 0, len(resp.GetWaiting()))
	for _, w := range resp.GetWaiting() {
		out = append(out, waitingFromProto(w))
	}
	return out, nil
}

// Watch follows the execution's status changes until it reaches a terminal
// state, calling fn (if not nil) once per change, the current status first,
// and returns the terminal event. When the stream breaks (server restart,
// network) it reopens it with backoff and skips changes fn has seen already.
func (c *Client) Watch(ctx context.Context, transactionID string, fn func(*StatusEvent)) (*StatusEvent, error) {
	var lastRevision int64 = -1
	delay := 100 * time.Millisecond
	for {
		final, err := c.watchOnce(ctx, transactionID, &lastRevision, fn)
		if final != nil {
			return final, nil
		}
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case err != nil && status.Code(err) != codes.Unavailable:
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay/2 + rand.N(delay/2+1)):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// watchOnce follows one WatchWorkflow stream. It returns the terminal event,
// or the error that ended the stream (nil when it ended early without one).
func (c *Client) watchOnce(ctx context.Context, transactionID string, lastRevision *int64, fn func(*StatusEvent)) (*StatusEvent, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.svc.WatchWorkflow(ctx, &pb.WatchWorkflowRequest{TransactionId: transactionID})
	if err != nil {
		return nil, err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		e, err := statusEventFromProto(resp.GetEvent())
		if err != nil {
			return nil, err
		}
		if e.Revision > 0 && e.Revision <= *lastRevision {
			continue // seen before the stream was reopened
		}
		*lastRevision = e.Revision
		if fn != nil {
			fn(e)
		}
		if e.State.Terminal() {
			return e, nil
		}
	}
}

// State is the lifecycle state of an execution: "PENDING", "RUNNING",
// "COMPENSATING", "COMPLETED", "FAILED", "COMPENSATED" or "CANCELLED".
type State string

// The states of an execution.
const (
	StatePending     State = "PENDING"
	StateRunning     State = "RUNNING"
	StateCompleted   State = "COMPLETED"
	StateFailed      State = "FAILED"
	StateCompensated State = "COMPENSATED"
	StateCancelled   State = "CANCELLED"
	// StateCompensating: a step failed for good (or a cancel was asked) and
	// the completed steps are being compensated.
	StateCompensating State = "COMPENSATING"
)

// Terminal reports whether the execution is finished.
func (s State) Terminal() bool {
	switch s {
	case StateCompleted, StateFailed, StateCompensated, StateCancelled:
		return true
	}
	return false
}

func stateFromProto(s pb.WorkflowState) State {
	return State(strings.TrimPrefix(s.String(), "WORKFLOW_STATE_"))
}

// FailureKind is the class of a failure, common.proto's FailureKind
// without its prefix: "APPLICATION", "TIMEOUT", "HEARTBEAT_TIMEOUT",
// "WORKER_LOST", "CANCELLED", "INVALID_RESULT", "COMPENSATION_FAILED",
// "CHILD_WORKFLOW_FAILED" or "BUDGET_EXCEEDED".
type FailureKind string

// The failure kinds (documented in common.proto).
const (
	KindApplication         FailureKind = "APPLICATION"
	KindTimeout             FailureKind = "TIMEOUT"
	KindHeartbeatTimeout    FailureKind = "HEARTBEAT_TIMEOUT"
	KindWorkerLost          FailureKind = "WORKER_LOST"
	KindCancelled           FailureKind = "CANCELLED"
	KindInvalidResult       FailureKind = "INVALID_RESULT"
	KindCompensationFailed  FailureKind = "COMPENSATION_FAILED"
	KindChildWorkflowFailed FailureKind = "CHILD_WORKFLOW_FAILED"
	KindBudgetExceeded      FailureKind = "BUDGET_EXCEEDED"
)

// KindFromProto names a wire FailureKind; UNSPECIFIED and values newer than
// this package read as KindApplication.
func KindFromProto(k pb.FailureKind) FailureKind {
	if k == pb.FailureKind_FAILURE_KIND_UNSPECIFIED {
		return KindApplication
	}
	if _, known := pb.FailureKind_name[int32(k)]; !known {
		return KindApplication
	}
	return FailureKind(strings.TrimPrefix(k.String(), "FAILURE_KIND_"))
}

// Failure is a structured failure of a step or compensation.
type Failure struct {
	Message      string
	Type         string
	Kind         FailureKind
	NonRetryable bool
	StackTrace   string
	// Cause is the failure that caused this one (e.g. a sub-workflow's), or nil.
	Cause *Failure
}

// String is "Type [KIND]: message".
func (f *Failure) String() string {
	return fmt.Sprintf("%s [%s]: %s", f.Type, f.Kind, f.Message)
}

func failureFromProto(f *pb.Failure) *Failure {
	if f == nil {
		return nil
	}
	return &Failure{Message: f.GetMessage(), Type: f.GetType(), Kind: KindFromProto(f.GetKind()),
		NonRetryable: f.GetNonRetryable(), StackTrace: f.GetStackTrace(), Cause: failureFromProto(f.GetCause())}
}

// WorkflowFailedError is returned by Result when the execution ended
// FAILED, COMPENSATED or CANCELLED. Failure (with its Kind and Cause chain)
// is what stopped it; nil for a cancelled execution, whose CancelReason says why.
type WorkflowFailedError struct {
	TransactionID string
	State         State
	Failure       *Failure
	CancelReason  string
}

func (e *WorkflowFailedError) Error() string {
	why := e.CancelReason
	if e.Failure != nil {
		why = e.Failure.String()
	}
	return fmt.Sprintf("workflow %s ended %s: %s", e.TransactionID, e.State, why)
}

// Result waits for the end of an execution and returns its output, the
// final context (the input merged with every step's result), or a
// *WorkflowFailedError when it did not complete.
func (c *Client) Result(ctx context.Context, transactionID string) (map[string]any, error) {
	final, err := c.Watch(ctx, transactionID, nil)
	if err != nil {
		return nil, err
	}
	if final.State != StateCompleted {
		return nil, &WorkflowFailedError{TransactionID: transactionID, State: final.State,
			Failure: final.Failure, CancelReason: final.CancelReason}
	}
	status, err := c.GetStatus(ctx, transactionID)
	if err != nil {
		return nil, err
	}
	return status.Context, nil
}

// StatusEvent is one status change of an execution.
type StatusEvent struct {
	TransactionID string
	CorrelationID string
	State         State
	// CurrentStep is the step being executed or compensated.
	CurrentStep string
	// StepResults maps step name to that step's result.
	StepResults map[string]any
	Timestamp   time.Time
	Revision    int64
	// Failure stopped the forward path, if any.
	Failure *Failure
	// RequiresManualIntervention is set when a compensation failed for good.
	RequiresManualIntervention bool
	// CancelReason says why the execution is being cancelled, once a cancel
	// was requested; empty before.
	CancelReason string
}

func statusEventFromProto(e *pb.StatusEvent) (*StatusEvent, error) {
	results, err := payload.Decode(e.GetStepResults())
	if err != nil {
		return nil, fmt.Errorf("client: step_results: %w", err)
	}
	return &StatusEvent{
		TransactionID:              e.GetTransactionId(),
		CorrelationID:              e.GetCorrelationId(),
		State:                      stateFromProto(e.GetState()),
		CurrentStep:                e.GetCurrentStep(),
		StepResults:                results,
		Timestamp:                  timeOf(e.GetTimestamp()),
		Revision:                   e.GetRevision(),
		Failure:                    failureFromProto(e.GetFailure()),
		RequiresManualIntervention: e.GetRequiresManualIntervention(),
		CancelReason:               e.GetCancelReason(),
	}, nil
}

// Status is a snapshot of one execution.
type Status struct {
	TransactionID   string
	CorrelationID   string
	WorkflowName    string
	WorkflowVersion int
	State           State
	CurrentStep     string
	// StepResults maps step name to that step's result.
	StepResults map[string]any
	// Context is the merged context: the input plus every result so far.
	Context                    map[string]any
	Failure                    *Failure
	RequiresManualIntervention bool
	// Steps has every node, in definition order (depth first); a map's items
	// follow the map.
	Steps []StepInfo
	// RunningSteps are the paths of the steps with an attempt outstanding
	// (several in a parallel group or a map).
	RunningSteps []string
	// WaitingSignals are the waits waiting for a signal now.
	WaitingSignals []WaitingSignal
	// StartAt is when a delayed execution starts; zero when it started at once.
	StartAt time.Time
	// ParentTransactionID is the execution that runs this one as a
	// sub-workflow step; empty when none.
	ParentTransactionID string
	CreatedAt           time.Time
	UpdatedAt           time.Time
	CompletedAt         time.Time // zero until terminal
	Revision            int64
}

// StepInfo is the state of one node of an execution.
type StepInfo struct {
	Name string
	// Status is "PENDING", "RUNNING", "COMPLETED", "FAILED", "COMPENSATED",
	// "COMPENSATION_FAILED", "CANCELLED" or "SKIPPED".
	Status      string
	Attempts    int
	LastFailure *Failure
	// Path is the names from the top: "ask/legal/legal_review" (a branch's
	// step), "each/3" (a map's item).
	Path string
	// Kind is "step", "workflow", "parallel", "map", "item", "condition",
	// "wait" or "sleep".
	Kind string
	// Branch is a condition's case taken ("case 1", ..., "otherwise"), or
	// "timed out" for a wait; else empty.
	Branch string
	// ChildTransactionID is the sub-workflow run by the latest attempt.
	ChildTransactionID string
	StartedAt          time.Time
	FinishedAt         time.Time
	// Progress is what the worker of the running attempt last reported
	// (its Heartbeat details), or the shared limit the attempt waits for:
	// {"waiting_for_rate_limit": key, "reason": "concurrency"} (or
	// "requests", "tokens", "backoff", "queued"). Nil when the step is not
	// running or nothing was reported.
	Progress map[string]any
}

func statusFromProto(s *pb.WorkflowStatus) (*Status, error) {
	results, err := payload.Decode(s.GetStepResults())
	if err != nil {
		return nil, fmt.Errorf("client: step_results: %w", err)
	}
	context, err := payload.Decode(s.GetContext())
	if err != nil {
		return nil, fmt.Errorf("client: context: %w", err)
	}
	out := &Status{
		TransactionID:              s.GetTransactionId(),
		CorrelationID:              s.GetCorrelationId(),
		WorkflowName:               s.GetWorkflowName(),
		WorkflowVersion:            int(s.GetWorkflowVersion()),
		State:                      stateFromProto(s.GetState()),
		CurrentStep:                s.GetCurrentStep(),
		StepResults:                results,
		Context:                    context,
		Failure:                    failureFromProto(s.GetFailure()),
		RequiresManualIntervention: s.GetRequiresManualIntervention(),
		CreatedAt:                  timeOf(s.GetCreatedAt()),
		UpdatedAt:                  timeOf(s.GetUpdatedAt()),
		CompletedAt:                timeOf(s.GetCompletedAt()),
		Revision:                   s.GetRevision(),
		RunningSteps:               s.GetRunningSteps(),
		StartAt:                    timeOf(s.GetStartAt()),
		ParentTransactionID:        s.GetParentTransactionId(),
	}
	for _, st := range s.GetSteps() {
		var progress map[string]any
		if p := st.GetProgress(); p != nil {
			if progress, err = payload.Decode(p.GetDetails()); err != nil {
				return nil, fmt.Errorf("client: progress of step %s: %w", st.GetPath(), err)
			}
		}
		out.Steps = append(out.Steps, StepInfo{
			Name:               st.GetName(),
			Status:             strings.TrimPrefix(st.GetStatus().String(), "STEP_STATUS_"),
			Attempts:           int(st.GetAttempts()),
			LastFailure:        failureFromProto(st.GetLastFailure()),
			Path:               st.GetPath(),
			Kind:               st.GetKind(),
			Branch:             st.GetBranch(),
			ChildTransactionID: st.GetChildTransactionId(),
			StartedAt:          timeOf(st.GetStartedAt()),
			FinishedAt:         timeOf(st.GetFinishedAt()),
			Progress:           progress,
		})
	}
	for _, w := range s.GetWaitingSignals() {
		out.WaitingSignals = append(out.WaitingSignals, waitingFromProto(w))
	}
	return out, nil
}

func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}
