// Command model-v2-client runs a workflow of model v2 from the Go client,
// for the conformance suite (tests/conformance/test_model_v2.py; its Node
// twin is workers/node/examples/model-v2-client.ts):
//
//	model-v2-client --server 127.0.0.1:50051 --prefix P
//
// It registers "P.client_v2" (a parallel group, a map, a condition, a sleep,
// an approval, a step; the workers are the conformance worker's P.step and
// P.invalid), starts it with a delay, approves it once it waits in the
// inbox; then it registers "P.client_v2_resume" (one step, P.invalid: it
// fails), resumes its failed execution and resumes the completed one (which
// the server refuses); then it creates the schedule "P.client_v2.every_second"
// (cron "* * * * * *" in Europe/Paris, buffer_one, starting
// "P.client_v2_resume"), waits for its first started run, lists, pauses,
// unpauses and deletes it, and prints one JSON line of what it saw. It exits
// 1 on any other error.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc/status"

	"github.com/multiagents/multiagents/workers/go/client"
	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
)

func main() {
	server := flag.String("server", "", "server address, host:port")
	prefix := flag.String("prefix", "", "prefix of the worker names")
	flag.Parse()
	if *server == "" || *prefix == "" {
		fmt.Fprintln(os.Stderr, "usage: model-v2-client --server host:port --prefix P")
		os.Exit(2)
	}
	if err := run(*server, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "model-v2-client:", err)
		os.Exit(1)
	}
}

func run(server, prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.New(server, client.Options{Token: os.Getenv("MULTIAGENTS_TOKEN")})
	if err != nil {
		return err
	}
	defer c.Close()

	name := prefix + ".client_v2"
	worker := prefix + ".step"
	def, err := client.NewWorkflow(name).
		Add(client.Parallel("ask",
			client.Branch("left", client.Step("left_1", worker)),
			client.Branch("right", client.Step("right_1", worker)))).
		Add(client.Map("each", "context.items", client.Step("each_item", worker), 2)).
		Add(client.Condition("route", []*pb.ConditionCase{
			client.When("context.ask.left.last_lang == context.ask.right.last_lang", client.Step("agree", worker)),
		}, client.Step("disagree", prefix+".invalid"))).
		Add(client.Sleep("pause", 200*time.Millisecond)).
		Add(client.WaitForSignal("approval", "approval", client.Approval(), client.SignalTimeout(time.Minute))).
		Add(client.Step("publish", worker)).
		Build()
	if err != nil {
		return err
	}
	if _, err := c.RegisterWorkflow(ctx, def); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	tx, err := c.ExecuteWorkflow(ctx, name, map[string]any{"visited": []any{"go-client"}, "items": []any{1, 2, 3}},
		client.ExecuteOptions{StartDelay: 300 * time.Millisecond})
	if err != nil {
		return err
	}
	delayed, err := c.GetStatus(ctx, tx)
	if err != nil {
		return err
	}
	entry, err := inboxEntry(ctx, c, name, tx)
	if err != nil {
		return err
	}
	waiting, err := c.GetStatus(ctx, tx)
	if err != nil {
		return err
	}
	if _, err := c.Approve(ctx, tx, client.Decision{By: "go-client"}); err != nil {
		return fmt.Errorf("approve: %w", err)
	}
	out, err := c.Result(ctx, tx)
	if err != nil {
		return err
	}
	status, err := c.GetStatus(ctx, tx)
	if err != nil {
		return err
	}
	resume, err := resumeTwice(ctx, c, name+"_resume", prefix+".invalid", tx)
	if err != nil {
		return err
	}
	schedule, err := scheduleRoundTrip(ctx, c, name+".every_second", name+"_resume")
	if err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	waitingPaths := []string{}
	for _, w := range waiting.WaitingSignals {
		waitingPaths = append(waitingPaths, w.Path)
	}
	steps := [][]string{}
	for _, s := range status.Steps {
		steps = append(steps, []string{s.Path, s.Kind, s.Status, s.Branch})
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"transaction_id": tx,
		"delayed":        map[string]any{"state": delayed.State, "start_at_set": !delayed.StartAt.IsZero()},
		"inbox":          map[string]any{"path": entry.Path, "signal": entry.Signal, "approval": entry.Approval},
		"waiting":        waitingPaths,
		"state":          status.State,
		"steps":          steps,
		"context":        out,
		"resume":         resume,
		"schedule":       schedule,
	})
}

// resumeTwice runs a workflow whose one step fails, resumes it (the step
// fails again, on a second attempt), then resumes the completed execution
// completed, which the server refuses.
func resumeTwice(ctx context.Context, c *client.Client, name, failing, completed string) (map[string]any, error) {
	def, err := client.NewWorkflow(name).Add(client.Step("check", failing, client.Retry(client.RetryPolicy{MaxAttempts: 1}))).Build()
	if err != nil {
		return nil, err
	}
	if _, err := c.RegisterWorkflow(ctx, def); err != nil {
		return nil, err
	}
	tx, err := c.ExecuteWorkflow(ctx, name, nil, client.ExecuteOptions{})
	if err != nil {
		return nil, err
	}
	first, err := c.Watch(ctx, tx, nil)
	if err != nil {
		return nil, err
	}
	if err := c.ResumeWorkflow(ctx, tx); err != nil {
		return nil, fmt.Errorf("resume: %w", err)
	}
	var after *client.Status
	for after == nil || after.State != client.StateFailed || after.Steps[0].Attempts != 2 {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the resumed execution's end: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if after, err = c.GetStatus(ctx, tx); err != nil {
			return nil, err
		}
	}
	// The gRPC status code of the refusal (0 had it been accepted).
	refused := status.Code(c.ResumeWorkflow(ctx, completed))
	return map[string]any{"first": first.State, "after": after.State, "attempts": after.Steps[0].Attempts,
		"completed": refused}, nil
}

// scheduleRoundTrip creates an every-second schedule of workflow, waits for
// its first started run, lists, pauses, unpauses and deletes it.
func scheduleRoundTrip(ctx context.Context, c *client.Client, id, workflow string) (map[string]any, error) {
	created, err := c.CreateSchedule(ctx, id, "* * * * * *", workflow, map[string]any{"from": "go-client"},
		client.ScheduleOptions{TimeZone: "Europe/Paris", OverlapPolicy: client.OverlapBufferOne, CatchupWindow: 90 * time.Second})
	if err != nil {
		return nil, err
	}
	run := ""
	for run == "" {
		s, err := c.GetSchedule(ctx, id)
		if err != nil {
			return nil, err
		}
		for _, a := range s.RecentActions {
			if a.Kind == client.ActionStarted {
				run = a.TransactionID
				break
			}
		}
		if run != "" {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the schedule's first run: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	listed, err := c.ListSchedules(ctx, workflow)
	if err != nil {
		return nil, err
	}
	paused, err := c.PauseSchedule(ctx, id, "from go-client")
	if err != nil {
		return nil, err
	}
	unpaused, err := c.UnpauseSchedule(ctx, id, "")
	if err != nil {
		return nil, err
	}
	if err := c.DeleteSchedule(ctx, id); err != nil {
		return nil, err
	}
	_, err = c.GetSchedule(ctx, id)
	ids := []string{}
	for _, s := range listed {
		ids = append(ids, s.ID)
	}
	flags := func(s *client.Schedule) map[string]any {
		return map[string]any{"paused": s.Paused, "note": s.Note, "next_fire_set": !s.NextFireTime.IsZero()}
	}
	return map[string]any{
		"created": map[string]any{"overlap_policy": created.OverlapPolicy, "time_zone": created.TimeZone,
			"catchup_window_ms": created.CatchupWindow.Milliseconds(), "input": created.Input,
			"next_fire_set": !created.NextFireTime.IsZero()},
		"run":          run,
		"listed":       ids,
		"paused":       flags(paused),
		"unpaused":     flags(unpaused),
		"after_delete": status.Code(err),
	}, nil
}

// inboxEntry polls the approval inbox until the execution's wait is in it.
func inboxEntry(ctx context.Context, c *client.Client, name, tx string) (client.WaitingSignal, error) {
	for {
		inbox, err := c.ListWaitingSignals(ctx, client.WaitingFilter{WorkflowName: name, ApprovalsOnly: true})
		if err != nil {
			return client.WaitingSignal{}, err
		}
		for _, w := range inbox {
			if w.TransactionID == tx {
				return w, nil
			}
		}
		select {
		case <-ctx.Done():
			return client.WaitingSignal{}, fmt.Errorf("waiting for the approval in the inbox: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
