import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from plasma.common.v1 import common_pb2 as _common_pb2
from plasma.simulator.v1 import simulator_pb2 as _simulator_pb2
from plasma.simulator.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Algorithm(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALGORITHM_UNSPECIFIED: _ClassVar[Algorithm]
    ALGORITHM_PLANNER_DISTILLATION: _ClassVar[Algorithm]
    ALGORITHM_MODEL_BACKPROP: _ClassVar[Algorithm]

class RunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATE_UNSPECIFIED: _ClassVar[RunState]
    RUN_STATE_RUNNING: _ClassVar[RunState]
    RUN_STATE_SUCCEEDED: _ClassVar[RunState]
    RUN_STATE_FAILED: _ClassVar[RunState]
    RUN_STATE_CANCELLED: _ClassVar[RunState]
ALGORITHM_UNSPECIFIED: Algorithm
ALGORITHM_PLANNER_DISTILLATION: Algorithm
ALGORITHM_MODEL_BACKPROP: Algorithm
RUN_STATE_UNSPECIFIED: RunState
RUN_STATE_RUNNING: RunState
RUN_STATE_SUCCEEDED: RunState
RUN_STATE_FAILED: RunState
RUN_STATE_CANCELLED: RunState

class TrainConfig(_message.Message):
    __slots__ = ("algorithm", "seed", "hidden_size", "base_paths", "adapter_rounds", "paths_per_round", "horizon", "lora_rank", "lora_alpha", "epochs", "learning_rate", "planner", "reward_source", "ignore_audit", "backprop_horizon", "backprop_steps", "start_states")
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    BASE_PATHS_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    PATHS_PER_ROUND_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    LORA_RANK_FIELD_NUMBER: _ClassVar[int]
    LORA_ALPHA_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    PLANNER_FIELD_NUMBER: _ClassVar[int]
    REWARD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    IGNORE_AUDIT_FIELD_NUMBER: _ClassVar[int]
    BACKPROP_HORIZON_FIELD_NUMBER: _ClassVar[int]
    BACKPROP_STEPS_FIELD_NUMBER: _ClassVar[int]
    START_STATES_FIELD_NUMBER: _ClassVar[int]
    algorithm: Algorithm
    seed: int
    hidden_size: int
    base_paths: int
    adapter_rounds: int
    paths_per_round: int
    horizon: int
    lora_rank: int
    lora_alpha: int
    epochs: int
    learning_rate: float
    planner: _simulator_pb2.PlannerConfig
    reward_source: _simulator_pb2.RewardSource
    ignore_audit: bool
    backprop_horizon: int
    backprop_steps: int
    start_states: _simulator_pb2.StartStates
    def __init__(self, algorithm: _Optional[_Union[Algorithm, str]] = ..., seed: _Optional[int] = ..., hidden_size: _Optional[int] = ..., base_paths: _Optional[int] = ..., adapter_rounds: _Optional[int] = ..., paths_per_round: _Optional[int] = ..., horizon: _Optional[int] = ..., lora_rank: _Optional[int] = ..., lora_alpha: _Optional[int] = ..., epochs: _Optional[int] = ..., learning_rate: _Optional[float] = ..., planner: _Optional[_Union[_simulator_pb2.PlannerConfig, _Mapping]] = ..., reward_source: _Optional[_Union[_simulator_pb2.RewardSource, str]] = ..., ignore_audit: _Optional[bool] = ..., backprop_horizon: _Optional[int] = ..., backprop_steps: _Optional[int] = ..., start_states: _Optional[_Union[_simulator_pb2.StartStates, str]] = ...) -> None: ...

class TrainRequest(_message.Message):
    __slots__ = ("model_id", "config", "task", "base_run_id")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    BASE_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    config: TrainConfig
    task: _task_pb2.TaskSpec
    base_run_id: str
    def __init__(self, model_id: _Optional[str] = ..., config: _Optional[_Union[TrainConfig, _Mapping]] = ..., task: _Optional[_Union[_task_pb2.TaskSpec, _Mapping]] = ..., base_run_id: _Optional[str] = ...) -> None: ...

class RunMetrics(_message.Message):
    __slots__ = ("imagined_return", "planner_agreement", "phantom_paths_used", "phantom_steps_used", "training_seconds", "base_parameters", "adapter_parameters", "whole_path_imagined_return", "audited_step_share")
    IMAGINED_RETURN_FIELD_NUMBER: _ClassVar[int]
    PLANNER_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    PHANTOM_PATHS_USED_FIELD_NUMBER: _ClassVar[int]
    PHANTOM_STEPS_USED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BASE_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    WHOLE_PATH_IMAGINED_RETURN_FIELD_NUMBER: _ClassVar[int]
    AUDITED_STEP_SHARE_FIELD_NUMBER: _ClassVar[int]
    imagined_return: float
    planner_agreement: float
    phantom_paths_used: int
    phantom_steps_used: int
    training_seconds: float
    base_parameters: int
    adapter_parameters: int
    whole_path_imagined_return: float
    audited_step_share: float
    def __init__(self, imagined_return: _Optional[float] = ..., planner_agreement: _Optional[float] = ..., phantom_paths_used: _Optional[int] = ..., phantom_steps_used: _Optional[int] = ..., training_seconds: _Optional[float] = ..., base_parameters: _Optional[int] = ..., adapter_parameters: _Optional[int] = ..., whole_path_imagined_return: _Optional[float] = ..., audited_step_share: _Optional[float] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "model_id", "state", "config", "env_spec", "metrics", "create_time", "error", "task", "base_run_id", "policy", "checkpoint", "history", "reward_source_used")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    ENV_SPEC_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    BASE_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    REWARD_SOURCE_USED_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    model_id: str
    state: RunState
    config: TrainConfig
    env_spec: _common_pb2.EnvSpec
    metrics: RunMetrics
    create_time: _timestamp_pb2.Timestamp
    error: str
    task: _task_pb2.TaskSpec
    base_run_id: str
    policy: _simulator_pb2.MlpPolicy
    checkpoint: TrainProgress
    history: _containers.RepeatedCompositeFieldContainer[TrainProgress]
    reward_source_used: _simulator_pb2.RewardSource
    def __init__(self, run_id: _Optional[str] = ..., model_id: _Optional[str] = ..., state: _Optional[_Union[RunState, str]] = ..., config: _Optional[_Union[TrainConfig, _Mapping]] = ..., env_spec: _Optional[_Union[_common_pb2.EnvSpec, _Mapping]] = ..., metrics: _Optional[_Union[RunMetrics, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., task: _Optional[_Union[_task_pb2.TaskSpec, _Mapping]] = ..., base_run_id: _Optional[str] = ..., policy: _Optional[_Union[_simulator_pb2.MlpPolicy, _Mapping]] = ..., checkpoint: _Optional[_Union[TrainProgress, _Mapping]] = ..., history: _Optional[_Iterable[_Union[TrainProgress, _Mapping]]] = ..., reward_source_used: _Optional[_Union[_simulator_pb2.RewardSource, str]] = ...) -> None: ...

class TrainProgress(_message.Message):
    __slots__ = ("phase", "round", "total_rounds", "loss", "imagined_return", "planner_agreement", "phantom_paths_used")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    IMAGINED_RETURN_FIELD_NUMBER: _ClassVar[int]
    PLANNER_AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    PHANTOM_PATHS_USED_FIELD_NUMBER: _ClassVar[int]
    phase: str
    round: int
    total_rounds: int
    loss: float
    imagined_return: float
    planner_agreement: float
    phantom_paths_used: int
    def __init__(self, phase: _Optional[str] = ..., round: _Optional[int] = ..., total_rounds: _Optional[int] = ..., loss: _Optional[float] = ..., imagined_return: _Optional[float] = ..., planner_agreement: _Optional[float] = ..., phantom_paths_used: _Optional[int] = ...) -> None: ...

class TrainResponse(_message.Message):
    __slots__ = ("progress", "run")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    progress: TrainProgress
    run: Run
    def __init__(self, progress: _Optional[_Union[TrainProgress, _Mapping]] = ..., run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class WatchRunResponse(_message.Message):
    __slots__ = ("progress", "run")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    progress: TrainProgress
    run: Run
    def __init__(self, progress: _Optional[_Union[TrainProgress, _Mapping]] = ..., run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ...) -> None: ...

class ExportPolicyRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class ExportPolicyResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.BlobHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.BlobHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...
