// Command conformance-worker is the Go worker that the cross-language
// conformance suite (tests/ in the repository) runs. It registers exactly
// P.step, P.flaky, P.invalid, P.fail, P.compensate, P.slow and P.stream for the prefix
// P given by --prefix, prints READY on stdout once the server welcomed it,
// logs to stderr, and drains gracefully on SIGTERM (exit status 0).
//
//	conformance-worker --server 127.0.0.1:50051 --prefix conf --max-concurrency 4
//
// MULTIAGENTS_TOKEN, when set, is sent as a bearer token.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/multiagents/multiagents/workers/go/worker"
)

func main() {
	server := flag.String("server", worker.DefaultAddress, "server address, host:port")
	prefix := flag.String("prefix", "go", "prefix of the worker names")
	maxConcurrency := flag.Int("max-concurrency", 4, "most commands run at once")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	w := worker.New(worker.Options{
		Address:        *server,
		MaxConcurrency: *maxConcurrency,
		Token:          os.Getenv("MULTIAGENTS_TOKEN"),
		Logger:         log,
	})
	for name, h := range handlers(*prefix) {
		w.Register(name, h)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		select {
		case <-w.Ready():
			fmt.Println("READY")
		case <-ctx.Done():
		}
	}()
	if err := w.Run(ctx); err != nil {
		log.Error("conformance worker failed", "error", err)
		os.Exit(1)
	}
}
