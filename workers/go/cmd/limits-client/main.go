// Command limits-client uses shared rate limits from the Go client, for the
// conformance suite (tests/conformance/test_rate_limits.py; its Node twin is
// workers/node/examples/limits-client.ts):
//
//	limits-client --server 127.0.0.1:50051 --prefix P
//
// It declares the limits of docs/workflows.md ("Rate limits and concurrency
// keys": provider:openai, 500 requests and 90,000 tokens a minute;
// tenant:*, 2 attempts at once per tenant) and registers its workflow
// "answer" (step "draft" of worker "drafter", with a usage estimate and
// both keys, one by a key expression on context.customer_id) with the code
// shown there. It serves "drafter" itself: sleeps context.sleep_ms and
// counts how many attempts of one customer run at once. It starts 4
// executions for customer "P-a" (2 s each) and one for "P-b" (0.1 s), waits
// until a step of P-a's shows that it waits for its tenant's limit, and for
// every end; reads the limits back; registers a step whose key expression
// does not parse and declares a key with a space (both refused); deletes
// both limits. It prints one JSON line of what it saw and exits 1 on any
// other error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/status"

	"github.com/multiagents/multiagents/workers/go/client"
	"github.com/multiagents/multiagents/workers/go/worker"
)

func main() {
	server := flag.String("server", "", "server address, host:port")
	prefix := flag.String("prefix", "", "prefix of the customer ids")
	flag.Parse()
	if *server == "" || *prefix == "" {
		fmt.Fprintln(os.Stderr, "usage: limits-client --server host:port --prefix P")
		os.Exit(2)
	}
	if err := run(*server, *prefix); err != nil {
		fmt.Fprintln(os.Stderr, "limits-client:", err)
		os.Exit(1)
	}
}

// drafter counts, per customer, the attempts running now and the most at once.
type drafter struct {
	mu      sync.Mutex
	running map[string]int
	most    map[string]int
}

func (d *drafter) handle(ctx context.Context, t *worker.Task) (map[string]any, error) {
	customer, _ := t.Context["customer_id"].(string)
	sleepMS, _ := t.Context["sleep_ms"].(float64)
	d.mu.Lock()
	d.running[customer]++
	d.most[customer] = max(d.most[customer], d.running[customer])
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.running[customer]--
		d.mu.Unlock()
	}()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Duration(sleepMS) * time.Millisecond):
	}
	return map[string]any{"drafted_for": customer}, nil
}

func run(server, prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	token := os.Getenv("MULTIAGENTS_TOKEN")
	c, err := client.New(server, client.Options{Token: token})
	if err != nil {
		return err
	}
	defer c.Close()

	d := &drafter{running: map[string]int{}, most: map[string]int{}}
	w := worker.New(worker.Options{Address: server, MaxConcurrency: 8, Token: token,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	w.Register("drafter", d.handle)
	workerCtx, stopWorker := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- w.Run(workerCtx) }()
	defer func() {
		stopWorker()
		<-served
	}()
	select {
	case <-w.Ready():
	case err := <-served:
		return fmt.Errorf("the worker stopped before it was ready: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}

	// docs/workflows.md, "Rate limits and concurrency keys":
	_, err = c.PutRateLimit(ctx, "provider:openai", client.RateLimitOptions{Requests: 500, Tokens: 90_000, Period: time.Minute})
	if err != nil {
		return err
	}
	_, err = c.PutRateLimit(ctx, "tenant:*", client.RateLimitOptions{MaxConcurrent: 2}) // each tenant on its own
	if err != nil {
		return err
	}

	def, err := client.NewWorkflow("answer").
		Add(client.Step("draft", "drafter",
			client.UsageEstimate(client.Estimate{InputTokens: 1_500, OutputTokens: 500}),
			client.RateLimits(client.LimitKey("provider:openai"), client.LimitExpression(`"tenant:" + context.customer_id`)))).
		Build()
	if err != nil {
		return err
	}
	if _, err := c.RegisterWorkflow(ctx, def); err != nil {
		return fmt.Errorf("register: %w", err)
	}

	var a []string
	for range 4 {
		tx, err := c.ExecuteWorkflow(ctx, "answer", map[string]any{"customer_id": prefix + "-a", "sleep_ms": 4000}, client.ExecuteOptions{})
		if err != nil {
			return err
		}
		a = append(a, tx)
	}
	b, err := c.ExecuteWorkflow(ctx, "answer", map[string]any{"customer_id": prefix + "-b", "sleep_ms": 100}, client.ExecuteOptions{})
	if err != nil {
		return err
	}
	waiting, err := waitingProgress(ctx, c, a)
	if err != nil {
		return err
	}
	states := map[string]client.State{}
	for _, tx := range append(a, b) {
		final, err := c.Watch(ctx, tx, nil)
		if err != nil {
			return err
		}
		states[tx] = final.State
	}

	tenant, err := c.GetRateLimit(ctx, "tenant:*")
	if err != nil {
		return err
	}
	all, err := c.ListRateLimits(ctx)
	if err != nil {
		return err
	}
	listed := []map[string]any{}
	for _, l := range all {
		if l.Key == "provider:openai" || l.Key == "tenant:*" {
			listed = append(listed, limitJSON(l))
		}
	}
	bad, err := client.NewWorkflow(prefix + ".bad_key").
		Add(client.Step("draft", "drafter", client.RateLimits(client.LimitExpression(`"tenant:" + context.`)))).
		Build()
	if err != nil {
		return err
	}
	_, badExpression := c.RegisterWorkflow(ctx, bad)
	_, badKey := c.PutRateLimit(ctx, "tenant acme", client.RateLimitOptions{MaxConcurrent: 1})
	for _, key := range []string{"provider:openai", "tenant:*"} {
		if err := c.DeleteRateLimit(ctx, key); err != nil {
			return fmt.Errorf("delete %s: %w", key, err)
		}
	}
	_, getDeleted := c.GetRateLimit(ctx, "tenant:*")
	d.mu.Lock()
	defer d.mu.Unlock()
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"a":              a,
		"b":              b,
		"waiting":        waiting,
		"states":         states,
		"most_at_once":   d.most,
		"tenant":         limitJSON(tenant),
		"listed":         listed,
		"bad_expression": refusal(badExpression),
		"bad_key":        refusal(badKey),
		"after_delete": map[string]any{"get": status.Code(getDeleted),
			"delete": status.Code(c.DeleteRateLimit(ctx, "tenant:*"))},
	})
}

// waitingProgress polls the executions until a step of one shows that it
// waits for a rate limit, and returns that progress.
func waitingProgress(ctx context.Context, c *client.Client, txs []string) (map[string]any, error) {
	for {
		for _, tx := range txs {
			s, err := c.GetStatus(ctx, tx)
			if err != nil {
				return nil, err
			}
			if p := s.Steps[0].Progress; p["waiting_for_rate_limit"] != nil {
				return p, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, errors.New("no step of P-a showed that it waits for its limit")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// refusal is the gRPC status code and message of a refused call (code 0
// had it been accepted).
func refusal(err error) map[string]any {
	s := status.Convert(err)
	return map[string]any{"code": s.Code(), "message": s.Message()}
}

func limitJSON(l *client.RateLimit) map[string]any {
	return map[string]any{"key": l.Key, "requests": l.Requests, "tokens": l.Tokens, "period_ms": l.Period.Milliseconds(),
		"max_concurrent": l.MaxConcurrent, "backoff_ms": l.Backoff.Milliseconds()}
}
