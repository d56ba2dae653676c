"""What the monitors return: one command's lifecycle (`EventTrace`) and one
worker name's statistics (`WorkerStats`), decoded from MonitoringService's
messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from multiagents.v1 import monitoring_service_pb2 as mpb


def _dt(ts: Any) -> datetime | None:
    return ts.ToDatetime() if ts.seconds or ts.nanos else None


@dataclass(frozen=True, slots=True)
class EventTrace:
    """Lifecycle of one command: dispatch → pickup → processing → completion."""

    command_id: str
    transaction_id: str
    correlation_id: str
    worker_name: str
    step: str
    dispatched_at: datetime | None
    picked_up_at: datetime | None
    completed_at: datetime | None
    queue_latency_ms: int
    processing_ms: int
    success: bool
    error: dict[str, str] | None

    @classmethod
    def from_proto(cls, t: mpb.EventTrace) -> EventTrace:
        return cls(
            command_id=t.command_id,
            transaction_id=t.transaction_id,
            correlation_id=t.correlation_id,
            worker_name=t.worker_name,
            step=t.step,
            dispatched_at=_dt(t.dispatched_at),
            picked_up_at=_dt(t.picked_up_at),
            completed_at=_dt(t.completed_at),
            queue_latency_ms=t.queue_latency.ToMilliseconds(),
            processing_ms=t.processing_time.ToMilliseconds(),
            success=t.success,
            error={"type": t.failure.type, "message": t.failure.message}
            if t.HasField("failure")
            else None,
        )


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """Statistics of one worker name, across every replica and language."""

    worker_name: str
    succeeded: int
    failed: int
    success_rate: float
    p50_ms: int
    p95_ms: int
    p99_ms: int
    health: str
    error_types: dict[str, int]
    sessions: int
    languages: tuple[str, ...]

    @classmethod
    def from_proto(cls, s: mpb.WorkerStats) -> WorkerStats:
        return cls(
            worker_name=s.worker_name,
            succeeded=s.succeeded,
            failed=s.failed,
            success_rate=s.success_rate,
            p50_ms=s.p50.ToMilliseconds(),
            p95_ms=s.p95.ToMilliseconds(),
            p99_ms=s.p99.ToMilliseconds(),
            health=mpb.WorkerHealth.Name(s.health).removeprefix("WORKER_HEALTH_").lower(),
            error_types=dict(s.error_types),
            sessions=s.sessions,
            languages=tuple(s.sdk_languages),
        )
