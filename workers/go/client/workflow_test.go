package client_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/multiagents/multiagents/workers/go/client"
	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
)

const fixtures = "../../../tests/fixtures/"

// fixtureProto is tests/fixtures/model_v2_definition.proto.json: the
// RegisterWorkflowRequest that the Python, Node and Go builders must give.
func fixtureProto(t *testing.T) *pb.WorkflowDefinition {
	t.Helper()
	data, err := os.ReadFile(fixtures + "model_v2_definition.proto.json")
	if err != nil {
		t.Fatal(err)
	}
	var req pb.RegisterWorkflowRequest
	if err := protojson.Unmarshal(data, &req); err != nil {
		t.Fatal(err)
	}
	return req.GetDefinition()
}

// everyKind is tests/fixtures/model_v2_definition.json, built with the Go builder.
func everyKind() (*pb.WorkflowDefinition, error) {
	return client.NewWorkflow("model_v2_every_kind").
		Version(2).
		Description("Every node kind of workflow model v2; the Python, Node and Go builders must give model_v2_definition.proto.json").
		Add(client.Step("book", "book_slot",
			client.Compensation("release_slot"),
			client.Timeout(30*time.Second),
			client.HeartbeatTimeout(2500*time.Millisecond),
			client.Retry(client.RetryPolicy{MaxAttempts: 5, InitialInterval: 250 * time.Millisecond, BackoffCoefficient: 1.5,
				MaximumInterval: 10 * time.Second, NonRetryableErrorTypes: []string{"ValueError", "Rejected"}}),
			client.CompensationRetry(client.RetryPolicy{MaxAttempts: 2}),
			client.UsageEstimate(client.Estimate{InputTokens: 1500, OutputTokens: 500, CostNanoUSD: 2_000_000}),
			client.RateLimits(client.LimitKey("provider:openai"), client.LimitExpression(`"tenant:" + context.customer_id`)))).
		Add(client.ParallelWaitAll("ask",
			client.Branch("research", client.Step("research_review", "research_agent")),
			client.Branch("legal",
				client.Step("legal_review", "legal_agent", client.Timeout(time.Minute)),
				client.SubWorkflow("legal_sign_off", "sign_off", client.WorkflowVersion(3), client.Compensation("unsign"))),
			client.Branch("critic",
				client.Step("critic_review", "critic_agent"),
				client.Condition("critic_gate", []*pb.ConditionCase{
					client.When("has(context.critic_review_done)", client.Sleep("critic_rest", 250*time.Millisecond)),
				})))).
		Add(client.Parallel("fan_in", client.Branch("only", client.Step("collect", "collector")))).
		Add(client.Map("each", "context.documents",
			client.Step("summarize_one", "summarizer", client.Retry(client.RetryPolicy{MaxAttempts: 2})), 20)).
		Add(client.Map("each_child", "context.orders", client.SubWorkflow("process_order", "order"), 0)).
		Add(client.Condition("route", []*pb.ConditionCase{
			client.When("context.ask.legal.score >= 0.8", client.Step("publish", "publisher")),
			client.When("context.ask.legal.score >= 0.5"),
		}, client.Step("revise", "reviser", client.Compensation("unrevise")))).
		Add(client.Switch("by_kind", "context.kind", []*pb.ConditionCase{
			client.Equals("invoice", client.Step("bill", "biller")),
			client.Equals(2, client.SubWorkflow("pay_back", "refund")),
			client.Equals(true),
			client.Equals([]any{"a", 1.5}, client.Step("listed", "lister")),
			client.Equals(map[string]any{"tier": "gold", "n": 3}, client.Step("gold", "goldsmith")),
		})).
		Add(client.WaitForSignal("approval", "approval", client.Approval(), client.SignalTimeout(time.Hour))).
		Add(client.WaitForSignal("nudge", "nudge", client.SignalTimeout(1500*time.Millisecond),
			client.OnTimeout(client.Step("remind", "reminder")))).
		Add(client.WaitForSignal("maybe_go", "go", client.SignalTimeout(time.Minute), client.OnTimeout())).
		Add(client.WaitForSignal("done", "done")).
		Add(client.Sleep("cool_down", 10*time.Minute)).
		Build()
}

func TestTheBuilderBuildsTheSharedFixtureDefinition(t *testing.T) {
	want := fixtureProto(t)
	got, err := everyKind()
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("built:\n%v\nfixture:\n%v", protojson.Format(got), protojson.Format(want))
	}
}

func TestParseDefinitionReadsTheSharedFixtureFileAsItsProtoForm(t *testing.T) {
	data, err := os.ReadFile(fixtures + "model_v2_definition.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := client.ParseDefinition(data)
	if err != nil {
		t.Fatal(err)
	}
	if want := fixtureProto(t); !proto.Equal(got, want) {
		t.Fatalf("parsed:\n%v\nfixture:\n%v", protojson.Format(got), protojson.Format(want))
	}
}

func TestBuildRefusesAnEmptyWorkflowAndANameUsedTwiceAnywhere(t *testing.T) {
	for _, c := range []struct {
		b    *client.WorkflowBuilder
		want string
	}{
		{client.NewWorkflow("empty"), `workflow "empty" has no steps`},
		{client.NewWorkflow("dup").Add(client.Parallel("ask", client.Branch("a", client.Step("review", "w")))).
			Add(client.Step("review", "w")), `duplicate step name "review"`},
		{client.NewWorkflow("dup").Add(client.Map("each", "context.xs", client.Step("each", "w"), 0)), `duplicate step name "each"`},
		{client.NewWorkflow("dup").Add(client.WaitForSignal("w", "go", client.SignalTimeout(time.Second),
			client.OnTimeout(client.Condition("c", []*pb.ConditionCase{client.When("true", client.Sleep("z", time.Second))},
				client.Sleep("z", time.Second))))), `duplicate step name "z"`},
	} {
		if def, err := c.b.Build(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Build() = %v, %v; want %q", def, err, c.want)
		}
	}
}

func TestEqualsPanicsOnAValueWithoutAJSONForm(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "not a JSON value") {
			t.Errorf("recovered %v", r)
		}
	}()
	client.Equals(make(chan int))
}

func TestNodeDefaultsAreTheOnesEverySDKWrites(t *testing.T) {
	def, err := client.NewWorkflow("defaults").
		Add(client.Parallel("p", client.Branch("a", client.Step("a1", "w", client.Retry(client.RetryPolicy{}))))).
		Add(client.Map("m", "context.xs", client.Step("m1", "w"), 0)).
		Add(client.WaitForSignal("s", "go", client.SignalTimeout(time.Second))).
		Build()
	if err != nil {
		t.Fatal(err)
	}
	retry := def.GetSteps()[0].GetParallel().GetBranches()[0].GetSteps()[0].GetRetryPolicy()
	if def.GetVersion() != 1 ||
		def.GetSteps()[0].GetParallel().GetFailurePolicy() != pb.ParallelFailurePolicy_PARALLEL_FAILURE_POLICY_FAIL_FAST ||
		retry.GetMaximumAttempts() != 3 || retry.GetInitialInterval().AsDuration() != time.Second ||
		retry.GetBackoffCoefficient() != 2 || retry.GetMaximumInterval() != nil ||
		def.GetSteps()[1].GetMap().GetMaxConcurrency() != 10 ||
		def.GetSteps()[2].GetWaitForSignal().GetContinueOnTimeout() {
		t.Errorf("defaults: %v", protojson.Format(def))
	}
}
