package client_test

import (
	"os"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/multiagents/multiagents/workers/go/client"
)

func TestParseDefinitionReadsTheExampleInTheSharedFormat(t *testing.T) {
	data, err := os.ReadFile("../cmd/submit/example-workflow.json")
	if err != nil {
		t.Fatal(err)
	}
	def, err := client.ParseDefinition(data)
	if err != nil {
		t.Fatal(err)
	}
	charge := def.GetSteps()[0]
	if def.GetName() != "go_example_order" || def.GetVersion() != 1 || len(def.GetSteps()) != 2 ||
		charge.GetCompensation() != "refund_payment" || charge.GetTimeout().AsDuration().Seconds() != 30 {
		t.Fatalf("got %v", def)
	}
	r := charge.GetRetryPolicy()
	if r.GetMaximumAttempts() != 3 || r.GetInitialInterval().AsDuration().Milliseconds() != 200 ||
		r.GetBackoffCoefficient() != 2 || r.GetMaximumInterval() != nil {
		t.Fatalf("retry: got %v", r)
	}
}

func TestParseDefinitionRefusesUnknownKeysAndBadSteps(t *testing.T) {
	for _, c := range []struct{ json, want string }{
		{`{"name": "x", "steps": [{"name": "a", "worker": "w", "retryPolicy": {}}]}`, `unknown field "retryPolicy"`},
		{`{"name": "x", "steps": [{"name": "a"}]}`, "one of worker or workflow"},
		{`{"name": "x", "steps": []}`, "has no steps"},
		{`{"steps": [{"name": "a", "worker": "w"}]}`, "name is required"},
	} {
		if _, err := client.ParseDefinition([]byte(c.json)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.json, err, c.want)
		}
	}
}

func TestParseDefinitionRefusesWhatTheSchemaRefusesNamingThePlace(t *testing.T) {
	wrap := func(step string) string { return `{"name": "x", "steps": [` + step + `]}` }
	for _, c := range []struct{ json, want string }{
		{wrap(`{"name": "z", "sleep": 1, "map": {}}`), "steps[0]: set one of parallel, map, condition, wait_for_signal, sleep, not map and sleep"},
		{wrap(`{"name": "z", "sleep": 1, "worker": "w"}`), `steps[0]: unknown key "worker" in a sleep node`},
		{wrap(`{"sleep": 1}`), "steps[0].name: required"},
		{wrap(`{"name": "a/b", "worker": "w"}`), `steps[0].name: required, without "/" (got "a/b")`},
		{wrap(`{"name": "z", "sleep": 0}`), "steps[0].sleep: expected seconds, a number > 0"},
		{wrap(`{"name": "z", "sleep": "1s"}`), "steps[0].sleep: expected seconds"},
		{wrap(`{"name": "p", "parallel": {"branches": []}}`), "steps[0].parallel.branches: at least one branch"},
		{wrap(`{"name": "p", "parallel": {"branches": [{"name": "a", "steps": []}]}}`), "steps[0].parallel.branches[0].steps: at least one step"},
		{wrap(`{"name": "p", "parallel": {"branches": [{"name": "a", "steps": [{"name": "s"}]}]}}`), "steps[0].parallel.branches[0].steps[0]: needs a name and one of worker or workflow"},
		{wrap(`{"name": "p", "parallel": {"failFast": true, "branches": []}}`), `steps[0].parallel: json: unknown field "failFast"`},
		{wrap(`{"name": "m", "map": {"step": {"name": "s", "worker": "w"}}}`), "steps[0].map.items: required"},
		{wrap(`{"name": "m", "map": {"items": "context.xs"}}`), "steps[0].map.step: required"},
		{wrap(`{"name": "m", "map": {"items": "context.xs", "step": {"name": "s", "sleep": 1}}}`), "steps[0].map.step: must be a worker or workflow step"},
		{wrap(`{"name": "m", "map": {"items": "context.xs", "max_concurrency": 1001, "step": {"name": "s", "worker": "w"}}}`), "steps[0].map.max_concurrency: must be between 1 and 1000, got 1001"},
		{wrap(`{"name": "c", "condition": {"cases": []}}`), "steps[0].condition.cases: at least one case"},
		{wrap(`{"name": "c", "condition": {"cases": [{"when": "true"}]}}`), "steps[0].condition.cases[0].steps: required"},
		{wrap(`{"name": "c", "condition": {"cases": [{"when": "true", "steps": []}], "otherwise": [{"name": "o"}]}}`), "steps[0].condition.otherwise[0]: needs a name"},
		{wrap(`{"name": "w", "wait_for_signal": {"timeout": 5}}`), "steps[0].wait_for_signal.signal: required"},
		{wrap(`{"name": "w", "wait_for_signal": {"signal": "go", "timeout": -1}}`), "steps[0].wait_for_signal.timeout: must be > 0 seconds"},
		{wrap(`{"name": "w", "wait_for_signal": {"signal": "go", "timeout": 5, "on_timeout": [{"name": "s", "worker": "w", "retry": {"max_attempts": 0}}]}}`), "steps[0].wait_for_signal.on_timeout[0].retry.max_attempts: must be >= 1"},
		{wrap(`{"name": "a", "worker": "w", "timeout": 0}`), "steps[0].timeout: must be > 0 seconds"},
		{wrap(`{"name": "a", "worker": "w", "usage_estimate": {"input_tokens": -1}}`), "steps[0].usage_estimate.input_tokens: must be >= 0"},
		{wrap(`{"name": "a", "worker": "w", "usage_estimate": {"tokens": 1}}`), `steps[0]: json: unknown field "tokens"`},
		{wrap(`{"name": "a", "worker": "w", "rate_limits": "p"}`), "steps[0]: json: cannot unmarshal string"},
		{wrap(`{"name": "a", "worker": "w", "rate_limits": ["p", {"keyExpression": "x"}]}`), `steps[0].rate_limits[1]: expected a key or {"key_expression": CEL}`},
		{wrap(`{"name": "a", "worker": "w", "rate_limits": [7]}`), `steps[0].rate_limits[0]: expected a key or {"key_expression": CEL}`},
		{`{"name": "x", "version": 0, "steps": [{"name": "a", "worker": "w"}]}`, "version: must be >= 1, got 0"},
	} {
		if _, err := client.ParseDefinition([]byte(c.json)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.json, err, c.want)
		}
	}
}

func TestParseDefinitionKeepsAnEqualsNullAndLeavesAnAbsentOneToTheServer(t *testing.T) {
	def, err := client.ParseDefinition([]byte(`{"name": "x", "steps": [{"name": "c", "condition": {"switch": "context.kind",
		"cases": [{"equals": null, "steps": []}, {"steps": []}]}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	cases := def.GetSteps()[0].GetCondition().GetCases()
	if _, isNull := cases[0].GetEquals().GetKind().(*structpb.Value_NullValue); !isNull || cases[1].GetEquals() != nil {
		t.Errorf("cases %v", cases)
	}
}
