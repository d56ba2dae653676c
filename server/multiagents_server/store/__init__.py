"""Redis storage and event bus of the server."""

from multiagents_server.store.keys import Keys
from multiagents_server.store.store import CommandEntry, Outbox, Store, Stored

__all__ = ["CommandEntry", "Keys", "Outbox", "Store", "Stored"]
