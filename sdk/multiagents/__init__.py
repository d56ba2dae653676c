"""MultiAgents: a gRPC polyglot worker platform running saga workflows.

The SDK: `@worker` declares workers, `WorkerRuntime` serves them to a server,
`Client` submits and follows workflows, `WorkflowBuilder` builds definitions.
"""

__version__ = "0.1.0"

from multiagents.client import Client, ScheduleAction, ScheduleInfo, StatusUpdate, WorkflowStatus
from multiagents.dspy import dspy_worker
from multiagents.errors import (
    AlreadyExistsError,
    ApplicationError,
    FailedPreconditionError,
    FailureKind,
    InvalidArgumentError,
    MultiAgentsError,
    NotFoundError,
    ResourceExhaustedError,
    RPCError,
    ServerNotInstalledError,
    ServerUnavailableError,
    UnauthenticatedError,
    WorkerExecutionError,
    WorkflowFailedError,
)
from multiagents.runtime import WorkerRuntime, WorkerStartError
from multiagents.worker import CommandInfo, WorkerFunction, current_command, heartbeat, worker
from multiagents.workflow import (
    Branch,
    Case,
    Condition,
    Map,
    Parallel,
    RetryPolicy,
    Sleep,
    Step,
    WaitForSignal,
    Workflow,
    WorkflowBuilder,
    branch,
    case,
    case_equals,
    step,
)

__all__ = [
    "AlreadyExistsError",
    "ApplicationError",
    "Branch",
    "Case",
    "Client",
    "CommandInfo",
    "Condition",
    "FailedPreconditionError",
    "FailureKind",
    "InvalidArgumentError",
    "Map",
    "MultiAgentsError",
    "NotFoundError",
    "Parallel",
    "RPCError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "ScheduleAction",
    "ScheduleInfo",
    "ServerNotInstalledError",
    "ServerUnavailableError",
    "Sleep",
    "StatusUpdate",
    "Step",
    "UnauthenticatedError",
    "WaitForSignal",
    "WorkerExecutionError",
    "WorkerFunction",
    "WorkerRuntime",
    "WorkerStartError",
    "Workflow",
    "WorkflowBuilder",
    "WorkflowFailedError",
    "WorkflowStatus",
    "__version__",
    "branch",
    "case",
    "case_equals",
    "current_command",
    "dspy_worker",
    "heartbeat",
    "step",
    "worker",
]
