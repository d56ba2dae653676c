package worker_test

import (
	"context"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/multiagents/multiagents/workers/go/worker"
)

func Example() {
	w := worker.New(worker.Options{Address: "127.0.0.1:50051", MaxConcurrency: 8, Token: os.Getenv("MULTIAGENTS_TOKEN")})
	w.Register("charge_payment", func(ctx context.Context, t *worker.Task) (map[string]any, error) {
		amount, ok := t.Context["amount"].(float64)
		if !ok {
			return nil, worker.NonRetryable(worker.NewError("ValueError", "amount is required"))
		}
		return map[string]any{"charge_id": "ch_" + t.TransactionID, "charged": amount}, nil
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
