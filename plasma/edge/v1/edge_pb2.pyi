import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from plasma.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LoadPacketRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.BlobHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.BlobHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class PacketInfo(_message.Message):
    __slots__ = ("packet_id", "name", "sha256", "size_bytes", "env_spec", "load_time", "version", "kind", "signing_key_id", "base_packet_id", "base_version", "self_test", "precision")
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ENV_SPEC_FIELD_NUMBER: _ClassVar[int]
    LOAD_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SELF_TEST_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    packet_id: str
    name: str
    sha256: str
    size_bytes: int
    env_spec: _common_pb2.EnvSpec
    load_time: _timestamp_pb2.Timestamp
    version: int
    kind: _common_pb2.PacketKind
    signing_key_id: str
    base_packet_id: str
    base_version: int
    self_test: SelfTestReport
    precision: str
    def __init__(self, packet_id: _Optional[str] = ..., name: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., env_spec: _Optional[_Union[_common_pb2.EnvSpec, _Mapping]] = ..., load_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., kind: _Optional[_Union[_common_pb2.PacketKind, str]] = ..., signing_key_id: _Optional[str] = ..., base_packet_id: _Optional[str] = ..., base_version: _Optional[int] = ..., self_test: _Optional[_Union[SelfTestReport, _Mapping]] = ..., precision: _Optional[str] = ...) -> None: ...

class SelfTestReport(_message.Message):
    __slots__ = ("ran", "passed", "agreement", "min_agreement", "observations", "near_ties", "max_abs_diff", "max_abs_diff_from_compiler", "serving_fallback", "cpu_features", "allowed_max_abs_diff")
    RAN_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    MIN_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    NEAR_TIES_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_DIFF_FROM_COMPILER_FIELD_NUMBER: _ClassVar[int]
    SERVING_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    CPU_FEATURES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    ran: bool
    passed: bool
    agreement: float
    min_agreement: float
    observations: int
    near_ties: int
    max_abs_diff: float
    max_abs_diff_from_compiler: float
    serving_fallback: bool
    cpu_features: _containers.RepeatedScalarFieldContainer[str]
    allowed_max_abs_diff: float
    def __init__(self, ran: _Optional[bool] = ..., passed: _Optional[bool] = ..., agreement: _Optional[float] = ..., min_agreement: _Optional[float] = ..., observations: _Optional[int] = ..., near_ties: _Optional[int] = ..., max_abs_diff: _Optional[float] = ..., max_abs_diff_from_compiler: _Optional[float] = ..., serving_fallback: _Optional[bool] = ..., cpu_features: _Optional[_Iterable[str]] = ..., allowed_max_abs_diff: _Optional[float] = ...) -> None: ...

class LoadPacketResponse(_message.Message):
    __slots__ = ("packet", "previous")
    PACKET_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    packet: PacketInfo
    previous: PacketInfo
    def __init__(self, packet: _Optional[_Union[PacketInfo, _Mapping]] = ..., previous: _Optional[_Union[PacketInfo, _Mapping]] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("packet_id",)
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    packet_id: str
    def __init__(self, packet_id: _Optional[str] = ...) -> None: ...

class RollbackResponse(_message.Message):
    __slots__ = ("packet", "rolled_back")
    PACKET_FIELD_NUMBER: _ClassVar[int]
    ROLLED_BACK_FIELD_NUMBER: _ClassVar[int]
    packet: PacketInfo
    rolled_back: PacketInfo
    def __init__(self, packet: _Optional[_Union[PacketInfo, _Mapping]] = ..., rolled_back: _Optional[_Union[PacketInfo, _Mapping]] = ...) -> None: ...

class ActRequest(_message.Message):
    __slots__ = ("observation",)
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    observation: _common_pb2.Tensor
    def __init__(self, observation: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class ActResponse(_message.Message):
    __slots__ = ("action", "packet_id", "packet_version")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    PACKET_VERSION_FIELD_NUMBER: _ClassVar[int]
    action: _common_pb2.Tensor
    packet_id: str
    packet_version: int
    def __init__(self, action: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., packet_id: _Optional[str] = ..., packet_version: _Optional[int] = ...) -> None: ...

class ControlRequest(_message.Message):
    __slots__ = ("sequence", "observation", "reward", "terminated", "truncated")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    observation: _common_pb2.Tensor
    reward: float
    terminated: bool
    truncated: bool
    def __init__(self, sequence: _Optional[int] = ..., observation: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., reward: _Optional[float] = ..., terminated: _Optional[bool] = ..., truncated: _Optional[bool] = ...) -> None: ...

class ControlResponse(_message.Message):
    __slots__ = ("sequence", "action", "packet_id", "packet_version")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    PACKET_VERSION_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    action: _common_pb2.Tensor
    packet_id: str
    packet_version: int
    def __init__(self, sequence: _Optional[int] = ..., action: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., packet_id: _Optional[str] = ..., packet_version: _Optional[int] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LatencySummary(_message.Message):
    __slots__ = ("p50_ms", "p99_ms", "count", "p90_ms")
    P50_MS_FIELD_NUMBER: _ClassVar[int]
    P99_MS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    P90_MS_FIELD_NUMBER: _ClassVar[int]
    p50_ms: float
    p99_ms: float
    count: int
    p90_ms: float
    def __init__(self, p50_ms: _Optional[float] = ..., p99_ms: _Optional[float] = ..., count: _Optional[int] = ..., p90_ms: _Optional[float] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("serving", "packet", "requests_served", "requests_failed", "inference_latency", "previous", "observations_served", "packets_loaded", "packets_refused", "trusted_key_ids", "start_time")
    SERVING_FIELD_NUMBER: _ClassVar[int]
    PACKET_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_SERVED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FAILED_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_LATENCY_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_SERVED_FIELD_NUMBER: _ClassVar[int]
    PACKETS_LOADED_FIELD_NUMBER: _ClassVar[int]
    PACKETS_REFUSED_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_KEY_IDS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    serving: bool
    packet: PacketInfo
    requests_served: int
    requests_failed: int
    inference_latency: LatencySummary
    previous: PacketInfo
    observations_served: int
    packets_loaded: int
    packets_refused: int
    trusted_key_ids: _containers.RepeatedScalarFieldContainer[str]
    start_time: _timestamp_pb2.Timestamp
    def __init__(self, serving: _Optional[bool] = ..., packet: _Optional[_Union[PacketInfo, _Mapping]] = ..., requests_served: _Optional[int] = ..., requests_failed: _Optional[int] = ..., inference_latency: _Optional[_Union[LatencySummary, _Mapping]] = ..., previous: _Optional[_Union[PacketInfo, _Mapping]] = ..., observations_served: _Optional[int] = ..., packets_loaded: _Optional[int] = ..., packets_refused: _Optional[int] = ..., trusted_key_ids: _Optional[_Iterable[str]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExportExperienceRequest(_message.Message):
    __slots__ = ("from_sequence",)
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    from_sequence: int
    def __init__(self, from_sequence: _Optional[int] = ...) -> None: ...

class ExportExperienceResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.BlobHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.BlobHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...
