import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from plasma.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Precision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRECISION_UNSPECIFIED: _ClassVar[Precision]
    PRECISION_INT8: _ClassVar[Precision]
    PRECISION_INT8_FLOAT_OUTPUT: _ClassVar[Precision]
    PRECISION_FP16: _ClassVar[Precision]
    PRECISION_FP32: _ClassVar[Precision]
    PRECISION_INT8_DYNAMIC: _ClassVar[Precision]

class Profile(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROFILE_UNSPECIFIED: _ClassVar[Profile]
    PROFILE_EDGE: _ClassVar[Profile]
    PROFILE_MOBILE: _ClassVar[Profile]
    PROFILE_SERVER: _ClassVar[Profile]

class GraphFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GRAPH_FORMAT_UNSPECIFIED: _ClassVar[GraphFormat]
    GRAPH_FORMAT_ONNX: _ClassVar[GraphFormat]
    GRAPH_FORMAT_ORT: _ClassVar[GraphFormat]
PRECISION_UNSPECIFIED: Precision
PRECISION_INT8: Precision
PRECISION_INT8_FLOAT_OUTPUT: Precision
PRECISION_FP16: Precision
PRECISION_FP32: Precision
PRECISION_INT8_DYNAMIC: Precision
PROFILE_UNSPECIFIED: Profile
PROFILE_EDGE: Profile
PROFILE_MOBILE: Profile
PROFILE_SERVER: Profile
GRAPH_FORMAT_UNSPECIFIED: GraphFormat
GRAPH_FORMAT_ONNX: GraphFormat
GRAPH_FORMAT_ORT: GraphFormat

class CompileRequest(_message.Message):
    __slots__ = ("run_id", "name", "min_agreement", "kind", "base_packet_id", "precision", "float_fallback", "profile", "size_budget_bytes", "compression_level")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIN_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    FLOAT_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    name: str
    min_agreement: float
    kind: _common_pb2.PacketKind
    base_packet_id: str
    precision: Precision
    float_fallback: bool
    profile: Profile
    size_budget_bytes: int
    compression_level: int
    def __init__(self, run_id: _Optional[str] = ..., name: _Optional[str] = ..., min_agreement: _Optional[float] = ..., kind: _Optional[_Union[_common_pb2.PacketKind, str]] = ..., base_packet_id: _Optional[str] = ..., precision: _Optional[_Union[Precision, str]] = ..., float_fallback: _Optional[bool] = ..., profile: _Optional[_Union[Profile, str]] = ..., size_budget_bytes: _Optional[int] = ..., compression_level: _Optional[int] = ...) -> None: ...

class PruningAttempt(_message.Message):
    __slots__ = ("sparsity", "passed", "reason", "agreement", "closed_loop_return", "model_bytes")
    SPARSITY_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    CLOSED_LOOP_RETURN_FIELD_NUMBER: _ClassVar[int]
    MODEL_BYTES_FIELD_NUMBER: _ClassVar[int]
    sparsity: float
    passed: bool
    reason: str
    agreement: float
    closed_loop_return: float
    model_bytes: int
    def __init__(self, sparsity: _Optional[float] = ..., passed: _Optional[bool] = ..., reason: _Optional[str] = ..., agreement: _Optional[float] = ..., closed_loop_return: _Optional[float] = ..., model_bytes: _Optional[int] = ...) -> None: ...

class CompressionReport(_message.Message):
    __slots__ = ("graph_format", "compression_level", "sparsity", "pruning_attempts", "model_bytes_before", "model_bytes_after", "deflated_model_bytes_before", "deflated_model_bytes_after", "required_operators")
    GRAPH_FORMAT_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    SPARSITY_FIELD_NUMBER: _ClassVar[int]
    PRUNING_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_BYTES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    MODEL_BYTES_AFTER_FIELD_NUMBER: _ClassVar[int]
    DEFLATED_MODEL_BYTES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    DEFLATED_MODEL_BYTES_AFTER_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_OPERATORS_FIELD_NUMBER: _ClassVar[int]
    graph_format: GraphFormat
    compression_level: int
    sparsity: float
    pruning_attempts: _containers.RepeatedCompositeFieldContainer[PruningAttempt]
    model_bytes_before: int
    model_bytes_after: int
    deflated_model_bytes_before: int
    deflated_model_bytes_after: int
    required_operators: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, graph_format: _Optional[_Union[GraphFormat, str]] = ..., compression_level: _Optional[int] = ..., sparsity: _Optional[float] = ..., pruning_attempts: _Optional[_Iterable[_Union[PruningAttempt, _Mapping]]] = ..., model_bytes_before: _Optional[int] = ..., model_bytes_after: _Optional[int] = ..., deflated_model_bytes_before: _Optional[int] = ..., deflated_model_bytes_after: _Optional[int] = ..., required_operators: _Optional[_Iterable[str]] = ...) -> None: ...

class PrecisionAttempt(_message.Message):
    __slots__ = ("precision", "passed", "reason", "agreement", "closed_loop_return", "model_bytes", "self_test_agreement")
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    CLOSED_LOOP_RETURN_FIELD_NUMBER: _ClassVar[int]
    MODEL_BYTES_FIELD_NUMBER: _ClassVar[int]
    SELF_TEST_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    precision: Precision
    passed: bool
    reason: str
    agreement: float
    closed_loop_return: float
    model_bytes: int
    self_test_agreement: float
    def __init__(self, precision: _Optional[_Union[Precision, str]] = ..., passed: _Optional[bool] = ..., reason: _Optional[str] = ..., agreement: _Optional[float] = ..., closed_loop_return: _Optional[float] = ..., model_bytes: _Optional[int] = ..., self_test_agreement: _Optional[float] = ...) -> None: ...

class ParityReport(_message.Message):
    __slots__ = ("num_observations", "agreement", "max_abs_diff", "near_ties", "fp32_closed_loop_return", "closed_loop_return", "closed_loop_paths")
    NUM_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_DIFF_FIELD_NUMBER: _ClassVar[int]
    NEAR_TIES_FIELD_NUMBER: _ClassVar[int]
    FP32_CLOSED_LOOP_RETURN_FIELD_NUMBER: _ClassVar[int]
    CLOSED_LOOP_RETURN_FIELD_NUMBER: _ClassVar[int]
    CLOSED_LOOP_PATHS_FIELD_NUMBER: _ClassVar[int]
    num_observations: int
    agreement: float
    max_abs_diff: float
    near_ties: int
    fp32_closed_loop_return: float
    closed_loop_return: float
    closed_loop_paths: int
    def __init__(self, num_observations: _Optional[int] = ..., agreement: _Optional[float] = ..., max_abs_diff: _Optional[float] = ..., near_ties: _Optional[int] = ..., fp32_closed_loop_return: _Optional[float] = ..., closed_loop_return: _Optional[float] = ..., closed_loop_paths: _Optional[int] = ...) -> None: ...

class Packet(_message.Message):
    __slots__ = ("packet_id", "name", "sha256", "size_bytes", "fp32_model_bytes", "int8_model_bytes", "parity", "run_id", "env_spec", "create_time", "version", "kind", "base_packet_id", "signing_key_id", "base_weights_sha256", "precision", "attempts", "model_bytes", "float_fallback", "profile", "compression")
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FP32_MODEL_BYTES_FIELD_NUMBER: _ClassVar[int]
    INT8_MODEL_BYTES_FIELD_NUMBER: _ClassVar[int]
    PARITY_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_SPEC_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FLOAT_FALLBACK_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    packet_id: str
    name: str
    sha256: str
    size_bytes: int
    fp32_model_bytes: int
    int8_model_bytes: int
    parity: ParityReport
    run_id: str
    env_spec: _common_pb2.EnvSpec
    create_time: _timestamp_pb2.Timestamp
    version: int
    kind: _common_pb2.PacketKind
    base_packet_id: str
    signing_key_id: str
    base_weights_sha256: str
    precision: Precision
    attempts: _containers.RepeatedCompositeFieldContainer[PrecisionAttempt]
    model_bytes: int
    float_fallback: bool
    profile: Profile
    compression: CompressionReport
    def __init__(self, packet_id: _Optional[str] = ..., name: _Optional[str] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ..., fp32_model_bytes: _Optional[int] = ..., int8_model_bytes: _Optional[int] = ..., parity: _Optional[_Union[ParityReport, _Mapping]] = ..., run_id: _Optional[str] = ..., env_spec: _Optional[_Union[_common_pb2.EnvSpec, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., kind: _Optional[_Union[_common_pb2.PacketKind, str]] = ..., base_packet_id: _Optional[str] = ..., signing_key_id: _Optional[str] = ..., base_weights_sha256: _Optional[str] = ..., precision: _Optional[_Union[Precision, str]] = ..., attempts: _Optional[_Iterable[_Union[PrecisionAttempt, _Mapping]]] = ..., model_bytes: _Optional[int] = ..., float_fallback: _Optional[bool] = ..., profile: _Optional[_Union[Profile, str]] = ..., compression: _Optional[_Union[CompressionReport, _Mapping]] = ...) -> None: ...

class CompileProgress(_message.Message):
    __slots__ = ("stage", "message")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    stage: str
    message: str
    def __init__(self, stage: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CompileResponse(_message.Message):
    __slots__ = ("progress", "packet")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PACKET_FIELD_NUMBER: _ClassVar[int]
    progress: CompileProgress
    packet: Packet
    def __init__(self, progress: _Optional[_Union[CompileProgress, _Mapping]] = ..., packet: _Optional[_Union[Packet, _Mapping]] = ...) -> None: ...

class GetPacketRequest(_message.Message):
    __slots__ = ("packet_id",)
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    packet_id: str
    def __init__(self, packet_id: _Optional[str] = ...) -> None: ...

class GetPacketResponse(_message.Message):
    __slots__ = ("packet",)
    PACKET_FIELD_NUMBER: _ClassVar[int]
    packet: Packet
    def __init__(self, packet: _Optional[_Union[Packet, _Mapping]] = ...) -> None: ...

class ListPacketsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListPacketsResponse(_message.Message):
    __slots__ = ("packets",)
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    packets: _containers.RepeatedCompositeFieldContainer[Packet]
    def __init__(self, packets: _Optional[_Iterable[_Union[Packet, _Mapping]]] = ...) -> None: ...

class DownloadPacketRequest(_message.Message):
    __slots__ = ("packet_id",)
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    packet_id: str
    def __init__(self, packet_id: _Optional[str] = ...) -> None: ...

class DownloadPacketResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.BlobHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.BlobHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class GetSigningKeyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSigningKeyResponse(_message.Message):
    __slots__ = ("algorithm", "key_id", "public_key", "generated")
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    GENERATED_FIELD_NUMBER: _ClassVar[int]
    algorithm: str
    key_id: str
    public_key: bytes
    generated: bool
    def __init__(self, algorithm: _Optional[str] = ..., key_id: _Optional[str] = ..., public_key: _Optional[bytes] = ..., generated: _Optional[bool] = ...) -> None: ...
