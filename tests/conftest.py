"""Shared fixtures: one real embedded Redis and one real gRPC server per test
session, on free localhost ports, stopped by pid at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from integration.helpers import make_config
from multiagents import Client
from multiagents_server.app import Server
from multiagents_server.embedded_redis import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent
# Session teardown never waits longer than this for one component.
TEARDOWN_S = 30


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("multiagents")


@pytest.fixture(scope="session")
async def redis_server(tmp_root: Path) -> AsyncIterator[EmbeddedRedis]:
    """The session's real redis-server (the same embedded Redis the product uses)."""
    redis = EmbeddedRedis(tmp_root / "redis")
    await redis.start()
    yield redis
    pid = redis.pid
    try:
        await asyncio.wait_for(redis.stop(), TEARDOWN_S)
    except TimeoutError:
        # Reported, not raised: the tests are done; the process goes by pid.
        warnings.warn(f"redis-server did not stop within {TEARDOWN_S}s; killed", stacklevel=1)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
async def server(redis_server: EmbeddedRedis) -> AsyncIterator[Server]:
    """A real gRPC server replica shared by the session's tests."""
    srv = Server(make_config(redis_server.url))
    await srv.start()
    yield srv
    try:
        await asyncio.wait_for(srv.stop(grace_s=1), TEARDOWN_S)
    except TimeoutError:
        warnings.warn(f"the session's server did not stop within {TEARDOWN_S}s", stacklevel=1)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    async with Client(server.address) as c:
        yield c


@pytest.fixture
def uid() -> Iterator[str]:
    """A unique prefix for the names of one test's workflows and workers."""
    yield f"t{uuid.uuid4().hex[:10]}"
