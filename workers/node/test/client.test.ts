/**
 * The WorkflowService client against a scripted in-process grpc-js server.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { type Failure, FailureKind, WorkflowState } from "../src/gen/multiagents/v1/common.js";
import type { StatusEvent } from "../src/gen/multiagents/v1/events.js";
import { StepStatus } from "../src/gen/multiagents/v1/workflow.js";
import {
  WorkflowServiceService,
  type ExecuteWorkflowRequest,
  type RegisterWorkflowRequest,
  type WatchWorkflowRequest,
  type WatchWorkflowResponse,
} from "../src/gen/multiagents/v1/workflow_service.js";
import { Client, WorkflowFailedError, encodeJson, isTerminal, type StatusUpdate } from "../src/index.js";

function failure(message: string, type: string, kind: FailureKind): Failure {
  return { message, type, kind, nonRetryable: false, stackTrace: "", details: undefined, cause: undefined };
}

type Unary<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => void;

const received: { register?: RegisterWorkflowRequest; execute?: ExecuteWorkflowRequest; auth?: grpc.MetadataValue[] } = {};
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
        steps: [{ name: "reserve", status: StepStatus.STEP_STATUS_COMPENSATED, attempts: 1, lastFailure: undefined, path: "reserve", kind: "step", branch: "" }],
        runningSteps: [],
        waitingSignals: [],
        createdAt: new Date(1_700_000_000_000),
        updatedAt: undefined,
        completedAt: undefined,
        revision: 9,
      },
    });
  };
  server.addService(WorkflowServiceService, {
    registerWorkflow,
    executeWorkflow,
    getStatus,
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
    assert.deepEqual(status.steps, [{ name: "reserve", status: "COMPENSATED", attempts: 1, lastFailure: undefined }]);
    assert.equal(status.revision, 9);
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
