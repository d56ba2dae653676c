/**
 * JSON payloads: the `Payload { metadata, data }` envelope with
 * metadata["encoding"] = "json/plain" that carries contexts, results and
 * details on the wire.
 */
import type { Payload } from "./gen/multiagents/v1/common.js";
import { NonRetryableError } from "./errors.js";

/** The default (and only merged) payload encoding. */
export const JSON_ENCODING = "json/plain";

/** Any JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** A JSON object, as contexts and results are. */
export type JsonObject = { [key: string]: JsonValue };

const ENCODING_BYTES = Buffer.from(JSON_ENCODING);

/** Encodes a value as a json/plain payload; throws a TypeError when it has no JSON form. */
export function encodeJson(value: unknown): Payload {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new TypeError(`value is not JSON-serialisable: ${(err as Error).message}`);
  }
  if (text === undefined) throw new TypeError(`value of type ${typeof value} is not JSON-serialisable`);
  return { metadata: { encoding: ENCODING_BYTES }, data: Buffer.from(text) };
}

/** Decodes a json/plain payload into any JSON value; an unset or empty payload is `undefined`. */
export function decodeJson(payload: Payload | undefined, what: string): unknown {
  if (payload === undefined || payload.data.length === 0) return undefined;
  const encoding = payload.metadata["encoding"];
  if (encoding !== undefined && encoding.toString() !== JSON_ENCODING) {
    throw new NonRetryableError(`${what}: unsupported payload encoding "${encoding.toString()}"`, "PayloadDecodeError");
  }
  try {
    return JSON.parse(payload.data.toString("utf8"));
  } catch (err) {
    throw new NonRetryableError(`${what}: invalid JSON: ${(err as Error).message}`, "PayloadDecodeError");
  }
}

/** Decodes a json/plain payload that must hold a JSON object; unset or empty is `{}`. */
export function decodeJsonObject(payload: Payload | undefined, what: string): Record<string, unknown> {
  const value = decodeJson(payload, what);
  if (value === undefined || value === null) return {};
  if (!isPlainObject(value)) {
    throw new NonRetryableError(`${what}: expected a JSON object, got ${describe(value)}`, "PayloadDecodeError");
  }
  return value;
}

/** True for `{...}` objects (not arrays, not null). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** A short description of a value's JSON kind, for error messages. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}
