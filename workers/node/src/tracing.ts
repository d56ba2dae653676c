/**
 * Worker spans that join the workflow's trace (docs/protocol.md, "Tracing").
 *
 * Each command carries a W3C `traceparent` in its metadata naming the
 * server's span of its step attempt. When the application has installed
 * `@opentelemetry/api` (an optional peer dependency: this library never
 * requires it), each handler runs inside a span `run <worker name>` (kind
 * CONSUMER) that continues it, made active, so the spans the handler creates
 * join the workflow's trace. They are recorded by the tracer provider the
 * application registers; without one, the API records nothing.
 */
import type { Command } from "./gen/multiagents/v1/worker_service.js";

type OtelApi = typeof import("@opentelemetry/api");

/** The API once looked for: the module, or null when it is not installed. */
let found: Promise<OtelApi | null> | undefined;

function otel(): Promise<OtelApi | null> {
  found ??= import("@opentelemetry/api").catch(() => null);
  return found;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** Runs `run` inside the span of `command`, or as is without the API. */
export async function inStepSpan<T>(command: Command, run: () => Promise<T>): Promise<T> {
  const api = await otel();
  if (api === null) return run();
  let parent = api.ROOT_CONTEXT;
  const carried = TRACEPARENT.exec(command.metadata["traceparent"] ?? "");
  if (carried !== null) {
    parent = api.trace.setSpanContext(parent, {
      traceId: carried[1]!,
      spanId: carried[2]!,
      traceFlags: parseInt(carried[3]!, 16),
      isRemote: true,
    });
  }
  const attributes = {
    "multiagents.transaction_id": command.transactionId,
    "multiagents.step": command.step,
    "multiagents.attempt": command.attempt,
    "multiagents.command_id": command.commandId,
    "multiagents.worker": command.workerName,
  };
  const tracer = api.trace.getTracer("multiagents");
  return tracer.startActiveSpan(
    `run ${command.workerName}`,
    { kind: api.SpanKind.CONSUMER, attributes },
    parent,
    async (span) => {
      try {
        return await run();
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        span.recordException(error);
        span.setStatus({ code: api.SpanStatusCode.ERROR, message: error.message });
        throw err;
      } finally {
        span.end();
      }
    },
  );
}
