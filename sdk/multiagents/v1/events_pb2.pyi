import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from multiagents.v1 import common_pb2 as _common_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CommandEvent(_message.Message):
    __slots__ = ("worker_name", "transaction_id", "correlation_id", "context", "timestamp", "retry_count", "step", "command_id", "child_transaction_id", "path")
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    RETRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    CHILD_TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    worker_name: str
    transaction_id: str
    correlation_id: str
    context: _common_pb2.Payload
    timestamp: _timestamp_pb2.Timestamp
    retry_count: int
    step: str
    command_id: str
    child_transaction_id: str
    path: str
    def __init__(self, worker_name: _Optional[str] = ..., transaction_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., context: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retry_count: _Optional[int] = ..., step: _Optional[str] = ..., command_id: _Optional[str] = ..., child_transaction_id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class ResultEvent(_message.Message):
    __slots__ = ("worker_name", "transaction_id", "correlation_id", "result", "success", "timestamp", "step", "command_id", "compensation", "path")
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    worker_name: str
    transaction_id: str
    correlation_id: str
    result: _common_pb2.Payload
    success: bool
    timestamp: _timestamp_pb2.Timestamp
    step: str
    command_id: str
    compensation: bool
    path: str
    def __init__(self, worker_name: _Optional[str] = ..., transaction_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., result: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., success: _Optional[bool] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step: _Optional[str] = ..., command_id: _Optional[str] = ..., compensation: _Optional[bool] = ..., path: _Optional[str] = ...) -> None: ...

class ErrorEvent(_message.Message):
    __slots__ = ("worker_name", "transaction_id", "correlation_id", "error", "timestamp", "retry_count", "step", "command_id", "will_retry", "compensation", "path")
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    RETRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    WILL_RETRY_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    worker_name: str
    transaction_id: str
    correlation_id: str
    error: _common_pb2.Failure
    timestamp: _timestamp_pb2.Timestamp
    retry_count: int
    step: str
    command_id: str
    will_retry: bool
    compensation: bool
    path: str
    def __init__(self, worker_name: _Optional[str] = ..., transaction_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., error: _Optional[_Union[_common_pb2.Failure, _Mapping]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., retry_count: _Optional[int] = ..., step: _Optional[str] = ..., command_id: _Optional[str] = ..., will_retry: _Optional[bool] = ..., compensation: _Optional[bool] = ..., path: _Optional[str] = ...) -> None: ...

class CompensationEvent(_message.Message):
    __slots__ = ("worker_name", "transaction_id", "correlation_id", "context", "timestamp", "step", "command_id", "retry_count", "path")
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    RETRY_COUNT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    worker_name: str
    transaction_id: str
    correlation_id: str
    context: _common_pb2.Payload
    timestamp: _timestamp_pb2.Timestamp
    step: str
    command_id: str
    retry_count: int
    path: str
    def __init__(self, worker_name: _Optional[str] = ..., transaction_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., context: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step: _Optional[str] = ..., command_id: _Optional[str] = ..., retry_count: _Optional[int] = ..., path: _Optional[str] = ...) -> None: ...

class StatusEvent(_message.Message):
    __slots__ = ("transaction_id", "state", "current_step", "step_results", "timestamp", "correlation_id", "revision", "failure", "requires_manual_intervention", "cancel_reason")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    STEP_RESULTS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_MANUAL_INTERVENTION_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REASON_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    state: _common_pb2.WorkflowState
    current_step: str
    step_results: _common_pb2.Payload
    timestamp: _timestamp_pb2.Timestamp
    correlation_id: str
    revision: int
    failure: _common_pb2.Failure
    requires_manual_intervention: bool
    cancel_reason: str
    def __init__(self, transaction_id: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.WorkflowState, str]] = ..., current_step: _Optional[str] = ..., step_results: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., correlation_id: _Optional[str] = ..., revision: _Optional[int] = ..., failure: _Optional[_Union[_common_pb2.Failure, _Mapping]] = ..., requires_manual_intervention: _Optional[bool] = ..., cancel_reason: _Optional[str] = ...) -> None: ...

class NodeEvent(_message.Message):
    __slots__ = ("transaction_id", "path", "what", "details", "timestamp")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    WHAT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    path: str
    what: str
    details: _common_pb2.Payload
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, transaction_id: _Optional[str] = ..., path: _Optional[str] = ..., what: _Optional[str] = ..., details: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SignalEvent(_message.Message):
    __slots__ = ("transaction_id", "signal", "payload", "signal_id", "consumed_by", "timestamp")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_ID_FIELD_NUMBER: _ClassVar[int]
    CONSUMED_BY_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    signal: str
    payload: _common_pb2.Payload
    signal_id: str
    consumed_by: str
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, transaction_id: _Optional[str] = ..., signal: _Optional[str] = ..., payload: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., signal_id: _Optional[str] = ..., consumed_by: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WorkflowEvent(_message.Message):
    __slots__ = ("sequence", "command", "result", "error", "compensation", "status", "node", "signal")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    command: CommandEvent
    result: ResultEvent
    error: ErrorEvent
    compensation: CompensationEvent
    status: StatusEvent
    node: NodeEvent
    signal: SignalEvent
    def __init__(self, sequence: _Optional[int] = ..., command: _Optional[_Union[CommandEvent, _Mapping]] = ..., result: _Optional[_Union[ResultEvent, _Mapping]] = ..., error: _Optional[_Union[ErrorEvent, _Mapping]] = ..., compensation: _Optional[_Union[CompensationEvent, _Mapping]] = ..., status: _Optional[_Union[StatusEvent, _Mapping]] = ..., node: _Optional[_Union[NodeEvent, _Mapping]] = ..., signal: _Optional[_Union[SignalEvent, _Mapping]] = ...) -> None: ...
