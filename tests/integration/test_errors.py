"""Every error code of the contract (DESIGN.md §2), with the field named."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from integration.helpers import make_config, serving
from multiagents import (
    AlreadyExistsError,
    Client,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnauthenticatedError,
    WorkflowBuilder,
    worker,
)
from multiagents.v1 import common_pb2, workflow_pb2, workflow_service_pb2_grpc
from multiagents.v1 import workflow_service_pb2 as pb
from multiagents_server.app import Server
from multiagents_server.config import ConfigError
from multiagents_server.embedded_redis import EmbeddedRedis


def _with_retry(policy: workflow_pb2.RetryPolicy) -> workflow_pb2.WorkflowDefinition:
    step = workflow_pb2.StepDefinition(name="s", worker="a", retry_policy=policy)
    return workflow_pb2.WorkflowDefinition(name="w", version=1, steps=[step])


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


async def test_unknown_transaction_is_not_found(client: Client) -> None:
    for call in (client.get_status, client.cancel_workflow, client.get_history):
        with pytest.raises(NotFoundError, match="transaction_id"):
            await call("no-such-tx")
    with pytest.raises(NotFoundError):
        async for _ in client.watch("no-such-tx"):
            pass


async def test_unknown_workflow_and_version_are_not_found(client: Client, uid: str) -> None:
    with pytest.raises(NotFoundError, match="workflow_name"):
        await client.execute_workflow(f"{uid}.missing", {})
    await client.register_workflow(WorkflowBuilder(f"{uid}.wf").add_step("s", "w").build())
    with pytest.raises(NotFoundError, match="version"):
        await client.execute_workflow(f"{uid}.wf", {}, version=9)


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        (workflow_pb2.WorkflowDefinition(name="", version=1), "definition.name"),
        (workflow_pb2.WorkflowDefinition(name="w", version=0), "definition.version"),
        (workflow_pb2.WorkflowDefinition(name="w", version=1), "definition.steps"),
        (
            workflow_pb2.WorkflowDefinition(
                name="w", version=1, steps=[workflow_pb2.StepDefinition(name="s", worker="")]
            ),
            r"definition.steps\[0\]: set exactly one of worker, .* \(found: none\)",
        ),
        (
            workflow_pb2.WorkflowDefinition(
                name="w",
                version=1,
                steps=[
                    workflow_pb2.StepDefinition(name="s", worker="a"),
                    workflow_pb2.StepDefinition(name="s", worker="b"),
                ],
            ),
            r"definition.steps\[1\].name",
        ),
        (
            workflow_pb2.WorkflowDefinition(
                name="w",
                version=1,
                steps=[
                    workflow_pb2.StepDefinition(
                        name="s",
                        worker="a",
                        retry_policy=workflow_pb2.RetryPolicy(maximum_attempts=-1),
                    )
                ],
            ),
            r"definition.steps\[0\].retry_policy.maximum_attempts",
        ),
        (
            workflow_pb2.WorkflowDefinition(
                name="w",
                version=1,
                steps=[workflow_pb2.StepDefinition(name="s", worker="a", workflow="child")],
            ),
            r"definition.steps\[0\]: set exactly one of .* \(found: worker, workflow\)",
        ),
        *[
            (
                _with_retry(policy),
                rf"definition.steps\[0\].retry_policy.{field}: must be",
            )
            for policy, field in (
                (workflow_pb2.RetryPolicy(backoff_coefficient=float("nan")), "backoff_coefficient"),
                (workflow_pb2.RetryPolicy(backoff_coefficient=float("inf")), "backoff_coefficient"),
                (workflow_pb2.RetryPolicy(backoff_coefficient=1e300), "backoff_coefficient"),
                (workflow_pb2.RetryPolicy(maximum_attempts=1_000_000), "maximum_attempts"),
                (
                    workflow_pb2.RetryPolicy(maximum_interval=duration_pb2.Duration(seconds=10**9)),
                    "maximum_interval",
                ),
            )
        ],
    ],
)
async def test_bad_definition_is_invalid_argument_naming_the_field(
    client: Client, definition: workflow_pb2.WorkflowDefinition, field: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=field):
        await client.register_workflow(definition)


async def test_bad_input_payload_is_invalid_argument(
    server: Server, client: Client, uid: str
) -> None:
    await client.register_workflow(WorkflowBuilder(f"{uid}.wf").add_step("s", "w").build())
    stub = workflow_service_pb2_grpc.WorkflowServiceStub(client._channel)
    cases = [
        (
            common_pb2.Payload(metadata={"encoding": b"json/plain"}, data=b"{not json"),
            "input: invalid JSON",
        ),
        (
            common_pb2.Payload(metadata={"encoding": b"json/plain"}, data=b"[1, 2]"),
            "input: expected a JSON object",
        ),
        (
            common_pb2.Payload(metadata={"encoding": b"binary/x"}, data=b"x"),
            "input: unsupported encoding",
        ),
        (
            common_pb2.Payload(metadata={"encoding": b"json/plain"}, data=_nested(10_000)),
            "input: JSON nested deeper than the limit of 100",
        ),
        (
            common_pb2.Payload(metadata={"encoding": b"json/plain"}, data=_nested(101)),
            "input: JSON nested deeper than the limit of 100",
        ),
    ]
    for payload, message in cases:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.ExecuteWorkflow(
                pb.ExecuteWorkflowRequest(workflow_name=f"{uid}.wf", input=payload)
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (info.value.details() or "")


async def test_different_definition_under_same_version_already_exists(
    client: Client, uid: str
) -> None:
    assert await client.register_workflow(WorkflowBuilder(f"{uid}.wf").add_step("s", "w1").build())
    assert not await client.register_workflow(
        WorkflowBuilder(f"{uid}.wf").add_step("s", "w1").build()
    )
    with pytest.raises(AlreadyExistsError, match=f"{uid}.wf"):
        await client.register_workflow(WorkflowBuilder(f"{uid}.wf").add_step("s", "w2").build())
    assert await client.register_workflow(
        WorkflowBuilder(f"{uid}.wf", version=2).add_step("s", "w2").build()
    )
    latest = await client.get_workflow_definition(f"{uid}.wf")
    assert (latest.version, latest.steps[0].worker) == (2, "w2")


async def test_reused_request_id_with_other_input_already_exists(client: Client, uid: str) -> None:
    await client.register_workflow(
        WorkflowBuilder(f"{uid}.wf").add_step("s", f"{uid}.nobody").build()
    )
    await client.execute_workflow(f"{uid}.wf", {"a": 1}, request_id=f"{uid}-r")
    with pytest.raises(AlreadyExistsError, match="request_id"):
        await client.execute_workflow(f"{uid}.wf", {"a": 2}, request_id=f"{uid}-r")


async def test_cancel_of_finished_workflow_is_failed_precondition(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.w")
    async def w(ctx: dict[str, Any]) -> dict[str, Any]:
        return {}

    async with serving(server, w):
        await client.register_workflow(WorkflowBuilder(f"{uid}.wf").add_step("s", w).build())
        tx = await client.execute_workflow(f"{uid}.wf", {})
        await client.wait(tx, timeout=10)
    with pytest.raises(FailedPreconditionError, match="already completed"):
        await client.cancel_workflow(tx)


async def test_oversized_input_is_resource_exhausted_with_size_and_limit(
    server: Server, client: Client, uid: str
) -> None:
    await client.register_workflow(WorkflowBuilder(f"{uid}.wf").add_step("s", "w").build())
    limit = server.config.max_payload_bytes
    with pytest.raises(ResourceExhaustedError) as info:
        await client.execute_workflow(f"{uid}.wf", {"blob": "x" * limit})
    assert str(limit) in info.value.message and "input" in info.value.message


async def test_oversized_result_fails_the_step_instead_of_crashing(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.big")
    async def big(ctx: dict[str, Any]) -> dict[str, Any]:
        return {"blob": "x" * (server.config.max_payload_bytes + 1)}

    async with serving(server, big):
        await client.register_workflow(WorkflowBuilder(f"{uid}.wf").add_step("s", big).build())
        tx = await client.execute_workflow(f"{uid}.wf", {})
        status = await client.wait(tx, timeout=10)
    assert status.state == "failed"
    assert status.error is not None and "over the server's limit" in status.error["message"]


async def test_missing_or_wrong_token_is_unauthenticated_and_the_wrong_role_denied(
    redis_server: EmbeddedRedis, uid: str
) -> None:
    config = make_config(
        redis_server.url, client_tokens=("client-secret",), worker_tokens=("worker-secret",)
    )
    async with Server(config) as secured:
        for token, code in (
            (None, grpc.StatusCode.UNAUTHENTICATED),
            ("wrong", grpc.StatusCode.UNAUTHENTICATED),
            ("worker-secret", grpc.StatusCode.PERMISSION_DENIED),
        ):
            async with Client(secured.address, token=token) as c:
                with pytest.raises(UnauthenticatedError, match="client role") as raised:
                    await c.list_workflow_definitions()
                assert raised.value.code == code
        async with Client(secured.address, token="client-secret") as c:
            assert await c.list_workflow_definitions() == []

        from multiagents import WorkerRuntime, WorkerStartError

        @worker(f"{uid}.w")
        async def w(ctx: dict[str, Any]) -> dict[str, Any]:
            return {}

        with pytest.raises(WorkerStartError, match="PERMISSION_DENIED"):
            await WorkerRuntime([w], servers=secured.address, token="client-secret").start(
                timeout=5
            )
        with pytest.raises(WorkerStartError, match="UNAUTHENTICATED"):
            await WorkerRuntime([w], servers=secured.address, token="wrong").start(timeout=5)
        runtime = WorkerRuntime([w], servers=secured.address, token="worker-secret")
        await runtime.start(timeout=5)
        await runtime.stop()


async def test_client_tokens_without_worker_tokens_refuse_to_start(
    redis_server: EmbeddedRedis,
) -> None:
    config = make_config(redis_server.url, client_tokens=("client-secret",))
    with pytest.raises(ConfigError, match="worker_tokens: client tokens are set but no worker"):
        await Server(config).start()
    allowed = config.replace(allow_anonymous_workers=True)
    async with Server(allowed) as server, Client(server.address, token="client-secret") as c:
        assert await c.list_workflow_definitions() == []


async def test_a_result_nested_too_deep_fails_its_attempt_for_good(
    server: Server, client: Client, uid: str
) -> None:
    @worker(f"{uid}.deep")
    async def deep(ctx: dict[str, Any]) -> dict[str, Any]:
        value: dict[str, Any] = {"leaf": 1}
        for _ in range(150):
            value = {"a": value}
        return value

    async with serving(server, deep):
        await client.register_workflow(WorkflowBuilder(f"{uid}.wf").add_step("s", deep).build())
        tx = await client.execute_workflow(f"{uid}.wf", {})
        status = await client.wait(tx, timeout=10)
    assert status.state == "failed"
    assert status.steps[0].attempts == 1  # not retried
    assert status.error is not None
    assert "result: JSON nested deeper than the limit of 100" in status.error["message"]


async def test_garbage_bytes_are_invalid_argument_and_the_server_goes_on(
    server: Server, client: Client
) -> None:
    garbage = b"\xff\xfe\x00garbage\x99"
    channel = grpc.aio.insecure_channel(server.address)
    connect = channel.stream_stream(
        "/multiagents.v1.WorkerService/Connect",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )

    async def one_message() -> Any:
        yield garbage

    with pytest.raises(grpc.aio.AioRpcError) as streamed:
        async for _ in connect(one_message()):
            pass
    execute = channel.unary_unary(
        "/multiagents.v1.WorkflowService/ExecuteWorkflow",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.aio.AioRpcError) as unary:
        await execute(garbage)
    await channel.close()
    for raised in (streamed.value, unary.value):
        assert raised.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "request: not a valid message" in (raised.details() or "")
    assert await client.list_workflow_definitions() is not None  # still serving


async def test_over_long_ids_and_reasons_are_invalid_argument_naming_the_field(
    client: Client, uid: str
) -> None:
    await client.register_workflow(WorkflowBuilder(f"{uid}.wf").add_step("s", "w").build())
    with pytest.raises(InvalidArgumentError, match="request_id: at most 200 characters"):
        await client.execute_workflow(f"{uid}.wf", {}, request_id="r" * 201)
    with pytest.raises(InvalidArgumentError, match="correlation_id: at most 200 characters"):
        await client.execute_workflow(f"{uid}.wf", {}, correlation_id="c" * 201)
    with pytest.raises(InvalidArgumentError, match="transaction_id: at most 200 characters"):
        await client.get_status("t" * 201)
    tx = await client.execute_workflow(f"{uid}.wf", {})
    with pytest.raises(InvalidArgumentError, match="reason: at most 1000 characters"):
        await client.cancel_workflow(tx, reason="x" * 1001)
    assert (await client.get_status(tx)).state == "running"  # nothing applied


async def test_an_over_long_hello_field_ends_the_session_naming_it(server: Server) -> None:
    from multiagents.v1 import worker_service_pb2 as wpb
    from multiagents.v1 import worker_service_pb2_grpc

    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
        hello = wpb.Hello(worker_id="w" * 201, worker_names=["ok"], max_concurrency=1)

        async def messages() -> Any:
            yield wpb.ConnectRequest(hello=hello)

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in stub.Connect(messages()):
                pass
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "hello.worker_id: at most 200 characters" in (raised.value.details() or "")


async def test_the_cancel_reason_reaches_the_running_worker(
    server: Server, client: Client, uid: str
) -> None:
    from multiagents.v1 import worker_service_pb2 as wpb
    from multiagents.v1 import worker_service_pb2_grpc

    await client.register_workflow(WorkflowBuilder(uid).add_step("s", f"{uid}.raw").build())
    outgoing: asyncio.Queue[wpb.ConnectRequest] = asyncio.Queue()
    hello = wpb.Hello(worker_id="raw", worker_names=[f"{uid}.raw"], max_concurrency=1)
    await outgoing.put(wpb.ConnectRequest(hello=hello))

    async def messages() -> Any:
        while True:
            yield await outgoing.get()

    async with grpc.aio.insecure_channel(server.address) as channel:
        stream = worker_service_pb2_grpc.WorkerServiceStub(channel).Connect(messages())
        kinds = []
        async with asyncio.timeout(10):
            async for response in stream:
                kind = response.WhichOneof("message")
                kinds.append(kind)
                if kind == "welcome":
                    tx = await client.execute_workflow(uid, {})
                elif kind == "command":
                    await client.cancel_workflow(tx, reason="the customer called")
                elif kind == "cancel":
                    assert response.cancel.command_id.startswith(f"{tx}:x0:")
                    assert response.cancel.reason == "the customer called"
                    break
        stream.cancel()
    assert kinds[-1] == "cancel"


async def test_a_python_handler_sees_the_cancel_reason(
    server: Server, client: Client, uid: str
) -> None:
    started = asyncio.Event()
    seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    @worker(f"{uid}.waits")
    async def waits(ctx: dict[str, Any]) -> dict[str, Any]:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError as exc:
            seen.set_result(str(exc))
            raise
        return {}

    await client.register_workflow(WorkflowBuilder(uid).add_step("s", f"{uid}.waits").build())
    async with serving(server, waits):
        tx = await client.execute_workflow(uid, {})
        await asyncio.wait_for(started.wait(), 10)
        await client.cancel_workflow(tx, reason="the customer called")
        assert await asyncio.wait_for(seen, 10) == "the customer called"


async def test_garbage_after_a_valid_hello_is_invalid_argument_in_one_log_line(
    server: Server, uid: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A bad message later in the worker stream (read by the session's own
    reader task): INVALID_ARGUMENT, one warning, no traceback."""
    from multiagents.v1 import worker_service_pb2 as wpb

    hello = wpb.ConnectRequest(
        hello=wpb.Hello(worker_id="raw", worker_names=[f"{uid}.raw"], max_concurrency=1)
    )
    async with grpc.aio.insecure_channel(server.address) as channel:
        connect = channel.stream_stream(
            "/multiagents.v1.WorkerService/Connect",
            request_serializer=lambda b: b,
            response_deserializer=wpb.ConnectResponse.FromString,
        )
        call = connect()
        await call.write(hello.SerializeToString())
        assert (await call.read()).WhichOneof("message") == "welcome"
        await call.write(b"\xff\xfe\x00garbage\x99")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request: not a valid message" in (raised.value.details() or "")
    logged = [r for r in caplog.records if r.name.startswith("multiagents_server.transport")]
    assert [r.levelname for r in logged] == ["WARNING"], [r.getMessage() for r in logged]
    assert all(r.exc_info is None for r in logged)
