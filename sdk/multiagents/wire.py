"""The wire format of user data, shared by the SDK and the server: the
`json/plain` encoding of the protocol's `Payload` (the messages themselves are
the generated `multiagents.v1`). Public, so the server depends on it as on
any other published module."""

from __future__ import annotations

import json
from typing import Any

from multiagents.v1 import common_pb2

ENCODING = "encoding"
JSON_PLAIN = b"json/plain"


class PayloadError(ValueError):
    """A payload is not valid JSON, or not in an encoding this side reads."""


def dumps(value: Any) -> bytes:
    """Compact JSON bytes of `value`; raises PayloadError when not JSON-able."""
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"value is not JSON-serialisable: {exc}") from None


def encode(value: Any) -> common_pb2.Payload:
    """A `json/plain` Payload holding `value`."""
    return common_pb2.Payload(metadata={ENCODING: JSON_PLAIN}, data=dumps(value))


def decode(payload: common_pb2.Payload, *, field: str = "payload") -> Any:
    """The value of a `json/plain` Payload. An empty payload decodes to None."""
    encoding = payload.metadata.get(ENCODING, JSON_PLAIN)
    if encoding != JSON_PLAIN:
        raise PayloadError(f"{field}: unsupported encoding {encoding.decode(errors='replace')!r}")
    if not payload.data:
        return None
    try:
        return json.loads(payload.data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"{field}: invalid JSON: {exc}") from None


def decode_object(payload: common_pb2.Payload, *, field: str = "payload") -> dict[str, Any]:
    """Decode a payload that must hold a JSON object; empty means {}."""
    value = decode(payload, field=field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"{field}: expected a JSON object, got {type(value).__name__}")
    return value
