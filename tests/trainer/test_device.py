"""Where the trainer computes (PLASMA_TRAINER_DEVICE = cpu | cuda | auto): distillation, its LoRA adapter and model
backpropagation on that device, the same policy for a seed on the same device, results and checkpoints on the CPU,
and checkpoints taken on one device resuming on another (docs/gpu.md).

The tests marked CUDA_GPU skip where torch sees no CUDA GPU; bench/gpu_check.sh runs them on a machine with one. On
a CPU-only machine the plumbing is checked on torch's "meta" device (shapes without data).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from plasma import blobs
from plasma.mbrl import devices
from plasma.mbrl.algorithms import backprop, distill
from plasma.mbrl.algorithms.base import PolicyIO, TrainResult, mlp_weights_of
from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import fit
from plasma.mbrl.models.ensemble import WorldModelConfig
from plasma.mbrl.planning import PlannerConfig
from plasma.mbrl.policy_net import PolicyNet, PolicySpec
from plasma.mbrl.sources import InProcessSource
from plasma.mbrl.tasks import task_for
from plasma.server.settings import ConfigError
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from services.common import bundle
from services.simulator import server as simulator_server
from services.simulator.config import Config as SimulatorConfig
from services.trainer import checkpoint
from services.trainer import server as trainer_server
from services.trainer.config import Config
from tests.conftest import running
from tests.support.sources import RuleSource, sign_rule
from tests.support.training import TINY_TRAIN, small_cartpole_model

CUDA_GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
META = torch.device("meta")
VARIABLE = "PLASMA_TRAINER_DEVICE"
IO = PolicyIO(obs_dim=3, action_kind="discrete", action_dim=2)
PENDULUM_IO = PolicyIO(obs_dim=3, action_kind="box", action_dim=1, action_low=(-2.0,), action_high=(2.0,))
CFG = distill.DistillConfig(seed=5, base_paths=6, adapter_rounds=3, paths_per_round=3, horizon=20, epochs=8,
                            learning_rate=3e-3, planner=PlannerConfig(horizon=8, num_samples=16, num_elites=4))
BOX_SPEC = PolicySpec(obs_dim=3, action_kind="box", action_dim=1, hidden_sizes=(8, 8), obs_mean=(0.0,) * 3,
                      obs_std=(1.0,) * 3, action_low=(-2.0,), action_high=(2.0,))


# Configuration


@pytest.mark.parametrize("value", ["", "cpu", "Cpu"])
def test_the_trainer_computes_on_the_cpu_unless_told_otherwise(value: str) -> None:
    assert Config.from_env({VARIABLE: value}).device == torch.device("cpu")
    assert Config().device == torch.device("cpu")


def test_auto_takes_the_gpu_where_torch_sees_one() -> None:
    assert Config.from_env({VARIABLE: "auto"}).device.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("value", ["gpu", "cuda:1", "mps"])
def test_a_bad_device_names_the_variable_and_the_choices(value: str) -> None:
    with pytest.raises(ConfigError, match=f"{VARIABLE}=.* is not valid: expected one of cpu, cuda, auto"):
        Config.from_env({VARIABLE: value})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_refused_not_replaced_by_the_cpu() -> None:
    with pytest.raises(ConfigError, match=f"{VARIABLE}='cuda' is not valid: cuda was asked for, but torch sees no"):
        Config.from_env({VARIABLE: "cuda"})


# The plumbing, on the meta device


class _Made(TorchDispatchMode):
    """Records the device of every tensor an op made."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[tuple[str, torch.device]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        self.made += [(str(func), t.device) for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out


def test_every_tensor_of_a_box_policys_loss_and_critic_is_made_on_their_device() -> None:
    net = PolicyNet(BOX_SPEC).to(META)
    critic = backprop.Critic(BOX_SPEC, 8, scale=10.0).to(META)
    obs, targets = torch.empty(4, 3, device=META), torch.empty(4, 1, device=META)
    with _Made() as recorder:
        net.act(obs)
        distill._loss(BOX_SPEC, net(obs), targets)
        critic(obs)
    assert [op for op, where in recorder.made if where != META] == []


def test_a_run_trained_on_the_cpu_leaves_every_tensor_it_returns_on_the_cpu() -> None:
    states: list[distill.TrainState] = []
    result = distill.train(RuleSource(IO, sign_rule), IO, CFG, on_checkpoint=states.append, device=devices.CPU)
    _assert_on_cpu(result, states)


def _assert_on_cpu(result: TrainResult, states: list[distill.TrainState]) -> None:
    assert {t.device.type for t in [*result.base_state.values(), *result.peft_model.parameters()]} == {"cpu"}
    for state in states:
        assert {t.device.type for t in [*state.base_state.values(), *state.adapter_state.values()]} == {"cpu"}
        assert state.generator_rng.device.type == "cpu"


def _assert_same_policy(a: torch.nn.Module, b: torch.nn.Module) -> None:
    wa, wb = mlp_weights_of(a), mlp_weights_of(b)
    for x, y in zip([*wa.weights, *wa.biases], [*wb.weights, *wb.biases], strict=True):
        np.testing.assert_array_equal(x, y)


# On a CUDA GPU


def _cuda() -> torch.device:
    return devices.resolve("cuda")


@CUDA_GPU
def test_distillation_on_the_gpu_repeats_for_a_seed_and_returns_cpu_tensors() -> None:
    states: list[distill.TrainState] = []
    first = distill.train(RuleSource(IO, sign_rule), IO, CFG, on_checkpoint=states.append, device=_cuda())
    again = distill.train(RuleSource(IO, sign_rule), IO, CFG, device=_cuda())
    _assert_same_policy(first.peft_model, again.peft_model)
    _assert_on_cpu(first, states)
    assert first.metrics["planner_agreement"] > 0.8  # it learned the rule, as on the CPU (test_checkpoint.py)


@CUDA_GPU
@pytest.mark.parametrize(("trained_on", "resumed_on"), [("cuda", "cuda"), ("cuda", "cpu"), ("cpu", "cuda")])
def test_a_checkpoint_resumes_on_either_device(trained_on: str, resumed_on: str) -> None:
    states: list[distill.TrainState] = []
    uninterrupted = distill.train(RuleSource(IO, sign_rule), IO, CFG, on_checkpoint=states.append,
                                  device=devices.resolve(trained_on))
    # Through bytes, as a restarted trainer reads it from its store.
    after_round = 1
    saved = checkpoint.unpack(checkpoint.pack(states[after_round]))
    source = RuleSource(IO, sign_rule)
    resumed = distill.train(source, IO, CFG, resume_from=saved, device=devices.resolve(resumed_on))
    assert len(source.calls) == CFG.adapter_rounds - after_round + 1
    _assert_on_cpu(resumed, [])
    if trained_on == resumed_on:
        _assert_same_policy(uninterrupted.peft_model, resumed.peft_model)
    else:  # the rounds after the checkpoint ran on another device: the same data, other rounding
        assert resumed.metrics["planner_agreement"] > 0.8


@CUDA_GPU
def test_model_backprop_on_the_gpu_repeats_for_a_seed_and_leaves_the_sources_model_alone() -> None:
    spec, data = collect("Pendulum-v1", 200, seed=0)
    model, _ = fit(spec, data, WorldModelConfig(ensemble_size=2, hidden_size=32, train_steps=200))
    cfg = backprop.BackpropConfig(hidden_size=16, paths_per_round=4, horizon=30, backprop_horizon=8,
                                  backprop_steps=30, learning_rate=3e-3)
    source = InProcessSource(model, data, task_for("Pendulum-v1"))
    first = backprop.train(source, PENDULUM_IO, cfg, device=_cuda())
    again = backprop.train(source, PENDULUM_IO, cfg, device=_cuda())
    _assert_same_policy(first.peft_model, again.peft_model)
    _assert_on_cpu(first, [])
    assert model.device == devices.CPU


@CUDA_GPU
def test_a_trainer_on_the_gpu_trains_from_a_simulator_on_the_gpu(tmp_path: Path) -> None:
    simulator_config = SimulatorConfig(address="127.0.0.1:0", store_dir=tmp_path / "simulator", device=_cuda())
    with running(lambda: simulator_server.create_server(simulator_config), simulator_server.SERVICE_NAME) as sim:
        config = Config(address="127.0.0.1:0", simulator_address=sim, store_dir=tmp_path / "trainer", device=_cuda())
        with (running(lambda: trainer_server.create_server(config), trainer_server.SERVICE_NAME) as address,
              grpc.insecure_channel(sim) as sim_channel, grpc.insecure_channel(address) as channel):
            model_id = small_cartpole_model(sim_channel)
            stub = trainer_pb2_grpc.TrainerServiceStub(channel)
            run = list(stub.Train(trainer_pb2.TrainRequest(model_id=model_id, config=TINY_TRAIN), timeout=300))[-1].run
            assert run.state == trainer_pb2.RUN_STATE_SUCCEEDED, run.error
            stream = stub.ExportPolicy(trainer_pb2.ExportPolicyRequest(run_id=run.run_id), timeout=60)
            header = next(stream).header
            exported = bundle.unpack(blobs.assemble(header, (message.chunk for message in stream)))
    adapted = exported.adapted_network()
    observations = torch.as_tensor(exported.parity_observations)
    assert adapted(observations).shape == (len(observations), 2)
