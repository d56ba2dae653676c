"""Shared fixtures: one real embedded Redis and one real gRPC server per test
session, on free localhost ports, stopped by pid at the end."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from integration.helpers import make_config
from multiagents import Client
from multiagents_server.app import Server
from multiagents_server.embedded_redis import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("multiagents")


@pytest.fixture(scope="session")
async def redis_server(tmp_root: Path) -> AsyncIterator[EmbeddedRedis]:
    """The session's real redis-server (the same embedded Redis the product uses)."""
    redis = EmbeddedRedis(tmp_root / "redis")
    await redis.start()
    yield redis
    await redis.stop()


@pytest.fixture(scope="session")
async def server(redis_server: EmbeddedRedis) -> AsyncIterator[Server]:
    """A real gRPC server replica shared by the session's tests."""
    srv = Server(make_config(redis_server.url))
    await srv.start()
    yield srv
    await srv.stop(grace_s=1)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[Client]:
    async with Client(server.address) as c:
        yield c


@pytest.fixture
def uid() -> Iterator[str]:
    """A unique prefix for the names of one test's workflows and workers."""
    yield f"t{uuid.uuid4().hex[:10]}"
