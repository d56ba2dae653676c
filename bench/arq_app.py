"""The arq peer: the same three no-op steps as arq jobs, chained by the worker.

arq has no chain primitive; a maintainer's answer for a pipeline is that a
job enqueues the next one (python-arq/arq#388). So each step returns its
context with one more key and, before it returns, enqueues the next step with
that context as its argument, under a job id derived from its own
(`<workflow>:1` enqueues `<workflow>:2`, which enqueues `<workflow>:3`). The
client enqueues step 1 and follows the chain: it waits for job 1's result,
then job 2's, then job 3's (job N's result is stored only after job N+1 is
enqueued, so the next job always exists when the client asks for it), polling
every 5 ms with `job_result` below.

The worker is arq's own CLI:

    arq bench.arq_app.WorkerSettings --custom-log-dict bench.arq_app.LOG_CONFIG

one process, polling the queue every 5 ms (`poll_delay=0.005`; arq's default
is 0.5 s), everything else arq's defaults (`max_jobs=10`, pickle). The Redis
URL comes from BENCH_ARQ_REDIS (set by bench/run.py to a database of the
benchmark's embedded Redis); BENCH_ARQ_MAX_JOBS overrides `max_jobs`.
LOG_CONFIG is arq's default logging at WARNING (like the Celery worker's
`--loglevel WARNING`): at INFO arq logs two lines per job.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name, result_key_prefix
from arq.jobs import ResultNotFound, deserialize_result
from arq.logs import default_log_config
from arq.utils import poll

POLL_DELAY_S = 0.005
STEPS = ("step1", "step2", "step3")

LOG_CONFIG = default_log_config(verbose=False)
LOG_CONFIG["handlers"]["arq.standard"]["level"] = "WARNING"
LOG_CONFIG["loggers"]["arq"]["level"] = "WARNING"


def job_id(workflow: str, step: int) -> str:
    """The id of the workflow's job for `step` (1-based)."""
    return f"{workflow}:{step}"


async def job_result(redis: ArqRedis, job_id: str, timeout: float) -> Any:
    """The job's result once it is stored: arq's `Job.result(poll_delay=POLL_DELAY_S)` as
    later arq releases write it (0.28 checked).

    arq 0.25 (the last release that accepts redis-py 8, which the server needs)
    reads the result key and the job's queue score in two separate commands, so a
    job that finishes between the two reads is taken for a job that does not
    exist (`ResultNotFound`): the third chain of a first try hit it. Later
    releases read both in one MULTI/EXEC, as this does.
    """
    async for elapsed in poll(POLL_DELAY_S):
        async with redis.pipeline(transaction=True) as tr:
            tr.get(result_key_prefix + job_id)
            tr.zscore(default_queue_name, job_id)
            value, score = await tr.execute()
        if value:
            info = deserialize_result(value)
            if not info.success:
                raise RuntimeError(f"arq job {job_id} failed: {info.result!r}")
            return info.result
        if score is None:
            raise ResultNotFound(f"arq job {job_id} is neither queued nor finished")
        if elapsed > timeout:
            raise TimeoutError(f"arq job {job_id}: no result after {timeout} s")
    raise AssertionError("unreachable")


async def _then(ctx: dict[str, Any], step: int, context: dict[str, Any]) -> None:
    """Enqueue the workflow's job for `step` with `context` (called by the step before it)."""
    workflow = ctx["job_id"].rsplit(":", 1)[0]
    job = await ctx["redis"].enqueue_job(STEPS[step - 1], context, _job_id=job_id(workflow, step))
    if job is None:
        raise RuntimeError(f"job {job_id(workflow, step)} already exists")


async def step1(ctx: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    out = {**context, "s1": 1}
    await _then(ctx, 2, out)
    return out


async def step2(ctx: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    out = {**context, "s2": 2}
    await _then(ctx, 3, out)
    return out


async def step3(ctx: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    return {**context, "s3": 3}


class WorkerSettings:
    functions: ClassVar[list[Any]] = [step1, step2, step3]
    redis_settings = RedisSettings.from_dsn(
        os.environ.get("BENCH_ARQ_REDIS", "redis://127.0.0.1:6379/3")
    )
    poll_delay = POLL_DELAY_S
    max_jobs = int(os.environ.get("BENCH_ARQ_MAX_JOBS", "10"))
