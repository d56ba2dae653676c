/**
 * Runs a workflow of model v2 from the Node client, for the conformance
 * suite (tests/conformance/test_model_v2.py; its Go twin is
 * workers/go/cmd/model-v2-client):
 *
 *   node dist/examples/model-v2-client.js --server 127.0.0.1:50051 --prefix P
 *
 * Registers "P.client_v2" (a parallel group, a map, a condition, a sleep, an
 * approval, a step; the workers are the conformance worker's P.step and
 * P.invalid), starts it with a delay, approves it once it waits in the
 * inbox; then registers "P.client_v2_resume" (one step, P.invalid: it
 * fails), resumes its failed execution and resumes the completed one (which
 * the server refuses); then creates the schedule "P.client_v2.every_second"
 * (cron "* * * * * *" in Europe/Paris, buffer_one, starting
 * "P.client_v2_resume"), waits for its first started run, lists, pauses,
 * unpauses and deletes it; prints one JSON line of what it saw. Exits 1 on
 * any other error.
 */
import { parseArgs } from "node:util";
import type { ServiceError } from "@grpc/grpc-js";
import { Client, WorkflowBuilder, branch, caseWhen, step, type WorkflowStatusView } from "../src/index.js";

const { values } = parseArgs({ options: { server: { type: "string" }, prefix: { type: "string" } } });
if (!values.server || !values.prefix) {
  console.error("usage: model-v2-client --server host:port --prefix P");
  process.exit(2);
}
const prefix = values.prefix;
const name = `${prefix}.client_v2`;
const client = new Client({ address: values.server, token: process.env["MULTIAGENTS_TOKEN"] });

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const found = await probe();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

try {
  const spec = new WorkflowBuilder(name)
    .addParallel("ask", [branch("left", step("left_1", `${prefix}.step`)), branch("right", step("right_1", `${prefix}.step`))])
    .addMap("each", "context.items", step("each_item", `${prefix}.step`), { maxConcurrency: 2 })
    .addCondition("route", [caseWhen("context.ask.left.last_lang == context.ask.right.last_lang", step("agree", `${prefix}.step`))], {
      otherwise: [step("disagree", `${prefix}.invalid`)],
    })
    .addSleep("pause", 200)
    .addWaitForSignal("approval", "approval", { approval: true, timeoutMs: 60_000 })
    .addStep("publish", `${prefix}.step`)
    .build();
  await client.registerWorkflow(spec);
  const tx = await client.executeWorkflow(name, { visited: ["node-client"], items: [1, 2, 3] }, { startDelayMs: 300 });
  const delayed = await client.getStatus(tx);
  const entry = await until("the approval in the inbox", async () =>
    (await client.listWaitingSignals({ workflowName: name, approvalsOnly: true })).find((w) => w.transactionId === tx),
  );
  const waiting: WorkflowStatusView = await client.getStatus(tx);
  await client.approve(tx, { by: "node-client" });
  const context = await client.result(tx);
  const status = await client.getStatus(tx);

  await client.registerWorkflow(new WorkflowBuilder(`${name}_resume`).addStep("check", `${prefix}.invalid`, { retryPolicy: { maximumAttempts: 1 } }).build());
  const failing = await client.executeWorkflow(`${name}_resume`, {});
  const firstEnd = (await client.wait(failing)).state;
  await client.resumeWorkflow(failing);
  const resumedEnd = await until("the resumed execution's end", async () => {
    const s = await client.getStatus(failing);
    return s.state === "FAILED" && s.steps[0]!.attempts === 2 ? s : undefined;
  });
  // The gRPC status code of the refusal (0 had it been accepted).
  const refused = await client.resumeWorkflow(tx).then(
    () => 0,
    (err: ServiceError) => err.code,
  );

  const scheduleId = `${name}.every_second`;
  const created = await client.createSchedule(scheduleId, "* * * * * *", `${name}_resume`, { from: "node-client" }, {
    timeZone: "Europe/Paris",
    overlapPolicy: "buffer_one",
    catchupWindowMs: 90_000,
  });
  const started = await until("the schedule's first run", async () => (await client.getSchedule(scheduleId)).recentActions.find((a) => a.kind === "started"));
  const listed = await client.listSchedules({ workflowName: `${name}_resume` });
  const paused = await client.pauseSchedule(scheduleId, "from node-client");
  const unpaused = await client.unpauseSchedule(scheduleId);
  await client.deleteSchedule(scheduleId);
  const afterDelete = await client.getSchedule(scheduleId).then(
    () => 0,
    (err: ServiceError) => err.code,
  );
  console.log(
    JSON.stringify({
      transaction_id: tx,
      delayed: { state: delayed.state, start_at_set: delayed.startAt !== undefined },
      inbox: { path: entry.path, signal: entry.signal, approval: entry.approval },
      waiting: waiting.waitingSignals.map((w) => w.path),
      state: status.state,
      steps: status.steps.map((s) => [s.path, s.kind, s.status, s.branch]),
      context,
      resume: { first: firstEnd, after: resumedEnd.state, attempts: resumedEnd.steps[0]!.attempts, completed: refused },
      schedule: {
        created: {
          overlap_policy: created.overlapPolicy,
          time_zone: created.timeZone,
          catchup_window_ms: created.catchupWindowMs,
          input: created.input,
          next_fire_set: created.nextFireTime !== undefined,
        },
        run: started.transactionId,
        listed: listed.map((s) => s.scheduleId),
        paused: { paused: paused.paused, note: paused.note, next_fire_set: paused.nextFireTime !== undefined },
        unpaused: { paused: unpaused.paused, note: unpaused.note, next_fire_set: unpaused.nextFireTime !== undefined },
        after_delete: afterDelete,
      },
    }),
  );
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  client.close();
}
