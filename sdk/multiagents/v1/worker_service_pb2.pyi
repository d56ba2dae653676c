import datetime

from google.protobuf import duration_pb2 as _duration_pb2
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

class ProtocolVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROTOCOL_VERSION_UNSPECIFIED: _ClassVar[ProtocolVersion]
    PROTOCOL_VERSION_1: _ClassVar[ProtocolVersion]

class CommandKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMAND_KIND_UNSPECIFIED: _ClassVar[CommandKind]
    COMMAND_KIND_EXECUTE: _ClassVar[CommandKind]
    COMMAND_KIND_COMPENSATE: _ClassVar[CommandKind]
PROTOCOL_VERSION_UNSPECIFIED: ProtocolVersion
PROTOCOL_VERSION_1: ProtocolVersion
COMMAND_KIND_UNSPECIFIED: CommandKind
COMMAND_KIND_EXECUTE: CommandKind
COMMAND_KIND_COMPENSATE: CommandKind

class ConnectRequest(_message.Message):
    __slots__ = ("hello", "result", "failure", "heartbeat", "drain", "outcomes", "output_chunk")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_CHUNK_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    result: CommandResult
    failure: CommandFailure
    heartbeat: Heartbeat
    drain: Drain
    outcomes: CommandOutcomes
    output_chunk: OutputChunk
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., result: _Optional[_Union[CommandResult, _Mapping]] = ..., failure: _Optional[_Union[CommandFailure, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., outcomes: _Optional[_Union[CommandOutcomes, _Mapping]] = ..., output_chunk: _Optional[_Union[OutputChunk, _Mapping]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("welcome", "command", "cancel", "ping", "drain_request", "commands", "output_ack", "resumed")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    PING_FIELD_NUMBER: _ClassVar[int]
    DRAIN_REQUEST_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ACK_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    command: Command
    cancel: Cancel
    ping: Ping
    drain_request: DrainRequest
    commands: Commands
    output_ack: OutputAck
    resumed: Resumed
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., command: _Optional[_Union[Command, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., ping: _Optional[_Union[Ping, _Mapping]] = ..., drain_request: _Optional[_Union[DrainRequest, _Mapping]] = ..., commands: _Optional[_Union[Commands, _Mapping]] = ..., output_ack: _Optional[_Union[OutputAck, _Mapping]] = ..., resumed: _Optional[_Union[Resumed, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("worker_id", "worker_names", "max_concurrency", "sdk_language", "sdk_version", "protocol_version", "resume_token")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAMES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    SDK_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    worker_names: _containers.RepeatedScalarFieldContainer[str]
    max_concurrency: int
    sdk_language: str
    sdk_version: str
    protocol_version: ProtocolVersion
    resume_token: str
    def __init__(self, worker_id: _Optional[str] = ..., worker_names: _Optional[_Iterable[str]] = ..., max_concurrency: _Optional[int] = ..., sdk_language: _Optional[str] = ..., sdk_version: _Optional[str] = ..., protocol_version: _Optional[_Union[ProtocolVersion, str]] = ..., resume_token: _Optional[str] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("session_id", "heartbeat_interval", "protocol_version", "max_payload_bytes", "resume_token")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESUME_TOKEN_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    heartbeat_interval: _duration_pb2.Duration
    protocol_version: ProtocolVersion
    max_payload_bytes: int
    resume_token: str
    def __init__(self, session_id: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., protocol_version: _Optional[_Union[ProtocolVersion, str]] = ..., max_payload_bytes: _Optional[int] = ..., resume_token: _Optional[str] = ...) -> None: ...

class Resumed(_message.Message):
    __slots__ = ("command_ids",)
    COMMAND_IDS_FIELD_NUMBER: _ClassVar[int]
    command_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, command_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("command_id", "kind", "worker_name", "transaction_id", "correlation_id", "step", "context", "attempt", "deadline", "heartbeat_timeout", "metadata", "rate_limits")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WORKER_NAME_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    kind: CommandKind
    worker_name: str
    transaction_id: str
    correlation_id: str
    step: str
    context: _common_pb2.Payload
    attempt: int
    deadline: _timestamp_pb2.Timestamp
    heartbeat_timeout: _duration_pb2.Duration
    metadata: _containers.ScalarMap[str, str]
    rate_limits: _limits_pb2.RateLimitUse
    def __init__(self, command_id: _Optional[str] = ..., kind: _Optional[_Union[CommandKind, str]] = ..., worker_name: _Optional[str] = ..., transaction_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., step: _Optional[str] = ..., context: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., attempt: _Optional[int] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., rate_limits: _Optional[_Union[_limits_pb2.RateLimitUse, _Mapping]] = ...) -> None: ...

class Commands(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    def __init__(self, commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("command_id", "result", "usage")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    result: _common_pb2.Payload
    usage: _common_pb2.Usage
    def __init__(self, command_id: _Optional[str] = ..., result: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...

class CommandFailure(_message.Message):
    __slots__ = ("command_id", "failure", "usage")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    failure: _common_pb2.Failure
    usage: _common_pb2.Usage
    def __init__(self, command_id: _Optional[str] = ..., failure: _Optional[_Union[_common_pb2.Failure, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...

class CommandOutcome(_message.Message):
    __slots__ = ("result", "failure")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    result: CommandResult
    failure: CommandFailure
    def __init__(self, result: _Optional[_Union[CommandResult, _Mapping]] = ..., failure: _Optional[_Union[CommandFailure, _Mapping]] = ...) -> None: ...

class CommandOutcomes(_message.Message):
    __slots__ = ("outcomes",)
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    outcomes: _containers.RepeatedCompositeFieldContainer[CommandOutcome]
    def __init__(self, outcomes: _Optional[_Iterable[_Union[CommandOutcome, _Mapping]]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("command_ids", "details")
    COMMAND_IDS_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    command_ids: _containers.RepeatedScalarFieldContainer[str]
    details: _common_pb2.Payload
    def __init__(self, command_ids: _Optional[_Iterable[str]] = ..., details: _Optional[_Union[_common_pb2.Payload, _Mapping]] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("command_id", "reason")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    reason: str
    def __init__(self, command_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Ping(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class OutputChunk(_message.Message):
    __slots__ = ("command_id", "sequence", "kind", "text", "binary")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    BINARY_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    sequence: int
    kind: _common_pb2.OutputKind
    text: str
    binary: bytes
    def __init__(self, command_id: _Optional[str] = ..., sequence: _Optional[int] = ..., kind: _Optional[_Union[_common_pb2.OutputKind, str]] = ..., text: _Optional[str] = ..., binary: _Optional[bytes] = ...) -> None: ...

class OutputAck(_message.Message):
    __slots__ = ("command_id", "sequence", "offset", "refused")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    sequence: int
    offset: str
    refused: str
    def __init__(self, command_id: _Optional[str] = ..., sequence: _Optional[int] = ..., offset: _Optional[str] = ..., refused: _Optional[str] = ...) -> None: ...
