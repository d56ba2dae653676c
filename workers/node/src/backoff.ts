/** Reconnect delays: exponential backoff with jitter. */

/** Bounds of the reconnect backoff. */
export interface BackoffOptions {
  /** First delay, in ms. Default 100. */
  initialMs?: number;
  /** Largest delay, in ms. Default 5000. */
  maxMs?: number;
}

/**
 * Delay before reconnect attempt `attempt` (0-based): `initialMs * 2^attempt`
 * capped at `maxMs`, then drawn uniformly from its upper half so that many
 * workers restarted together do not reconnect in lockstep.
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = options.initialMs ?? 100;
  const max = options.maxMs ?? 5000;
  const ceiling = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** Resolves after `ms`, or early when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
