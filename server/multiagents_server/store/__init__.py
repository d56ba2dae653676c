"""Redis storage and event bus of the server: the only package that imports redis."""

from multiagents_server.store import redis_fixes
from multiagents_server.store.connect import REDIS_MODES, open_store
from multiagents_server.store.keys import Keys
from multiagents_server.store.lease import LeaseKeeper
from multiagents_server.store.records import (
    RETRY_AFTER_UNAVAILABLE_S,
    CommandEntry,
    Commit,
    Committed,
    Fenced,
    Message,
    OutputEntry,
    OutputEpoch,
    OutputRow,
    QueuedCommand,
    Refusal,
    Stored,
    StoreError,
    StoreSetupError,
    StoreUnavailable,
    WorkerOutcomes,
)
from multiagents_server.store.store import FLUSH_TIMER, SCHEDULE_TIMER, Store, observe_operations

redis_fixes.install()

__all__ = [
    "FLUSH_TIMER",
    "REDIS_MODES",
    "RETRY_AFTER_UNAVAILABLE_S",
    "SCHEDULE_TIMER",
    "CommandEntry",
    "Commit",
    "Committed",
    "Fenced",
    "Keys",
    "LeaseKeeper",
    "Message",
    "OutputEntry",
    "OutputEpoch",
    "OutputRow",
    "QueuedCommand",
    "Refusal",
    "Store",
    "StoreError",
    "StoreSetupError",
    "StoreUnavailable",
    "Stored",
    "WorkerOutcomes",
    "observe_operations",
    "open_store",
]
