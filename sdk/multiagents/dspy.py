"""`@dspy_worker`: a worker whose step is a DSPy module run on a signature.

The decorated function (async or sync) maps the step context to the
signature's input fields; the framework runs `dspy.Predict`,
`dspy.ChainOfThought` or `dspy.ReAct` on them with `await module.acall(...)`,
and the prediction's fields become the step result, passed through the
`@<worker>.post_process` hooks in order. LM failures are mapped to the SDK's
errors (transient ones retryable, bad model output not), so the saga's retry
and compensation rules apply to LLM steps as to any other. `dspy` is imported
lazily, on the first call, so `import multiagents` never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import inspect
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Literal, TypeVar

from multiagents.errors import ApplicationError, MultiAgentsError, WorkerExecutionError
from multiagents.worker import (
    Context,
    Result,
    WorkerFn,
    WorkerFunction,
    current_command,
    emit,
    report_usage,
)

__all__ = ["OUTPUT_ERROR_TYPE", "DSPyWorkerFunction", "PostProcessHook", "dspy_worker"]

ModuleKind = Literal["predict", "chain_of_thought", "react"]
PostProcessHook = (
    Callable[[Result, Context], Awaitable[Result]] | Callable[[Result, Context], Result]
)
HookT = TypeVar("HookT", bound=PostProcessHook)

#: `Failure.type` of a step whose LM output could not be parsed into the
#: signature's output fields. Never retried: with DSPy's cache on, a retry
#: would replay the same answer.
OUTPUT_ERROR_TYPE = "DSPyOutputError"

_MODULE_CLASSES: dict[str, str] = {
    "predict": "Predict",
    "chain_of_thought": "ChainOfThought",
    "react": "ReAct",
}
# Packages whose exceptions come from talking to an LM provider; used only for
# errors that DSPy did not already classify (legacy `BaseLM.forward` plugins).
_PROVIDER_PACKAGES = frozenset({"litellm", "openai", "anthropic", "httpx", "httpcore", "aiohttp"})
# HTTP statuses worth retrying; every other 4xx is a request that stays wrong.
_RETRYABLE_STATUS = frozenset({408, 409, 429})
_MAX_MESSAGE = 4000


class DSPyWorkerFunction(WorkerFunction):
    """A worker that runs a DSPy module; build it with `@dspy_worker`.

    The runtime serves it like any worker. Calling it (`await w(context)`)
    runs the whole pipeline — function, DSPy module, post-process hooks — so
    it is unit-testable without a server.
    """

    def __init__(
        self,
        name: str,
        fn: WorkerFn,
        *,
        signature: Any,
        module: ModuleKind = "predict",
        tools: Sequence[Any] | None = None,
        lm: Any = None,
        prices: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        super().__init__(name, fn)
        self.prices = dict(prices or {})
        if module not in _MODULE_CLASSES:
            raise ValueError(
                f"dspy_worker {name!r}: module must be one of {sorted(_MODULE_CLASSES)}, "
                f"not {module!r}"
            )
        if tools is not None and module != "react":
            raise ValueError(f"dspy_worker {name!r}: tools= needs module='react'")
        if isinstance(signature, str):
            if "->" not in signature:
                raise ValueError(
                    f"dspy_worker {name!r}: a string signature reads 'inputs -> outputs', "
                    f"got {signature!r}"
                )
        elif not isinstance(signature, type) or not _is_signature_class(signature):
            raise TypeError(
                f"dspy_worker {name!r}: signature must be a dspy.Signature subclass or a "
                f"string like 'question -> answer', not {signature!r}"
            )
        if lm is not None and not callable(lm):
            raise TypeError(
                f"dspy_worker {name!r}: lm= takes a dspy.LM or a zero-argument callable "
                f"returning one, not {type(lm).__name__}"
            )
        self.signature_spec = signature
        self.module_kind: ModuleKind = module
        self.tools: list[Any] = list(tools or ())
        self.hooks: list[PostProcessHook] = []
        self._lm_spec = lm
        self._lm: Any = None
        self._module: Any = None
        self._signature: Any = None

    def __call__(self, context: Context) -> Coroutine[Any, Any, Result]:
        return self.execute(context)

    def __repr__(self) -> str:
        return f"<dspy_worker {self.name!r} module={self.module_kind!r}>"

    def post_process(self, hook: HookT) -> HookT:
        """Register `hook(dspy_result, original_context) -> result` (async or sync).

        Hooks run in registration order, each on the previous one's result;
        the last one's return value is the step result. Returns `hook`
        unchanged, so it stays callable on its own.
        """
        if not callable(hook):
            raise TypeError("post_process takes a function of (dspy_result, original_context)")
        self.hooks.append(hook)
        return hook

    @property
    def module(self) -> Any:
        """The DSPy module this worker runs, or None before its first call."""
        return self._module

    async def execute(self, context: Context) -> Result:
        """Run function, DSPy module and hooks on `context`; return the step result.

        Errors of the function and of the hooks propagate unchanged (so a
        `ValueError` is not retried). Errors of the DSPy call are mapped:
        transient LM failures to `WorkerExecutionError`, permanent ones
        (authentication, bad request) and unparseable output to a
        non-retryable `ApplicationError`.
        """
        returned = await super().execute(context)
        dspy = await _import_dspy()
        module = self._get_module(dspy)
        inputs, extras = self._split(self._signature, returned)
        lm = self._get_lm(dspy)
        scope = dspy.context(lm=lm) if lm is not None else contextlib.nullcontext()
        try:
            with scope, dspy.context(track_usage=True):
                history = _History(dspy.settings.lm)
                if in_command():
                    prediction = await self._stream(dspy, module, inputs)
                else:
                    prediction = await module.acall(**inputs)
        except Exception as exc:
            raise _map_error(self.name, exc, dspy) from exc
        _report_usage(prediction, history, self.prices)
        result = {**extras, **self._outputs(self._signature, prediction)}
        for hook in self.hooks:
            result = await _run_hook(self.name, hook, result, context)
        return result

    async def _stream(self, dspy: Any, module: Any, inputs: dict[str, Any]) -> Any:
        """Run `module` with DSPy's streaming, publishing the output fields'
        tokens as the step's output (fields one after another, separated by
        a newline). An LM that cannot stream yields only the prediction."""
        listeners = [
            dspy.streaming.StreamListener(signature_field_name=name)
            for name in self._signature.output_fields
        ]
        program = dspy.streamify(
            module, stream_listeners=listeners, is_async_program=True, async_streaming=True
        )
        prediction, field = None, None
        try:
            async for item in program(**inputs):
                if isinstance(item, dspy.streaming.StreamResponse):
                    if field is not None and item.signature_field_name != field:
                        await emit("\n")
                    field = item.signature_field_name
                    await emit(item.chunk)
                elif isinstance(item, dspy.Prediction):
                    prediction = item
        except dspy.LMUnexpectedError:
            if field is not None:
                raise
            # What an LM whose engine cannot stream raises (DSPy keeps no
            # cause): the same call, without streaming.
            return await module.acall(**inputs)
        if prediction is None:
            raise WorkerExecutionError(
                f"dspy_worker {self.name!r}: the program ended without a prediction"
            )
        return prediction

    def _get_module(self, dspy: Any) -> Any:
        if self._module is None:
            spec = self.signature_spec
            if not isinstance(spec, str) and not issubclass(spec, dspy.Signature):
                raise TypeError(
                    f"dspy_worker {self.name!r}: signature {spec.__name__} is not a "
                    f"dspy.Signature subclass"
                )
            signature = dspy.ensure_signature(spec)
            cls = getattr(dspy, _MODULE_CLASSES[self.module_kind])
            if self.module_kind == "react":
                module = cls(signature, tools=self.tools)
            else:
                module = cls(signature)
            self._signature, self._module = signature, module
        return self._module

    def _get_lm(self, dspy: Any) -> Any:
        if self._lm is None and self._lm_spec is not None:
            lm = self._lm_spec
            if not isinstance(lm, dspy.BaseLM):
                lm = lm()  # a factory: built once, on the first call
                if not isinstance(lm, dspy.BaseLM):
                    raise TypeError(
                        f"dspy_worker {self.name!r}: the lm= factory returned "
                        f"{type(lm).__name__}, not a dspy.LM"
                    )
            self._lm = lm
        return self._lm

    def _split(self, signature: Any, returned: Result) -> tuple[dict[str, Any], dict[str, Any]]:
        fields = signature.input_fields
        missing = [k for k, f in fields.items() if k not in returned and f.is_required()]
        if missing:
            raise ValueError(
                f"dspy_worker {self.name!r} must return the signature's input fields: "
                f"missing {missing}, got {sorted(returned)}"
            )
        inputs = {k: v for k, v in returned.items() if k in fields}
        extras = {k: v for k, v in returned.items() if k not in fields}
        return inputs, extras

    def _outputs(self, signature: Any, prediction: Any) -> dict[str, Any]:
        values = dict(prediction.items())
        missing = [k for k in signature.output_fields if k not in values]
        if missing:
            raise ApplicationError(
                f"dspy_worker {self.name!r}: the LM output lacks the fields {missing}",
                type=OUTPUT_ERROR_TYPE,
                non_retryable=True,
            )
        from pydantic_core import to_jsonable_python

        # Typed outputs (pydantic models, enums, dates) and ReAct observations
        # become plain JSON values here, so hooks and later steps see what the
        # server stores.
        return {k: to_jsonable_python(v, fallback=str) for k, v in values.items()}


def dspy_worker(
    name: str,
    signature: Any,
    *,
    module: ModuleKind = "predict",
    tools: Sequence[Any] | None = None,
    lm: Any = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
) -> Callable[[WorkerFn], DSPyWorkerFunction]:
    """Declare a DSPy-powered worker: `@dspy_worker("summarise", signature=Sig)`.

    The decorated function (async or sync) takes the step context and returns
    a dict holding the signature's input fields; a missing required input is a
    `ValueError`. Any other keys it returns (the seed's `processing_type`) are
    kept in the step result, under the prediction's fields, which win on a
    clash.

    `signature` is a `dspy.Signature` subclass or a string such as
    `"question -> answer: int"`. `module` picks `dspy.Predict` (default),
    `dspy.ChainOfThought` (adds `reasoning` to the result) or
    `dspy.ReAct(signature, tools=tools)` (adds `reasoning` and `trajectory`).
    `lm` is a `dspy.LM`, or a zero-argument callable returning one that is
    called once, on the first command; it applies to this worker only, through
    `dspy.context(lm=...)`. Without it the LM set by `dspy.configure(lm=...)`
    is used. `prices` ({model: (USD per million input tokens, per million
    output tokens)}) prices the reported tokens when the LM reports no cost
    (a local or custom model that LiteLLM has no price for).
    """

    def decorate(fn: WorkerFn) -> DSPyWorkerFunction:
        return DSPyWorkerFunction(
            name, fn, signature=signature, module=module, tools=tools, lm=lm, prices=prices
        )

    return decorate


def in_command() -> bool:
    info = current_command()
    return info is not None and info.output is not None


class _History:
    """The entries an LM adds to its history from now on (for their cost)."""

    def __init__(self, lm: Any) -> None:
        self._history: list[dict[str, Any]] = getattr(lm, "history", None) or []
        self._last = self._history[-1].get("uuid") if self._history else None

    def added(self) -> list[dict[str, Any]]:
        entries = []
        for entry in reversed(self._history):
            if self._last is not None and entry.get("uuid") == self._last:
                break
            entries.append(entry)
        return entries


def _report_usage(
    prediction: Any, history: _History, prices: Mapping[str, tuple[float, float]]
) -> None:
    """Report the call's tokens (DSPy's usage tracker, per model) and cost:
    the `cost` of the LM history entries added meanwhile (with several calls
    of one LM at once in the process, their costs may be attributed to one
    another, their sum stays right); when the LM reports none, the tokens
    at the worker's `prices` (US dollars per million input and output
    tokens, by model)."""
    get_usage = getattr(prediction, "get_lm_usage", None)
    by_model = (get_usage() if get_usage is not None else None) or {}
    priced = 0.0
    for model, used in by_model.items():
        tokens_in = int(used.get("prompt_tokens") or 0)
        tokens_out = int(used.get("completion_tokens") or 0)
        report_usage(input_tokens=tokens_in, output_tokens=tokens_out, model=str(model))
        price_in, price_out = prices.get(str(model), (0.0, 0.0))
        priced += (tokens_in * price_in + tokens_out * price_out) / 1_000_000
    cost = sum(float(e.get("cost") or 0) for e in history.added())
    if cost <= 0:
        cost = priced
    if cost > 0:
        report_usage(cost_usd=cost)


def _is_signature_class(cls: type) -> bool:
    # A signature class was defined with dspy imported, so this costs no import.
    dspy = sys.modules.get("dspy")
    return dspy is None or issubclass(cls, dspy.Signature)


async def _import_dspy() -> Any:
    dspy = sys.modules.get("dspy")
    if dspy is None:
        # `import dspy` takes seconds; off the event loop, heartbeats and
        # other commands keep running meanwhile.
        dspy = await asyncio.to_thread(importlib.import_module, "dspy")
    return dspy


async def _run_hook(name: str, hook: PostProcessHook, result: Result, context: Context) -> Result:
    if inspect.iscoroutinefunction(hook):
        out = await hook(result, context)
    else:
        out = await asyncio.to_thread(contextvars.copy_context().run, hook, result, context)
        if inspect.isawaitable(out):
            out = await out
    if not isinstance(out, dict):
        hook_name = getattr(hook, "__qualname__", repr(hook))
        raise TypeError(
            f"post_process hook {hook_name} of dspy_worker {name!r} returned "
            f"{type(out).__name__}; hooks return the result dict"
        )
    return out


def _map_error(name: str, exc: Exception, dspy: Any) -> Exception:
    """The SDK error for an exception raised by a DSPy module call."""
    kind = type(exc).__name__
    if isinstance(exc, dspy.AdapterParseError):
        return ApplicationError(
            _clip(f"dspy_worker {name!r}: the LM output does not fit the signature: {exc}"),
            type=OUTPUT_ERROR_TYPE,
            non_retryable=True,
        )
    if isinstance(exc, dspy.LMError):
        # DSPy's own classification (its engines translate provider SDK errors);
        # an unclassified engine failure is retried like any unknown error.
        retryable = dspy.is_retryable_lm_error(exc) or isinstance(exc, dspy.LMUnexpectedError)
    elif isinstance(exc, MultiAgentsError):
        return exc
    elif isinstance(exc, (ConnectionError, TimeoutError)):
        retryable = True
    elif type(exc).__module__.partition(".")[0] in _PROVIDER_PACKAGES:
        status = getattr(exc, "status_code", None)
        retryable = not (
            isinstance(status, int) and 400 <= status < 500 and status not in _RETRYABLE_STATUS
        )
    else:
        return exc  # e.g. "No LM is loaded" (ValueError): not retried, as the SDK does
    message = _clip(f"dspy_worker {name!r}: LM call failed ({kind}): {exc}")
    if retryable:
        return WorkerExecutionError(message)
    return ApplicationError(message, type=kind, non_retryable=True)


def _clip(message: str) -> str:
    if len(message) <= _MAX_MESSAGE:
        return message
    return message[: _MAX_MESSAGE - 15] + " …[truncated]"
