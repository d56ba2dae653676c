// A MultiAgents worker in Node.js, serving the two steps of the "node_example" workflow
// (submit.ts registers and runs it). Run: node dist/examples/example-worker.js
import { NonRetryableError, serverAddress, Worker } from "../src/index.js";

const worker = new Worker({
  address: serverAddress(),
  token: process.env["MULTIAGENTS_TOKEN"],
});
worker.register("node_example.greet", async (ctx) => {
  if (typeof ctx["name"] !== "string") throw new NonRetryableError("input needs a string 'name'", "ValueError");
  return { greeting: `Hello, ${ctx["name"]}!` };
});
worker.register("node_example.shout", async (ctx, task) => ({ shout: String(ctx["greeting"]).toUpperCase(), attempt: task.attempt }));
process.once("SIGTERM", () => void worker.shutdown());
process.once("SIGINT", () => void worker.shutdown());
await worker.run();
