package client

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
)

// A workflow definition is a tree of nodes (docs/workflows.md): each node is
// a *pb.StepDefinition made by one of Step, SubWorkflow, Parallel, Map,
// Condition, Switch, WaitForSignal and Sleep, and a WorkflowBuilder puts the
// top ones in order:
//
//	def, err := client.NewWorkflow("review").
//		Add(client.Parallel("ask",
//			client.Branch("legal", client.Step("legal_review", "legal_agent")),
//			client.Branch("critic", client.Step("critic_review", "critic_agent")))).
//		Add(client.Condition("route", []*pb.ConditionCase{
//			client.When("context.ask.critic.score >= 0.8", client.Step("publish", "publisher")),
//		}, client.Step("revise", "reviser"))).
//		Add(client.WaitForSignal("approval", "approval", client.Approval(), client.SignalTimeout(time.Hour))).
//		Build()
//
// The nodes convert to the same protobuf as the Python WorkflowBuilder and
// the Node WorkflowBuilder give, defaults included.

// RetryPolicy is a step's retry policy. Zero fields take the defaults every
// SDK writes (and the server assumes): 3 attempts, 1 s, coefficient 2, no
// maximum interval.
type RetryPolicy struct {
	MaxAttempts            int
	InitialInterval        time.Duration
	BackoffCoefficient     float64
	MaximumInterval        time.Duration
	NonRetryableErrorTypes []string
}

func (r RetryPolicy) proto() *pb.RetryPolicy {
	p := &pb.RetryPolicy{MaximumAttempts: 3, InitialInterval: durationpb.New(time.Second), BackoffCoefficient: 2,
		NonRetryableErrorTypes: r.NonRetryableErrorTypes}
	if r.MaxAttempts != 0 {
		p.MaximumAttempts = int32(r.MaxAttempts)
	}
	if r.InitialInterval != 0 {
		p.InitialInterval = millis(r.InitialInterval)
	}
	if r.BackoffCoefficient != 0 {
		p.BackoffCoefficient = r.BackoffCoefficient
	}
	if r.MaximumInterval != 0 {
		p.MaximumInterval = millis(r.MaximumInterval)
	}
	return p
}

// StepOption sets an optional part of a Step or SubWorkflow.
type StepOption func(*pb.StepDefinition)

// Compensation names the worker that undoes the step when a later step fails.
func Compensation(worker string) StepOption {
	return func(s *pb.StepDefinition) { s.Compensation = worker }
}

// Retry sets the step's retry policy.
func Retry(p RetryPolicy) StepOption {
	return func(s *pb.StepDefinition) { s.RetryPolicy = p.proto() }
}

// CompensationRetry sets the compensation's retry policy (default: the step's).
func CompensationRetry(p RetryPolicy) StepOption {
	return func(s *pb.StepDefinition) { s.CompensationRetryPolicy = p.proto() }
}

// Timeout limits one attempt, from dispatch to result.
func Timeout(d time.Duration) StepOption {
	return func(s *pb.StepDefinition) { s.Timeout = millis(d) }
}

// HeartbeatTimeout fails an attempt whose worker sends no heartbeat for d.
func HeartbeatTimeout(d time.Duration) StepOption {
	return func(s *pb.StepDefinition) { s.HeartbeatTimeout = millis(d) }
}

// WorkflowVersion pins a SubWorkflow's version (default 0: the latest when
// the step starts).
func WorkflowVersion(v int) StepOption {
	return func(s *pb.StepDefinition) { s.WorkflowVersion = int32(v) }
}

// Estimate is what one attempt of a step is expected to use.
type Estimate struct {
	InputTokens  int64
	OutputTokens int64
	// CostNanoUSD is the cost in nano-US-dollars (1 USD = 1,000,000,000).
	CostNanoUSD int64
}

// UsageEstimate sets what one attempt is expected to use: reserved against
// the execution's budget while it runs (its reported usage replaces it),
// and its tokens (input + output) against the token limits of the step's
// RateLimits.
func UsageEstimate(e Estimate) StepOption {
	return func(s *pb.StepDefinition) {
		s.UsageEstimate = &pb.Usage{InputTokens: e.InputTokens, OutputTokens: e.OutputTokens, CostNanoUsd: e.CostNanoUSD}
	}
}

// LimitKey names a shared limit (Client.PutRateLimit) by its literal key,
// e.g. "provider:openai".
func LimitKey(key string) *pb.RateLimitKey {
	return &pb.RateLimitKey{Key: key}
}

// LimitExpression names a shared limit by a CEL expression over the
// context that gives its key, e.g. `"tenant:" + context.customer_id`,
// evaluated when an attempt is dispatched.
func LimitExpression(expr string) *pb.RateLimitKey {
	return &pb.RateLimitKey{KeyExpression: expr}
}

// RateLimits makes the step's attempts take part in shared limits (at most
// 8 keys, LimitKey or LimitExpression): an attempt starts only when every
// key allows it, and waits in its queue until then.
func RateLimits(keys ...*pb.RateLimitKey) StepOption {
	return func(s *pb.StepDefinition) { s.RateLimits = append(s.RateLimits, keys...) }
}

// Step is a step that the named worker runs.
func Step(name, worker string, opts ...StepOption) *pb.StepDefinition {
	s := &pb.StepDefinition{Name: name, Worker: worker}
	for _, o := range opts {
		o(s)
	}
	return s
}

// SubWorkflow is a step that runs another workflow; its final context is the
// step's result.
func SubWorkflow(name, workflow string, opts ...StepOption) *pb.StepDefinition {
	s := &pb.StepDefinition{Name: name, Workflow: workflow}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Branch is a named sequence of nodes of a parallel group; its result lands
// under its name.
func Branch(name string, steps ...*pb.StepDefinition) *pb.Branch {
	return &pb.Branch{Name: name, Steps: steps}
}

// Parallel runs its branches at once, then joins them: the context gets
// {name: {branch: its results}}. The first branch that fails cancels the
// others (fail fast); see ParallelWaitAll.
func Parallel(name string, branches ...*pb.Branch) *pb.StepDefinition {
	return parallel(name, pb.ParallelFailurePolicy_PARALLEL_FAILURE_POLICY_FAIL_FAST, branches)
}

// ParallelWaitAll is Parallel that lets the other branches finish when one
// fails, then fails.
func ParallelWaitAll(name string, branches ...*pb.Branch) *pb.StepDefinition {
	return parallel(name, pb.ParallelFailurePolicy_PARALLEL_FAILURE_POLICY_WAIT_ALL, branches)
}

func parallel(name string, policy pb.ParallelFailurePolicy, branches []*pb.Branch) *pb.StepDefinition {
	return &pb.StepDefinition{Name: name, Parallel: &pb.ParallelGroup{Branches: branches, FailurePolicy: policy}}
}

// Map runs body (a Step or SubWorkflow) once per item of the list that the
// CEL expression items gives ("context.documents"), at most maxConcurrency
// at once (0: 10); each item sees context.item and context.index, and the
// context gets {name: [results in item order]}.
func Map(name, items string, body *pb.StepDefinition, maxConcurrency int) *pb.StepDefinition {
	if maxConcurrency == 0 {
		maxConcurrency = 10
	}
	return &pb.StepDefinition{Name: name, Map: &pb.MapStep{Items: items, Step: body, MaxConcurrency: int32(maxConcurrency)}}
}

// When is an if / else case: its steps run when the CEL expression holds
// ("context.review.score >= 0.8").
func When(expr string, steps ...*pb.StepDefinition) *pb.ConditionCase {
	return &pb.ConditionCase{When: expr, Steps: steps}
}

// Equals is a Switch case, taken when the switch expression equals value: a
// JSON value (nil, bool, a number, string, []any, map[string]any). It panics
// on anything else, like regexp.MustCompile on a bad literal.
func Equals(value any, steps ...*pb.StepDefinition) *pb.ConditionCase {
	v, err := structpb.NewValue(value)
	if err != nil {
		panic(fmt.Sprintf("client.Equals: %v is not a JSON value: %v", value, err))
	}
	return &pb.ConditionCase{Equals: v, Steps: steps}
}

// Condition runs the steps of the first When case that holds, else otherwise.
func Condition(name string, cases []*pb.ConditionCase, otherwise ...*pb.StepDefinition) *pb.StepDefinition {
	return &pb.StepDefinition{Name: name, Condition: &pb.Condition{Cases: cases, Otherwise: otherwise}}
}

// Switch runs the steps of the first Equals case whose value the CEL
// expression on gives ("context.kind"), else otherwise.
func Switch(name, on string, cases []*pb.ConditionCase, otherwise ...*pb.StepDefinition) *pb.StepDefinition {
	return &pb.StepDefinition{Name: name, Condition: &pb.Condition{Switch: on, Cases: cases, Otherwise: otherwise}}
}

// WaitOption sets an optional part of a WaitForSignal.
type WaitOption func(*pb.WaitForSignal)

// SignalTimeout ends the wait after d: it fails (type SignalTimeout, so the
// workflow compensates) unless OnTimeout is given.
func SignalTimeout(d time.Duration) WaitOption {
	return func(w *pb.WaitForSignal) { w.Timeout = millis(d) }
}

// OnTimeout runs steps (possibly none) when the wait times out, and the
// workflow goes on.
func OnTimeout(steps ...*pb.StepDefinition) WaitOption {
	return func(w *pb.WaitForSignal) { w.ContinueOnTimeout, w.OnTimeout = true, steps }
}

// Approval makes the wait an approval: the payload holds a boolean
// "approved", and false fails the wait (type Rejected).
func Approval() WaitOption {
	return func(w *pb.WaitForSignal) { w.Approval = true }
}

// WaitForSignal waits for the named signal (SignalWorkflow); its payload
// lands under name.
func WaitForSignal(name, signal string, opts ...WaitOption) *pb.StepDefinition {
	w := &pb.WaitForSignal{Signal: signal}
	for _, o := range opts {
		o(w)
	}
	return &pb.StepDefinition{Name: name, WaitForSignal: w}
}

// Sleep is a durable timer of d.
func Sleep(name string, d time.Duration) *pb.StepDefinition {
	return &pb.StepDefinition{Name: name, Sleep: &pb.Sleep{Duration: millis(d)}}
}

// WorkflowBuilder builds a WorkflowDefinition from its top nodes.
type WorkflowBuilder struct {
	def *pb.WorkflowDefinition
}

// NewWorkflow starts a definition of version 1.
func NewWorkflow(name string) *WorkflowBuilder {
	return &WorkflowBuilder{def: &pb.WorkflowDefinition{Name: name, Version: 1}}
}

// Version sets the definition's version.
func (w *WorkflowBuilder) Version(v int) *WorkflowBuilder { w.def.Version = int32(v); return w }

// Description sets the definition's description.
func (w *WorkflowBuilder) Description(d string) *WorkflowBuilder { w.def.Description = d; return w }

// Add appends nodes, in order.
func (w *WorkflowBuilder) Add(nodes ...*pb.StepDefinition) *WorkflowBuilder {
	w.def.Steps = append(w.def.Steps, nodes...)
	return w
}

// Build returns the definition, or an error when it has no steps or a name
// is used twice anywhere in the tree (the server checks the rest).
func (w *WorkflowBuilder) Build() (*pb.WorkflowDefinition, error) {
	if len(w.def.Steps) == 0 {
		return nil, fmt.Errorf("workflow %q has no steps", w.def.GetName())
	}
	seen := map[string]bool{}
	for _, name := range NodeNames(w.def.Steps) {
		if seen[name] {
			return nil, fmt.Errorf("workflow %q: duplicate step name %q", w.def.GetName(), name)
		}
		seen[name] = true
	}
	return w.def, nil
}

// NodeNames returns every node name of a tree, depth first (map bodies included).
func NodeNames(nodes []*pb.StepDefinition) []string {
	var names []string
	for _, n := range nodes {
		names = append(names, n.GetName())
		for _, b := range n.GetParallel().GetBranches() {
			names = append(names, NodeNames(b.GetSteps())...)
		}
		if body := n.GetMap().GetStep(); body != nil {
			names = append(names, body.GetName())
		}
		for _, c := range n.GetCondition().GetCases() {
			names = append(names, NodeNames(c.GetSteps())...)
		}
		names = append(names, NodeNames(n.GetCondition().GetOtherwise())...)
		names = append(names, NodeNames(n.GetWaitForSignal().GetOnTimeout())...)
	}
	return names
}

// millis is d as a Duration, rounded to the millisecond as every SDK does.
func millis(d time.Duration) *durationpb.Duration {
	return durationpb.New(d.Round(time.Millisecond))
}
