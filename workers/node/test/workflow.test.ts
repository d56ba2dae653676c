/**
 * The workflow builder: the shared fixture (tests/fixtures/model_v2_definition.*,
 * also built by the Python and Go tests) and the builder's own checks.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { RegisterWorkflowRequest } from "../src/gen/multiagents/v1/workflow_service.js";
import { ParallelFailurePolicy } from "../src/gen/multiagents/v1/workflow.js";
import { WorkflowBuilder, branch, caseEquals, caseWhen, nodeNames, step, toDefinition, workflowStep, type WorkflowSpec } from "../src/index.js";

const FIXTURES = new URL("../../../../tests/fixtures/", import.meta.url);
const DURATION_FIELDS = new Set(["timeout", "heartbeatTimeout", "initialInterval", "maximumInterval", "duration"]);

/**
 * The canonical protobuf JSON (durations as "1.500s") in the shape ts-proto's
 * fromJSON reads (durations as {seconds, nanos}).
 */
function durationsAsObjects(value: unknown, key = ""): unknown {
  if (typeof value === "string" && DURATION_FIELDS.has(key)) {
    const m = /^(\d+)(?:\.(\d{1,9}))?s$/.exec(value);
    assert.ok(m, `${key}: not a protobuf JSON duration: ${value}`);
    return { seconds: Number(m[1]), nanos: Number((m[2] ?? "").padEnd(9, "0")) };
  }
  if (Array.isArray(value)) return value.map((v) => durationsAsObjects(v));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, durationsAsObjects(v, k)]));
  }
  return value;
}

/** tests/fixtures/model_v2_definition.json, built with the Node builder. */
function everyKind(): WorkflowSpec {
  return new WorkflowBuilder("model_v2_every_kind", {
    version: 2,
    description: "Every node kind of workflow model v2; the Python, Node and Go builders must give model_v2_definition.proto.json",
  })
    .addStep("book", "book_slot", {
      compensation: "release_slot",
      timeoutMs: 30_000,
      heartbeatTimeoutMs: 2_500,
      retryPolicy: { maximumAttempts: 5, initialIntervalMs: 250, backoffCoefficient: 1.5, maximumIntervalMs: 10_000, nonRetryableErrorTypes: ["ValueError", "Rejected"] },
      compensationRetryPolicy: { maximumAttempts: 2 },
    })
    .addParallel(
      "ask",
      [
        branch("research", step("research_review", "research_agent")),
        branch("legal", step("legal_review", "legal_agent", { timeoutMs: 60_000 }), workflowStep("legal_sign_off", "sign_off", { version: 3, compensation: "unsign" })),
        branch("critic", step("critic_review", "critic_agent"), {
          name: "critic_gate",
          condition: { cases: [caseWhen("has(context.critic_review_done)", { name: "critic_rest", sleepMs: 250 })] },
        }),
      ],
      { failFast: false },
    )
    .addParallel("fan_in", [branch("only", step("collect", "collector"))])
    .addMap("each", "context.documents", step("summarize_one", "summarizer", { retryPolicy: { maximumAttempts: 2 } }), { maxConcurrency: 20 })
    .addMap("each_child", "context.orders", workflowStep("process_order", "order"))
    .addCondition("route", [caseWhen("context.ask.legal.score >= 0.8", step("publish", "publisher")), caseWhen("context.ask.legal.score >= 0.5")], {
      otherwise: [step("revise", "reviser", { compensation: "unrevise" })],
    })
    .addCondition(
      "by_kind",
      [
        caseEquals("invoice", step("bill", "biller")),
        caseEquals(2, workflowStep("pay_back", "refund")),
        caseEquals(true),
        caseEquals(["a", 1.5], step("listed", "lister")),
        caseEquals({ tier: "gold", n: 3 }, step("gold", "goldsmith")),
      ],
      { switch: "context.kind" },
    )
    .addWaitForSignal("approval", "approval", { approval: true, timeoutMs: 3_600_000 })
    .addWaitForSignal("nudge", "nudge", { timeoutMs: 1_500, onTimeout: [step("remind", "reminder")] })
    .addWaitForSignal("maybe_go", "go", { timeoutMs: 60_000, onTimeout: [] })
    .addWaitForSignal("done", "done")
    .addSleep("cool_down", 600_000)
    .build();
}

describe("WorkflowBuilder", () => {
  it("builds the shared fixture's definition, field for field (the Python and Go builders build it too)", () => {
    const expected = RegisterWorkflowRequest.fromJSON(durationsAsObjects(JSON.parse(readFileSync(new URL("model_v2_definition.proto.json", FIXTURES), "utf8"))));
    assert.deepEqual({ definition: toDefinition(everyKind()) }, expected);
  });

  it("refuses a name used twice anywhere in the tree, and an empty workflow", () => {
    const builder = new WorkflowBuilder("dup").addParallel("ask", [branch("a", step("review", "w"))]);
    assert.throws(() => builder.addStep("review", "w"), /duplicate step name "review"/);
    assert.throws(() => builder.addMap("ask", "context.xs", step("x", "w")), /duplicate step name "ask"/);
    assert.throws(() => new WorkflowBuilder("self").addCondition("c", [caseWhen("true", step("s", "w"))], { otherwise: [step("s", "w")] }), /duplicate step name "s"/);
    // A refused node leaves the builder as it was.
    assert.deepEqual(nodeNames(builder.build().steps), ["ask", "review"]);
    assert.throws(() => new WorkflowBuilder("empty").build(), /workflow "empty" has no steps/);
  });

  it("writes the defaults every SDK writes: fail fast, 10 at once, a retry policy's 3 attempts / 1 s / x2", () => {
    const def = toDefinition(
      new WorkflowBuilder("defaults")
        .addParallel("p", [branch("a", step("a1", "w", { retryPolicy: {} }))])
        .addMap("m", "context.xs", step("m1", "w"))
        .addWaitForSignal("s", "go", { timeoutMs: 1000 })
        .build(),
    );
    assert.equal(def.version, 1);
    assert.equal(def.steps[0]!.parallel!.failurePolicy, ParallelFailurePolicy.PARALLEL_FAILURE_POLICY_FAIL_FAST);
    assert.deepEqual(def.steps[0]!.parallel!.branches[0]!.steps[0]!.retryPolicy, {
      maximumAttempts: 3,
      initialInterval: { seconds: 1, nanos: 0 },
      backoffCoefficient: 2,
      maximumInterval: undefined,
      nonRetryableErrorTypes: [],
    });
    assert.equal(def.steps[1]!.map!.maxConcurrency, 10);
    // Without onTimeout a timeout fails the wait.
    assert.equal(def.steps[2]!.waitForSignal!.continueOnTimeout, false);
  });
});
