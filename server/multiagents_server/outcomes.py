"""Monitoring records of answered commands: per-worker counters and the
recent traces, added up in memory and written once a second (and before a
monitoring read), so no step pays for them. A replica killed loses at most
its last second of counters; per-execution traces are written by the commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from multiagents_server.config import ServerConfig
from multiagents_server.store import Store, WorkerOutcomes


@dataclass(frozen=True, slots=True)
class Outcome:
    """Monitoring record of one answered (or lost) command."""

    worker: str
    command_id: str
    success: bool
    error_type: str
    duration_ms: int
    trace: bytes | None  # None when event monitoring is off


class Outcomes:
    """The counters and traces gathered since the last flush."""

    def __init__(self, store: Store, config: ServerConfig) -> None:
        self.store = store
        self.config = config
        self._outcomes: dict[str, WorkerOutcomes] = {}
        self._traces: list[bytes] = []

    def record(self, outcome: Outcome) -> None:
        if self.config.worker_monitoring:
            o = self._outcomes.setdefault(outcome.worker, WorkerOutcomes())
            if outcome.success:
                o.succeeded += 1
            else:
                o.failed += 1
                o.errors[outcome.error_type] = o.errors.get(outcome.error_type, 0) + 1
            o.durations_ms.append(outcome.duration_ms)
        if outcome.trace is not None:
            self._traces.append(outcome.trace)

    async def flush(self) -> None:
        """Write what was gathered since the last flush."""
        if not self._outcomes and not self._traces:
            return
        outcomes, traces = self._outcomes, self._traces
        self._outcomes, self._traces = {}, []
        await self.store.record_outcomes(outcomes, traces)
