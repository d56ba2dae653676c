package client_test

import (
	"os"
	"strings"
	"testing"

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
