"""Progress of running steps: the details of a worker's heartbeats, kept per
command (the latest only) and shown by GetStatus on the step's StepInfo.

A heartbeat naming commands with details records them for each of those
commands that the session runs; a status shows the record of the step's
current attempt only, so a new attempt or the step's end hides an older
one (records expire with the execution's retention).
"""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable

from multiagents.v1 import common_pb2, workflow_pb2
from multiagents_server import convert, engine
from multiagents_server.config import ServerConfig
from multiagents_server.errors import InvalidArgument, ResourceExhausted
from multiagents_server.observability.tracing import attempt_of
from multiagents_server.store import Store

log = logging.getLogger(__name__)


async def record(
    store: Store,
    config: ServerConfig,
    running: Container[str],
    command_ids: Iterable[str],
    details: common_pb2.Payload | None,
    now_ms: int,
) -> None:
    """Keep a heartbeat's `details` as the progress of the commands it names
    that are `running` at its session; details that are not a JSON object
    within `max_payload_bytes` are dropped (logged)."""
    if details is None:
        return
    commands = [cid for cid in command_ids if cid in running]
    if not commands:
        return
    try:
        convert.json_object(details, "heartbeat.details", config.max_payload_bytes)
    except (InvalidArgument, ResourceExhausted) as exc:
        log.warning("heartbeat details dropped: %s", exc, extra={"command_ids": commands})
        return
    for command_id in commands:
        progress = workflow_pb2.StepProgress(
            details=details,
            updated_at=convert.timestamp(now_ms),
            attempt=attempt_of(command_id),
            command_id=command_id,
        )
        transaction_id = command_id.rsplit(":", 2)[0]
        await store.set_progress(
            transaction_id, command_id, progress.SerializeToString(), config.retention_ms
        )


async def attach(store: Store, ex: engine.Execution, status: workflow_pb2.WorkflowStatus) -> None:
    """Set the progress of each step whose attempt is running (several in a
    parallel group or a map), where its worker reported any."""
    if ex.state.terminal:
        return
    by_path = {info.path: info for info in status.steps}
    for key, attempt in ex.attempts.items():
        if not attempt.dispatched:
            continue
        raw = await store.progress_of(ex.transaction_id, ex.command_id(attempt))
        info = by_path.get(ex.path_of(key))
        if raw is not None and info is not None:
            info.progress.ParseFromString(raw)
            info.progress.path = info.path
