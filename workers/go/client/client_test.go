package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/multiagents/multiagents/workers/go/client"
	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
	"github.com/multiagents/multiagents/workers/go/internal/payload"
)

// fakeWorkflows plays the server side of WorkflowService.
type fakeWorkflows struct {
	pb.UnimplementedWorkflowServiceServer
	lastExecute *pb.ExecuteWorkflowRequest
	auth        []string
	watches     atomic.Int32
	signals     []*pb.SignalWorkflowRequest
	resumed     []string
	lastInbox   *pb.ListWaitingSignalsRequest
	// Schedules (schedule_test.go).
	lastCreate    *pb.CreateScheduleRequest
	scheduleLists []*pb.ListSchedulesRequest
	// scheduleCalls are "pause id note", "unpause id note" and "delete id".
	scheduleCalls []string
}

var waiting = &pb.WaitingSignal{TransactionId: "tx-1", WorkflowName: "publish", Path: "review/approval",
	Signal: "approval", Approval: true, Since: timestamppb.New(time.Unix(1_700_000_000, 0))}

func (f *fakeWorkflows) SignalWorkflow(_ context.Context, req *pb.SignalWorkflowRequest) (*pb.SignalWorkflowResponse, error) {
	if req.GetSignal() == "nope" {
		return nil, status.Error(codes.InvalidArgument, "signal: workflow 'publish' has no wait_for_signal step for 'nope'")
	}
	duplicate := req.GetSignalId() != "" && slices.ContainsFunc(f.signals, func(s *pb.SignalWorkflowRequest) bool {
		return s.GetSignalId() == req.GetSignalId()
	})
	f.signals = append(f.signals, req)
	return &pb.SignalWorkflowResponse{Duplicate: duplicate}, nil
}

func (f *fakeWorkflows) ResumeWorkflow(_ context.Context, req *pb.ResumeWorkflowRequest) (*pb.ResumeWorkflowResponse, error) {
	if req.GetTransactionId() != "tx-1" {
		return nil, status.Error(codes.FailedPrecondition, "transaction_id: tx-9 is COMPENSATED, not FAILED")
	}
	f.resumed = append(f.resumed, req.GetTransactionId())
	return &pb.ResumeWorkflowResponse{}, nil
}

func (f *fakeWorkflows) ListWaitingSignals(_ context.Context, req *pb.ListWaitingSignalsRequest) (*pb.ListWaitingSignalsResponse, error) {
	f.lastInbox = req
	return &pb.ListWaitingSignalsResponse{Waiting: []*pb.WaitingSignal{waiting}}, nil
}

func (f *fakeWorkflows) ExecuteWorkflow(ctx context.Context, req *pb.ExecuteWorkflowRequest) (*pb.ExecuteWorkflowResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.auth = md.Get("authorization")
	f.lastExecute = req
	return &pb.ExecuteWorkflowResponse{TransactionId: "tx-1", Created: true}, nil
}

func (f *fakeWorkflows) GetStatus(_ context.Context, req *pb.GetStatusRequest) (*pb.GetStatusResponse, error) {
	if req.GetTransactionId() != "tx-1" {
		return nil, status.Error(codes.NotFound, "unknown transaction")
	}
	results := payload.FromJSON([]byte(`{"charge":{"charge_id":"ch_1"}}`))
	return &pb.GetStatusResponse{Status: &pb.WorkflowStatus{
		TransactionId: "tx-1", WorkflowName: "order", WorkflowVersion: 2,
		State: pb.WorkflowState_WORKFLOW_STATE_COMPENSATED, StepResults: results,
		Failure: &pb.Failure{Type: "ValueError", Message: "bad", NonRetryable: true},
		Steps: []*pb.StepInfo{
			{Name: "charge", Status: pb.StepStatus_STEP_STATUS_COMPENSATED, Attempts: 1, Path: "charge", Kind: "step",
				StartedAt: timestamppb.New(time.Unix(1_700_000_000, 0)), FinishedAt: timestamppb.New(time.Unix(1_700_000_001, 0))},
			{Name: "route", Status: pb.StepStatus_STEP_STATUS_COMPLETED, Path: "review/route", Kind: "condition", Branch: "otherwise"},
			{Name: "publish", Status: pb.StepStatus_STEP_STATUS_SKIPPED, Path: "review/route/publish", Kind: "step"},
			{Name: "draft", Status: pb.StepStatus_STEP_STATUS_RUNNING, Attempts: 1, Path: "draft", Kind: "step",
				Progress: &pb.StepProgress{Details: payload.FromJSON([]byte(`{"waiting_for_rate_limit":"tenant:acme","reason":"concurrency"}`)),
					Attempt: 1, CommandId: "tx-1:draft:1"}},
		},
		RunningSteps:        []string{"ask/legal/legal_review", "ask/critic/critic_review"},
		WaitingSignals:      []*pb.WaitingSignal{waiting},
		StartAt:             timestamppb.New(time.Unix(1_700_000_060, 0)),
		ParentTransactionId: "tx-0",
		Revision:            7,
	}}, nil
}

func event(state pb.WorkflowState, step string, revision int64) *pb.WatchWorkflowResponse {
	return &pb.WatchWorkflowResponse{Event: &pb.StatusEvent{
		TransactionId: "tx-1", State: state, CurrentStep: step, Revision: revision,
		StepResults: payload.FromJSON([]byte(`{}`)),
	}}
}

// WatchWorkflow breaks the first stream after two events; the second stream
// starts again from the current status, as the real server does.
// A watch of "tx-failed" ends at once: COMPENSATED by a sub-workflow failure.
func (f *fakeWorkflows) WatchWorkflow(req *pb.WatchWorkflowRequest, stream grpc.ServerStreamingServer[pb.WatchWorkflowResponse]) error {
	if req.GetTransactionId() == "tx-failed" {
		final := event(pb.WorkflowState_WORKFLOW_STATE_COMPENSATED, "", 9)
		final.Event.Failure = &pb.Failure{Type: "ChildWorkflowFailed", Message: "sub-workflow tx-failed.0.1 ended failed: boom",
			Kind:  pb.FailureKind_FAILURE_KIND_CHILD_WORKFLOW_FAILED,
			Cause: &pb.Failure{Type: "WorkerExecutionError", Message: "boom"}}
		return stream.Send(final)
	}
	if f.watches.Add(1) == 1 {
		_ = stream.Send(event(pb.WorkflowState_WORKFLOW_STATE_PENDING, "", 1))
		_ = stream.Send(event(pb.WorkflowState_WORKFLOW_STATE_RUNNING, "charge", 2))
		return status.Error(codes.Unavailable, "server restarting")
	}
	_ = stream.Send(event(pb.WorkflowState_WORKFLOW_STATE_RUNNING, "charge", 2))
	_ = stream.Send(event(pb.WorkflowState_WORKFLOW_STATE_RUNNING, "ship", 3))
	_ = stream.Send(event(pb.WorkflowState_WORKFLOW_STATE_COMPLETED, "", 4))
	return nil
}

func start(t *testing.T) (*fakeWorkflows, *client.Client) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeWorkflows{}
	srv := grpc.NewServer()
	pb.RegisterWorkflowServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	c, err := client.New(lis.Addr().String(), client.Options{Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return f, c
}

func TestExecuteWorkflowSendsInputAsJSONWithToken(t *testing.T) {
	f, c := start(t)
	tx, err := c.ExecuteWorkflow(context.Background(), "order", map[string]any{"amount": 42},
		client.ExecuteOptions{Version: 2, RequestID: "r-1", CorrelationID: "c-1"})
	if err != nil || tx != "tx-1" {
		t.Fatalf("ExecuteWorkflow = %q, %v", tx, err)
	}
	req := f.lastExecute
	if req.GetWorkflowName() != "order" || req.GetVersion() != 2 || req.GetRequestId() != "r-1" || req.GetCorrelationId() != "c-1" {
		t.Errorf("request %v", req)
	}
	var input map[string]any
	if err := json.Unmarshal(req.GetInput().GetData(), &input); err != nil || input["amount"] != float64(42) ||
		string(req.GetInput().GetMetadata()["encoding"]) != "json/plain" {
		t.Errorf("input %v (%v)", req.GetInput(), err)
	}
	if !slices.Equal(f.auth, []string{"Bearer tok"}) {
		t.Errorf("authorization %q", f.auth)
	}
}

func TestGetStatusDecodesTheSnapshot(t *testing.T) {
	_, c := start(t)
	s, err := c.GetStatus(context.Background(), "tx-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.State != client.StateCompensated || !s.State.Terminal() || s.WorkflowVersion != 2 || s.Revision != 7 ||
		s.StepResults["charge"].(map[string]any)["charge_id"] != "ch_1" || s.Failure.Type != "ValueError" ||
		len(s.Steps) != 4 || s.Steps[0].Status != "COMPENSATED" || len(s.Context) != 0 {
		t.Errorf("status %+v", s)
	}
	first := s.Steps[0]
	if first.Path != "charge" || first.Kind != "step" || !first.StartedAt.Equal(time.Unix(1_700_000_000, 0)) ||
		!first.FinishedAt.Equal(time.Unix(1_700_000_001, 0)) || first.Progress != nil {
		t.Errorf("step %+v", first)
	}
	if p := s.Steps[3].Progress; len(p) != 2 || p["waiting_for_rate_limit"] != "tenant:acme" || p["reason"] != "concurrency" {
		t.Errorf("progress %v", p)
	}
	var nodes []string
	for _, st := range s.Steps[1:3] {
		nodes = append(nodes, st.Path+" "+st.Kind+" "+st.Status+" "+st.Branch)
	}
	if want := []string{"review/route condition COMPLETED otherwise", "review/route/publish step SKIPPED "}; !slices.Equal(nodes, want) {
		t.Errorf("nodes %q, want %q", nodes, want)
	}
	if !slices.Equal(s.RunningSteps, []string{"ask/legal/legal_review", "ask/critic/critic_review"}) ||
		len(s.WaitingSignals) != 1 || s.WaitingSignals[0].Path != "review/approval" || !s.WaitingSignals[0].Approval ||
		!s.StartAt.Equal(time.Unix(1_700_000_060, 0)) || s.ParentTransactionID != "tx-0" {
		t.Errorf("status %+v", s)
	}
	if _, err := c.GetStatus(context.Background(), "nope"); status.Code(err) != codes.NotFound {
		t.Errorf("unknown transaction: %v", err)
	}
}

func TestWatchFollowsChangesAcrossABrokenStreamUntilTerminal(t *testing.T) {
	_, c := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var seen []string
	final, err := c.Watch(ctx, "tx-1", func(e *client.StatusEvent) { seen = append(seen, string(e.State)+":"+e.CurrentStep) })
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"PENDING:", "RUNNING:charge", "RUNNING:ship", "COMPLETED:"}
	if !slices.Equal(seen, want) || final.State != client.StateCompleted {
		t.Errorf("seen %v, final %v", seen, final)
	}
}

func TestResultOfAnExecutionThatDidNotCompleteIsAWorkflowFailedErrorWithTheCauseChain(t *testing.T) {
	_, c := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := c.Result(ctx, "tx-failed")
	var failed *client.WorkflowFailedError
	if !errors.As(err, &failed) || out != nil {
		t.Fatalf("Result = %v, %v", out, err)
	}
	f := failed.Failure
	if failed.State != client.StateCompensated || f.Kind != client.KindChildWorkflowFailed ||
		f.Cause == nil || f.Cause.Kind != client.KindApplication || f.Cause.Type != "WorkerExecutionError" || f.Cause.Cause != nil {
		t.Errorf("error %+v, failure %+v", failed, f)
	}
	want := "workflow tx-failed ended COMPENSATED: ChildWorkflowFailed [CHILD_WORKFLOW_FAILED]: sub-workflow tx-failed.0.1 ended failed: boom"
	if err.Error() != want {
		t.Errorf("message %q", err.Error())
	}
}

func TestExecuteWorkflowSendsAStartDelayOnlyWhenGiven(t *testing.T) {
	f, c := start(t)
	ctx := context.Background()
	if _, err := c.ExecuteWorkflow(ctx, "nightly", nil, client.ExecuteOptions{StartDelay: time.Hour + 500*time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if d := f.lastExecute.GetStartDelay().AsDuration(); d != time.Hour+500*time.Millisecond {
		t.Errorf("start_delay %v", d)
	}
	if _, err := c.ExecuteWorkflow(ctx, "nightly", nil, client.ExecuteOptions{}); err != nil || f.lastExecute.GetStartDelay() != nil {
		t.Errorf("start_delay %v (%v)", f.lastExecute.GetStartDelay(), err)
	}
}

func TestSignalApproveAndRejectSendTheSignalAndItsPayload(t *testing.T) {
	f, c := start(t)
	ctx := context.Background()
	for i, want := range []bool{false, true} {
		if dup, err := c.SignalWorkflow(ctx, "tx-1", "go", map[string]any{"n": 1}, "go-1"); err != nil || dup != want {
			t.Errorf("signal %d: duplicate %v, %v", i, dup, err)
		}
	}
	if _, err := c.Approve(ctx, "tx-1", client.Decision{By: "ana", Comment: "fine"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reject(ctx, "tx-1", client.Decision{Signal: "legal_ok", Comment: "too expensive"}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range f.signals {
		got = append(got, s.GetTransactionId()+" "+s.GetSignal()+" "+s.GetSignalId()+" "+string(s.GetPayload().GetData()))
	}
	want := []string{
		`tx-1 go go-1 {"n":1}`,
		`tx-1 go go-1 {"n":1}`,
		`tx-1 approval  {"approved":true,"by":"ana","comment":"fine"}`,
		`tx-1 legal_ok  {"approved":false,"comment":"too expensive"}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("signals\n%q\nwant\n%q", got, want)
	}
	if _, err := c.SignalWorkflow(ctx, "tx-1", "nope", nil, ""); status.Code(err) != codes.InvalidArgument {
		t.Errorf("unknown signal: %v", err)
	}
}

func TestResumeWorkflowPassesTheServersAnswerOn(t *testing.T) {
	f, c := start(t)
	if err := c.ResumeWorkflow(context.Background(), "tx-1"); err != nil || !slices.Equal(f.resumed, []string{"tx-1"}) {
		t.Errorf("resume: %v, resumed %v", err, f.resumed)
	}
	if err := c.ResumeWorkflow(context.Background(), "tx-9"); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("resume of a compensated execution: %v", err)
	}
}

func TestListWaitingSignalsSendsTheFiltersAndDecodesTheInbox(t *testing.T) {
	f, c := start(t)
	ctx := context.Background()
	inbox, err := c.ListWaitingSignals(ctx, client.WaitingFilter{ApprovalsOnly: true, WorkflowName: "publish"})
	if err != nil {
		t.Fatal(err)
	}
	want := client.WaitingSignal{TransactionID: "tx-1", WorkflowName: "publish", Path: "review/approval",
		Signal: "approval", Approval: true, Since: time.Unix(1_700_000_000, 0).UTC()}
	if len(inbox) != 1 || inbox[0] != want {
		t.Errorf("inbox %+v", inbox)
	}
	if r := f.lastInbox; !r.GetApprovalsOnly() || r.GetWorkflowName() != "publish" || r.GetSignal() != "" || r.GetPageSize() != 100 {
		t.Errorf("request %v", r)
	}
	if _, err := c.ListWaitingSignals(ctx, client.WaitingFilter{Signal: "go", Limit: 5}); err != nil ||
		f.lastInbox.GetSignal() != "go" || f.lastInbox.GetPageSize() != 5 || f.lastInbox.GetApprovalsOnly() {
		t.Errorf("request %v (%v)", f.lastInbox, err)
	}
}
