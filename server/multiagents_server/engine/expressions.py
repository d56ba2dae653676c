"""Conditions and map items: Common Expression Language over the context.

Expressions are strings in the definition, so a Go or Node client writes the
same workflow. They see one variable, `context` (the JSON object the node
would receive), e.g. `context.review.score > 0.8` or
`has(context.urgent) && context.urgent`. They are compiled when the
definition is registered (`check`, errors name the line and column) and
evaluated by the engine, deterministically: CEL has no I/O and no clock
unless given one, and none is given. Evaluated with cel-python.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError

if TYPE_CHECKING:
    from multiagents_server.engine.model import ConditionSpec, JsonObject, LimitKey, MapSpec

_ENV = celpy.Environment()


class ExpressionError(Exception):
    """An expression that does not compile, or fails on this context."""


@lru_cache(maxsize=1024)
def _program(source: str) -> celpy.Runner:
    return _ENV.program(_ENV.compile(source))


def check(source: str) -> None:
    """Compile `source`; ExpressionError names line and column of a syntax error."""
    if not source.strip():
        raise ExpressionError("empty expression")
    try:
        _program(source)
    except CELParseError as exc:
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        where = f"line {line}, column {column}" if line is not None else "unknown position"
        raise ExpressionError(f"syntax error at {where} in {source!r}") from None


def evaluate(source: str, context: JsonObject) -> Any:
    """The JSON value of `source` over `context`."""
    check(source)
    try:
        value = _program(source).evaluate({"context": json_to_cel(context)})
    except CELEvalError as exc:
        raise ExpressionError(f"{source!r} failed: {_reason(exc)}") from None
    if isinstance(value, CELEvalError):
        raise ExpressionError(f"{source!r} failed: {_reason(value)}")
    return _to_json(value)


def _reason(exc: Exception) -> str:
    """CEL's error, without the activation it dumps."""
    args = exc.args
    if len(args) >= 3 and isinstance(args[2], tuple) and args[2]:
        inner = args[2][0]
        if isinstance(inner, str) and len(inner) < 300:
            if args[1] is KeyError:
                return f"no such key {inner}"
            return inner
    first = str(args[0]) if args else str(exc)
    return first.split(" (in activation")[0][:300]


def _to_json(value: Any) -> Any:
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.IntType | celtypes.UintType):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.ListType):
        return [_to_json(v) for v in value]
    if isinstance(value, celtypes.MapType):
        return {str(k): _to_json(v) for k, v in value.items()}
    if value is None:
        return None
    return str(value)


def choose(node: ConditionSpec, context: JsonObject) -> int:
    """Index of the case a condition takes, -1 for `otherwise`."""
    if node.switch:
        value = evaluate(node.switch, context)
        for index, case in enumerate(node.cases):
            if _same(case.equals, value):
                return index
        return -1
    for index, case in enumerate(node.cases):
        verdict = evaluate(case.when, context)
        if not isinstance(verdict, bool):
            raise ExpressionError(f"{case.when!r} gave {verdict!r}, not true or false")
        if verdict:
            return index
    return -1


def _same(a: Any, b: Any) -> bool:
    """JSON equality: numbers by value (1 == 1.0), booleans only to booleans."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return bool(a == b)


def items(node: MapSpec, context: JsonObject) -> list[Any]:
    """The list a map runs its step over."""
    value = evaluate(node.items, context)
    if not isinstance(value, list):
        kind = "nothing" if value is None else type(value).__name__
        raise ExpressionError(f"items {node.items!r} gave {kind}, not a list")
    return value


MAX_LIMIT_KEY = 200


def limit_keys(keys: tuple[LimitKey, ...], context: JsonObject) -> tuple[str, ...]:
    """The keys of a step's shared limits on this context, in order, once each."""
    resolved: dict[str, None] = {}
    for k in keys:
        key = k.key
        if k.expression:
            value = evaluate(k.expression, context)
            if not isinstance(value, str) or not 0 < len(value) <= MAX_LIMIT_KEY:
                raise ExpressionError(
                    f"rate limit key {k.expression!r} gave {value!r}, not a key "
                    f"(a string of 1-{MAX_LIMIT_KEY} characters)"
                )
            key = value
        resolved[key] = None
    return tuple(resolved)


def fingerprint(name: str, payload: JsonObject) -> str:
    """What identifies a signal's content (for its deduplication by id)."""
    blob = json.dumps([name, payload], sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:32]
