"""`plasma plot`: forecast figures against a real simulator on port 0 and real CartPole rollouts, learning
curves from the benchmark's JSON, a run's history. Each writes a PNG that reads back as an image."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import matplotlib.image
import numpy as np
import pytest

from plasma import cli
from plasma.mbrl import collect
from plasma.mbrl.policies import MlpPolicy
from plasma.mbrl.types import MlpWeights
from plasma.sdk import plot, real_rollouts
from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2
from services.common import wire
from services.simulator import server as simulator_server
from services.simulator.config import Config
from services.trainer import server as trainer_server
from services.trainer.config import Config as TrainerConfig
from tests.conftest import running

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMALL_MODEL = simulator_pb2.WorldModelConfig(ensemble_size=3, hidden_size=64, train_steps=300, seed=1)


def _assert_png(path: Path, min_width: int = 400) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)  # [height, width, channels]
    assert image.shape[1] >= min_width and image.shape[0] >= 300
    assert image.std() > 0.01  # something was drawn, not a blank canvas


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = Config(address="127.0.0.1:0", store_dir=Path(tmp_path_factory.mktemp("plot-store")))
    with running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME) as address:
        yield address


@pytest.fixture(scope="module")
def model_id(simulator: str) -> str:
    with PlasmaClient(Endpoints(simulator=simulator)) as client:
        dataset = client.collect("CartPole-v1", 600, seed=2)
        return client.fit_world_model(dataset.dataset_id, SMALL_MODEL).model_id


def test_replayed_actions_reproduce_the_real_environment_from_the_start_state() -> None:
    start = real_rollouts.start_state("CartPole-v1", seed=4)
    actions = np.array([0, 1, 1, 0, 1], dtype=np.int64)
    real = real_rollouts.replay("CartPole-v1", start, actions, seed=4)
    assert real.states.shape == (6, 4) and not real.terminated
    np.testing.assert_allclose(real.states[0], start)
    # Another reset seed, then placed into the same state: the same real trajectory.
    placed = real_rollouts.replay("CartPole-v1", start, actions, seed=99)
    np.testing.assert_allclose(placed.states, real.states, atol=1e-6)
    # Pushing one way long enough ends the episode: the replay stops there and says so.
    pushed = real_rollouts.replay("CartPole-v1", start, np.ones(200, dtype=np.int64), seed=4)
    assert pushed.terminated and len(pushed.states) < 201


def _random_mlp(obs_dim: int, out: int, activation: str, seed: int) -> MlpWeights:
    rng = np.random.default_rng(seed)
    return MlpWeights(
        weights=[rng.normal(size=(16, obs_dim)).astype(np.float32), rng.normal(size=(out, 16)).astype(np.float32)],
        biases=[rng.normal(size=16).astype(np.float32), rng.normal(size=out).astype(np.float32)],
        activation=activation, obs_mean=rng.normal(size=obs_dim).astype(np.float32),
        obs_std=rng.uniform(0.5, 2.0, size=obs_dim).astype(np.float32),
    )


@pytest.mark.parametrize(("env_id", "activation"), [("CartPole-v1", "tanh"), ("Pendulum-v1", "silu"),
                                                    ("CartPole-v1", "relu")])
def test_client_mlp_acts_like_the_simulators_policy(env_id: str, activation: str) -> None:
    env = gym.make(env_id)
    spec = collect.env_spec_of(env)
    out = spec.action.flat_dim
    weights = _random_mlp(spec.observation.flat_dim, out, activation, seed=1)
    act = real_rollouts.mlp_actor(wire.mlp_to_proto(weights), env.action_space)
    reference = MlpPolicy(weights, spec)
    observations = np.random.default_rng(2).normal(size=(20, spec.observation.flat_dim)).astype(np.float32)
    for obs in observations:
        np.testing.assert_allclose(act(obs), reference.act_numpy(obs[None])[0], rtol=1e-5, atol=1e-5)
    env.close()


def test_forecast_figure_with_real_rollouts(simulator: str, model_id: str, tmp_path: Path) -> None:
    from plasma.cli.plots import forecast_with_real_rollouts

    with PlasmaClient(Endpoints(simulator=simulator)) as client:
        reply, real, env_id = forecast_with_real_rollouts(client, model_id, "random", seed=3, horizon=30,
                                                          samples=32)
    assert env_id == "CartPole-v1"
    assert len(real) == len(reply.samples) > 0
    for path, replayed in zip(reply.samples, real, strict=True):
        assert 1 <= len(replayed.states) <= path.length + 1
    out = plot.save(plot.forecast_figure(reply, real, env_id=env_id), tmp_path / "forecast.png")
    _assert_png(out)


def test_forecast_of_an_mlp_policy_is_compared_with_that_policy_in_the_real_env(
    simulator: str, model_id: str, tmp_path: Path
) -> None:
    weights = wire.mlp_to_proto(_random_mlp(4, 2, "tanh", seed=3))
    with PlasmaClient(Endpoints(simulator=simulator)) as client:
        start = real_rollouts.start_state("CartPole-v1", seed=5)
        reply = client.forecast(model_id, start, simulator_pb2.RolloutPolicy(mlp=weights), horizon=25,
                                num_samples=16, seed=5)
    real = real_rollouts.run_policy("CartPole-v1", start, weights, horizon=25, seed=5)
    assert 2 <= len(real.states) <= 26
    np.testing.assert_allclose(real.states[0], start)
    _assert_png(plot.save(plot.forecast_figure(reply, [real], env_id="CartPole-v1"), tmp_path / "mlp.png"))


def test_cli_plot_forecast_writes_a_png(simulator: str, model_id: str, tmp_path: Path) -> None:
    out = tmp_path / "cli" / "forecast.png"
    code = cli.main(["plot", "forecast", "--simulator", simulator, "--model", model_id, "--horizon", "20",
                     "--samples", "16", "--start", "0", "0", "0.05", "0", "--out", str(out)])
    assert code == 0
    _assert_png(out)


def test_cli_plot_forecast_rejects_an_unknown_policy(simulator: str, model_id: str, tmp_path: Path) -> None:
    code = cli.main(["plot", "forecast", "--simulator", simulator, "--model", model_id, "--policy", "greedy",
                     "--out", str(tmp_path / "x.png")])
    assert code == 2
    assert not (tmp_path / "x.png").exists()


def test_cli_plot_learning_curves_writes_a_png(tmp_path: Path) -> None:
    # Input for drawing only: the shape of what bench.sample_efficiency writes.
    record = {
        "env_id": "CartPole-v1", "threshold": 475.0,
        "runs": [
            {"method": "plasma", "seed": 0, "points": [
                {"real_steps": 500, "real_return": 120.0, "imagined_return": 150.0},
                {"real_steps": 1000, "real_return": 480.0, "imagined_return": 495.0}]},
            {"method": "ppo", "seed": 0, "points": [
                {"real_steps": 10000, "real_return": 60.0, "imagined_return": None},
                {"real_steps": 50000, "real_return": 300.0}]},
        ],
    }
    source = tmp_path / "curves.json"
    source.write_text(json.dumps(record))
    out = tmp_path / "curves.png"
    assert cli.main(["plot", "learning-curves", str(source), "--out", str(out)]) == 0
    _assert_png(out)
    assert out.stat().st_mode & 0o777 == 0o644  # meant to be shared, unlike the stores' private files


def test_learning_curves_reject_a_record_without_runs(tmp_path: Path) -> None:
    source = tmp_path / "bad.json"
    source.write_text(json.dumps({"env_id": "CartPole-v1"}))
    assert cli.main(["plot", "learning-curves", str(source), "--out", str(tmp_path / "bad.png")]) == 2
    with pytest.raises(ValueError, match="runs"):
        plot.validate_learning_curves({"runs": [{"method": "plasma", "points": [{"real_steps": 1}]}]})


def test_run_history_figure(tmp_path: Path) -> None:
    run = trainer_pb2.Run(run_id="run-x", model_id="wm-x", history=[
        trainer_pb2.TrainProgress(phase="base", round=r, total_rounds=3, imagined_return=100.0 * r,
                                  planner_agreement=0.5 + 0.1 * r) for r in range(1, 4)
    ])
    _assert_png(plot.save(plot.run_history_figure(run), tmp_path / "run.png"))
    with pytest.raises(ValueError, match="no progress history"):
        plot.run_history_figure(trainer_pb2.Run(run_id="empty"))


TINY_TRAIN = trainer_pb2.TrainConfig(
    seed=1, hidden_size=16, base_paths=4, adapter_rounds=1, paths_per_round=2, horizon=30, epochs=3, lora_rank=2,
    lora_alpha=4, planner=simulator_pb2.PlannerConfig(num_samples=16, num_elites=4, horizon=10, num_iterations=1),
)


@pytest.mark.slow
def test_cli_plots_a_trained_run_and_forecasts_its_policy(tmp_path: Path) -> None:
    simulator_config = Config(address="127.0.0.1:0", store_dir=tmp_path / "simulator")
    with running(lambda: simulator_server.create_server(simulator_config), simulator_server.SERVICE_NAME) as sim:
        trainer_config = TrainerConfig(address="127.0.0.1:0", simulator_address=sim, store_dir=tmp_path / "trainer")
        with running(lambda: trainer_server.create_server(trainer_config), trainer_server.SERVICE_NAME) as trainer, \
                PlasmaClient(Endpoints(simulator=sim, trainer=trainer)) as client:
            dataset = client.collect("CartPole-v1", 300, seed=2)
            model = client.fit_world_model(dataset.dataset_id, SMALL_MODEL)
            run = client.train(model.model_id, TINY_TRAIN)
            assert len(run.history) >= 2
            history_png = tmp_path / "run.png"
            assert cli.main(["plot", "run", run.run_id, "--trainer", trainer, "--out", str(history_png)]) == 0
            _assert_png(history_png)
            forecast_png = tmp_path / "policy.png"
            assert cli.main(["plot", "forecast", "--simulator", sim, "--trainer", trainer, "--model", model.model_id,
                             "--policy", f"run:{run.run_id}", "--horizon", "30", "--samples", "16",
                             "--out", str(forecast_png)]) == 0
            _assert_png(forecast_png)
