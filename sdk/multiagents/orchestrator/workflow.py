"""Seed-compatible import path of `WorkflowBuilder`."""

from multiagents.workflow import RetryPolicy, Step, Workflow, WorkflowBuilder

__all__ = ["RetryPolicy", "Step", "Workflow", "WorkflowBuilder"]
