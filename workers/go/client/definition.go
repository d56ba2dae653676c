package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
)

// The definition file: the JSON form `multiagents register` reads (YAML there
// too), described by docs/definition.schema.json. Durations are seconds.
type definitionFile struct {
	Name        string            `json:"name"`
	Version     *int32            `json:"version"`
	Description string            `json:"description"`
	Steps       []json.RawMessage `json:"steps"`
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
	UsageEstimate     *struct {
		InputTokens  int64   `json:"input_tokens"`
		OutputTokens int64   `json:"output_tokens"`
		CostUSD      float64 `json:"cost_usd"`
	} `json:"usage_estimate"`
	RateLimits []json.RawMessage `json:"rate_limits"`
}

type retryFile struct {
	MaxAttempts            *int32   `json:"max_attempts"`
	InitialInterval        *float64 `json:"initial_interval"`
	BackoffCoefficient     *float64 `json:"backoff_coefficient"`
	MaximumInterval        *float64 `json:"maximum_interval"`
	NonRetryableErrorTypes []string `json:"non_retryable_error_types"`
}

type parallelFile struct {
	FailFast *bool `json:"fail_fast"`
	Branches []struct {
		Name  string            `json:"name"`
		Steps []json.RawMessage `json:"steps"`
	} `json:"branches"`
}

type mapFile struct {
	Items          string          `json:"items"`
	Step           json.RawMessage `json:"step"`
	MaxConcurrency *int32          `json:"max_concurrency"`
}

type conditionFile struct {
	Switch string `json:"switch"`
	Cases  []struct {
		When   string            `json:"when"`
		Equals json.RawMessage   `json:"equals"`
		Steps  []json.RawMessage `json:"steps"`
	} `json:"cases"`
	Otherwise []json.RawMessage `json:"otherwise"`
}

type waitFile struct {
	Signal    string            `json:"signal"`
	Timeout   *float64          `json:"timeout"`
	OnTimeout []json.RawMessage `json:"on_timeout"`
	Approval  bool              `json:"approval"`
}

// nodeKinds are the keys that make a node something else than a worker or
// workflow step; a node has at most one.
var nodeKinds = []string{"parallel", "map", "condition", "wait_for_signal", "sleep"}

// ParseDefinition reads a workflow definition in the definition-file form
// (JSON, docs/definition.schema.json): {"name", "version", "description",
// "steps": [...]}, a step being a worker step {"name", "worker",
// "compensation", "retry": {"max_attempts", "initial_interval", ...},
// "timeout", "usage_estimate": {"input_tokens", "output_tokens",
// "cost_usd"}, "rate_limits": ["key" or {"key_expression"}], ...}, a
// sub-workflow step {"name", "workflow", "workflow_version", ...}, or one
// of {"name", "parallel": {"branches", "fail_fast"}}, {"name", "map":
// {"items", "step", "max_concurrency"}},
// {"name", "condition": {"cases": [{"when" or "equals", "steps"}],
// "otherwise", "switch"}}, {"name", "wait_for_signal": {"signal", "timeout",
// "on_timeout", "approval"}}, {"name", "sleep": seconds}. Durations are
// seconds. Unknown keys and what the schema refuses are errors naming the
// place ("steps[1].parallel.branches[0].steps"). Unset values take the
// defaults the Python and Node SDKs write (a retry policy's 3 attempts, 1 s,
// coefficient 2; fail fast; 10 items at once), so one file registers the
// same definition from every language. The server checks the rest
// (expressions, unique names).
func ParseDefinition(data []byte) (*pb.WorkflowDefinition, error) {
	var f definitionFile
	if err := strict(data, &f); err != nil {
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
		if *f.Version < 1 {
			return nil, fmt.Errorf("invalid workflow definition: version: must be >= 1, got %d", *f.Version)
		}
		def.Version = *f.Version
	}
	steps, err := nodes(f.Steps, "steps")
	if err != nil {
		return nil, fmt.Errorf("invalid workflow definition: %w", err)
	}
	def.Steps = steps
	return def, nil
}

// strict decodes one JSON value, refusing unknown keys and trailing data.
func strict(data []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("unexpected data after the definition")
	}
	return nil
}

func nodes(rows []json.RawMessage, where string) ([]*pb.StepDefinition, error) {
	out := make([]*pb.StepDefinition, 0, len(rows))
	for i, row := range rows {
		n, err := node(row, fmt.Sprintf("%s[%d]", where, i))
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func node(data json.RawMessage, where string) (*pb.StepDefinition, error) {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err != nil || keys == nil {
		return nil, fmt.Errorf("%s: expected an object", where)
	}
	var kinds []string
	for _, k := range nodeKinds {
		if _, ok := keys[k]; ok {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		return step(data, where)
	}
	if len(kinds) > 1 {
		return nil, fmt.Errorf("%s: set one of %s, not %s", where, strings.Join(nodeKinds, ", "), strings.Join(kinds, " and "))
	}
	kind := kinds[0]
	for k := range keys {
		if k != "name" && k != kind {
			return nil, fmt.Errorf("%s: unknown key %q in a %s node", where, k, kind)
		}
	}
	var name string
	if err := json.Unmarshal(keys["name"], &name); err != nil {
		return nil, fmt.Errorf("%s.name: required, a string", where)
	}
	if err := checkName(name, where+".name"); err != nil {
		return nil, err
	}
	body, at := keys[kind], where+"."+kind
	s := &pb.StepDefinition{Name: name}
	var err error
	switch kind {
	case "parallel":
		s.Parallel, err = parallelNode(body, at)
	case "map":
		s.Map, err = mapNode(body, at)
	case "condition":
		s.Condition, err = conditionNode(body, at)
	case "wait_for_signal":
		s.WaitForSignal, err = waitNode(body, at)
	case "sleep":
		var secs float64
		if json.Unmarshal(body, &secs) != nil || secs <= 0 {
			return nil, fmt.Errorf("%s: expected seconds, a number > 0", at)
		}
		s.Sleep = &pb.Sleep{Duration: seconds(&secs)}
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func checkName(name, where string) error {
	if name == "" || strings.Contains(name, "/") {
		return fmt.Errorf("%s: required, without \"/\" (got %q)", where, name)
	}
	return nil
}

func step(data json.RawMessage, where string) (*pb.StepDefinition, error) {
	var s stepFile
	if err := strict(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := checkName(s.Name, where+".name"); err != nil {
		return nil, err
	}
	if (s.Worker == "") == (s.Workflow == "") {
		return nil, fmt.Errorf("%s: needs a name and one of worker or workflow", where)
	}
	if s.WorkflowVersion < 0 {
		return nil, fmt.Errorf("%s.workflow_version: must be >= 0", where)
	}
	for key, v := range map[string]*float64{"timeout": s.Timeout, "heartbeat_timeout": s.HeartbeatTimeout} {
		if v != nil && *v <= 0 {
			return nil, fmt.Errorf("%s.%s: must be > 0 seconds", where, key)
		}
	}
	out := &pb.StepDefinition{
		Name: s.Name, Worker: s.Worker, Compensation: s.Compensation,
		Workflow: s.Workflow, WorkflowVersion: s.WorkflowVersion,
		Timeout: seconds(s.Timeout), HeartbeatTimeout: seconds(s.HeartbeatTimeout),
	}
	var err error
	if out.RetryPolicy, err = retryPolicy(s.Retry, where+".retry"); err != nil {
		return nil, err
	}
	if out.CompensationRetryPolicy, err = retryPolicy(s.CompensationRetry, where+".compensation_retry"); err != nil {
		return nil, err
	}
	if e := s.UsageEstimate; e != nil {
		for key, v := range map[string]float64{"input_tokens": float64(e.InputTokens), "output_tokens": float64(e.OutputTokens), "cost_usd": e.CostUSD} {
			if v < 0 {
				return nil, fmt.Errorf("%s.usage_estimate.%s: must be >= 0", where, key)
			}
		}
		out.UsageEstimate = &pb.Usage{InputTokens: e.InputTokens, OutputTokens: e.OutputTokens,
			CostNanoUsd: int64(math.Round(e.CostUSD * 1e9))}
	}
	for i, row := range s.RateLimits {
		key, err := rateLimitKey(row, fmt.Sprintf("%s.rate_limits[%d]", where, i))
		if err != nil {
			return nil, err
		}
		out.RateLimits = append(out.RateLimits, key)
	}
	return out, nil
}

// rateLimitKey reads a key ("provider:openai") or {"key_expression": CEL}.
func rateLimitKey(row json.RawMessage, where string) (*pb.RateLimitKey, error) {
	var key string
	if json.Unmarshal(row, &key) == nil {
		return LimitKey(key), nil
	}
	var expr struct {
		KeyExpression *string `json:"key_expression"`
	}
	if err := strict(row, &expr); err != nil || expr.KeyExpression == nil {
		return nil, fmt.Errorf("%s: expected a key or {\"key_expression\": CEL}", where)
	}
	return LimitExpression(*expr.KeyExpression), nil
}

func parallelNode(body json.RawMessage, at string) (*pb.ParallelGroup, error) {
	var p parallelFile
	if err := strict(body, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	if len(p.Branches) == 0 {
		return nil, fmt.Errorf("%s.branches: at least one branch", at)
	}
	group := &pb.ParallelGroup{FailurePolicy: pb.ParallelFailurePolicy_PARALLEL_FAILURE_POLICY_FAIL_FAST}
	if p.FailFast != nil && !*p.FailFast {
		group.FailurePolicy = pb.ParallelFailurePolicy_PARALLEL_FAILURE_POLICY_WAIT_ALL
	}
	for i, b := range p.Branches {
		where := fmt.Sprintf("%s.branches[%d]", at, i)
		if err := checkName(b.Name, where+".name"); err != nil {
			return nil, err
		}
		if len(b.Steps) == 0 {
			return nil, fmt.Errorf("%s.steps: at least one step", where)
		}
		steps, err := nodes(b.Steps, where+".steps")
		if err != nil {
			return nil, err
		}
		group.Branches = append(group.Branches, &pb.Branch{Name: b.Name, Steps: steps})
	}
	return group, nil
}

func mapNode(body json.RawMessage, at string) (*pb.MapStep, error) {
	var m mapFile
	if err := strict(body, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	if m.Items == "" {
		return nil, fmt.Errorf("%s.items: required, a CEL expression giving a list", at)
	}
	if m.Step == nil {
		return nil, fmt.Errorf("%s.step: required, a worker or workflow step", at)
	}
	itemStep, err := node(m.Step, at+".step")
	if err != nil {
		return nil, err
	}
	if itemStep.GetWorker() == "" && itemStep.GetWorkflow() == "" {
		return nil, fmt.Errorf("%s.step: must be a worker or workflow step", at)
	}
	out := &pb.MapStep{Items: m.Items, Step: itemStep, MaxConcurrency: 10}
	if m.MaxConcurrency != nil {
		if *m.MaxConcurrency < 1 || *m.MaxConcurrency > 1000 {
			return nil, fmt.Errorf("%s.max_concurrency: must be between 1 and 1000, got %d", at, *m.MaxConcurrency)
		}
		out.MaxConcurrency = *m.MaxConcurrency
	}
	return out, nil
}

func conditionNode(body json.RawMessage, at string) (*pb.Condition, error) {
	var c conditionFile
	if err := strict(body, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	if len(c.Cases) == 0 {
		return nil, fmt.Errorf("%s.cases: at least one case", at)
	}
	out := &pb.Condition{Switch: c.Switch}
	for i, k := range c.Cases {
		where := fmt.Sprintf("%s.cases[%d]", at, i)
		if k.Steps == nil {
			return nil, fmt.Errorf("%s.steps: required (may be empty)", where)
		}
		steps, err := nodes(k.Steps, where+".steps")
		if err != nil {
			return nil, err
		}
		kase := &pb.ConditionCase{When: k.When, Steps: steps}
		if k.Equals != nil {
			var v any
			if err := json.Unmarshal(k.Equals, &v); err != nil {
				return nil, fmt.Errorf("%s.equals: %w", where, err)
			}
			if kase.Equals, err = structpb.NewValue(v); err != nil {
				return nil, fmt.Errorf("%s.equals: %w", where, err)
			}
		}
		out.Cases = append(out.Cases, kase)
	}
	otherwise, err := nodes(c.Otherwise, at+".otherwise")
	if err != nil {
		return nil, err
	}
	out.Otherwise = otherwise
	return out, nil
}

func waitNode(body json.RawMessage, at string) (*pb.WaitForSignal, error) {
	var w waitFile
	if err := strict(body, &w); err != nil {
		return nil, fmt.Errorf("%s: %w", at, err)
	}
	if w.Signal == "" {
		return nil, fmt.Errorf("%s.signal: required", at)
	}
	if w.Timeout != nil && *w.Timeout <= 0 {
		return nil, fmt.Errorf("%s.timeout: must be > 0 seconds", at)
	}
	out := &pb.WaitForSignal{Signal: w.Signal, Timeout: seconds(w.Timeout), Approval: w.Approval}
	if w.OnTimeout != nil {
		steps, err := nodes(w.OnTimeout, at+".on_timeout")
		if err != nil {
			return nil, err
		}
		out.ContinueOnTimeout, out.OnTimeout = true, steps
	}
	return out, nil
}

func retryPolicy(r *retryFile, where string) (*pb.RetryPolicy, error) {
	if r == nil {
		return nil, nil
	}
	switch {
	case r.MaxAttempts != nil && *r.MaxAttempts < 1:
		return nil, fmt.Errorf("%s.max_attempts: must be >= 1", where)
	case r.InitialInterval != nil && *r.InitialInterval < 0:
		return nil, fmt.Errorf("%s.initial_interval: must be >= 0 seconds", where)
	case r.BackoffCoefficient != nil && *r.BackoffCoefficient < 1:
		return nil, fmt.Errorf("%s.backoff_coefficient: must be >= 1", where)
	case r.MaximumInterval != nil && *r.MaximumInterval < 0:
		return nil, fmt.Errorf("%s.maximum_interval: must be >= 0 seconds", where)
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
	return p, nil
}

func seconds(s *float64) *durationpb.Duration {
	if s == nil {
		return nil
	}
	return durationpb.New(time.Duration(math.Round(*s*1000)) * time.Millisecond)
}

func ptr[T any](v T) *T { return &v }
