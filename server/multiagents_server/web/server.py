"""The dashboard's HTTP server in a replica's event loop.

It listens on `dashboard_port` (the replicas of `serve --processes N` share
it with SO_REUSEPORT, like the gRPC port) and calls the replica's gRPC
services over a Unix socket in a private directory (mode 0700), which the
replica adds to its gRPC server: the same services and interceptors as the
TCP port, so tokens and roles apply unchanged; TLS is not needed on a
socket only this user can open. With the gRPC port's TLS the dashboard is
HTTPS with the same certificate, and with its client CA (mTLS) it requires
a browser certificate signed by that CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from multiagents_server.config import ServerConfig
from multiagents_server.web.backend import Backend
from multiagents_server.web.views import create_app

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
# Open streams (live pages) are closed by the dashboard itself on stop; other
# requests get this long to finish.
GRACEFUL_STOP_S = 2.0
# Beyond the graceful stop, how long uvicorn may take to close before it is
# cancelled: a replica's shutdown never waits on its dashboard for long.
STOP_MARGIN_S = 3.0


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its signal handlers: the replica owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def dashboard_url(config: ServerConfig, port: int | None = None) -> str:
    scheme = "https" if config.tls_cert_file and config.tls_key_file else "http"
    return f"{scheme}://{config.host}:{port or config.dashboard_port}/"


class Dashboard:
    """`grpc_target` is added to the gRPC server before it starts; then
    `await start()` … `await stop()`."""

    def __init__(self, config: ServerConfig, replica_id: str) -> None:
        self.config = config
        self.replica_id = replica_id
        self._dir = tempfile.mkdtemp(prefix="multiagents-dashboard-")
        self.grpc_target = f"unix:{Path(self._dir) / 'grpc.sock'}"
        self.port = 0
        self._server: _EmbeddedUvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self._backend: Backend | None = None

    @property
    def url(self) -> str:
        return dashboard_url(self.config, self.port)

    def _listen(self) -> socket.socket:
        config = self.config
        info = socket.getaddrinfo(
            config.host, config.dashboard_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _, address = info[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if config.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise RuntimeError(
                f"cannot listen on {config.host}:{config.dashboard_port} "
                f"for the dashboard: {exc.strerror}"
            ) from None
        return sock

    async def start(self) -> None:
        config = self.config
        self._backend = Backend(
            self.grpc_target, max_message_bytes=config.max_payload_bytes * 4 + 1024 * 1024
        )
        tls = bool(config.tls_cert_file and config.tls_key_file)
        self._app = create_app(
            self._backend,
            auth_enabled=bool(config.client_tokens),
            secure_cookie=tls,
            replica_id=self.replica_id,
        )
        sock = self._listen()
        self.port = sock.getsockname()[1]
        self._server = _EmbeddedUvicorn(
            uvicorn.Config(
                self._app,
                lifespan="off",
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=int(GRACEFUL_STOP_S),
                # The gRPC port's TLS, and its mTLS: a browser without a
                # certificate of the client CA is refused as a client is.
                ssl_certfile=config.tls_cert_file if tls else None,
                ssl_keyfile=config.tls_key_file if tls else None,
                ssl_ca_certs=config.tls_client_ca_file if tls else None,
                ssl_cert_reqs=ssl.CERT_REQUIRED
                if tls and config.tls_client_ca_file
                else ssl.CERT_NONE,
            )
        )
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="dashboard")
        async with asyncio.timeout(START_TIMEOUT_S):
            while not self._server.started:
                if self._task.done():
                    self._task.result()  # raises what stopped it
                    raise RuntimeError("the dashboard stopped while starting")
                await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None:
            self._app.state.views.closing.set()
            self._server.should_exit = True
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=GRACEFUL_STOP_S + STOP_MARGIN_S)
            if not done:
                log.warning("the dashboard did not stop in time; cancelled")
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._server = None
        if self._backend is not None:
            await self._backend.close()
            self._backend = None
        shutil.rmtree(self._dir, ignore_errors=True)
