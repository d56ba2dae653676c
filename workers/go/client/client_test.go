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
		Failure:  &pb.Failure{Type: "ValueError", Message: "bad", NonRetryable: true},
		Steps:    []*pb.StepInfo{{Name: "charge", Status: pb.StepStatus_STEP_STATUS_COMPENSATED, Attempts: 1}},
		Revision: 7,
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
		len(s.Steps) != 1 || s.Steps[0].Status != "COMPENSATED" || len(s.Context) != 0 {
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
