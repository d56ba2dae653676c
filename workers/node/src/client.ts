/**
 * A client of WorkflowService: register definitions, start executions, read
 * their status, follow them with WatchWorkflow until they are terminal,
 * signal, approve or reject them, resume failed ones, read the approval
 * inbox, manage cron schedules and the shared rate limits steps name.
 * Errors are grpc-js ServiceErrors (`err.code` is the gRPC status code).
 */
import {
  credentials as grpcCredentials,
  Metadata,
  status as Status,
  type CallOptions,
  type ChannelCredentials,
  type ChannelOptions,
  type ClientUnaryCall,
  type ServiceError,
} from "@grpc/grpc-js";
import { type Failure, type Payload, WorkflowState, workflowStateToJSON } from "./gen/multiagents/v1/common.js";
import { WorkflowFailedError, failureKindName, type FailureKindName } from "./errors.js";
import type { StatusEvent } from "./gen/multiagents/v1/events.js";
import type { RateLimit } from "./gen/multiagents/v1/limits.js";
import {
  type ScheduleAction,
  ScheduleActionKind,
  ScheduleOverlapPolicy,
  type ScheduleStatus,
} from "./gen/multiagents/v1/schedule.js";
import { type StepInfo, type WaitingSignal, type WorkflowStatus, stepStatusToJSON } from "./gen/multiagents/v1/workflow.js";
import { WorkflowServiceClient, type WatchWorkflowResponse } from "./gen/multiagents/v1/workflow_service.js";
import { backoffDelay, sleep } from "./backoff.js";
import { decodeJson, decodeJsonObject, encodeJson, isPlainObject } from "./payload.js";
import { duration, toDefinition, type WorkflowSpec } from "./workflow.js";

/** Options of {@link Client}. */
export interface ClientOptions {
  /** Server address, "host:port". */
  address: string;
  /** Bearer token, sent as `authorization: Bearer <token>` metadata. */
  token?: string;
  /** Channel credentials; default insecure (plaintext). */
  credentials?: ChannelCredentials;
  /** Extra grpc-js channel options. */
  channelOptions?: ChannelOptions;
  /** Deadline of each unary call, in ms. Default 30 s. */
  callTimeoutMs?: number;
}

/** A workflow state without its enum prefix. */
export type WorkflowStateName = "UNSPECIFIED" | "PENDING" | "RUNNING" | "COMPLETED" | "FAILED" | "COMPENSATED" | "CANCELLED" | "COMPENSATING";

const TERMINAL: ReadonlySet<WorkflowStateName> = new Set(["COMPLETED", "FAILED", "COMPENSATED", "CANCELLED"]);

/** True for COMPLETED, FAILED, COMPENSATED and CANCELLED. */
export function isTerminal(state: WorkflowStateName): boolean {
  return TERMINAL.has(state);
}

/** A decoded wire Failure. */
export interface FailureInfo {
  message: string;
  type: string;
  /** Which class of failure (common.proto FailureKind without its prefix); UNSPECIFIED reads as APPLICATION. */
  kind: FailureKindName;
  nonRetryable: boolean;
  stackTrace: string;
  details: unknown;
  /** The failure that caused this one (e.g. a sub-workflow's), if any. */
  cause: FailureInfo | undefined;
}

/** One status change of an execution (a decoded StatusEvent). */
export interface StatusUpdate {
  transactionId: string;
  correlationId: string;
  state: WorkflowStateName;
  currentStep: string;
  /** Step name -> that step's result. */
  stepResults: Record<string, unknown>;
  timestamp: Date | undefined;
  revision: number;
  failure: FailureInfo | undefined;
  requiresManualIntervention: boolean;
  /** Why the execution is being cancelled, once a cancel was requested; "" before. */
  cancelReason: string;
}

/** One node of an execution. */
export interface StepInfoView {
  name: string;
  /** PENDING, RUNNING, COMPLETED, FAILED, COMPENSATED, COMPENSATION_FAILED, CANCELLED, SKIPPED. */
  status: string;
  attempts: number;
  lastFailure: FailureInfo | undefined;
  /** Path of names from the top: "ask/legal/legal_review" (a branch's step), "each/3" (a map's item). */
  path: string;
  /** "step", "workflow", "parallel", "map", "item", "condition", "wait" or "sleep". */
  kind: string;
  /** A condition's case taken ("case 1", ..., "otherwise"), "timed out" for a wait; else "". */
  branch: string;
  /** The sub-workflow run by the latest attempt; "" when none. */
  childTransactionId: string;
  startedAt: Date | undefined;
  finishedAt: Date | undefined;
  /**
   * What the worker of the running attempt last reported (its heartbeat
   * details), or the shared limit the attempt waits for:
   * `{ waiting_for_rate_limit: key, reason: "concurrency" }` (or "requests",
   * "tokens", "backoff", "queued"). Unset when the step is not running or
   * nothing was reported.
   */
  progress: Record<string, unknown> | undefined;
}

/** A wait that waits for a signal now: an entry of the approval inbox. */
export interface WaitingSignalView {
  transactionId: string;
  workflowName: string;
  /** Path of the wait node. */
  path: string;
  signal: string;
  approval: boolean;
  since: Date | undefined;
  /** Unset when it waits for ever. */
  timeoutAt: Date | undefined;
}

/** A snapshot of an execution (a decoded WorkflowStatus). */
export interface WorkflowStatusView {
  transactionId: string;
  correlationId: string;
  workflowName: string;
  workflowVersion: number;
  state: WorkflowStateName;
  currentStep: string;
  stepResults: Record<string, unknown>;
  /** The merged context: input plus every result so far. */
  context: Record<string, unknown>;
  failure: FailureInfo | undefined;
  requiresManualIntervention: boolean;
  /** Every node, in definition order (depth first); a map's items follow the map. */
  steps: StepInfoView[];
  /** Paths of the steps with an attempt outstanding (several in a parallel group or a map). */
  runningSteps: string[];
  /** The waits waiting for a signal now. */
  waitingSignals: WaitingSignalView[];
  /** A delayed start: when the first step starts. */
  startAt: Date | undefined;
  /** The execution that runs this one as a sub-workflow step; "" when none. */
  parentTransactionId: string;
  createdAt: Date | undefined;
  updatedAt: Date | undefined;
  completedAt: Date | undefined;
  revision: number;
}

/** Options of {@link Client.executeWorkflow}. */
export interface ExecuteOptions {
  /** Definition version; default the latest. */
  version?: number;
  /** Idempotency key: a repeated request returns the first execution's id. */
  requestId?: string;
  /** Correlation id; defaults to the transaction id. */
  correlationId?: string;
  /** Delayed start, in ms: the execution stays PENDING that long (a durable timer). */
  startDelayMs?: number;
}

/** Options of {@link Client.approve} and {@link Client.reject}. */
export interface ApprovalOptions {
  /** The wait's signal name; default "approval". */
  signal?: string;
  /** Why; a rejection's comment goes into the failure's message. */
  comment?: string;
  /** Who decided. */
  by?: string;
}

/** Filters of {@link Client.listWaitingSignals}. */
export interface WaitingSignalsFilter {
  /** Only waits for this signal. */
  signal?: string;
  /** Only executions of this workflow. */
  workflowName?: string;
  /** Only approvals. */
  approvalsOnly?: boolean;
  /** At most this many; default 100, at most 1,000. */
  limit?: number;
}

/** Options of {@link Client.watch}. */
export interface WatchOptions {
  /** Stops following when aborted (the iterator then throws the signal's reason). */
  signal?: AbortSignal;
}

/**
 * What a schedule does when a fire time comes while its last run is still
 * running (schedule.proto ScheduleOverlapPolicy, lower case without its
 * prefix, as the Python client and the CLI name them).
 */
export type OverlapPolicyName = "skip" | "buffer_one" | "cancel_other" | "allow_all";

const OVERLAP_POLICIES: Readonly<Record<OverlapPolicyName, ScheduleOverlapPolicy>> = {
  skip: ScheduleOverlapPolicy.SCHEDULE_OVERLAP_POLICY_SKIP,
  buffer_one: ScheduleOverlapPolicy.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE,
  cancel_other: ScheduleOverlapPolicy.SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER,
  allow_all: ScheduleOverlapPolicy.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL,
};

/** What a schedule did for one fire time (ScheduleActionKind, lower case); "unspecified" for a value newer than this package. */
export type ScheduleActionKindName = "started" | "skipped" | "buffered" | "missed" | "failed" | "unspecified";

const ACTION_KINDS: ReadonlyMap<ScheduleActionKind, ScheduleActionKindName> = new Map([
  [ScheduleActionKind.SCHEDULE_ACTION_KIND_STARTED, "started"],
  [ScheduleActionKind.SCHEDULE_ACTION_KIND_SKIPPED, "skipped"],
  [ScheduleActionKind.SCHEDULE_ACTION_KIND_BUFFERED, "buffered"],
  [ScheduleActionKind.SCHEDULE_ACTION_KIND_MISSED, "missed"],
  [ScheduleActionKind.SCHEDULE_ACTION_KIND_FAILED, "failed"],
]);

/** Options of {@link Client.createSchedule}. */
export interface ScheduleOptions {
  /** Workflow version each fire starts; default 0, the latest at each fire. */
  version?: number;
  /** IANA time zone the cron expression is read in ("Europe/Paris"); default UTC. */
  timeZone?: string;
  /** Default "skip". */
  overlapPolicy?: OverlapPolicyName;
  /** How old the one missed fire time caught up after downtime may be, in ms; default (0) 365 days. */
  catchupWindowMs?: number;
  /** Created paused: nothing fires until {@link Client.unpauseSchedule}. */
  paused?: boolean;
  /** Free text, e.g. why it is paused. */
  note?: string;
}

/** What a schedule did for one fire time. */
export interface ScheduleActionView {
  /** The fire time (a time the cron expression names). */
  fireTime: Date | undefined;
  /** When the server acted on it. */
  takenAt: Date | undefined;
  kind: ScheduleActionKindName;
  /** started: the run started; skipped and buffered: the run still running; else "". */
  transactionId: string;
  /** Why, for anything but started. */
  message: string;
}

/** A schedule and what it has done (a decoded ScheduleStatus). */
export interface ScheduleStatusView {
  scheduleId: string;
  cron: string;
  /** "UTC" unless the schedule names a zone. */
  timeZone: string;
  workflowName: string;
  /** 0: the latest version at each fire. */
  workflowVersion: number;
  /** The input of every run. */
  input: Record<string, unknown>;
  overlapPolicy: OverlapPolicyName;
  catchupWindowMs: number;
  paused: boolean;
  note: string;
  createdAt: Date | undefined;
  /** Its last change by a client (create, pause, unpause). */
  updatedAt: Date | undefined;
  /** Unset while paused. */
  nextFireTime: Date | undefined;
  /** A fire time waiting for the running run to end (buffer_one, cancel_other). */
  bufferedFireTime: Date | undefined;
  runsStarted: number;
  runsSkipped: number;
  /** The last run started; "" before the first. */
  lastTransactionId: string;
  /** The latest actions, newest first, at most 10. */
  recentActions: ScheduleActionView[];
}

/** Options of {@link Client.putRateLimit}: at least one of requests, tokens and maxConcurrent. */
export interface RateLimitOptions {
  /** Attempts started in any window of one period; 0 (default) is no request limit. */
  requests?: number;
  /** Estimated tokens (a step's usageEstimate, input + output) reserved per period; 0 (default) is no token limit. */
  tokens?: number;
  /** The period of requests and tokens, in ms, between 1 ms and 1 day; default 60 s. */
  periodMs?: number;
  /** Attempts running at once per key; 0 (default) is no limit. */
  maxConcurrent?: number;
  /** How long nothing starts under the key after a worker reports a failure of type "RateLimited", in ms; default 1 s, at most 1 hour. */
  backoffMs?: number;
}

/** A declared shared limit (a decoded RateLimit), defaults filled in by the server. */
export interface RateLimitView {
  /** The key as declared; one ending in "*" is a prefix: every key starting with what precedes the "*" has a limit of its own. */
  key: string;
  requests: number;
  tokens: number;
  periodMs: number;
  maxConcurrent: number;
  backoffMs: number;
}

/** The largest value of a uint32 field (requests, maxConcurrent). */
const MAX_UINT32 = 0xffff_ffff;

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** Codes after which a broken watch stream is reopened. */
const RETRYABLE_WATCH_CODES: ReadonlySet<number> = new Set([Status.UNAVAILABLE, Status.INTERNAL, Status.UNKNOWN]);

/**
 * Client of WorkflowService.
 *
 * ```ts
 * const client = new Client({ address: "127.0.0.1:50051" });
 * const txId = await client.executeWorkflow("order", { order_id: 7 });
 * for await (const update of client.watch(txId)) console.log(update.state, update.currentStep);
 * client.close();
 * ```
 */
export class Client {
  /** The generated grpc-js client, for the calls this class does not wrap. */
  readonly raw: WorkflowServiceClient;
  private readonly options: ClientOptions;

  constructor(options: ClientOptions) {
    this.options = options;
    this.raw = new WorkflowServiceClient(options.address, options.credentials ?? grpcCredentials.createInsecure(), {
      "grpc.max_receive_message_length": -1,
      ...options.channelOptions,
    });
  }

  /**
   * Registers a definition (a {@link WorkflowSpec}, e.g. from
   * {@link WorkflowBuilder}); false when the identical one was registered already.
   */
  async registerWorkflow(spec: WorkflowSpec): Promise<boolean> {
    const response = await this.unary(this.raw.registerWorkflow, { definition: toDefinition(spec) });
    return response.created;
  }

  /** Starts an execution of `workflowName` with `input` (a JSON object); returns its transaction id. */
  async executeWorkflow(workflowName: string, input: Record<string, unknown> = {}, options: ExecuteOptions = {}): Promise<string> {
    if (!isPlainObject(input)) throw new TypeError("workflow input must be a JSON object");
    const response = await this.unary(this.raw.executeWorkflow, {
      workflowName,
      version: options.version ?? 0,
      input: encodeJson(input),
      requestId: options.requestId ?? "",
      correlationId: options.correlationId ?? "",
      startDelay: options.startDelayMs ? duration(options.startDelayMs) : undefined,
      budget: undefined,
    });
    return response.transactionId;
  }

  /** The current status of an execution. */
  async getStatus(transactionId: string): Promise<WorkflowStatusView> {
    const response = await this.unary(this.raw.getStatus, { transactionId });
    if (response.status === undefined) throw new Error(`GetStatus returned no status for ${transactionId}`);
    return statusView(response.status);
  }

  /** Cancels a running execution (FAILED_PRECONDITION when it has finished). */
  async cancelWorkflow(transactionId: string, reason = ""): Promise<void> {
    await this.unary(this.raw.cancelWorkflow, { transactionId, reason });
  }

  /**
   * Sends a signal to an execution (a wait_for_signal step takes it; one
   * sent before the wait starts is kept). `payload` (a JSON object) becomes
   * the wait's result. With `signalId` a resend is accepted once: the answer
   * is true when that id had been taken already.
   */
  async signalWorkflow(transactionId: string, signal: string, payload: Record<string, unknown> = {}, options: { signalId?: string } = {}): Promise<boolean> {
    if (!isPlainObject(payload)) throw new TypeError("signal payload must be a JSON object");
    const response = await this.unary(this.raw.signalWorkflow, { transactionId, signal, payload: encodeJson(payload), signalId: options.signalId ?? "" });
    return response.duplicate;
  }

  /** Approves a wait_for_signal step with `approval: true` (payload `{approved: true, comment?, by?}`). */
  approve(transactionId: string, options: ApprovalOptions = {}): Promise<boolean> {
    return this.signalWorkflow(transactionId, options.signal ?? "approval", approvalPayload(true, options));
  }

  /** Rejects an approval: the wait fails (type Rejected) and the workflow compensates. */
  reject(transactionId: string, options: ApprovalOptions = {}): Promise<boolean> {
    return this.signalWorkflow(transactionId, options.signal ?? "approval", approvalPayload(false, options));
  }

  /**
   * Picks a FAILED execution up again, same id, history kept: its failed
   * step runs again (or its failed compensations, when it requires manual
   * intervention). Anything else is FAILED_PRECONDITION.
   */
  async resumeWorkflow(transactionId: string): Promise<void> {
    await this.unary(this.raw.resumeWorkflow, { transactionId });
  }

  /** The approval inbox: the waits waiting for a signal now, across executions, oldest first. */
  async listWaitingSignals(filter: WaitingSignalsFilter = {}): Promise<WaitingSignalView[]> {
    const response = await this.unary(this.raw.listWaitingSignals, {
      signal: filter.signal ?? "",
      workflowName: filter.workflowName ?? "",
      approvalsOnly: filter.approvalsOnly ?? false,
      pageSize: filter.limit ?? 100,
    });
    return response.waiting.map(waitingSignalView);
  }

  /**
   * Creates a schedule: `cron` (5 fields, 6 with seconds first, 7 with a
   * year last; read in `options.timeZone`, default UTC) starts
   * `workflowName` with `input` (a JSON object) at each fire time. A taken
   * id is ALREADY_EXISTS; a bad cron, zone or window INVALID_ARGUMENT; an
   * unknown workflow NOT_FOUND. An unknown overlap policy throws a RangeError.
   */
  async createSchedule(
    scheduleId: string,
    cron: string,
    workflowName: string,
    input: Record<string, unknown> = {},
    options: ScheduleOptions = {},
  ): Promise<ScheduleStatusView> {
    if (!isPlainObject(input)) throw new TypeError("schedule input must be a JSON object");
    const policy = options.overlapPolicy ?? "skip";
    if (!Object.hasOwn(OVERLAP_POLICIES, policy)) {
      throw new RangeError(`overlapPolicy: expected one of ${Object.keys(OVERLAP_POLICIES).sort().join(", ")}, got ${JSON.stringify(policy)}`);
    }
    const response = await this.unary(this.raw.createSchedule, {
      schedule: {
        scheduleId,
        cron,
        timeZone: options.timeZone ?? "",
        workflowName,
        workflowVersion: options.version ?? 0,
        input: encodeJson(input),
        overlapPolicy: OVERLAP_POLICIES[policy],
        catchupWindow: options.catchupWindowMs ? duration(options.catchupWindowMs) : undefined,
        paused: options.paused ?? false,
        note: options.note ?? "",
      },
    });
    return responseSchedule(response.status, scheduleId);
  }

  /** One schedule; an unknown id is NOT_FOUND. */
  async getSchedule(scheduleId: string): Promise<ScheduleStatusView> {
    return responseSchedule((await this.unary(this.raw.getSchedule, { scheduleId })).status, scheduleId);
  }

  /** Every schedule (of `workflowName`, if given), by id; reads every page. */
  async listSchedules(options: { workflowName?: string } = {}): Promise<ScheduleStatusView[]> {
    const found: ScheduleStatusView[] = [];
    let pageToken = "";
    do {
      const response = await this.unary(this.raw.listSchedules, { workflowName: options.workflowName ?? "", pageSize: 1000, pageToken });
      found.push(...response.schedules.map(scheduleView));
      pageToken = response.nextPageToken;
    } while (pageToken !== "");
    return found;
  }

  /** Stops firing until unpaused; `note` (when given) replaces the schedule's note. */
  async pauseSchedule(scheduleId: string, note = ""): Promise<ScheduleStatusView> {
    return responseSchedule((await this.unary(this.raw.pauseSchedule, { scheduleId, note })).status, scheduleId);
  }

  /** Fires again, from the next fire time after now (the paused span is not caught up). */
  async unpauseSchedule(scheduleId: string, note = ""): Promise<ScheduleStatusView> {
    return responseSchedule((await this.unary(this.raw.unpauseSchedule, { scheduleId, note })).status, scheduleId);
  }

  /** Deletes a schedule; the runs it started go on. An unknown id is NOT_FOUND. */
  async deleteSchedule(scheduleId: string): Promise<void> {
    await this.unary(this.raw.deleteSchedule, { scheduleId });
  }

  /**
   * Declares (or replaces) the shared limit of `key`, or of every key
   * starting with a prefix when `key` ends in "*" ("tenant:*"), enforced by
   * the server across every worker and replica: a step that names the key
   * (`rateLimits` of a {@link StepSpec}) waits in its queue until the limit
   * lets it start. A bad key, period or backoff, or a limit with nothing
   * set, is INVALID_ARGUMENT naming the field; a count that is not an
   * integer in range throws a RangeError before any call.
   */
  async putRateLimit(key: string, options: RateLimitOptions = {}): Promise<RateLimitView> {
    const count = (field: "requests" | "tokens" | "maxConcurrent", max: number): number => {
      const value = options[field] ?? 0;
      if (!Number.isSafeInteger(value) || value < 0 || value > max) throw new RangeError(`${field}: expected an integer from 0 to ${max}, got ${value}`);
      return value;
    };
    const limit: RateLimit = {
      key,
      requests: count("requests", MAX_UINT32),
      tokens: count("tokens", Number.MAX_SAFE_INTEGER),
      period: duration(options.periodMs),
      maxConcurrent: count("maxConcurrent", MAX_UINT32),
      backoff: duration(options.backoffMs),
    };
    return responseRateLimit((await this.unary(this.raw.putRateLimit, { limit })).limit, key);
  }

  /** The limit of a key as declared ("tenant:*" for a prefix); an unknown key is NOT_FOUND. */
  async getRateLimit(key: string): Promise<RateLimitView> {
    return responseRateLimit((await this.unary(this.raw.getRateLimit, { key })).limit, key);
  }

  /** Every declared limit, by key. */
  async listRateLimits(): Promise<RateLimitView[]> {
    return (await this.unary(this.raw.listRateLimits, {})).limits.map(rateLimitView);
  }

  /** Removes a limit; steps naming its key then start without it. An unknown key is NOT_FOUND. */
  async deleteRateLimit(key: string): Promise<void> {
    await this.unary(this.raw.deleteRateLimit, { key });
  }

  /**
   * Follows an execution: yields its current status, then every change,
   * and returns after a terminal state. A stream broken by the network or a
   * server restart is reopened; updates already seen (by revision) are skipped.
   */
  async *watch(transactionId: string, options: WatchOptions = {}): AsyncGenerator<StatusUpdate, void, undefined> {
    const signal = options.signal;
    let lastRevision = 0;
    let failures = 0;
    for (;;) {
      signal?.throwIfAborted();
      const call = this.raw.watchWorkflow({ transactionId, includeOutput: false, outputFromOffset: "", includeEvents: false, includeProgress: false }, this.metadata());
      // Errors reach the loop through the async iterator; this keeps a late
      // CANCELLED (after we stop reading) from becoming an unhandled 'error'.
      call.on("error", () => undefined);
      const onAbort = (): void => call.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        for await (const response of call as AsyncIterable<WatchWorkflowResponse>) {
          failures = 0;
          if (response.event === undefined) continue;
          const update = statusUpdate(response.event);
          if (update.revision > 0 && update.revision <= lastRevision) continue;
          lastRevision = Math.max(lastRevision, update.revision);
          yield update;
          if (isTerminal(update.state)) return;
        }
        // Ended before a terminal state (e.g. the server is draining): reopen.
      } catch (err) {
        signal?.throwIfAborted();
        if (!RETRYABLE_WATCH_CODES.has((err as ServiceError).code)) throw err;
      } finally {
        signal?.removeEventListener("abort", onAbort);
        call.cancel();
      }
      await sleep(backoffDelay(failures++), signal);
    }
  }

  /** Waits for an execution to reach a terminal state and returns that last update. */
  async wait(transactionId: string, options: WatchOptions = {}): Promise<StatusUpdate> {
    let last: StatusUpdate | undefined;
    for await (const update of this.watch(transactionId, options)) last = update;
    if (last === undefined) throw new Error(`watch of ${transactionId} ended without a status`);
    return last;
  }

  /**
   * Waits for the end of an execution and returns its output, the final
   * context (the input merged with every step's result). Throws a
   * {@link WorkflowFailedError} (with the failure, its kind and cause chain,
   * or the cancel reason) when it ended FAILED, COMPENSATED or CANCELLED.
   */
  async result(transactionId: string, options: WatchOptions = {}): Promise<Record<string, unknown>> {
    const last = await this.wait(transactionId, options);
    if (last.state !== "COMPLETED") throw new WorkflowFailedError(transactionId, last.state, last.failure, last.cancelReason);
    return (await this.getStatus(transactionId)).context;
  }

  /** Closes the channel. */
  close(): void {
    this.raw.close();
  }

  private metadata(): Metadata {
    const metadata = new Metadata();
    if (this.options.token) metadata.set("authorization", `Bearer ${this.options.token}`);
    return metadata;
  }

  private unary<Req, Res>(method: UnaryMethod<Req, Res>, request: Req): Promise<Res> {
    const deadline = Date.now() + (this.options.callTimeoutMs ?? 30_000);
    return new Promise<Res>((resolve, reject) => {
      method.call(this.raw, request, this.metadata(), { deadline }, (error, response) => {
        if (error) reject(error);
        else resolve(response);
      });
    });
  }
}

function approvalPayload(approved: boolean, options: ApprovalOptions): Record<string, unknown> {
  const payload: Record<string, unknown> = { approved };
  if (options.comment) payload["comment"] = options.comment;
  if (options.by) payload["by"] = options.by;
  return payload;
}

function stateName(state: WorkflowState): WorkflowStateName {
  return workflowStateToJSON(state).replace(/^WORKFLOW_STATE_/, "") as WorkflowStateName;
}

function failureInfo(failure: Failure | undefined): FailureInfo | undefined {
  if (failure === undefined) return undefined;
  return {
    message: failure.message,
    type: failure.type,
    kind: failureKindName(failure.kind),
    nonRetryable: failure.nonRetryable,
    stackTrace: failure.stackTrace,
    details: decodeJson(failure.details, "failure details"),
    cause: failureInfo(failure.cause),
  };
}

function jsonObject(payload: Payload | undefined, what: string): Record<string, unknown> {
  return decodeJsonObject(payload, what);
}

/** Decodes a StatusEvent. */
export function statusUpdate(event: StatusEvent): StatusUpdate {
  return {
    transactionId: event.transactionId,
    correlationId: event.correlationId,
    state: stateName(event.state),
    currentStep: event.currentStep,
    stepResults: jsonObject(event.stepResults, "step_results"),
    timestamp: event.timestamp,
    revision: event.revision,
    failure: failureInfo(event.failure),
    requiresManualIntervention: event.requiresManualIntervention,
    cancelReason: event.cancelReason,
  };
}

/** Decodes a WorkflowStatus. */
export function statusView(status: WorkflowStatus): WorkflowStatusView {
  return {
    transactionId: status.transactionId,
    correlationId: status.correlationId,
    workflowName: status.workflowName,
    workflowVersion: status.workflowVersion,
    state: stateName(status.state),
    currentStep: status.currentStep,
    stepResults: jsonObject(status.stepResults, "step_results"),
    context: jsonObject(status.context, "context"),
    failure: failureInfo(status.failure),
    requiresManualIntervention: status.requiresManualIntervention,
    steps: status.steps.map(stepInfoView),
    runningSteps: status.runningSteps,
    waitingSignals: status.waitingSignals.map(waitingSignalView),
    startAt: status.startAt,
    parentTransactionId: status.parentTransactionId,
    createdAt: status.createdAt,
    updatedAt: status.updatedAt,
    completedAt: status.completedAt,
    revision: status.revision,
  };
}

function stepInfoView(step: StepInfo): StepInfoView {
  return {
    name: step.name,
    status: stepStatusToJSON(step.status).replace(/^STEP_STATUS_/, ""),
    attempts: step.attempts,
    lastFailure: failureInfo(step.lastFailure),
    path: step.path,
    kind: step.kind,
    branch: step.branch,
    childTransactionId: step.childTransactionId,
    startedAt: step.startedAt,
    finishedAt: step.finishedAt,
    progress: step.progress === undefined ? undefined : jsonObject(step.progress.details, `progress of ${step.path}`),
  };
}

/** Decodes a WaitingSignal (an inbox entry). */
export function waitingSignalView(w: WaitingSignal): WaitingSignalView {
  return {
    transactionId: w.transactionId,
    workflowName: w.workflowName,
    path: w.path,
    signal: w.signal,
    approval: w.approval,
    since: w.since,
    timeoutAt: w.timeoutAt,
  };
}

function overlapPolicyName(policy: ScheduleOverlapPolicy): OverlapPolicyName {
  for (const [name, value] of Object.entries(OVERLAP_POLICIES)) if (value === policy) return name as OverlapPolicyName;
  return "skip"; // UNSPECIFIED means skip
}

function millisOf(d: { seconds: number; nanos: number } | undefined): number {
  return d === undefined ? 0 : d.seconds * 1000 + Math.round(d.nanos / 1_000_000);
}

/** The schedule a CreateSchedule, GetSchedule, PauseSchedule or UnpauseSchedule response carries. */
function responseSchedule(status: ScheduleStatus | undefined, scheduleId: string): ScheduleStatusView {
  if (status === undefined) throw new Error(`the server returned no schedule status for ${scheduleId}`);
  return scheduleView(status);
}

/** Decodes a ScheduleStatus. */
export function scheduleView(status: ScheduleStatus): ScheduleStatusView {
  const d = status.definition;
  if (d === undefined) throw new Error("ScheduleStatus without its definition");
  return {
    scheduleId: d.scheduleId,
    cron: d.cron,
    timeZone: d.timeZone,
    workflowName: d.workflowName,
    workflowVersion: d.workflowVersion,
    input: jsonObject(d.input, "schedule input"),
    overlapPolicy: overlapPolicyName(d.overlapPolicy),
    catchupWindowMs: millisOf(d.catchupWindow),
    paused: d.paused,
    note: d.note,
    createdAt: status.createdAt,
    updatedAt: status.updatedAt,
    nextFireTime: status.nextFireTime,
    bufferedFireTime: status.bufferedFireTime,
    runsStarted: status.runsStarted,
    runsSkipped: status.runsSkipped,
    lastTransactionId: status.lastTransactionId,
    recentActions: status.recentActions.map(scheduleActionView),
  };
}

function scheduleActionView(a: ScheduleAction): ScheduleActionView {
  return {
    fireTime: a.fireTime,
    takenAt: a.takenAt,
    kind: ACTION_KINDS.get(a.kind) ?? "unspecified",
    transactionId: a.transactionId,
    message: a.message,
  };
}

/** The limit a PutRateLimit or GetRateLimit response carries. */
function responseRateLimit(limit: RateLimit | undefined, key: string): RateLimitView {
  if (limit === undefined) throw new Error(`the server returned no rate limit for ${key}`);
  return rateLimitView(limit);
}

/** Decodes a RateLimit. */
export function rateLimitView(limit: RateLimit): RateLimitView {
  return {
    key: limit.key,
    requests: limit.requests,
    tokens: limit.tokens,
    periodMs: millisOf(limit.period),
    maxConcurrent: limit.maxConcurrent,
    backoffMs: millisOf(limit.backoff),
  };
}

/** Re-exported so callers can compare states without importing generated code. */
export { WorkflowState };
