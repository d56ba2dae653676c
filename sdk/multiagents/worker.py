"""`@worker`: turn a function of a context dict into a named worker."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from multiagents.errors import InvalidResultError
from multiagents.output import CommandOutput, usage_from_cost

Context = dict[str, Any]
Result = dict[str, Any]
WorkerFn = Callable[[Context], Awaitable[Result]] | Callable[[Context], Result]


@dataclass(frozen=True, slots=True)
class CommandInfo:
    """What the worker runtime knows about the command being executed."""

    command_id: str
    worker_name: str
    transaction_id: str
    correlation_id: str
    step: str
    attempt: int
    compensation: bool
    heartbeat: Callable[[dict[str, Any] | None], None] = field(repr=False)
    # Output stream and usage of the command (set by the runtime).
    output: CommandOutput | None = field(default=None, repr=False)


_current: contextvars.ContextVar[CommandInfo | None] = contextvars.ContextVar(
    "multiagents_command", default=None
)


def current_command() -> CommandInfo | None:
    """The command the calling worker function executes, or None outside one."""
    return _current.get()


def heartbeat(details: dict[str, Any] | None = None) -> None:
    """Report progress of a long step; keeps its heartbeat timeout from firing.

    A no-op outside a command (e.g. when a worker function is unit-tested).
    """
    info = _current.get()
    if info is not None:
        info.heartbeat(details)


async def emit(data: str | bytes, *, kind: str = "token") -> None:
    """Publish a chunk of the running step's output (text or bytes, at most
    64 KiB; `kind` is "token", "json" or "log"). Watchers see it live and
    after the fact (`multiagents watch`, `Client.stream_output`).

    A no-op outside a command, and after the server refused the command's
    output (its attempt was superseded, e.g. after a timeout).
    """
    info = _current.get()
    if info is not None and info.output is not None:
        await info.output.emit(data, kind)


def report_usage(
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    model: str = "",
    cost_usd: float | None = None,
    cost_nano_usd: int = 0,
) -> None:
    """Add tokens and cost to what the running step reports with its answer
    (result or failure; a failed attempt still costs). Calls add up; cost in
    US dollars (`cost_usd`, rounded to nano-dollars) or nano-dollars.
    A no-op outside a command.
    """
    used = usage_from_cost(input_tokens, output_tokens, model, cost_usd, cost_nano_usd)
    info = _current.get()
    if info is not None and info.output is not None:
        info.output.usage += used


class WorkerFunction:
    """A worker: a name and an async or sync function of the context.

    Calling it calls the function directly, so it stays unit-testable
    (`await my_worker({...})`). The runtime calls `execute`, which runs sync
    functions in a thread so they never block the event loop.
    """

    def __init__(self, name: str, fn: WorkerFn) -> None:
        if not name:
            raise ValueError("worker name must not be empty")
        self.name = name
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, context: Context) -> Any:
        return self.fn(context)

    def __repr__(self) -> str:
        return f"<worker {self.name!r}>"

    async def execute(self, context: Context) -> Result:
        """Run the function on `context` and return its result dict."""
        if self.is_async:
            result = await self.fn(context)  # type: ignore[misc]
        else:
            ctx = contextvars.copy_context()
            result = await asyncio.to_thread(ctx.run, self.fn, context)
        return _check_result(self.name, result)


def describe(worker: WorkerFunction) -> str:
    """Where a worker's function is defined: `module.qualname`."""
    module = getattr(worker, "__module__", None) or "?"
    return f"{module}.{getattr(worker, '__qualname__', worker.fn)}"


def check_unique_name(registered: Mapping[str, WorkerFunction], worker: WorkerFunction) -> None:
    """Raise ValueError when `registered` holds another function under `worker`'s name.

    Registering the same worker twice is allowed; two functions with one name
    are not: one of them would silently never run.
    """
    other = registered.get(worker.name)
    if other is not None and other is not worker:
        raise ValueError(
            f"two @worker functions named {worker.name!r}: {describe(other)} and {describe(worker)}"
        )


def _check_result(name: str, result: Any) -> Result:
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise InvalidResultError(
            f"worker {name!r} returned {type(result).__name__}; workers return a dict",
            type="TypeError",
        )
    return result


@overload
def worker(name: str) -> Callable[[WorkerFn], WorkerFunction]: ...
@overload
def worker(name: WorkerFn) -> WorkerFunction: ...
def worker(name: str | WorkerFn) -> Callable[[WorkerFn], WorkerFunction] | WorkerFunction:
    """Declare a worker: `@worker("charge_payment")` on an async or sync function.

    The function takes the context dict and returns a result dict, which is
    merged into the context of later steps. Raise `WorkerExecutionError` for
    a retryable failure and `ValueError` for invalid input (not retried).
    """
    if callable(name):
        return WorkerFunction(name.__name__, name)

    def decorate(fn: WorkerFn) -> WorkerFunction:
        return WorkerFunction(name, fn)

    return decorate


def set_current(info: CommandInfo | None) -> contextvars.Token[CommandInfo | None]:
    return _current.set(info)


def reset_current(token: contextvars.Token[CommandInfo | None]) -> None:
    _current.reset(token)
