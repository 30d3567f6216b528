"""All four services as separate processes, driven through the SDK exactly like `plasma demo`, with the demo's
own default recipe: the packet must solve CartPole-v1 on real episodes, and everything must survive a restart of
the whole stack.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest

from plasma import channels
from plasma.compiler.v1 import compiler_pb2
from plasma.sdk import recipes
from plasma.sdk.client import PlasmaClient
from plasma.sdk.evaluate import random_baseline, run_episodes
from plasma.sdk.local import LocalStack
from plasma.sdk.workflow import EVAL_SEED_OFFSET, train_and_deploy
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2

pytestmark = pytest.mark.pipeline

EPISODES = 10


# Gymnasium's threshold for a solved CartPole-v1.
SOLVED = 475.0


def test_the_default_recipe_solves_cartpole_and_survives_a_restart(tmp_path: Path) -> None:
    cfg = recipes.workflow("default", eval_episodes=EPISODES, seed=3)
    stack = LocalStack(tmp_path)
    with stack, PlasmaClient(stack.endpoints) as client:
        summary = train_and_deploy(client, cfg)
        served_action = client.act(np.zeros(4, dtype=np.float32))
    exit_codes = stack.stop()

    random = random_baseline(cfg.env_id, EPISODES, cfg.seed + EVAL_SEED_OFFSET)
    assert summary.real_steps_used == cfg.real_steps + sum(cfg.more_rounds) == 400
    assert summary.evaluation.mean_return >= SOLVED, (
        f"packet scored {summary.evaluation.mean_return:.1f}, random {random.mean_return:.1f}"
    )
    assert summary.model_metrics.holdout_obs_mse < summary.model_metrics.holdout_naive_obs_mse
    assert 0 < summary.packet.size_bytes < 100_000
    assert summary.packet.parity.agreement >= 0.95 and summary.served.self_test.passed
    assert len(summary.evaluation.returns) == EPISODES
    assert all(code == 0 for code in exit_codes.values()), f"unclean exits on SIGTERM: {exit_codes}"

    # A restarted stack on the same stores still has every object and serves the same packet.
    restarted = LocalStack(tmp_path)
    with restarted, PlasmaClient(restarted.endpoints) as client:
        deadline = channels.UNARY_DEADLINE_S
        datasets = client.simulator.ListDatasets(simulator_pb2.ListDatasetsRequest(), timeout=deadline).datasets
        models = client.simulator.ListWorldModels(simulator_pb2.ListWorldModelsRequest(), timeout=deadline).models
        runs = client.trainer.ListRuns(trainer_pb2.ListRunsRequest(), timeout=deadline).runs
        packets = client.compiler.ListPackets(compiler_pb2.ListPacketsRequest(), timeout=deadline).packets
        # Two collection rounds: two dataset versions, two world models, two runs; the last of each is the packet's.
        assert [d.dataset_id for d in datasets][-1] == summary.dataset_id and len(datasets) == 2
        assert [m.model_id for m in models][-1] == summary.model_id and len(models) == 2
        assert [r.state for r in runs] == [trainer_pb2.RUN_STATE_SUCCEEDED] * 2 and runs[-1].run_id == summary.run_id
        assert [p.packet_id for p in packets] == [summary.packet_id]
        status = client.edge_status()
        assert status.serving and status.packet.packet_id == summary.packet_id
        np.testing.assert_array_equal(client.act(np.zeros(4, dtype=np.float32)), served_action)
        again = run_episodes(cfg.env_id, 3, cfg.seed + EVAL_SEED_OFFSET, client.act)
        assert again.returns == summary.evaluation.returns[:3]
        with pytest.raises(grpc.RpcError) as unknown:
            client.compile("run-doesnotexist")
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
