import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from multiagents.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

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
STEP_STATUS_UNSPECIFIED: StepStatus
STEP_STATUS_PENDING: StepStatus
STEP_STATUS_RUNNING: StepStatus
STEP_STATUS_COMPLETED: StepStatus
STEP_STATUS_FAILED: StepStatus
STEP_STATUS_COMPENSATED: StepStatus
STEP_STATUS_COMPENSATION_FAILED: StepStatus
STEP_STATUS_CANCELLED: StepStatus

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
    __slots__ = ("name", "worker", "compensation", "retry_policy", "timeout", "heartbeat_timeout", "compensation_retry_policy", "workflow", "workflow_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    worker: str
    compensation: str
    retry_policy: RetryPolicy
    timeout: _duration_pb2.Duration
    heartbeat_timeout: _duration_pb2.Duration
    compensation_retry_policy: RetryPolicy
    workflow: str
    workflow_version: int
    def __init__(self, name: _Optional[str] = ..., worker: _Optional[str] = ..., compensation: _Optional[str] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., heartbeat_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., compensation_retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., workflow: _Optional[str] = ..., workflow_version: _Optional[int] = ...) -> None: ...

class WorkflowDefinition(_message.Message):
    __slots__ = ("name", "version", "steps", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    steps: _containers.RepeatedCompositeFieldContainer[StepDefinition]
    description: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., steps: _Optional[_Iterable[_Union[StepDefinition, _Mapping]]] = ..., description: _Optional[str] = ...) -> None: ...

class StepInfo(_message.Message):
    __slots__ = ("name", "status", "attempts", "last_failure", "child_transaction_id", "progress")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    CHILD_TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: StepStatus
    attempts: int
    last_failure: _common_pb2.Failure
    child_transaction_id: str
    progress: StepProgress
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[StepStatus, str]] = ..., attempts: _Optional[int] = ..., last_failure: _Optional[_Union[_common_pb2.Failure, _Mapping]] = ..., child_transaction_id: _Optional[str] = ..., progress: _Optional[_Union[StepProgress, _Mapping]] = ...) -> None: ...

class StepProgress(_message.Message):
    __slots__ = ("details", "updated_at", "attempt", "command_id")
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    details: _common_pb2.Payload
    updated_at: _timestamp_pb2.Timestamp
    attempt: int
    command_id: str
    def __init__(self, details: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., command_id: _Optional[str] = ...) -> None: ...

class WorkflowStatus(_message.Message):
    __slots__ = ("transaction_id", "correlation_id", "workflow_name", "workflow_version", "state", "current_step", "step_results", "context", "failure", "requires_manual_intervention", "steps", "created_at", "updated_at", "completed_at", "revision", "parent_transaction_id")
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
    def __init__(self, transaction_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., workflow_name: _Optional[str] = ..., workflow_version: _Optional[int] = ..., state: _Optional[_Union[_common_pb2.WorkflowState, str]] = ..., current_step: _Optional[str] = ..., step_results: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., context: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., failure: _Optional[_Union[_common_pb2.Failure, _Mapping]] = ..., requires_manual_intervention: _Optional[bool] = ..., steps: _Optional[_Iterable[_Union[StepInfo, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision: _Optional[int] = ..., parent_transaction_id: _Optional[str] = ...) -> None: ...
