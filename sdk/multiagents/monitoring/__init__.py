"""Monitoring, as the seed's "Monitoring Integration" shows it.

The server records every command's lifecycle (dispatch → pickup → processing
→ completion) and per-worker statistics, for workers in every language.
`EventMonitor` and `WorkerMonitor` (`monitors`) read them over
`MonitoringService` and return `records`; `MonitoringConfig` (`config`)
carries the seed's settings to the server and to logging.
"""

from multiagents.monitoring.config import (
    EventMonitoringSettings,
    LoggingSettings,
    MonitoringConfig,
    WorkerMonitoringSettings,
)
from multiagents.monitoring.monitors import EventMonitor, WorkerMonitor, current_server
from multiagents.monitoring.records import EventTrace, WorkerStats

__all__ = [
    "EventMonitor",
    "EventMonitoringSettings",
    "EventTrace",
    "LoggingSettings",
    "MonitoringConfig",
    "WorkerMonitor",
    "WorkerMonitoringSettings",
    "WorkerStats",
    "current_server",
]
