"""The typed records and errors that cross the store's boundary."""

from __future__ import annotations

from dataclasses import dataclass, field


class StoreError(Exception):
    """Root of the store's errors."""


class StoreUnavailable(StoreError):
    """Redis cannot be reached now (down, restarting, failing over): retry later."""


# How long a background loop whose Redis call failed waits before it tries
# again (a call is already sent again once on a new connection: connect.py).
RETRY_AFTER_UNAVAILABLE_S = 0.5


class Fenced(StoreUnavailable):
    """This replica's epoch is no longer a member of the bucket: it lost its
    lease (it was paused or cut off for longer than the lease) and another
    replica has taken over its work. Nothing was written; the replica rejoins
    with a new epoch, after which a retry is judged on the stored state."""


class StoreSetupError(StoreError):
    """The Redis the server was pointed at cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class Stored:
    """One execution (or schedule) as stored: its JSON and revision."""

    state: bytes
    revision: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a command may not take its places in its rate limits now."""

    # The key that said no.
    key: str
    # backoff, concurrency, requests or tokens; `unavailable` when Redis
    # could not be asked.
    reason: str
    # The limit as declared: the key itself, or the prefix (`tenant:*`)
    # that governs it; empty when Redis could not be asked.
    limit: str


@dataclass(frozen=True, slots=True)
class CommandEntry:
    """A command taken from a worker's queue in one bucket."""

    bucket: int
    worker: str
    entry_id: bytes
    command: bytes


@dataclass(frozen=True, slots=True)
class QueuedCommand:
    """A command a transition enqueues; `claim` takes it for this replica at once."""

    worker: str
    command: bytes
    claim: bool = False


@dataclass(frozen=True, slots=True)
class OutputEpoch:
    """An attempt whose output a lane (its command id without the attempt
    number) accepts from now on, and the step path its output is recorded
    under; a rewind is recorded after attempt 1."""

    lane: str
    attempt: int
    step: str
    compensation: bool


@dataclass(frozen=True, slots=True)
class OutputRow:
    """A chunk of output to append."""

    lane: str
    attempt: int
    step: str
    compensation: bool
    kind: int
    data: bytes
    binary: bool = False


@dataclass(frozen=True, slots=True)
class OutputEntry:
    """An entry of an output stream: a chunk (`rewind` False) or a rewind.
    `number` counts the stream's entries from 1, with no holes."""

    offset: str
    number: int
    step: str
    attempt: int
    compensation: bool
    rewind: bool
    kind: int = 0
    data: bytes = b""
    binary: bool = False


@dataclass(frozen=True, slots=True)
class Commit:
    """Everything one transition writes, in one atomic call."""

    transaction_id: str
    expected_revision: int
    state: bytes
    history: tuple[bytes, ...] = ()
    # Work on other executions (sub-workflows, the parent) that follows the
    # commit; kept until carried out, with a flush timer as the safety net.
    followups: bytes | None = None
    flush_due_ms: int = 0
    # Expiry of a finished execution's keys; 0 keeps them as they are, -1
    # removes an expiry (a finished execution was resumed).
    ttl_ms: int = 0
    created_ms: int = 0
    notification: bytes = b""
    schedule: tuple[tuple[str, int], ...] = ()
    unschedule: tuple[str, ...] = ()
    commands: tuple[QueuedCommand, ...] = ()
    ack: CommandEntry | None = None
    # Commands to cancel: (command id, reason), published to every replica.
    cancels: tuple[tuple[str, str], ...] = ()
    trace: tuple[str, bytes] | None = None
    trace_ttl_ms: int = 0
    # The execution's waits for a signal, for the inbox: None unchanged,
    # b"" none any more, else their JSON.
    waits: bytes | None = None
    # Usage an accepted answer reported: added to the sums of workflow_name.
    workflow_name: str = ""
    usage: tuple[int, int, int] = (0, 0, 0)  # input tokens, output tokens, nano-USD
    # Attempts dispatched by the transition: their output is accepted from now on.
    output_epochs: tuple[OutputEpoch, ...] = ()


@dataclass(frozen=True, slots=True)
class Committed:
    """A commit's outcome: the new revision (None on a revision conflict) and
    the commands claimed for this replica."""

    revision: int | None
    claimed: tuple[CommandEntry, ...] = ()


@dataclass(slots=True)
class WorkerOutcomes:
    """Monitoring counters of one worker name, accumulated between flushes."""

    succeeded: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    durations_ms: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Message:
    """A live notification from the bus."""

    kind: str  # "events", "wake", "cancel", "definition", "output"
    data: bytes
