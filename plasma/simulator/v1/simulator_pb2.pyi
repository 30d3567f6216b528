import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from plasma.common.v1 import common_pb2 as _common_pb2
from plasma.simulator.v1 import audit_pb2 as _audit_pb2
from plasma.simulator.v1 import task_pb2 as _task_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CollectionPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COLLECTION_POLICY_UNSPECIFIED: _ClassVar[CollectionPolicy]
    COLLECTION_POLICY_RANDOM: _ClassVar[CollectionPolicy]
    COLLECTION_POLICY_MLP: _ClassVar[CollectionPolicy]

class ModelWarningKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_WARNING_KIND_UNSPECIFIED: _ClassVar[ModelWarningKind]
    MODEL_WARNING_KIND_CONSTANT_REWARD: _ClassVar[ModelWarningKind]
    MODEL_WARNING_KIND_REWARD_FROM_ACTIONS_ONLY: _ClassVar[ModelWarningKind]
    MODEL_WARNING_KIND_NO_TERMINATIONS: _ClassVar[ModelWarningKind]
    MODEL_WARNING_KIND_HOLDOUT_GAP: _ClassVar[ModelWarningKind]

class Activation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTIVATION_UNSPECIFIED: _ClassVar[Activation]
    ACTIVATION_TANH: _ClassVar[Activation]
    ACTIVATION_RELU: _ClassVar[Activation]
    ACTIVATION_SILU: _ClassVar[Activation]

class StartStates(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    START_STATES_UNSPECIFIED: _ClassVar[StartStates]
    START_STATES_EPISODE_STARTS: _ClassVar[StartStates]
    START_STATES_ANY: _ClassVar[StartStates]

class RewardSource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REWARD_SOURCE_UNSPECIFIED: _ClassVar[RewardSource]
    REWARD_SOURCE_TASK: _ClassVar[RewardSource]
    REWARD_SOURCE_LEARNED: _ClassVar[RewardSource]

class SimulationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIMULATION_STATE_UNSPECIFIED: _ClassVar[SimulationState]
    SIMULATION_STATE_RUNNING: _ClassVar[SimulationState]
    SIMULATION_STATE_SUCCEEDED: _ClassVar[SimulationState]
    SIMULATION_STATE_FAILED: _ClassVar[SimulationState]
    SIMULATION_STATE_CANCELLED: _ClassVar[SimulationState]
COLLECTION_POLICY_UNSPECIFIED: CollectionPolicy
COLLECTION_POLICY_RANDOM: CollectionPolicy
COLLECTION_POLICY_MLP: CollectionPolicy
MODEL_WARNING_KIND_UNSPECIFIED: ModelWarningKind
MODEL_WARNING_KIND_CONSTANT_REWARD: ModelWarningKind
MODEL_WARNING_KIND_REWARD_FROM_ACTIONS_ONLY: ModelWarningKind
MODEL_WARNING_KIND_NO_TERMINATIONS: ModelWarningKind
MODEL_WARNING_KIND_HOLDOUT_GAP: ModelWarningKind
ACTIVATION_UNSPECIFIED: Activation
ACTIVATION_TANH: Activation
ACTIVATION_RELU: Activation
ACTIVATION_SILU: Activation
START_STATES_UNSPECIFIED: StartStates
START_STATES_EPISODE_STARTS: StartStates
START_STATES_ANY: StartStates
REWARD_SOURCE_UNSPECIFIED: RewardSource
REWARD_SOURCE_TASK: RewardSource
REWARD_SOURCE_LEARNED: RewardSource
SIMULATION_STATE_UNSPECIFIED: SimulationState
SIMULATION_STATE_RUNNING: SimulationState
SIMULATION_STATE_SUCCEEDED: SimulationState
SIMULATION_STATE_FAILED: SimulationState
SIMULATION_STATE_CANCELLED: SimulationState

class Dataset(_message.Message):
    __slots__ = ("dataset_id", "env_spec", "num_transitions", "num_episodes", "seed", "create_time", "mean_episode_return", "name", "version", "parent_dataset_id", "origin")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_SPEC_FIELD_NUMBER: _ClassVar[int]
    NUM_TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    NUM_EPISODES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    MEAN_EPISODE_RETURN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PARENT_DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    env_spec: _common_pb2.EnvSpec
    num_transitions: int
    num_episodes: int
    seed: int
    create_time: _timestamp_pb2.Timestamp
    mean_episode_return: float
    name: str
    version: int
    parent_dataset_id: str
    origin: str
    def __init__(self, dataset_id: _Optional[str] = ..., env_spec: _Optional[_Union[_common_pb2.EnvSpec, _Mapping]] = ..., num_transitions: _Optional[int] = ..., num_episodes: _Optional[int] = ..., seed: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., mean_episode_return: _Optional[float] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., parent_dataset_id: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...

class CollectTransitionsRequest(_message.Message):
    __slots__ = ("env_id", "num_steps", "seed", "collection_policy", "policy", "epsilon", "append_to_dataset_id", "name")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    NUM_STEPS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_POLICY_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    APPEND_TO_DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    num_steps: int
    seed: int
    collection_policy: CollectionPolicy
    policy: MlpPolicy
    epsilon: float
    append_to_dataset_id: str
    name: str
    def __init__(self, env_id: _Optional[str] = ..., num_steps: _Optional[int] = ..., seed: _Optional[int] = ..., collection_policy: _Optional[_Union[CollectionPolicy, str]] = ..., policy: _Optional[_Union[MlpPolicy, _Mapping]] = ..., epsilon: _Optional[float] = ..., append_to_dataset_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class CollectionProgress(_message.Message):
    __slots__ = ("steps_done", "steps_total", "episodes_done")
    STEPS_DONE_FIELD_NUMBER: _ClassVar[int]
    STEPS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    EPISODES_DONE_FIELD_NUMBER: _ClassVar[int]
    steps_done: int
    steps_total: int
    episodes_done: int
    def __init__(self, steps_done: _Optional[int] = ..., steps_total: _Optional[int] = ..., episodes_done: _Optional[int] = ...) -> None: ...

class CollectTransitionsResponse(_message.Message):
    __slots__ = ("progress", "dataset")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    progress: CollectionProgress
    dataset: Dataset
    def __init__(self, progress: _Optional[_Union[CollectionProgress, _Mapping]] = ..., dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("env_spec", "name", "append_to_dataset_id")
    ENV_SPEC_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    APPEND_TO_DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    env_spec: _common_pb2.EnvSpec
    name: str
    append_to_dataset_id: str
    def __init__(self, env_spec: _Optional[_Union[_common_pb2.EnvSpec, _Mapping]] = ..., name: _Optional[str] = ..., append_to_dataset_id: _Optional[str] = ...) -> None: ...

class TransitionBatch(_message.Message):
    __slots__ = ("observations", "actions", "rewards", "next_observations", "terminated", "truncated", "episode_ids")
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    EPISODE_IDS_FIELD_NUMBER: _ClassVar[int]
    observations: _common_pb2.Tensor
    actions: _common_pb2.Tensor
    rewards: _common_pb2.Tensor
    next_observations: _common_pb2.Tensor
    terminated: _common_pb2.Tensor
    truncated: _common_pb2.Tensor
    episode_ids: _common_pb2.Tensor
    def __init__(self, observations: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., actions: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., rewards: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., next_observations: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., terminated: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., truncated: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., episode_ids: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class UploadCommit(_message.Message):
    __slots__ = ("batches",)
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    batches: int
    def __init__(self, batches: _Optional[int] = ...) -> None: ...

class UploadTransitionsRequest(_message.Message):
    __slots__ = ("header", "batch", "commit")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    COMMIT_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    batch: TransitionBatch
    commit: UploadCommit
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., batch: _Optional[_Union[TransitionBatch, _Mapping]] = ..., commit: _Optional[_Union[UploadCommit, _Mapping]] = ...) -> None: ...

class BatchAck(_message.Message):
    __slots__ = ("batch_index", "transitions_stored")
    BATCH_INDEX_FIELD_NUMBER: _ClassVar[int]
    TRANSITIONS_STORED_FIELD_NUMBER: _ClassVar[int]
    batch_index: int
    transitions_stored: int
    def __init__(self, batch_index: _Optional[int] = ..., transitions_stored: _Optional[int] = ...) -> None: ...

class UploadTransitionsResponse(_message.Message):
    __slots__ = ("ack", "dataset")
    ACK_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ack: BatchAck
    dataset: Dataset
    def __init__(self, ack: _Optional[_Union[BatchAck, _Mapping]] = ..., dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("dataset_id",)
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    def __init__(self, dataset_id: _Optional[str] = ...) -> None: ...

class GetDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...

class WorldModelConfig(_message.Message):
    __slots__ = ("ensemble_size", "hidden_size", "num_layers", "train_steps", "learning_rate", "holdout_fraction", "batch_size", "seed")
    ENSEMBLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_LAYERS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ensemble_size: int
    hidden_size: int
    num_layers: int
    train_steps: int
    learning_rate: float
    holdout_fraction: float
    batch_size: int
    seed: int
    def __init__(self, ensemble_size: _Optional[int] = ..., hidden_size: _Optional[int] = ..., num_layers: _Optional[int] = ..., train_steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., holdout_fraction: _Optional[float] = ..., batch_size: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class WorldModelMetrics(_message.Message):
    __slots__ = ("holdout_obs_mse", "holdout_naive_obs_mse", "holdout_reward_mse", "holdout_termination_accuracy", "holdout_nll", "train_nll")
    HOLDOUT_OBS_MSE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_NAIVE_OBS_MSE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_REWARD_MSE_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_TERMINATION_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_NLL_FIELD_NUMBER: _ClassVar[int]
    TRAIN_NLL_FIELD_NUMBER: _ClassVar[int]
    holdout_obs_mse: float
    holdout_naive_obs_mse: float
    holdout_reward_mse: float
    holdout_termination_accuracy: float
    holdout_nll: float
    train_nll: float
    def __init__(self, holdout_obs_mse: _Optional[float] = ..., holdout_naive_obs_mse: _Optional[float] = ..., holdout_reward_mse: _Optional[float] = ..., holdout_termination_accuracy: _Optional[float] = ..., holdout_nll: _Optional[float] = ..., train_nll: _Optional[float] = ...) -> None: ...

class HorizonError(_message.Message):
    __slots__ = ("steps", "model_rmse", "naive_rmse", "model_rmse_per_dim", "naive_rmse_per_dim", "windows")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    MODEL_RMSE_FIELD_NUMBER: _ClassVar[int]
    NAIVE_RMSE_FIELD_NUMBER: _ClassVar[int]
    MODEL_RMSE_PER_DIM_FIELD_NUMBER: _ClassVar[int]
    NAIVE_RMSE_PER_DIM_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    steps: int
    model_rmse: float
    naive_rmse: float
    model_rmse_per_dim: _containers.RepeatedScalarFieldContainer[float]
    naive_rmse_per_dim: _containers.RepeatedScalarFieldContainer[float]
    windows: int
    def __init__(self, steps: _Optional[int] = ..., model_rmse: _Optional[float] = ..., naive_rmse: _Optional[float] = ..., model_rmse_per_dim: _Optional[_Iterable[float]] = ..., naive_rmse_per_dim: _Optional[_Iterable[float]] = ..., windows: _Optional[int] = ...) -> None: ...

class WorldModelQuality(_message.Message):
    __slots__ = ("horizons", "nll", "coverage_90", "coverage_90_per_dim", "holdout_transitions", "dataset_id")
    HORIZONS_FIELD_NUMBER: _ClassVar[int]
    NLL_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_90_FIELD_NUMBER: _ClassVar[int]
    COVERAGE_90_PER_DIM_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    horizons: _containers.RepeatedCompositeFieldContainer[HorizonError]
    nll: float
    coverage_90: float
    coverage_90_per_dim: _containers.RepeatedScalarFieldContainer[float]
    holdout_transitions: int
    dataset_id: str
    def __init__(self, horizons: _Optional[_Iterable[_Union[HorizonError, _Mapping]]] = ..., nll: _Optional[float] = ..., coverage_90: _Optional[float] = ..., coverage_90_per_dim: _Optional[_Iterable[float]] = ..., holdout_transitions: _Optional[int] = ..., dataset_id: _Optional[str] = ...) -> None: ...

class WorldModel(_message.Message):
    __slots__ = ("model_id", "dataset_id", "env_spec", "config", "metrics", "create_time", "fit_seconds", "quality", "parent_model_id", "warnings")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    ENV_SPEC_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FIT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    PARENT_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    dataset_id: str
    env_spec: _common_pb2.EnvSpec
    config: WorldModelConfig
    metrics: WorldModelMetrics
    create_time: _timestamp_pb2.Timestamp
    fit_seconds: float
    quality: WorldModelQuality
    parent_model_id: str
    warnings: _containers.RepeatedCompositeFieldContainer[ModelWarning]
    def __init__(self, model_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., env_spec: _Optional[_Union[_common_pb2.EnvSpec, _Mapping]] = ..., config: _Optional[_Union[WorldModelConfig, _Mapping]] = ..., metrics: _Optional[_Union[WorldModelMetrics, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fit_seconds: _Optional[float] = ..., quality: _Optional[_Union[WorldModelQuality, _Mapping]] = ..., parent_model_id: _Optional[str] = ..., warnings: _Optional[_Iterable[_Union[ModelWarning, _Mapping]]] = ...) -> None: ...

class ModelWarning(_message.Message):
    __slots__ = ("kind", "message")
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    kind: ModelWarningKind
    message: str
    def __init__(self, kind: _Optional[_Union[ModelWarningKind, str]] = ..., message: _Optional[str] = ...) -> None: ...

class FitWorldModelRequest(_message.Message):
    __slots__ = ("dataset_id", "config", "init_from_model_id")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    INIT_FROM_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    config: WorldModelConfig
    init_from_model_id: str
    def __init__(self, dataset_id: _Optional[str] = ..., config: _Optional[_Union[WorldModelConfig, _Mapping]] = ..., init_from_model_id: _Optional[str] = ...) -> None: ...

class QualityReport(_message.Message):
    __slots__ = ("stage", "quality")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    stage: str
    quality: WorldModelQuality
    def __init__(self, stage: _Optional[str] = ..., quality: _Optional[_Union[WorldModelQuality, _Mapping]] = ...) -> None: ...

class FitProgress(_message.Message):
    __slots__ = ("step", "total_steps", "train_nll", "holdout_nll", "holdout_obs_mse")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    TRAIN_NLL_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_NLL_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_OBS_MSE_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    train_nll: float
    holdout_nll: float
    holdout_obs_mse: float
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., train_nll: _Optional[float] = ..., holdout_nll: _Optional[float] = ..., holdout_obs_mse: _Optional[float] = ...) -> None: ...

class FitWorldModelResponse(_message.Message):
    __slots__ = ("progress", "model", "quality")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    progress: FitProgress
    model: WorldModel
    quality: QualityReport
    def __init__(self, progress: _Optional[_Union[FitProgress, _Mapping]] = ..., model: _Optional[_Union[WorldModel, _Mapping]] = ..., quality: _Optional[_Union[QualityReport, _Mapping]] = ...) -> None: ...

class GetWorldModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class GetWorldModelResponse(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: WorldModel
    def __init__(self, model: _Optional[_Union[WorldModel, _Mapping]] = ...) -> None: ...

class ListWorldModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorldModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[WorldModel]
    def __init__(self, models: _Optional[_Iterable[_Union[WorldModel, _Mapping]]] = ...) -> None: ...

class MlpPolicy(_message.Message):
    __slots__ = ("weights", "biases", "activation", "obs_mean", "obs_std")
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    BIASES_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    OBS_MEAN_FIELD_NUMBER: _ClassVar[int]
    OBS_STD_FIELD_NUMBER: _ClassVar[int]
    weights: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tensor]
    biases: _containers.RepeatedCompositeFieldContainer[_common_pb2.Tensor]
    activation: Activation
    obs_mean: _common_pb2.Tensor
    obs_std: _common_pb2.Tensor
    def __init__(self, weights: _Optional[_Iterable[_Union[_common_pb2.Tensor, _Mapping]]] = ..., biases: _Optional[_Iterable[_Union[_common_pb2.Tensor, _Mapping]]] = ..., activation: _Optional[_Union[Activation, str]] = ..., obs_mean: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., obs_std: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class PlannerConfig(_message.Message):
    __slots__ = ("horizon", "num_samples", "num_iterations", "num_elites", "discount")
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NUM_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    NUM_ELITES_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FIELD_NUMBER: _ClassVar[int]
    horizon: int
    num_samples: int
    num_iterations: int
    num_elites: int
    discount: float
    def __init__(self, horizon: _Optional[int] = ..., num_samples: _Optional[int] = ..., num_iterations: _Optional[int] = ..., num_elites: _Optional[int] = ..., discount: _Optional[float] = ...) -> None: ...

class RandomPolicy(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RolloutPolicy(_message.Message):
    __slots__ = ("random", "mlp", "planner")
    RANDOM_FIELD_NUMBER: _ClassVar[int]
    MLP_FIELD_NUMBER: _ClassVar[int]
    PLANNER_FIELD_NUMBER: _ClassVar[int]
    random: RandomPolicy
    mlp: MlpPolicy
    planner: PlannerConfig
    def __init__(self, random: _Optional[_Union[RandomPolicy, _Mapping]] = ..., mlp: _Optional[_Union[MlpPolicy, _Mapping]] = ..., planner: _Optional[_Union[PlannerConfig, _Mapping]] = ...) -> None: ...

class SimulateRequest(_message.Message):
    __slots__ = ("model_id", "policy", "num_paths", "horizon", "seed", "start_states", "label_with_planner", "reward_source", "audit", "task")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    NUM_PATHS_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    START_STATES_FIELD_NUMBER: _ClassVar[int]
    LABEL_WITH_PLANNER_FIELD_NUMBER: _ClassVar[int]
    REWARD_SOURCE_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    policy: RolloutPolicy
    num_paths: int
    horizon: int
    seed: int
    start_states: StartStates
    label_with_planner: PlannerConfig
    reward_source: RewardSource
    audit: _audit_pb2.AuditConfig
    task: _task_pb2.TaskSpec
    def __init__(self, model_id: _Optional[str] = ..., policy: _Optional[_Union[RolloutPolicy, _Mapping]] = ..., num_paths: _Optional[int] = ..., horizon: _Optional[int] = ..., seed: _Optional[int] = ..., start_states: _Optional[_Union[StartStates, str]] = ..., label_with_planner: _Optional[_Union[PlannerConfig, _Mapping]] = ..., reward_source: _Optional[_Union[RewardSource, str]] = ..., audit: _Optional[_Union[_audit_pb2.AuditConfig, _Mapping]] = ..., task: _Optional[_Union[_task_pb2.TaskSpec, _Mapping]] = ...) -> None: ...

class PhantomPath(_message.Message):
    __slots__ = ("index", "length", "observations", "actions", "rewards", "dones", "uncertainty", "expert_actions", "total_reward", "audit", "members")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    DONES_FIELD_NUMBER: _ClassVar[int]
    UNCERTAINTY_FIELD_NUMBER: _ClassVar[int]
    EXPERT_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_REWARD_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    index: int
    length: int
    observations: _common_pb2.Tensor
    actions: _common_pb2.Tensor
    rewards: _common_pb2.Tensor
    dones: _common_pb2.Tensor
    uncertainty: _common_pb2.Tensor
    expert_actions: _common_pb2.Tensor
    total_reward: float
    audit: _audit_pb2.PathAudit
    members: _common_pb2.Tensor
    def __init__(self, index: _Optional[int] = ..., length: _Optional[int] = ..., observations: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., actions: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., rewards: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., dones: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., uncertainty: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., expert_actions: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., total_reward: _Optional[float] = ..., audit: _Optional[_Union[_audit_pb2.PathAudit, _Mapping]] = ..., members: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ...) -> None: ...

class SimulateResponse(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: PhantomPath
    def __init__(self, path: _Optional[_Union[PhantomPath, _Mapping]] = ...) -> None: ...

class Simulation(_message.Message):
    __slots__ = ("simulation_id", "request", "state", "paths_logged", "create_time", "error")
    SIMULATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PATHS_LOGGED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    simulation_id: str
    request: SimulateRequest
    state: SimulationState
    paths_logged: int
    create_time: _timestamp_pb2.Timestamp
    error: str
    def __init__(self, simulation_id: _Optional[str] = ..., request: _Optional[_Union[SimulateRequest, _Mapping]] = ..., state: _Optional[_Union[SimulationState, str]] = ..., paths_logged: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ...) -> None: ...

class StartSimulationRequest(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: SimulateRequest
    def __init__(self, request: _Optional[_Union[SimulateRequest, _Mapping]] = ...) -> None: ...

class StartSimulationResponse(_message.Message):
    __slots__ = ("simulation",)
    SIMULATION_FIELD_NUMBER: _ClassVar[int]
    simulation: Simulation
    def __init__(self, simulation: _Optional[_Union[Simulation, _Mapping]] = ...) -> None: ...

class GetSimulationRequest(_message.Message):
    __slots__ = ("simulation_id",)
    SIMULATION_ID_FIELD_NUMBER: _ClassVar[int]
    simulation_id: str
    def __init__(self, simulation_id: _Optional[str] = ...) -> None: ...

class GetSimulationResponse(_message.Message):
    __slots__ = ("simulation",)
    SIMULATION_FIELD_NUMBER: _ClassVar[int]
    simulation: Simulation
    def __init__(self, simulation: _Optional[_Union[Simulation, _Mapping]] = ...) -> None: ...

class ListSimulationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSimulationsResponse(_message.Message):
    __slots__ = ("simulations",)
    SIMULATIONS_FIELD_NUMBER: _ClassVar[int]
    simulations: _containers.RepeatedCompositeFieldContainer[Simulation]
    def __init__(self, simulations: _Optional[_Iterable[_Union[Simulation, _Mapping]]] = ...) -> None: ...

class CancelSimulationRequest(_message.Message):
    __slots__ = ("simulation_id",)
    SIMULATION_ID_FIELD_NUMBER: _ClassVar[int]
    simulation_id: str
    def __init__(self, simulation_id: _Optional[str] = ...) -> None: ...

class CancelSimulationResponse(_message.Message):
    __slots__ = ("simulation",)
    SIMULATION_FIELD_NUMBER: _ClassVar[int]
    simulation: Simulation
    def __init__(self, simulation: _Optional[_Union[Simulation, _Mapping]] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("simulation_id", "from_sequence")
    SIMULATION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    simulation_id: str
    from_sequence: int
    def __init__(self, simulation_id: _Optional[str] = ..., from_sequence: _Optional[int] = ...) -> None: ...

class SubscribeResponse(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: PhantomPath
    def __init__(self, path: _Optional[_Union[PhantomPath, _Mapping]] = ...) -> None: ...

class ForecastErrorsRequest(_message.Message):
    __slots__ = ("model_id", "start_observation", "policy", "horizon", "num_samples", "seed", "task", "audit")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    START_OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    HORIZON_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    start_observation: _common_pb2.Tensor
    policy: RolloutPolicy
    horizon: int
    num_samples: int
    seed: int
    task: _task_pb2.TaskSpec
    audit: _audit_pb2.AuditConfig
    def __init__(self, model_id: _Optional[str] = ..., start_observation: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., policy: _Optional[_Union[RolloutPolicy, _Mapping]] = ..., horizon: _Optional[int] = ..., num_samples: _Optional[int] = ..., seed: _Optional[int] = ..., task: _Optional[_Union[_task_pb2.TaskSpec, _Mapping]] = ..., audit: _Optional[_Union[_audit_pb2.AuditConfig, _Mapping]] = ...) -> None: ...

class ForecastErrorsResponse(_message.Message):
    __slots__ = ("mean_observations", "lower_observations", "upper_observations", "failure_probability", "model_error_probability", "disagreement", "likely_failure_step", "likely_model_error_step", "samples")
    MEAN_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    LOWER_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    UPPER_OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_ERROR_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENT_FIELD_NUMBER: _ClassVar[int]
    LIKELY_FAILURE_STEP_FIELD_NUMBER: _ClassVar[int]
    LIKELY_MODEL_ERROR_STEP_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    mean_observations: _common_pb2.Tensor
    lower_observations: _common_pb2.Tensor
    upper_observations: _common_pb2.Tensor
    failure_probability: _common_pb2.Tensor
    model_error_probability: _common_pb2.Tensor
    disagreement: _common_pb2.Tensor
    likely_failure_step: int
    likely_model_error_step: int
    samples: _containers.RepeatedCompositeFieldContainer[PhantomPath]
    def __init__(self, mean_observations: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., lower_observations: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., upper_observations: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., failure_probability: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., model_error_probability: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., disagreement: _Optional[_Union[_common_pb2.Tensor, _Mapping]] = ..., likely_failure_step: _Optional[int] = ..., likely_model_error_step: _Optional[int] = ..., samples: _Optional[_Iterable[_Union[PhantomPath, _Mapping]]] = ...) -> None: ...

class ExportWorldModelRequest(_message.Message):
    __slots__ = ("model_id",)
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    def __init__(self, model_id: _Optional[str] = ...) -> None: ...

class ExportWorldModelResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.BlobHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.BlobHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ExportDatasetRequest(_message.Message):
    __slots__ = ("dataset_id",)
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    def __init__(self, dataset_id: _Optional[str] = ...) -> None: ...

class ExportDatasetResponse(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: _common_pb2.BlobHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[_common_pb2.BlobHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...
