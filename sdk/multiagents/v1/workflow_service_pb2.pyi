import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from multiagents.v1 import common_pb2 as _common_pb2
from multiagents.v1 import events_pb2 as _events_pb2
from multiagents.v1 import limits_pb2 as _limits_pb2
from multiagents.v1 import schedule_pb2 as _schedule_pb2
from multiagents.v1 import workflow_pb2 as _workflow_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterWorkflowRequest(_message.Message):
    __slots__ = ("definition",)
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    definition: _workflow_pb2.WorkflowDefinition
    def __init__(self, definition: _Optional[_Union[_workflow_pb2.WorkflowDefinition, _Mapping]] = ...) -> None: ...

class RegisterWorkflowResponse(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class GetWorkflowDefinitionRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetWorkflowDefinitionResponse(_message.Message):
    __slots__ = ("definition",)
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    definition: _workflow_pb2.WorkflowDefinition
    def __init__(self, definition: _Optional[_Union[_workflow_pb2.WorkflowDefinition, _Mapping]] = ...) -> None: ...

class ListWorkflowDefinitionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkflowDefinitionsResponse(_message.Message):
    __slots__ = ("definitions",)
    DEFINITIONS_FIELD_NUMBER: _ClassVar[int]
    definitions: _containers.RepeatedCompositeFieldContainer[_workflow_pb2.WorkflowDefinition]
    def __init__(self, definitions: _Optional[_Iterable[_Union[_workflow_pb2.WorkflowDefinition, _Mapping]]] = ...) -> None: ...

class ExecuteWorkflowRequest(_message.Message):
    __slots__ = ("workflow_name", "version", "input", "request_id", "correlation_id", "start_delay", "budget")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    START_DELAY_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    version: int
    input: _common_pb2.Payload
    request_id: str
    correlation_id: str
    start_delay: _duration_pb2.Duration
    budget: _common_pb2.Budget
    def __init__(self, workflow_name: _Optional[str] = ..., version: _Optional[int] = ..., input: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., request_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., start_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., budget: _Optional[_Union[_common_pb2.Budget, _Mapping]] = ...) -> None: ...

class ExecuteWorkflowResponse(_message.Message):
    __slots__ = ("transaction_id", "created")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    created: bool
    def __init__(self, transaction_id: _Optional[str] = ..., created: _Optional[bool] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("transaction_id",)
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    def __init__(self, transaction_id: _Optional[str] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _workflow_pb2.WorkflowStatus
    def __init__(self, status: _Optional[_Union[_workflow_pb2.WorkflowStatus, _Mapping]] = ...) -> None: ...

class WatchWorkflowRequest(_message.Message):
    __slots__ = ("transaction_id", "include_output", "output_from_offset", "include_events", "include_progress")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EVENTS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    include_output: bool
    output_from_offset: str
    include_events: bool
    include_progress: bool
    def __init__(self, transaction_id: _Optional[str] = ..., include_output: _Optional[bool] = ..., output_from_offset: _Optional[str] = ..., include_events: _Optional[bool] = ..., include_progress: _Optional[bool] = ...) -> None: ...

class WatchWorkflowResponse(_message.Message):
    __slots__ = ("event", "final_status", "output", "history_event", "progress")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    FINAL_STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_EVENT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.StatusEvent
    final_status: _workflow_pb2.WorkflowStatus
    output: StepOutput
    history_event: _events_pb2.WorkflowEvent
    progress: _workflow_pb2.StepProgress
    def __init__(self, event: _Optional[_Union[_events_pb2.StatusEvent, _Mapping]] = ..., final_status: _Optional[_Union[_workflow_pb2.WorkflowStatus, _Mapping]] = ..., output: _Optional[_Union[StepOutput, _Mapping]] = ..., history_event: _Optional[_Union[_events_pb2.WorkflowEvent, _Mapping]] = ..., progress: _Optional[_Union[_workflow_pb2.StepProgress, _Mapping]] = ...) -> None: ...

class CancelWorkflowRequest(_message.Message):
    __slots__ = ("transaction_id", "reason")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    reason: str
    def __init__(self, transaction_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelWorkflowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkflowsRequest(_message.Message):
    __slots__ = ("state", "workflow_name", "page_size", "page_token")
    STATE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    state: _common_pb2.WorkflowState
    workflow_name: str
    page_size: int
    page_token: str
    def __init__(self, state: _Optional[_Union[_common_pb2.WorkflowState, str]] = ..., workflow_name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWorkflowsResponse(_message.Message):
    __slots__ = ("workflows", "next_page_token")
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workflows: _containers.RepeatedCompositeFieldContainer[_workflow_pb2.WorkflowStatus]
    next_page_token: str
    def __init__(self, workflows: _Optional[_Iterable[_Union[_workflow_pb2.WorkflowStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("transaction_id", "after_sequence", "page_size")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    after_sequence: int
    page_size: int
    def __init__(self, transaction_id: _Optional[str] = ..., after_sequence: _Optional[int] = ..., page_size: _Optional[int] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("events", "more")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[_events_pb2.WorkflowEvent]
    more: bool
    def __init__(self, events: _Optional[_Iterable[_Union[_events_pb2.WorkflowEvent, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class SignalWorkflowRequest(_message.Message):
    __slots__ = ("transaction_id", "signal", "payload", "signal_id")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    signal: str
    payload: _common_pb2.Payload
    signal_id: str
    def __init__(self, transaction_id: _Optional[str] = ..., signal: _Optional[str] = ..., payload: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., signal_id: _Optional[str] = ...) -> None: ...

class SignalWorkflowResponse(_message.Message):
    __slots__ = ("duplicate",)
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    duplicate: bool
    def __init__(self, duplicate: _Optional[bool] = ...) -> None: ...

class ResumeWorkflowRequest(_message.Message):
    __slots__ = ("transaction_id",)
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    def __init__(self, transaction_id: _Optional[str] = ...) -> None: ...

class ResumeWorkflowResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWaitingSignalsRequest(_message.Message):
    __slots__ = ("signal", "workflow_name", "approvals_only", "page_size")
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    signal: str
    workflow_name: str
    approvals_only: bool
    page_size: int
    def __init__(self, signal: _Optional[str] = ..., workflow_name: _Optional[str] = ..., approvals_only: _Optional[bool] = ..., page_size: _Optional[int] = ...) -> None: ...

class ListWaitingSignalsResponse(_message.Message):
    __slots__ = ("waiting",)
    WAITING_FIELD_NUMBER: _ClassVar[int]
    waiting: _containers.RepeatedCompositeFieldContainer[_workflow_pb2.WaitingSignal]
    def __init__(self, waiting: _Optional[_Iterable[_Union[_workflow_pb2.WaitingSignal, _Mapping]]] = ...) -> None: ...

class StreamStepOutputRequest(_message.Message):
    __slots__ = ("transaction_id", "step", "from_offset")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    FROM_OFFSET_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    step: str
    from_offset: str
    def __init__(self, transaction_id: _Optional[str] = ..., step: _Optional[str] = ..., from_offset: _Optional[str] = ...) -> None: ...

class StreamStepOutputResponse(_message.Message):
    __slots__ = ("output",)
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    output: StepOutput
    def __init__(self, output: _Optional[_Union[StepOutput, _Mapping]] = ...) -> None: ...

class StepOutput(_message.Message):
    __slots__ = ("offset", "step", "attempt", "compensation", "time", "chunk", "rewind", "gap", "sequence")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    REWIND_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    offset: str
    step: str
    attempt: int
    compensation: bool
    time: _timestamp_pb2.Timestamp
    chunk: StepOutputChunk
    rewind: StepOutputRewind
    gap: StepOutputGap
    sequence: int
    def __init__(self, offset: _Optional[str] = ..., step: _Optional[str] = ..., attempt: _Optional[int] = ..., compensation: _Optional[bool] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., chunk: _Optional[_Union[StepOutputChunk, _Mapping]] = ..., rewind: _Optional[_Union[StepOutputRewind, _Mapping]] = ..., gap: _Optional[_Union[StepOutputGap, _Mapping]] = ..., sequence: _Optional[int] = ...) -> None: ...

class StepOutputChunk(_message.Message):
    __slots__ = ("kind", "text", "binary")
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    kind: _common_pb2.OutputKind
    text: str
    binary: bytes
    def __init__(self, kind: _Optional[_Union[_common_pb2.OutputKind, str]] = ..., text: _Optional[str] = ..., binary: _Optional[bytes] = ...) -> None: ...

class StepOutputRewind(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StepOutputGap(_message.Message):
    __slots__ = ("dropped",)
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    dropped: int
    def __init__(self, dropped: _Optional[int] = ...) -> None: ...

class CreateScheduleRequest(_message.Message):
    __slots__ = ("schedule",)
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    schedule: _schedule_pb2.ScheduleDefinition
    def __init__(self, schedule: _Optional[_Union[_schedule_pb2.ScheduleDefinition, _Mapping]] = ...) -> None: ...

class CreateScheduleResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _schedule_pb2.ScheduleStatus
    def __init__(self, status: _Optional[_Union[_schedule_pb2.ScheduleStatus, _Mapping]] = ...) -> None: ...

class GetScheduleRequest(_message.Message):
    __slots__ = ("schedule_id",)
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    def __init__(self, schedule_id: _Optional[str] = ...) -> None: ...

class GetScheduleResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _schedule_pb2.ScheduleStatus
    def __init__(self, status: _Optional[_Union[_schedule_pb2.ScheduleStatus, _Mapping]] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ("workflow_name", "page_size", "page_token")
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workflow_name: str
    page_size: int
    page_token: str
    def __init__(self, workflow_name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules", "next_page_token")
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[_schedule_pb2.ScheduleStatus]
    next_page_token: str
    def __init__(self, schedules: _Optional[_Iterable[_Union[_schedule_pb2.ScheduleStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class PauseScheduleRequest(_message.Message):
    __slots__ = ("schedule_id", "note")
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    note: str
    def __init__(self, schedule_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class PauseScheduleResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _schedule_pb2.ScheduleStatus
    def __init__(self, status: _Optional[_Union[_schedule_pb2.ScheduleStatus, _Mapping]] = ...) -> None: ...

class UnpauseScheduleRequest(_message.Message):
    __slots__ = ("schedule_id", "note")
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    note: str
    def __init__(self, schedule_id: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class UnpauseScheduleResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _schedule_pb2.ScheduleStatus
    def __init__(self, status: _Optional[_Union[_schedule_pb2.ScheduleStatus, _Mapping]] = ...) -> None: ...

class DeleteScheduleRequest(_message.Message):
    __slots__ = ("schedule_id",)
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    def __init__(self, schedule_id: _Optional[str] = ...) -> None: ...

class DeleteScheduleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
