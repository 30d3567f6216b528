from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskSpec(_message.Message):
    __slots__ = ("name", "environment", "learned", "tracking")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    LEARNED_FIELD_NUMBER: _ClassVar[int]
    TRACKING_FIELD_NUMBER: _ClassVar[int]
    name: str
    environment: EnvironmentObjective
    learned: LearnedObjective
    tracking: TrackingObjective
    def __init__(self, name: _Optional[str] = ..., environment: _Optional[_Union[EnvironmentObjective, _Mapping]] = ..., learned: _Optional[_Union[LearnedObjective, _Mapping]] = ..., tracking: _Optional[_Union[TrackingObjective, _Mapping]] = ...) -> None: ...

class EnvironmentObjective(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LearnedObjective(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TrackingObjective(_message.Message):
    __slots__ = ("target_observation", "state_weights", "action_weights", "target_action", "alive_bonus", "terminate_below", "terminate_above")
    TARGET_OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    STATE_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    ACTION_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    TARGET_ACTION_FIELD_NUMBER: _ClassVar[int]
    ALIVE_BONUS_FIELD_NUMBER: _ClassVar[int]
    TERMINATE_BELOW_FIELD_NUMBER: _ClassVar[int]
    TERMINATE_ABOVE_FIELD_NUMBER: _ClassVar[int]
    target_observation: _containers.RepeatedScalarFieldContainer[float]
    state_weights: _containers.RepeatedScalarFieldContainer[float]
    action_weights: _containers.RepeatedScalarFieldContainer[float]
    target_action: _containers.RepeatedScalarFieldContainer[float]
    alive_bonus: float
    terminate_below: _containers.RepeatedScalarFieldContainer[float]
    terminate_above: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, target_observation: _Optional[_Iterable[float]] = ..., state_weights: _Optional[_Iterable[float]] = ..., action_weights: _Optional[_Iterable[float]] = ..., target_action: _Optional[_Iterable[float]] = ..., alive_bonus: _Optional[float] = ..., terminate_below: _Optional[_Iterable[float]] = ..., terminate_above: _Optional[_Iterable[float]] = ...) -> None: ...
