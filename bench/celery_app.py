"""The Celery baseline: the same three no-op tasks, Redis as broker and result backend.

The broker and backend URLs come from BENCH_CELERY_BROKER / BENCH_CELERY_BACKEND
(set by bench/run.py to databases of the benchmark's embedded Redis). JSON
serialisation, like MultiAgents' payloads.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

app = Celery(
    "bench",
    broker=os.environ.get("BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/1"),
    backend=os.environ.get("BENCH_CELERY_BACKEND", "redis://127.0.0.1:6379/2"),
)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    task_send_sent_event=False,
    result_expires=3600,
)


@app.task(name="bench.t1")
def t1(context: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**(context or {}), "s1": 1}


@app.task(name="bench.t2")
def t2(context: dict[str, Any]) -> dict[str, Any]:
    return {**context, "s2": 2}


@app.task(name="bench.t3")
def t3(context: dict[str, Any]) -> dict[str, Any]:
    return {**context, "s3": 3}
