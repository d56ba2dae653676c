"""Shared fixtures: one real embedded Redis and one real gRPC server per test
session, on free localhost ports, stopped by pid at the end.

With `MULTIAGENTS_TEST_REDIS=cluster` (the cluster lane, `make test-cluster`)
the session's Redis is a real 3-master Redis Cluster instead, and every
test that takes `redis_server` runs against it; tests that need a single
node (they restart it) are marked `single_node` and skipped there, tests
marked `cluster_lane` (a cluster of their own whose nodes they kill) run
there only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tomllib
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from integration.helpers import make_config
from multiagents import Client
from multiagents_server.app import Server
from multiagents_server.embedded_redis import EmbeddedRedis
from redis_cluster import RedisCluster

if TYPE_CHECKING:
    from conformance.harness import Toolchains

ROOT = Path(__file__).resolve().parent.parent
# Session teardown never waits longer than this for one component.
TEARDOWN_S = 30
CLUSTER_LANE = os.environ.get("MULTIAGENTS_TEST_REDIS") == "cluster"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to run against an install older than server/pyproject.toml: the
    SDK finds the server through that distribution's entry points, so every
    test that starts one would fail, each in its own way."""
    project = tomllib.loads((ROOT / "server" / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"]["multiagents.server"]
    installed = {e.name: e.value for e in entry_points(group="multiagents.server")}
    if installed != declared:
        pytest.exit(
            f"the installed multiagents.server entry points {installed} are not those of "
            f"server/pyproject.toml {declared}: reinstall the packages (make setup, or "
            "pip install --no-deps --no-build-isolation -e . -e ./server)",
            returncode=4,
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_single = pytest.mark.skip(
        reason="needs a single-node Redis it can restart (not the cluster lane)"
    )
    skip_cluster = pytest.mark.skip(
        reason="runs in the cluster lane only (MULTIAGENTS_TEST_REDIS=cluster, make pytest-cluster)"
    )
    for item in items:
        if CLUSTER_LANE and "single_node" in item.keywords:
            item.add_marker(skip_single)
        if not CLUSTER_LANE and "cluster_lane" in item.keywords:
            item.add_marker(skip_cluster)


@pytest.fixture(scope="session")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("multiagents")


@contextlib.asynccontextmanager
async def _running(redis: EmbeddedRedis | RedisCluster, what: str) -> AsyncIterator[None]:
    """Start `redis`; stop it at the end within TEARDOWN_S, else kill it by pid."""
    await redis.start()
    pid = redis.pid if isinstance(redis, EmbeddedRedis) else None
    try:
        yield
    finally:
        try:
            await asyncio.wait_for(redis.stop(), TEARDOWN_S)
        except TimeoutError:
            # Reported, not raised: the tests are done; the processes go by pid.
            warnings.warn(f"{what} did not stop within {TEARDOWN_S}s; killed", stacklevel=1)
            if isinstance(redis, RedisCluster):
                redis.kill_all()
            elif pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
async def redis_cluster(tmp_root: Path) -> AsyncIterator[RedisCluster]:
    """A real 3-master Redis Cluster (3 redis-server processes, no replicas)."""
    cluster = RedisCluster(tmp_root / "redis-cluster")
    async with _running(cluster, "the Redis Cluster"):
        yield cluster


@pytest.fixture(scope="session")
async def redis_server(tmp_root: Path) -> AsyncIterator[EmbeddedRedis | RedisCluster]:
    """The session's real Redis: the embedded single node the product uses,
    or a 3-master cluster in the cluster lane. Both have `.url`."""
    redis: EmbeddedRedis | RedisCluster
    if CLUSTER_LANE:
        redis = RedisCluster(tmp_root / "lane-cluster")
    else:
        redis = EmbeddedRedis(tmp_root / "redis")
    async with _running(redis, "the session's Redis"):
        yield redis


@pytest.fixture(scope="session")
async def server(redis_server: EmbeddedRedis | RedisCluster) -> AsyncIterator[Server]:
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


@pytest.fixture(scope="session")
def toolchains(tmp_path_factory: pytest.TempPathFactory) -> Toolchains:
    """Each language's conformance worker and client programs
    (tests/conformance/harness.py), built once per session on first use."""
    from conformance.harness import Toolchains  # it imports this module

    return Toolchains(tmp_path_factory.mktemp("conformance-build"))


@pytest.fixture
def uid() -> Iterator[str]:
    """A unique prefix for the names of one test's workflows and workers."""
    yield f"t{uuid.uuid4().hex[:10]}"
