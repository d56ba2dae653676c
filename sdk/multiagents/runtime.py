"""The worker runtime: one session stream to the server, commands run with
bounded concurrency, heartbeats, reconnect with backoff, graceful drain.

Answers (results and failures) produced while the session is down are kept
and sent once a session is up again; the server accepts an answer for the
current attempt from any session.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import time
from collections.abc import AsyncGenerator, Iterable, Sequence
from typing import Any

import grpc

from multiagents import __version__, _tracing, wire
from multiagents.channel import open_channel
from multiagents.errors import FailureKind, InvalidResultError, MultiAgentsError, to_failure
from multiagents.output import CommandOutput, merge_chunks
from multiagents.v1 import common_pb2, worker_service_pb2_grpc
from multiagents.v1 import worker_service_pb2 as wpb
from multiagents.worker import (
    CommandInfo,
    WorkerFunction,
    check_unique_name,
    reset_current,
    set_current,
)

log = logging.getLogger("multiagents.worker")

# Errors that retrying cannot fix: the worker stops instead of reconnecting.
FATAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)

_Outgoing = asyncio.Queue[wpb.ConnectRequest | None]
# Time allowed after the drain timeout for the session stream to close.
STOP_GRACE_S = 5.0
# How often (at most) a step without a heartbeat timeout reports progress.
PROGRESS_EVERY_S = 1.0
# Commands a worker process runs at once by default: 8 in every SDK (Python,
# Go's worker.DefaultMaxConcurrency, Node's DEFAULT_MAX_CONCURRENCY).
DEFAULT_MAX_CONCURRENCY = 8
# Answers written on a session are remembered this long, to be sent again
# when the server lists their command in `Resumed` (docs/protocol.md): the
# default step timeout, after which no answer to them counts. At most this
# many bytes of them (RESEND_ENTRY_BYTES more each), the oldest forgotten
# first.
RESEND_WINDOW_S = 600.0
RESEND_MAX_BYTES = 32 * 1024 * 1024
RESEND_ENTRY_BYTES = 256


class WorkerStartError(MultiAgentsError):
    """The server refused the session for a reason retrying cannot fix.

    `code` is the gRPC status code of the refusal, when there was one.
    """

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class WorkerRuntime:
    """Serves workers to a MultiAgents server until stopped.

    `servers` lists addresses tried in turn (failover). `max_concurrency`
    bounds the commands running at once in this process; the server never
    sends more. Use `async with WorkerRuntime(...)`, or `await run()` and
    `await stop()` (also triggered by SIGTERM in the CLI).
    """

    def __init__(
        self,
        workers: Iterable[WorkerFunction] = (),
        *,
        servers: str | Sequence[str] = "127.0.0.1:50051",
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        worker_id: str | None = None,
        drain_timeout: float = 30.0,
        reconnect_initial: float = 0.1,
        reconnect_max: float = 5.0,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.workers: dict[str, WorkerFunction] = {}
        for w in workers:
            self.register(w)
        self.addresses = [servers] if isinstance(servers, str) else list(servers)
        if not self.addresses:
            raise ValueError("servers: at least one address is required")
        self.max_concurrency = max_concurrency
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.drain_timeout = drain_timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._credentials = credentials
        self._reconnect = (reconnect_initial, reconnect_max)
        self.ready = asyncio.Event()
        self.session_id = ""
        # From the last Welcome; sent in the next Hello to keep the commands
        # in flight across a reconnect (see docs/protocol.md, Reconnecting).
        self._resume_token = ""
        self.max_payload_bytes = 2 * 1024 * 1024
        self._stopping = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        # Commands the server cancelled -> the Cancel's reason.
        self._cancelled: dict[str, str] = {}
        self._outputs: dict[str, CommandOutput] = {}
        self._unsent: list[wpb.ConnectRequest] = []
        # Commands whose answer is queued, or kept for the next session.
        self._unwritten: set[str] = set()
        # Answers written, in writing order: id -> (when, session, message),
        # and their size in bytes.
        self._written: dict[str, tuple[float, str, wpb.ConnectRequest]] = {}
        self._written_bytes = 0
        self._send: _Outgoing | None = None
        self._task: asyncio.Task[None] | None = None

    def register(self, worker: WorkerFunction) -> None:
        """Add a worker; must happen before the session opens.

        Raises ValueError when another function already serves that name.
        """
        if not isinstance(worker, WorkerFunction):
            raise TypeError(f"{worker!r} is not a worker: decorate it with @worker(name)")
        check_unique_name(self.workers, worker)
        self.workers[worker.name] = worker

    async def __aenter__(self) -> WorkerRuntime:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout: float = 30.0) -> None:
        """Run in the background; returns once the first session is open."""
        self._task = asyncio.create_task(self.run(), name="multiagents-worker")
        ready = asyncio.create_task(self.ready.wait())
        done, _ = await asyncio.wait(
            {ready, self._task}, timeout=timeout, return_when="FIRST_COMPLETED"
        )
        if self._task in done:
            ready.cancel()
            self._task.result()  # raises what stopped it
            raise WorkerStartError("worker runtime stopped before connecting")
        if not done:
            ready.cancel()
            await self.stop()
            raise TimeoutError(f"no session with {self.addresses} within {timeout}s")

    async def stop(self) -> None:
        """Drain: take no new commands, finish running ones, send their answers."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        # Draining takes at most drain_timeout; the rest is closing the stream.
        done, _ = await asyncio.wait({task}, timeout=self.drain_timeout + STOP_GRACE_S)
        if not done:
            log.warning("worker runtime did not stop within its drain timeout; cancelling it")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        elif not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    async def run(self) -> None:
        """Serve until `stop()`; reconnects with exponential backoff and jitter."""
        if not self.workers:
            raise ValueError("no workers registered")
        failures = 0
        index = 0
        try:
            while not self._stopping.is_set():
                address = self.addresses[index % len(self.addresses)]
                try:
                    await self._session(address)
                    failures = 0
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in FATAL_CODES:
                        raise WorkerStartError(
                            f"{address}: {exc.code().name}: {exc.details()}", exc.code()
                        ) from None
                    log.warning("session with %s lost: %s", address, exc.code().name)
                except ConnectionError as exc:
                    log.warning("session with %s lost: %s", address, exc)
                finally:
                    self.ready.clear()
                if self._stopping.is_set():
                    break
                initial, maximum = self._reconnect
                delay = min(maximum, initial * 2**failures) * random.uniform(0.5, 1.0)
                failures += 1
                index += 1
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            await self._finish_running()

    async def _finish_running(self) -> None:
        if not self._running:
            return
        _, pending = await asyncio.wait(set(self._running.values()), timeout=self.drain_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _session(self, address: str) -> None:
        queue: _Outgoing = asyncio.Queue()
        queue.put_nowait(
            wpb.ConnectRequest(
                hello=wpb.Hello(
                    worker_id=self.worker_id,
                    worker_names=sorted(self.workers),
                    max_concurrency=self.max_concurrency,
                    sdk_language="python",
                    sdk_version=__version__,
                    protocol_version=wpb.PROTOCOL_VERSION_1,
                    resume_token=self._resume_token,
                )
            )
        )
        async with open_channel(address, self._credentials) as channel:
            stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
            # Written by a task of ours, not handed to gRPC as an iterator:
            # when the server ends the stream, gRPC would leave its consumer
            # of the iterator pending for good, and drop the answer it took.
            call = stub.Connect(metadata=self._metadata)
            writer = asyncio.create_task(self._write_requests(call, queue))
            writer.add_done_callback(functools.partial(_end_call_if_failed, call))
            helpers = [writer]
            try:
                first = await call.read()
                if first is grpc.aio.EOF or first.WhichOneof("message") != "welcome":
                    raise ConnectionError("server closed the session before Welcome")
                welcome = first.welcome
                self.session_id = welcome.session_id
                self._resume_token = welcome.resume_token
                self.max_payload_bytes = welcome.max_payload_bytes or self.max_payload_bytes
                for outcome in self._unsent:
                    queue.put_nowait(outcome)
                self._unsent.clear()
                self._send = queue
                self.ready.set()
                log.info("session %s open with %s", self.session_id, address)
                interval = welcome.heartbeat_interval.ToMilliseconds() / 1000 or 5.0
                helpers.append(asyncio.create_task(_heartbeats(queue, interval)))
                helpers.append(asyncio.create_task(self._drain_on_stop(queue)))
                while True:
                    message = await call.read()
                    if message is grpc.aio.EOF:
                        break
                    self._handle(message)
            finally:
                self._send = None
                for output in self._outputs.values():
                    output.session_lost()
                for task in helpers:
                    task.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
                while not queue.empty():
                    self._keep_answer(queue.get_nowait())
                call.cancel()

    async def _write_requests(self, call: grpc.aio.StreamStreamCall, queue: _Outgoing) -> None:
        """Send the queued messages on the session's stream until the queue's
        end marker (then half-close) or the stream's end. An answer the stream
        did not take is kept for the next session (sent again if it did take
        it: the server ignores an answer to a command no longer held)."""
        async with contextlib.aclosing(_requests(queue)) as requests:
            async for message in requests:
                try:
                    await call.write(message)
                    self._remember_written(message)
                except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                    self._keep_answer(message)  # the stream ended; the reader sees why
                    return
                except asyncio.CancelledError:
                    self._keep_answer(message)
                    raise
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await call.done_writing()

    def _remember_written(self, message: wpb.ConnectRequest) -> None:
        """Remember the answers `message` carried, for a `Resumed` that lists
        them; forget those first written more than RESEND_WINDOW_S ago, and
        the oldest beyond RESEND_MAX_BYTES (an answer sent again keeps its
        first time: it is not sent for ever)."""
        now = time.monotonic()
        for answer in _answers(message):
            self._unwritten.discard(answer.command_id)
            if answer.command_id not in self._written:
                request = _answer_request(answer)
                self._written[answer.command_id] = (now, self.session_id, request)
                self._written_bytes += request.ByteSize() + RESEND_ENTRY_BYTES
        while self._written:
            oldest = next(iter(self._written))
            written, _, request = self._written[oldest]
            if now - written <= RESEND_WINDOW_S and self._written_bytes <= RESEND_MAX_BYTES:
                break
            del self._written[oldest]
            self._written_bytes -= request.ByteSize() + RESEND_ENTRY_BYTES

    def _resumed(self, command_ids: Iterable[str]) -> None:
        """This session took over these commands of the previous one: answer
        again those answered there; fail at once (WorkerLost, retried) those
        this process never got or no longer remembers."""
        for cid in command_ids:
            written = self._written.get(cid)
            if cid in self._running or cid in self._unwritten:
                continue  # its answer will go on this session
            if written is not None and written[1] == self.session_id:
                continue  # answered on this session already
            if written is not None:
                log.info("sending again the answer to resumed command %s", cid)
                self._emit(written[2])
                continue
            log.warning("resumed command %s is unknown here; failing it as lost", cid)
            failure = common_pb2.Failure(
                message="the worker does not have this command (never received, or its "
                "answer is forgotten)",
                type="WorkerLost",
                kind=FailureKind.WORKER_LOST.to_proto(),
            )
            self._emit(
                wpb.ConnectRequest(failure=wpb.CommandFailure(command_id=cid, failure=failure))
            )

    def _keep_answer(self, message: wpb.ConnectRequest | None) -> None:
        """Keep an unsent answer for the next session; drop anything else."""
        if message is not None and message.WhichOneof("message") in (
            "result",
            "failure",
            "outcomes",
        ):
            self._unsent.append(message)

    async def _drain_on_stop(self, queue: _Outgoing) -> None:
        await self._stopping.wait()
        queue.put_nowait(wpb.ConnectRequest(drain=wpb.Drain()))
        await self._finish_running()
        queue.put_nowait(None)  # half-close: the server ends the session

    def _handle(self, message: wpb.ConnectResponse) -> None:
        kind = message.WhichOneof("message")
        if kind == "command":
            self._start(message.command)
        elif kind == "commands":
            for command in message.commands.commands:
                self._start(command)
        elif kind == "cancel":
            task = self._running.get(message.cancel.command_id)
            if task is not None:
                # The handler sees the reason as its CancelledError's message.
                reason = message.cancel.reason or "cancelled by the server"
                self._cancelled[message.cancel.command_id] = reason
                task.cancel(reason)
        elif kind == "ping":
            self._emit(wpb.ConnectRequest(heartbeat=wpb.Heartbeat()))
        elif kind == "output_ack":
            output = self._outputs.get(message.output_ack.command_id)
            if output is not None:
                output.acknowledged(message.output_ack)
        elif kind == "drain_request":
            log.info("server asked to drain: %s", message.drain_request.reason)
        elif kind == "resumed":
            self._resumed(message.resumed.command_ids)

    def _start(self, command: wpb.Command) -> None:
        task = asyncio.create_task(self._execute(command))
        self._running[command.command_id] = task
        task.add_done_callback(lambda _: self._forget(command.command_id))

    def _forget(self, command_id: str) -> None:
        self._running.pop(command_id, None)
        self._cancelled.pop(command_id, None)  # a handler that did not stop when cancelled

    def _emit(self, message: wpb.ConnectRequest) -> None:
        self._unwritten.update(answer.command_id for answer in _answers(message))
        if self._send is not None:
            self._send.put_nowait(message)
        elif message.WhichOneof("message") not in ("heartbeat", "output_chunk"):
            self._unsent.append(message)

    async def _execute(self, command: wpb.Command) -> None:
        cid = command.command_id
        output = self._outputs[cid] = CommandOutput(cid, self._emit)
        try:
            await self._answer(command, output)
        finally:
            self._outputs.pop(cid, None)

    async def _answer(self, command: wpb.Command, output: CommandOutput) -> None:
        cid = command.command_id
        try:
            result = await self._run_worker(command, output)
        except asyncio.CancelledError:
            reason = self._cancelled.pop(cid, None)
            if reason is None:
                raise
            # The server ignores this answer, but it frees the command's slot.
            failure = common_pb2.Failure(
                message=reason, type="Cancelled", kind=FailureKind.CANCELLED.to_proto()
            )
            self._emit(
                wpb.ConnectRequest(failure=wpb.CommandFailure(command_id=cid, failure=failure))
            )
            return
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            failure = to_failure(exc)
            if isinstance(exc, TimeoutError) and command.HasField("deadline"):
                # asyncio.timeout's TimeoutError comes from the task's
                # cancellation: that is how, not why; no cause.
                failure.type = "StepTimeout"
                failure.kind = FailureKind.TIMEOUT.to_proto()
                failure.ClearField("cause")
            failed = wpb.CommandFailure(command_id=cid, failure=failure, usage=_usage(output))
            self._emit(wpb.ConnectRequest(failure=failed))
            return
        answer = wpb.CommandResult(command_id=cid, result=result, usage=_usage(output))
        self._emit(wpb.ConnectRequest(result=answer))

    async def _run_worker(self, command: wpb.Command, output: CommandOutput) -> common_pb2.Payload:
        worker = self.workers.get(command.worker_name)
        if worker is None:
            raise ValueError(f"this process does not serve worker {command.worker_name!r}")
        context = wire.decode_object(command.context, field="context")
        info = CommandInfo(
            command_id=command.command_id,
            worker_name=command.worker_name,
            transaction_id=command.transaction_id,
            correlation_id=command.correlation_id,
            step=command.step,
            attempt=command.attempt,
            compensation=command.kind == wpb.COMMAND_KIND_COMPENSATE,
            heartbeat=self._heartbeater(command),
            output=output,
        )
        timeout = None
        if command.HasField("deadline"):
            timeout = max(command.deadline.ToMilliseconds() / 1000 - time.time(), 0.001)
        token = set_current(info)
        try:
            with _tracing.step_span(command):
                async with asyncio.timeout(timeout):
                    result = await worker.execute(context)
        finally:
            reset_current(token)
        payload = wire.encode(result)
        if len(payload.data) > self.max_payload_bytes:
            raise InvalidResultError(
                f"result of worker {command.worker_name!r} is {len(payload.data)} bytes, "
                f"over the server's limit of {self.max_payload_bytes}",
                type="PayloadTooLarge",
            )
        return payload

    def _heartbeater(self, command: wpb.Command) -> Any:
        """`heartbeat(details)` of one command: at most one Heartbeat every
        fifth of its heartbeat timeout; without one, only to report progress
        (details), at most every PROGRESS_EVERY_S."""
        has_timeout = command.HasField("heartbeat_timeout")
        every = (
            command.heartbeat_timeout.ToMilliseconds() / 5000 if has_timeout else PROGRESS_EVERY_S
        )
        last = [0.0]

        def beat(details: dict[str, Any] | None = None) -> None:
            now = time.monotonic()
            if now - last[0] < every or (details is None and not has_timeout):
                return
            last[0] = now
            message = wpb.Heartbeat(command_ids=[command.command_id])
            if details is not None:
                message.details.CopyFrom(wire.encode(details))
            self._emit(wpb.ConnectRequest(heartbeat=message))

        return beat


def _answers(message: wpb.ConnectRequest) -> list[wpb.CommandResult | wpb.CommandFailure]:
    """The results and failures a request carries (none for other kinds)."""
    kind = message.WhichOneof("message")
    if kind == "result":
        return [message.result]
    if kind == "failure":
        return [message.failure]
    if kind == "outcomes":
        return [getattr(o, o.WhichOneof("outcome")) for o in message.outcomes.outcomes]
    return []


def _answer_request(answer: wpb.CommandResult | wpb.CommandFailure) -> wpb.ConnectRequest:
    if isinstance(answer, wpb.CommandResult):
        return wpb.ConnectRequest(result=answer)
    return wpb.ConnectRequest(failure=answer)


def _usage(output: CommandOutput) -> common_pb2.Usage | None:
    return output.usage.to_proto() if output.usage else None


def _end_call_if_failed(call: grpc.aio.StreamStreamCall, writer: asyncio.Task[None]) -> None:
    """A writer that failed (a bug, not the stream's end) ends the call, so the
    session is opened again instead of waiting with nothing sent."""
    if not writer.cancelled() and writer.exception() is not None:
        log.error("worker session's writer failed", exc_info=writer.exception())
        call.cancel()


async def _requests(queue: _Outgoing) -> AsyncGenerator[wpb.ConnectRequest, None]:
    """The request stream: queued messages, with ready answers batched and
    ready text chunks of one command merged."""
    while True:
        message = await queue.get()
        if message is None:
            return
        if message.WhichOneof("message") == "output_chunk":
            while not queue.empty():
                following = queue._queue[0]  # type: ignore[attr-defined]
                if following is None or following.WhichOneof("message") != "output_chunk":
                    break
                if not merge_chunks(message.output_chunk, following.output_chunk):
                    break
                queue.get_nowait()
            yield message
            continue
        if message.WhichOneof("message") not in ("result", "failure") or queue.empty():
            yield message
            continue
        batch = [message]
        while not queue.empty():
            following = queue._queue[0]  # type: ignore[attr-defined]
            if following is None or following.WhichOneof("message") not in ("result", "failure"):
                break
            batch.append(queue.get_nowait())  # type: ignore[arg-type]
        outcomes = [
            wpb.CommandOutcome(result=m.result)
            if m.WhichOneof("message") == "result"
            else wpb.CommandOutcome(failure=m.failure)
            for m in batch
        ]
        yield wpb.ConnectRequest(outcomes=wpb.CommandOutcomes(outcomes=outcomes))


async def _heartbeats(queue: _Outgoing, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        queue.put_nowait(wpb.ConnectRequest(heartbeat=wpb.Heartbeat()))
