"""`multiagents demo --scenario dspy`: a DSPy program whose tokens appear
live in `multiagents watch`, with its token usage and cost at the end.

Offline: the LM is a `dspy.LM` on a scripted streaming engine (no network,
no key). DSPy's own `DummyLM` answers in one piece, so it would show no
stream; this engine streams its answer a few characters at a time, as a
provider does, and reports token counts like one. The cost comes from the
worker's `prices` (USD per million tokens), as for a model LiteLLM has no
price for.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from typing import Any

from multiagents import Client, WorkerRuntime, WorkflowBuilder, dspy_worker

MODEL = "offline/demo-writer"
ANSWER = (
    "Tides rise and fall twice a day because the Moon's gravity pulls the "
    "oceans into two bulges, one facing the Moon and one opposite; as the "
    "Earth turns, each coast passes through both."
)


class ScriptedStreamingEngine:
    """Streams a fixed answer in small pieces, then its token counts."""

    async def complete(self, request: Any) -> Any:
        raise NotImplementedError  # @dspy_worker streams inside a command

    async def stream(self, request: Any) -> Any:
        from dspy import lm15

        reply = f"[[ ## answer ## ]]\n{ANSWER}\n\n[[ ## completed ## ]]"
        yield lm15.StreamStartEvent(model=MODEL)
        for i in range(0, len(reply), 6):
            await asyncio.sleep(0.04)  # a provider's pace, so the stream is visible
            yield lm15.StreamDeltaEvent(lm15.TextDelta(reply[i : i + 6]))
        usage = lm15.Usage(input_tokens=142, output_tokens=48, total_tokens=190)
        yield lm15.StreamEndEvent(finish_reason="stop", usage=usage)

    async def aclose(self) -> None:
        pass


class _NoSync:
    def complete(self, request: Any) -> Any:
        raise NotImplementedError

    def stream(self, request: Any) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


def offline_lm() -> Any:
    import dspy

    return dspy.LM(
        MODEL, engine=_NoSync(), async_engine=ScriptedStreamingEngine(), num_retries=0, cache=False
    )


@dspy_worker(
    "explain",
    signature="question -> answer",
    lm=offline_lm,
    prices={MODEL: (2.50, 10.00)},  # USD per million input / output tokens
)
def explain(context: dict[str, Any]) -> dict[str, Any]:
    return {"question": context["question"]}


async def run_dspy_demo(*, data_dir: str = ".multiagents/demo") -> int:
    from multiagents_server.app import Server
    from multiagents_server.config import ServerConfig

    shutil.rmtree(data_dir, ignore_errors=True)
    config = ServerConfig(port=0, data_dir=data_dir, heartbeat_interval_ms=1000)
    print("starting an embedded server and a DSPy worker (offline LM)", flush=True)
    async with (
        Server(config) as server,
        WorkerRuntime([explain], servers=server.address),
        Client(server.address) as client,
    ):
        await client.register_workflow(
            WorkflowBuilder("explain_it").add_step("explain", explain).build()
        )
        tx = await client.execute_workflow(
            "explain_it", {"question": "Why are there two tides a day?"}
        )
        print(f"$ multiagents watch {tx}\n", flush=True)
        watch = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "multiagents.cli", "watch", tx, "--server", server.address,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        code = await watch.wait()
    print("\nserver, worker and redis stopped", flush=True)
    return 0 if code in (0, None) else int(code)
