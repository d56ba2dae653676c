/**
 * The worker runtime: registers handlers by worker name, keeps one session
 * with the orchestrator open (reconnecting with backoff), runs the commands
 * it receives concurrently, answers each with a result or a failure, sends
 * heartbeats, and drains on request or on shutdown().
 *
 * Outcomes are buffered while disconnected and sent after the next Welcome:
 * the server accepts the answer for the current attempt from any session.
 */
import { EventEmitter } from "node:events";
import * as os from "node:os";
import { credentials as grpcCredentials, Metadata, type ChannelCredentials, type ChannelOptions } from "@grpc/grpc-js";
import {
  type Cancel,
  type Command,
  type CommandOutcome,
  type DrainRequest,
  type Hello,
  ProtocolVersion,
  type Resumed,
  WorkerServiceClient,
} from "./gen/multiagents/v1/worker_service.js";
import { backoffDelay, sleep, type BackoffOptions } from "./backoff.js";
import { DEFAULT_MAX_CONCURRENCY, serverAddress } from "./env.js";
import { ApplicationError, CancelledError, DeadlineExceededError, SessionRejectedError, WorkerShutdownError } from "./errors.js";
import { consoleLogger, type Logger } from "./logger.js";
import {
  batchLength,
  failureOutcome,
  lostOutcome,
  outcomeCommandId,
  outcomeSize,
  outcomesMessage,
  resultOutcome,
} from "./outcomes.js";
import { decodeJsonObject, encodeJson } from "./payload.js";
import { DEFAULT_MAX_PAYLOAD_BYTES, FATAL_HANDSHAKE_CODES, Session, type SessionEnd, type SessionInfo } from "./session.js";
import type { Usage } from "./gen/multiagents/v1/common.js";
import { CommandOutput } from "./output.js";
import { makeTask, type Task } from "./task.js";
import { inStepSpan } from "./tracing.js";
import { SDK_LANGUAGE, SDK_VERSION } from "./version.js";

/** The context a handler receives: the workflow's merged JSON context. */
export type Context = Record<string, any>;

/** What a handler may return: a JSON object; null/undefined mean `{}`. */
export type HandlerResult = Record<string, unknown> | null | undefined | void;

/** A step implementation. Throw to fail the attempt (see errors.ts for retry semantics). */
export type Handler = (context: Context, task: Task) => HandlerResult | Promise<HandlerResult>;

/** Options of {@link Worker}. */
export interface WorkerOptions {
  /** Server address, "host:port". Default {@link serverAddress}(): $MULTIAGENTS_SERVER, else 127.0.0.1:50051. */
  address?: string;
  /** Most commands in flight at once; announced in Hello. Default {@link DEFAULT_MAX_CONCURRENCY} (8, as in every SDK). */
  maxConcurrency?: number;
  /** Bearer token, sent as `authorization: Bearer <token>` metadata. */
  token?: string;
  /** Channel credentials; default insecure (plaintext). */
  credentials?: ChannelCredentials;
  /** Extra grpc-js channel options. */
  channelOptions?: ChannelOptions;
  /** Id of this process in Hello; default "<hostname>-<pid>". */
  workerId?: string;
  /** Where to log; default {@link consoleLogger} (stderr). */
  logger?: Logger;
  /** Reconnect backoff; default 100 ms doubling up to 5 s, with jitter. */
  backoff?: BackoffOptions;
  /** How long to wait for Welcome after connecting, in ms. Default 30 s. */
  handshakeTimeoutMs?: number;
}

/** Options of {@link Worker.shutdown}. */
export interface ShutdownOptions {
  /**
   * Give up on draining after this many ms: abort the signals of the tasks
   * still running, close the stream, and resolve. Their commands are
   * redelivered by the server. Default: wait as long as it takes.
   */
  timeoutMs?: number;
}

/** Events of {@link Worker}. */
export interface WorkerEvents {
  /** A session was accepted (after every (re)connect). */
  ready: [info: SessionInfo];
  /** A session ended; the worker reconnects unless it is shutting down. */
  disconnected: [end: SessionEnd];
}

interface Running {
  readonly task: Task;
  readonly output: CommandOutput;
  readonly controller: AbortController;
  readonly deadlineTimer: NodeJS.Timeout | undefined;
  /**
   * Commands with a heartbeat timeout are kept alive only by task.heartbeat(),
   * not by the session's periodic heartbeat: otherwise a hung handler would
   * never time out while the process lives.
   */
  readonly explicitHeartbeats: boolean;
}

/** Longest setTimeout delay Node accepts. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/**
 * Answers sent on a session are remembered this long, for a Resumed that
 * lists them: the default step timeout, after which no answer to them counts...
 */
const RESEND_WINDOW_MS = 600_000;
/** ...and at most about this many bytes of them (RESEND_ENTRY_BYTES more each; the oldest forgotten first). */
const RESEND_MAX_BYTES = 32 * 1024 * 1024;
const RESEND_ENTRY_BYTES = 256;

/**
 * A worker process's connection to the orchestrator.
 *
 * ```ts
 * const worker = new Worker({ address: "127.0.0.1:50051", maxConcurrency: 8 });
 * worker.register("charge_payment", async (ctx, task) => ({ charged: true }));
 * process.once("SIGTERM", () => void worker.shutdown());
 * await worker.run();
 * ```
 */
export class Worker extends EventEmitter<WorkerEvents> {
  readonly workerId: string;
  readonly maxConcurrency: number;
  private readonly options: WorkerOptions & { address: string };
  private readonly logger: Logger;
  private readonly handlers = new Map<string, Handler>();
  private readonly running = new Map<string, Running>();
  private outbox: CommandOutcome[] = [];
  /** Answers sent on a session, in sending order: command id -> when and what. */
  private readonly sent = new Map<string, { at: number; sessionId: string; outcome: CommandOutcome; bytes: number }>();
  private sentBytes = 0;
  private flushScheduled = false;
  private session: Session | undefined;
  private lastInfo: SessionInfo | undefined;
  /** The last Welcome's resume token, sent in the next Hello. */
  private resumeToken = "";
  private runPromise: Promise<void> | undefined;
  private stopping = false;
  private forced = false;
  private finished = false;
  private drainRequested = false;
  private wake = new AbortController();
  private forceTimer: NodeJS.Timeout | undefined;

  constructor(options: WorkerOptions) {
    super();
    const maxConcurrency = options.maxConcurrency ?? DEFAULT_MAX_CONCURRENCY;
    if (!Number.isInteger(maxConcurrency) || maxConcurrency < 1) {
      throw new RangeError(`maxConcurrency must be an integer >= 1, got ${maxConcurrency}`);
    }
    this.options = { ...options, address: options.address ?? serverAddress() };
    this.maxConcurrency = maxConcurrency;
    this.workerId = options.workerId ?? `${os.hostname()}-${process.pid}`;
    this.logger = options.logger ?? consoleLogger();
  }

  /** Serves `name` with `handler`. Call before run(). */
  register(name: string, handler: Handler): this {
    if (name === "") throw new TypeError("worker name must not be empty");
    if (this.handlers.has(name)) throw new Error(`worker "${name}" is already registered`);
    if (this.runPromise !== undefined) throw new Error("register() must be called before run()");
    this.handlers.set(name, handler);
    return this;
  }

  /** The registered worker names, in registration order. */
  get workerNames(): string[] {
    return [...this.handlers.keys()];
  }

  /** Number of commands running now. */
  get inFlight(): number {
    return this.running.size;
  }

  /** The current session's Welcome, while connected. */
  get sessionInfo(): SessionInfo | undefined {
    return this.session?.welcome;
  }

  /**
   * Connects and serves commands until {@link shutdown} has drained.
   * Rejects with {@link SessionRejectedError} when the server refuses the
   * session (bad token, bad Hello); any other stream error means reconnect.
   */
  run(): Promise<void> {
    if (this.runPromise !== undefined) throw new Error("run() was already called");
    if (this.handlers.size === 0) throw new Error("register at least one worker before run()");
    this.runPromise = this.loop();
    return this.runPromise;
  }

  /**
   * Graceful shutdown: sends Drain, lets in-flight commands finish, sends
   * their outcomes, closes the stream. Resolves when run() has returned.
   * Safe to call more than once and before run().
   */
  async shutdown(options: ShutdownOptions = {}): Promise<void> {
    if (this.runPromise === undefined) {
      this.stopping = true;
      return;
    }
    if (!this.stopping) {
      this.stopping = true;
      this.logger.info("shutting down: draining in-flight commands", { in_flight: this.running.size });
      this.session?.send({ message: { $case: "drain", value: {} } });
      // Mid-handshake with nothing to deliver: no reason to wait for Welcome.
      if (this.session !== undefined && this.session.welcome === undefined && this.idle()) this.session.cancel();
      this.maybeEndSession();
      this.wake.abort();
    }
    if (options.timeoutMs !== undefined && this.forceTimer === undefined && !this.finished) {
      this.forceTimer = setTimeout(() => this.forceStop(), options.timeoutMs);
    }
    await this.runPromise.catch(() => undefined);
    clearTimeout(this.forceTimer);
  }

  private async loop(): Promise<void> {
    const client = new WorkerServiceClient(
      this.options.address,
      this.options.credentials ?? grpcCredentials.createInsecure(),
      {
        // grpc-js's own reconnect backoff goes up to 120 s by default; keep it
        // in line with ours so a restarted server is found within seconds.
        "grpc.initial_reconnect_backoff_ms": this.options.backoff?.initialMs ?? 100,
        "grpc.max_reconnect_backoff_ms": this.options.backoff?.maxMs ?? 5000,
        // Batches of commands may exceed the 4 MiB default; the server bounds them.
        "grpc.max_receive_message_length": -1,
        ...this.options.channelOptions,
      },
    );
    let failures = 0;
    try {
      while (!this.forced && !(this.stopping && this.idle())) {
        const end = await this.runSession(client);
        const fields = { code: end.status.code, details: end.status.details, in_flight: this.running.size };
        if (end.welcomed) {
          failures = 0;
          if (this.stopping || this.drainRequested) this.logger.info("session closed", fields);
          else this.logger.warn("session lost", fields);
        } else if (FATAL_HANDSHAKE_CODES.has(end.status.code) && !this.forced) {
          this.logger.error("server refused the session", { address: this.options.address, ...fields });
          throw new SessionRejectedError(`server refused the session: ${end.status.details}`, end.status.code);
        } else if (failures === 0) {
          this.logger.warn("cannot connect; retrying with backoff", { address: this.options.address, ...fields });
        } else {
          this.logger.debug("cannot connect", fields);
        }
        if (this.forced || (this.stopping && this.idle())) break;
        const delay = backoffDelay(failures++, this.options.backoff);
        this.logger.debug("reconnecting", { in_ms: delay, buffered_outcomes: this.outbox.length });
        if (this.wake.signal.aborted) this.wake = new AbortController();
        await sleep(delay, this.wake.signal);
        // Shutting down with work still running and nothing to deliver: a
        // session would only be drained and closed at once, so wait for an outcome.
        while (this.stopping && !this.forced && this.outbox.length === 0 && this.running.size > 0) {
          if (this.wake.signal.aborted) this.wake = new AbortController();
          await sleep(MAX_TIMER_MS, this.wake.signal);
        }
      }
    } finally {
      this.finished = true;
      clearTimeout(this.forceTimer);
      for (const entry of this.running.values()) {
        clearTimeout(entry.deadlineTimer);
        entry.controller.abort(new WorkerShutdownError());
      }
      client.close();
      this.logger.info("worker stopped", { dropped_outcomes: this.outbox.length || undefined });
    }
  }

  private async runSession(client: WorkerServiceClient): Promise<SessionEnd> {
    const metadata = new Metadata();
    if (this.options.token) metadata.set("authorization", `Bearer ${this.options.token}`);
    const hello: Hello = {
      workerId: this.workerId,
      workerNames: this.workerNames,
      maxConcurrency: this.maxConcurrency,
      sdkLanguage: SDK_LANGUAGE,
      sdkVersion: SDK_VERSION,
      protocolVersion: ProtocolVersion.PROTOCOL_VERSION_1,
      // The previous session's token: its commands in flight stay this process's.
      resumeToken: this.resumeToken,
    };
    this.drainRequested = false;
    const session = new Session(
      client,
      metadata,
      hello,
      {
        onWelcome: (info) => this.onWelcome(info),
        onCommand: (command) => this.startTask(command),
        onCancel: (cancel) => this.onCancel(cancel),
        onPing: () => this.sendHeartbeat(),
        onDrainRequest: (request) => this.onDrainRequest(request),
        onOutputAck: (ack) => this.running.get(ack.commandId)?.output.acknowledged(ack),
        onResumed: (resumed) => this.onResumed(resumed),
        onHeartbeatDue: () => this.sendHeartbeat(),
      },
      this.logger,
      this.options.handshakeTimeoutMs ?? 30_000,
    );
    this.session = session;
    const end = await session.done;
    this.session = undefined;
    this.emit("disconnected", end);
    return end;
  }

  private onWelcome(info: SessionInfo): void {
    this.lastInfo = info;
    this.resumeToken = this.session?.resumeToken ?? "";
    this.logger.info("connected", {
      session_id: info.sessionId,
      worker_id: this.workerId,
      workers: this.workerNames.join(","),
      max_concurrency: this.maxConcurrency,
      heartbeat_interval_ms: info.heartbeatIntervalMs,
    });
    // Outcomes buffered while disconnected go first: a server that gets Drain
    // with nothing in flight on the session ends the stream at once.
    this.flush(false);
    if (this.stopping) this.session?.send({ message: { $case: "drain", value: {} } });
    this.emit("ready", info);
    this.maybeEndSession();
  }

  /**
   * This session took over these commands of the previous one: answer again
   * those answered there; fail at once (WorkerLost, retried) those this
   * process never got or no longer remembers.
   */
  private onResumed(resumed: Resumed): void {
    const queued = new Set(this.outbox.map(outcomeCommandId));
    for (const id of resumed.commandIds) {
      if (this.running.has(id) || queued.has(id)) continue; // its answer goes on this session
      const sent = this.sent.get(id);
      if (sent?.sessionId === this.lastInfo?.sessionId) continue; // answered on this session already
      if (sent !== undefined) {
        this.logger.info("sending again the answer to a resumed command", { command_id: id });
        this.outbox.push(sent.outcome);
      } else {
        this.logger.warn("resumed command unknown here; failing it as lost", { command_id: id });
        this.outbox.push(lostOutcome(id));
      }
    }
    this.scheduleFlush();
  }

  /**
   * Remembers answers just sent; forgets those first sent over
   * RESEND_WINDOW_MS ago, and the oldest beyond RESEND_MAX_BYTES (an answer
   * sent again keeps its first time: it is not sent for ever).
   */
  private rememberSent(batch: readonly CommandOutcome[]): void {
    const now = Date.now();
    for (const outcome of batch) {
      const id = outcomeCommandId(outcome);
      if (this.sent.has(id)) continue;
      const bytes = outcomeSize(outcome) + RESEND_ENTRY_BYTES;
      this.sent.set(id, { at: now, sessionId: this.lastInfo?.sessionId ?? "", outcome, bytes });
      this.sentBytes += bytes;
    }
    for (const [id, { at, bytes }] of this.sent) {
      if (now - at <= RESEND_WINDOW_MS && this.sentBytes <= RESEND_MAX_BYTES) break;
      this.sent.delete(id);
      this.sentBytes -= bytes;
    }
  }

  private onDrainRequest(request: DrainRequest): void {
    this.logger.info("server asked to drain", { reason: request.reason, in_flight: this.running.size });
    this.drainRequested = true;
    this.maybeEndSession();
  }

  private onCancel(cancel: Cancel): void {
    const entry = this.running.get(cancel.commandId);
    if (entry === undefined) {
      this.logger.debug("cancel for a command not running here", { command_id: cancel.commandId });
      return;
    }
    this.logger.info("command cancelled", { command_id: cancel.commandId, reason: cancel.reason });
    entry.controller.abort(new CancelledError(cancel.reason || undefined));
  }

  private startTask(command: Command): void {
    const id = command.commandId;
    if (this.running.has(id)) {
      // Redelivered while the first delivery still runs: one answer covers both.
      this.logger.warn("duplicate command ignored; it is already running", { command_id: id });
      return;
    }
    const controller = new AbortController();
    let deadlineTimer: NodeJS.Timeout | undefined;
    if (command.deadline !== undefined) {
      const ms = Math.max(0, Math.min(MAX_TIMER_MS, command.deadline.getTime() - Date.now()));
      deadlineTimer = setTimeout(() => controller.abort(new DeadlineExceededError()), ms);
    }
    const output = new CommandOutput(id, (message) => {
      if (this.running.has(id)) this.session?.send(message);
    });
    const task = makeTask(command, controller.signal, (details) => this.taskHeartbeat(id, details), output);
    this.running.set(id, {
      task,
      output,
      controller,
      deadlineTimer,
      explicitHeartbeats: task.heartbeatTimeoutMs !== undefined,
    });
    this.logger.debug("command received", {
      command_id: id,
      worker: command.workerName,
      kind: task.kind,
      transaction_id: command.transactionId,
      step: command.step,
      attempt: command.attempt,
    });
    void this.execute(command, task);
  }

  private async execute(command: Command, task: Task): Promise<void> {
    const started = performance.now();
    let outcome: CommandOutcome;
    let usage: Usage | undefined;
    try {
      const handler = this.handlers.get(command.workerName);
      if (handler === undefined) {
        throw new ApplicationError(`no handler for worker "${command.workerName}" in this process`, { type: "UnknownWorker" });
      }
      const context = decodeJsonObject(command.context, "command context");
      const value = await inStepSpan(command, async () => handler(context, task));
      outcome = resultOutcome(command, value, this.lastInfo?.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES);
    } catch (err) {
      outcome = failureOutcome(command.commandId, err, task.signal);
    } finally {
      const entry = this.running.get(command.commandId);
      clearTimeout(entry?.deadlineTimer);
      this.running.delete(command.commandId);
      usage = entry?.output.toProto();
    }
    // A failed attempt reports its usage too: it still cost.
    if (usage !== undefined && outcome.outcome !== undefined) outcome.outcome.value.usage = usage;
    const fields = {
      command_id: command.commandId,
      worker: command.workerName,
      transaction_id: command.transactionId,
      step: command.step,
      attempt: command.attempt,
      ms: Math.round(performance.now() - started),
    };
    if (outcome.outcome?.$case === "failure") {
      const f = outcome.outcome.value.failure;
      this.logger.info("command failed", { ...fields, type: f?.type, non_retryable: f?.nonRetryable, error: f?.message });
    } else {
      this.logger.debug("command completed", fields);
    }
    this.outbox.push(outcome);
    this.scheduleFlush();
    if (this.stopping && this.session === undefined) this.wake.abort();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // One macrotask later, so outcomes finishing together share a message.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Sends buffered outcomes if a session is open; keeps them otherwise. */
  private flush(endIfDrained = true): void {
    const session = this.session;
    if (session === undefined || !session.writable) return;
    while (this.outbox.length > 0) {
      const count = batchLength(this.outbox);
      const batch = this.outbox.slice(0, count);
      if (!session.send(outcomesMessage(batch))) return;
      this.rememberSent(batch);
      this.outbox.splice(0, count);
    }
    if (endIfDrained) this.maybeEndSession();
  }

  /** Ends the session once a drain (ours or the server's) has nothing left to do. */
  private maybeEndSession(): void {
    const session = this.session;
    if (session === undefined || !session.writable) return;
    if (!(this.stopping || this.drainRequested)) return;
    if (this.running.size > 0 || this.outbox.length > 0) return;
    this.logger.debug("drained; closing the session");
    session.end();
  }

  private sendHeartbeat(): void {
    const ids: string[] = [];
    for (const [id, entry] of this.running) if (!entry.explicitHeartbeats) ids.push(id);
    this.session?.send({ message: { $case: "heartbeat", value: { commandIds: ids, details: undefined } } });
  }

  private taskHeartbeat(commandId: string, details: unknown): void {
    if (!this.running.has(commandId)) return;
    const payload = details === undefined ? undefined : encodeJson(details);
    this.session?.send({ message: { $case: "heartbeat", value: { commandIds: [commandId], details: payload } } });
  }

  private idle(): boolean {
    return this.running.size === 0 && this.outbox.length === 0;
  }

  private forceStop(): void {
    if (this.forced) return;
    this.forced = true;
    this.logger.warn("shutdown timed out; abandoning in-flight commands", {
      in_flight: this.running.size,
      buffered_outcomes: this.outbox.length,
    });
    for (const entry of this.running.values()) entry.controller.abort(new WorkerShutdownError());
    this.session?.cancel();
    this.wake.abort();
  }
}
