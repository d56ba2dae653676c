/**
 * MultiAgents worker library and client for Node.js.
 *
 * - {@link Worker}: serve worker names over WorkerService.Connect.
 * - {@link Client}: register, execute, watch, cancel, signal and resume workflows; cron schedules; shared rate limits.
 * - {@link WorkflowBuilder}: workflow definitions with parallel groups, maps,
 *   conditions, waits for signals and sleeps (docs/workflows.md).
 * - Errors: {@link NonRetryableError} for validation failures; anything else is retried.
 *
 * The generated protobuf types are exported as
 * "@multiagents/worker/gen/multiagents/v1/<file>.js", for the raw wire types.
 */
export { Worker, type Context, type Handler, type HandlerResult, type ShutdownOptions, type WorkerEvents, type WorkerOptions } from "./worker.js";
export type { Task, TaskKind } from "./task.js";
export { MAX_CHUNK_BYTES, type OutputKindName, type UsageReport } from "./output.js";
export { DEFAULT_ADDRESS, DEFAULT_MAX_CONCURRENCY, serverAddress } from "./env.js";
export type { SessionEnd, SessionInfo } from "./session.js";
export {
  ApplicationError,
  CancelledError,
  DeadlineExceededError,
  InvalidResultError,
  MAX_CAUSE_DEPTH,
  NonRetryableError,
  WorkflowFailedError,
  failureKindName,
  type FailureKindName,
  type WorkflowFailure,
  SessionRejectedError,
  WorkerShutdownError,
  type ApplicationErrorOptions,
} from "./errors.js";
export {
  Client,
  isTerminal,
  rateLimitView,
  scheduleView,
  statusUpdate,
  statusView,
  waitingSignalView,
  type ApprovalOptions,
  type ClientOptions,
  type ExecuteOptions,
  type FailureInfo,
  type OverlapPolicyName,
  type RateLimitOptions,
  type RateLimitView,
  type ScheduleActionKindName,
  type ScheduleActionView,
  type ScheduleOptions,
  type ScheduleStatusView,
  type StatusUpdate,
  type StepInfoView,
  type WaitingSignalView,
  type WaitingSignalsFilter,
  type WatchOptions,
  type WorkflowStateName,
  type WorkflowStatusView,
} from "./client.js";
export {
  WorkflowBuilder,
  branch,
  caseEquals,
  caseWhen,
  nodeNames,
  parseDefinition,
  step,
  toDefinition,
  workflowStep,
  type BranchSpec,
  type CaseSpec,
  type ConditionSpec,
  type MapSpec,
  type NodeSpec,
  type ParallelSpec,
  type RateLimitKeySpec,
  type RetryPolicySpec,
  type SleepSpec,
  type StepOptions,
  type StepSpec,
  type WaitForSignalSpec,
  type WorkflowSpec,
  type WorkflowStepOptions,
} from "./workflow.js";
export { JSON_ENCODING, decodeJson, decodeJsonObject, encodeJson, type JsonObject, type JsonValue } from "./payload.js";
export { consoleLogger, type LogFields, type LogLevel, type Logger } from "./logger.js";
export type { BackoffOptions } from "./backoff.js";
export { SDK_LANGUAGE, SDK_VERSION } from "./version.js";
