from plasma.common.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditVerdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIT_VERDICT_UNSPECIFIED: _ClassVar[AuditVerdict]
    AUDIT_VERDICT_PASS: _ClassVar[AuditVerdict]
    AUDIT_VERDICT_TRUNCATE: _ClassVar[AuditVerdict]
    AUDIT_VERDICT_REJECT: _ClassVar[AuditVerdict]

class AuditReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIT_REASON_UNSPECIFIED: _ClassVar[AuditReason]
    AUDIT_REASON_ENSEMBLE_DISAGREEMENT: _ClassVar[AuditReason]
    AUDIT_REASON_OUT_OF_SUPPORT: _ClassVar[AuditReason]
    AUDIT_REASON_IMPOSSIBLE_REWARD: _ClassVar[AuditReason]
    AUDIT_REASON_IMPOSSIBLE_JUMP: _ClassVar[AuditReason]
AUDIT_VERDICT_UNSPECIFIED: AuditVerdict
AUDIT_VERDICT_PASS: AuditVerdict
AUDIT_VERDICT_TRUNCATE: AuditVerdict
AUDIT_VERDICT_REJECT: AuditVerdict
AUDIT_REASON_UNSPECIFIED: AuditReason
AUDIT_REASON_ENSEMBLE_DISAGREEMENT: AuditReason
AUDIT_REASON_OUT_OF_SUPPORT: AuditReason
AUDIT_REASON_IMPOSSIBLE_REWARD: AuditReason
AUDIT_REASON_IMPOSSIBLE_JUMP: AuditReason

class AuditConfig(_message.Message):
    __slots__ = ("disabled", "disagreement_threshold", "penalty_coefficient", "support_margin", "min_valid_steps")
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENT_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PENALTY_COEFFICIENT_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_MARGIN_FIELD_NUMBER: _ClassVar[int]
    MIN_VALID_STEPS_FIELD_NUMBER: _ClassVar[int]
    disabled: bool
    disagreement_threshold: float
    penalty_coefficient: float
    support_margin: float
    min_valid_steps: int
    def __init__(self, disabled: _Optional[bool] = ..., disagreement_threshold: _Optional[float] = ..., penalty_coefficient: _Optional[float] = ..., support_margin: _Optional[float] = ..., min_valid_steps: _Optional[int] = ...) -> None: ...

class AuditFinding(_message.Message):
    __slots__ = ("reason", "step", "value", "threshold", "detail")
    REASON_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    reason: AuditReason
    step: int
    value: float
    threshold: float
    detail: str
    def __init__(self, reason: _Optional[_Union[AuditReason, str]] = ..., step: _Optional[int] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ..., detail: _Optional[str] = ...) -> None: ...

class PathAudit(_message.Message):
    __slots__ = ("verdict", "valid_steps", "findings", "penalized_rewards", "penalized_return")
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    VALID_STEPS_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    PENALIZED_REWARDS_FIELD_NUMBER: _ClassVar[int]
    PENALIZED_RETURN_FIELD_NUMBER: _ClassVar[int]
    verdict: AuditVerdict
    valid_steps: int
    findings: _containers.RepeatedCompositeFieldContainer[AuditFinding]
    penalized_rewards: _common_pb2.Tensor
    penalized_return: float
    def __init__(self, verdict: _Optional[_Union[AuditVerdict, str]] = ..., valid_steps: _Optional[int] = ..., findings: _Optional[_Iterable[_Union[AuditFinding, _Mapping]]] = ..., penalized_rewards: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., penalized_return: _Optional[float] = ...) -> None: ...
