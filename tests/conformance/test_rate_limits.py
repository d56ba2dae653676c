"""Shared rate limits from the Node and Go clients: each client program
(workers/node/examples/limits-client.ts, workers/go/cmd/limits-client)
declares the limits of docs/workflows.md, registers the workflow shown there
(a step naming a literal key and a key expression), serves its worker
itself, and runs 4 executions of one customer beside one of another; the
server's command traces say how many attempts of a tenant ran at once, and
bad input comes back as INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest

from conformance.harness import ServerProcess, Toolchains, command_traces
from multiagents import Client, Estimate, LimitKey, WorkflowBuilder
from multiagents.workflow import Workflow
from multiagents_server.embedded_redis import die_with_parent_prefix

pytestmark = pytest.mark.slow

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
NOT_FOUND = grpc.StatusCode.NOT_FOUND.value[0]


def answer() -> Workflow:
    """The workflow of docs/workflows.md that both client programs register."""
    return (
        WorkflowBuilder("answer")
        .add_step(
            "draft",
            "drafter",
            estimate=Estimate(input_tokens=1_500, output_tokens=500),
            rate_limits=["provider:openai", LimitKey(expression='"tenant:" + context.customer_id')],
        )
        .build()
    )


async def run_client(argv: list[str], address: str, prefix: str) -> dict[str, Any]:
    """Run a client program to its end; return the JSON line it printed."""
    proc = await asyncio.create_subprocess_exec(
        *die_with_parent_prefix("KILL"),
        *argv, "--server", address, "--prefix", prefix,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, stderr.decode(errors="replace")[-3000:]
    seen: dict[str, Any] = json.loads(stdout)
    return seen


def most_at_once(spans: list[tuple[int, int]]) -> int:
    """The most [start, end) spans that overlap at one instant (an end at the
    instant another starts is not an overlap)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, delta in edges:
        running += delta
        most = max(most, running)
    return most


@pytest.mark.parametrize("client_lang", ["node", "go"])
async def test_a_concurrency_limit_declared_from_the_node_and_go_clients_holds(
    client_lang: str,
    toolchains: Toolchains,
    conformance_server: ServerProcess,
    client: Client,
    uid: str,
) -> None:
    argv = toolchains.client_argv(client_lang, "limits-client")
    seen = await run_client(argv, conformance_server.address, uid)

    # The client registered the definition the Python builder gives (the
    # server compares definitions: a different one under the same name and
    # version would be ALREADY_EXISTS).
    assert await client.register_workflow(answer()) is False
    assert seen["tenant"] == {
        "key": "tenant:*", "requests": 0, "tokens": 0, "period_ms": 60_000,
        "max_concurrent": 2, "backoff_ms": 1000,
    }  # fmt: skip
    assert seen["listed"] == [
        {"key": "provider:openai", "requests": 500, "tokens": 90_000, "period_ms": 60_000,
         "max_concurrent": 0, "backoff_ms": 1000},
        seen["tenant"],
    ]  # fmt: skip
    # The key expression gave each customer a key of its own under tenant:*.
    assert seen["waiting"] == {
        "waiting_for_rate_limit": f"tenant:{uid}-a",
        "reason": "concurrency",
    }
    a, b = seen["a"], seen["b"]
    assert seen["states"] == {tx: "COMPLETED" for tx in [*a, b]}
    # The worker saw at most 2 of customer a's attempts at once (4 without
    # the limit: it takes 8), and b's ran too.
    assert seen["most_at_once"] == {f"{uid}-a": 2, f"{uid}-b": 1}

    # So did the server: from sent to answered, at most 2 of a's at once;
    # b's was sent before the last of a's (it did not queue behind them).
    spans: dict[str, tuple[int, int]] = {}
    for tx in [*a, b]:
        (trace,) = await command_traces(client, tx)
        assert trace.step == "draft" and trace.success
        spans[tx] = (trace.picked_up_at.ToMilliseconds(), trace.completed_at.ToMilliseconds())
    assert most_at_once([spans[tx] for tx in a]) == 2
    assert spans[b][0] < max(spans[tx][0] for tx in a)
    done = await client.get_status(b)
    assert done.context["drafted_for"] == f"{uid}-b"

    assert seen["bad_expression"]["code"] == INVALID_ARGUMENT
    assert (
        "steps[0].rate_limits[0].key_expression: syntax error at line 1"
        in seen["bad_expression"]["message"]
    )
    assert seen["bad_key"]["code"] == INVALID_ARGUMENT
    assert seen["bad_key"]["message"].startswith("limit.key")
    assert seen["after_delete"] == {"get": NOT_FOUND, "delete": NOT_FOUND}
    assert [x.key for x in await client.list_rate_limits()] == []
