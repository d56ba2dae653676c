package client

import (
	"context"
	"time"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
)

// RateLimitOptions are what PutRateLimit declares for a key; at least one of
// Requests, Tokens and MaxConcurrent must be set (else INVALID_ARGUMENT).
type RateLimitOptions struct {
	// Requests is how many attempts may start in any window of one Period;
	// 0 means no request limit.
	Requests uint32
	// Tokens is how many estimated tokens (a step's UsageEstimate, input +
	// output) may be reserved per Period; 0 means no token limit.
	Tokens uint64
	// Period of Requests and Tokens, between 1 ms and 1 day; 0 means 60 s.
	Period time.Duration
	// MaxConcurrent is how many attempts may run at once under one key; 0
	// means no limit.
	MaxConcurrent uint32
	// Backoff is how long nothing starts under the key after a worker
	// reports a failure of type "RateLimited"; 0 means 1 s, at most 1 hour.
	Backoff time.Duration
}

// RateLimit is a declared shared limit (a decoded limits.proto RateLimit),
// defaults filled in by the server.
type RateLimit struct {
	// Key is the key as declared; one ending in "*" is a prefix: every key
	// starting with what precedes the "*" has a limit of its own.
	Key           string
	Requests      uint32
	Tokens        uint64
	Period        time.Duration
	MaxConcurrent uint32
	Backoff       time.Duration
}

func rateLimitFromProto(r *pb.RateLimit) *RateLimit {
	return &RateLimit{Key: r.GetKey(), Requests: r.GetRequests(), Tokens: r.GetTokens(), Period: r.GetPeriod().AsDuration(),
		MaxConcurrent: r.GetMaxConcurrent(), Backoff: r.GetBackoff().AsDuration()}
}

// PutRateLimit declares (or replaces) the shared limit of key, or of every
// key starting with a prefix when key ends in "*" ("tenant:*"), enforced
// by the server across every worker and replica: a step that names the key
// (LimitKey, LimitExpression) waits in its queue until the limit lets it
// start. A bad key, period or backoff, or a limit with nothing set, is
// INVALID_ARGUMENT naming the field.
func (c *Client) PutRateLimit(ctx context.Context, key string, opts RateLimitOptions) (*RateLimit, error) {
	limit := &pb.RateLimit{Key: key, Requests: opts.Requests, Tokens: opts.Tokens, MaxConcurrent: opts.MaxConcurrent}
	if opts.Period != 0 {
		limit.Period = millis(opts.Period)
	}
	if opts.Backoff != 0 {
		limit.Backoff = millis(opts.Backoff)
	}
	resp, err := c.svc.PutRateLimit(ctx, &pb.PutRateLimitRequest{Limit: limit})
	if err != nil {
		return nil, err
	}
	return rateLimitFromProto(resp.GetLimit()), nil
}

// GetRateLimit returns the limit of a key as declared ("tenant:*" for a
// prefix); an unknown key is NOT_FOUND.
func (c *Client) GetRateLimit(ctx context.Context, key string) (*RateLimit, error) {
	resp, err := c.svc.GetRateLimit(ctx, &pb.GetRateLimitRequest{Key: key})
	if err != nil {
		return nil, err
	}
	return rateLimitFromProto(resp.GetLimit()), nil
}

// ListRateLimits returns every declared limit, by key.
func (c *Client) ListRateLimits(ctx context.Context) ([]*RateLimit, error) {
	resp, err := c.svc.ListRateLimits(ctx, &pb.ListRateLimitsRequest{})
	if err != nil {
		return nil, err
	}
	out := make([]*RateLimit, 0, len(resp.GetLimits()))
	for _, r := range resp.GetLimits() {
		out = append(out, rateLimitFromProto(r))
	}
	return out, nil
}

// DeleteRateLimit removes a limit; steps naming its key then start without
// it. An unknown key is NOT_FOUND.
func (c *Client) DeleteRateLimit(ctx context.Context, key string) error {
	_, err := c.svc.DeleteRateLimit(ctx, &pb.DeleteRateLimitRequest{Key: key})
	return err
}
