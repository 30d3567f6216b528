"""What a run records as the source of its rewards and terminations, decided as the simulator decides it."""

from __future__ import annotations

import pytest

from plasma.sdk import tasks
from plasma.simulator.v1 import simulator_pb2, task_pb2
from plasma.trainer.v1 import trainer_pb2
from services.trainer import configs

TASK, LEARNED = simulator_pb2.REWARD_SOURCE_TASK, simulator_pb2.REWARD_SOURCE_LEARNED


@pytest.mark.parametrize(("env_id", "requested", "task", "used"), [
    ("CartPole-v1", simulator_pb2.REWARD_SOURCE_UNSPECIFIED, None, TASK),  # known: the environment's own
    ("Acrobot-v1", simulator_pb2.REWARD_SOURCE_UNSPECIFIED, None, LEARNED),  # unknown: the learned heads
    ("CartPole-v1", LEARNED, None, LEARNED),
    ("CartPole-v1", simulator_pb2.REWARD_SOURCE_UNSPECIFIED, tasks.parse_task("learned"), LEARNED),
    ("CartPole-v1", simulator_pb2.REWARD_SOURCE_UNSPECIFIED, tasks.parse_task("cartpole-x=1"), TASK),
    ("Acrobot-v1", TASK, None, simulator_pb2.REWARD_SOURCE_UNSPECIFIED),  # refused by the simulator
])
def test_the_reward_source_used(env_id: str, requested: int, task: task_pb2.TaskSpec | None, used: int) -> None:
    assert configs.reward_source_used(trainer_pb2.TrainConfig(reward_source=requested), task, env_id) == used
