/**
 * Answers to commands: a handler's return value or thrown error turned into
 * the wire CommandOutcome, and outcomes grouped into stream messages.
 */
import { type Failure, FailureKind } from "./gen/multiagents/v1/common.js";
import type { Command, CommandOutcome, ConnectRequest } from "./gen/multiagents/v1/worker_service.js";
import { ApplicationError, CancelledError, DeadlineExceededError, InvalidResultError, MAX_CAUSE_DEPTH, errorType } from "./errors.js";
import { describe, encodeJson, isPlainObject } from "./payload.js";

/** Several outcomes go into one CommandOutcomes message up to about this size... */
const BATCH_BYTES = 1024 * 1024;
/** ...and this count. */
const BATCH_COUNT = 256;
/** Failure texts are cut to this many characters. */
const MAX_MESSAGE_CHARS = 8 * 1024;
const MAX_STACK_CHARS = 32 * 1024;

/**
 * The outcome of a handler that returned `value`: a json/plain object
 * (null/undefined become {}). Throws a NonRetryableError when the value is
 * not a JSON object or is over the server's payload limit.
 */
export function resultOutcome(command: Command, value: unknown, maxPayloadBytes: number): CommandOutcome {
  const result = value === undefined || value === null ? {} : value;
  if (!isPlainObject(result)) {
    throw new InvalidResultError(
      `worker "${command.workerName}" must return a JSON object (or nothing), got ${describe(result)}`,
      "TypeError",
    );
  }
  let payload;
  try {
    payload = encodeJson(result);
  } catch (err) {
    throw new InvalidResultError(`worker "${command.workerName}" returned a ${(err as Error).message}`, "TypeError");
  }
  if (payload.data.length > maxPayloadBytes) {
    throw new InvalidResultError(
      `result of worker "${command.workerName}" is ${payload.data.length} bytes, over the server's limit of ${maxPayloadBytes} bytes`,
      "PayloadTooLarge",
    );
  }
  return { outcome: { $case: "result", value: { commandId: command.commandId, result: payload, usage: undefined } } };
}

/** The outcome of a handler that threw `err`; `signal` is the task's. */
export function failureOutcome(commandId: string, err: unknown, signal: AbortSignal): CommandOutcome {
  const failure = toFailure(err);
  // Same wire type as the server's own step timeout (and the Python SDK's), so
  // retry policies naming "StepTimeout" apply whichever side noticed first.
  if (signal.reason instanceof DeadlineExceededError && isAbortOutcome(err, signal.reason)) {
    failure.type = "StepTimeout";
    failure.kind = FailureKind.FAILURE_KIND_TIMEOUT;
  }
  // A command the server cancelled: type "Cancelled", kind CANCELLED, the
  // Cancel's reason as message, as the Python and Go SDKs report it.
  if (signal.reason instanceof CancelledError && isAbortOutcome(err, signal.reason)) {
    failure.type = "Cancelled";
    failure.kind = FailureKind.FAILURE_KIND_CANCELLED;
    failure.message = signal.reason.message;
    failure.cause = undefined;
  }
  return { outcome: { $case: "failure", value: { commandId, failure, usage: undefined } } };
}

/** The wire Failure of a thrown value, with its `cause` chain (Error.cause) as causes. */
export function toFailure(err: unknown, depth = MAX_CAUSE_DEPTH): Failure {
  const message = err instanceof Error ? err.message : String(err);
  const stack = err instanceof Error ? (err.stack ?? "") : "";
  let details;
  if (err instanceof ApplicationError && err.details !== undefined) {
    try {
      details = encodeJson(err.details);
    } catch {
      // Details are optional decoration; the failure itself must still go out.
      details = encodeJson({ unserialisable_details: String(err.details) });
    }
  }
  return {
    message: truncate(message, MAX_MESSAGE_CHARS),
    type: errorType(err),
    nonRetryable: err instanceof ApplicationError && err.nonRetryable,
    stackTrace: truncate(stack, MAX_STACK_CHARS),
    details,
    kind: err instanceof InvalidResultError ? FailureKind.FAILURE_KIND_INVALID_RESULT : FailureKind.FAILURE_KIND_APPLICATION,
    cause: err instanceof Error && err.cause !== undefined && depth > 0 ? toFailure(err.cause, depth - 1) : undefined,
  };
}

/**
 * The answer to a command listed in Resumed that this process neither runs
 * nor remembers answering: WORKER_LOST, retryable, so the server retries the
 * step now instead of at its timeout (docs/protocol.md, Reconnecting).
 */
export function lostOutcome(commandId: string): CommandOutcome {
  const failure: Failure = {
    message: "the worker does not have this command (never received, or its answer is forgotten)",
    type: "WorkerLost",
    nonRetryable: false,
    stackTrace: "",
    details: undefined,
    kind: FailureKind.FAILURE_KIND_WORKER_LOST,
    cause: undefined,
  };
  return { outcome: { $case: "failure", value: { commandId, failure, usage: undefined } } };
}

/** The command an outcome answers. */
export function outcomeCommandId(outcome: CommandOutcome): string {
  return outcome.outcome?.value.commandId ?? "";
}

/** How many outcomes from the front of `outbox` go into the next message (at least one). */
export function batchLength(outbox: readonly CommandOutcome[]): number {
  let count = 0;
  let bytes = 0;
  while (count < outbox.length && count < BATCH_COUNT) {
    const size = outcomeSize(outbox[count]!);
    if (count > 0 && bytes + size > BATCH_BYTES) break;
    bytes += size;
    count++;
  }
  return count;
}

/** One outcome as a plain result/failure message; several as CommandOutcomes. */
export function outcomesMessage(batch: readonly CommandOutcome[]): ConnectRequest {
  const only = batch.length === 1 ? batch[0]!.outcome : undefined;
  if (only?.$case === "result") return { message: { $case: "result", value: only.value } };
  if (only?.$case === "failure") return { message: { $case: "failure", value: only.value } };
  return { message: { $case: "outcomes", value: { outcomes: [...batch] } } };
}

/** A cheap upper-bound estimate of an outcome's encoded size. */
export function outcomeSize(outcome: CommandOutcome): number {
  const o = outcome.outcome;
  if (o === undefined) return 16;
  if (o.$case === "result") return 64 + o.value.commandId.length + (o.value.result?.data.length ?? 0);
  const f = o.value.failure;
  return 64 + o.value.commandId.length + (f ? 3 * (f.message.length + f.stackTrace.length) + (f.details?.data.length ?? 0) : 0);
}

/** True when `err` is how a handler reacts to its signal being aborted with `reason`. */
function isAbortOutcome(err: unknown, reason: unknown): boolean {
  return err === reason || (err instanceof Error && (err.name === "AbortError" || err instanceof DeadlineExceededError));
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}... (${text.length - max} more characters)`;
}
