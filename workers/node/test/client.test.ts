/**
 * The WorkflowService client against a scripted in-process grpc-js server.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { type Failure, FailureKind, WorkflowState } from "../src/gen/multiagents/v1/common.js";
import type { StatusEvent } from "../src/gen/multiagents/v1/events.js";
import { ScheduleActionKind, ScheduleOverlapPolicy, type ScheduleDefinition, type ScheduleStatus } from "../src/gen/multiagents/v1/schedule.js";
import { StepStatus } from "../src/gen/multiagents/v1/workflow.js";
import {
  WorkflowServiceService,
  type CreateScheduleRequest,
  type ExecuteWorkflowRequest,
  type ListSchedulesRequest,
  type ListWaitingSignalsRequest,
  type RegisterWorkflowRequest,
  type SignalWorkflowRequest,
  type WatchWorkflowRequest,
  type WatchWorkflowResponse,
} from "../src/gen/multiagents/v1/workflow_service.js";
import { Client, WorkflowBuilder, WorkflowFailedError, branch, caseWhen, encodeJson, isTerminal, step, toDefinition, type OverlapPolicyName, type StatusUpdate } from "../src/index.js";

function failure(message: string, type: string, kind: FailureKind): Failure {
  return { message, type, kind, nonRetryable: false, stackTrace: "", details: undefined, cause: undefined };
}

type Unary<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => void;

const received: {
  register?: RegisterWorkflowRequest;
  execute?: ExecuteWorkflowRequest;
  auth?: grpc.MetadataValue[];
  signals: SignalWorkflowRequest[];
  resumed: string[];
  inbox?: ListWaitingSignalsRequest;
  createSchedule?: CreateScheduleRequest;
  scheduleLists: ListSchedulesRequest[];
  /** "pause id note", "unpause id note", "delete id". */
  scheduleCalls: string[];
} = { signals: [], resumed: [], scheduleLists: [], scheduleCalls: [] };

/** The schedule the scripted server holds, as it answers for it. */
function scheduleStatus(definition: ScheduleDefinition, extra: Partial<ScheduleStatus> = {}): ScheduleStatus {
  return {
    definition,
    createdAt: new Date(1_700_000_000_000),
    updatedAt: new Date(1_700_000_000_000),
    nextFireTime: definition.paused ? undefined : new Date(1_700_010_800_000),
    bufferedFireTime: undefined,
    runsStarted: 0,
    runsSkipped: 0,
    lastTransactionId: "",
    recentActions: [],
    ...extra,
  };
}
const NIGHTLY: ScheduleDefinition = {
  scheduleId: "nightly",
  cron: "0 3 * * *",
  timeZone: "Europe/Paris",
  workflowName: "report",
  workflowVersion: 0,
  input: encodeJson({ scope: "all" }),
  overlapPolicy: ScheduleOverlapPolicy.SCHEDULE_OVERLAP_POLICY_UNSPECIFIED,
  catchupWindow: { seconds: 31_536_000, nanos: 0 },
  paused: false,
  note: "",
};
const HOURLY = scheduleStatus(
  { ...NIGHTLY, scheduleId: "hourly", cron: "@hourly", timeZone: "UTC", workflowVersion: 3, overlapPolicy: ScheduleOverlapPolicy.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE, catchupWindow: { seconds: 90, nanos: 500_000_000 } },
  {
    bufferedFireTime: new Date(1_700_003_600_000),
    runsStarted: 4,
    runsSkipped: 1,
    lastTransactionId: "tx-4",
    recentActions: [
      { fireTime: new Date(1_700_003_600_000), takenAt: new Date(1_700_003_600_010), kind: ScheduleActionKind.SCHEDULE_ACTION_KIND_BUFFERED, transactionId: "tx-4", message: "tx-4 is still running" },
      { fireTime: new Date(1_700_000_000_000), takenAt: new Date(1_700_000_000_020), kind: ScheduleActionKind.SCHEDULE_ACTION_KIND_STARTED, transactionId: "tx-4", message: "" },
      { fireTime: new Date(1_699_996_400_000), takenAt: new Date(1_699_996_400_000), kind: 9 as ScheduleActionKind, transactionId: "", message: "from a newer server" },
    ],
  },
);
const WAITING = {
  transactionId: "tx-1",
  workflowName: "publish",
  path: "review/approval",
  signal: "approval",
  approval: true,
  since: new Date(1_700_000_000_000),
  timeoutAt: undefined,
};
/** Scripted watch streams: each call takes the next script. */
const watchScripts: Array<(call: grpc.ServerWritableStream<WatchWorkflowRequest, WatchWorkflowResponse>) => void> = [];

function event(state: WorkflowState, revision: number, extra: Partial<StatusEvent> = {}): WatchWorkflowResponse {
  return {
    event: {
      transactionId: "tx-1",
      state,
      currentStep: "",
      stepResults: encodeJson({}),
      timestamp: new Date(1_700_000_000_000),
      correlationId: "corr",
      revision,
      failure: undefined,
      requiresManualIntervention: false,
      cancelReason: "",
      ...extra,
    },
    finalStatus: undefined,
    output: undefined,
    historyEvent: undefined,
    progress: undefined,
  };
}

let server: grpc.Server;
let client: Client;

before(async () => {
  server = new grpc.Server();
  const registerWorkflow: Unary<RegisterWorkflowRequest, { created: boolean }> = (call, cb) => {
    received.register = call.request;
    cb(null, { created: true });
  };
  const executeWorkflow: Unary<ExecuteWorkflowRequest, { transactionId: string; created: boolean }> = (call, cb) => {
    received.execute = call.request;
    received.auth = call.metadata.get("authorization");
    cb(null, { transactionId: "tx-1", created: true });
  };
  const getStatus: Unary<{ transactionId: string }, unknown> = (call, cb) => {
    if (call.request.transactionId !== "tx-1") return cb({ code: grpc.status.NOT_FOUND, details: "unknown transaction" });
    cb(null, {
      status: {
        transactionId: "tx-1",
        correlationId: "corr",
        workflowName: "order",
        workflowVersion: 2,
        state: WorkflowState.WORKFLOW_STATE_COMPENSATED,
        currentStep: "",
        stepResults: encodeJson({ reserve: { id: 7 } }),
        context: encodeJson({ order: 1, id: 7 }),
        failure: failure("boom", "Error", FailureKind.FAILURE_KIND_APPLICATION),
        requiresManualIntervention: false,
        steps: [
          { name: "reserve", status: StepStatus.STEP_STATUS_COMPENSATED, attempts: 1, lastFailure: undefined, path: "reserve", kind: "step", branch: "", childTransactionId: "", startedAt: new Date(1_700_000_000_000), finishedAt: new Date(1_700_000_001_000) },
          { name: "route", status: StepStatus.STEP_STATUS_COMPLETED, attempts: 0, lastFailure: undefined, path: "review/route", kind: "condition", branch: "otherwise", childTransactionId: "", startedAt: undefined, finishedAt: undefined },
          { name: "publish", status: StepStatus.STEP_STATUS_SKIPPED, attempts: 0, lastFailure: undefined, path: "review/route/publish", kind: "step", branch: "", childTransactionId: "", startedAt: undefined, finishedAt: undefined },
          {
            name: "draft",
            status: StepStatus.STEP_STATUS_RUNNING,
            attempts: 1,
            path: "draft",
            kind: "step",
            progress: { details: encodeJson({ waiting_for_rate_limit: "tenant:acme", reason: "concurrency" }), updatedAt: new Date(1_700_000_002_000), attempt: 1, commandId: "tx-1:draft:1", path: "" },
          },
        ],
        runningSteps: ["ask/legal/legal_review", "ask/critic/critic_review"],
        waitingSignals: [WAITING],
        startAt: new Date(1_700_000_060_000),
        parentTransactionId: "tx-0",
        createdAt: new Date(1_700_000_000_000),
        updatedAt: undefined,
        completedAt: undefined,
        revision: 9,
      },
    });
  };
  const signalWorkflow: Unary<SignalWorkflowRequest, { duplicate: boolean }> = (call, cb) => {
    if (call.request.signal === "nope") return cb({ code: grpc.status.INVALID_ARGUMENT, details: "signal: workflow 'publish' has no wait_for_signal step for 'nope'" });
    const duplicate = call.request.signalId !== "" && received.signals.some((s) => s.signalId === call.request.signalId);
    received.signals.push(call.request);
    cb(null, { duplicate });
  };
  const resumeWorkflow: Unary<{ transactionId: string }, Record<string, never>> = (call, cb) => {
    if (call.request.transactionId !== "tx-1") return cb({ code: grpc.status.FAILED_PRECONDITION, details: "transaction_id: tx-9 is COMPENSATED, not FAILED" });
    received.resumed.push(call.request.transactionId);
    cb(null, {});
  };
  const listWaitingSignals: Unary<ListWaitingSignalsRequest, unknown> = (call, cb) => {
    received.inbox = call.request;
    cb(null, { waiting: [WAITING] });
  };
  const unknownSchedule = { code: grpc.status.NOT_FOUND, details: "schedule_id: no schedule 'nope'" };
  const createSchedule: Unary<CreateScheduleRequest, unknown> = (call, cb) => {
    const schedule = call.request.schedule!;
    if (schedule.scheduleId === "nightly" && received.createSchedule !== undefined) return cb({ code: grpc.status.ALREADY_EXISTS, details: "schedule_id: 'nightly' exists" });
    received.createSchedule = call.request;
    cb(null, { status: scheduleStatus(schedule) });
  };
  const getSchedule: Unary<{ scheduleId: string }, unknown> = (call, cb) => {
    if (call.request.scheduleId !== "hourly") return cb(unknownSchedule);
    cb(null, { status: HOURLY });
  };
  const listSchedules: Unary<ListSchedulesRequest, unknown> = (call, cb) => {
    received.scheduleLists.push(call.request);
    // Two pages: hourly, then nightly.
    if (call.request.pageToken === "") cb(null, { schedules: [HOURLY], nextPageToken: "after:hourly" });
    else cb(null, { schedules: [scheduleStatus(NIGHTLY)], nextPageToken: "" });
  };
  const pauseOrUnpause =
    (verb: "pause" | "unpause"): Unary<{ scheduleId: string; note: string }, unknown> =>
    (call, cb) => {
      if (call.request.scheduleId !== "nightly") return cb(unknownSchedule);
      received.scheduleCalls.push(`${verb} ${call.request.scheduleId} ${call.request.note}`);
      cb(null, { status: scheduleStatus({ ...NIGHTLY, paused: verb === "pause", note: call.request.note }) });
    };
  const deleteSchedule: Unary<{ scheduleId: string }, Record<string, never>> = (call, cb) => {
    if (call.request.scheduleId !== "nightly") return cb(unknownSchedule);
    received.scheduleCalls.push(`delete ${call.request.scheduleId}`);
    cb(null, {});
  };
  server.addService(WorkflowServiceService, {
    createSchedule,
    getSchedule,
    listSchedules,
    pauseSchedule: pauseOrUnpause("pause"),
    unpauseSchedule: pauseOrUnpause("unpause"),
    deleteSchedule,
    registerWorkflow,
    executeWorkflow,
    getStatus,
    signalWorkflow,
    resumeWorkflow,
    listWaitingSignals,
    watchWorkflow: (call: grpc.ServerWritableStream<WatchWorkflowRequest, WatchWorkflowResponse>) => {
      const script = watchScripts.shift();
      if (script) script(call);
      else call.emit("error", { code: grpc.status.NOT_FOUND, details: "no script" });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  client = new Client({ address: `127.0.0.1:${port}`, token: "tok" });
});

after(() => {
  client.close();
  server.forceShutdown();
});

describe("Client", () => {
  it("executeWorkflow sends the input as json/plain with the bearer token and returns the transaction id", async () => {
    const tx = await client.executeWorkflow("order", { order_id: 7 }, { requestId: "r1", correlationId: "c1" });
    assert.equal(tx, "tx-1");
    const req = received.execute!;
    assert.equal(req.workflowName, "order");
    assert.equal(req.version, 0);
    assert.equal(req.requestId, "r1");
    assert.equal(req.correlationId, "c1");
    assert.equal(req.input?.metadata["encoding"]?.toString(), "json/plain");
    assert.deepEqual(JSON.parse(req.input!.data.toString()), { order_id: 7 });
    assert.deepEqual(received.auth, ["Bearer tok"]);
  });

  it("registerWorkflow converts millisecond durations and retry policies", async () => {
    const created = await client.registerWorkflow({
      name: "order",
      steps: [
        { name: "a", worker: "w.a", compensation: "w.undo", timeoutMs: 1500, retryPolicy: { maximumAttempts: 3, initialIntervalMs: 250 } },
        { name: "b", worker: "w.b", heartbeatTimeoutMs: 2000 },
      ],
    });
    assert.equal(created, true);
    const def = received.register!.definition!;
    assert.equal(def.version, 1);
    assert.deepEqual(def.steps[0]!.timeout, { seconds: 1, nanos: 500_000_000 });
    assert.equal(def.steps[0]!.compensation, "w.undo");
    assert.equal(def.steps[0]!.retryPolicy?.maximumAttempts, 3);
    assert.deepEqual(def.steps[0]!.retryPolicy?.initialInterval, { seconds: 0, nanos: 250_000_000 });
    assert.deepEqual(def.steps[1]!.heartbeatTimeout, { seconds: 2, nanos: 0 });
    assert.equal(def.steps[1]!.retryPolicy, undefined);
  });

  it("getStatus decodes payloads, states and steps", async () => {
    const status = await client.getStatus("tx-1");
    assert.equal(status.state, "COMPENSATED");
    assert.deepEqual(status.stepResults, { reserve: { id: 7 } });
    assert.deepEqual(status.context, { order: 1, id: 7 });
    assert.equal(status.failure?.message, "boom");
    assert.deepEqual(status.steps[0], {
      name: "reserve",
      status: "COMPENSATED",
      attempts: 1,
      lastFailure: undefined,
      path: "reserve",
      kind: "step",
      branch: "",
      childTransactionId: "",
      startedAt: new Date(1_700_000_000_000),
      finishedAt: new Date(1_700_000_001_000),
      progress: undefined,
    });
    assert.deepEqual(status.steps[3]!.progress, { waiting_for_rate_limit: "tenant:acme", reason: "concurrency" });
    assert.deepEqual(
      status.steps.slice(1, 3).map((s) => [s.path, s.kind, s.status, s.branch]),
      [
        ["review/route", "condition", "COMPLETED", "otherwise"],
        ["review/route/publish", "step", "SKIPPED", ""],
      ],
    );
    assert.deepEqual(status.runningSteps, ["ask/legal/legal_review", "ask/critic/critic_review"]);
    assert.deepEqual(status.waitingSignals, [WAITING]);
    assert.deepEqual([status.startAt, status.parentTransactionId], [new Date(1_700_000_060_000), "tx-0"]);
    assert.equal(status.revision, 9);
  });

  it("registerWorkflow sends a v2 definition as toDefinition converts it", async () => {
    const spec = new WorkflowBuilder("review")
      .addParallel("ask", [branch("legal", step("legal_review", "legal_agent"))], { failFast: false })
      .addCondition("route", [caseWhen("context.ask.legal.ok", step("publish", "publisher"))])
      .addWaitForSignal("approval", "approval", { approval: true, timeoutMs: 90_000 })
      .addSleep("rest", 1500)
      .build();
    await client.registerWorkflow(spec);
    const def = received.register!.definition!;
    assert.deepEqual(def, toDefinition(spec));
    assert.deepEqual(def.steps[2]!.waitForSignal!.timeout, { seconds: 90, nanos: 0 });
    assert.deepEqual(def.steps[3]!.sleep!.duration, { seconds: 1, nanos: 500_000_000 });
  });

  it("executeWorkflow sends startDelayMs as start_delay, and none without it", async () => {
    await client.executeWorkflow("nightly", {}, { startDelayMs: 3_600_500 });
    assert.deepEqual(received.execute!.startDelay, { seconds: 3600, nanos: 500_000_000 });
    await client.executeWorkflow("nightly", {});
    assert.equal(received.execute!.startDelay, undefined);
  });

  it("signalWorkflow, approve and reject send the signal and its JSON payload; a resent signal id says duplicate", async () => {
    received.signals.length = 0;
    assert.equal(await client.signalWorkflow("tx-1", "go", { n: 1 }, { signalId: "go-1" }), false);
    assert.equal(await client.signalWorkflow("tx-1", "go", { n: 1 }, { signalId: "go-1" }), true);
    assert.equal(await client.approve("tx-1", { by: "ana", comment: "fine" }), false);
    await client.reject("tx-1", { signal: "legal_ok", comment: "too expensive" });
    assert.deepEqual(
      received.signals.map((s) => [s.transactionId, s.signal, s.signalId, JSON.parse(s.payload!.data.toString())]),
      [
        ["tx-1", "go", "go-1", { n: 1 }],
        ["tx-1", "go", "go-1", { n: 1 }],
        ["tx-1", "approval", "", { approved: true, comment: "fine", by: "ana" }],
        ["tx-1", "legal_ok", "", { approved: false, comment: "too expensive" }],
      ],
    );
    assert.equal(received.signals[0]!.payload!.metadata["encoding"]?.toString(), "json/plain");
    await assert.rejects(client.signalWorkflow("tx-1", "nope"), (err: grpc.ServiceError) => err.code === grpc.status.INVALID_ARGUMENT && /nope/.test(err.details));
    await assert.rejects(client.signalWorkflow("tx-1", "go", [1] as unknown as Record<string, unknown>), TypeError);
  });

  it("resumeWorkflow resumes, and passes the server's FAILED_PRECONDITION on", async () => {
    await client.resumeWorkflow("tx-1");
    assert.deepEqual(received.resumed, ["tx-1"]);
    await assert.rejects(client.resumeWorkflow("tx-9"), (err: grpc.ServiceError) => err.code === grpc.status.FAILED_PRECONDITION);
  });

  it("listWaitingSignals sends the filters (limit 100 by default) and decodes the inbox", async () => {
    assert.deepEqual(await client.listWaitingSignals({ approvalsOnly: true, workflowName: "publish" }), [WAITING]);
    assert.deepEqual(received.inbox, { signal: "", workflowName: "publish", approvalsOnly: true, pageSize: 100 });
    await client.listWaitingSignals({ signal: "go", limit: 5 });
    assert.deepEqual(received.inbox, { signal: "go", workflowName: "", approvalsOnly: false, pageSize: 5 });
  });

  it("createSchedule sends the definition (policy, window, zone, input) and decodes the status; a taken id rejects with ALREADY_EXISTS", async () => {
    const created = await client.createSchedule("nightly", "0 3 * * *", "report", { scope: "all" }, { timeZone: "Europe/Paris", overlapPolicy: "cancel_other", catchupWindowMs: 90_500, note: "n" });
    const sent = received.createSchedule!.schedule!;
    assert.deepEqual(
      [sent.scheduleId, sent.cron, sent.timeZone, sent.workflowName, sent.workflowVersion, sent.overlapPolicy, sent.catchupWindow, sent.paused, sent.note],
      ["nightly", "0 3 * * *", "Europe/Paris", "report", 0, ScheduleOverlapPolicy.SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER, { seconds: 90, nanos: 500_000_000 }, false, "n"],
    );
    assert.equal(sent.input?.metadata["encoding"]?.toString(), "json/plain");
    assert.deepEqual(JSON.parse(sent.input!.data.toString()), { scope: "all" });
    assert.deepEqual(
      [created.scheduleId, created.input, created.overlapPolicy, created.catchupWindowMs, created.nextFireTime, created.recentActions],
      ["nightly", { scope: "all" }, "cancel_other", 90_500, new Date(1_700_010_800_000), []],
    );
    await assert.rejects(client.createSchedule("nightly", "0 3 * * *", "report"), (err: grpc.ServiceError) => err.code === grpc.status.ALREADY_EXISTS);
  });

  it("createSchedule sends defaults (skip, no window, version 0) and refuses a bad policy or input before calling", async () => {
    received.createSchedule = undefined;
    await client.createSchedule("daily", "@daily", "report", {}, { paused: true, version: 2 });
    const sent = received.createSchedule!.schedule!;
    assert.deepEqual(
      [sent.overlapPolicy, sent.catchupWindow, sent.timeZone, sent.paused, sent.workflowVersion],
      [ScheduleOverlapPolicy.SCHEDULE_OVERLAP_POLICY_SKIP, undefined, "", true, 2],
    );
    received.createSchedule = undefined;
    await assert.rejects(
      client.createSchedule("x", "@daily", "report", {}, { overlapPolicy: "buffer_all" as OverlapPolicyName }),
      (err: unknown) => err instanceof RangeError && err.message === 'overlapPolicy: expected one of allow_all, buffer_one, cancel_other, skip, got "buffer_all"',
    );
    await assert.rejects(client.createSchedule("x", "@daily", "report", [1] as unknown as Record<string, unknown>), TypeError);
    assert.equal(received.createSchedule, undefined);
  });

  it("getSchedule decodes the schedule with its actions, newest first; an unknown id rejects with NOT_FOUND", async () => {
    const s = await client.getSchedule("hourly");
    assert.deepEqual(
      [s.scheduleId, s.cron, s.timeZone, s.workflowVersion, s.overlapPolicy, s.catchupWindowMs, s.paused, s.bufferedFireTime, s.runsStarted, s.runsSkipped, s.lastTransactionId],
      ["hourly", "@hourly", "UTC", 3, "buffer_one", 90_500, false, new Date(1_700_003_600_000), 4, 1, "tx-4"],
    );
    assert.deepEqual(s.recentActions[0], { fireTime: new Date(1_700_003_600_000), takenAt: new Date(1_700_003_600_010), kind: "buffered", transactionId: "tx-4", message: "tx-4 is still running" });
    assert.deepEqual(
      s.recentActions.map((a) => a.kind),
      ["buffered", "started", "unspecified"],
    );
    await assert.rejects(client.getSchedule("nope"), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND && /nope/.test(err.details));
  });

  it("listSchedules reads every page with the workflow filter; UNSPECIFIED reads as skip", async () => {
    received.scheduleLists.length = 0;
    const all = await client.listSchedules({ workflowName: "report" });
    assert.deepEqual(
      all.map((s) => [s.scheduleId, s.overlapPolicy, s.catchupWindowMs]),
      [
        ["hourly", "buffer_one", 90_500],
        ["nightly", "skip", 31_536_000_000],
      ],
    );
    assert.deepEqual(received.scheduleLists, [
      { workflowName: "report", pageSize: 1000, pageToken: "" },
      { workflowName: "report", pageSize: 1000, pageToken: "after:hourly" },
    ]);
  });

  it("pauseSchedule, unpauseSchedule and deleteSchedule send the id and note; an unknown id rejects with NOT_FOUND", async () => {
    received.scheduleCalls.length = 0;
    const paused = await client.pauseSchedule("nightly", "holidays");
    assert.deepEqual([paused.paused, paused.note, paused.nextFireTime], [true, "holidays", undefined]);
    const unpaused = await client.unpauseSchedule("nightly");
    assert.deepEqual([unpaused.paused, unpaused.nextFireTime], [false, new Date(1_700_010_800_000)]);
    await client.deleteSchedule("nightly");
    assert.deepEqual(received.scheduleCalls, ["pause nightly holidays", "unpause nightly ", "delete nightly"]);
    for (const call of [client.pauseSchedule("nope"), client.unpauseSchedule("nope"), client.deleteSchedule("nope")]) {
      await assert.rejects(call, (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
    }
  });

  it("putRateLimit refuses a count that is not an integer in range before any call (the scripted server has no PutRateLimit)", async () => {
    for (const [options, message] of [
      [{ requests: -1 }, "requests: expected an integer from 0 to 4294967295, got -1"],
      [{ maxConcurrent: 2 ** 32 }, "maxConcurrent: expected an integer from 0 to 4294967295, got 4294967296"],
      [{ tokens: 1.5 }, "tokens: expected an integer from 0 to 9007199254740991, got 1.5"],
    ] as const) {
      await assert.rejects(client.putRateLimit("tenant:*", options), (err: unknown) => err instanceof RangeError && err.message === message);
    }
    await assert.rejects(client.putRateLimit("tenant:*", { maxConcurrent: 1 }), (err: grpc.ServiceError) => err.code === grpc.status.UNIMPLEMENTED);
  });

  it("getStatus of an unknown transaction rejects with NOT_FOUND", async () => {
    await assert.rejects(client.getStatus("nope"), (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND);
  });

  it("watch yields each change until a terminal state, reopening a broken stream without repeats", async () => {
    watchScripts.push((call) => {
      call.write(event(WorkflowState.WORKFLOW_STATE_PENDING, 1));
      call.write(event(WorkflowState.WORKFLOW_STATE_RUNNING, 2, { currentStep: "a" }));
      setTimeout(() => call.emit("error", { code: grpc.status.UNAVAILABLE, details: "replica restarting" }), 20);
    });
    watchScripts.push((call) => {
      // The reopened stream starts with the current status again.
      call.write(event(WorkflowState.WORKFLOW_STATE_RUNNING, 2, { currentStep: "a" }));
      call.write(event(WorkflowState.WORKFLOW_STATE_COMPLETED, 4, { stepResults: encodeJson({ a: { ok: true } }) }));
      call.end();
    });
    const updates: StatusUpdate[] = [];
    for await (const update of client.watch("tx-1")) updates.push(update);
    assert.deepEqual(
      updates.map((u) => [u.state, u.currentStep, u.revision]),
      [
        ["PENDING", "", 1],
        ["RUNNING", "a", 2],
        ["COMPLETED", "", 4],
      ],
    );
    assert.deepEqual(updates.at(-1)!.stepResults, { a: { ok: true } });
    assert.ok(isTerminal(updates.at(-1)!.state));
  });

  it("wait returns the terminal update; watch stops when its signal aborts", async () => {
    watchScripts.push((call) => {
      call.write(event(WorkflowState.WORKFLOW_STATE_FAILED, 3, { failure: failure("x", "ValueError", FailureKind.FAILURE_KIND_UNSPECIFIED) }));
    });
    const final = await client.wait("tx-1");
    assert.equal(final.state, "FAILED");
    assert.equal(final.failure?.type, "ValueError");

    watchScripts.push((call) => call.write(event(WorkflowState.WORKFLOW_STATE_RUNNING, 1)));
    const controller = new AbortController();
    const seen: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const update of client.watch("tx-1", { signal: controller.signal })) {
          seen.push(update.state);
          controller.abort(new Error("enough"));
        }
      })(),
      /enough/,
    );
    assert.deepEqual(seen, ["RUNNING"]);
  });

  it("result rejects with WorkflowFailedError carrying the failure's kind and cause chain, or the cancel reason", async () => {
    const childFailure = failure("sub-workflow tx-1.0.1 ended failed: boom", "ChildWorkflowFailed", FailureKind.FAILURE_KIND_CHILD_WORKFLOW_FAILED);
    childFailure.cause = failure("boom", "WorkerExecutionError", FailureKind.FAILURE_KIND_APPLICATION);
    watchScripts.push((call) => call.write(event(WorkflowState.WORKFLOW_STATE_COMPENSATED, 5, { failure: childFailure })));
    const failed = await client.result("tx-1").then(
      () => assert.fail("result() resolved for a compensated workflow"),
      (err: unknown) => err,
    );
    assert.ok(failed instanceof WorkflowFailedError);
    assert.equal(failed.state, "COMPENSATED");
    assert.equal(failed.failure?.kind, "CHILD_WORKFLOW_FAILED");
    assert.deepEqual([failed.failure?.cause?.kind, failed.failure?.cause?.type], ["APPLICATION", "WorkerExecutionError"]);
    assert.equal(failed.failure?.cause?.cause, undefined);
    assert.match(failed.message, /^workflow tx-1 ended COMPENSATED: ChildWorkflowFailed \[CHILD_WORKFLOW_FAILED\]: /);

    watchScripts.push((call) => call.write(event(WorkflowState.WORKFLOW_STATE_CANCELLED, 6, { cancelReason: "operator" })));
    await assert.rejects(client.result("tx-1"), (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      assert.deepEqual([err.state, err.failure, err.cancelReason], ["CANCELLED", undefined, "operator"]);
      return true;
    });
  });

  it("watch of an unknown transaction rejects with the server's error", async () => {
    await assert.rejects(
      (async () => {
        for await (const _ of client.watch("nope")) void _;
      })(),
      (err: grpc.ServiceError) => err.code === grpc.status.NOT_FOUND,
    );
  });
});
