package client

import (
	"context"
	"fmt"
	"time"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
	"github.com/multiagents/multiagents/workers/go/internal/payload"
)

// OverlapPolicy says what a schedule does when a fire time comes while its
// last run is still running: schedule.proto's ScheduleOverlapPolicy, lower
// case without its prefix, as the Python client and the CLI name them.
type OverlapPolicy string

// The overlap policies (docs/workflows.md, "Schedules").
const (
	// OverlapSkip starts nothing for that fire time (the default).
	OverlapSkip OverlapPolicy = "skip"
	// OverlapBufferOne starts it as soon as the running run ends; one waits at most.
	OverlapBufferOne OverlapPolicy = "buffer_one"
	// OverlapCancelOther cancels the running run, then starts the new one.
	OverlapCancelOther OverlapPolicy = "cancel_other"
	// OverlapAllowAll starts it anyway: runs may overlap.
	OverlapAllowAll OverlapPolicy = "allow_all"
)

var overlapPolicies = map[OverlapPolicy]pb.ScheduleOverlapPolicy{
	OverlapSkip:        pb.ScheduleOverlapPolicy_SCHEDULE_OVERLAP_POLICY_SKIP,
	OverlapBufferOne:   pb.ScheduleOverlapPolicy_SCHEDULE_OVERLAP_POLICY_BUFFER_ONE,
	OverlapCancelOther: pb.ScheduleOverlapPolicy_SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER,
	OverlapAllowAll:    pb.ScheduleOverlapPolicy_SCHEDULE_OVERLAP_POLICY_ALLOW_ALL,
}

func overlapFromProto(p pb.ScheduleOverlapPolicy) OverlapPolicy {
	for name, value := range overlapPolicies {
		if value == p {
			return name
		}
	}
	return OverlapSkip // UNSPECIFIED means skip
}

// ActionKind is what a schedule did for one fire time: ScheduleActionKind
// lower case without its prefix; "unspecified" for a value newer than this
// package.
type ActionKind string

// The action kinds.
const (
	ActionStarted     ActionKind = "started"
	ActionSkipped     ActionKind = "skipped"
	ActionBuffered    ActionKind = "buffered"
	ActionMissed      ActionKind = "missed"
	ActionFailed      ActionKind = "failed"
	ActionUnspecified ActionKind = "unspecified"
)

var actionKinds = map[pb.ScheduleActionKind]ActionKind{
	pb.ScheduleActionKind_SCHEDULE_ACTION_KIND_STARTED:  ActionStarted,
	pb.ScheduleActionKind_SCHEDULE_ACTION_KIND_SKIPPED:  ActionSkipped,
	pb.ScheduleActionKind_SCHEDULE_ACTION_KIND_BUFFERED: ActionBuffered,
	pb.ScheduleActionKind_SCHEDULE_ACTION_KIND_MISSED:   ActionMissed,
	pb.ScheduleActionKind_SCHEDULE_ACTION_KIND_FAILED:   ActionFailed,
}

// ScheduleOptions are the optional parts of CreateSchedule; the zero value
// takes every default.
type ScheduleOptions struct {
	// Version of the workflow each fire starts; 0 means the latest at each fire.
	Version int
	// TimeZone is the IANA zone the cron expression is read in
	// ("Europe/Paris"); "" means UTC.
	TimeZone string
	// OverlapPolicy; "" means OverlapSkip.
	OverlapPolicy OverlapPolicy
	// CatchupWindow is how old the one missed fire time caught up after
	// downtime may be; 0 means 365 days.
	CatchupWindow time.Duration
	// Paused creates it paused: nothing fires until UnpauseSchedule.
	Paused bool
	// Note is free text, e.g. why it is paused.
	Note string
}

// ScheduleAction is what a schedule did for one fire time.
type ScheduleAction struct {
	// FireTime is the time the cron expression named.
	FireTime time.Time
	// TakenAt is when the server acted on it.
	TakenAt time.Time
	Kind    ActionKind
	// TransactionID is the run started (ActionStarted) or still running
	// (ActionSkipped, ActionBuffered); else empty.
	TransactionID string
	// Message says why, for anything but ActionStarted.
	Message string
}

// Schedule is a schedule (a decoded ScheduleStatus) and what it has done.
type Schedule struct {
	ID   string
	Cron string
	// TimeZone is "UTC" unless the schedule names a zone.
	TimeZone     string
	WorkflowName string
	// WorkflowVersion 0 starts the latest version at each fire.
	WorkflowVersion int
	// Input is the input of every run.
	Input         map[string]any
	OverlapPolicy OverlapPolicy
	CatchupWindow time.Duration
	Paused        bool
	Note          string
	CreatedAt     time.Time
	// UpdatedAt is its last change by a client (create, pause, unpause).
	UpdatedAt time.Time
	// NextFireTime is zero while paused.
	NextFireTime time.Time
	// BufferedFireTime is a fire time waiting for the running run to end
	// (buffer_one, cancel_other); zero when none.
	BufferedFireTime time.Time
	RunsStarted      int64
	RunsSkipped      int64
	// LastTransactionID is the last run started; empty before the first.
	LastTransactionID string
	// RecentActions are the latest actions, newest first, at most 10.
	RecentActions []ScheduleAction
}

func scheduleFromProto(s *pb.ScheduleStatus) (*Schedule, error) {
	d := s.GetDefinition()
	input, err := payload.Decode(d.GetInput())
	if err != nil {
		return nil, fmt.Errorf("client: schedule %s input: %w", d.GetScheduleId(), err)
	}
	out := &Schedule{
		ID:                d.GetScheduleId(),
		Cron:              d.GetCron(),
		TimeZone:          d.GetTimeZone(),
		WorkflowName:      d.GetWorkflowName(),
		WorkflowVersion:   int(d.GetWorkflowVersion()),
		Input:             input,
		OverlapPolicy:     overlapFromProto(d.GetOverlapPolicy()),
		CatchupWindow:     d.GetCatchupWindow().AsDuration(),
		Paused:            d.GetPaused(),
		Note:              d.GetNote(),
		CreatedAt:         timeOf(s.GetCreatedAt()),
		UpdatedAt:         timeOf(s.GetUpdatedAt()),
		NextFireTime:      timeOf(s.GetNextFireTime()),
		BufferedFireTime:  timeOf(s.GetBufferedFireTime()),
		RunsStarted:       s.GetRunsStarted(),
		RunsSkipped:       s.GetRunsSkipped(),
		LastTransactionID: s.GetLastTransactionId(),
	}
	for _, a := range s.GetRecentActions() {
		kind, known := actionKinds[a.GetKind()]
		if !known {
			kind = ActionUnspecified
		}
		out.RecentActions = append(out.RecentActions, ScheduleAction{FireTime: timeOf(a.GetFireTime()),
			TakenAt: timeOf(a.GetTakenAt()), Kind: kind, TransactionID: a.GetTransactionId(), Message: a.GetMessage()})
	}
	return out, nil
}

// CreateSchedule creates a schedule: cron (5 fields, 6 with seconds first,
// 7 with a year last; read in opts.TimeZone, default UTC) starts
// workflowName with input (a JSON object, nil is {}) at each fire time. A
// taken id is ALREADY_EXISTS; a bad cron, zone or window INVALID_ARGUMENT;
// an unknown workflow NOT_FOUND. An unknown OverlapPolicy is an error
// before any call.
func (c *Client) CreateSchedule(ctx context.Context, scheduleID, cron, workflowName string, input map[string]any, opts ScheduleOptions) (*Schedule, error) {
	policy := opts.OverlapPolicy
	if policy == "" {
		policy = OverlapSkip
	}
	wirePolicy, known := overlapPolicies[policy]
	if !known {
		return nil, fmt.Errorf("client: overlap policy: expected one of allow_all, buffer_one, cancel_other, skip, got %q", policy)
	}
	p, err := payload.Encode(input)
	if err != nil {
		return nil, fmt.Errorf("client: schedule input is not JSON-encodable: %w", err)
	}
	def := &pb.ScheduleDefinition{
		ScheduleId:      scheduleID,
		Cron:            cron,
		TimeZone:        opts.TimeZone,
		WorkflowName:    workflowName,
		WorkflowVersion: int32(opts.Version),
		Input:           p,
		OverlapPolicy:   wirePolicy,
		Paused:          opts.Paused,
		Note:            opts.Note,
	}
	if opts.CatchupWindow != 0 {
		def.CatchupWindow = millis(opts.CatchupWindow)
	}
	resp, err := c.svc.CreateSchedule(ctx, &pb.CreateScheduleRequest{Schedule: def})
	if err != nil {
		return nil, err
	}
	return scheduleFromProto(resp.GetStatus())
}

// GetSchedule returns one schedule; an unknown id is NOT_FOUND.
func (c *Client) GetSchedule(ctx context.Context, scheduleID string) (*Schedule, error) {
	resp, err := c.svc.GetSchedule(ctx, &pb.GetScheduleRequest{ScheduleId: scheduleID})
	if err != nil {
		return nil, err
	}
	return scheduleFromProto(resp.GetStatus())
}

// ListSchedules returns every schedule (of workflowName, when not empty),
// by id; it reads every page.
func (c *Client) ListSchedules(ctx context.Context, workflowName string) ([]*Schedule, error) {
	var out []*Schedule
	token := ""
	for {
		resp, err := c.svc.ListSchedules(ctx, &pb.ListSchedulesRequest{WorkflowName: workflowName, PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, err
		}
		for _, s := range resp.GetSchedules() {
			decoded, err := scheduleFromProto(s)
			if err != nil {
				return nil, err
			}
			out = append(out, decoded)
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out, nil
		}
	}
}

// PauseSchedule stops a schedule firing until it is unpaused; a non-empty
// note replaces its note. An unknown id is NOT_FOUND.
func (c *Client) PauseSchedule(ctx context.Context, scheduleID, note string) (*Schedule, error) {
	resp, err := c.svc.PauseSchedule(ctx, &pb.PauseScheduleRequest{ScheduleId: scheduleID, Note: note})
	if err != nil {
		return nil, err
	}
	return scheduleFromProto(resp.GetStatus())
}

// UnpauseSchedule makes a schedule fire again, from the next fire time after
// now (the paused span is not caught up); a non-empty note replaces its note.
func (c *Client) UnpauseSchedule(ctx context.Context, scheduleID, note string) (*Schedule, error) {
	resp, err := c.svc.UnpauseSchedule(ctx, &pb.UnpauseScheduleRequest{ScheduleId: scheduleID, Note: note})
	if err != nil {
		return nil, err
	}
	return scheduleFromProto(resp.GetStatus())
}

// DeleteSchedule deletes a schedule; the runs it started go on. An unknown
// id is NOT_FOUND.
func (c *Client) DeleteSchedule(ctx context.Context, scheduleID string) error {
	_, err := c.svc.DeleteSchedule(ctx, &pb.DeleteScheduleRequest{ScheduleId: scheduleID})
	return err
}
