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

class ScheduleOverlapPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEDULE_OVERLAP_POLICY_UNSPECIFIED: _ClassVar[ScheduleOverlapPolicy]
    SCHEDULE_OVERLAP_POLICY_SKIP: _ClassVar[ScheduleOverlapPolicy]
    SCHEDULE_OVERLAP_POLICY_BUFFER_ONE: _ClassVar[ScheduleOverlapPolicy]
    SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER: _ClassVar[ScheduleOverlapPolicy]
    SCHEDULE_OVERLAP_POLICY_ALLOW_ALL: _ClassVar[ScheduleOverlapPolicy]

class ScheduleActionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SCHEDULE_ACTION_KIND_UNSPECIFIED: _ClassVar[ScheduleActionKind]
    SCHEDULE_ACTION_KIND_STARTED: _ClassVar[ScheduleActionKind]
    SCHEDULE_ACTION_KIND_SKIPPED: _ClassVar[ScheduleActionKind]
    SCHEDULE_ACTION_KIND_BUFFERED: _ClassVar[ScheduleActionKind]
    SCHEDULE_ACTION_KIND_MISSED: _ClassVar[ScheduleActionKind]
    SCHEDULE_ACTION_KIND_FAILED: _ClassVar[ScheduleActionKind]
SCHEDULE_OVERLAP_POLICY_UNSPECIFIED: ScheduleOverlapPolicy
SCHEDULE_OVERLAP_POLICY_SKIP: ScheduleOverlapPolicy
SCHEDULE_OVERLAP_POLICY_BUFFER_ONE: ScheduleOverlapPolicy
SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER: ScheduleOverlapPolicy
SCHEDULE_OVERLAP_POLICY_ALLOW_ALL: ScheduleOverlapPolicy
SCHEDULE_ACTION_KIND_UNSPECIFIED: ScheduleActionKind
SCHEDULE_ACTION_KIND_STARTED: ScheduleActionKind
SCHEDULE_ACTION_KIND_SKIPPED: ScheduleActionKind
SCHEDULE_ACTION_KIND_BUFFERED: ScheduleActionKind
SCHEDULE_ACTION_KIND_MISSED: ScheduleActionKind
SCHEDULE_ACTION_KIND_FAILED: ScheduleActionKind

class ScheduleDefinition(_message.Message):
    __slots__ = ("schedule_id", "cron", "time_zone", "workflow_name", "workflow_version", "input", "overlap_policy", "catchup_window", "paused", "note")
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_NAME_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_POLICY_FIELD_NUMBER: _ClassVar[int]
    CATCHUP_WINDOW_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    cron: str
    time_zone: str
    workflow_name: str
    workflow_version: int
    input: _common_pb2.Payload
    overlap_policy: ScheduleOverlapPolicy
    catchup_window: _duration_pb2.Duration
    paused: bool
    note: str
    def __init__(self, schedule_id: _Optional[str] = ..., cron: _Optional[str] = ..., time_zone: _Optional[str] = ..., workflow_name: _Optional[str] = ..., workflow_version: _Optional[int] = ..., input: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., overlap_policy: _Optional[_Union[ScheduleOverlapPolicy, str]] = ..., catchup_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., paused: _Optional[bool] = ..., note: _Optional[str] = ...) -> None: ...

class ScheduleAction(_message.Message):
    __slots__ = ("fire_time", "taken_at", "kind", "transaction_id", "message")
    FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    TAKEN_AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    fire_time: _timestamp_pb2.Timestamp
    taken_at: _timestamp_pb2.Timestamp
    kind: ScheduleActionKind
    transaction_id: str
    message: str
    def __init__(self, fire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., taken_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[ScheduleActionKind, str]] = ..., transaction_id: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ScheduleStatus(_message.Message):
    __slots__ = ("definition", "created_at", "updated_at", "next_fire_time", "buffered_fire_time", "runs_started", "runs_skipped", "last_transaction_id", "recent_actions")
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    BUFFERED_FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    RUNS_STARTED_FIELD_NUMBER: _ClassVar[int]
    RUNS_SKIPPED_FIELD_NUMBER: _ClassVar[int]
    LAST_TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    RECENT_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    definition: ScheduleDefinition
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    next_fire_time: _timestamp_pb2.Timestamp
    buffered_fire_time: _timestamp_pb2.Timestamp
    runs_started: int
    runs_skipped: int
    last_transaction_id: str
    recent_actions: _containers.RepeatedCompositeFieldContainer[ScheduleAction]
    def __init__(self, definition: _Optional[_Union[ScheduleDefinition, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_fire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., buffered_fire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., runs_started: _Optional[int] = ..., runs_skipped: _Optional[int] = ..., last_transaction_id: _Optional[str] = ..., recent_actions: _Optional[_Iterable[_Union[ScheduleAction, _Mapping]]] = ...) -> None: ...
