"""The corners of the worker protocol a fourth-language client found
(docs/protocol.md, "Decisions a new implementation needs"), checked on the
wire: a raw WorkerService session written from the protos alone, against the
conformance server subprocess. Whatever the language, this is what a worker
sees."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import grpc
import pytest

from multiagents import Client, RetryPolicy, WorkflowBuilder
from multiagents.v1 import (
    common_pb2,
    worker_service_pb2_grpc,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from multiagents.v1 import worker_service_pb2 as wpb

pytestmark = pytest.mark.slow

WAIT_S = 15.0


def hello(*names: str, version: int = wpb.PROTOCOL_VERSION_1) -> wpb.ConnectRequest:
    return wpb.ConnectRequest(
        hello=wpb.Hello(
            worker_id="raw-protocol-client",
            worker_names=list(names),
            max_concurrency=4,
            sdk_language="raw",
            protocol_version=version,  # type: ignore[arg-type]
        )
    )


class RawSession:
    """One WorkerService.Connect stream driven message by message; it sends
    Heartbeat{} every 100 ms (the conformance server's interval is 300 ms)
    unless `heartbeats` is False."""

    def __init__(self, address: str, first: wpb.ConnectRequest, *, heartbeats: bool = True) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.outgoing: asyncio.Queue[wpb.ConnectRequest] = asyncio.Queue()
        self.outgoing.put_nowait(first)
        stub = worker_service_pb2_grpc.WorkerServiceStub(self.channel)
        self.stream = stub.Connect(self._requests())
        self.beats = asyncio.create_task(self._heartbeats(heartbeats))

    async def _heartbeats(self, enabled: bool) -> None:
        while enabled:
            await asyncio.sleep(0.1)
            self.send(wpb.ConnectRequest(heartbeat=wpb.Heartbeat()))

    async def _requests(self) -> AsyncIterator[wpb.ConnectRequest]:
        while True:
            yield await self.outgoing.get()

    def send(self, message: wpb.ConnectRequest) -> None:
        self.outgoing.put_nowait(message)

    async def next(self, kind: str) -> wpb.ConnectResponse:
        """The next message of `kind` (heartbeat-free sessions see few others)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                response: wpb.ConnectResponse = await self.stream.read()  # type: ignore[assignment]
                assert response is not grpc.aio.EOF, "the server ended the session"
                if response.WhichOneof("message") == kind:
                    return response
                if response.WhichOneof("message") == "commands" and kind == "command":
                    [command] = response.commands.commands
                    return wpb.ConnectResponse(command=command)

    async def __aenter__(self) -> RawSession:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.beats.cancel()
        self.stream.cancel()
        await self.channel.close()


async def refused(address: str, first: wpb.ConnectRequest) -> grpc.aio.AioRpcError:
    """The error that ends a session opened with `first`. Nothing is written
    after `first`: the grpcio client reports a write after the server ended
    the stream as INTERNAL instead of the server's status (grpc/grpc#36066)."""
    async with RawSession(address, first, heartbeats=False) as session:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await session.next("welcome")
    return raised.value


def result(command_id: str, data: bytes, encoding: bytes | None = b"json/plain") -> Any:
    metadata = {} if encoding is None else {"encoding": encoding}
    payload = common_pb2.Payload(metadata=metadata, data=data)
    return wpb.ConnectRequest(result=wpb.CommandResult(command_id=command_id, result=payload))


def failure(command_id: str, f: common_pb2.Failure) -> wpb.ConnectRequest:
    return wpb.ConnectRequest(failure=wpb.CommandFailure(command_id=command_id, failure=f))


async def test_a_session_must_start_with_a_hello_naming_at_least_one_worker(
    client: Client,
) -> None:
    first = await refused(client.address, wpb.ConnectRequest(heartbeat=wpb.Heartbeat()))
    assert first.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "hello: the first message of a session must be Hello" in (first.details() or "")

    empty = await refused(client.address, hello())
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "hello.worker_names" in (empty.details() or "")


async def test_an_unspecified_protocol_version_is_version_1(client: Client, uid: str) -> None:
    first = hello(f"{uid}.w", version=wpb.PROTOCOL_VERSION_UNSPECIFIED)
    async with RawSession(client.address, first) as session:
        welcome = (await session.next("welcome")).welcome
    assert welcome.protocol_version == wpb.PROTOCOL_VERSION_1
    assert welcome.session_id and welcome.max_payload_bytes > 0


async def test_unknown_and_duplicate_answers_are_ignored_and_the_session_goes_on(
    client: Client, uid: str
) -> None:
    wf = WorkflowBuilder(f"{uid}.wf").add_step("a", f"{uid}.w").add_step("b", f"{uid}.w")
    await client.register_workflow(wf.build())
    async with RawSession(client.address, hello(f"{uid}.w")) as session:
        await session.next("welcome")
        # Empty input: the context is {}.
        tx = await client.execute_workflow(f"{uid}.wf", {})
        first = (await session.next("command")).command
        assert (first.step, first.attempt, json.loads(first.context.data or b"{}")) == ("a", 1, {})
        session.send(result(f"{tx}:x9:1", b'{"never": "sent"}'))  # unknown command id
        # No encoding metadata reads as json/plain; answered twice.
        session.send(result(first.command_id, b'{"a": 1}', encoding=None))
        session.send(result(first.command_id, b'{"a": 2}'))
        second = (await session.next("command")).command
        assert second.step == "b"
        assert json.loads(second.context.data) == {"a": 1}  # the first answer, once
        session.send(result(second.command_id, b""))  # empty data is {}
        status = await client.wait(tx, timeout=WAIT_S)
    assert status.state == "completed"
    assert status.step_results == {"a": {"a": 1}, "b": {}}


async def test_a_result_that_is_not_an_object_is_an_invalid_result_never_retried(
    client: Client, uid: str
) -> None:
    wf = WorkflowBuilder(f"{uid}.wf").add_step(
        "a", f"{uid}.w", retry=RetryPolicy(max_attempts=3, initial_interval=0.05)
    )
    await client.register_workflow(wf.build())
    async with RawSession(client.address, hello(f"{uid}.w")) as session:
        await session.next("welcome")
        tx = await client.execute_workflow(f"{uid}.wf", {})
        command = (await session.next("command")).command
        session.send(result(command.command_id, b"[1, 2]"))
        status = await client.wait(tx, timeout=WAIT_S)
    assert status.state == "failed" and status.steps[0].attempts == 1
    assert status.error is not None
    assert (status.error["kind"], status.error["type"], status.error["non_retryable"]) == (
        "invalid_result", "InvalidArgument", True
    )  # fmt: skip
    assert "result" in status.error["message"]


async def test_a_kind_a_worker_may_not_claim_is_recorded_as_application(
    client: Client, uid: str
) -> None:
    wf = WorkflowBuilder(f"{uid}.wf").add_step("a", f"{uid}.w", retry=RetryPolicy(max_attempts=1))
    await client.register_workflow(wf.build())
    claimed = common_pb2.Failure(
        message="it was not me",
        type="HeartbeatTimeout",
        kind=common_pb2.FAILURE_KIND_HEARTBEAT_TIMEOUT,
        cause=common_pb2.Failure(
            message="nor me", type="Budget", kind=common_pb2.FAILURE_KIND_BUDGET_EXCEEDED
        ),
    )
    async with RawSession(client.address, hello(f"{uid}.w")) as session:
        await session.next("welcome")
        tx = await client.execute_workflow(f"{uid}.wf", {})
        command = (await session.next("command")).command
        session.send(failure(command.command_id, claimed))
        status = await client.wait(tx, timeout=WAIT_S)
    assert status.error is not None
    assert [
        (f["kind"], f["type"], f["message"]) for f in (status.error, status.error["cause"])
    ] == [
        ("application", "HeartbeatTimeout", "it was not me"),
        ("application", "Budget", "nor me"),
    ]


async def test_traceparent_of_the_submit_call_is_in_the_command_metadata(
    client: Client, uid: str
) -> None:
    wf = WorkflowBuilder(f"{uid}.wf").add_step("a", f"{uid}.w")
    await client.register_workflow(wf.build())
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with RawSession(client.address, hello(f"{uid}.w")) as session:
        await session.next("welcome")
        stub = workflow_service_pb2_grpc.WorkflowServiceStub(client._channel)
        request = workflow_service_pb2.ExecuteWorkflowRequest(workflow_name=f"{uid}.wf")
        metadata = (("traceparent", traceparent),)
        tx = await stub.ExecuteWorkflow(request, metadata=metadata, timeout=10)
        command = (await session.next("command")).command
    assert command.transaction_id == tx.transaction_id
    assert command.metadata["traceparent"] == traceparent
