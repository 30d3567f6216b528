"""A TrainConfig message as the library's algorithm configs: which algorithm, with what settings, checked before
a run exists (INVALID_ARGUMENT / FAILED_PRECONDITION naming the field)."""

from __future__ import annotations

from dataclasses import dataclass

from plasma.mbrl import tasks
from plasma.mbrl.algorithms.backprop import BackpropConfig
from plasma.mbrl.algorithms.base import PolicyIO
from plasma.mbrl.algorithms.distill import DistillConfig
from plasma.server.errors import FailedPrecondition, InvalidArgument, bad_input
from plasma.simulator.v1 import simulator_pb2, task_pb2
from plasma.trainer.v1 import trainer_pb2
from services.common import wire

DISTILLATION = "planner_distillation"
BACKPROP = "model_backprop"
_ALGORITHMS = {
    trainer_pb2.ALGORITHM_UNSPECIFIED: DISTILLATION,
    trainer_pb2.ALGORITHM_PLANNER_DISTILLATION: DISTILLATION,
    trainer_pb2.ALGORITHM_MODEL_BACKPROP: BACKPROP,
}
# Upper bounds of the integer fields: beyond them one run would tie the service up for days.
_LIMITS = {
    "hidden_size": 1024, "base_paths": 10_000, "adapter_rounds": 100, "paths_per_round": 10_000,
    "horizon": 1_000, "lora_rank": 256, "lora_alpha": 4096, "epochs": 1_000,
}
# Fields only ALGORITHM_MODEL_BACKPROP reads.
_BACKPROP_LIMITS = {"backprop_horizon": 1_000, "backprop_steps": 1_000_000}


@dataclass(frozen=True)
class Plan:
    """What a run trains: the algorithm and its config (`distill` carries the fields both share)."""

    algorithm: str  # DISTILLATION or BACKPROP
    distill: DistillConfig
    backprop: BackpropConfig | None = None


def distill_config(message: trainer_pb2.TrainConfig) -> DistillConfig:
    """TrainConfig -> DistillConfig, zero fields taking the defaults."""
    if message.algorithm not in _ALGORITHMS:
        raise InvalidArgument(f"unknown algorithm {message.algorithm}; use ALGORITHM_PLANNER_DISTILLATION or "
                              "ALGORITHM_MODEL_BACKPROP")
    fields = wire.fields_within(message, _LIMITS, "train config")
    if fields.get("learning_rate", 0.0) < 0:
        raise InvalidArgument(f"learning_rate={fields['learning_rate']} must be positive (0 for the default)")
    for name in ("algorithm", *_BACKPROP_LIMITS):
        fields.pop(name, None)
    fields["reward_source"] = wire.reward_source_from_proto(message.reward_source)
    fields["start_states"] = wire.start_states_from_proto(message.start_states)
    if "planner" in fields:
        fields["planner"] = wire.planner_from_proto(message.planner)
    with bad_input():
        return DistillConfig(**fields)


def plan(message: trainer_pb2.TrainConfig, io: PolicyIO, env_id: str, adapts_base: bool, has_task: bool) -> Plan:
    """The run's plan; raises before any run exists when the request asks for what its algorithm cannot do."""
    shared = distill_config(message)
    if _ALGORITHMS[message.algorithm] == DISTILLATION:
        return Plan(DISTILLATION, shared)
    if io.action_kind != "box":
        raise FailedPrecondition(
            "ALGORITHM_MODEL_BACKPROP differentiates the return in the action, so it needs a box (continuous) action "
            "space; this world model's actions are discrete: use ALGORITHM_PLANNER_DISTILLATION"
        )
    if adapts_base or has_task:
        raise InvalidArgument("ALGORITHM_MODEL_BACKPROP trains its own base for the environment's objective; "
                              "base_run_id and task need ALGORITHM_PLANNER_DISTILLATION")
    try:
        reward_source = tasks.resolve_reward_source(shared.reward_source, tasks.task_for(env_id), env_id)
    except ValueError as exc:
        raise FailedPrecondition(str(exc)) from exc
    for name, limit in _BACKPROP_LIMITS.items():
        if not 0 <= getattr(message, name) <= limit:
            raise InvalidArgument(f"{name}={getattr(message, name)} must be in 0..{limit} (0 for the default)")
    given = {name: getattr(message, name) for name in _BACKPROP_LIMITS if getattr(message, name)}
    with bad_input():
        backprop = BackpropConfig(
            seed=shared.seed, hidden_size=shared.hidden_size, paths_per_round=shared.paths_per_round,
            horizon=shared.horizon, lora_rank=shared.lora_rank, lora_alpha=shared.lora_alpha,
            learning_rate=shared.learning_rate, reward_source=reward_source, **given,
        )
    return Plan(BACKPROP, shared, backprop)


def reward_source_used(message: trainer_pb2.TrainConfig, task: task_pb2.TaskSpec | None,
                       env_id: str) -> simulator_pb2.RewardSource:
    """What will score a run's phantom paths, as the simulator decides it (services.simulator.requests): the task's
    functions, or the learned heads for the learned objective, for a request without a reward source where Plasma
    knows no reward, and where the config asks for them. UNSPECIFIED for a request the simulator will refuse."""
    if task is not None:
        learned = task.WhichOneof("objective") == "learned"
        return simulator_pb2.REWARD_SOURCE_LEARNED if learned else simulator_pb2.REWARD_SOURCE_TASK
    requested = wire.reward_source_from_proto(message.reward_source)
    try:
        source = tasks.resolve_reward_source(requested, tasks.task_for(env_id), env_id)
    except ValueError:
        return simulator_pb2.REWARD_SOURCE_UNSPECIFIED
    return wire.reward_source_to_proto(source)
