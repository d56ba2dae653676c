"""WorkerService.Connect: one bidirectional session per worker process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from multiagents.v1 import worker_service_pb2 as wpb
from multiagents.v1 import worker_service_pb2_grpc
from multiagents_server import convert
from multiagents_server.config import ServerConfig
from multiagents_server.dispatcher import Dispatcher, Session
from multiagents_server.engine import failures
from multiagents_server.errors import InvalidArgument, ResourceExhausted
from multiagents_server.output import OutputAppender, SessionOutput
from multiagents_server.store import StoreUnavailable
from multiagents_server.transport.malformed import MalformedStream

log = logging.getLogger(__name__)

MAX_CONCURRENCY_LIMIT = 10_000
MAX_WORKER_NAMES = 1_000


def _check_hello(message: wpb.ConnectRequest) -> wpb.Hello:
    if message.WhichOneof("message") != "hello":
        raise InvalidArgument("hello: the first message of a session must be Hello")
    hello = message.hello
    if not hello.worker_names:
        raise InvalidArgument("hello.worker_names: at least one worker name is required")
    if len(hello.worker_names) > MAX_WORKER_NAMES:
        raise InvalidArgument(f"hello.worker_names: at most {MAX_WORKER_NAMES} names")
    for i, name in enumerate(hello.worker_names):
        convert.check_name(name, f"hello.worker_names[{i}]")
    for field in ("worker_id", "sdk_language", "sdk_version", "resume_token"):
        convert.check_length(getattr(hello, field), f"hello.{field}", convert.MAX_ID_LENGTH)
    if not 1 <= hello.max_concurrency <= MAX_CONCURRENCY_LIMIT:
        raise InvalidArgument(
            f"hello.max_concurrency: must be between 1 and {MAX_CONCURRENCY_LIMIT}, "
            f"got {hello.max_concurrency}"
        )
    if hello.protocol_version not in (
        wpb.PROTOCOL_VERSION_UNSPECIFIED,
        wpb.PROTOCOL_VERSION_1,
    ):
        raise InvalidArgument(
            f"hello.protocol_version: unsupported version {hello.protocol_version}; "
            "this server speaks PROTOCOL_VERSION_1"
        )
    return hello


class WorkerService(worker_service_pb2_grpc.WorkerServiceServicer):
    """Accepts worker sessions and relays commands and answers."""

    def __init__(self, dispatcher: Dispatcher, config: ServerConfig) -> None:
        self.dispatcher = dispatcher
        self.config = config
        self.output = OutputAppender(dispatcher.store, config.output_stream_max_entries)

    async def Connect(
        self,
        request_iterator: AsyncIterator[wpb.ConnectRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[wpb.ConnectResponse]:
        try:
            first = await anext(aiter(request_iterator))
            hello = _check_hello(first)
        except StopAsyncIteration:
            return
        except InvalidArgument as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return
        try:
            session = await self.dispatcher.open_session(hello)
        except StoreUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"storage unavailable, retry: {exc}")
            return
        interval = self.config.heartbeat_interval_ms
        yield wpb.ConnectResponse(
            welcome=wpb.Welcome(
                session_id=session.id,
                heartbeat_interval=convert.duration(interval),
                protocol_version=wpb.PROTOCOL_VERSION_1,
                max_payload_bytes=self.config.max_payload_bytes,
                resume_token=session.resume_token,
            )
        )
        answers: set[asyncio.Task[None]] = set()
        output = SessionOutput(session, self.output)
        reader = asyncio.create_task(self._read(session, output, request_iterator, answers))
        watchdog = asyncio.create_task(self._watchdog(session, interval))
        try:
            while True:
                message = await session.outgoing.get()
                if message is None:
                    break
                yield _coalesce(message, session.outgoing)
        except asyncio.CancelledError:
            session.end("worker disconnected")
            raise
        finally:
            # gRPC cancels this handler when the stream breaks, sometimes when
            # it is already here (the request stream ended first). The session
            # is closed by a task of its own, which that cancellation cannot
            # interrupt: else the session would stay open for good, its
            # commands neither answered nor failed.
            await asyncio.shield(
                self.dispatcher.spawn(self._close(session, (reader, watchdog), answers))
            )

    async def _close(
        self,
        session: Session,
        helpers: tuple[asyncio.Task[None], ...],
        answers: set[asyncio.Task[None]],
    ) -> None:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        # Answers already received are applied before the session's
        # remaining commands count as lost.
        if answers:
            await asyncio.gather(*answers, return_exceptions=True)
        await self.dispatcher.close_session(session, session.end_reason or "stream ended")

    async def _read(
        self,
        session: Session,
        output: SessionOutput,
        requests: AsyncIterator[wpb.ConnectRequest],
        answers: set[asyncio.Task[None]],
    ) -> None:
        reason = "worker closed the stream"
        try:
            async for message in requests:
                self.dispatcher.seen(session)
                if message.WhichOneof("message") == "output_chunk":
                    output.chunk(message.output_chunk)
                    continue
                for coro in self._handle(session, output, message):
                    task = asyncio.create_task(coro)
                    answers.add(task)
                    task.add_done_callback(answers.discard)
        except grpc.aio.AioRpcError as exc:
            reason = f"stream error: {exc.code().name}"
        except MalformedStream:
            reason = "malformed message"  # logged, and the status set, by `malformed`
        except Exception:
            log.exception("worker session failed", extra={"session": session.id})
            reason = "internal error"
        session.end(reason)

    def _handle(self, session: Session, output: SessionOutput, message: wpb.ConnectRequest) -> list:  # type: ignore[type-arg]
        kind = message.WhichOneof("message")
        if kind == "result":
            return [self._result(session, output, message.result)]
        if kind == "failure":
            return [self._failure(session, output, message.failure)]
        if kind == "outcomes":
            return [
                self._result(session, output, o.result)
                if o.WhichOneof("outcome") == "result"
                else self._failure(session, output, o.failure)
                for o in message.outcomes.outcomes
            ]
        if kind == "heartbeat":
            beat = message.heartbeat
            if beat.command_ids:
                details = beat.details if beat.HasField("details") else None
                return [self.dispatcher.heartbeat(session, beat.command_ids, details)]
            return []
        if kind == "drain":
            self.dispatcher.drain(session)
            if not session.inflight:
                session.end("drained")
            return []
        log.warning("unexpected worker message", extra={"session": session.id, "kind": kind})
        return []

    async def _result(
        self, session: Session, output: SessionOutput, result: wpb.CommandResult
    ) -> None:
        # The step's output is stored before its end is (watchers see it all).
        await output.settled(result.command_id)
        usage = None
        try:
            value = convert.json_object(result.result, "result", self.config.max_payload_bytes)
            usage = convert.usage_from_proto(result.usage, "result.usage")
        except (InvalidArgument, ResourceExhausted) as exc:
            failure = failures.invalid_result(str(exc), type(exc).__name__)
            await self.dispatcher.fail(session, result.command_id, failure, usage)
        else:
            await self.dispatcher.complete(session, result.command_id, value, usage)
        self._finish_drain(session)

    async def _failure(
        self, session: Session, output: SessionOutput, failure: wpb.CommandFailure
    ) -> None:
        await output.settled(failure.command_id)
        cause = convert.failure_from_proto(failure.failure)
        try:
            usage = convert.usage_from_proto(failure.usage, "failure.usage")
        except InvalidArgument as exc:
            usage = None
            cause = failures.invalid_result(str(exc), type(exc).__name__)
        await self.dispatcher.fail(session, failure.command_id, cause, usage)
        self._finish_drain(session)

    def _finish_drain(self, session: Session) -> None:
        if session.draining and not session.inflight:
            session.end("drained")

    async def _watchdog(self, session: Session, interval_ms: int) -> None:
        """Ends a session that sent nothing for three heartbeat intervals.

        Time the server itself did not run is not counted against the worker:
        when the watchdog wakes an interval or more late (its event loop was
        held up: a long garbage collection, a starved CPU), what the worker
        sent meanwhile waits unread in the stream, so it looks again one
        interval later, once the stream was read (once: a server late at
        every wake-up still ends silent sessions)."""
        limit = 3 * interval_ms
        looked_again = False
        while True:
            slept_from = self.dispatcher.clock
            await asyncio.sleep(interval_ms / 1000)
            late = self.dispatcher.clock - slept_from >= 2 * interval_ms
            if late and not looked_again:
                looked_again = True
                continue
            looked_again = False
            silent = self.dispatcher.clock - session.last_seen_ms
            if silent > limit:
                log.warning(
                    "worker session missed its heartbeats",
                    extra={"session": session.id, "silent_ms": silent},
                )
                session.end("missed heartbeats")
                return


def _coalesce(
    message: wpb.ConnectResponse, queue: asyncio.Queue[wpb.ConnectResponse | None]
) -> wpb.ConnectResponse:
    """Merge commands queued right behind `message` into one batch message."""
    kind = message.WhichOneof("message")
    if kind not in ("command", "commands") or queue.empty():
        return message
    commands = [message.command] if kind == "command" else list(message.commands.commands)
    while not queue.empty():
        following = queue._queue[0]  # type: ignore[attr-defined]
        if following is None or following.WhichOneof("message") not in ("command", "commands"):
            break
        queue.get_nowait()
        if following.WhichOneof("message") == "command":
            commands.append(following.command)
        else:
            commands.extend(following.commands.commands)
    return wpb.ConnectResponse(commands=wpb.Commands(commands=commands))
