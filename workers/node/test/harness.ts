/**
 * A scripted stand-in for the orchestrator's side of WorkerService.Connect,
 * running on a real in-process grpc-js server on a free port, so the worker
 * library is tested over real gRPC without the Python server.
 */
import * as grpc from "@grpc/grpc-js";
import type { Payload } from "../src/gen/multiagents/v1/common.js";
import {
  CommandKind,
  type Command,
  type CommandFailure,
  type CommandResult,
  type ConnectRequest,
  type ConnectResponse,
  type Hello,
  ProtocolVersion,
  WorkerServiceService,
} from "../src/gen/multiagents/v1/worker_service.js";
import { consoleLogger, type Logger } from "../src/logger.js";
import { encodeJson } from "../src/payload.js";

export type ClientMessage = NonNullable<ConnectRequest["message"]>;
export type WelcomeOptions = { heartbeatIntervalMs?: number; maxPayloadBytes?: number; resumeToken?: string };
export type Outcome = { commandId: string; result?: Record<string, unknown>; failure?: CommandFailure["failure"] };

/** A logger for tests: silent unless MULTIAGENTS_LOG_LEVEL is set. */
export const quietLogger: Logger = consoleLogger(process.env["MULTIAGENTS_LOG_LEVEL"] ? undefined : "silent", "test-worker");

/** Rejects after `ms` with a message naming what was awaited. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** One Connect stream as the fake server sees it. */
export class FakeSession {
  readonly metadata: grpc.Metadata;
  readonly received: ClientMessage[] = [];
  /** Resolves when the worker half-closes its side. */
  readonly clientEnded: Promise<void>;
  private consumed = new Set<number>();
  private waiters: Array<() => void> = [];

  constructor(readonly call: grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>) {
    this.metadata = call.metadata;
    call.on("data", (request: ConnectRequest) => {
      if (request.message) this.received.push(request.message);
      for (const wake of this.waiters.splice(0)) wake();
    });
    // Like the real server: when the worker half-closes, the server ends the stream.
    this.clientEnded = new Promise((resolve) =>
      call.on("end", () => {
        resolve();
        if (FakeSession.autoEnd) this.endOk();
      }),
    );
    call.on("error", () => undefined);
  }

  /** When false, the test ends streams itself after the worker half-closes. */
  static autoEnd = true;
  private ended = false;

  /** The next not-yet-consumed message for which `match` holds. */
  async next(match: (m: ClientMessage) => boolean, what: string, ms = 5000): Promise<ClientMessage> {
    const find = (): ClientMessage | undefined => {
      for (let i = 0; i < this.received.length; i++) {
        if (!this.consumed.has(i) && match(this.received[i]!)) {
          this.consumed.add(i);
          return this.received[i];
        }
      }
      return undefined;
    };
    const deadline = Date.now() + ms;
    for (;;) {
      const found = find();
      if (found) return found;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; received: ${this.received.map((m) => m.$case).join(",")}`);
      await within(new Promise<void>((resolve) => this.waiters.push(resolve)), left, what).catch(() => undefined);
    }
  }

  async hello(): Promise<Hello> {
    const m = await this.next((m) => m.$case === "hello", "Hello");
    return (m as Extract<ClientMessage, { $case: "hello" }>).value;
  }

  /** Waits for Hello, then answers Welcome. */
  async accept(options: WelcomeOptions = {}): Promise<Hello> {
    const hello = await this.hello();
    this.welcome(options);
    return hello;
  }

  /** Answers Welcome (after Hello was awaited). */
  welcome(options: WelcomeOptions = {}): void {
    const interval = options.heartbeatIntervalMs ?? 60_000;
    this.send({
      $case: "welcome",
      value: {
        sessionId: "session-1",
        heartbeatInterval: { seconds: Math.floor(interval / 1000), nanos: (interval % 1000) * 1e6 },
        protocolVersion: ProtocolVersion.PROTOCOL_VERSION_1,
        maxPayloadBytes: options.maxPayloadBytes ?? 2 * 1024 * 1024,
        resumeToken: options.resumeToken ?? "",
      },
    });
  }

  send(message: NonNullable<ConnectResponse["message"]>): void {
    this.call.write({ message });
  }

  command(fields: Partial<Command> & { commandId: string; workerName: string }, context: Record<string, unknown> = {}): void {
    this.send({ $case: "command", value: makeCommand(fields, context) });
  }

  /** Collects `count` outcomes, from single results/failures and batches alike. */
  async outcomes(count: number, ms = 5000): Promise<Outcome[]> {
    const out: Outcome[] = [];
    while (out.length < count) {
      const m = await this.next((m) => ["result", "failure", "outcomes"].includes(m.$case), `outcome ${out.length + 1}/${count}`, ms);
      out.push(...flattenOutcomes(m));
    }
    return out;
  }

  /** Ends the stream with OK (as a server shutting down gracefully does). */
  endOk(): void {
    if (this.ended) return;
    this.ended = true;
    this.call.end();
  }

  /** Ends the stream with an error status. */
  fail(code: grpc.status, details: string): void {
    if (this.ended) return;
    this.ended = true;
    this.call.emit("error", { code, details, metadata: new grpc.Metadata() });
  }
}

export function makeCommand(fields: Partial<Command> & { commandId: string; workerName: string }, context: Record<string, unknown> = {}): Command {
  return {
    rateLimits: undefined,
    kind: CommandKind.COMMAND_KIND_EXECUTE,
    transactionId: "tx-1",
    correlationId: "corr-1",
    step: "step1",
    context: encodeJson(context),
    attempt: 1,
    deadline: new Date(Date.now() + 60_000),
    heartbeatTimeout: undefined,
    metadata: {},
    ...fields,
  };
}

export function flattenOutcomes(m: ClientMessage): Outcome[] {
  const one = (r: CommandResult | undefined, f: CommandFailure | undefined): Outcome =>
    r ? { commandId: r.commandId, result: decode(r.result) } : { commandId: f!.commandId, failure: f!.failure };
  if (m.$case === "result") return [one(m.value, undefined)];
  if (m.$case === "failure") return [one(undefined, m.value)];
  if (m.$case === "outcomes") {
    return m.value.outcomes.map((o) => (o.outcome?.$case === "result" ? one(o.outcome.value, undefined) : one(undefined, o.outcome?.value)));
  }
  return [];
}

export function decode(payload: Payload | undefined): Record<string, unknown> {
  assertJson(payload);
  return JSON.parse(payload!.data.toString()) as Record<string, unknown>;
}

function assertJson(payload: Payload | undefined): void {
  if (payload?.metadata["encoding"]?.toString() !== "json/plain") throw new Error("payload is not json/plain");
}

/** The fake orchestrator: a grpc-js server whose Connect handler queues sessions for the test. */
export class FakeOrchestrator {
  readonly sessions: FakeSession[] = [];
  private waiters: Array<() => void> = [];
  private taken = 0;

  private constructor(
    readonly server: grpc.Server,
    readonly port: number,
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  static async start(port = 0): Promise<FakeOrchestrator> {
    const server = new grpc.Server();
    let self: FakeOrchestrator | undefined;
    const pending: FakeSession[] = [];
    server.addService(WorkerServiceService, {
      connect: (call: grpc.ServerDuplexStream<ConnectRequest, ConnectResponse>) => {
        const session = new FakeSession(call);
        if (self) self.add(session);
        else pending.push(session);
      },
    });
    const bound = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    self = new FakeOrchestrator(server, bound);
    for (const s of pending) self.add(s);
    return self;
  }

  private add(session: FakeSession): void {
    this.sessions.push(session);
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** The next session the worker opens. */
  async nextSession(ms = 5000): Promise<FakeSession> {
    const index = this.taken++;
    const deadline = Date.now() + ms;
    while (this.sessions.length <= index) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for session #${index + 1}`);
      await within(new Promise<void>((resolve) => this.waiters.push(resolve)), left, "a session").catch(() => undefined);
    }
    return this.sessions[index]!;
  }

  stop(): void {
    this.server.forceShutdown();
  }
}

/** A promise with its resolve function, to hold handlers at a point the test controls. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}
