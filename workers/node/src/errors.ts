/**
 * Errors a handler throws, and how they map to the wire `Failure`.
 *
 * Any thrown value fails the attempt. It is retried according to the step's
 * retry policy unless it is a {@link NonRetryableError} (or an
 * {@link ApplicationError} with `nonRetryable: true`), or its type is listed
 * in the policy's `non_retryable_error_types`. The failure's `type` is the
 * error's `type` for ApplicationError, otherwise its `name` (or its class
 * name when `name` was left at "Error").
 */

import { FailureKind, failureKindToJSON } from "./gen/multiagents/v1/common.js";

/** Causes sent below a failure; the server keeps no more (common.proto). */
export const MAX_CAUSE_DEPTH = 8;

/** A FailureKind without its prefix, e.g. "APPLICATION", "TIMEOUT", "CHILD_WORKFLOW_FAILED". */
export type FailureKindName =
  | "APPLICATION"
  | "TIMEOUT"
  | "HEARTBEAT_TIMEOUT"
  | "WORKER_LOST"
  | "CANCELLED"
  | "INVALID_RESULT"
  | "COMPENSATION_FAILED"
  | "CHILD_WORKFLOW_FAILED"
  | "BUDGET_EXCEEDED";

/** The name of a wire FailureKind; UNSPECIFIED and values newer than this SDK read as APPLICATION. */
export function failureKindName(kind: FailureKind): FailureKindName {
  const name = failureKindToJSON(kind).replace(/^FAILURE_KIND_/, "");
  return name === "UNSPECIFIED" || name === "UNRECOGNIZED" ? "APPLICATION" : (name as FailureKindName);
}

/** Options of {@link ApplicationError}. */
export interface ApplicationErrorOptions {
  /** Failure.type; defaults to the error's class name. */
  type?: string;
  /** When true the step is not retried. Default false. */
  nonRetryable?: boolean;
  /** Structured details, sent as a json/plain payload. */
  details?: unknown;
  /** The underlying error. */
  cause?: unknown;
}

/** An error with an explicit wire type, retry flag and details. */
export class ApplicationError extends Error {
  readonly type: string;
  readonly nonRetryable: boolean;
  readonly details: unknown;

  constructor(message: string, options: ApplicationErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.type = options.type ?? new.target.name;
    this.nonRetryable = options.nonRetryable ?? false;
    this.details = options.details;
  }
}

/**
 * A failure that must not be retried: bad input, a validation error.
 * `type` defaults to "ValueError", the type the Python SDK uses for the same case.
 */
export class NonRetryableError extends ApplicationError {
  constructor(message: string, type = "ValueError", options: Omit<ApplicationErrorOptions, "type" | "nonRetryable"> = {}) {
    super(message, { ...options, type, nonRetryable: true });
  }
}

/**
 * The handler's own result cannot be sent (not a JSON object, over the
 * server's payload limit): non-retryable, FailureKind INVALID_RESULT.
 */
export class InvalidResultError extends NonRetryableError {
  constructor(message: string, type: string) {
    super(message, type);
    this.name = "InvalidResultError";
  }
}

/** A decoded failure as {@link WorkflowFailedError} carries it (the client's FailureInfo). */
export interface WorkflowFailure {
  message: string;
  type: string;
  kind: FailureKindName;
  cause: WorkflowFailure | undefined;
}

/**
 * An execution ended without completing (FAILED, COMPENSATED or CANCELLED);
 * thrown by Client.result(). `failure` is what stopped it (undefined for a
 * cancelled execution, whose `cancelReason` says why).
 */
export class WorkflowFailedError extends Error {
  constructor(
    readonly transactionId: string,
    readonly state: string,
    readonly failure: WorkflowFailure | undefined,
    readonly cancelReason: string,
  ) {
    const why = failure === undefined ? cancelReason : `${failure.type} [${failure.kind}]: ${failure.message}`;
    super(`workflow ${transactionId} ended ${state}: ${why}`);
    this.name = "WorkflowFailedError";
  }
}

/** Reason of a task's AbortSignal when the server cancelled the command. */
export class CancelledError extends Error {
  constructor(message = "command cancelled by the server") {
    super(message);
    this.name = "CancelledError";
  }
}

/**
 * Reason of a task's AbortSignal when the command's deadline passed. A handler
 * that then fails with it (or with an AbortError) is reported as
 * Failure.type "StepTimeout", the server's own type for a step timeout.
 */
export class DeadlineExceededError extends Error {
  constructor(message = "command deadline exceeded") {
    super(message);
    this.name = "DeadlineExceededError";
  }
}

/** Reason of a task's AbortSignal when the worker was stopped before the task finished. */
export class WorkerShutdownError extends Error {
  constructor(message = "worker shut down before the command finished") {
    super(message);
    this.name = "WorkerShutdownError";
  }
}

/** The server refused the session (bad credentials, bad Hello): retrying would not help. */
export class SessionRejectedError extends Error {
  /** gRPC status code. */
  readonly code: number;
  constructor(message: string, code: number) {
    super(message);
    this.name = "SessionRejectedError";
    this.code = code;
  }
}

/** The wire type of a thrown value. */
export function errorType(err: unknown): string {
  if (err instanceof ApplicationError) return err.type;
  if (err instanceof Error) {
    if (err.name && err.name !== "Error") return err.name;
    const ctor = (err.constructor as { name?: unknown } | undefined)?.name;
    return typeof ctor === "string" && ctor !== "" ? ctor : "Error";
  }
  return "Error";
}
