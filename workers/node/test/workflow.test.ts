/**
 * The workflow builder: the shared fixture (tests/fixtures/model_v2_definition.*,
 * also built by the Python and Go tests) and the builder's own checks.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { RegisterWorkflowRequest } from "../src/gen/multiagents/v1/workflow_service.js";
import { ParallelFailurePolicy } from "../src/gen/multiagents/v1/workflow.js";
import {
  WorkflowBuilder,
  branch,
  caseEquals,
  caseWhen,
  nodeNames,
  parseDefinition,
  step,
  toDefinition,
  workflowStep,
  type WorkflowSpec,
} from "../src/index.js";

const FIXTURES = new URL("../../../../tests/fixtures/", import.meta.url);
const DURATION_FIELDS = new Set(["timeout", "heartbeatTimeout", "initialInterval", "maximumInterval", "duration"]);

/**
 * The canonical protobuf JSON (durations as "1.500s") in the shape ts-proto's
 * fromJSON reads (durations as {seconds, nanos}).
 */
function fixture(name: string): string {
  return readFileSync(new URL(name, FIXTURES), "utf8");
}

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

/** tests/fixtures/model_v2_definition.proto.json: the RegisterWorkflowRequest every builder must give. */
function fixtureProto(): RegisterWorkflowRequest {
  return RegisterWorkflowRequest.fromJSON(durationsAsObjects(JSON.parse(fixture("model_v2_definition.proto.json"))));
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
      usageEstimate: { inputTokens: 1500, outputTokens: 500, costNanoUsd: 2_000_000 },
      rateLimits: ["provider:openai", { keyExpression: '"tenant:" + context.customer_id' }],
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
    assert.deepEqual({ definition: toDefinition(everyKind()) }, fixtureProto());
  });

  it("parseDefinition reads the shared fixture file as its proto form", () => {
    assert.deepEqual({ definition: toDefinition(parseDefinition(fixture("model_v2_definition.json"))) }, fixtureProto());
  });

  it("parseDefinition refuses what the schema refuses, naming the place", () => {
    const wrap = (step: string): string => `{"name": "x", "steps": [${step}]}`;
    for (const [json, want] of [
      [wrap(`{"name": "z", "sleep": 1, "map": {}}`), "steps[0]: set one of parallel, map, condition, wait_for_signal, sleep, not map and sleep"],
      [wrap(`{"name": "z", "sleep": 1, "worker": "w"}`), `steps[0]: unknown keys "worker"`],
      [wrap(`{"name": "a/b", "worker": "w"}`), `steps[0].name: required, without "/" (got "a/b")`],
      [wrap(`{"name": "z", "sleep": 0}`), "steps[0].sleep: expected seconds, a number > 0"],
      [wrap(`{"name": "p", "parallel": {"branches": []}}`), "steps[0].parallel.branches: at least one branch"],
      [wrap(`{"name": "p", "parallel": {"branches": [{"name": "a", "steps": []}]}}`), "steps[0].parallel.branches[0].steps: at least one step"],
      [wrap(`{"name": "p", "parallel": {"failFast": true, "branches": []}}`), `steps[0].parallel: unknown keys "failFast"`],
      [wrap(`{"name": "m", "map": {"items": "context.xs", "step": {"name": "s", "sleep": 1}}}`), "steps[0].map.step: must be a worker or workflow step"],
      [wrap(`{"name": "m", "map": {"items": "context.xs", "max_concurrency": 1001, "step": {"name": "s", "worker": "w"}}}`), "steps[0].map.max_concurrency: must be between 1 and 1000, got 1001"],
      [wrap(`{"name": "c", "condition": {"cases": [{"when": "true"}]}}`), "steps[0].condition.cases[0].steps: required"],
      [wrap(`{"name": "w", "wait_for_signal": {"timeout": 5}}`), "steps[0].wait_for_signal.signal: required"],
      [wrap(`{"name": "w", "wait_for_signal": {"signal": "go", "timeout": 5, "on_timeout": [{"name": "s", "worker": "w", "retry": {"max_attempts": 0}}]}}`), "steps[0].wait_for_signal.on_timeout[0].retry.max_attempts: must be an integer >= 1"],
      [wrap(`{"name": "a", "worker": "w", "retryPolicy": {}}`), `steps[0]: unknown keys "retryPolicy"`],
      [wrap(`{"name": "a", "worker": "w", "usage_estimate": {"input_tokens": -1}}`), "steps[0].usage_estimate.input_tokens: must be an integer >= 0"],
      [wrap(`{"name": "a", "worker": "w", "usage_estimate": {"tokens": 1}}`), `steps[0].usage_estimate: unknown keys "tokens"`],
      [wrap(`{"name": "a", "worker": "w", "rate_limits": "p"}`), "steps[0].rate_limits: expected a list"],
      [wrap(`{"name": "a", "worker": "w", "rate_limits": ["p", {"keyExpression": "x"}]}`), `steps[0].rate_limits[1]: unknown keys "keyExpression"`],
      [wrap(`{"name": "a", "worker": "w", "rate_limits": [7]}`), "steps[0].rate_limits[0]: expected an object"],
      [`{"name": "x", "steps": []}`, `workflow "x" has no steps`],
    ] as const) {
      assert.throws(() => parseDefinition(json), (err: Error) => err.message.includes(want), `${json} should say ${want}`);
    }
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
