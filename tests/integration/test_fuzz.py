"""Property-based fuzzing of the public messages (issue 15): random and
mutated requests on WorkflowService and on the worker stream. Every one is
answered with a defined status (never UNKNOWN or INTERNAL, never a hang),
the server stays up, and every execution the fuzzing started can still reach
a terminal state.

The budget is `MULTIAGENTS_FUZZ_EXAMPLES` examples per property (40 by
default, what CI runs; set it higher for a longer run on demand)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multiagents import Client
from multiagents.v1 import common_pb2, workflow_pb2
from multiagents.v1 import worker_service_pb2 as wpb
from multiagents.v1 import workflow_service_pb2 as pb
from multiagents_server.app import Server

EXAMPLES = int(os.environ.get("MULTIAGENTS_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# A status the contract does not define for bad input, or a call that hangs.
UNDEFINED = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNAVAILABLE,
}
# What the grpcio asyncio *client* reports, instead of the server's status,
# when it is still writing requests after the server ended the stream
# (grpc/grpc#36066, fix open as grpc/grpc#43486): not the server's answer.
CLIENT_WRITE_RACE = "Internal error from Core"
CALL_TIMEOUT_S = 10.0
FUZZ_WORKER = "fuzz.nobody"  # no worker serves it: fuzzed executions wait

# -- strategies ----------------------------------------------------------------------

texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "a", "fuzz.wf", "x" * 201, "a b", "../etc", "é", "\x00"]),
)
floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, 2.0, 100.0, 1e300, -1.0]),
)
durations = st.builds(
    duration_pb2.Duration,
    seconds=st.integers(-(10**6), 10**11),
    nanos=st.integers(-999_999_999, 999_999_999),
)
json_bytes = st.one_of(
    st.binary(max_size=200),
    st.sampled_from([b"", b"{}", b"[]", b"1", b'{"a":' * 200 + b"1" + b"}" * 200, b'{"a":NaN}']),
    st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10), max_size=5).map(
        lambda d: json.dumps(d).encode()
    ),
)
payloads = st.builds(
    common_pb2.Payload,
    metadata=st.dictionaries(
        st.sampled_from(["encoding", "x"]),
        st.sampled_from([b"json/plain", b"binary/plain", b"\xff"]),
        max_size=2,
    ),
    data=json_bytes,
)
retry_policies = st.builds(
    workflow_pb2.RetryPolicy,
    maximum_attempts=st.integers(-5, 20_000),
    initial_interval=durations,
    backoff_coefficient=floats,
    maximum_interval=durations,
    non_retryable_error_types=st.lists(texts, max_size=3),
)
steps = st.builds(
    workflow_pb2.StepDefinition,
    name=texts,
    worker=st.one_of(st.just(FUZZ_WORKER), texts),
    compensation=st.one_of(st.just(""), texts),
    retry_policy=retry_policies,
    timeout=durations,
    heartbeat_timeout=durations,
)
definitions = st.builds(
    workflow_pb2.WorkflowDefinition,
    name=st.one_of(st.just("fuzz.wf"), texts),
    version=st.integers(-3, 5),
    steps=st.lists(steps, max_size=4),
    description=texts,
)


def mutated(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """A valid message's bytes with some bytes changed, cut or inserted."""

    def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
        out = bytearray(data)
        for position, value in edits:
            if out:
                out[position % len(out)] = value
        return bytes(out[: max(0, len(out) - cut)])

    return st.builds(
        mutate,
        valid,
        st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4),
        st.integers(0, 8),
    )


def messages_as_bytes(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    valid = strategy.map(lambda m: m.SerializeToString())
    return st.one_of(valid, mutated(valid), st.binary(max_size=100))


hellos = st.builds(
    wpb.Hello,
    worker_id=texts,
    worker_names=st.lists(st.one_of(st.just(FUZZ_WORKER), texts), max_size=3),
    max_concurrency=st.integers(-2, 20_000),
    sdk_language=texts,
    sdk_version=texts,
    protocol_version=st.integers(0, 3),
    resume_token=texts,
)
command_ids = st.one_of(texts, st.sampled_from(["r0:x0:1", "tx:x0:1", ":", "a:b:c:d"]))
worker_messages = st.one_of(
    st.builds(lambda h: wpb.ConnectRequest(hello=h), hellos),
    st.builds(
        lambda c, p: wpb.ConnectRequest(result=wpb.CommandResult(command_id=c, result=p)),
        command_ids,
        payloads,
    ),
    st.builds(
        lambda c, m, t, n: wpb.ConnectRequest(
            failure=wpb.CommandFailure(
                command_id=c, failure=common_pb2.Failure(message=m, type=t, non_retryable=n)
            )
        ),
        command_ids,
        texts,
        texts,
        st.booleans(),
    ),
    st.builds(
        lambda ids, d: wpb.ConnectRequest(heartbeat=wpb.Heartbeat(command_ids=ids, details=d)),
        st.lists(command_ids, max_size=3),
        payloads,
    ),
    st.just(wpb.ConnectRequest(drain=wpb.Drain())),
    st.just(wpb.ConnectRequest()),
)

# -- helpers ------------------------------------------------------------------------


def _raw(channel: grpc.aio.Channel, method: str) -> Any:
    return channel.unary_unary(
        method, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )


def _check_status(exc: grpc.aio.AioRpcError, what: str) -> None:
    if exc.code() == grpc.StatusCode.INTERNAL and exc.details() == CLIENT_WRITE_RACE:
        return
    assert exc.code() not in UNDEFINED, f"{what}: {exc.code().name}: {exc.details()}"


async def _serving(channel: grpc.aio.Channel) -> None:
    response = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S
    )
    assert response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
async def channel(server: Server) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as ch:
        yield ch


# -- properties ---------------------------------------------------------------------


@FUZZ
@given(
    definition=messages_as_bytes(
        st.builds(lambda d: pb.RegisterWorkflowRequest(definition=d), definitions)
    ),
    execute=messages_as_bytes(
        st.builds(
            pb.ExecuteWorkflowRequest,
            workflow_name=st.one_of(st.just("fuzz.wf"), texts),
            version=st.integers(-2, 5),
            input=payloads,
            request_id=st.one_of(st.just(""), texts),
            correlation_id=texts,
        )
    ),
)
async def test_random_client_requests_get_a_defined_status(
    channel: grpc.aio.Channel, client: Client, definition: bytes, execute: bytes
) -> None:
    started: list[str] = []
    register = _raw(channel, "/multiagents.v1.WorkflowService/RegisterWorkflow")
    try:
        await register(definition, timeout=CALL_TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        _check_status(exc, "RegisterWorkflow")
    run = _raw(channel, "/multiagents.v1.WorkflowService/ExecuteWorkflow")
    try:
        response = await run(execute, timeout=CALL_TIMEOUT_S)
        started.append(pb.ExecuteWorkflowResponse.FromString(response).transaction_id)
    except grpc.aio.AioRpcError as exc:
        _check_status(exc, "ExecuteWorkflow")
    await _serving(channel)
    # What the fuzzing started can be left: cancelled (or already terminal).
    for tx in started:
        status = await client.get_status(tx)
        if not status.terminal:
            await client.cancel_workflow(tx, reason="fuzz")
            status = await client.wait(tx, timeout=CALL_TIMEOUT_S)
        assert status.terminal, status


@FUZZ
@given(
    first=messages_as_bytes(st.builds(lambda h: wpb.ConnectRequest(hello=h), hellos)),
    rest=st.lists(messages_as_bytes(worker_messages), max_size=6),
)
async def test_random_worker_streams_get_a_defined_status(
    channel: grpc.aio.Channel, first: bytes, rest: list[bytes]
) -> None:
    connect = channel.stream_stream(
        "/multiagents.v1.WorkerService/Connect",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )

    async def requests() -> AsyncIterator[bytes]:
        yield first
        for message in rest:
            yield message

    try:
        async for _ in connect(requests(), timeout=CALL_TIMEOUT_S):
            pass
    except grpc.aio.AioRpcError as exc:
        _check_status(exc, "Connect")
    await _serving(channel)
