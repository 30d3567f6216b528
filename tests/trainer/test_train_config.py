"""TrainConfig -> the algorithms' configs: the fields added for Pendulum and model backpropagation."""

from __future__ import annotations

import pytest

from plasma.mbrl.algorithms.base import PolicyIO
from plasma.server.errors import InvalidArgument
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2
from services.trainer.configs import BACKPROP, distill_config, plan

PENDULUM_IO = PolicyIO(obs_dim=3, action_kind="box", action_dim=1, action_low=(-2.0,), action_high=(2.0,))


def test_start_states_default_to_episode_starts() -> None:
    assert distill_config(trainer_pb2.TrainConfig()).start_states == "episode_starts"
    config = trainer_pb2.TrainConfig(start_states=simulator_pb2.START_STATES_ANY)
    assert distill_config(config).start_states == "any"


def test_unknown_start_states_are_invalid() -> None:
    with pytest.raises(InvalidArgument, match="start_states"):
        distill_config(trainer_pb2.TrainConfig(start_states=7))  # type: ignore[arg-type]


def test_backprop_fields_reach_only_backprop() -> None:
    message = trainer_pb2.TrainConfig(algorithm=trainer_pb2.ALGORITHM_MODEL_BACKPROP, backprop_horizon=7,
                                      backprop_steps=11, hidden_size=32)
    run = plan(message, PENDULUM_IO, "Pendulum-v1", adapts_base=False, has_task=False)
    cfg = run.backprop
    assert run.algorithm == BACKPROP and cfg is not None
    assert (cfg.backprop_horizon, cfg.backprop_steps, cfg.hidden_size, cfg.reward_source) == (7, 11, 32, "task")
    defaults = plan(trainer_pb2.TrainConfig(algorithm=trainer_pb2.ALGORITHM_MODEL_BACKPROP), PENDULUM_IO,
                    "Pendulum-v1", adapts_base=False, has_task=False).backprop
    assert defaults is not None and (defaults.backprop_horizon, defaults.backprop_steps) == (15, 300)
