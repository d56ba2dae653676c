"""Seed-compatible import path of the SDK's exceptions."""

from multiagents.errors import (
    ApplicationError,
    MultiAgentsError,
    WorkerExecutionError,
    WorkflowFailedError,
)

__all__ = ["ApplicationError", "MultiAgentsError", "WorkerExecutionError", "WorkflowFailedError"]
