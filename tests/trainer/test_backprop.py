"""Model backpropagation: it improves the imagined return, and the trainer offers it for box actions only."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import gymnasium
import pytest
import torch

from plasma.mbrl.algorithms import backprop
from plasma.mbrl.algorithms.base import PolicyIO, TrainResult
from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import fit
from plasma.mbrl.models.ensemble import WorldModelConfig
from plasma.mbrl.policy_net import PolicyNet
from plasma.mbrl.sources import InProcessSource
from plasma.mbrl.tasks import task_for
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from services.simulator import server as simulator_server
from services.simulator.config import Config as SimulatorConfig
from services.trainer import server as trainer_server
from services.trainer.config import Config as TrainerConfig
from tests.conftest import rpc_error, running

T = 120.0
PENDULUM_IO = PolicyIO(obs_dim=3, action_kind="box", action_dim=1, action_low=(-2.0,), action_high=(2.0,))


def _mean_return(policy: torch.nn.Module, result: TrainResult, model: object, starts: torch.Tensor) -> float:
    _, rewards, _ = backprop.imagine(policy, result.spec, model, task_for("Pendulum-v1"), starts, 30,
                                          torch.Generator().manual_seed(0))
    return float(rewards.sum(0).mean())


def test_backprop_improves_the_imagined_return() -> None:
    spec, data = collect("Pendulum-v1", 200, seed=0)
    model, _ = fit(spec, data, WorldModelConfig(ensemble_size=2, hidden_size=32, train_steps=300))
    cfg = backprop.BackpropConfig(hidden_size=16, paths_per_round=4, horizon=50, backprop_horizon=10,
                                  backprop_steps=60, learning_rate=3e-3)
    task = task_for("Pendulum-v1")
    result = backprop.train(InProcessSource(model, data, task), PENDULUM_IO, cfg)

    starts = torch.as_tensor(data.obs[::10])
    untrained = PolicyNet(result.spec)  # the same architecture and normalization, fresh weights
    with torch.no_grad():
        before = _mean_return(untrained, result, model, starts)
        after = _mean_return(result.peft_model, result, model, starts)
    assert after > before + 10, (before, after)
    assert result.metrics["phantom_paths_used"] == 3 * cfg.paths_per_round
    assert result.metrics["adapter_parameters"] > 0


def test_discrete_actions_are_refused() -> None:
    with pytest.raises(ValueError, match="box"):
        backprop.check_io(PolicyIO(obs_dim=4, action_kind="discrete", action_dim=2))


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[simulator_pb2_grpc.SimulatorServiceStub,
                                                                      trainer_pb2_grpc.TrainerServiceStub]]:
    root = tmp_path_factory.mktemp("backprop")
    simulator_config = SimulatorConfig(address="127.0.0.1:0", store_dir=root / "simulator")
    with running(lambda: simulator_server.create_server(simulator_config), simulator_server.SERVICE_NAME) as sim:
        trainer_config = TrainerConfig(address="127.0.0.1:0", simulator_address=sim, store_dir=root / "trainer")
        with (running(lambda: trainer_server.create_server(trainer_config), trainer_server.SERVICE_NAME) as trainer,
              grpc.insecure_channel(sim) as sim_channel, grpc.insecure_channel(trainer) as trainer_channel):
            yield (simulator_pb2_grpc.SimulatorServiceStub(sim_channel),
                   trainer_pb2_grpc.TrainerServiceStub(trainer_channel))


def _model(sim: simulator_pb2_grpc.SimulatorServiceStub, env_id: str) -> str:
    dataset = list(sim.CollectTransitions(
        simulator_pb2.CollectTransitionsRequest(env_id=env_id, num_steps=150, seed=1), timeout=T))[-1].dataset
    fit_request = simulator_pb2.FitWorldModelRequest(
        dataset_id=dataset.dataset_id, config=simulator_pb2.WorldModelConfig(ensemble_size=2, hidden_size=16,
                                                                             train_steps=50))
    return list(sim.FitWorldModel(fit_request, timeout=T))[-1].model.model_id


BACKPROP = trainer_pb2.TrainConfig(algorithm=trainer_pb2.ALGORITHM_MODEL_BACKPROP, hidden_size=8, paths_per_round=2,
                                   horizon=20, lora_rank=2, lora_alpha=4, backprop_horizon=5, backprop_steps=5)


def test_discrete_request_fails_precondition(stubs: tuple) -> None:
    sim, trainer = stubs
    request = trainer_pb2.TrainRequest(model_id=_model(sim, "CartPole-v1"), config=BACKPROP)
    error = rpc_error(lambda: trainer.Train(request, timeout=T))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "ALGORITHM_PLANNER_DISTILLATION" in error.details()
    assert not trainer.ListRuns(trainer_pb2.ListRunsRequest(), timeout=T).runs  # refused before a run existed


def test_backprop_run_succeeds_on_phantom_paths_only(stubs: tuple) -> None:
    sim, trainer = stubs
    model_id = _model(sim, "Pendulum-v1")
    patch = pytest.MonkeyPatch()
    patch.setattr(gymnasium, "make", _no_real_environment)
    try:
        responses = list(trainer.Train(trainer_pb2.TrainRequest(model_id=model_id, config=BACKPROP), timeout=T))
    finally:
        patch.undo()
    run = responses[-1].run
    assert run.state == trainer_pb2.RUN_STATE_SUCCEEDED, run.error
    assert [r.progress.phase for r in responses[:-1]] == ["base", "adapter"]
    assert run.metrics.adapter_parameters > 0


def _no_real_environment(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the trainer must learn from phantom paths only")
