"""Where the simulator computes (PLASMA_SIMULATOR_DEVICE = cpu | cuda | auto): fitting, rollouts, the planner and the
audit on that device, the same paths for a seed on the same device, and world models saved on one device loading on
another (docs/gpu.md).

The tests marked CUDA_GPU skip where torch sees no CUDA GPU; bench/gpu_check.sh runs them on a machine with one. On
a CPU-only machine the plumbing is checked on torch's "meta" device (shapes without data): every tensor the model,
the tasks and the MLP policy make for a step must be made on the device of their inputs.
"""

from __future__ import annotations

import copy
import logging
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from plasma import tensors
from plasma.mbrl import audit, devices
from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import fit
from plasma.mbrl.models.ensemble import EnsembleWorldModel, WorldModelConfig
from plasma.mbrl.planning import PlannerConfig
from plasma.mbrl.policies import MlpPolicy
from plasma.mbrl.rollout import simulate, start_states
from plasma.mbrl.tasks import task_for, task_from_spec
from plasma.mbrl.types import MlpWeights, PhantomPath, TaskSpecData, TrackingSpec, Transitions
from plasma.server.settings import ConfigError
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from plasma.spaces import EnvSpec, Space
from services.common import simulator_client
from services.simulator import server as simulator_server
from services.simulator.config import Config
from tests.conftest import running
from tests.support.training import small_cartpole_model

CUDA_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
META = torch.device("meta")
VARIABLE = "PLASMA_SIMULATOR_DEVICE"
CARTPOLE_SPEC = EnvSpec(
    env_id="CartPole-v1",
    observation=Space(kind="box", shape=(4,), low=(-math.inf,) * 4, high=(math.inf,) * 4),
    action=Space(kind="discrete", n=2),
)
PENDULUM_SPEC = EnvSpec(
    env_id="Pendulum-v1",
    observation=Space(kind="box", shape=(3,), low=(-1.0, -1.0, -8.0), high=(1.0, 1.0, 8.0)),
    action=Space(kind="box", shape=(1,), low=(-2.0,), high=(2.0,)),
)
SMALL = WorldModelConfig(ensemble_size=3, hidden_size=64, num_layers=2, train_steps=400, batch_size=128)
PLANNER = PlannerConfig(horizon=8, num_samples=16, num_iterations=2, num_elites=4)
CARTPOLE = task_for("CartPole-v1")
PENDULUM = task_for("Pendulum-v1")


# Configuration


@pytest.mark.parametrize("value", ["", "cpu", " CPU "])
def test_the_simulator_computes_on_the_cpu_unless_told_otherwise(value: str) -> None:
    assert Config.from_env({VARIABLE: value}).device == torch.device("cpu")
    assert Config().device == torch.device("cpu")


def test_auto_takes_the_gpu_where_torch_sees_one_and_logs_which(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=devices.__name__):
        device = Config.from_env({VARIABLE: "auto"}).device
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert f"device auto resolved to {device} ({devices.describe(device)})" in caplog.text


@pytest.mark.parametrize("value", ["gpu", "cuda:0", "tpu", "1"])
def test_a_bad_device_names_the_variable_and_the_choices(value: str) -> None:
    with pytest.raises(ConfigError, match=f"{VARIABLE}=.* is not valid: expected one of cpu, cuda, auto"):
        Config.from_env({VARIABLE: value})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_at_start_not_replaced_by_the_cpu() -> None:
    with pytest.raises(ConfigError, match=f"{VARIABLE}='cuda' is not valid: cuda was asked for, but torch sees no"):
        Config.from_env({VARIABLE: "cuda"})
    result = subprocess.run(
        [sys.executable, "-m", "services.simulator.server"], env={VARIABLE: "cuda", "PATH": ""},
        capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 2
    assert f"{VARIABLE}='cuda'" in result.stderr and "no CUDA GPU" in result.stderr


# The plumbing, on the meta device


class _Made(TorchDispatchMode):
    """Records every op that made a tensor, with the device it made it on."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[tuple[str, torch.device]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        self.made += [(str(func), t.device) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out


def _made_elsewhere(device: torch.device, compute: Callable[[], object]) -> list[str]:
    """The ops `compute()` ran that made a tensor anywhere but on `device`."""
    with _Made() as recorder:
        compute()
    return [op for op, where in recorder.made if where != device]


def _batch(spec: EnvSpec, device: torch.device, rows: int = 5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    obs = torch.empty(rows, spec.observation.flat_dim, device=device)
    if spec.action.kind == "discrete":
        actions = torch.empty(rows, dtype=torch.long, device=device)
    else:
        actions = torch.empty(rows, spec.action.flat_dim, device=device)
    return obs, actions, torch.empty(rows, dtype=torch.long, device=device)


@pytest.mark.parametrize("spec", [CARTPOLE_SPEC, PENDULUM_SPEC], ids=["discrete", "box"])
def test_every_tensor_of_a_model_step_is_made_on_the_models_device(spec: EnvSpec) -> None:
    model = EnsembleWorldModel(spec, WorldModelConfig(ensemble_size=3, hidden_size=16, num_layers=2)).to(META)
    assert model.device == META
    obs, actions, members = _batch(spec, META)

    def steps() -> None:
        model.step(obs, actions, members)
        model.step(obs, actions, "mean")
        model.rollout_step(obs, actions, members)
        model.predictive(obs, actions)

    assert _made_elsewhere(META, steps) == []


def test_every_tensor_of_a_task_and_an_mlp_policy_is_made_on_their_inputs_device() -> None:
    tracking = task_from_spec(TaskSpecData(objective="tracking", tracking=TrackingSpec(
        target_observation=(0.0, 0.0, 0.0, 0.0), state_weights=(1.0, 0.0, 1.0, 0.0), action_weights=(0.1,),
        terminate_below=(-2.4, -math.inf, -0.2, -math.inf), terminate_above=(2.4, math.inf, 0.2, math.inf),
    )), CARTPOLE_SPEC)
    unbounded = task_from_spec(TaskSpecData(objective="tracking", tracking=TrackingSpec(
        target_observation=(0.0,) * 4, state_weights=(1.0,) * 4)), CARTPOLE_SPEC)
    policy = MlpPolicy(MlpWeights(weights=[np.ones((1, 3), np.float32)], biases=[np.zeros(1, np.float32)],
                                  activation="tanh", obs_mean=np.zeros(3, np.float32),
                                  obs_std=np.ones(3, np.float32)), PENDULUM_SPEC, META)
    cart_obs, cart_actions, _ = _batch(CARTPOLE_SPEC, META)
    pend_obs, pend_actions, _ = _batch(PENDULUM_SPEC, META)

    def compute() -> None:
        for task in (CARTPOLE, tracking, unbounded):
            assert task is not None
            task.reward(cart_obs, cart_actions, cart_obs)
            task.terminated(cart_obs)
        assert PENDULUM is not None
        PENDULUM.reward(pend_obs, pend_actions, pend_obs)
        PENDULUM.terminated(pend_obs)
        policy.act(pend_obs)

    assert _made_elsewhere(META, compute) == []


def test_a_saved_model_loads_onto_the_device_asked_for(tmp_path: Path) -> None:
    spec, data = collect("CartPole-v1", 100, seed=0)
    model, _ = fit(spec, data, WorldModelConfig(ensemble_size=2, hidden_size=16, num_layers=1, train_steps=5))
    model.save(tmp_path / "model")
    loaded = EnsembleWorldModel.load(tmp_path / "model", META)
    assert loaded.device == META
    assert {t.device for t in [*loaded.parameters(), *loaded.buffers()]} == {META}
    assert EnsembleWorldModel.load(tmp_path / "model").device == torch.device("cpu")


# On a CUDA GPU


def _cuda() -> torch.device:
    return devices.resolve("cuda")


@pytest.fixture(scope="module")
def cartpole() -> tuple[EnvSpec, Transitions]:
    return collect("CartPole-v1", 400, seed=0)


@pytest.fixture(scope="module")
def gpu_model(cartpole: tuple[EnvSpec, Transitions]) -> tuple[EnsembleWorldModel, dict[str, float]]:
    return fit(*cartpole, SMALL, device=_cuda())


def _assert_same_paths(first: list[PhantomPath], again: list[PhantomPath]) -> None:
    assert len(first) == len(again)
    for a, b in zip(first, again, strict=True):
        for name in ("observations", "actions", "rewards", "dones", "uncertainty", "expert_actions", "members"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert a.audit is not None and b.audit is not None
        assert (a.audit.verdict, a.audit.valid_steps) == (b.audit.verdict, b.audit.valid_steps)
        np.testing.assert_array_equal(a.audit.penalized_rewards, b.audit.penalized_rewards)


@CUDA_GPU
def test_fitting_on_the_gpu_repeats_for_a_seed_and_fits_well(cartpole, gpu_model) -> None:
    model, metrics = gpu_model
    assert model.device.type == "cuda"
    assert {t.device for t in [*model.parameters(), *model.buffers()]} == {model.device}
    again, again_metrics = fit(*cartpole, SMALL, device=model.device)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert metrics == again_metrics
    # As good as the CPU's fit of the same config (tests/simulator/test_world_model.py).
    assert metrics["holdout_obs_mse"] < 0.05 * metrics["holdout_naive_obs_mse"]
    assert metrics["holdout_termination_accuracy"] > 0.9


@CUDA_GPU
def test_a_step_on_the_gpu_matches_the_cpu_within_float_error(cartpole, gpu_model) -> None:
    model, _ = gpu_model
    on_cpu = copy.deepcopy(model).to(devices.CPU)
    _, data = cartpole
    obs, actions = torch.as_tensor(data.obs[:64]), torch.as_tensor(data.actions[:64])
    members = torch.arange(64) % SMALL.ensemble_size
    gpu = model.step(obs.to(model.device), actions.to(model.device), members.to(model.device))
    for on_gpu, expected in zip(gpu, on_cpu.step(obs, actions, members), strict=True):
        torch.testing.assert_close(on_gpu.cpu(), expected, rtol=1e-4, atol=1e-5)
    predicted = model.predict(obs.to(model.device), actions.to(model.device), members.to(model.device))
    for on_gpu, expected in zip(predicted, on_cpu.predict(obs, actions, members), strict=True):
        torch.testing.assert_close(on_gpu.cpu(), expected, rtol=1e-4, atol=1e-5)


@CUDA_GPU
def test_rollouts_planner_and_audit_on_the_gpu_repeat_for_a_seed(cartpole, gpu_model) -> None:
    model, _ = gpu_model
    _, data = cartpole
    support = audit.support_of(model, data)
    mlp = MlpWeights(weights=[np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)],
                     biases=[np.zeros(2, np.float32)], activation="tanh", obs_mean=np.zeros(4, np.float32),
                     obs_std=np.ones(4, np.float32))
    for policy, num_paths in ((None, 70), (mlp, 20), (PLANNER, 6)):
        def paths(seed: int) -> list[PhantomPath]:
            return list(simulate(model, policy=policy, num_paths=num_paths, horizon=30, seed=seed,  # noqa: B023
                                 start_pool=start_states(data, "episode_starts"), label_with_planner=PLANNER,
                                 task=CARTPOLE, support=support))

        first = paths(3)
        _assert_same_paths(first, paths(3))
        assert len(first) == num_paths
        for path in first:
            assert path.length == 30 or path.dones[-1]
            assert path.expert_actions is not None and set(np.unique(path.expert_actions)) <= {0, 1}


@CUDA_GPU
def test_the_box_planner_warm_starts_on_the_gpu_and_repeats_for_a_seed() -> None:
    spec, data = collect("Pendulum-v1", 200, seed=0)
    model, _ = fit(spec, data, WorldModelConfig(ensemble_size=2, hidden_size=32, train_steps=200), device=_cuda())

    def paths() -> list[PhantomPath]:
        return list(simulate(model, policy=PLANNER, num_paths=4, horizon=12, seed=5,
                             start_pool=start_states(data, "any"), task=PENDULUM,
                             support=audit.support_of(model, data)))

    first = paths()
    _assert_same_paths(first, paths())
    actions = np.concatenate([p.actions for p in first])
    assert actions.shape == (4 * 12, 1) and (np.abs(actions) <= 2.0).all()


@CUDA_GPU
def test_a_model_saved_on_the_gpu_loads_on_the_cpu_and_back(gpu_model, tmp_path: Path) -> None:
    model, _ = gpu_model
    model.save(tmp_path / "model")
    on_cpu = EnsembleWorldModel.load(tmp_path / "model")
    back = EnsembleWorldModel.load(tmp_path / "model", model.device)
    assert on_cpu.device == devices.CPU and back.device == model.device
    for a, b, c in zip(model.state_dict().values(), on_cpu.state_dict().values(), back.state_dict().values(),
                       strict=True):
        assert torch.equal(a.cpu(), b) and torch.equal(a, c)


@CUDA_GPU
def test_a_simulator_on_the_gpu_fits_streams_forecasts_and_exports(tmp_path: Path) -> None:
    config = Config(address="127.0.0.1:0", store_dir=tmp_path, device=_cuda())
    with (running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME) as address,
          grpc.insecure_channel(address) as channel):
        model_id = small_cartpole_model(channel)
        stub = simulator_pb2_grpc.SimulatorServiceStub(channel)
        request = simulator_pb2.SimulateRequest(model_id=model_id, num_paths=6, horizon=20, seed=1)
        request.policy.planner.CopyFrom(simulator_pb2.PlannerConfig(num_samples=16, num_elites=4, horizon=8))
        first = [r.path for r in stub.Simulate(request, timeout=120)]
        assert first == [r.path for r in stub.Simulate(request, timeout=120)]
        forecast = stub.ForecastErrors(simulator_pb2.ForecastErrorsRequest(
            model_id=model_id, start_observation=tensors.to_proto(np.zeros(4, np.float32)), horizon=20,
            num_samples=64), timeout=120)
        assert tensors.from_proto(forecast.failure_probability, "failure_probability").shape == (20,)
        exported = simulator_client.fetch_model(channel, model_id)
        assert exported.device == devices.CPU
