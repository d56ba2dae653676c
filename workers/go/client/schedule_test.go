package client_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/multiagents/multiagents/workers/go/client"
	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
	"github.com/multiagents/multiagents/workers/go/internal/payload"
)

var (
	errUnknownSchedule = status.Error(codes.NotFound, "schedule_id: no schedule 'nope'")
	epoch              = time.Unix(1_700_000_000, 0).UTC()
)

// scheduleStatus is how the fake server answers for a definition.
func scheduleStatus(def *pb.ScheduleDefinition) *pb.ScheduleStatus {
	s := &pb.ScheduleStatus{Definition: def, CreatedAt: timestamppb.New(epoch), UpdatedAt: timestamppb.New(epoch)}
	if !def.GetPaused() {
		s.NextFireTime = timestamppb.New(epoch.Add(3 * time.Hour))
	}
	return s
}

func nightly() *pb.ScheduleDefinition {
	return &pb.ScheduleDefinition{ScheduleId: "nightly", Cron: "0 3 * * *", TimeZone: "Europe/Paris", WorkflowName: "report",
		Input: payload.FromJSON([]byte(`{"scope":"all"}`)), CatchupWindow: durationpb.New(365 * 24 * time.Hour)}
}

// hourly has a buffered fire time and three actions, the oldest of a kind
// newer than this package.
func hourly() *pb.ScheduleStatus {
	s := scheduleStatus(&pb.ScheduleDefinition{ScheduleId: "hourly", Cron: "@hourly", TimeZone: "UTC", WorkflowName: "report",
		WorkflowVersion: 3, OverlapPolicy: pb.ScheduleOverlapPolicy_SCHEDULE_OVERLAP_POLICY_BUFFER_ONE,
		CatchupWindow: durationpb.New(90*time.Second + 500*time.Millisecond)})
	s.BufferedFireTime = timestamppb.New(epoch.Add(time.Hour))
	s.RunsStarted, s.RunsSkipped, s.LastTransactionId = 4, 1, "tx-4"
	s.RecentActions = []*pb.ScheduleAction{
		{FireTime: timestamppb.New(epoch.Add(time.Hour)), TakenAt: timestamppb.New(epoch.Add(time.Hour + 10*time.Millisecond)),
			Kind: pb.ScheduleActionKind_SCHEDULE_ACTION_KIND_BUFFERED, TransactionId: "tx-4", Message: "tx-4 is still running"},
		{FireTime: timestamppb.New(epoch), TakenAt: timestamppb.New(epoch), Kind: pb.ScheduleActionKind_SCHEDULE_ACTION_KIND_STARTED, TransactionId: "tx-4"},
		{FireTime: timestamppb.New(epoch.Add(-time.Hour)), TakenAt: timestamppb.New(epoch.Add(-time.Hour)), Kind: 9, Message: "from a newer server"},
	}
	return s
}

func (f *fakeWorkflows) CreateSchedule(_ context.Context, req *pb.CreateScheduleRequest) (*pb.CreateScheduleResponse, error) {
	if req.GetSchedule().GetScheduleId() == "taken" {
		return nil, status.Error(codes.AlreadyExists, "schedule_id: 'taken' exists")
	}
	f.lastCreate = req
	return &pb.CreateScheduleResponse{Status: scheduleStatus(req.GetSchedule())}, nil
}

func (f *fakeWorkflows) GetSchedule(_ context.Context, req *pb.GetScheduleRequest) (*pb.GetScheduleResponse, error) {
	if req.GetScheduleId() != "hourly" {
		return nil, errUnknownSchedule
	}
	return &pb.GetScheduleResponse{Status: hourly()}, nil
}

// ListSchedules answers in two pages: hourly, then nightly.
func (f *fakeWorkflows) ListSchedules(_ context.Context, req *pb.ListSchedulesRequest) (*pb.ListSchedulesResponse, error) {
	f.scheduleLists = append(f.scheduleLists, req)
	if req.GetPageToken() == "" {
		return &pb.ListSchedulesResponse{Schedules: []*pb.ScheduleStatus{hourly()}, NextPageToken: "after:hourly"}, nil
	}
	return &pb.ListSchedulesResponse{Schedules: []*pb.ScheduleStatus{scheduleStatus(nightly())}}, nil
}

func (f *fakeWorkflows) pauseOrUnpause(verb, id, note string) (*pb.ScheduleStatus, error) {
	if id != "nightly" {
		return nil, errUnknownSchedule
	}
	f.scheduleCalls = append(f.scheduleCalls, verb+" "+id+" "+note)
	def := nightly()
	def.Paused, def.Note = verb == "pause", note
	return scheduleStatus(def), nil
}

func (f *fakeWorkflows) PauseSchedule(_ context.Context, req *pb.PauseScheduleRequest) (*pb.PauseScheduleResponse, error) {
	s, err := f.pauseOrUnpause("pause", req.GetScheduleId(), req.GetNote())
	return &pb.PauseScheduleResponse{Status: s}, err
}

func (f *fakeWorkflows) UnpauseSchedule(_ context.Context, req *pb.UnpauseScheduleRequest) (*pb.UnpauseScheduleResponse, error) {
	s, err := f.pauseOrUnpause("unpause", req.GetScheduleId(), req.GetNote())
	return &pb.UnpauseScheduleResponse{Status: s}, err
}

func (f *fakeWorkflows) DeleteSchedule(_ context.Context, req *pb.DeleteScheduleRequest) (*pb.DeleteScheduleResponse, error) {
	if req.GetScheduleId() != "nightly" {
		return nil, errUnknownSchedule
	}
	f.scheduleCalls = append(f.scheduleCalls, "delete "+req.GetScheduleId())
	return &pb.DeleteScheduleResponse{}, nil
}

func TestCreateScheduleSendsTheDefinitionAndDecodesTheStatus(t *testing.T) {
	f, c := start(t)
	ctx := context.Background()
	s, err := c.CreateSchedule(ctx, "nightly", "0 3 * * *", "report", map[string]any{"scope": "all"}, client.ScheduleOptions{
		TimeZone: "Europe/Paris", OverlapPolicy: client.OverlapCancelOther, CatchupWindow: 90*time.Second + 500*time.Millisecond, Note: "n"})
	if err != nil {
		t.Fatal(err)
	}
	def := f.lastCreate.GetSchedule()
	if def.GetScheduleId() != "nightly" || def.GetCron() != "0 3 * * *" || def.GetTimeZone() != "Europe/Paris" ||
		def.GetWorkflowName() != "report" || def.GetWorkflowVersion() != 0 || def.GetPaused() || def.GetNote() != "n" ||
		def.GetOverlapPolicy() != pb.ScheduleOverlapPolicy_SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER ||
		def.GetCatchupWindow().AsDuration() != 90*time.Second+500*time.Millisecond {
		t.Errorf("definition %v", def)
	}
	var input map[string]any
	if err := json.Unmarshal(def.GetInput().GetData(), &input); err != nil || input["scope"] != "all" ||
		string(def.GetInput().GetMetadata()["encoding"]) != "json/plain" {
		t.Errorf("input %v (%v)", def.GetInput(), err)
	}
	if s.ID != "nightly" || s.Input["scope"] != "all" || s.OverlapPolicy != client.OverlapCancelOther ||
		s.CatchupWindow != 90*time.Second+500*time.Millisecond || !s.NextFireTime.Equal(epoch.Add(3*time.Hour)) ||
		!s.CreatedAt.Equal(epoch) || len(s.RecentActions) != 0 {
		t.Errorf("schedule %+v", s)
	}
	if _, err := c.CreateSchedule(ctx, "taken", "@daily", "report", nil, client.ScheduleOptions{}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("taken id: %v", err)
	}
}

func TestCreateScheduleSendsDefaultsAndRefusesABadPolicyBeforeCalling(t *testing.T) {
	f, c := start(t)
	ctx := context.Background()
	if _, err := c.CreateSchedule(ctx, "daily", "@daily", "report", nil, client.ScheduleOptions{Paused: true, Version: 2}); err != nil {
		t.Fatal(err)
	}
	def := f.lastCreate.GetSchedule()
	if def.GetOverlapPolicy() != pb.ScheduleOverlapPolicy_SCHEDULE_OVERLAP_POLICY_SKIP || def.GetCatchupWindow() != nil ||
		def.GetTimeZone() != "" || !def.GetPaused() || def.GetWorkflowVersion() != 2 || string(def.GetInput().GetData()) != "{}" {
		t.Errorf("definition %v", def)
	}
	f.lastCreate = nil
	_, err := c.CreateSchedule(ctx, "x", "@daily", "report", nil, client.ScheduleOptions{OverlapPolicy: "buffer_all"})
	want := `client: overlap policy: expected one of allow_all, buffer_one, cancel_other, skip, got "buffer_all"`
	if err == nil || err.Error() != want || f.lastCreate != nil {
		t.Errorf("bad policy: %v, sent %v", err, f.lastCreate)
	}
	if _, err := c.CreateSchedule(ctx, "x", "@daily", "report", map[string]any{"f": func() {}}, client.ScheduleOptions{}); err == nil || f.lastCreate != nil {
		t.Errorf("input that is not JSON: %v, sent %v", err, f.lastCreate)
	}
}

func TestGetScheduleDecodesTheActionsNewestFirst(t *testing.T) {
	_, c := start(t)
	ctx := context.Background()
	s, err := c.GetSchedule(ctx, "hourly")
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "hourly" || s.Cron != "@hourly" || s.TimeZone != "UTC" || s.WorkflowVersion != 3 || s.OverlapPolicy != client.OverlapBufferOne ||
		s.CatchupWindow != 90*time.Second+500*time.Millisecond || s.Paused || !s.BufferedFireTime.Equal(epoch.Add(time.Hour)) ||
		s.RunsStarted != 4 || s.RunsSkipped != 1 || s.LastTransactionID != "tx-4" || len(s.Input) != 0 {
		t.Errorf("schedule %+v", s)
	}
	first := client.ScheduleAction{FireTime: epoch.Add(time.Hour), TakenAt: epoch.Add(time.Hour + 10*time.Millisecond),
		Kind: client.ActionBuffered, TransactionID: "tx-4", Message: "tx-4 is still running"}
	var kinds []client.ActionKind
	for _, a := range s.RecentActions {
		kinds = append(kinds, a.Kind)
	}
	if len(s.RecentActions) != 3 || s.RecentActions[0] != first ||
		!slices.Equal(kinds, []client.ActionKind{client.ActionBuffered, client.ActionStarted, client.ActionUnspecified}) {
		t.Errorf("actions %+v", s.RecentActions)
	}
	if _, err := c.GetSchedule(ctx, "nope"); status.Code(err) != codes.NotFound {
		t.Errorf("unknown schedule: %v", err)
	}
}

func TestListSchedulesReadsEveryPage(t *testing.T) {
	f, c := start(t)
	all, err := c.ListSchedules(context.Background(), "report")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range all {
		got = append(got, s.ID+" "+string(s.OverlapPolicy)+" "+s.CatchupWindow.String())
	}
	// UNSPECIFIED (nightly's) reads as skip.
	if want := []string{"hourly buffer_one 1m30.5s", "nightly skip 8760h0m0s"}; !slices.Equal(got, want) {
		t.Errorf("schedules %q, want %q", got, want)
	}
	var requests []string
	for _, r := range f.scheduleLists {
		requests = append(requests, r.GetWorkflowName()+" "+r.GetPageToken())
		if r.GetPageSize() != 1000 {
			t.Errorf("page size %d", r.GetPageSize())
		}
	}
	if want := []string{"report ", "report after:hourly"}; !slices.Equal(requests, want) {
		t.Errorf("requests %q, want %q", requests, want)
	}
}

func TestPauseUnpauseAndDeleteScheduleSendTheIDAndNote(t *testing.T) {
	f, c := start(t)
	ctx := context.Background()
	paused, err := c.PauseSchedule(ctx, "nightly", "holidays")
	if err != nil || !paused.Paused || paused.Note != "holidays" || !paused.NextFireTime.IsZero() {
		t.Errorf("paused %+v, %v", paused, err)
	}
	unpaused, err := c.UnpauseSchedule(ctx, "nightly", "")
	if err != nil || unpaused.Paused || !unpaused.NextFireTime.Equal(epoch.Add(3*time.Hour)) {
		t.Errorf("unpaused %+v, %v", unpaused, err)
	}
	if err := c.DeleteSchedule(ctx, "nightly"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"pause nightly holidays", "unpause nightly ", "delete nightly"}; !slices.Equal(f.scheduleCalls, want) {
		t.Errorf("calls %q, want %q", f.scheduleCalls, want)
	}
	_, pauseErr := c.PauseSchedule(ctx, "nope", "")
	_, unpauseErr := c.UnpauseSchedule(ctx, "nope", "")
	for _, err := range []error{pauseErr, unpauseErr, c.DeleteSchedule(ctx, "nope")} {
		if status.Code(err) != codes.NotFound {
			t.Errorf("unknown schedule: %v", err)
		}
	}
}
