/**
 * Logging: a four-method interface the worker logs through, and a default
 * implementation that writes one line per record to stderr.
 */

/** Structured fields of a log record. */
export type LogFields = Record<string, unknown>;

/** What the worker and client log through; pass your own (pino, winston) to route it. */
export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** Log levels, least to most severe. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/**
 * A logger writing `time LEVEL message key=value ...` lines to stderr.
 * The level defaults to $MULTIAGENTS_LOG_LEVEL, else "info".
 */
export function consoleLogger(level?: LogLevel, name = "multiagents"): Logger {
  const envLevel = process.env["MULTIAGENTS_LOG_LEVEL"]?.toLowerCase();
  const chosen: LogLevel = level ?? (envLevel !== undefined && envLevel in RANK ? (envLevel as LogLevel) : "info");
  const min = RANK[chosen];
  const write = (lvl: Exclude<LogLevel, "silent">, message: string, fields?: LogFields): void => {
    if (RANK[lvl] < min) return;
    let line = `${new Date().toISOString()} ${lvl.toUpperCase()} ${name}: ${message}`;
    if (fields) {
      for (const [key, value] of Object.entries(fields)) {
        if (value === undefined) continue;
        const text = typeof value === "string" ? value : value instanceof Error ? value.message : JSON.stringify(value);
        line += ` ${key}=${/\s/.test(text ?? "") ? JSON.stringify(text) : text}`;
      }
    }
    process.stderr.write(line + "\n");
  };
  return {
    debug: (m, f) => write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
  };
}
