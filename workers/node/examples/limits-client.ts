/**
 * Shared rate limits from the Node client, for the conformance suite
 * (tests/conformance/test_rate_limits.py; its Go twin is
 * workers/go/cmd/limits-client):
 *
 *   node dist/examples/limits-client.js --server 127.0.0.1:50051 --prefix P
 *
 * Declares the limits of docs/workflows.md ("Rate limits and concurrency
 * keys": provider:openai, 500 requests and 90,000 tokens a minute; tenant:*,
 * 2 attempts at once per tenant) and registers its workflow "answer" (step
 * "draft" of worker "drafter", with a usage estimate and both keys, one by
 * a key expression on context.customer_id) with the code shown there. It
 * serves "drafter" itself: sleeps context.sleep_ms and counts how many
 * attempts of one customer run at once. It starts 4 executions for customer
 * "P-a" (2 s each) and one for "P-b" (0.1 s), waits until a step of P-a's
 * shows that it waits for its tenant's limit, and for every end; reads the
 * limits back; registers a step whose key expression does not parse and
 * declares a key with a space (both refused); deletes both limits. Prints
 * one JSON line of what it saw; exits 1 on any other error.
 */
import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";
import type { ServiceError } from "@grpc/grpc-js";
import { Client, Worker, WorkflowBuilder, type RateLimitView } from "../src/index.js";

const { values } = parseArgs({ options: { server: { type: "string" }, prefix: { type: "string" } } });
if (!values.server || !values.prefix) {
  console.error("usage: limits-client --server host:port --prefix P");
  process.exit(2);
}
const prefix = values.prefix;
const token = process.env["MULTIAGENTS_TOKEN"] || undefined;
const client = new Client({ address: values.server, token });
const worker = new Worker({ address: values.server, maxConcurrency: 8, token });

/** Customer id -> attempts of "drafter" running now, and the most at once. */
const running = new Map<string, number>();
const mostAtOnce: Record<string, number> = {};
worker.register("drafter", async (ctx) => {
  const customer = String(ctx["customer_id"]);
  const now = (running.get(customer) ?? 0) + 1;
  running.set(customer, now);
  mostAtOnce[customer] = Math.max(mostAtOnce[customer] ?? 0, now);
  try {
    await sleep(Number(ctx["sleep_ms"]));
  } finally {
    running.set(customer, (running.get(customer) ?? 1) - 1);
  }
  return { drafted_for: customer };
});

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** The gRPC status code and message of a refused call (code 0 had it been accepted). */
function refusal(call: Promise<unknown>): Promise<{ code: number; message: string }> {
  return call.then(
    () => ({ code: 0, message: "" }),
    (err: ServiceError) => ({ code: err.code, message: err.details }),
  );
}

function limitJson(l: RateLimitView): Record<string, unknown> {
  return { key: l.key, requests: l.requests, tokens: l.tokens, period_ms: l.periodMs, max_concurrent: l.maxConcurrent, backoff_ms: l.backoffMs };
}

const serving = worker.run();
try {
  await Promise.race([
    new Promise((resolve) => worker.once("ready", resolve)),
    serving.then(() => Promise.reject(new Error("the worker stopped before it was ready"))),
  ]);

  // docs/workflows.md, "Rate limits and concurrency keys":
  await client.putRateLimit("provider:openai", { requests: 500, tokens: 90_000, periodMs: 60_000 });
  await client.putRateLimit("tenant:*", { maxConcurrent: 2 }); // each tenant on its own

  const spec = new WorkflowBuilder("answer")
    .addStep("draft", "drafter", {
      usageEstimate: { inputTokens: 1_500, outputTokens: 500 },
      rateLimits: ["provider:openai", { keyExpression: '"tenant:" + context.customer_id' }],
    })
    .build();
  await client.registerWorkflow(spec);

  const a: string[] = [];
  for (let i = 0; i < 4; i++) a.push(await client.executeWorkflow("answer", { customer_id: `${prefix}-a`, sleep_ms: 4000 }));
  const b = await client.executeWorkflow("answer", { customer_id: `${prefix}-b`, sleep_ms: 100 });
  const waiting = await until("a step of P-a waiting for its limit", async () => {
    for (const tx of a) {
      const progress = (await client.getStatus(tx)).steps[0]!.progress;
      if (progress !== undefined && "waiting_for_rate_limit" in progress) return progress;
    }
    return undefined;
  });
  const states: Record<string, string> = {};
  for (const tx of [...a, b]) states[tx] = (await client.wait(tx)).state;

  const tenant = await client.getRateLimit("tenant:*");
  const listed = (await client.listRateLimits()).filter((l) => l.key === "provider:openai" || l.key === "tenant:*");
  const badExpression = await refusal(
    client.registerWorkflow(new WorkflowBuilder(`${prefix}.bad_key`).addStep("draft", "drafter", { rateLimits: [{ keyExpression: '"tenant:" + context.' }] }).build()),
  );
  const badKey = await refusal(client.putRateLimit("tenant acme", { maxConcurrent: 1 }));
  await client.deleteRateLimit("provider:openai");
  await client.deleteRateLimit("tenant:*");
  const afterDelete = { get: (await refusal(client.getRateLimit("tenant:*"))).code, delete: (await refusal(client.deleteRateLimit("tenant:*"))).code };
  console.log(
    JSON.stringify({
      a,
      b,
      waiting,
      states,
      most_at_once: mostAtOnce,
      tenant: limitJson(tenant),
      listed: listed.map(limitJson),
      bad_expression: badExpression,
      bad_key: badKey,
      after_delete: afterDelete,
    }),
  );
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  client.close();
  await worker.shutdown();
  await serving.catch(() => undefined);
}
