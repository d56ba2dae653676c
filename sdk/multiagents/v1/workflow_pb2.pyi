import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from multiagents.v1 import common_pb2 as _common_pb2
from multiagents.v1 import limits_pb2 as _limits_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ParallelFailurePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARALLEL_FAILURE_POLICY_UNSPECIFIED: _ClassVar[ParallelFailurePolicy]
    PARALLEL_FAILURE_POLICY_FAIL_FAST: _ClassVar[ParallelFailurePolicy]
    PARALLEL_FAILURE_POLICY_WAIT_ALL: _ClassVar[ParallelFailurePolicy]

class StepStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATUS_UNSPECIFIED: _ClassVar[StepStatus]
    STEP_STATUS_PENDING: _ClassVar[StepStatus]
    STEP_STATUS_RUNNING: _ClassVar[StepStatus]
    STEP_STATUS_COMPLETED: _ClassVar[StepStatus]
    STEP_STATUS_FAILED: _ClassVar[StepStatus]
    STEP_STATUS_COMPENSATED: _ClassVar[StepStatus]
    STEP_STATUS_COMPENSATION_FAILED: _ClassVar[StepStatus]
    STEP_STATUS_CANCELLED: _ClassVar[StepStatus]
    STEP_STATUS_SKIPPED: _ClassVar[StepStatus]
PARALLEL_FAILURE_POLICY_UNSPECIFIED: ParallelFailurePolicy
PARALLEL_FAILURE_POLICY_FAIL_FAST: ParallelFailurePolicy
PARALLEL_FAILURE_POLICY_WAIT_ALL: ParallelFailurePolicy
STEP_STATUS_UNSPECIFIED: StepStatus
STEP_STATUS_PENDING: StepStatus
STEP_STATUS_RUNNING: StepStatus
STEP_STATUS_COMPLETED: StepStatus
STEP_STATUS_FAILED: StepStatus
STEP_STATUS_COMPENSATED: StepStatus
STEP_STATUS_COMPENSATION_FAILED: StepStatus
STEP_STATUS_CANCELLED: StepStatus
STEP_STATUS_SKIPPED: StepStatus

class RetryPolicy(_message.Message):
    __slots__ = ("maximum_attempts", "initial_interval", "backoff_coefficient", "maximum_interval", "non_retryable_error_types")
    MAXIMUM_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_COEFFICIENT_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_ERROR_TYPES_FIELD_NUMBER: _ClassVar[int]
    maximum_attempts: int
    initial_interval: _duration_pb2.Duration
    backoff_coefficient: float
    maximum_interval: _duration_pb2.Duration
    non_retryable_error_types: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, maximum_attempts: _Optional[int] = ..., initial_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., backoff_coefficient: _Optional[float] = ..., maximum_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., non_retryable_error_types: _Optional[_Iterable[str]] = ...) -> None: ...

class StepDefinition(_message.Message):
    __slots__ = ("name", "worker", "compensation", "retry_policy", "timeout", "heartbeat_timeout", "compensation_retry_policy", "workflow", "workflow_version", "parallel", "map", "condition", "wait_for_signal", "sleep", "usage_estimate", "rate_limits")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    CONDITION_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_SIGNAL_FIELD_NUMBER: _ClassVar[int]
    SLEEP_FIELD_NUMBER: _ClassVar[int]
    USAGE_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    name: str
    worker: str
    compensation: str
    retry_policy: RetryPolicy
    timeout: _duration_pb2.Duration
    heartbeat_timeout: _duration_pb2.Duration
    compensation_retry_policy: RetryPolicy
    workflow: str
    workflow_version: int
    parallel: ParallelGroup
    map: MapStep
    condition: Condition
    wait_for_signal: WaitForSignal
    sleep: Sleep
    usage_estimate: _common_pb2.Usage
    rate_limits: _containers.RepeatedCompositeFieldContainer[_limits_pb2.RateLimitKey]
    def __init__(self, name: _Optional[str] = ..., worker: _Optional[str] = ..., compensation: _Optional[str] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., heartbeat_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., compensation_retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., workflow: _Optional[str] = ..., workflow_version: _Optional[int] = ..., parallel: _Optional[_Union[ParallelGroup, _Mapping]] = ..., map: _Optional[_Union[MapStep, _Mapping]] = ..., condition: _Optional[_Union[Condition, _Mapping]] = ..., wait_for_signal: _Optional[_Union[WaitForSignal, _Mapping]] = ..., sleep: _Optional[_Union[Sleep, _Mapping]] = ..., usage_estimate: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., rate_limits: _Optional[_Iterable[_Union[_limits_pb2.RateLimitKey, _Mapping]]] = ...) -> None: ...

class Branch(_message.Message):
    __slots__ = ("name", "steps")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    name: str
    steps: _containers.RepeatedCompositeFieldContainer[StepDefinition]
    def __init__(self, name: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[StepDefinition, _Mapping]]] = ...) -> None: ...

class ParallelGroup(_message.Message):
    __slots__ = ("branches", "failure_policy")
    BRANCHES_FIELD_NUMBER: _ClassVar[int]
    FAILURE_POLICY_FIELD_NUMBER: _ClassVar[int]
    branches: _containers.RepeatedCompositeFieldContainer[Branch]
    failure_policy: ParallelFailurePolicy
    def __init__(self, branches: _Optional[_Iterable[_Union[Branch, _Mapping]]] = ..., failure_policy: _Optional[_Union[ParallelFailurePolicy, str]] = ...) -> None: ...

class MapStep(_message.Message):
    __slots__ = ("items", "step", "max_concurrency")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    items: str
    step: StepDefinition
    max_concurrency: int
    def __init__(self, items: _Optional[str] = ..., step: _Optional[_Union[StepDefinition, _Mapping]] = ..., max_concurrency: _Optional[int] = ...) -> None: ...

class ConditionCase(_message.Message):
    __slots__ = ("when", "equals", "steps")
    WHEN_FIELD_NUMBER: _ClassVar[int]
    EQUALS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    when: str
    equals: _struct_pb2.Value
    steps: _containers.RepeatedCompositeFieldContainer[StepDefinition]
    def __init__(self, when: _Optional[str] = ..., equals: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., steps: _Optional[_Iterable[_Union[StepDefinition, _Mapping]]] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("cases", "otherwise", "switch")
    CASES_FIELD_NUMBER: _ClassVar[int]
    OTHERWISE_FIELD_NUMBER: _ClassVar[int]
    SWITCH_FIELD_NUMBER: _ClassVar[int]
    cases: _containers.RepeatedCompositeFieldContainer[ConditionCase]
    otherwise: _containers.RepeatedCompositeFieldContainer[StepDefinition]
    switch: str
    def __init__(self, cases: _Optional[_Iterable[_Union[ConditionCase, _Mapping]]] = ..., otherwise: _Optional[_Iterable[_Union[StepDefinition, _Mapping]]] = ..., switch: _Optional[str] = ...) -> None: ...

class WaitForSignal(_message.Message):
    __slots__ = ("signal", "timeout", "continue_on_timeout", "on_timeout", "approval")
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    CONTINUE_ON_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    ON_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    signal: str
    timeout: _duration_pb2.Duration
    continue_on_timeout: bool
    on_timeout: _containers.RepeatedCompositeFieldContainer[StepDefinition]
    approval: bool
    def __init__(self, signal: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., continue_on_timeout: _Optional[bool] = ..., on_timeout: _Optional[_Iterable[_Union[StepDefinition, _Mapping]]] = ..., approval: _Optional[bool] = ...) -> None: ...

class Sleep(_message.Message):
    __slots__ = ("duration",)
    DURATION_FIELD_NUMBER: _ClassVar[int]
    duration: _duration_pb2.Duration
    def __init__(self, duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class WorkflowDefinition(_message.Message):
    __slots__ = ("name", "version", "steps", "description", "budget")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    steps: _containers.RepeatedCompositeFieldContainer[StepDefinition]
    description: str
    budget: _common_pb2.Budget
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., steps: _Optional[_Iterable[_Union[StepDefinition, _Mapping]]] = ..., description: _Optional[str] = ..., budget: _Optional[_Union[_common_pb2.Budget, _Mapping]] = ...) -> None: ...

class StepInfo(_message.Message):
    __slots__ = ("name", "status", "attempts", "last_failure", "child_transaction_id", "path", "kind", "branch", "started_at", "finished_at", "usage", "progress")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    CHILD_TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BRANCH_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: StepStatus
    attempts: int
    last_failure: _common_pb2.Failure
    child_transaction_id: str
    path: str
    kind: str
    branch: str
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    usage: _common_pb2.Usage
    progress: StepProgress
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[StepStatus, str]] = ..., attempts: _Optional[int] = ..., last_failure: _Optional[_Union[_common_pb2.Failure, _Mapping]] = ..., child_transaction_id: _Optional[str] = ..., path: _Optional[str] = ..., kind: _Optional[str] = ..., branch: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., progress: _Optional[_Union[StepProgress, _Mapping]] = ...) -> None: ...

class StepProgress(_message.Message):
    __slots__ = ("details", "updated_at", "attempt", "command_id", "path")
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    details: _common_pb2.Payload
    updated_at: _timestamp_pb2.Timestamp
    attempt: int
    command_id: str
    path: str
    def __init__(self, details: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., command_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class WaitingSignal(_message.Message):
    __slots__ = ("transaction_id", "workflow_name", "path", "signal", "approval", "since", "timeout_at")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_AT_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    workflow_name: str
    path: str
    signal: str
    approval: bool
    since: _timestamp_pb2.Timestamp
    timeout_at: _timestamp_pb2.Timestamp
    def __init__(self, transaction_id: _Optional[str] = ..., workflow_name: _Optional[str] = ..., path: _Optional[str] = ..., signal: _Optional[str] = ..., approval: _Optional[bool] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timeout_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WorkflowStatus(_message.Message):
    __slots__ = ("transaction_id", "correlation_id", "workflow_name", "workflow_version", "state", "current_step", "step_results", "context", "failure", "requires_manual_intervention", "steps", "created_at", "updated_at", "completed_at", "revision", "parent_transaction_id", "running_steps", "waiting_signals", "start_at", "budget", "usage", "workflow_usage")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    STEP_RESULTS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_MANUAL_INTERVENTION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    PARENT_TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_STEPS_FIELD_NUMBER: _ClassVar[int]
    WAITING_SIGNALS_FIELD_NUMBER: _ClassVar[int]
    START_AT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_USAGE_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    correlation_id: str
    workflow_name: str
    workflow_version: int
    state: _common_pb2.WorkflowState
    current_step: str
    step_results: _common_pb2.Payload
    context: _common_pb2.Payload
    failure: _common_pb2.Failure
    requires_manual_intervention: bool
    steps: _containers.RepeatedCompositeFieldContainer[StepInfo]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    revision: int
    parent_transaction_id: str
    running_steps: _containers.RepeatedScalarFieldContainer[str]
    waiting_signals: _containers.RepeatedCompositeFieldContainer[WaitingSignal]
    start_at: _timestamp_pb2.Timestamp
    budget: _common_pb2.Budget
    usage: _common_pb2.Usage
    workflow_usage: _common_pb2.Usage
    def __init__(self, transaction_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., workflow_name: _Optional[str] = ..., workflow_version: _Optional[int] = ..., state: _Optional[_Union[_common_pb2.WorkflowState, str]] = ..., current_step: _Optional[str] = ..., step_results: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., context: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., failure: _Optional[_Union[_common_pb2.Failure, _Mapping]] = ..., requires_manual_intervention: _Optional[bool] = ..., steps: _Optional[_Iterable[_Union[StepInfo, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision: _Optional[int] = ..., parent_transaction_id: _Optional[str] = ..., running_steps: _Optional[_Iterable[str]] = ..., waiting_signals: _Optional[_Iterable[_Union[WaitingSignal, _Mapping]]] = ..., start_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., budget: _Optional[_Union[_common_pb2.Budget, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., workflow_usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...
