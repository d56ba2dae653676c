"""Workflow definitions as data: `WorkflowBuilder` builds a `Workflow`, which
converts to the protobuf definition and to/from a JSON/YAML-friendly dict."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from google.protobuf import duration_pb2

from multiagents.v1 import workflow_pb2
from multiagents.worker import WorkerFunction


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry of failed attempts: `max_attempts` in all, exponential backoff."""

    max_attempts: int = 3
    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    maximum_interval: float | None = None
    non_retryable_error_types: tuple[str, ...] = ()

    def to_proto(self) -> workflow_pb2.RetryPolicy:
        policy = workflow_pb2.RetryPolicy(
            maximum_attempts=self.max_attempts,
            initial_interval=_duration(self.initial_interval),
            backoff_coefficient=self.backoff_coefficient,
            non_retryable_error_types=list(self.non_retryable_error_types),
        )
        if self.maximum_interval is not None:
            policy.maximum_interval.CopyFrom(_duration(self.maximum_interval))
        return policy

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RetryPolicy:
        """From the JSON/YAML form; ValueError names unknown keys."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a mapping of {', '.join(_RETRY_KEYS)}")
        unknown = set(d) - set(_RETRY_KEYS)
        if unknown:
            raise ValueError(
                f"unknown keys {sorted(unknown)} (expected some of {', '.join(_RETRY_KEYS)})"
            )
        d = dict(d)
        if "non_retryable_error_types" in d:
            d["non_retryable_error_types"] = tuple(d["non_retryable_error_types"])
        return cls(**d)


_RETRY_KEYS = tuple(f.name for f in fields(RetryPolicy))


@dataclass(frozen=True, slots=True)
class Step:
    """One step: the worker that runs it and what undoes it."""

    name: str
    worker: str
    compensation: str | None = None
    retry: RetryPolicy | None = None
    timeout: float | None = None
    heartbeat_timeout: float | None = None
    compensation_retry: RetryPolicy | None = None
    # A sub-workflow run instead of a worker (then `worker` is "").
    workflow: str | None = None
    workflow_version: int = 0

    def to_proto(self) -> workflow_pb2.StepDefinition:
        step = workflow_pb2.StepDefinition(
            name=self.name,
            worker=self.worker,
            compensation=self.compensation or "",
            workflow=self.workflow or "",
            workflow_version=self.workflow_version,
        )
        if self.retry is not None:
            step.retry_policy.CopyFrom(self.retry.to_proto())
        if self.compensation_retry is not None:
            step.compensation_retry_policy.CopyFrom(self.compensation_retry.to_proto())
        if self.timeout is not None:
            step.timeout.CopyFrom(_duration(self.timeout))
        if self.heartbeat_timeout is not None:
            step.heartbeat_timeout.CopyFrom(_duration(self.heartbeat_timeout))
        return step


@dataclass(frozen=True, slots=True)
class Workflow:
    """A built workflow definition: name, version, steps."""

    name: str
    steps: tuple[Step, ...]
    version: int = 1
    description: str = ""
    workers: tuple[WorkerFunction, ...] = field(default=(), compare=False, repr=False)

    def to_proto(self) -> workflow_pb2.WorkflowDefinition:
        return workflow_pb2.WorkflowDefinition(
            name=self.name,
            version=self.version,
            description=self.description,
            steps=[s.to_proto() for s in self.steps],
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Workflow:
        """From the JSON/YAML form: {name, version, steps: [{name, worker, ...}]}."""
        unknown = set(d) - {"name", "version", "description", "steps"}
        if unknown:
            raise ValueError(f"workflow: unknown keys {sorted(unknown)}")
        builder = WorkflowBuilder(d["name"], version=int(d.get("version", 1)))
        for i, s in enumerate(d.get("steps", [])):
            allowed = {"name", "worker", "compensation", "retry", "timeout",
                       "heartbeat_timeout", "compensation_retry", "workflow",
                       "workflow_version"}  # fmt: skip
            extra = set(s) - allowed
            if extra:
                raise ValueError(f"workflow.steps[{i}]: unknown keys {sorted(extra)}")
            if "workflow" in s:
                builder.add_workflow_step(
                    s["name"],
                    s["workflow"],
                    version=int(s.get("workflow_version", 0)),
                    compensation=s.get("compensation"),
                    retry=_retry(s, "retry", i),
                    timeout=s.get("timeout"),
                )
                continue
            builder.add_step(
                s["name"],
                s["worker"],
                compensation=s.get("compensation"),
                retry=_retry(s, "retry", i),
                timeout=s.get("timeout"),
                heartbeat_timeout=s.get("heartbeat_timeout"),
                compensation_retry=_retry(s, "compensation_retry", i),
            )
        built = builder.build()
        return Workflow(built.name, built.steps, built.version, d.get("description", ""))


class WorkflowBuilder:
    """Builds a workflow step by step:

        WorkflowBuilder("order").add_step("reserve", "reserve_inventory",
                                          compensation="release_inventory").build()

    Workers may be given by name or as `@worker` functions. Timeouts are seconds.
    """

    def __init__(self, name: str, *, version: int = 1, description: str = "") -> None:
        self.name = name
        self.version = version
        self.description = description
        self._steps: list[Step] = []
        self._workers: list[WorkerFunction] = []

    def add_step(
        self,
        name: str,
        worker: str | WorkerFunction,
        compensation: str | WorkerFunction | None = None,
        *,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        heartbeat_timeout: float | None = None,
        compensation_retry: RetryPolicy | None = None,
    ) -> WorkflowBuilder:
        """Append a step; returns the builder for chaining."""
        if any(s.name == name for s in self._steps):
            raise ValueError(f"duplicate step name {name!r}")
        self._steps.append(
            Step(
                name=name,
                worker=self._worker_name(worker),
                compensation=None if compensation is None else self._worker_name(compensation),
                retry=retry,
                timeout=timeout,
                heartbeat_timeout=heartbeat_timeout,
                compensation_retry=compensation_retry,
            )
        )
        return self

    def add_workflow_step(
        self,
        name: str,
        workflow: str | Workflow,
        *,
        version: int = 0,
        compensation: str | WorkerFunction | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> WorkflowBuilder:
        """Append a step that runs another workflow as a sub-workflow.

        The step receives the child's final context as its result; a child
        that does not complete fails the step (and its retry policy decides).
        Cancelling the parent cancels the child. `version=0` means the latest
        version when the step starts.
        """
        if any(s.name == name for s in self._steps):
            raise ValueError(f"duplicate step name {name!r}")
        if isinstance(workflow, Workflow):
            version = version or workflow.version
            workflow = workflow.name
        self._steps.append(
            Step(
                name=name,
                worker="",
                compensation=None if compensation is None else self._worker_name(compensation),
                retry=retry,
                timeout=timeout,
                workflow=workflow,
                workflow_version=version,
            )
        )
        return self

    def _worker_name(self, worker: str | WorkerFunction) -> str:
        if isinstance(worker, WorkerFunction):
            self._workers.append(worker)
            return worker.name
        return worker

    def build(self) -> Workflow:
        if not self._steps:
            raise ValueError(f"workflow {self.name!r} has no steps")
        return Workflow(
            self.name, tuple(self._steps), self.version, self.description, tuple(self._workers)
        )


def _retry(step: dict[str, Any], key: str, index: int) -> RetryPolicy | None:
    if key not in step:
        return None
    try:
        return RetryPolicy.from_dict(step[key])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"workflow.steps[{index}].{key}: {exc}") from None


def _duration(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromMilliseconds(round(seconds * 1000))
    return d
