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

class RolloutState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLOUT_STATE_UNSPECIFIED: _ClassVar[RolloutState]
    ROLLOUT_STATE_CANARY: _ClassVar[RolloutState]
    ROLLOUT_STATE_PROMOTED: _ClassVar[RolloutState]
    ROLLOUT_STATE_ROLLED_BACK: _ClassVar[RolloutState]

class DecisionAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_ACTION_UNSPECIFIED: _ClassVar[DecisionAction]
    DECISION_ACTION_PUBLISHED: _ClassVar[DecisionAction]
    DECISION_ACTION_CANARY_STARTED: _ClassVar[DecisionAction]
    DECISION_ACTION_PROMOTED: _ClassVar[DecisionAction]
    DECISION_ACTION_ROLLED_BACK: _ClassVar[DecisionAction]
ROLLOUT_STATE_UNSPECIFIED: RolloutState
ROLLOUT_STATE_CANARY: RolloutState
ROLLOUT_STATE_PROMOTED: RolloutState
ROLLOUT_STATE_ROLLED_BACK: RolloutState
DECISION_ACTION_UNSPECIFIED: DecisionAction
DECISION_ACTION_PUBLISHED: DecisionAction
DECISION_ACTION_CANARY_STARTED: DecisionAction
DECISION_ACTION_PROMOTED: DecisionAction
DECISION_ACTION_ROLLED_BACK: DecisionAction

class PacketRef(_message.Message):
    __slots__ = ("packet_id", "name", "version", "sha256", "size_bytes")
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    packet_id: str
    name: str
    version: int
    sha256: str
    size_bytes: int
    def __init__(self, packet_id: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., sha256: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class Figures(_message.Message):
    __slots__ = ("requests", "failed_requests", "error_rate", "latency_p50_ms", "latency_p99_ms", "episodes", "mean_return")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_MS_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    MEAN_RETURN_FIELD_NUMBER: _ClassVar[int]
    requests: int
    failed_requests: int
    error_rate: float
    latency_p50_ms: float
    latency_p99_ms: float
    episodes: int
    mean_return: float
    def __init__(self, requests: _Optional[int] = ..., failed_requests: _Optional[int] = ..., error_rate: _Optional[float] = ..., latency_p50_ms: _Optional[float] = ..., latency_p99_ms: _Optional[float] = ..., episodes: _Optional[int] = ..., mean_return: _Optional[float] = ...) -> None: ...

class LatencyHistogram(_message.Message):
    __slots__ = ("upper_bounds_seconds", "counts")
    UPPER_BOUNDS_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    upper_bounds_seconds: _containers.RepeatedScalarFieldContainer[float]
    counts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, upper_bounds_seconds: _Optional[_Iterable[float]] = ..., counts: _Optional[_Iterable[int]] = ...) -> None: ...

class InstallError(_message.Message):
    __slots__ = ("packet_id", "reason", "message")
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    packet_id: str
    reason: str
    message: str
    def __init__(self, packet_id: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Edge(_message.Message):
    __slots__ = ("edge_id", "assigned_packet_id", "serving_packet_id", "last_seen_time", "install_error", "canary", "watching")
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    SERVING_PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_TIME_FIELD_NUMBER: _ClassVar[int]
    INSTALL_ERROR_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    WATCHING_FIELD_NUMBER: _ClassVar[int]
    edge_id: str
    assigned_packet_id: str
    serving_packet_id: str
    last_seen_time: _timestamp_pb2.Timestamp
    install_error: InstallError
    canary: bool
    watching: bool
    def __init__(self, edge_id: _Optional[str] = ..., assigned_packet_id: _Optional[str] = ..., serving_packet_id: _Optional[str] = ..., last_seen_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., install_error: _Optional[_Union[InstallError, _Mapping]] = ..., canary: _Optional[bool] = ..., watching: _Optional[bool] = ...) -> None: ...

class Channel(_message.Message):
    __slots__ = ("name", "stable", "releases", "active_rollout_id", "edges", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STABLE_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    stable: PacketRef
    releases: _containers.RepeatedCompositeFieldContainer[PacketRef]
    active_rollout_id: str
    edges: _containers.RepeatedCompositeFieldContainer[Edge]
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., stable: _Optional[_Union[PacketRef, _Mapping]] = ..., releases: _Optional[_Iterable[_Union[PacketRef, _Mapping]]] = ..., active_rollout_id: _Optional[str] = ..., edges: _Optional[_Iterable[_Union[Edge, _Mapping]]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("channel", "packet_id", "reason")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    channel: str
    packet_id: str
    reason: str
    def __init__(self, channel: _Optional[str] = ..., packet_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    def __init__(self, channel: _Optional[_Union[Channel, _Mapping]] = ...) -> None: ...

class GetChannelRequest(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: str
    def __init__(self, channel: _Optional[str] = ...) -> None: ...

class GetChannelResponse(_message.Message):
    __slots__ = ("channel",)
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    channel: Channel
    def __init__(self, channel: _Optional[_Union[Channel, _Mapping]] = ...) -> None: ...

class ListChannelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListChannelsResponse(_message.Message):
    __slots__ = ("channels",)
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[Channel]
    def __init__(self, channels: _Optional[_Iterable[_Union[Channel, _Mapping]]] = ...) -> None: ...

class WatchChannelRequest(_message.Message):
    __slots__ = ("channel", "edge_id")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    channel: str
    edge_id: str
    def __init__(self, channel: _Optional[str] = ..., edge_id: _Optional[str] = ...) -> None: ...

class WatchChannelResponse(_message.Message):
    __slots__ = ("packet", "rollout_id", "reason")
    PACKET_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    packet: PacketRef
    rollout_id: str
    reason: str
    def __init__(self, packet: _Optional[_Union[PacketRef, _Mapping]] = ..., rollout_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class FetchPacketRequest(_message.Message):
    __slots__ = ("packet_id",)
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    packet_id: str
    def __init__(self, packet_id: _Optional[str] = ...) -> None: ...

class FetchPacketResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.BlobHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.BlobHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ReportRequest(_message.Message):
    __slots__ = ("channel", "edge_id", "packet_id", "requests", "failed_requests", "latency", "episodes", "episode_return_sum", "serving_packet_id", "install_error")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    EDGE_ID_FIELD_NUMBER: _ClassVar[int]
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    FAILED_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    EPISODE_RETURN_SUM_FIELD_NUMBER: _ClassVar[int]
    SERVING_PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    INSTALL_ERROR_FIELD_NUMBER: _ClassVar[int]
    channel: str
    edge_id: str
    packet_id: str
    requests: int
    failed_requests: int
    latency: LatencyHistogram
    episodes: int
    episode_return_sum: float
    serving_packet_id: str
    install_error: InstallError
    def __init__(self, channel: _Optional[str] = ..., edge_id: _Optional[str] = ..., packet_id: _Optional[str] = ..., requests: _Optional[int] = ..., failed_requests: _Optional[int] = ..., latency: _Optional[_Union[LatencyHistogram, _Mapping]] = ..., episodes: _Optional[int] = ..., episode_return_sum: _Optional[float] = ..., serving_packet_id: _Optional[str] = ..., install_error: _Optional[_Union[InstallError, _Mapping]] = ...) -> None: ...

class ReportResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RolloutThresholds(_message.Message):
    __slots__ = ("max_error_rate_increase", "max_latency_p99_ratio", "latency_slack_ms", "max_return_drop", "min_requests", "min_episodes", "bake_seconds", "timeout_seconds", "silence_seconds")
    MAX_ERROR_RATE_INCREASE_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_P99_RATIO_FIELD_NUMBER: _ClassVar[int]
    LATENCY_SLACK_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_RETURN_DROP_FIELD_NUMBER: _ClassVar[int]
    MIN_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MIN_EPISODES_FIELD_NUMBER: _ClassVar[int]
    BAKE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SILENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    max_error_rate_increase: float
    max_latency_p99_ratio: float
    latency_slack_ms: float
    max_return_drop: float
    min_requests: int
    min_episodes: int
    bake_seconds: float
    timeout_seconds: float
    silence_seconds: float
    def __init__(self, max_error_rate_increase: _Optional[float] = ..., max_latency_p99_ratio: _Optional[float] = ..., latency_slack_ms: _Optional[float] = ..., max_return_drop: _Optional[float] = ..., min_requests: _Optional[int] = ..., min_episodes: _Optional[int] = ..., bake_seconds: _Optional[float] = ..., timeout_seconds: _Optional[float] = ..., silence_seconds: _Optional[float] = ...) -> None: ...

class StartRolloutRequest(_message.Message):
    __slots__ = ("channel", "packet_id", "canary_fraction", "canary_edges", "thresholds")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    CANARY_FRACTION_FIELD_NUMBER: _ClassVar[int]
    CANARY_EDGES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    channel: str
    packet_id: str
    canary_fraction: float
    canary_edges: int
    thresholds: RolloutThresholds
    def __init__(self, channel: _Optional[str] = ..., packet_id: _Optional[str] = ..., canary_fraction: _Optional[float] = ..., canary_edges: _Optional[int] = ..., thresholds: _Optional[_Union[RolloutThresholds, _Mapping]] = ...) -> None: ...

class StartRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class Rollout(_message.Message):
    __slots__ = ("rollout_id", "channel", "candidate", "baseline", "state", "canary_edge_ids", "thresholds", "candidate_figures", "baseline_figures", "start_time", "end_time", "reason")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CANARY_EDGE_IDS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIGURES_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIGURES_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    channel: str
    candidate: PacketRef
    baseline: PacketRef
    state: RolloutState
    canary_edge_ids: _containers.RepeatedScalarFieldContainer[str]
    thresholds: RolloutThresholds
    candidate_figures: Figures
    baseline_figures: Figures
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, rollout_id: _Optional[str] = ..., channel: _Optional[str] = ..., candidate: _Optional[_Union[PacketRef, _Mapping]] = ..., baseline: _Optional[_Union[PacketRef, _Mapping]] = ..., state: _Optional[_Union[RolloutState, str]] = ..., canary_edge_ids: _Optional[_Iterable[str]] = ..., thresholds: _Optional[_Union[RolloutThresholds, _Mapping]] = ..., candidate_figures: _Optional[_Union[Figures, _Mapping]] = ..., baseline_figures: _Optional[_Union[Figures, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class GetRolloutRequest(_message.Message):
    __slots__ = ("rollout_id",)
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    def __init__(self, rollout_id: _Optional[str] = ...) -> None: ...

class GetRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class AbortRolloutRequest(_message.Message):
    __slots__ = ("rollout_id", "reason")
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    rollout_id: str
    reason: str
    def __init__(self, rollout_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AbortRolloutResponse(_message.Message):
    __slots__ = ("rollout",)
    ROLLOUT_FIELD_NUMBER: _ClassVar[int]
    rollout: Rollout
    def __init__(self, rollout: _Optional[_Union[Rollout, _Mapping]] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("sequence", "time", "channel", "rollout_id", "action", "packet_id", "reason")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    channel: str
    rollout_id: str
    action: DecisionAction
    packet_id: str
    reason: str
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., channel: _Optional[str] = ..., rollout_id: _Optional[str] = ..., action: _Optional[_Union[DecisionAction, str]] = ..., packet_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListDecisionsRequest(_message.Message):
    __slots__ = ("channel", "rollout_id")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ROLLOUT_ID_FIELD_NUMBER: _ClassVar[int]
    channel: str
    rollout_id: str
    def __init__(self, channel: _Optional[str] = ..., rollout_id: _Optional[str] = ...) -> None: ...

class ListDecisionsResponse(_message.Message):
    __slots__ = ("decisions",)
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    def __init__(self, decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ...) -> None: ...
