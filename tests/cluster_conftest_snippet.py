"""The session's Redis Cluster fixture, to merge into tests/conftest.py.

Until it is merged, a test module imports it: `from cluster_conftest_snippet
import redis_cluster`. It relies on conftest's `tmp_root` and `TEARDOWN_S`.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from redis_cluster import RedisCluster

TEARDOWN_S = 30  # conftest.py defines it already: drop this line when merging.


@pytest.fixture(scope="session")
async def redis_cluster(tmp_root: Path) -> AsyncIterator[RedisCluster]:
    """The session's real 3-master Redis Cluster (3 redis-server processes, no replicas)."""
    cluster = RedisCluster(tmp_root / "redis-cluster")
    await cluster.start()
    yield cluster
    try:
        await asyncio.wait_for(cluster.stop(), TEARDOWN_S)
    except TimeoutError:
        # Reported, not raised: the tests are done; the processes go by pid.
        warnings.warn(f"the Redis Cluster did not stop within {TEARDOWN_S}s; killed", stacklevel=1)
        cluster.kill_all()
