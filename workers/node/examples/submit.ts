/**
 * Registers the "node_example" workflow (the steps example-worker.ts serves),
 * submits one execution and prints each status change until it is terminal.
 *
 *   node dist/examples/submit.js [name]     (server: $MULTIAGENTS_SERVER or 127.0.0.1:50051)
 *
 * Exits 0 when the workflow completed, 1 otherwise.
 */
import { Client, serverAddress } from "../src/index.js";

const client = new Client({
  address: serverAddress(),
  token: process.env["MULTIAGENTS_TOKEN"],
});
try {
  await client.registerWorkflow({
    name: "node_example",
    version: 1,
    description: "Greets someone, then shouts the greeting (served by workers/node/examples/example-worker.ts).",
    steps: [
      { name: "greet", worker: "node_example.greet", timeoutMs: 10_000 },
      { name: "shout", worker: "node_example.shout", timeoutMs: 10_000, retryPolicy: { maximumAttempts: 3, initialIntervalMs: 200 } },
    ],
  });
  const transactionId = await client.executeWorkflow("node_example", { name: process.argv[2] ?? "world" });
  console.log(`submitted ${transactionId}`);
  let final = "UNSPECIFIED";
  for await (const update of client.watch(transactionId)) {
    final = update.state;
    const step = update.currentStep ? ` step=${update.currentStep}` : "";
    const failure = update.failure ? ` failure=${update.failure.type}: ${update.failure.message}` : "";
    console.log(`${update.state}${step}${failure}`);
  }
  const status = await client.getStatus(transactionId);
  console.log(JSON.stringify(status.stepResults, null, 2));
  process.exitCode = final === "COMPLETED" ? 0 : 1;
} finally {
  client.close();
}
