// Command submit starts a workflow and prints each status change until the
// execution is finished. With --definition it registers a workflow
// definition first: a JSON definition file in the form `multiagents register`
// reads (docs/definition.schema.json; see example-workflow.json).
//
//	go run ./cmd/submit --definition cmd/submit/example-workflow.json \
//	    --workflow go_example_order --input '{"amount": 42, "address": "1 Main St"}'
//
// It exits 0 when the workflow completed, 1 otherwise. MULTIAGENTS_SERVER is
// the default --server; MULTIAGENTS_TOKEN, when set, is sent as a bearer token.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/multiagents/multiagents/workers/go/client"
	"github.com/multiagents/multiagents/workers/go/worker"
)

func main() {
	server := flag.String("server", worker.EnvAddress(), "server address, host:port (default $MULTIAGENTS_SERVER, else 127.0.0.1:50051)")
	workflow := flag.String("workflow", "", "workflow name (default: the definition's name)")
	input := flag.String("input", "{}", "workflow input, a JSON object")
	definition := flag.String("definition", "", "register this workflow definition first (a JSON definition file, the form `multiagents register` reads: docs/definition.schema.json)")
	requestID := flag.String("request-id", "", "idempotency key of the submit")
	flag.Parse()
	if err := run(*server, *workflow, *input, *definition, *requestID); err != nil {
		fmt.Fprintln(os.Stderr, "submit:", err)
		os.Exit(1)
	}
}

func run(server, workflow, input, definition, requestID string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	c, err := client.New(server, client.Options{Token: os.Getenv("MULTIAGENTS_TOKEN")})
	if err != nil {
		return err
	}
	defer c.Close()

	if definition != "" {
		data, err := os.ReadFile(definition)
		if err != nil {
			return err
		}
		def, err := client.ParseDefinition(data)
		if err != nil {
			return fmt.Errorf("%s: %w", definition, err)
		}
		created, err := c.RegisterWorkflow(ctx, def)
		if err != nil {
			return fmt.Errorf("register %s: %w", def.GetName(), err)
		}
		fmt.Printf("registered %s v%d (new: %t)\n", def.GetName(), def.GetVersion(), created)
		if workflow == "" {
			workflow = def.GetName()
		}
	}
	if workflow == "" {
		return fmt.Errorf("--workflow or --definition is required")
	}
	var in map[string]any
	if err := json.Unmarshal([]byte(input), &in); err != nil {
		return fmt.Errorf("--input is not a JSON object: %w", err)
	}

	tx, err := c.ExecuteWorkflow(ctx, workflow, in, client.ExecuteOptions{RequestID: requestID})
	if err != nil {
		return err
	}
	fmt.Println("transaction", tx)
	final, err := c.Watch(ctx, tx, func(e *client.StatusEvent) {
		line := fmt.Sprintf("%-11s step=%s", e.State, e.CurrentStep)
		if e.Failure != nil {
			line += fmt.Sprintf(" failure=%s: %s", e.Failure.Type, e.Failure.Message)
		}
		fmt.Println(line)
	})
	if err != nil {
		return err
	}
	results, _ := json.MarshalIndent(final.StepResults, "", "  ")
	fmt.Printf("step results: %s\n", results)
	if final.State != client.StateCompleted {
		return fmt.Errorf("workflow ended %s", final.State)
	}
	return nil
}
