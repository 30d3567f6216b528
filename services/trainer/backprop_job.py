"""ALGORITHM_MODEL_BACKPROP in the trainer service: its config from a TrainConfig, the checks a request must
pass before a run exists, and the job that fetches the world model and trains."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from plasma.mbrl.algorithms import backprop
from plasma.mbrl.algorithms.distill import DistillConfig, DistillResult, PhantomSource, PolicyIO, TrainProgress
from plasma.mbrl.tasks import task_for
from plasma.server.errors import FailedPrecondition, InvalidArgument, bad_input
from plasma.trainer.v1 import trainer_pb2
from services.common import simulator_client

# Limits of the fields only this algorithm reads (the shared ones are checked with the distillation's).
LIMITS = {"backprop_horizon": 1_000, "backprop_steps": 1_000_000}


def config_of(message: trainer_pb2.TrainConfig, shared: DistillConfig, io: PolicyIO, env_id: str,
              adapts_base: bool, has_task: bool) -> backprop.BackpropConfig:
    """The run's BackpropConfig (zero fields take the defaults); raises before any run exists when the request
    asks for what this algorithm cannot do."""
    if io.action_kind != "box":
        raise FailedPrecondition(
            "ALGORITHM_MODEL_BACKPROP differentiates the return in the action, so it needs a box (continuous) action "
            "space; this world model's actions are discrete: use ALGORITHM_PLANNER_DISTILLATION"
        )
    if adapts_base or has_task:
        raise InvalidArgument("ALGORITHM_MODEL_BACKPROP trains its own base for the environment's objective; "
                              "base_run_id and task need ALGORITHM_PLANNER_DISTILLATION")
    reward_source = shared.reward_source or ("task" if task_for(env_id) is not None else "learned")
    if reward_source == "task" and task_for(env_id) is None:
        raise FailedPrecondition(f"reward_source TASK needs a reward Plasma knows, and {env_id or 'this environment'} "
                                 "has none; use REWARD_SOURCE_LEARNED")
    for name, limit in LIMITS.items():
        if not 0 <= getattr(message, name) <= limit:
            raise InvalidArgument(f"{name}={getattr(message, name)} must be in 0..{limit} (0 for the default)")
    given = {name: getattr(message, name) for name in LIMITS if getattr(message, name)}
    with bad_input():
        return backprop.BackpropConfig(
            seed=shared.seed, hidden_size=shared.hidden_size, paths_per_round=shared.paths_per_round,
            horizon=shared.horizon, lora_rank=shared.lora_rank, lora_alpha=shared.lora_alpha,
            learning_rate=shared.learning_rate, reward_source=reward_source, **given,
        )


def job(channel: grpc.Channel, model_id: str, env_id: str, source: PhantomSource, io: PolicyIO,
        cfg: backprop.BackpropConfig) -> Callable[[Callable[[TrainProgress], None]], DistillResult]:
    """The training job for a ProgressJob: the world model is fetched when the job starts."""

    def run(report: Callable[[TrainProgress], None]) -> DistillResult:
        model = simulator_client.fetch_model(channel, model_id)
        task = task_for(env_id) if cfg.reward_source == "task" else None
        return backprop.train(source, model, io, cfg, task, report)

    return run
