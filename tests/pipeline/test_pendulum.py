"""Pendulum-v1 (continuous, bounded torque) through all four services as processes, with the demo's default
recipe, the same as CartPole's: 200 random real steps, then 200 collected by the first policy and appended as the
dataset's version 2; the served packet squashes its actions into the bounds itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from plasma import channels
from plasma.sdk import recipes
from plasma.sdk.client import PlasmaClient
from plasma.sdk.evaluate import random_baseline
from plasma.sdk.local import LocalStack
from plasma.sdk.workflow import EVAL_SEED_OFFSET, train_and_deploy
from plasma.simulator.v1 import simulator_pb2

pytestmark = pytest.mark.pipeline

EPISODES = 5
MAX_TORQUE = 2.0


def test_pendulum_from_400_real_steps_swings_up_through_the_services(tmp_path: Path) -> None:
    cfg = recipes.workflow("default", env_id="Pendulum-v1", eval_episodes=EPISODES, seed=0)
    with LocalStack(tmp_path) as stack, PlasmaClient(stack.endpoints) as client:
        summary = train_and_deploy(client, cfg)
        # Far outside anything seen: the packet's own squashing must still keep the torque inside the bounds.
        extreme = [client.act(np.array(obs, dtype=np.float32)) for obs in ([1, 0, 50], [-1, 0, -50], [0, 1, 1e4])]
        versions = client.simulator.ListDatasets(simulator_pb2.ListDatasetsRequest(name="Pendulum-v1"),
                                                 timeout=channels.UNARY_DEADLINE_S).datasets

    random = random_baseline(cfg.env_id, EPISODES, cfg.seed + EVAL_SEED_OFFSET)
    assert summary.real_steps_used == 400
    assert [d.version for d in versions] == [1, 2]
    assert versions[1].parent_dataset_id == versions[0].dataset_id
    assert all(action.shape == (1,) and -MAX_TORQUE <= float(action[0]) <= MAX_TORQUE for action in extreme)
    assert summary.packet.parity.agreement >= 0.95 and summary.served.self_test.passed
    # Random torques score about -1,200; a swing-up that holds the pendulum upright scores above -250. The bound
    # leaves room for one episode whose swing-up takes longer.
    assert summary.evaluation.mean_return >= -600, (
        f"packet scored {summary.evaluation.mean_return:.1f}, random {random.mean_return:.1f}"
    )
    assert summary.evaluation.mean_return >= random.mean_return + 500
