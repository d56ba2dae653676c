// Command example-worker serves three workers of a small order workflow
// (cmd/submit/example-workflow.json): charge_payment, refund_payment (its
// compensation) and ship_order, which rejects orders without an address.
//
//	go run ./cmd/example-worker --server 127.0.0.1:50051
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/multiagents/multiagents/workers/go/worker"
)

func main() {
	server := flag.String("server", worker.EnvAddress(), "server address, host:port (default $MULTIAGENTS_SERVER, else 127.0.0.1:50051)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	w := worker.New(worker.Options{Address: *server, Token: os.Getenv("MULTIAGENTS_TOKEN")})
	w.Register("charge_payment", func(ctx context.Context, t *worker.Task) (map[string]any, error) {
		return map[string]any{"charge_id": "ch_" + t.TransactionID, "charged": t.Context["amount"]}, nil
	})
	w.Register("refund_payment", func(ctx context.Context, t *worker.Task) (map[string]any, error) {
		return map[string]any{"refunded": t.Context["charge_id"]}, nil
	})
	w.Register("ship_order", func(ctx context.Context, t *worker.Task) (map[string]any, error) {
		address, _ := t.Context["address"].(string)
		if address == "" {
			return nil, worker.NonRetryable(worker.NewError("ValueError", "address is required"))
		}
		return map[string]any{"tracking": fmt.Sprintf("TRK-%s-%d", t.Step, t.Attempt)}, nil
	})
	if err := w.Run(ctx); err != nil { // returns after a graceful drain on SIGTERM / Ctrl-C
		log.Fatal(err)
	}
}
