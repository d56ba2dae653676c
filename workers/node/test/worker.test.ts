/**
 * The worker library against a scripted WorkerService peer over real gRPC.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { afterEach, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { FailureKind } from "../src/gen/multiagents/v1/common.js";
import { CommandKind, ProtocolVersion } from "../src/gen/multiagents/v1/worker_service.js";
import { backoffDelay } from "../src/backoff.js";
import {
  CancelledError,
  DeadlineExceededError,
  MAX_CAUSE_DEPTH,
  NonRetryableError,
  SDK_VERSION,
  SessionRejectedError,
  Worker,
  type Task,
  type WorkerOptions,
} from "../src/index.js";
import { FakeOrchestrator, gate, makeCommand, quietLogger, within, type FakeSession } from "./harness.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(
  register: (worker: Worker) => void,
  options: Partial<WorkerOptions> = {},
): Promise<{ orch: FakeOrchestrator; worker: Worker; run: Promise<void> }> {
  const orch = await FakeOrchestrator.start();
  cleanups.push(() => orch.stop());
  const worker = new Worker({ address: orch.address, logger: quietLogger, backoff: { initialMs: 20, maxMs: 100 }, ...options });
  register(worker);
  const run = worker.run();
  run.catch(() => undefined);
  cleanups.push(() => worker.shutdown({ timeoutMs: 1000 }));
  return { orch, worker, run };
}

async function connected(orch: FakeOrchestrator, options?: Parameters<FakeSession["accept"]>[0]): Promise<FakeSession> {
  const session = await orch.nextSession();
  await session.accept(options);
  return session;
}

describe("session handshake", () => {
  it("sends Hello with its worker names, capacity, language, versions, and the bearer token", async () => {
    const { orch } = await setup(
      (w) => {
        w.register("a.one", () => ({}));
        w.register("a.two", () => ({}));
      },
      { maxConcurrency: 3, token: "s3cret", workerId: "host-42" },
    );
    const session = await orch.nextSession();
    const hello = await session.hello();
    assert.deepEqual(hello, {
      workerId: "host-42",
      workerNames: ["a.one", "a.two"],
      maxConcurrency: 3,
      sdkLanguage: "node",
      sdkVersion: SDK_VERSION,
      protocolVersion: ProtocolVersion.PROTOCOL_VERSION_1,
      resumeToken: "", // a first session resumes nothing
    });
    assert.deepEqual(session.metadata.get("authorization"), ["Bearer s3cret"]);
  });

  it("defaults worker_id to host-pid and sends no authorization without a token", async () => {
    const { orch } = await setup((w) => w.register("a", () => ({})));
    const session = await orch.nextSession();
    const hello = await session.hello();
    assert.match(hello.workerId, new RegExp(`-${process.pid}$`));
    assert.deepEqual(session.metadata.get("authorization"), []);
  });

  it("emits ready with the Welcome's session info", async () => {
    const { orch, worker } = await setup((w) => w.register("a", () => ({})));
    const ready = new Promise((resolve) => worker.once("ready", resolve));
    await connected(orch, { heartbeatIntervalMs: 1500, maxPayloadBytes: 1234 });
    assert.deepEqual(await within(ready, 2000, "ready"), {
      sessionId: "session-1",
      heartbeatIntervalMs: 1500,
      maxPayloadBytes: 1234,
      protocolVersion: ProtocolVersion.PROTOCOL_VERSION_1,
    });
  });

  it("rejects run() with SessionRejectedError when the server refuses the session", async () => {
    const { orch, run } = await setup((w) => w.register("a", () => ({})));
    const session = await orch.nextSession();
    await session.hello();
    session.fail(grpc.status.UNAUTHENTICATED, "bad token");
    await assert.rejects(within(run, 3000, "run()"), (err: unknown) => {
      assert.ok(err instanceof SessionRejectedError);
      assert.equal(err.code, grpc.status.UNAUTHENTICATED);
      return true;
    });
  });
});

describe("commands", () => {
  it("runs the handler with the context and task, and answers with its JSON result", async () => {
    let seen: { ctx: unknown; task: Task } | undefined;
    const { orch } = await setup((w) =>
      w.register("pay", (ctx, task) => {
        seen = { ctx, task };
        return { charged: true, amount: ctx["amount"] };
      }),
    );
    const session = await connected(orch);
    const deadline = new Date(Date.now() + 30_000);
    session.command(
      {
        commandId: "c1",
        workerName: "pay",
        kind: CommandKind.COMMAND_KIND_COMPENSATE,
        step: "charge",
        attempt: 2,
        deadline,
        transactionId: "tx-9",
        correlationId: "corr-9",
        heartbeatTimeout: { seconds: 3, nanos: 0 },
        metadata: { traceparent: "00-abc" },
      },
      { amount: 12 },
    );
    assert.deepEqual(await session.outcomes(1), [{ commandId: "c1", result: { charged: true, amount: 12 } }]);
    assert.deepEqual(seen?.ctx, { amount: 12 });
    const task = seen!.task;
    assert.equal(task.commandId, "c1");
    assert.equal(task.kind, "compensate");
    assert.equal(task.workerName, "pay");
    assert.equal(task.transactionId, "tx-9");
    assert.equal(task.correlationId, "corr-9");
    assert.equal(task.step, "charge");
    assert.equal(task.attempt, 2);
    assert.equal(task.deadline?.getTime(), deadline.getTime());
    assert.equal(task.heartbeatTimeoutMs, 3000);
    assert.deepEqual(task.metadata, { traceparent: "00-abc" });
    assert.equal(task.signal.aborted, false);
  });

  it("answers {} when the handler returns nothing or null", async () => {
    const { orch } = await setup((w) => {
      w.register("nothing", () => undefined);
      w.register("null", async () => null);
    });
    const session = await connected(orch);
    session.command({ commandId: "c1", workerName: "nothing" });
    session.command({ commandId: "c2", workerName: "null" });
    const outcomes = await session.outcomes(2);
    assert.deepEqual(
      outcomes.sort((a, b) => a.commandId.localeCompare(b.commandId)),
      [
        { commandId: "c1", result: {} },
        { commandId: "c2", result: {} },
      ],
    );
  });

  it("maps thrown errors to retryable or non-retryable Failures", async () => {
    class PaymentDeclined extends Error {}
    const { orch } = await setup((w) => {
      w.register("retryable", () => {
        throw new Error("boom");
      });
      w.register("invalid", () => {
        throw new NonRetryableError("bad input");
      });
      w.register("typed", async () => {
        throw new NonRetryableError("no such card", "CardError", { details: { card: "x" } });
      });
      w.register("custom", () => {
        throw new PaymentDeclined("declined");
      });
      w.register("string", () => {
        throw "plain string";
      });
      w.register("array", () => [1, 2] as unknown as Record<string, unknown>);
      w.register("bigint", () => ({ n: 1n }));
    });
    const session = await connected(orch);
    for (const name of ["retryable", "invalid", "typed", "custom", "string", "array", "bigint"]) {
      session.command({ commandId: name, workerName: name });
    }
    const byId = new Map((await session.outcomes(7)).map((o) => [o.commandId, o.failure]));
    const summary = (id: string) => {
      const f = byId.get(id)!;
      return { type: f.type, nonRetryable: f.nonRetryable, message: f.message };
    };
    assert.deepEqual(summary("retryable"), { type: "Error", nonRetryable: false, message: "boom" });
    assert.match(byId.get("retryable")!.stackTrace, /Error: boom\n\s+at /);
    assert.deepEqual(summary("invalid"), { type: "ValueError", nonRetryable: true, message: "bad input" });
    assert.deepEqual(summary("typed"), { type: "CardError", nonRetryable: true, message: "no such card" });
    assert.deepEqual(JSON.parse(byId.get("typed")!.details!.data.toString()), { card: "x" });
    assert.deepEqual(summary("custom"), { type: "PaymentDeclined", nonRetryable: false, message: "declined" });
    assert.deepEqual(summary("string"), { type: "Error", nonRetryable: false, message: "plain string" });
    assert.equal(summary("array").type, "TypeError");
    assert.equal(summary("array").nonRetryable, true);
    assert.match(summary("array").message, /must return a JSON object.*array/);
    assert.equal(summary("bigint").type, "TypeError");
    assert.equal(summary("bigint").nonRetryable, true);
    // A handler's error is APPLICATION; a result the SDK cannot send is INVALID_RESULT.
    assert.equal(byId.get("retryable")!.kind, FailureKind.FAILURE_KIND_APPLICATION);
    assert.equal(byId.get("array")!.kind, FailureKind.FAILURE_KIND_INVALID_RESULT);
  });

  it("sends an error's cause chain, up to MAX_CAUSE_DEPTH levels", async () => {
    let deep: Error = new Error("root");
    for (let i = 0; i < 12; i++) deep = new Error(`level ${i}`, { cause: deep });
    const { orch } = await setup((w) => {
      w.register("wrapped", () => {
        throw new NonRetryableError("charge failed", "ChargeError", { cause: new TypeError("bad card") });
      });
      w.register("deep", () => {
        throw deep;
      });
    });
    const session = await connected(orch);
    session.command({ commandId: "wrapped", workerName: "wrapped" });
    session.command({ commandId: "deep", workerName: "deep" });
    const byId = new Map((await session.outcomes(2)).map((o) => [o.commandId, o.failure!]));
    const wrapped = byId.get("wrapped")!;
    assert.deepEqual([wrapped.type, wrapped.cause?.type, wrapped.cause?.message, wrapped.cause?.kind], ["ChargeError", "TypeError", "bad card", FailureKind.FAILURE_KIND_APPLICATION]);
    assert.equal(wrapped.cause?.cause, undefined);
    let depth = 0;
    for (let f = byId.get("deep")!.cause; f !== undefined; f = f.cause) depth++;
    assert.equal(depth, MAX_CAUSE_DEPTH);
  });

  it("fails a result over the server's payload limit without retry", async () => {
    const { orch } = await setup((w) => w.register("big", () => ({ blob: "x".repeat(500) })));
    const session = await connected(orch, { maxPayloadBytes: 100 });
    session.command({ commandId: "c1", workerName: "big" });
    const [outcome] = await session.outcomes(1);
    assert.equal(outcome!.failure?.type, "PayloadTooLarge");
    assert.equal(outcome!.failure?.nonRetryable, true);
    assert.match(outcome!.failure!.message, /over the server's limit of 100 bytes/);
  });

  it("fails a command for a worker name it does not serve (retryable) and a bad context (not retryable)", async () => {
    const { orch } = await setup((w) => w.register("known", () => ({})));
    const session = await connected(orch);
    session.command({ commandId: "c1", workerName: "unknown" });
    session.send({
      $case: "command",
      value: { ...makeCommand({ commandId: "c2", workerName: "known" }), context: { metadata: {}, data: Buffer.from("[1]") } },
    });
    const byId = new Map((await session.outcomes(2)).map((o) => [o.commandId, o.failure]));
    assert.equal(byId.get("c1")?.type, "UnknownWorker");
    assert.equal(byId.get("c1")?.nonRetryable, false);
    assert.equal(byId.get("c2")?.type, "PayloadDecodeError");
    assert.equal(byId.get("c2")?.nonRetryable, true);
  });

  it("runs a Commands batch concurrently and answers every command", async () => {
    const release = gate();
    let running = 0;
    let peak = 0;
    const { orch } = await setup(
      (w) =>
        w.register("wait", async (ctx) => {
          running++;
          peak = Math.max(peak, running);
          await release.promise;
          running--;
          return { n: ctx["n"] };
        }),
      { maxConcurrency: 3 },
    );
    const session = await connected(orch);
    session.send({
      $case: "commands",
      value: { commands: [0, 1, 2].map((n) => makeCommand({ commandId: `c${n}`, workerName: "wait" }, { n })) },
    });
    while (peak < 3) await new Promise((r) => setTimeout(r, 5));
    release.open();
    const outcomes = await session.outcomes(3);
    assert.deepEqual(
      outcomes.map((o) => [o.commandId, o.result?.["n"]]).sort(),
      [
        ["c0", 0],
        ["c1", 1],
        ["c2", 2],
      ],
    );
    // Outcomes that are ready together share one CommandOutcomes message.
    assert.ok(session.received.some((m) => m.$case === "outcomes" && m.value.outcomes.length > 1));
  });

  it("aborts the task's signal on Cancel, and the answer is still sent", async () => {
    let reason: unknown;
    const started = gate();
    const { orch } = await setup((w) =>
      w.register("long", (_ctx, task) => {
        started.open();
        return new Promise((_, reject) =>
          task.signal.addEventListener("abort", () => {
            reason = task.signal.reason;
            reject(task.signal.reason);
          }),
        );
      }),
    );
    const session = await connected(orch);
    session.command({ commandId: "c1", workerName: "long" });
    await within(started.promise, 2000, "handler start");
    session.send({ $case: "cancel", value: { commandId: "c1", reason: "workflow cancelled" } });
    const [outcome] = await session.outcomes(1);
    assert.ok(reason instanceof CancelledError);
    assert.equal(outcome!.failure?.type, "Cancelled");
    assert.equal(outcome!.failure?.kind, FailureKind.FAILURE_KIND_CANCELLED);
    assert.equal(outcome!.failure?.message, "workflow cancelled");
  });

  it("aborts the task's signal at the command's deadline", async () => {
    const { orch } = await setup((w) =>
      w.register("long", (_ctx, task) => new Promise((_, reject) => task.signal.addEventListener("abort", () => reject(task.signal.reason)))),
    );
    const session = await connected(orch);
    const sent = Date.now();
    session.command({ commandId: "c1", workerName: "long", deadline: new Date(Date.now() + 150) });
    const [outcome] = await session.outcomes(1);
    assert.equal(outcome!.failure?.type, "StepTimeout");
    assert.equal(outcome!.failure?.kind, FailureKind.FAILURE_KIND_TIMEOUT);
    assert.equal(outcome!.failure?.nonRetryable, false);
    assert.ok(Date.now() - sent >= 140, "aborted before the deadline");
    assert.equal(new DeadlineExceededError().name, "DeadlineExceededError");
  });
});

describe("heartbeats", () => {
  it("sends periodic heartbeats listing in-flight commands, except those with a heartbeat timeout", async () => {
    const release = gate();
    const { orch } = await setup((w) => w.register("wait", () => release.promise.then(() => ({}))));
    const session = await connected(orch, { heartbeatIntervalMs: 100 });
    session.command({ commandId: "plain", workerName: "wait" });
    session.command({ commandId: "timed", workerName: "wait", heartbeatTimeout: { seconds: 1, nanos: 0 } });
    const beat = await session.next(
      (m) => m.$case === "heartbeat" && m.value.commandIds.length > 0,
      "a heartbeat with command ids",
      2000,
    );
    assert.ok(beat.$case === "heartbeat");
    assert.deepEqual(beat.value.commandIds, ["plain"]);
    release.open();
    await session.outcomes(2);
  });

  it("keeps an idle session alive with empty heartbeats", async () => {
    const { orch } = await setup((w) => w.register("a", () => ({})));
    const session = await connected(orch, { heartbeatIntervalMs: 80 });
    const beat = await session.next((m) => m.$case === "heartbeat", "a heartbeat", 2000);
    assert.ok(beat.$case === "heartbeat");
    assert.deepEqual(beat.value.commandIds, []);
  });

  it("answers Ping with a Heartbeat", async () => {
    const { orch } = await setup((w) => w.register("a", () => ({})));
    const session = await connected(orch);
    session.send({ $case: "ping", value: {} });
    await session.next((m) => m.$case === "heartbeat", "heartbeat after ping", 2000);
  });

  it("sends task.heartbeat(details) at once for that command", async () => {
    const release = gate();
    const { orch } = await setup((w) =>
      w.register("slow", async (_ctx, task) => {
        task.heartbeat({ progress: 0.5 });
        await release.promise;
        return {};
      }),
    );
    const session = await connected(orch);
    session.command({ commandId: "c1", workerName: "slow", heartbeatTimeout: { seconds: 1, nanos: 0 } });
    const beat = await session.next((m) => m.$case === "heartbeat" && m.value.details !== undefined, "task heartbeat", 2000);
    assert.ok(beat.$case === "heartbeat");
    assert.deepEqual(beat.value.commandIds, ["c1"]);
    assert.equal(beat.value.details?.metadata["encoding"]?.toString(), "json/plain");
    assert.deepEqual(JSON.parse(beat.value.details!.data.toString()), { progress: 0.5 });
    release.open();
    await session.outcomes(1);
  });
});

describe("draining and shutdown", () => {
  it("on DrainRequest finishes in-flight work, answers, closes the stream, then reconnects", async () => {
    const release = gate();
    const { orch } = await setup((w) => w.register("wait", () => release.promise.then(() => ({ done: true }))));
    const first = await connected(orch);
    first.command({ commandId: "c1", workerName: "wait" });
    await new Promise((r) => setTimeout(r, 20));
    first.send({ $case: "drainRequest", value: { reason: "server shutting down" } });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(orch.sessions.length, 1, "closed the stream before in-flight work finished");
    release.open();
    assert.deepEqual(await first.outcomes(1), [{ commandId: "c1", result: { done: true } }]);
    await within(first.clientEnded, 2000, "the worker to half-close");
    first.endOk();
    const second = await orch.nextSession();
    await second.hello();
  });

  it("shutdown() sends Drain, finishes in-flight work, answers, ends the stream and resolves run()", async () => {
    const release = gate();
    const started = gate();
    const { orch, worker, run } = await setup((w) =>
      w.register("wait", async () => {
        started.open();
        await release.promise;
        return { done: true };
      }),
    );
    const session = await connected(orch);
    session.command({ commandId: "c1", workerName: "wait" });
    await within(started.promise, 2000, "handler start");
    const stopped = worker.shutdown();
    await session.next((m) => m.$case === "drain", "Drain");
    release.open();
    assert.deepEqual(await session.outcomes(1), [{ commandId: "c1", result: { done: true } }]);
    await within(session.clientEnded, 2000, "the worker to half-close");
    session.endOk();
    await within(stopped, 2000, "shutdown()");
    await within(run, 2000, "run()");
    assert.equal(orch.sessions.length, 1);
  });

  it("shutdown() with nothing in flight closes at once", async () => {
    const { orch, worker, run } = await setup((w) => w.register("a", () => ({})));
    const session = await connected(orch);
    await new Promise((r) => setTimeout(r, 20));
    const stopped = worker.shutdown();
    await session.next((m) => m.$case === "drain", "Drain");
    await within(session.clientEnded, 2000, "the worker to half-close");
    session.endOk();
    await within(Promise.all([stopped, run]), 2000, "shutdown");
  });

  it("shutdown({ timeoutMs }) aborts tasks that do not finish in time", async () => {
    let reason: unknown;
    const started = gate();
    const { orch, worker, run } = await setup((w) =>
      w.register("stuck", (_ctx, task) => {
        started.open();
        task.signal.addEventListener("abort", () => (reason = task.signal.reason));
        return new Promise(() => undefined);
      }),
    );
    const session = await connected(orch);
    session.command({ commandId: "c1", workerName: "stuck" });
    await within(started.promise, 2000, "handler start");
    await within(worker.shutdown({ timeoutMs: 100 }), 2000, "forced shutdown");
    await run;
    assert.equal((reason as Error | undefined)?.name, "WorkerShutdownError");
  });
});

describe("reconnecting", () => {
  it("reconnects after the stream breaks and sends outcomes that finished while disconnected", async () => {
    const release = gate();
    const started = gate();
    const { orch } = await setup((w) =>
      w.register("wait", async () => {
        started.open();
        await release.promise;
        return { late: true };
      }),
    );
    const first = await orch.nextSession();
    assert.equal((await first.accept({ resumeToken: "token-of-first" })).resumeToken, "");
    first.command({ commandId: "c1", workerName: "wait" });
    await within(started.promise, 2000, "handler start");
    first.fail(grpc.status.UNAVAILABLE, "replica going away");
    const second = await orch.nextSession();
    // The previous session's token, so that the server re-attaches c1 to this one.
    assert.equal((await second.hello()).resumeToken, "token-of-first");
    release.open(); // finishes while the second session is not yet welcomed
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(second.received.filter((m) => m.$case !== "hello").length, 0, "sent an outcome before Welcome");
    second.welcome();
    assert.deepEqual(await second.outcomes(1), [{ commandId: "c1", result: { late: true } }]);
  });

  it("shutting down while disconnected waits for running work, then delivers its outcome and drains", async () => {
    const release = gate();
    const started = gate();
    const { orch, worker, run } = await setup((w) =>
      w.register("wait", async () => {
        started.open();
        await release.promise;
        return { done: true };
      }),
    );
    const first = await connected(orch);
    first.command({ commandId: "c1", workerName: "wait" });
    await within(started.promise, 2000, "handler start");
    first.fail(grpc.status.UNAVAILABLE, "replica going away");
    const stopped = worker.shutdown();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(orch.sessions.length, 1, "reconnected with nothing to deliver");
    release.open();
    const second = await connected(orch);
    assert.deepEqual(await second.outcomes(1), [{ commandId: "c1", result: { done: true } }]);
    await second.next((m) => m.$case === "drain", "Drain");
    assert.deepEqual(
      second.received.map((m) => m.$case),
      ["hello", "result", "drain"],
    );
    await within(Promise.all([stopped, run]), 2000, "shutdown");
  });

  it("keeps retrying until the server comes up", async () => {
    const probe = await FakeOrchestrator.start();
    const port = probe.port;
    probe.stop();
    const worker = new Worker({ address: `127.0.0.1:${port}`, logger: quietLogger, backoff: { initialMs: 20, maxMs: 100 } });
    worker.register("a", () => ({ ok: 1 }));
    const run = worker.run();
    cleanups.push(() => worker.shutdown({ timeoutMs: 1000 }));
    const disconnects: number[] = [];
    worker.on("disconnected", (end) => disconnects.push(end.status.code));
    while (disconnects.length < 2) await new Promise((r) => setTimeout(r, 10));
    assert.ok(disconnects.every((code) => code === grpc.status.UNAVAILABLE));
    const orch = await FakeOrchestrator.start(port);
    cleanups.push(() => orch.stop());
    const session = await connected(orch);
    session.command({ commandId: "c1", workerName: "a" });
    assert.deepEqual(await session.outcomes(1), [{ commandId: "c1", result: { ok: 1 } }]);
    await worker.shutdown({ timeoutMs: 1000 });
    await run;
  });
});

describe("helpers", () => {
  it("backs off exponentially from 100 ms to 5 s, with jitter in the upper half", () => {
    const lo = (n: number) => backoffDelay(n, {}, () => 0);
    const hi = (n: number) => backoffDelay(n, {}, () => 1);
    assert.deepEqual([0, 1, 2, 3].map(hi), [100, 200, 400, 800]);
    assert.deepEqual([0, 1, 2, 3].map(lo), [50, 100, 200, 400]);
    assert.equal(hi(10), 5000);
    assert.equal(hi(1000), 5000);
  });

  it("SDK_VERSION matches package.json", () => {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
    assert.equal(SDK_VERSION, pkg.version);
  });

  it("refuses to run without handlers, to register after run(), and a bad maxConcurrency", async () => {
    const worker = new Worker({ address: "127.0.0.1:1", logger: quietLogger });
    assert.throws(() => worker.run(), /register at least one worker/);
    worker.register("a", () => ({}));
    assert.throws(() => worker.register("a", () => ({})), /already registered/);
    const run = worker.run();
    assert.throws(() => worker.register("b", () => ({})), /before run\(\)/);
    await worker.shutdown({ timeoutMs: 100 });
    await run;
    assert.throws(() => new Worker({ address: "x", maxConcurrency: 0 }), RangeError);
  });
});
