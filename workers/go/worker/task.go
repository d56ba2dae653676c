package worker

import (
	"encoding/json"
	"time"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
)

// Kind says whether a command runs a step or undoes (compensates) it.
type Kind int

const (
	// KindExecute runs the step.
	KindExecute Kind = Kind(pb.CommandKind_COMMAND_KIND_EXECUTE)
	// KindCompensate undoes a completed step.
	KindCompensate Kind = Kind(pb.CommandKind_COMMAND_KIND_COMPENSATE)
)

// String returns "execute", "compensate" or "unspecified".
func (k Kind) String() string {
	switch k {
	case KindExecute:
		return "execute"
	case KindCompensate:
		return "compensate"
	default:
		return "unspecified"
	}
}

// Task is one attempt of a step (or of its compensation) handed to a Handler.
type Task struct {
	// CommandID is the attempt-scoped id the server fences answers with.
	CommandID string
	// Kind is KindExecute or KindCompensate.
	Kind Kind
	// WorkerName is the registered name the command is for.
	WorkerName string
	// TransactionID identifies the workflow execution.
	TransactionID string
	// CorrelationID is the execution's correlation id.
	CorrelationID string
	// Step is the step's name in the workflow definition.
	Step string
	// Attempt is the attempt number, from 1.
	Attempt int
	// Deadline is when the attempt times out; zero when there is none. The
	// handler's context is cancelled at this instant.
	Deadline time.Time
	// HeartbeatTimeout, when non-zero, is how often the handler must call
	// Heartbeat or the server fails the attempt.
	HeartbeatTimeout time.Duration
	// Context is the workflow context (a JSON object). JSON numbers are
	// float64; use Bind for typed decoding with full integer precision.
	Context map[string]any
	// RawContext is the context's JSON text.
	RawContext json.RawMessage
	// Metadata is propagated metadata such as a W3C traceparent.
	Metadata map[string]string

	heartbeat func(details map[string]any)
	output    *taskOutput
}

// Heartbeat tells the server right away that the task is alive, with
// optional progress details (a JSON object, may be nil). It never blocks;
// if heartbeats are produced faster than the session sends them, only the
// latest details are sent. It does nothing on a Task the Worker did not make.
func (t *Task) Heartbeat(details map[string]any) {
	if t.heartbeat != nil {
		t.heartbeat(details)
	}
}

// Bind decodes the context into v (a pointer to a struct or map), as
// json.Unmarshal does.
func (t *Task) Bind(v any) error {
	return json.Unmarshal(t.RawContext, v)
}
