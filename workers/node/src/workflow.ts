/**
 * Workflow definitions as data (docs/workflows.md): a {@link WorkflowSpec} is
 * a tree of {@link NodeSpec}s, written as object literals or with
 * {@link WorkflowBuilder}, and {@link toDefinition} turns it into the
 * protobuf WorkflowDefinition that RegisterWorkflow takes. The node shapes
 * follow the definition file (docs/definition.schema.json) in camelCase,
 * with durations in milliseconds, and convert to the same protobuf as the
 * Python `WorkflowBuilder` and the Go `client` package.
 */
import type { Duration } from "./gen/google/protobuf/duration.js";
import {
  type ConditionCase,
  ParallelFailurePolicy,
  type RetryPolicy,
  type StepDefinition,
  type WorkflowDefinition,
} from "./gen/multiagents/v1/workflow.js";
import type { JsonValue } from "./payload.js";

/**
 * Retry policy of a step. Unset fields take the defaults that every SDK
 * writes (and the server assumes): 3 attempts, 1 s, coefficient 2, no maximum.
 */
export interface RetryPolicySpec {
  maximumAttempts?: number;
  initialIntervalMs?: number;
  backoffCoefficient?: number;
  maximumIntervalMs?: number;
  nonRetryableErrorTypes?: string[];
}

/**
 * A shared limit (Client.putRateLimit) a step takes part in: a literal key
 * ("provider:openai"), or `{ keyExpression }`, a CEL expression over the
 * context giving the key (`'"tenant:" + context.customer_id'`), evaluated
 * when an attempt is dispatched.
 */
export type RateLimitKeySpec = string | { keyExpression: string };

/** A step run by a worker, or (with `workflow`) by a sub-workflow. */
export interface StepSpec {
  name: string;
  /** Worker name that executes the step (or "" with `workflow`). */
  worker: string;
  /** Run this workflow as a sub-workflow instead of a worker. */
  workflow?: string;
  /** Version of the sub-workflow; 0 (default) means the latest when the step starts. */
  workflowVersion?: number;
  /** Worker name that undoes the step when a later step fails. */
  compensation?: string;
  retryPolicy?: RetryPolicySpec;
  compensationRetryPolicy?: RetryPolicySpec;
  /** Limit of one attempt, in ms. */
  timeoutMs?: number;
  /** The attempt fails when no heartbeat arrives for this long, in ms. */
  heartbeatTimeoutMs?: number;
  /**
   * What one attempt is expected to use: reserved against the execution's
   * budget, and its tokens (input + output) against the token limits of
   * `rateLimits`, until its answer reports the usage.
   */
  usageEstimate?: { inputTokens?: number; outputTokens?: number; costNanoUsd?: number };
  /** Shared limits an attempt waits for (at most 8): it starts when every key allows it. Not on a sub-workflow step. */
  rateLimits?: RateLimitKeySpec[];
}

/** A named sequence of nodes in a parallel group; its result lands under its name. */
export interface BranchSpec {
  name: string;
  steps: NodeSpec[];
}

/** Branches run at once, then join: the context gets `{name: {branch: its results}}`. */
export interface ParallelSpec {
  name: string;
  parallel: {
    branches: BranchSpec[];
    /** Default true: a failed branch cancels the others at once; false waits for all, then fails. */
    failFast?: boolean;
  };
}

/** One step per item of a list; the context gets `{name: [results in item order]}`. */
export interface MapSpec {
  name: string;
  map: {
    /** CEL expression over `context` giving the list, e.g. "context.documents". */
    items: string;
    /** The worker or workflow step run per item (it sees `context.item`, `context.index`). */
    step: StepSpec;
    /** Items running at once, 1..1000; default 10. */
    maxConcurrency?: number;
  };
}

/** A case of a condition: `when` (if / else) or `equals` (in a switch). */
export interface CaseSpec {
  /** CEL expression giving true or false, e.g. "context.review.score >= 0.8". */
  when?: string;
  /** The value the switch expression must equal (a JSON value). */
  equals?: JsonValue;
  steps: NodeSpec[];
}

/** The steps of the first matching case run, else `otherwise`. */
export interface ConditionSpec {
  name: string;
  condition: {
    cases: CaseSpec[];
    otherwise?: NodeSpec[];
    /** Switch form: a CEL expression compared with each case's `equals`. */
    switch?: string;
  };
}

/** Waits for a signal (SignalWorkflow); its payload lands under the node's name. */
export interface WaitForSignalSpec {
  name: string;
  waitForSignal: {
    signal: string;
    /** Unset waits for ever. On expiry the wait fails (SignalTimeout) unless `onTimeout` is given. */
    timeoutMs?: number;
    /** Run on timeout instead of failing; may be empty. */
    onTimeout?: NodeSpec[];
    /** The payload must hold a boolean `approved`; false fails the wait (Rejected). */
    approval?: boolean;
  };
}

/** A durable timer. */
export interface SleepSpec {
  name: string;
  sleepMs: number;
}

/** One node of a workflow: a step or one of the constructs of docs/workflows.md. */
export type NodeSpec = StepSpec | ParallelSpec | MapSpec | ConditionSpec | WaitForSignalSpec | SleepSpec;

/** A workflow definition, with durations in milliseconds. */
export interface WorkflowSpec {
  name: string;
  /** Default 1. */
  version?: number;
  steps: NodeSpec[];
  description?: string;
  /** What one execution may use in all (tokens, nano-USD); 0 or unset is no limit. */
  budget?: { maxTokens?: number; maxCostNanoUsd?: number };
}

/** Options of {@link step} and {@link WorkflowBuilder.addStep}. */
export type StepOptions = Omit<StepSpec, "name" | "worker" | "workflow" | "workflowVersion">;

/** Options of {@link workflowStep} and {@link WorkflowBuilder.addWorkflowStep}. */
export interface WorkflowStepOptions {
  /** 0 (default): the latest version when the step starts. */
  version?: number;
  compensation?: string;
  retryPolicy?: RetryPolicySpec;
  timeoutMs?: number;
}

/** A worker step, for a branch, a case or a map: `step("review", "legal_agent", { timeoutMs: 30_000 })`. */
export function step(name: string, worker: string, options: StepOptions = {}): StepSpec {
  return { name, worker, ...options };
}

/** A step that runs another workflow; its final context is the step's result. */
export function workflowStep(name: string, workflow: string, options: WorkflowStepOptions = {}): StepSpec {
  const { version, ...rest } = options;
  return { name, worker: "", workflow, workflowVersion: version ?? 0, ...rest };
}

/** A parallel branch: `branch("legal", step("review", "legal_agent"))`. */
export function branch(name: string, ...steps: NodeSpec[]): BranchSpec {
  return { name, steps };
}

/** An if / else case: `caseWhen("context.score > 0.8", step("publish", "publisher"))`. */
export function caseWhen(when: string, ...steps: NodeSpec[]): CaseSpec {
  return { when, steps };
}

/** A switch case, taken when the switch expression equals `value`. */
export function caseEquals(value: JsonValue, ...steps: NodeSpec[]): CaseSpec {
  return { equals: value, steps };
}

/**
 * Builds a workflow node by node; nested nodes are {@link NodeSpec} literals
 * or come from {@link step}, {@link workflowStep}, {@link branch},
 * {@link caseWhen} and {@link caseEquals}.
 *
 * ```ts
 * const spec = new WorkflowBuilder("review")
 *   .addParallel("ask", [branch("critic", step("critic_review", "critic_agent"))])
 *   .addCondition("route", [caseWhen("context.ask.critic.score >= 0.8", step("publish", "publisher"))],
 *                 { otherwise: [step("revise", "reviser")] })
 *   .addWaitForSignal("approval", "approval", { approval: true, timeoutMs: 3_600_000 })
 *   .build();
 * await client.registerWorkflow(spec);
 * ```
 */
export class WorkflowBuilder {
  private readonly steps: NodeSpec[] = [];
  private readonly names = new Set<string>();

  constructor(
    readonly name: string,
    private readonly options: { version?: number; description?: string } = {},
  ) {}

  /** Appends a worker step. */
  addStep(name: string, worker: string, options: StepOptions = {}): this {
    return this.add(step(name, worker, options));
  }

  /** Appends a step that runs another workflow as a sub-workflow. */
  addWorkflowStep(name: string, workflow: string, options: WorkflowStepOptions = {}): this {
    return this.add(workflowStep(name, workflow, options));
  }

  /** Appends a parallel group; `failFast` (default true) cancels the other branches at the first failure. */
  addParallel(name: string, branches: BranchSpec[], options: { failFast?: boolean } = {}): this {
    return this.add({ name, parallel: { branches, ...options } });
  }

  /** Appends a map: `body` once per item of the list `items` (CEL). */
  addMap(name: string, items: string, body: StepSpec, options: { maxConcurrency?: number } = {}): this {
    return this.add({ name, map: { items, step: body, ...options } });
  }

  /** Appends a condition: the first matching case's steps run, else `otherwise`; with `switch`, cases match by `equals`. */
  addCondition(name: string, cases: CaseSpec[], options: { otherwise?: NodeSpec[]; switch?: string } = {}): this {
    return this.add({ name, condition: { cases, ...options } });
  }

  /** Appends a wait for `signal`; its payload lands under `name`. */
  addWaitForSignal(name: string, signal: string, options: { timeoutMs?: number; onTimeout?: NodeSpec[]; approval?: boolean } = {}): this {
    return this.add({ name, waitForSignal: { signal, ...options } });
  }

  /** Appends a durable timer of `ms`. */
  addSleep(name: string, ms: number): this {
    return this.add({ name, sleepMs: ms });
  }

  /** Appends any node; throws when one of its names is taken already. */
  add(node: NodeSpec): this {
    const fresh = nodeNames([node]);
    for (const name of fresh) {
      if (this.names.has(name) || fresh.indexOf(name) !== fresh.lastIndexOf(name)) throw new Error(`duplicate step name "${name}"`);
    }
    for (const name of fresh) this.names.add(name);
    this.steps.push(node);
    return this;
  }

  /** The workflow; throws when it has no steps. */
  build(): WorkflowSpec {
    if (this.steps.length === 0) throw new Error(`workflow "${this.name}" has no steps`);
    return { name: this.name, version: this.options.version ?? 1, description: this.options.description ?? "", steps: [...this.steps] };
  }
}

/** Every node name of a tree, depth first (map bodies included). */
export function nodeNames(nodes: readonly NodeSpec[]): string[] {
  const names: string[] = [];
  for (const node of nodes) {
    names.push(node.name);
    if ("parallel" in node) for (const b of node.parallel.branches) names.push(...nodeNames(b.steps));
    else if ("map" in node) names.push(node.map.step.name);
    else if ("condition" in node) {
      for (const c of node.condition.cases) names.push(...nodeNames(c.steps));
      names.push(...nodeNames(node.condition.otherwise ?? []));
    } else if ("waitForSignal" in node) names.push(...nodeNames(node.waitForSignal.onTimeout ?? []));
  }
  return names;
}

/** The protobuf WorkflowDefinition of a spec (what RegisterWorkflow takes). */
export function toDefinition(spec: WorkflowSpec): WorkflowDefinition {
  const budget = spec.budget ? { maxTokens: spec.budget.maxTokens ?? 0, maxCostNanoUsd: spec.budget.maxCostNanoUsd ?? 0 } : undefined;
  return { name: spec.name, version: spec.version ?? 1, description: spec.description ?? "", steps: spec.steps.map(toStep), budget };
}

function emptyStep(name: string): StepDefinition {
  return {
    name,
    worker: "",
    compensation: "",
    retryPolicy: undefined,
    timeout: undefined,
    heartbeatTimeout: undefined,
    compensationRetryPolicy: undefined,
    workflow: "",
    workflowVersion: 0,
    parallel: undefined,
    map: undefined,
    condition: undefined,
    waitForSignal: undefined,
    sleep: undefined,
    usageEstimate: undefined,
    rateLimits: [],
  };
}

function toStep(node: NodeSpec): StepDefinition {
  const out = emptyStep(node.name);
  if ("parallel" in node) {
    out.parallel = {
      branches: node.parallel.branches.map((b) => ({ name: b.name, steps: b.steps.map(toStep) })),
      failurePolicy: node.parallel.failFast === false ? ParallelFailurePolicy.PARALLEL_FAILURE_POLICY_WAIT_ALL : ParallelFailurePolicy.PARALLEL_FAILURE_POLICY_FAIL_FAST,
    };
  } else if ("map" in node) {
    out.map = { items: node.map.items, step: toStep(node.map.step), maxConcurrency: node.map.maxConcurrency ?? 10 };
  } else if ("condition" in node) {
    const { cases, otherwise, switch: on } = node.condition;
    out.condition = {
      cases: cases.map((c): ConditionCase => ({ when: c.when ?? "", equals: c.equals, steps: c.steps.map(toStep) })),
      otherwise: (otherwise ?? []).map(toStep),
      switch: on ?? "",
    };
  } else if ("waitForSignal" in node) {
    const w = node.waitForSignal;
    out.waitForSignal = {
      signal: w.signal,
      timeout: duration(w.timeoutMs),
      continueOnTimeout: w.onTimeout !== undefined,
      onTimeout: (w.onTimeout ?? []).map(toStep),
      approval: w.approval ?? false,
    };
  } else if ("sleepMs" in node) {
    out.sleep = { duration: duration(node.sleepMs) };
  } else {
    out.worker = node.worker;
    out.compensation = node.compensation ?? "";
    out.retryPolicy = retryPolicy(node.retryPolicy);
    out.compensationRetryPolicy = retryPolicy(node.compensationRetryPolicy);
    out.timeout = duration(node.timeoutMs);
    out.heartbeatTimeout = duration(node.heartbeatTimeoutMs);
    out.workflow = node.workflow ?? "";
    out.workflowVersion = node.workflowVersion ?? 0;
    if (node.usageEstimate) {
      const e = node.usageEstimate;
      out.usageEstimate = { inputTokens: e.inputTokens ?? 0, outputTokens: e.outputTokens ?? 0, model: "", costNanoUsd: e.costNanoUsd ?? 0 };
    }
    out.rateLimits = (node.rateLimits ?? []).map((k) => (typeof k === "string" ? { key: k, keyExpression: "" } : { key: "", keyExpression: k.keyExpression }));
  }
  return out;
}

/** Milliseconds as a Duration, rounded to the millisecond (as every SDK does). */
export function duration(ms: number | undefined): Duration | undefined {
  if (ms === undefined) return undefined;
  const whole = Math.round(ms);
  return { seconds: Math.floor(whole / 1000), nanos: (whole % 1000) * 1_000_000 };
}

function retryPolicy(spec: RetryPolicySpec | undefined): RetryPolicy | undefined {
  if (spec === undefined) return undefined;
  return {
    maximumAttempts: spec.maximumAttempts ?? 3,
    initialInterval: duration(spec.initialIntervalMs ?? 1000),
    backoffCoefficient: spec.backoffCoefficient ?? 2,
    maximumInterval: duration(spec.maximumIntervalMs),
    nonRetryableErrorTypes: spec.nonRetryableErrorTypes ?? [],
  };
}

/**
 * Reads a workflow definition in the definition-file form (JSON text or its
 * parsed value; docs/definition.schema.json): snake_case keys, durations in
 * seconds, `{name, version, description, steps}` with worker and workflow
 * steps (`usage_estimate` and `rate_limits` included) and `parallel`, `map`, `condition`, `wait_for_signal`, `sleep` nodes.
 * Unknown keys and what the schema refuses throw an Error naming the place
 * ("steps[1].parallel.branches[0].steps: at least one step"). The same file
 * gives the same definition as the Python `Workflow.from_dict` and the Go
 * `client.ParseDefinition`.
 */
export function parseDefinition(data: unknown): WorkflowSpec {
  const file = object(typeof data === "string" ? JSON.parse(data) : data, "definition", ["name", "version", "description", "steps"]);
  if (typeof file["name"] !== "string" || file["name"] === "") throw new Error("definition.name: required, a string");
  const version = file["version"] ?? 1;
  if (!Number.isInteger(version) || (version as number) < 1) throw new Error(`definition.version: must be an integer >= 1, got ${JSON.stringify(version)}`);
  const steps = nodeList(file["steps"] ?? [], "steps");
  if (steps.length === 0) throw new Error(`definition: workflow "${file["name"]}" has no steps`);
  return { name: file["name"], version: version as number, description: text(file["description"] ?? "", "description"), steps };
}

const FILE_KINDS = ["parallel", "map", "condition", "wait_for_signal", "sleep"] as const;
const FILE_STEP_KEYS = [
  "name",
  "worker",
  "compensation",
  "retry",
  "timeout",
  "heartbeat_timeout",
  "compensation_retry",
  "workflow",
  "workflow_version",
  "usage_estimate",
  "rate_limits",
];
const FILE_RETRY_KEYS = ["max_attempts", "initial_interval", "backoff_coefficient", "maximum_interval", "non_retryable_error_types"];

function object(value: unknown, where: string, keys: readonly string[]): Record<string, unknown> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error(`${where}: expected an object`);
  const extra = Object.keys(value).filter((k) => !keys.includes(k));
  if (extra.length > 0) throw new Error(`${where}: unknown keys ${extra.map((k) => JSON.stringify(k)).join(", ")}`);
  return value as Record<string, unknown>;
}

function text(value: unknown, where: string): string {
  if (typeof value !== "string") throw new Error(`${where}: expected a string`);
  return value;
}

function nodeName(value: unknown, where: string): string {
  if (typeof value !== "string" || value === "" || value.includes("/")) throw new Error(`${where}: required, without "/" (got ${JSON.stringify(value)})`);
  return value;
}

/** Seconds (a number > 0, or >= 0 with `zero`) as ms. */
function secondsMs(value: unknown, where: string, zero = false): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0 || (!zero && value === 0)) {
    throw new Error(`${where}: expected seconds, a number ${zero ? ">=" : ">"} 0`);
  }
  return value * 1000;
}

function nodeList(value: unknown, where: string): NodeSpec[] {
  if (!Array.isArray(value)) throw new Error(`${where}: expected a list of steps`);
  return value.map((row, i) => fileNode(row, `${where}[${i}]`));
}

function fileNode(row: unknown, where: string): NodeSpec {
  if (row === null || typeof row !== "object" || Array.isArray(row)) throw new Error(`${where}: expected an object`);
  const kinds = FILE_KINDS.filter((k) => k in row);
  if (kinds.length === 0) return fileStep(row, where);
  if (kinds.length > 1) throw new Error(`${where}: set one of ${FILE_KINDS.join(", ")}, not ${kinds.join(" and ")}`);
  const kind = kinds[0]!;
  const node = object(row, where, ["name", kind]);
  const name = nodeName(node["name"], `${where}.name`);
  const at = `${where}.${kind}`;
  switch (kind) {
    case "parallel": {
      const p = object(node[kind], at, ["branches", "fail_fast"]);
      if (!Array.isArray(p["branches"]) || p["branches"].length === 0) throw new Error(`${at}.branches: at least one branch`);
      const branches = p["branches"].map((b: unknown, i: number): BranchSpec => {
        const bw = `${at}.branches[${i}]`;
        const br = object(b, bw, ["name", "steps"]);
        const steps = nodeList(br["steps"] ?? [], `${bw}.steps`);
        if (steps.length === 0) throw new Error(`${bw}.steps: at least one step`);
        return { name: nodeName(br["name"], `${bw}.name`), steps };
      });
      const failFast = p["fail_fast"] ?? true;
      if (typeof failFast !== "boolean") throw new Error(`${at}.fail_fast: expected true or false`);
      return { name, parallel: { branches, failFast } };
    }
    case "map": {
      const m = object(node[kind], at, ["items", "step", "max_concurrency"]);
      if (typeof m["items"] !== "string" || m["items"] === "") throw new Error(`${at}.items: required, a CEL expression giving a list`);
      if (m["step"] === undefined) throw new Error(`${at}.step: required, a worker or workflow step`);
      const body = fileNode(m["step"], `${at}.step`);
      if (!("worker" in body)) throw new Error(`${at}.step: must be a worker or workflow step`);
      const max = m["max_concurrency"] ?? 10;
      if (!Number.isInteger(max) || (max as number) < 1 || (max as number) > 1000) throw new Error(`${at}.max_concurrency: must be between 1 and 1000, got ${JSON.stringify(max)}`);
      return { name, map: { items: m["items"], step: body, maxConcurrency: max as number } };
    }
    case "condition": {
      const c = object(node[kind], at, ["cases", "otherwise", "switch"]);
      if (!Array.isArray(c["cases"]) || c["cases"].length === 0) throw new Error(`${at}.cases: at least one case`);
      const cases = c["cases"].map((k: unknown, i: number): CaseSpec => {
        const cw = `${at}.cases[${i}]`;
        const kase = object(k, cw, ["when", "equals", "steps"]);
        if (kase["steps"] === undefined) throw new Error(`${cw}.steps: required (may be empty)`);
        const out: CaseSpec = { steps: nodeList(kase["steps"], `${cw}.steps`) };
        if (kase["when"] !== undefined) out.when = text(kase["when"], `${cw}.when`);
        if ("equals" in kase) out.equals = kase["equals"] as JsonValue;
        return out;
      });
      const out: ConditionSpec = { name, condition: { cases, otherwise: nodeList(c["otherwise"] ?? [], `${at}.otherwise`) } };
      if (c["switch"] !== undefined) out.condition.switch = text(c["switch"], `${at}.switch`);
      return out;
    }
    case "wait_for_signal": {
      const w = object(node[kind], at, ["signal", "timeout", "on_timeout", "approval"]);
      if (typeof w["signal"] !== "string" || w["signal"] === "") throw new Error(`${at}.signal: required`);
      const out: WaitForSignalSpec = { name, waitForSignal: { signal: w["signal"] } };
      if (w["timeout"] !== undefined) out.waitForSignal.timeoutMs = secondsMs(w["timeout"], `${at}.timeout`);
      if (w["on_timeout"] !== undefined) out.waitForSignal.onTimeout = nodeList(w["on_timeout"], `${at}.on_timeout`);
      if (w["approval"] !== undefined) {
        if (typeof w["approval"] !== "boolean") throw new Error(`${at}.approval: expected true or false`);
        out.waitForSignal.approval = w["approval"];
      }
      return out;
    }
    case "sleep":
      return { name, sleepMs: secondsMs(node[kind], at) };
  }
}

function fileStep(row: object, where: string): StepSpec {
  const s = object(row, where, FILE_STEP_KEYS);
  const name = nodeName(s["name"], `${where}.name`);
  const worker = s["worker"] === undefined ? "" : text(s["worker"], `${where}.worker`);
  const workflow = s["workflow"] === undefined ? "" : text(s["workflow"], `${where}.workflow`);
  if ((worker === "") === (workflow === "")) throw new Error(`${where}: needs a name and one of worker or workflow`);
  const out: StepSpec = { name, worker };
  if (workflow !== "") out.workflow = workflow;
  if (s["workflow_version"] !== undefined) {
    if (!Number.isInteger(s["workflow_version"]) || (s["workflow_version"] as number) < 0) throw new Error(`${where}.workflow_version: must be an integer >= 0`);
    out.workflowVersion = s["workflow_version"] as number;
  }
  if (s["compensation"] !== undefined) out.compensation = text(s["compensation"], `${where}.compensation`);
  if (s["timeout"] !== undefined) out.timeoutMs = secondsMs(s["timeout"], `${where}.timeout`);
  if (s["heartbeat_timeout"] !== undefined) out.heartbeatTimeoutMs = secondsMs(s["heartbeat_timeout"], `${where}.heartbeat_timeout`);
  if (s["retry"] !== undefined) out.retryPolicy = fileRetry(s["retry"], `${where}.retry`);
  if (s["compensation_retry"] !== undefined) out.compensationRetryPolicy = fileRetry(s["compensation_retry"], `${where}.compensation_retry`);
  if (s["usage_estimate"] !== undefined) {
    const e = object(s["usage_estimate"], `${where}.usage_estimate`, ["input_tokens", "output_tokens", "cost_usd"]);
    const at = (key: string): number => {
      const value = e[key] ?? 0;
      if (typeof value !== "number" || value < 0 || (key !== "cost_usd" && !Number.isInteger(value))) throw new Error(`${where}.usage_estimate.${key}: must be ${key === "cost_usd" ? "a number" : "an integer"} >= 0`);
      return value;
    };
    out.usageEstimate = { inputTokens: at("input_tokens"), outputTokens: at("output_tokens"), costNanoUsd: Math.round(at("cost_usd") * 1e9) };
  }
  if (s["rate_limits"] !== undefined) {
    if (!Array.isArray(s["rate_limits"])) throw new Error(`${where}.rate_limits: expected a list`);
    out.rateLimits = s["rate_limits"].map((row: unknown, i: number): RateLimitKeySpec => {
      if (typeof row === "string") return row;
      const k = object(row, `${where}.rate_limits[${i}]`, ["key_expression"]);
      return { keyExpression: text(k["key_expression"], `${where}.rate_limits[${i}].key_expression`) };
    });
  }
  return out;
}

function fileRetry(value: unknown, where: string): RetryPolicySpec {
  const r = object(value, where, FILE_RETRY_KEYS);
  const out: RetryPolicySpec = {};
  if (r["max_attempts"] !== undefined) {
    if (!Number.isInteger(r["max_attempts"]) || (r["max_attempts"] as number) < 1) throw new Error(`${where}.max_attempts: must be an integer >= 1`);
    out.maximumAttempts = r["max_attempts"] as number;
  }
  if (r["initial_interval"] !== undefined) out.initialIntervalMs = secondsMs(r["initial_interval"], `${where}.initial_interval`, true);
  if (r["backoff_coefficient"] !== undefined) {
    if (typeof r["backoff_coefficient"] !== "number" || r["backoff_coefficient"] < 1) throw new Error(`${where}.backoff_coefficient: must be a number >= 1`);
    out.backoffCoefficient = r["backoff_coefficient"];
  }
  if (r["maximum_interval"] !== undefined) out.maximumIntervalMs = secondsMs(r["maximum_interval"], `${where}.maximum_interval`, true);
  if (r["non_retryable_error_types"] !== undefined) {
    const types = r["non_retryable_error_types"];
    if (!Array.isArray(types) || !types.every((t) => typeof t === "string")) throw new Error(`${where}.non_retryable_error_types: expected a list of strings`);
    out.nonRetryableErrorTypes = types;
  }
  return out;
}
