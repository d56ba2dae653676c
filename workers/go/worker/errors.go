package worker

import (
	"context"
	"errors"
	"fmt"

	pb "github.com/multiagents/multiagents/workers/go/gen/multiagents/v1"
	"github.com/multiagents/multiagents/workers/go/internal/payload"
)

// DefaultErrorType is the Failure.type reported for errors that carry no type.
const DefaultErrorType = "Error"

// MaxCauseDepth is how many causes are sent below a failure (the server
// keeps no more; common.proto).
const MaxCauseDepth = 8

// CancelledError is the cause of a handler's context when the server sent a
// Cancel for its command: the workflow was cancelled or the attempt timed
// out. context.Cause(ctx) returns it; Reason is the Cancel's reason. It
// wraps context.Canceled, so errors.Is(err, context.Canceled) holds.
type CancelledError struct {
	Reason string
}

func (e *CancelledError) Error() string {
	return fmt.Sprintf("%v by the server: %s", context.Canceled, e.Reason)
}

// Unwrap returns context.Canceled.
func (e *CancelledError) Unwrap() error { return context.Canceled }

// Error is a failure with an explicit type, reported to the server as
// Failure.type (retry policies match it against non_retryable_error_types).
// Return it, or wrap it with fmt.Errorf("...: %w", err), from a handler.
type Error struct {
	// Type is a short error type name such as "ValueError" or "CardDeclined";
	// empty means DefaultErrorType.
	Type string
	// Message is the failure message; empty means Err's message.
	Message string
	// NonRetryable stops the server from retrying the step.
	NonRetryable bool
	// Details are optional structured details (a JSON object).
	Details map[string]any
	// Err is the underlying error, if any.
	Err error
}

// NewError returns a retryable error of the given type.
func NewError(typ, message string) *Error {
	return &Error{Type: typ, Message: message}
}

// Error returns the message.
func (e *Error) Error() string {
	switch {
	case e.Message != "":
		return e.Message
	case e.Err != nil:
		return e.Err.Error()
	case e.Type != "":
		return e.Type
	default:
		return DefaultErrorType
	}
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// NonRetryable marks err as a validation-style failure that is never retried.
// The type of an *Error inside err is kept; otherwise the type is
// DefaultErrorType. NonRetryable(nil) is nil.
func NonRetryable(err error) error {
	if err == nil {
		return nil
	}
	out := &Error{NonRetryable: true, Err: err}
	var typed *Error
	if errors.As(err, &typed) {
		out.Type = typed.Type
		out.Details = typed.Details
	}
	return out
}

// IsNonRetryable reports whether err, or an error it wraps, is an *Error
// with NonRetryable set.
func IsNonRetryable(err error) bool {
	found := false
	walk(err, func(e *Error) bool {
		found = e.NonRetryable
		return !found
	})
	return found
}

// walk calls fn on every *Error in err's tree, outermost first, until fn
// returns false.
func walk(err error, fn func(*Error) bool) bool {
	for err != nil {
		if e, ok := err.(*Error); ok && !fn(e) {
			return false
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				if !walk(inner, fn) {
					return false
				}
			}
			return true
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		default:
			return true
		}
	}
	return true
}

// failureOf converts a handler's error into the wire Failure of kind
// APPLICATION: the type is the outermost non-empty *Error type, else
// "DeadlineExceeded" or "Cancelled" for context errors, else
// DefaultErrorType. The error errors.Unwrap returns is its cause, and so on
// down to MaxCauseDepth levels.
func failureOf(err error) *pb.Failure {
	return failureAt(err, MaxCauseDepth)
}

func failureAt(err error, depth int) *pb.Failure {
	f := &pb.Failure{Message: err.Error(), NonRetryable: IsNonRetryable(err),
		Kind: pb.FailureKind_FAILURE_KIND_APPLICATION}
	if inner := errors.Unwrap(err); inner != nil && depth > 0 {
		f.Cause = failureAt(inner, depth-1)
	}
	walk(err, func(e *Error) bool {
		if f.Type == "" {
			f.Type = e.Type
		}
		if f.Details == nil && e.Details != nil {
			f.Details, _ = payload.Encode(e.Details)
		}
		return f.Type == "" || f.Details == nil
	})
	switch {
	case f.Type != "":
	case errors.Is(err, context.DeadlineExceeded):
		f.Type = "DeadlineExceeded"
	case errors.Is(err, context.Canceled):
		f.Type = "Cancelled"
	default:
		f.Type = DefaultErrorType
	}
	return f
}
