/**
 * With @opentelemetry/api and a tracer provider installed, a handler runs in
 * a span that continues the command's traceparent (the server's span of the
 * attempt), and the spans it starts join that trace.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { context, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { Worker } from "../src/index.js";
import { FakeOrchestrator, quietLogger } from "./harness.js";

const exporter = new InMemorySpanExporter();
const contextManager = new AsyncLocalStorageContextManager().enable();
context.setGlobalContextManager(contextManager);
trace.setGlobalTracerProvider(new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }));
after(() => {
  trace.disable();
  context.disable();
});

const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const ATTEMPT_SPAN_ID = "b7ad6b7169203331";

describe("tracing", () => {
  it("runs each handler in a span that continues the command's traceparent", async () => {
    const orch = await FakeOrchestrator.start();
    const worker = new Worker({ address: orch.address, logger: quietLogger });
    let inside: string | undefined;
    worker.register("pay", async () => {
      const span = trace.getTracer("app").startSpan("inside the handler");
      span.end();
      inside = trace.getActiveSpan()?.spanContext().traceId;
      return {};
    });
    worker.register("boom", () => {
      throw new Error("no");
    });
    const run = worker.run();
    try {
      const session = await orch.nextSession();
      await session.accept();
      const traceparent = `00-${TRACE_ID}-${ATTEMPT_SPAN_ID}-01`;
      session.command({ commandId: "tx:x0:1", workerName: "pay", step: "a", attempt: 1, metadata: { traceparent } });
      session.command({ commandId: "tx:x1:2", workerName: "boom", step: "b", attempt: 2, metadata: { traceparent } });
      await session.outcomes(2);
    } finally {
      await worker.shutdown({ timeoutMs: 1000 });
      await run;
      await orch.stop();
    }
    const spans = exporter.getFinishedSpans();
    const ran = spans.find((s) => s.name === "run pay")!;
    const failed = spans.find((s) => s.name === "run boom")!;
    const user = spans.find((s) => s.name === "inside the handler")!;
    assert.equal(ran.spanContext().traceId, TRACE_ID);
    assert.equal(ran.parentSpanContext?.spanId, ATTEMPT_SPAN_ID);
    assert.equal(ran.attributes["multiagents.command_id"], "tx:x0:1");
    assert.equal(user.spanContext().traceId, TRACE_ID);
    assert.equal(user.parentSpanContext?.spanId, ran.spanContext().spanId);
    assert.equal(inside, TRACE_ID); // the handler's active span is the run span
    assert.equal(failed.status.code, 2 /* ERROR */);
    assert.equal(failed.attributes["multiagents.attempt"], 2);
  });
});
