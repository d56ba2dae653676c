/**
 * Settings every MultiAgents SDK shares: the server address from the
 * environment and the default worker concurrency.
 */

/** The server address when none is given and MULTIAGENTS_SERVER is unset. */
export const DEFAULT_ADDRESS = "127.0.0.1:50051";

/** Commands a worker runs at once by default: 8, as in the Python and Go SDKs. */
export const DEFAULT_MAX_CONCURRENCY = 8;

let warnedOldName = false;

/**
 * The server address: $MULTIAGENTS_SERVER (as in the Python and Go SDKs), else
 * the deprecated $MULTIAGENTS_ADDRESS (with a one-time DeprecationWarning),
 * else {@link DEFAULT_ADDRESS}.
 */
export function serverAddress(env: NodeJS.ProcessEnv = process.env): string {
  const address = env["MULTIAGENTS_SERVER"];
  if (address) return address;
  const old = env["MULTIAGENTS_ADDRESS"];
  if (old) {
    if (!warnedOldName) {
      warnedOldName = true;
      process.emitWarning("MULTIAGENTS_ADDRESS is deprecated: set MULTIAGENTS_SERVER instead", {
        type: "DeprecationWarning",
        code: "MULTIAGENTS_ADDRESS",
      });
    }
    return old;
  }
  return DEFAULT_ADDRESS;
}
