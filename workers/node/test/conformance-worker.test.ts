/**
 * The conformance worker as the Python suite runs it: a child process, READY
 * on stdout, the six worker names, their answers, and a clean exit on SIGTERM.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { CommandKind } from "../src/gen/multiagents/v1/worker_service.js";
import { FakeOrchestrator, within, type FakeSession } from "./harness.js";

const script = fileURLToPath(new URL("../examples/conformance-worker.js", import.meta.url));

describe("conformance worker", () => {
  let orch: FakeOrchestrator;
  let child: ChildProcess;
  let session: FakeSession;
  let stdout = "";
  let exited: Promise<[number | null, NodeJS.Signals | null]>;

  before(async () => {
    orch = await FakeOrchestrator.start();
    child = spawn(process.execPath, [script, "--server", orch.address, "--prefix", "cf", "--max-concurrency", "3"], {
      env: { ...process.env, MULTIAGENTS_TOKEN: "tok", MULTIAGENTS_LOG_LEVEL: "error" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve([code, signal])));
    child.stdout!.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    session = await orch.nextSession(10_000);
  });

  after(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
    orch.stop();
  });

  it("says Hello with exactly its six worker names, then prints READY after Welcome", async () => {
    const hello = await session.hello();
    assert.deepEqual(hello.workerNames, ["cf.step", "cf.flaky", "cf.invalid", "cf.fail", "cf.compensate", "cf.slow", "cf.stream"]);
    assert.equal(hello.maxConcurrency, 3);
    assert.equal(hello.sdkLanguage, "node");
    assert.deepEqual(session.metadata.get("authorization"), ["Bearer tok"]);
    assert.equal(stdout, "");
    session.welcome({ heartbeatIntervalMs: 1000 });
    const deadline = Date.now() + 5000;
    while (!stdout.includes("\n") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(stdout, "READY\n");
  });

  it("answers every scenario as the suite expects", async () => {
    session.command({ commandId: "step", workerName: "cf.step", step: "s2" }, { visited: ["python"] });
    session.command({ commandId: "flaky1", workerName: "cf.flaky", attempt: 1 }, { succeed_on_attempt: 2 });
    session.command({ commandId: "flaky2", workerName: "cf.flaky", attempt: 2 }, { succeed_on_attempt: 2 });
    session.command({ commandId: "invalid", workerName: "cf.invalid" });
    session.command({ commandId: "fail", workerName: "cf.fail" });
    session.command({ commandId: "comp", workerName: "cf.compensate", step: "s1", kind: CommandKind.COMMAND_KIND_COMPENSATE });
    const byId = new Map((await session.outcomes(6)).map((o) => [o.commandId, o]));
    assert.deepEqual(byId.get("step")?.result, { visited: ["python", "node"], last_lang: "node", step_s2: "node" });
    assert.equal(byId.get("flaky1")?.failure?.message, "flaky attempt 1");
    assert.equal(byId.get("flaky1")?.failure?.nonRetryable, false);
    assert.deepEqual(byId.get("flaky2")?.result, { flaky_attempts: 2, last_lang: "node" });
    assert.equal(byId.get("invalid")?.failure?.type, "ValueError");
    assert.equal(byId.get("invalid")?.failure?.nonRetryable, true);
    assert.equal(byId.get("invalid")?.failure?.message, "invalid input");
    assert.equal(byId.get("fail")?.failure?.message, "boom from node");
    assert.equal(byId.get("fail")?.failure?.nonRetryable, false);
    assert.equal(byId.get("fail")?.failure?.cause?.message, "gateway refused node");
    assert.deepEqual(byId.get("comp")?.result, { compensated_by: "node", compensated_step: "s1" });
  });

  it("slow heartbeats while it sleeps and stops when cancelled", async () => {
    session.command({ commandId: "slow", workerName: "cf.slow", heartbeatTimeout: { seconds: 1, nanos: 0 } }, { sleep_ms: 350 });
    const beat = await session.next((m) => m.$case === "heartbeat" && m.value.commandIds[0] === "slow", "slow's heartbeat");
    assert.ok(beat.$case === "heartbeat");
    assert.ok(beat.value.details !== undefined);
    assert.deepEqual(await session.outcomes(1), [{ commandId: "slow", result: { slept_ms: 350, last_lang: "node" } }]);

    session.command({ commandId: "long", workerName: "cf.slow" }, { sleep_ms: 60_000 });
    await session.next((m) => m.$case === "heartbeat" && m.value.commandIds[0] === "long", "long's heartbeat");
    session.send({ $case: "cancel", value: { commandId: "long", reason: "test" } });
    const [outcome] = await session.outcomes(1);
    assert.equal(outcome!.failure?.type, "Cancelled");
  });

  it("drains on SIGTERM: finishes in-flight work, answers, exits 0", async () => {
    session.command({ commandId: "last", workerName: "cf.slow" }, { sleep_ms: 300 });
    await new Promise((r) => setTimeout(r, 50));
    child.kill("SIGTERM");
    await session.next((m) => m.$case === "drain", "Drain");
    assert.deepEqual(await session.outcomes(1), [{ commandId: "last", result: { slept_ms: 300, last_lang: "node" } }]);
    assert.deepEqual(await within(exited, 5000, "the worker to exit"), [0, null]);
  });
});
