package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
)

// The definition file: the JSON form `multiagents register` reads (YAML there
// too), described by docs/definition.schema.json. Durations are seconds.
type definitionFile struct {
	Name        string     `json:"name"`
	Version     *int32     `json:"version"`
	Description string     `json:"description"`
	Steps       []stepFile `json:"steps"`
}

type stepFile struct {
	Name              string     `json:"name"`
	Worker            string     `json:"worker"`
	Compensation      string     `json:"compensation"`
	Retry             *retryFile `json:"retry"`
	CompensationRetry *retryFile `json:"compensation_retry"`
	Timeout           *float64   `json:"timeout"`
	HeartbeatTimeout  *float64   `json:"heartbeat_timeout"`
	Workflow          string     `json:"workflow"`
	WorkflowVersion   int32      `json:"workflow_version"`
}

type retryFile struct {
	MaxAttempts            *int32   `json:"max_attempts"`
	InitialInterval        *float64 `json:"initial_interval"`
	BackoffCoefficient     *float64 `json:"backoff_coefficient"`
	MaximumInterval        *float64 `json:"maximum_interval"`
	NonRetryableErrorTypes []string `json:"non_retryable_error_types"`
}

// ParseDefinition reads a workflow definition in the definition-file form
// (JSON): {"name", "version", "description", "steps": [{"name", "worker" or
// "workflow", "compensation", "retry": {"max_attempts", "initial_interval",
// ...}, "timeout", ...}]}, durations in seconds. Unknown keys are an error.
// A retry policy's unset fields take the Python SDK's defaults (3 attempts,
// 1 s, coefficient 2), so one file registers the same definition from every
// language.
func ParseDefinition(data []byte) (*pb.WorkflowDefinition, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f definitionFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("invalid workflow definition: %w", err)
	}
	if f.Name == "" {
		return nil, fmt.Errorf("invalid workflow definition: name is required")
	}
	if len(f.Steps) == 0 {
		return nil, fmt.Errorf("invalid workflow definition: workflow %q has no steps", f.Name)
	}
	def := &pb.WorkflowDefinition{Name: f.Name, Version: 1, Description: f.Description}
	if f.Version != nil {
		def.Version = *f.Version
	}
	for i, s := range f.Steps {
		if s.Name == "" || (s.Worker == "") == (s.Workflow == "") {
			return nil, fmt.Errorf("invalid workflow definition: steps[%d] needs a name and one of worker or workflow", i)
		}
		step := &pb.StepDefinition{
			Name: s.Name, Worker: s.Worker, Compensation: s.Compensation,
			Workflow: s.Workflow, WorkflowVersion: s.WorkflowVersion,
		}
		step.RetryPolicy = retryPolicy(s.Retry)
		step.CompensationRetryPolicy = retryPolicy(s.CompensationRetry)
		step.Timeout = seconds(s.Timeout)
		step.HeartbeatTimeout = seconds(s.HeartbeatTimeout)
		def.Steps = append(def.Steps, step)
	}
	return def, nil
}

func retryPolicy(r *retryFile) *pb.RetryPolicy {
	if r == nil {
		return nil
	}
	p := &pb.RetryPolicy{MaximumAttempts: 3, InitialInterval: seconds(ptr(1.0)), BackoffCoefficient: 2,
		MaximumInterval: seconds(r.MaximumInterval), NonRetryableErrorTypes: r.NonRetryableErrorTypes}
	if r.MaxAttempts != nil {
		p.MaximumAttempts = *r.MaxAttempts
	}
	if r.InitialInterval != nil {
		p.InitialInterval = seconds(r.InitialInterval)
	}
	if r.BackoffCoefficient != nil {
		p.BackoffCoefficient = *r.BackoffCoefficient
	}
	return p
}

func seconds(s *float64) *durationpb.Duration {
	if s == nil {
		return nil
	}
	return durationpb.New(time.Duration(math.Round(*s*1000)) * time.Millisecond)
}

func ptr[T any](v T) *T { return &v }
