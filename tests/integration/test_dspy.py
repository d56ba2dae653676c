"""`@dspy_worker` end to end: DSPy modules as saga steps, over real gRPC and Redis.

LMs are DSPy's own `DummyLM`, or a `dspy.LM` on a scripted engine where a test
needs failures; nothing here touches the network.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import dspy
import litellm
import pytest
from dspy import lm15
from dspy.utils import DummyLM

from integration.helpers import kinds, run, serving
from multiagents import (
    ApplicationError,
    Client,
    RetryPolicy,
    WorkerExecutionError,
    WorkflowBuilder,
    dspy_worker,
    worker,
)
from multiagents.errors import to_failure
from multiagents_server.app import Server

FAST = RetryPolicy(max_attempts=3, initial_interval=0.05)


class WorkerSignature(dspy.Signature):
    """Define structured input/output for LLM."""

    input_field = dspy.InputField(desc="Input description")
    output_field = dspy.OutputField(desc="Output description")


class Triage(dspy.Signature):
    """Triage a support ticket."""

    ticket: str = dspy.InputField()
    category: str = dspy.OutputField()
    priority: int = dspy.OutputField()


def chat_reply(**fields: Any) -> str:
    """An LM reply in the format of DSPy's ChatAdapter."""
    return "".join(f"[[ ## {k} ## ]]\n{v}\n\n" for k, v in fields.items()) + "[[ ## completed ## ]]"


class ScriptedEngine:
    """An async DSPy engine that raises the scripted errors, then answers."""

    def __init__(self, failures: list[Exception], answer: dict[str, Any]) -> None:
        self.failures = list(failures)
        self.answer = answer
        self.calls = 0

    async def complete(self, request: Any) -> lm15.Response:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return lm15.Response(
            id=None,
            model="scripted",
            message=lm15.Message.assistant([lm15.TextPart(chat_reply(**self.answer))]),
            finish_reason="stop",
            usage=lm15.Usage(input_tokens=0, output_tokens=0, total_tokens=0),
        )

    def stream(self, request: Any) -> Any:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


class UnusedSyncEngine:
    """`dspy.LM(engine=...)` needs a sync engine too; workers only use the async one."""

    def complete(self, request: Any) -> Any:
        raise AssertionError("dspy_worker must call the LM asynchronously")

    def stream(self, request: Any) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


def scripted_lm(engine: ScriptedEngine) -> Any:
    # num_retries=0: DSPy's own retry loop would sleep seconds; the saga retries.
    return dspy.LM(
        "scripted/model",
        engine=UnusedSyncEngine(),
        async_engine=engine,
        num_retries=0,
        cache=False,
    )


class RaisingLegacyLM(dspy.BaseLM):
    """A DSPy 3.4 legacy LM plugin: its exceptions reach the worker unclassified."""

    def __init__(self, error: Exception) -> None:
        super().__init__("legacy/model")
        self.error = error

    def forward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
        raise self.error

    async def aforward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
        raise self.error


async def test_dspy_workflow_runs_lm_and_post_process_hooks_end_to_end(
    server: Server, client: Client, uid: str
) -> None:
    seen_by_hooks: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    @worker(f"{uid}.fetch")
    async def fetch(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"input": f"ticket #{ctx['ticket_id']}: the sky is the wrong colour"}

    # The DummyLM answers by the text of the prompt, so this also proves the
    # function's input field reached the LM.
    lm = DummyLM({"ticket #7": {"output_field": "colour complaint"}})

    @dspy_worker(f"{uid}.llm_worker", signature=WorkerSignature, lm=lm)
    async def llm_worker(context: dict[str, Any]) -> dict[str, Any]:
        return {"input_field": context.get("input"), "processing_type": "llm_analysis"}

    @llm_worker.post_process
    async def validate_llm_output(
        dspy_result: dict[str, Any], original_context: dict[str, Any]
    ) -> dict[str, Any]:
        seen_by_hooks.append(("validate", dict(dspy_result), dict(original_context)))
        if not dspy_result["output_field"]:
            raise ValueError("empty LLM output")
        return {**dspy_result, "validation_timestamp": datetime.now(UTC).isoformat()}

    @llm_worker.post_process
    def tag(dspy_result: dict[str, Any], original_context: dict[str, Any]) -> dict[str, Any]:
        seen_by_hooks.append(("tag", dict(dspy_result), {}))
        return {**dspy_result, "validated": True}

    wf = (
        WorkflowBuilder(f"{uid}.wf")
        .add_step("fetch", fetch)
        .add_step("analyse", llm_worker, retry=FAST)
        .build()
    )
    async with serving(server, fetch, llm_worker):
        status = await run(client, wf, {"ticket_id": 7})

    assert status.state == "completed", status.error
    result = status.step_results["analyse"]
    assert result["output_field"] == "colour complaint"
    assert result["processing_type"] == "llm_analysis"  # extra keys of the function are kept
    assert result["validated"] is True
    assert datetime.fromisoformat(result["validation_timestamp"]).tzinfo is not None
    assert "input_field" not in result  # inputs are not echoed into the result
    assert set(result) == {"output_field", "processing_type", "validation_timestamp", "validated"}
    assert status.context["output_field"] == "colour complaint"
    # Hooks chain in registration order, the first seeing the step's own context.
    assert [name for name, _, _ in seen_by_hooks] == ["validate", "tag"]
    assert seen_by_hooks[0][1] == {
        "processing_type": "llm_analysis",
        "output_field": "colour complaint",
    }
    assert seen_by_hooks[0][2]["input"].startswith("ticket #7")
    assert "validation_timestamp" in seen_by_hooks[1][1]


async def test_unparseable_lm_output_is_not_retried_and_compensates_in_reverse(
    server: Server, client: Client, uid: str
) -> None:
    compensated: list[tuple[str, Any]] = []

    @worker(f"{uid}.reserve")
    async def reserve(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"resource_id": "r-1"}

    @worker(f"{uid}.charge")
    async def charge(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"payment_id": "p-1"}

    @worker(f"{uid}.release")
    async def release(ctx: dict[str, Any]) -> dict[str, Any]:
        compensated.append(("release", ctx.get("resource_id")))
        return {"released": ctx["resource_id"]}

    @worker(f"{uid}.refund")
    async def refund(ctx: dict[str, Any]) -> dict[str, Any]:
        compensated.append(("refund", ctx.get("payment_id")))
        return {"refunded": ctx["payment_id"]}

    # The LM never produces `priority`: whatever adapter parses it, the output
    # does not fit the signature.
    calls = 0

    def lm_factory() -> Any:
        nonlocal calls
        calls += 1
        return DummyLM([{"category": "billing"}] * 10)

    @dspy_worker(f"{uid}.triage", signature=Triage, lm=lm_factory)
    async def triage(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"ticket": "I was charged twice"}

    wf = (
        WorkflowBuilder(f"{uid}.wf")
        .add_step("reserve", reserve, compensation=release)
        .add_step("charge", charge, compensation=refund)
        .add_step("triage", triage, retry=FAST)
        .build()
    )
    async with serving(server, reserve, charge, release, refund, triage):
        status = await run(client, wf, {})

    assert status.state == "compensated"
    assert calls == 1
    assert compensated == [("refund", "p-1"), ("release", "r-1")]
    assert [s.status for s in status.steps] == ["compensated", "compensated", "failed"]
    assert status.steps[2].attempts == 1
    assert status.error is not None
    assert status.error["type"] == "DSPyOutputError"
    assert status.error["non_retryable"] is True
    assert "priority" in status.error["message"]
    history = await kinds(client, status.transaction_id)
    assert [step for kind, step in history if kind == "compensation"] == ["charge", "reserve"]


@pytest.mark.parametrize(
    "make_error",
    [
        lambda: ConnectionError("connection reset by peer"),
        lambda: lm15.TransportError("TLS handshake failed"),
        lambda: lm15.RateLimitError("slow down", status=429),
        lambda: litellm.exceptions.APIConnectionError(
            message="connection refused", llm_provider="openai", model="gpt-4o-mini"
        ),
    ],
    ids=["ConnectionError", "TransportError", "RateLimitError", "litellm.APIConnectionError"],
)
async def test_lm_error_is_retried_then_succeeds(
    server: Server, client: Client, uid: str, make_error: Callable[[], Exception]
) -> None:
    engine = ScriptedEngine([make_error()], {"answer": "42"})

    @dspy_worker(f"{uid}.ask", signature="question -> answer", lm=scripted_lm(engine))
    def ask(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"question": ctx["question"]}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("ask", ask, retry=FAST).build()
    async with serving(server, ask):
        status = await run(client, wf, {"question": "six times seven?"})

    assert status.state == "completed", status.error
    assert status.step_results == {"ask": {"answer": "42"}}
    assert status.steps[0].attempts == 2
    assert engine.calls == 2
    errors = [
        e.error for e in await client.get_history(status.transaction_id) if e.HasField("error")
    ]
    assert [(e.error.type, e.error.non_retryable, e.will_retry) for e in errors] == [
        ("WorkerExecutionError", False, True)
    ]


async def test_string_signature_with_chain_of_thought(
    server: Server, client: Client, uid: str
) -> None:
    lm = DummyLM([{"reasoning": "7 * 6 = 42", "answer": "42"}])

    @dspy_worker(
        f"{uid}.cot", signature="question -> answer: int", module="chain_of_thought", lm=lm
    )
    def cot(ctx: dict[str, Any]) -> dict[str, Any]:  # a sync function runs in a thread
        return {"question": ctx["question"]}

    wf = WorkflowBuilder(f"{uid}.wf").add_step("think", cot).build()
    async with serving(server, cot):
        status = await run(client, wf, {"question": "six times seven?"})

    assert status.state == "completed", status.error
    assert status.step_results == {"think": {"reasoning": "7 * 6 = 42", "answer": 42}}
    assert type(cot.module).__name__ == "ChainOfThought"


async def test_lm_factory_is_called_once_lazily_and_scoped_to_its_worker(
    server: Server, client: Client, uid: str
) -> None:
    built: list[str] = []

    def cheap_lm() -> Any:
        # In production: dspy.LM("openai/gpt-4o-mini", api_key=os.environ["OPENAI_API_KEY"])
        built.append("cheap")
        return DummyLM({"": {"answer": "from the cheap LM"}})

    strong_lm = DummyLM({"": {"answer": "from the strong LM"}})

    @dspy_worker(f"{uid}.draft", signature="question -> answer", lm=cheap_lm)
    async def draft(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"question": ctx["question"]}

    @dspy_worker(f"{uid}.review", signature="question, draft -> answer", lm=strong_lm)
    async def review(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"question": ctx["question"], "draft": ctx["answer"], "draft_answer": ctx["answer"]}

    assert built == []  # nothing is built at decoration time
    wf = WorkflowBuilder(f"{uid}.wf").add_step("draft", draft).add_step("review", review).build()
    async with serving(server, draft, review, concurrency=8):
        await client.register_workflow(wf)
        txs = [await client.execute_workflow(wf.name, {"question": f"q{i}"}) for i in range(4)]
        statuses = await asyncio.gather(*(client.wait(tx, timeout=20) for tx in txs))

    for status in statuses:
        assert status.state == "completed", status.error
        assert status.step_results == {
            "draft": {"answer": "from the cheap LM"},
            "review": {"draft_answer": "from the cheap LM", "answer": "from the strong LM"},
        }
    assert built == ["cheap"]


async def test_concurrent_workers_each_use_their_own_lm() -> None:
    def answering(text: str) -> Any:
        return DummyLM({"": {"answer": text}})

    @dspy_worker("concurrent.a", signature="question -> answer", lm=answering("A"))
    async def a(ctx: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)  # interleave with the other worker's calls
        return {"question": ctx["q"]}

    @dspy_worker("concurrent.b", signature="question -> answer", lm=answering("B"))
    async def b(ctx: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"question": ctx["q"]}

    calls = [(w, {"q": str(i)}) for i in range(20) for w in (a, b)]
    results = await asyncio.gather(*(w(ctx) for w, ctx in calls))
    assert [r["answer"] for r in results] == ["A", "B"] * 20


async def test_direct_call_uses_the_ambient_lm_and_runs_hooks() -> None:
    """The seed's unit-testing pattern: `await worker(context)` runs everything."""

    @dspy_worker("unit.triage", signature=Triage)
    async def triage(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"ticket": ctx["text"], "processing_type": "llm_analysis"}

    @triage.post_process
    def escalate(dspy_result: dict[str, Any], original_context: dict[str, Any]) -> dict[str, Any]:
        return {**dspy_result, "escalate": dspy_result["priority"] >= 2}

    with dspy.context(lm=DummyLM([{"category": "outage", "priority": "3"}])):
        result = await triage({"text": "site down"})
    assert result == {
        "processing_type": "llm_analysis",
        "category": "outage",
        "priority": 3,
        "escalate": True,
    }


async def test_react_module_calls_tools() -> None:
    looked_up: list[str] = []

    def lookup_order(order_id: str) -> str:
        """Return the status of an order."""
        looked_up.append(order_id)
        return "shipped"

    lm = DummyLM(
        [
            {
                "next_thought": "look it up",
                "next_tool_name": "lookup_order",
                "next_tool_args": {"order_id": "o-9"},
            },
            {"next_thought": "done", "next_tool_name": "finish", "next_tool_args": {}},
            {"reasoning": "the tool said so", "answer": "shipped"},
        ]
    )

    @dspy_worker(
        "unit.agent", signature="question -> answer", module="react", tools=[lookup_order], lm=lm
    )
    async def agent(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"question": "where is order o-9?"}

    result = await agent({})
    assert looked_up == ["o-9"]
    assert result["answer"] == "shipped"
    assert result["trajectory"]["observation_0"] == "shipped"


async def test_missing_input_field_and_hook_value_error_are_not_retryable() -> None:
    lm = DummyLM({"": {"answer": "x"}})

    @dspy_worker("unit.missing", signature="question, context -> answer", lm=lm)
    async def missing(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"question": "q"}

    with pytest.raises(ValueError, match=r"missing \['context'\]") as raised:
        await missing({})
    assert to_failure(raised.value).non_retryable is True

    @dspy_worker("unit.rejecting", signature="question -> answer", lm=lm)
    async def rejecting(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"question": "q"}

    @rejecting.post_process
    async def reject(dspy_result: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("answer fails validation")

    with pytest.raises(ValueError, match="answer fails validation") as raised:
        await rejecting({})
    assert to_failure(raised.value).non_retryable is True


def via_engine(error: Exception) -> Callable[[], Any]:
    """A `dspy.LM` whose engine raises `error`: DSPy classifies it first."""
    return lambda: scripted_lm(ScriptedEngine([error], {}))


def via_legacy(error: Exception) -> Callable[[], Any]:
    """A legacy LM plugin raising `error`: it reaches the worker as raised."""
    return lambda: RaisingLegacyLM(error)


RETRY = ("WorkerExecutionError", False)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy BaseLM plugin interface
@pytest.mark.parametrize(
    ("make_lm", "expected"),
    [
        pytest.param(via_engine(ConnectionError("reset")), RETRY, id="engine-ConnectionError"),
        pytest.param(
            via_engine(lm15.ServerError("bad gateway", status=502)), RETRY, id="engine-5xx"
        ),
        pytest.param(via_engine(lm15.TimeoutError("slow")), RETRY, id="engine-timeout"),
        pytest.param(
            via_engine(lm15.AuthError("bad key", status=401)),
            ("LMAuthError", True),
            id="engine-auth",
        ),
        pytest.param(
            via_engine(lm15.ContextLengthError("too long", status=400)),
            ("ContextWindowExceededError", True),
            id="engine-context-length",
        ),
        pytest.param(via_legacy(TimeoutError("read timed out")), RETRY, id="legacy-TimeoutError"),
        pytest.param(
            via_legacy(litellm.exceptions.RateLimitError("429", "openai", "m")),
            RETRY,
            id="legacy-litellm-429",
        ),
        pytest.param(
            via_legacy(litellm.exceptions.AuthenticationError("401", "openai", "m")),
            ("AuthenticationError", True),
            id="legacy-litellm-401",
        ),
        pytest.param(
            via_legacy(litellm.exceptions.BadRequestError("400", "m", "openai")),
            ("BadRequestError", True),
            id="legacy-litellm-400",
        ),
    ],
)
async def test_lm_errors_map_to_retryable_or_permanent_failures(
    make_lm: Callable[[], Any], expected: tuple[str, bool]
) -> None:
    @dspy_worker("unit.mapping", signature="question -> answer", lm=make_lm())
    async def ask(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"question": "q"}

    with pytest.raises((WorkerExecutionError, ApplicationError)) as raised:
        await ask({})
    failure = to_failure(raised.value)
    assert (failure.type, failure.non_retryable) == expected
    assert "unit.mapping" in failure.message


def test_importing_multiagents_does_not_import_dspy() -> None:
    code = (
        "import sys\n"
        "import multiagents\n"
        "from multiagents import dspy_worker\n"
        "@dspy_worker('lazy', signature='question -> answer')\n"
        "def lazy(ctx):\n"
        "    return {'question': ctx['q']}\n"
        "assert 'dspy' not in sys.modules, 'dspy was imported'\n"
        "assert 'litellm' not in sys.modules, 'litellm was imported'\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
