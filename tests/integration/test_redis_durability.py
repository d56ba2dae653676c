"""What a Redis answer is worth: a write the embedded Redis acknowledged
survives a SIGKILL of redis-server, even while the disk is busy.

Redis with `appendfsync everysec` does not promise that: while its
once-a-second background fsync of the append-only file runs, it keeps new
writes in memory (for up to 2 s) and answers them anyway, so a SIGKILL in
that window loses acknowledged writes. On a quiet disk the fsync takes
milliseconds and the window is hard to hit; on a busy one it lasted long
enough to lose accepted workflows in the cluster chaos test and a master's
keys in `test_redis_cluster_harness.py` while two test lanes shared the
machine. Here the disk is kept busy by a writer filling the page cache with
dirty pages, which Redis's fsync has to wait for."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from integration.helpers import wait_for
from multiagents_server.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.slow

TRIALS = 4
BATCH = 50
WRITE_S = 1.5
BALLAST_BYTES = 1 << 30
CHUNK = bytes(32 << 20)


@pytest.fixture
def busy_disk(tmp_path: Path) -> Iterator[None]:
    """A thread rewriting a 1 GiB file on the disk of `tmp_path`, never
    syncing it, until the test ends."""
    stop = threading.Event()

    def write() -> None:
        path = tmp_path / "ballast"
        while not stop.is_set():
            with open(path, "wb") as f:
                written = 0
                while written < BALLAST_BYTES and not stop.is_set():
                    f.write(CHUNK)
                    written += len(CHUNK)

    writer = threading.Thread(target=write, name="ballast", daemon=True)
    writer.start()
    try:
        yield
    finally:
        stop.set()
        writer.join(timeout=60)
        (tmp_path / "ballast").unlink(missing_ok=True)


async def test_writes_the_embedded_redis_acknowledged_survive_its_sigkill_on_a_busy_disk(
    tmp_path: Path, busy_disk: None
) -> None:
    async with EmbeddedRedis(tmp_path / "redis") as redis:
        for trial in range(TRIALS):
            async with aioredis.Redis.from_url(redis.url) as client:
                keys = await _write_through_a_background_fsync(client, f"t{trial}")
            pid = redis.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await wait_for(lambda: not redis.alive, timeout=10, interval=0.01)
            await redis.restart()
            async with aioredis.Redis.from_url(redis.url) as client:
                values = await client.mget(keys)
            missing = [k for k, v in zip(keys, values, strict=True) if v is None]
            assert not missing, (
                f"trial {trial}: {len(missing)} of {len(keys)} acknowledged keys lost"
            )


async def _write_through_a_background_fsync(client: aioredis.Redis, prefix: str) -> list[str]:
    """Keys written one at a time, each acknowledged, until a background
    fsync of the append-only file is seen running and `BATCH` more were
    written while it ran; or for `WRITE_S` (`everysec` starts an fsync within
    a second of writes; a Redis that fsyncs before it answers runs none)."""
    keys: list[str] = []
    deadline = time.monotonic() + WRITE_S
    while time.monotonic() < deadline:
        batch = [f"{prefix}:k{n}" for n in range(len(keys), len(keys) + BATCH)]
        for key in batch:
            await client.set(key, key)
        keys += batch
        info = await client.info("persistence")
        if int(info.get("aof_pending_bio_fsync", 0)) > 0:
            for key in [f"{prefix}:k{n}" for n in range(len(keys), len(keys) + BATCH)]:
                await client.set(key, key)
                keys.append(key)
            break
    return keys
