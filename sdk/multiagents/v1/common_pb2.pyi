from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FailureKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILURE_KIND_UNSPECIFIED: _ClassVar[FailureKind]
    FAILURE_KIND_APPLICATION: _ClassVar[FailureKind]
    FAILURE_KIND_TIMEOUT: _ClassVar[FailureKind]
    FAILURE_KIND_HEARTBEAT_TIMEOUT: _ClassVar[FailureKind]
    FAILURE_KIND_WORKER_LOST: _ClassVar[FailureKind]
    FAILURE_KIND_CANCELLED: _ClassVar[FailureKind]
    FAILURE_KIND_INVALID_RESULT: _ClassVar[FailureKind]
    FAILURE_KIND_COMPENSATION_FAILED: _ClassVar[FailureKind]
    FAILURE_KIND_CHILD_WORKFLOW_FAILED: _ClassVar[FailureKind]
    FAILURE_KIND_BUDGET_EXCEEDED: _ClassVar[FailureKind]

class WorkflowState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKFLOW_STATE_UNSPECIFIED: _ClassVar[WorkflowState]
    WORKFLOW_STATE_PENDING: _ClassVar[WorkflowState]
    WORKFLOW_STATE_RUNNING: _ClassVar[WorkflowState]
    WORKFLOW_STATE_COMPLETED: _ClassVar[WorkflowState]
    WORKFLOW_STATE_FAILED: _ClassVar[WorkflowState]
    WORKFLOW_STATE_COMPENSATED: _ClassVar[WorkflowState]
    WORKFLOW_STATE_CANCELLED: _ClassVar[WorkflowState]
    WORKFLOW_STATE_COMPENSATING: _ClassVar[WorkflowState]

class OutputKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTPUT_KIND_UNSPECIFIED: _ClassVar[OutputKind]
    OUTPUT_KIND_TOKEN: _ClassVar[OutputKind]
    OUTPUT_KIND_JSON: _ClassVar[OutputKind]
    OUTPUT_KIND_LOG: _ClassVar[OutputKind]
FAILURE_KIND_UNSPECIFIED: FailureKind
FAILURE_KIND_APPLICATION: FailureKind
FAILURE_KIND_TIMEOUT: FailureKind
FAILURE_KIND_HEARTBEAT_TIMEOUT: FailureKind
FAILURE_KIND_WORKER_LOST: FailureKind
FAILURE_KIND_CANCELLED: FailureKind
FAILURE_KIND_INVALID_RESULT: FailureKind
FAILURE_KIND_COMPENSATION_FAILED: FailureKind
FAILURE_KIND_CHILD_WORKFLOW_FAILED: FailureKind
FAILURE_KIND_BUDGET_EXCEEDED: FailureKind
WORKFLOW_STATE_UNSPECIFIED: WorkflowState
WORKFLOW_STATE_PENDING: WorkflowState
WORKFLOW_STATE_RUNNING: WorkflowState
WORKFLOW_STATE_COMPLETED: WorkflowState
WORKFLOW_STATE_FAILED: WorkflowState
WORKFLOW_STATE_COMPENSATED: WorkflowState
WORKFLOW_STATE_CANCELLED: WorkflowState
WORKFLOW_STATE_COMPENSATING: WorkflowState
OUTPUT_KIND_UNSPECIFIED: OutputKind
OUTPUT_KIND_TOKEN: OutputKind
OUTPUT_KIND_JSON: OutputKind
OUTPUT_KIND_LOG: OutputKind

class Payload(_message.Message):
    __slots__ = ("metadata", "data")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bytes
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    metadata: _containers.ScalarMap[str, bytes]
    data: bytes
    def __init__(self, metadata: _Optional[_Mapping[str, bytes]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("message", "type", "non_retryable", "stack_trace", "details", "kind", "cause")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NON_RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    STACK_TRACE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    message: str
    type: str
    non_retryable: bool
    stack_trace: str
    details: Payload
    kind: FailureKind
    cause: Failure
    def __init__(self, message: _Optional[str] = ..., type: _Optional[str] = ..., non_retryable: _Optional[bool] = ..., stack_trace: _Optional[str] = ..., details: _Optional[_Union[Payload, _Mapping]] = ..., kind: _Optional[_Union[FailureKind, str]] = ..., cause: _Optional[_Union[Failure, _Mapping]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("max_tokens", "max_cost_nano_usd")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_NANO_USD_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    max_cost_nano_usd: int
    def __init__(self, max_tokens: _Optional[int] = ..., max_cost_nano_usd: _Optional[int] = ...) -> None: ...

class Usage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "model", "cost_nano_usd")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COST_NANO_USD_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    model: str
    cost_nano_usd: int
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., model: _Optional[str] = ..., cost_nano_usd: _Optional[int] = ...) -> None: ...
