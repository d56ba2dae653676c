/**
 * The per-command view a handler receives: identity of the attempt, its
 * deadline, an AbortSignal, and heartbeat().
 */
import { CommandKind, type Command } from "./gen/multiagents/v1/worker_service.js";
import type { Duration } from "./gen/google/protobuf/duration.js";
import type { CommandOutput, OutputKindName, UsageReport } from "./output.js";

/** Whether a command runs a step or undoes (compensates) it. */
export type TaskKind = "execute" | "compensate";

/** One attempt of a step (or of its compensation), as a handler sees it. */
export interface Task {
  /** Attempt-scoped command id. */
  readonly commandId: string;
  /** "execute" or "compensate". */
  readonly kind: TaskKind;
  /** The registered worker name the command is for. */
  readonly workerName: string;
  /** The workflow execution. */
  readonly transactionId: string;
  /** Correlation id of the execution. */
  readonly correlationId: string;
  /** Step name. */
  readonly step: string;
  /** Attempt number, from 1. */
  readonly attempt: number;
  /** After this instant the server fails the attempt with a timeout; undefined when it set none. */
  readonly deadline: Date | undefined;
  /**
   * When set, the server fails the attempt if no heartbeat for it arrives this
   * often (ms): call {@link heartbeat} regularly. Undefined when not required.
   */
  readonly heartbeatTimeoutMs: number | undefined;
  /** Propagated metadata (e.g. traceparent). */
  readonly metadata: Readonly<Record<string, string>>;
  /**
   * Aborted when the server cancels the command, at its deadline, or on a
   * forced shutdown; `signal.reason` says which (CancelledError,
   * DeadlineExceededError, WorkerShutdownError). Pass it to fetch() & co.
   */
  readonly signal: AbortSignal;
  /**
   * Reports progress and extends the heartbeat timeout: sends a Heartbeat for
   * this command right away, with `details` as a json/plain payload. Dropped
   * silently while disconnected or after the task finished.
   */
  heartbeat(details?: unknown): void;
  /**
   * Publishes a chunk of the step's output (text or bytes, at most 64 KiB):
   * the server appends it to the execution's durable output stream, which
   * `multiagents watch` and StreamStepOutput follow. Sent at once; dropped
   * while disconnected or after the server refused this command's output
   * (its attempt was superseded).
   */
  emit(data: string | Uint8Array, kind?: OutputKindName): void;
  /**
   * Adds tokens and cost to what the command reports with its answer (a
   * result or a failure: a failed attempt still costs). Calls add up.
   */
  reportUsage(usage: UsageReport): void;
}

/** Milliseconds of a protobuf Duration; undefined when unset or zero. */
export function durationMs(d: Duration | undefined): number | undefined {
  if (d === undefined) return undefined;
  const ms = d.seconds * 1000 + Math.floor(d.nanos / 1e6);
  return ms > 0 ? ms : undefined;
}

/** Builds the handler's Task for a command. */
export function makeTask(
  command: Command,
  signal: AbortSignal,
  heartbeat: (details?: unknown) => void,
  output: CommandOutput,
): Task {
  return Object.freeze({
    commandId: command.commandId,
    kind: command.kind === CommandKind.COMMAND_KIND_COMPENSATE ? "compensate" : "execute",
    workerName: command.workerName,
    transactionId: command.transactionId,
    correlationId: command.correlationId,
    step: command.step,
    attempt: command.attempt,
    deadline: command.deadline,
    heartbeatTimeoutMs: durationMs(command.heartbeatTimeout),
    metadata: Object.freeze({ ...command.metadata }),
    signal,
    heartbeat,
    emit: (data: string | Uint8Array, kind?: OutputKindName) => output.emit(data, kind),
    reportUsage: (usage: UsageReport) => output.reportUsage(usage),
  } satisfies Task);
}
