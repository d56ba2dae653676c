"""Redis storage and event bus of the server."""

from multiagents_server.store.keys import Keys
from multiagents_server.store.store import CommandEntry, Outbox, OutcomeRecord, Store, Stored

__all__ = ["CommandEntry", "Keys", "Outbox", "OutcomeRecord", "Store", "Stored"]
