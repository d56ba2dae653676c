/**
 * The Node worker of the cross-language conformance suite (tests/ in the repo).
 *
 *   node dist/examples/conformance-worker.js --server 127.0.0.1:50051 --prefix P [--max-concurrency 4]
 *     [--spans-file PATH]
 *
 * Registers P.step, P.flaky, P.invalid, P.fail, P.compensate, P.slow and P.stream;
 * prints "READY" on stdout once the server has welcomed it; logs to stderr;
 * on SIGTERM drains gracefully and exits 0. Token: $MULTIAGENTS_TOKEN.
 * With --spans-file, an OpenTelemetry tracer provider is installed and every
 * span the process ends is appended to PATH as a JSON line (name, traceId,
 * spanId, parentSpanId, attributes, status): how the tracing test sees the
 * Node worker's spans join a workflow's trace.
 */
import { appendFileSync } from "node:fs";
import { parseArgs } from "node:util";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";
import { NonRetryableError, Worker, consoleLogger, type Task } from "../src/index.js";

const LANG = "node";

const { values } = parseArgs({
  options: {
    server: { type: "string" },
    prefix: { type: "string" },
    "max-concurrency": { type: "string", default: "4" },
    "spans-file": { type: "string" },
  },
});
if (values.server === undefined || values.prefix === undefined) {
  process.stderr.write("usage: conformance-worker --server host:port --prefix P [--max-concurrency N]\n");
  process.exit(2);
}
const prefix = values.prefix;
if (values["spans-file"] !== undefined) await recordSpansTo(values["spans-file"]);
const log = consoleLogger(undefined, "conformance-worker");

const worker = new Worker({
  address: values.server,
  maxConcurrency: Number(values["max-concurrency"]),
  token: process.env["MULTIAGENTS_TOKEN"] || undefined,
  logger: log,
});

worker.register(`${prefix}.step`, (ctx, task) => ({
  visited: [...((ctx["visited"] as unknown[] | undefined) ?? []), LANG],
  last_lang: LANG,
  [`step_${task.step}`]: LANG,
}));

worker.register(`${prefix}.flaky`, (ctx, task) => {
  const succeedOn = Number(ctx["succeed_on_attempt"] ?? 2);
  if (task.attempt < succeedOn) throw new Error(`flaky attempt ${task.attempt}`);
  return { flaky_attempts: task.attempt, last_lang: LANG };
});

worker.register(`${prefix}.invalid`, () => {
  throw new NonRetryableError("invalid input", "ValueError");
});

worker.register(`${prefix}.fail`, () => {
  throw new Error(`boom from ${LANG}`, { cause: new Error(`gateway refused ${LANG}`) });
});

worker.register(`${prefix}.compensate`, (_ctx, task) => ({ compensated_by: LANG, compensated_step: task.step }));

worker.register(`${prefix}.slow`, async (ctx, task) => {
  const sleepMs = Number(ctx["sleep_ms"] ?? 1000);
  await sliceSleep(sleepMs, task);
  return { slept_ms: sleepMs, last_lang: LANG };
});

/**
 * Publishes `chunks` (default 20) tokens "node:<i>;" and a log line, reports
 * usage (7 input tokens, one output token and 1,000 nano-USD per chunk,
 * model "node-model"), and fails its first attempt when fail_first.
 */
worker.register(`${prefix}.stream`, (ctx, task) => {
  const n = Number(ctx["chunks"] ?? 20);
  for (let i = 0; i < n; i++) task.emit(`${LANG}:${i};`);
  task.emit("done\n", "log");
  task.reportUsage({ inputTokens: 7, outputTokens: n, model: `${LANG}-model`, costNanoUsd: 1000 * n });
  if (ctx["fail_first"] === true && task.attempt === 1) throw new Error(`stream attempt ${task.attempt} failed`);
  return { streamed: n, last_lang: LANG };
});

/** Sleeps in 50 ms slices, heartbeating every 100 ms; rejects when the task is aborted. */
async function sliceSleep(totalMs: number, task: Task): Promise<void> {
  const start = Date.now();
  let lastBeat = start;
  for (;;) {
    task.signal.throwIfAborted();
    const elapsed = Date.now() - start;
    if (elapsed >= totalMs) return;
    if (Date.now() - lastBeat >= 100) {
      lastBeat = Date.now();
      task.heartbeat({ progress: Math.min(1, elapsed / totalMs) });
    }
    await abortableDelay(Math.min(50, totalMs - elapsed), task.signal);
  }
}

function abortableDelay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Installs a tracer provider that appends every ended span to `path` as a JSON line. */
async function recordSpansTo(path: string): Promise<void> {
  const { context, trace } = await import("@opentelemetry/api");
  const { AsyncLocalStorageContextManager } = await import("@opentelemetry/context-async-hooks");
  const { BasicTracerProvider, SimpleSpanProcessor } = await import("@opentelemetry/sdk-trace-base");
  const toFile: SpanExporter = {
    export(spans: ReadableSpan[], done) {
      for (const span of spans) {
        const line = {
          name: span.name,
          traceId: span.spanContext().traceId,
          spanId: span.spanContext().spanId,
          parentSpanId: span.parentSpanContext?.spanId ?? null,
          attributes: span.attributes,
          status: span.status.code,
        };
        appendFileSync(path, JSON.stringify(line) + "\n");
      }
      done({ code: 0 }); // ExportResultCode.SUCCESS
    },
    shutdown: async () => {},
  };
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(toFile)] }));
}

worker.once("ready", () => process.stdout.write("READY\n"));
for (const sig of ["SIGTERM", "SIGINT"] as const) {
  process.once(sig, () => {
    log.info(`${sig}: draining`);
    void worker.shutdown();
  });
}

try {
  await worker.run();
  process.exit(0);
} catch (err) {
  log.error("stopped", { error: (err as Error).stack ?? String(err) });
  process.exit(1);
}
