/**
 * A running command's output stream and usage: task.emit() sends chunks of
 * the step's output over the session (the server appends them to the
 * execution's durable output stream, which watchers follow); task.reportUsage()
 * adds tokens and cost to what the command's answer reports.
 */
import { OutputKind, type Usage } from "./gen/multiagents/v1/common.js";
import type { ConnectRequest, OutputAck } from "./gen/multiagents/v1/worker_service.js";

/** What a chunk holds: generated text, a fragment of JSON, or a log line. */
export type OutputKindName = "token" | "json" | "log";

/** Tokens and cost of LLM calls; cost in US dollars or in nano-dollars (1e-9 USD). */
export interface UsageReport {
  inputTokens?: number;
  outputTokens?: number;
  model?: string;
  costUsd?: number;
  costNanoUsd?: number;
}

/** Largest chunk the server accepts, in bytes. */
export const MAX_CHUNK_BYTES = 64 * 1024;
const NANO_USD_PER_USD = 1_000_000_000;
const KINDS: Record<OutputKindName, OutputKind> = {
  token: OutputKind.OUTPUT_KIND_TOKEN,
  json: OutputKind.OUTPUT_KIND_JSON,
  log: OutputKind.OUTPUT_KIND_LOG,
};

export class CommandOutput {
  private sequence = 0;
  private refused = "";
  private readonly models = new Set<string>();
  private readonly usage = { inputTokens: 0, outputTokens: 0, costNanoUsd: 0 };

  constructor(
    private readonly commandId: string,
    private readonly send: (message: ConnectRequest) => void,
  ) {}

  /** Sends a chunk now; dropped after the server refused this command's output. */
  emit(data: string | Uint8Array, kind: OutputKindName = "token"): void {
    if (!(kind in KINDS)) throw new TypeError(`kind must be "token", "json" or "log", got ${String(kind)}`);
    const size = typeof data === "string" ? Buffer.byteLength(data) : data.length;
    if (size > MAX_CHUNK_BYTES) throw new RangeError(`an output chunk is at most ${MAX_CHUNK_BYTES} bytes, got ${size}`);
    if (this.refused || size === 0) return;
    this.sequence += 1;
    this.send({
      message: {
        $case: "outputChunk",
        value: {
          commandId: this.commandId,
          sequence: this.sequence,
          kind: KINDS[kind],
          data: typeof data === "string" ? { $case: "text", value: data } : { $case: "binary", value: Buffer.from(data) },
        },
      },
    });
  }

  acknowledged(ack: OutputAck): void {
    if (ack.refused) this.refused = ack.refused;
  }

  reportUsage(report: UsageReport): void {
    const cost = (report.costNanoUsd ?? 0) + Math.round((report.costUsd ?? 0) * NANO_USD_PER_USD);
    const values = [report.inputTokens ?? 0, report.outputTokens ?? 0, cost];
    if (values.some((v) => !Number.isInteger(v) || v < 0)) {
      throw new RangeError("usage: tokens and cost must be integers >= 0");
    }
    this.usage.inputTokens += values[0]!;
    this.usage.outputTokens += values[1]!;
    this.usage.costNanoUsd += values[2]!;
    if (report.model) this.models.add(report.model);
  }

  /** The usage to send with the answer; undefined when none was reported. */
  toProto(): Usage | undefined {
    const { inputTokens, outputTokens, costNanoUsd } = this.usage;
    if (!inputTokens && !outputTokens && !costNanoUsd && this.models.size === 0) return undefined;
    return { inputTokens, outputTokens, costNanoUsd, model: [...this.models].sort().join(",") };
  }
}
