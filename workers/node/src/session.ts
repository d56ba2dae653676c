/**
 * One WorkerService.Connect stream: sends Hello, waits for Welcome, hands the
 * server's messages to the worker, sends heartbeats on the server's interval,
 * and reports how the stream ended. Reconnecting is the worker's job.
 */
import type { Metadata, StatusObject } from "@grpc/grpc-js";
import { status as Status } from "@grpc/grpc-js";
import {
  type Cancel,
  type Command,
  type ConnectRequest,
  type ConnectResponse,
  type DrainRequest,
  type Hello,
  type OutputAck,
  type ProtocolVersion,
  type Resumed,
  type Welcome,
  type WorkerServiceClient,
} from "./gen/multiagents/v1/worker_service.js";
import type { Logger } from "./logger.js";
import { durationMs } from "./task.js";

/** What the server said in Welcome. */
export interface SessionInfo {
  sessionId: string;
  /** How often the worker sends a Heartbeat, in ms. */
  heartbeatIntervalMs: number;
  /** Largest payload the server accepts, in bytes. */
  maxPayloadBytes: number;
  protocolVersion: ProtocolVersion;
}

/** How a session ended. */
export interface SessionEnd {
  /** True when Welcome had arrived. */
  welcomed: boolean;
  /** The stream's final gRPC status. */
  status: StatusObject;
}

/** The worker's reactions to server messages. */
export interface SessionHandlers {
  onWelcome(info: SessionInfo): void;
  onCommand(command: Command): void;
  onCancel(cancel: Cancel): void;
  onPing(): void;
  onDrainRequest(request: DrainRequest): void;
  onOutputAck(ack: OutputAck): void;
  /** The session took over these commands of the previous one. */
  onResumed(resumed: Resumed): void;
  /** Called every heartbeat interval after Welcome. */
  onHeartbeatDue(): void;
}

/** Used when Welcome carries no interval. */
const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;
/** Used when Welcome carries no limit (the server's documented default). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 2 * 1024 * 1024;

export class Session {
  readonly done: Promise<SessionEnd>;
  private readonly call;
  private info: SessionInfo | undefined;
  private open = true;
  private halfClosed = false;
  private token = "";
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private closeTimer: NodeJS.Timeout | undefined;

  constructor(
    client: WorkerServiceClient,
    metadata: Metadata,
    hello: Hello,
    private readonly handlers: SessionHandlers,
    private readonly logger: Logger,
    handshakeTimeoutMs: number,
  ) {
    this.call = client.connect(metadata);
    this.done = new Promise<SessionEnd>((resolve) => {
      // grpc-js always emits "status" exactly once, after "error" for non-OK codes.
      this.call.on("status", (status: StatusObject) => {
        this.open = false;
        this.clearTimers();
        resolve({ welcomed: this.info !== undefined, status });
      });
    });
    // Errors also arrive as the "status" event; this listener keeps them from being thrown.
    this.call.on("error", () => undefined);
    this.call.on("data", (message: ConnectResponse) => this.dispatch(message));
    this.handshakeTimer = setTimeout(() => {
      this.logger.warn("no Welcome from the server in time; retrying", { timeout_ms: handshakeTimeoutMs });
      this.cancel();
    }, handshakeTimeoutMs);
    this.call.write({ message: { $case: "hello", value: hello } } satisfies ConnectRequest);
  }

  /**
   * The Welcome's resume token ("" before it): sent as Hello.resumeToken by the
   * next session to keep this one's commands in flight. A secret, so not part
   * of the SessionInfo given to listeners.
   */
  get resumeToken(): string {
    return this.token;
  }

  /** The Welcome of this session, once it arrived. */
  get welcome(): SessionInfo | undefined {
    return this.info;
  }

  /** True while messages can be sent: welcomed, not ended, not half-closed. */
  get writable(): boolean {
    return this.open && !this.halfClosed && this.info !== undefined;
  }

  /** Sends a message; false when the session is not writable (nothing was sent). */
  send(message: ConnectRequest): boolean {
    if (!this.writable) return false;
    this.call.write(message);
    return true;
  }

  /**
   * Half-closes the stream: the worker has nothing more to say. The server
   * then ends the stream; if it has not after `closeTimeoutMs`, the call is cancelled.
   */
  end(closeTimeoutMs = 5_000): void {
    if (!this.open || this.halfClosed) return;
    this.halfClosed = true;
    this.call.end();
    this.closeTimer = setTimeout(() => this.cancel(), closeTimeoutMs);
  }

  /** Cancels the call at once (the status becomes CANCELLED). */
  cancel(): void {
    if (this.open) this.call.cancel();
  }

  private dispatch(response: ConnectResponse): void {
    const message = response.message;
    if (message === undefined) return;
    try {
      if (this.info === undefined && message.$case !== "welcome") {
        this.logger.warn("server sent a message before Welcome; dropping the session", { message: message.$case });
        this.cancel();
        return;
      }
      switch (message.$case) {
        case "welcome":
          return this.onWelcome(message.value);
        case "command":
          return this.handlers.onCommand(message.value);
        case "commands":
          for (const command of message.value.commands) this.handlers.onCommand(command);
          return;
        case "cancel":
          return this.handlers.onCancel(message.value);
        case "ping":
          return this.handlers.onPing();
        case "drainRequest":
          return this.handlers.onDrainRequest(message.value);
        case "outputAck":
          return this.handlers.onOutputAck(message.value);
        case "resumed":
          return this.handlers.onResumed(message.value);
        default: {
          const unknown: never = message;
          this.logger.warn("unknown server message", { message: (unknown as { $case: string }).$case });
        }
      }
    } catch (err) {
      // A bug in a handler must not take the stream (and the process) down with it.
      this.logger.error("error while handling a server message", { message: message.$case, error: err });
    }
  }

  private onWelcome(welcome: Welcome): void {
    if (this.info !== undefined) {
      this.logger.warn("duplicate Welcome ignored", { session_id: welcome.sessionId });
      return;
    }
    clearTimeout(this.handshakeTimer);
    this.info = {
      sessionId: welcome.sessionId,
      heartbeatIntervalMs: Math.max(50, durationMs(welcome.heartbeatInterval) ?? DEFAULT_HEARTBEAT_INTERVAL_MS),
      maxPayloadBytes: welcome.maxPayloadBytes > 0 ? welcome.maxPayloadBytes : DEFAULT_MAX_PAYLOAD_BYTES,
      protocolVersion: welcome.protocolVersion,
    };
    this.token = welcome.resumeToken;
    this.heartbeatTimer = setInterval(() => {
      try {
        this.handlers.onHeartbeatDue();
      } catch (err) {
        this.logger.error("error while sending a heartbeat", { error: err });
      }
    }, this.info.heartbeatIntervalMs);
    this.handlers.onWelcome(this.info);
  }

  private clearTimers(): void {
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.closeTimer);
    clearInterval(this.heartbeatTimer);
  }
}

/** Status codes that mean "this Hello will never be accepted": do not retry. */
export const FATAL_HANDSHAKE_CODES: ReadonlySet<number> = new Set([
  Status.UNAUTHENTICATED,
  Status.PERMISSION_DENIED,
  Status.INVALID_ARGUMENT,
  Status.UNIMPLEMENTED,
]);
