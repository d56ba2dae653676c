"""The dashboard's Starlette application: server-rendered pages, their live
fragments over server-sent events, and the actions.

Authentication: the browser user enters a client token once (/login); it is
checked with one API call and kept in an HttpOnly, SameSite=Strict cookie,
sent as the bearer token of every API call the dashboard makes for that
user. Actions also need the `X-MultiAgents-Request` header, which a page of
another site cannot send (no CORS), so a forged form post does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import quote, urlencode

import grpc
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from multiagents.v1 import events_pb2, workflow_pb2
from multiagents.v1 import workflow_service_pb2 as pb
from multiagents_server.web import present
from multiagents_server.web.actions import ACTIONS, ACTIONS_BY_NAME, ActionInputError, form_values
from multiagents_server.web.backend import CALL_TIMEOUT_S, Backend
from multiagents_server.web.listing import (
    PAGE_SIZES,
    Cursor,
    FilterError,
    count_states,
    parse_filters,
    search,
)

HERE = Path(__file__).parent
# The token's cookie is named after the port: a browser keeps cookies per
# host, not per port, so two dashboards on one host would share one.
TOKEN_COOKIE = "multiagents_token"
ACTION_HEADER = "x-multiagents-request"
# A live execution page is re-rendered at least this often (running bars grow).
EXECUTION_TICK_S = 1.0
# The list is re-rendered at most this often while events arrive, and at
# least this often without any.
LIST_MIN_INTERVAL_S = 1.0
LIST_IDLE_REFRESH_S = 10.0
# The workers page is re-rendered this often (sessions come and go, the
# heartbeat ages grow).
WORKERS_REFRESH_S = 2.0
# A comment line sent on a quiet stream so proxies keep it open.
KEEPALIVE_S = 15.0
# Watch messages read ahead of the page's stream (then the watch waits).
WATCH_BUFFER = 1_000
# After a first output entry, entries arriving within this are sent together.
OUTPUT_GATHER_S = 0.02
# A live execution page reads the status again at most this often while the
# execution changes (the items of a large map change it many times a second).
RELOAD_MIN_INTERVAL_S = 0.25

HTTP_OF = {
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def sse(event: str, data: str, event_id: str = "") -> str:
    """One server-sent event; every line of `data` is a `data:` line. The
    browser sends the last `event_id` back as Last-Event-ID when it reconnects."""
    lines = data.splitlines() or [""]
    head = f"id: {event_id}\n" if event_id else ""
    return head + f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n"


def now_ms() -> int:
    return int(time.time() * 1000)


class Views:
    def __init__(self, backend: Backend, *, auth_enabled: bool, secure_cookie: bool) -> None:
        self.backend = backend
        self.auth_enabled = auth_enabled
        self.secure_cookie = secure_cookie
        # Set on shutdown: live streams end so the HTTP server can stop.
        self.closing = asyncio.Event()
        self.templates = Jinja2Templates(directory=HERE / "templates")
        env = self.templates.env
        env.globals.update(states=list(present.STATES.values()), page_sizes=PAGE_SIZES)
        env.filters.update(
            when=present.when,
            duration=present.duration,
            state=present.state_name,
            usage=present.usage_view,
        )

    # -- plumbing -----------------------------------------------------------------

    @staticmethod
    def cookie(request: Request) -> str:
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        return f"{TOKEN_COOKIE}_{port}"

    def token(self, request: Request) -> str | None:
        return request.cookies.get(self.cookie(request)) or None

    def page(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        context.setdefault("signed_in", self.token(request) is not None)
        context.setdefault("auth_enabled", self.auth_enabled)
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    def fragment(self, name: str, **context: Any) -> str:
        return self.templates.get_template(name).render(**context)

    async def rpc_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, grpc.aio.AioRpcError)
        code = exc.code()
        status = HTTP_OF.get(code, 502)
        wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if code == grpc.StatusCode.UNAUTHENTICATED and wants_page:
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        message = exc.details() or code.name
        if wants_page:
            return self.page(request, "error.html", status, status=status, message=message)
        return JSONResponse({"error": message, "code": code.name}, status_code=status)

    async def bad_input(self, request: Request, exc: Exception) -> Response:
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return self.page(request, "error.html", 400, status=400, message=str(exc))
        return JSONResponse({"error": str(exc), "code": "INVALID_ARGUMENT"}, status_code=400)

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    def stream(self, frames: AsyncIterator[str]) -> StreamingResponse:
        """An SSE response of `frames`, with keep-alive comments, ending on shutdown."""

        async def body() -> AsyncIterator[str]:
            frames_iter = aiter(frames)
            closing: asyncio.Future[Any] = asyncio.ensure_future(self.closing.wait())
            pending: asyncio.Future[Any] | None = None
            try:
                while True:
                    if pending is None:
                        pending = asyncio.ensure_future(anext(frames_iter))
                    done, _ = await asyncio.wait(
                        {pending, closing}, timeout=KEEPALIVE_S, return_when="FIRST_COMPLETED"
                    )
                    if closing in done:
                        return
                    if pending not in done:
                        yield ": keep-alive\n\n"
                        continue
                    try:
                        frame = pending.result()
                    except StopAsyncIteration:
                        return
                    except grpc.aio.AioRpcError as exc:
                        yield sse("failure", exc.details() or exc.code().name)
                        return
                    pending = None
                    yield frame
            finally:
                closing.cancel()
                if pending is not None:
                    pending.cancel()
                    with contextlib.suppress(BaseException):
                        await pending
                with contextlib.suppress(BaseException):
                    await frames_iter.aclose()  # type: ignore[attr-defined]

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    # -- sign in ------------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        next_path = request.query_params.get("next", "/")
        return self.page(
            request, "login.html", next=next_path if next_path.startswith("/") else "/"
        )

    async def login(self, request: Request) -> Response:
        body = await _json_body(request)
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token.strip():
            return JSONResponse({"error": "token: required"}, status_code=400)
        token = token.strip()
        # One call with the token: UNAUTHENTICATED or PERMISSION_DENIED
        # (a worker token) are answered by the error handler.
        await self.backend.definitions(token)
        response = JSONResponse({"ok": True})
        response.set_cookie(
            self.cookie(request), token, httponly=True, samesite="strict", secure=self.secure_cookie
        )
        return response

    async def logout(self, request: Request) -> Response:
        _require_action_header(request)
        response = JSONResponse({"ok": True})
        response.delete_cookie(self.cookie(request), httponly=True, samesite="strict")
        return response

    # -- executions ---------------------------------------------------------------

    async def _list_context(self, request: Request) -> dict[str, Any]:
        filters = parse_filters(request.query_params)
        cursor = Cursor.decode(request.query_params.get("cursor", ""))
        token = self.token(request)
        page, counts = await asyncio.gather(
            search(self.backend, token, filters, cursor),
            count_states(self.backend, token, filters),
        )
        query = {k: v for k, v in request.query_params.items() if k != "cursor" and v}
        next_url = ""
        if page.next is not None:
            next_url = "/executions?" + urlencode({**query, "cursor": page.next.encode()})
        state_urls = {
            s: "/executions?" + urlencode({**query, "state": s}) for s in present.STATES.values()
        }
        state_urls[""] = "/executions?" + urlencode(
            {k: v for k, v in query.items() if k != "state"}
        )
        return {
            "filters": filters,
            "page": page,
            "counts": counts,
            "next_url": next_url,
            "first_url": "/executions?" + urlencode(query) if cursor != Cursor() else "",
            "state_urls": state_urls,
            "query": urlencode(request.query_params),
            "rendered_at": now_ms(),
        }

    async def executions(self, request: Request) -> Response:
        return self.page(request, "executions.html", **await self._list_context(request))

    async def executions_live(self, request: Request) -> Response:
        context = await self._list_context(request)  # bad filters: 400 before streaming
        token = self.token(request)

        async def frames() -> AsyncIterator[str]:
            nonlocal context
            yield sse("update", self.fragment("_executions_live.html", **context))
            changed = asyncio.Event()
            call = self.backend.events(token)

            async def follow() -> None:
                async for _ in call:
                    changed.set()

            follower = asyncio.create_task(follow())
            try:
                while True:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(LIST_IDLE_REFRESH_S):
                            await changed.wait()
                    changed.clear()
                    context = await self._list_context(request)
                    yield sse("update", self.fragment("_executions_live.html", **context))
                    await asyncio.sleep(LIST_MIN_INTERVAL_S)
            finally:
                call.cancel()
                follower.cancel()
                with contextlib.suppress(BaseException):
                    await follower

        return self.stream(frames())

    async def _load_execution(
        self, token: str | None, tx: str, shown: ExecutionData | None = None
    ) -> ExecutionData:
        """The execution's status, history and definition. With `shown` (the
        last load of a live stream) the history is read again only when the
        revision moved (each commit adds both), the definition never."""
        status = await self.backend.status(token, tx)
        if shown is not None and shown.status.revision == status.revision:
            history = shown.history
        else:
            history = await self.backend.history(token, tx)
        if shown is not None:
            definition = shown.definition
        else:
            definition = await self.backend.definition(
                token, status.workflow_name, status.workflow_version
            )
        return ExecutionData(status, history, definition)

    def _execution_context(self, data: ExecutionData) -> dict[str, Any]:
        """What the execution page shows of `data`, as of now."""
        status, history, definition = data.status, data.history, data.definition
        now = now_ms()
        return {
            "status": status,
            "state": present.state_name(status.state),
            "terminal": _terminal(status),
            "definition": definition,
            "graph": present.graph(definition, status),
            "timeline": present.timeline(history, status, now),
            "history": present.history_rows(history),
            "context_json": present.json_view(present.payload_json(status.context)),
            "results_json": present.json_view(present.payload_json(status.step_results)),
            "failure": status.failure if status.HasField("failure") else None,
            "failed_steps": [s for s in status.steps if s.HasField("last_failure")],
            # What the workers of the running steps last reported (heartbeat details).
            "progress": [
                {
                    "path": s.path or s.name,
                    "attempt": s.progress.attempt,
                    "details": present.payload_json(s.progress.details),
                    "updated_at": s.progress.updated_at,
                }
                for s in status.steps
                if s.HasField("progress")
            ],
            "usage": present.usage_table(status),
            "elapsed": present.duration(
                (present.ms(status.completed_at) or now) - present.ms(status.created_at)
            ),
        }

    async def execution(self, request: Request) -> Response:
        data = await self._load_execution(self.token(request), request.path_params["tx"])
        context = self._execution_context(data)
        return self.page(request, "execution.html", actions=ACTIONS, **context)

    async def execution_live(self, request: Request) -> Response:
        """The execution page's live stream: `update` (the page's fragment),
        `output` (the steps' output, with the entry's offset as the event id,
        so a browser that reconnects resumes after it: Last-Event-ID), `end`.

        One WatchWorkflow call with the output, the other history events and
        the progress: the status is read again when one of them says the
        execution changed, and between changes the page is rendered again
        from what was read, once a second (the running bars grow)."""
        tx = request.path_params["tx"]
        token = self.token(request)
        resume = request.headers.get("last-event-id", "")
        if resume and not present.OUTPUT_OFFSET.fullmatch(resume):
            raise FilterError(f"Last-Event-ID: {resume!r} is not an output offset (<ms>-<n>)")
        data = await self._load_execution(token, tx)  # NOT_FOUND: 404 here

        async def frames() -> AsyncIterator[str]:
            nonlocal data
            context = self._execution_context(data)
            yield sse("update", self.fragment("_execution_live.html", **context))
            feed = present.OutputFeed(tx)
            call = self.backend.watch(token, tx, output_from=resume)
            updates: asyncio.Queue[WatchItem] = asyncio.Queue(WATCH_BUFFER)
            reader = asyncio.create_task(_read_into(call, updates))
            watching = True  # until the watch ends (after the terminal status)
            stale = False  # the watch said the execution changed since it was read
            loaded = rendered = time.monotonic()
            try:
                while True:
                    due = rendered + EXECUTION_TICK_S
                    if stale:
                        due = min(due, loaded + RELOAD_MIN_INTERVAL_S)
                    wait = max(due - time.monotonic(), 0)
                    batch = await _next_batch(updates, wait) if watching else []
                    outputs = [m.output for m in batch if _is_output(m)]
                    if outputs:
                        parts = feed.parts(outputs)
                        yield sse("output", present.output_json(parts), outputs[-1].offset)
                    errors = [m for m in batch if isinstance(m, Exception)]
                    if errors:
                        raise errors[0]
                    if any(m is None for m in batch):
                        watching = False
                    stale = stale or any(_changed(m, data.status.revision) for m in batch)
                    if not watching and not _terminal(data.status):
                        stale = True  # no watch any more: read it each second
                    now = time.monotonic()
                    if stale and (not watching or now - loaded >= RELOAD_MIN_INTERVAL_S):
                        data = await self._load_execution(token, tx, data)
                        loaded, stale = time.monotonic(), False
                    elif watching and now - rendered < EXECUTION_TICK_S:
                        continue  # the page shows all that was read
                    context = self._execution_context(data)
                    yield sse("update", self.fragment("_execution_live.html", **context))
                    rendered = time.monotonic()
                    # The watch ends after the last output: the end waits for it.
                    if context["terminal"] and not watching:
                        yield sse("end", "")
                        return
                    if not watching:
                        await asyncio.sleep(EXECUTION_TICK_S)
            finally:
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader
                call.cancel()

        return self.stream(frames())

    async def execution_output(self, request: Request) -> Response:
        """The whole text of one epoch (an attempt of a step or of its
        compensation) up to an offset: what "Show all" loads when the page
        shows the epoch cut. Read with StreamStepOutput of that step."""
        tx = request.path_params["tx"]
        query = request.query_params
        step = query.get("step", "")
        if not step:
            raise FilterError("step: required (a step path)")
        attempt_text = query.get("attempt", "")
        if not attempt_text.isdigit() or int(attempt_text) < 1:
            raise FilterError(f"attempt: expected a number from 1, got {attempt_text!r}")
        compensation = query.get("compensation", "0")
        if compensation not in ("0", "1"):
            raise FilterError(f"compensation: expected 0 or 1, got {compensation!r}")
        until = query.get("until", "")
        if not present.OUTPUT_OFFSET.fullmatch(until):
            raise FilterError(f"until: {until!r} is not an output offset (<ms>-<n>)")
        epoch = (step, compensation == "1", int(attempt_text))
        end = present.offset_key(until)
        pieces: list[str] = []
        call = self.backend.step_output(self.token(request), tx, step)
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                async for response in call:
                    o = response.output
                    if o.HasField("gap"):
                        pieces.append("[earlier output dropped by the stream's cap]\n")
                    elif o.HasField("chunk") and (o.step, o.compensation, o.attempt) == epoch:
                        pieces.append(present.output_text(o.chunk))
                    if present.offset_key(o.offset) >= end:
                        break
        finally:
            call.cancel()
        headers = {"x-content-type-options": "nosniff", "cache-control": "no-store"}
        return PlainTextResponse("".join(pieces), headers=headers)

    async def execution_json(self, request: Request) -> Response:
        """The whole of a payload the page shows cut: context or results."""
        tx, what = request.path_params["tx"], request.path_params["what"]
        if what not in ("context", "results"):
            raise HTTPException(404, f"what: expected context or results, got {what!r}")
        status = await self.backend.status(self.token(request), tx)
        payload = status.context if what == "context" else status.step_results
        return PlainTextResponse(present.payload_json(payload), media_type="application/json")

    async def action(self, request: Request) -> Response:
        _require_action_header(request)
        action = ACTIONS_BY_NAME.get(request.path_params["name"])
        if action is None:
            raise HTTPException(404, f"action: unknown, expected one of {sorted(ACTIONS_BY_NAME)}")
        values = form_values(action, await _json_body(request))
        message = await action.run(
            self.backend, self.token(request), request.path_params["tx"], values
        )
        return JSONResponse({"ok": True, "message": message})

    # -- workers and definitions ----------------------------------------------------

    async def _workers_context(self, token: str | None) -> dict[str, Any]:
        sessions, stats = await asyncio.gather(
            self.backend.workers(token), self.backend.worker_stats(token)
        )
        now = now_ms()
        ages = {
            s.session_id: present.duration(now - present.ms(s.last_heartbeat)) for s in sessions
        }
        return {
            "sessions": sessions,
            "stats": stats,
            "ages": ages,
            "health_names": present.WORKER_HEALTH,
        }

    async def workers(self, request: Request) -> Response:
        context = await self._workers_context(self.token(request))
        return self.page(request, "workers.html", **context)

    async def workers_live(self, request: Request) -> Response:
        token = self.token(request)
        first = await self._workers_context(token)  # UNAUTHENTICATED: 401 before streaming

        async def frames() -> AsyncIterator[str]:
            context = first
            while True:
                yield sse("update", self.fragment("_workers_live.html", **context))
                await asyncio.sleep(WORKERS_REFRESH_S)
                context = await self._workers_context(token)

        return self.stream(frames())

    async def definitions(self, request: Request) -> Response:
        found = await self.backend.definitions(self.token(request))
        return self.page(
            request, "definitions.html", definitions=sorted(found, key=lambda d: d.name)
        )

    async def definition(self, request: Request) -> Response:
        token = self.token(request)
        name = request.path_params["name"]
        text = request.query_params.get("version", "0")
        if not text.isdigit():
            raise FilterError(f"version: expected a number, got {text!r}")
        latest = await self.backend.definition(token, name, 0)
        shown = latest if int(text) in (0, latest.version) else None
        if shown is None:
            shown = await self.backend.definition(token, name, int(text))
        return self.page(
            request,
            "definition.html",
            definition=shown,
            versions=range(latest.version, max(latest.version - MAX_VERSIONS_LISTED, 0), -1),
            graph=present.graph(shown),
        )


# The definition page links this many versions, newest first.
MAX_VERSIONS_LISTED = 50


@dataclass(frozen=True)
class ExecutionData:
    """What the execution page is rendered from."""

    status: workflow_pb2.WorkflowStatus
    history: list[events_pb2.WorkflowEvent]
    definition: workflow_pb2.WorkflowDefinition


# A watch message, None when the watch ended, or the error that ended it.
WatchItem = pb.WatchWorkflowResponse | Exception | None


async def _read_into(
    call: grpc.aio.UnaryStreamCall[pb.WatchWorkflowRequest, pb.WatchWorkflowResponse],
    queue: asyncio.Queue[WatchItem],
) -> None:
    try:
        async for message in call:
            await queue.put(message)
    except Exception as exc:
        await queue.put(exc)
    else:
        await queue.put(None)


async def _next_batch(queue: asyncio.Queue[WatchItem], timeout: float) -> list[WatchItem]:
    """What the watch brought within `timeout` ([] if nothing): the first
    message and every one queued behind it (output gathered a moment)."""
    try:
        first = await asyncio.wait_for(queue.get(), timeout)
    except TimeoutError:
        return []
    if _is_output(first):
        await asyncio.sleep(OUTPUT_GATHER_S)
    batch = [first]
    while not queue.empty() and len(batch) < WATCH_BUFFER:
        batch.append(queue.get_nowait())
    return batch


def _terminal(status: workflow_pb2.WorkflowStatus) -> bool:
    return present.state_name(status.state) in present.TERMINAL_STATES


def _is_output(item: WatchItem) -> TypeGuard[pb.WatchWorkflowResponse]:
    return isinstance(item, pb.WatchWorkflowResponse) and item.HasField("output")


def _changed(item: WatchItem, revision: int) -> bool:
    """Whether a watch message says the page shows less than the execution now is."""
    if not isinstance(item, pb.WatchWorkflowResponse):
        return False
    if item.HasField("event"):
        return item.event.revision > revision
    return item.HasField("history_event") or item.HasField("progress")


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise ActionInputError("body: expected JSON") from None


def _require_action_header(request: Request) -> None:
    if request.headers.get(ACTION_HEADER) != "1":
        raise HTTPException(403, f"missing the {ACTION_HEADER} header (sent by the dashboard)")


REPLICA_HEADER = b"x-multiagents-replica"


class ReplicaHeader:
    """Names the replica that answered (`serve --processes N` runs several)."""

    def __init__(self, app: ASGIApp, replica_id: str) -> None:
        self.app = app
        self.value = replica_id.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REPLICA_HEADER, self.value)]
            await send(message)

        await self.app(scope, receive, send_named)


def create_app(
    backend: Backend, *, auth_enabled: bool, secure_cookie: bool, replica_id: str
) -> Starlette:
    views = Views(backend, auth_enabled=auth_enabled, secure_cookie=secure_cookie)

    async def home(request: Request) -> Response:
        return RedirectResponse("/executions", status_code=303)

    app = Starlette(
        middleware=[Middleware(ReplicaHeader, replica_id=replica_id)],
        routes=[
            Route("/", home),
            Route("/login", views.login_page, methods=["GET"]),
            Route("/login", views.login, methods=["POST"]),
            Route("/logout", views.logout, methods=["POST"]),
            Route("/executions", views.executions),
            Route("/executions/live", views.executions_live),
            Route("/executions/{tx}", views.execution),
            Route("/executions/{tx}/live", views.execution_live),
            Route("/executions/{tx}/json/{what}", views.execution_json),
            Route("/executions/{tx}/output", views.execution_output),
            Route("/executions/{tx}/actions/{name}", views.action, methods=["POST"]),
            Route("/workers", views.workers),
            Route("/workers/live", views.workers_live),
            Route("/definitions", views.definitions),
            Route("/definitions/{name}", views.definition),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={
            grpc.aio.AioRpcError: views.rpc_error,
            FilterError: views.bad_input,
            ActionInputError: views.bad_input,
            HTTPException: views.http_error,
        },
    )

    app.state.views = views
    return app
