import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from multiagents.v1 import common_pb2 as _common_pb2
from multiagents.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkerHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_HEALTH_UNSPECIFIED: _ClassVar[WorkerHealth]
    WORKER_HEALTH_HEALTHY: _ClassVar[WorkerHealth]
    WORKER_HEALTH_DEGRADED: _ClassVar[WorkerHealth]
    WORKER_HEALTH_OFFLINE: _ClassVar[WorkerHealth]
WORKER_HEALTH_UNSPECIFIED: WorkerHealth
WORKER_HEALTH_HEALTHY: WorkerHealth
WORKER_HEALTH_DEGRADED: WorkerHealth
WORKER_HEALTH_OFFLINE: WorkerHealth

class WorkerSession(_message.Message):
    __slots__ = ("session_id", "worker_id", "worker_names", "max_concurrency", "in_flight", "last_heartbeat", "sdk_language", "sdk_version", "replica_id", "draining", "connected_at")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    SDK_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    worker_id: str
    worker_names: _containers.RepeatedScalarFieldContainer[str]
    max_concurrency: int
    in_flight: int
    last_heartbeat: _timestamp_pb2.Timestamp
    sdk_language: str
    sdk_version: str
    replica_id: str
    draining: bool
    connected_at: _timestamp_pb2.Timestamp
    def __init__(self, session_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., worker_names: _Optional[_Iterable[str]] = ..., max_concurrency: _Optional[int] = ..., in_flight: _Optional[int] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sdk_language: _Optional[str] = ..., sdk_version: _Optional[str] = ..., replica_id: _Optional[str] = ..., draining: _Optional[bool] = ..., connected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[WorkerSession]
    def __init__(self, sessions: _Optional[_Iterable[_Union[WorkerSession, _Mapping]]] = ...) -> None: ...

class WorkerStats(_message.Message):
    __slots__ = ("worker_name", "succeeded", "failed", "success_rate", "p50", "p95", "p99", "health", "error_types", "sessions", "sdk_languages")
    class ErrorTypesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    P50_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    P99_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPES_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    SDK_LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    worker_name: str
    succeeded: int
    failed: int
    success_rate: float
    p50: _duration_pb2.Duration
    p95: _duration_pb2.Duration
    p99: _duration_pb2.Duration
    health: WorkerHealth
    error_types: _containers.ScalarMap[str, int]
    sessions: int
    sdk_languages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, worker_name: _Optional[str] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., success_rate: _Optional[float] = ..., p50: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., p95: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., p99: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., health: _Optional[_Union[WorkerHealth, str]] = ..., error_types: _Optional[_Mapping[str, int]] = ..., sessions: _Optional[int] = ..., sdk_languages: _Optional[_Iterable[str]] = ...) -> None: ...

class GetWorkerStatsRequest(_message.Message):
    __slots__ = ("worker_names",)
    WORKER_NAMES_FIELD_NUMBER: _ClassVar[int]
    worker_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, worker_names: _Optional[_Iterable[str]] = ...) -> None: ...

class GetWorkerStatsResponse(_message.Message):
    __slots__ = ("stats",)
    STATS_FIELD_NUMBER: _ClassVar[int]
    stats: _containers.RepeatedCompositeFieldContainer[WorkerStats]
    def __init__(self, stats: _Optional[_Iterable[_Union[WorkerStats, _Mapping]]] = ...) -> None: ...

class EventTrace(_message.Message):
    __slots__ = ("command_id", "transaction_id", "correlation_id", "worker_name", "step", "dispatched_at", "picked_up_at", "completed_at", "queue_latency", "processing_time", "success", "failure", "session_id")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    DISPATCHED_AT_FIELD_NUMBER: _ClassVar[int]
    PICKED_UP_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_LATENCY_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_TIME_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    transaction_id: str
    correlation_id: str
    worker_name: str
    step: str
    dispatched_at: _timestamp_pb2.Timestamp
    picked_up_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    queue_latency: _duration_pb2.Duration
    processing_time: _duration_pb2.Duration
    success: bool
    failure: _common_pb2.Failure
    session_id: str
    def __init__(self, command_id: _Optional[str] = ..., transaction_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., worker_name: _Optional[str] = ..., step: _Optional[str] = ..., dispatched_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., picked_up_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., queue_latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., processing_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., success: _Optional[bool] = ..., failure: _Optional[_Union[_common_pb2.Failure, _Mapping]] = ..., session_id: _Optional[str] = ...) -> None: ...

class GetEventTracesRequest(_message.Message):
    __slots__ = ("transaction_id", "correlation_id", "limit")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    correlation_id: str
    limit: int
    def __init__(self, transaction_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class GetEventTracesResponse(_message.Message):
    __slots__ = ("traces",)
    TRACES_FIELD_NUMBER: _ClassVar[int]
    traces: _containers.RepeatedCompositeFieldContainer[EventTrace]
    def __init__(self, traces: _Optional[_Iterable[_Union[EventTrace, _Mapping]]] = ...) -> None: ...

class StreamEventsRequest(_message.Message):
    __slots__ = ("transaction_id", "correlation_id")
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    transaction_id: str
    correlation_id: str
    def __init__(self, transaction_id: _Optional[str] = ..., correlation_id: _Optional[str] = ...) -> None: ...

class StreamEventsResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.WorkflowEvent
    def __init__(self, event: _Optional[_Union[_events_pb2.WorkflowEvent, _Mapping]] = ...) -> None: ...
