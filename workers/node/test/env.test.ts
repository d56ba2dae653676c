/**
 * The server address from the environment and the default concurrency, the
 * same as in the Python and Go SDKs.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { describe, it } from "node:test";
import { DEFAULT_ADDRESS, DEFAULT_MAX_CONCURRENCY, serverAddress, Worker } from "../src/index.js";

describe("environment", () => {
  it("reads MULTIAGENTS_SERVER first", () => {
    assert.equal(serverAddress({ MULTIAGENTS_SERVER: "a:1", MULTIAGENTS_ADDRESS: "b:2" }), "a:1");
    assert.equal(serverAddress({}), DEFAULT_ADDRESS);
  });

  it("still reads MULTIAGENTS_ADDRESS, with a deprecation warning", async () => {
    const warned = once(process, "warning");
    assert.equal(serverAddress({ MULTIAGENTS_ADDRESS: "b:2" }), "b:2");
    const [warning] = (await warned) as [Error & { code?: string }];
    assert.equal(warning.name, "DeprecationWarning");
    assert.equal(warning.code, "MULTIAGENTS_ADDRESS");
    assert.match(warning.message, /MULTIAGENTS_SERVER/);
  });

  it("defaults a worker to 8 commands at once", () => {
    assert.equal(DEFAULT_MAX_CONCURRENCY, 8);
    assert.equal(new Worker({ address: "127.0.0.1:1" }).maxConcurrency, 8);
    assert.equal(new Worker({}).maxConcurrency, 8);
  });
});
