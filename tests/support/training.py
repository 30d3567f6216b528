"""A training config small enough for tests, their deadline, and a small world model to train against."""

from __future__ import annotations

import grpc

from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from plasma.trainer.v1 import trainer_pb2

T = 30.0
TINY_TRAIN = trainer_pb2.TrainConfig(
    seed=1, hidden_size=16, base_paths=4, adapter_rounds=1, paths_per_round=2, horizon=30, epochs=3, lora_rank=2,
    lora_alpha=4,
    planner=simulator_pb2.PlannerConfig(num_samples=16, num_elites=4, horizon=10, num_iterations=1),
)


def small_cartpole_model(channel: grpc.Channel) -> str:
    """Through a running simulator: 300 real CartPole-v1 steps and a 2-member world model fitted on them; its id."""
    sim = simulator_pb2_grpc.SimulatorServiceStub(channel)
    dataset = list(sim.CollectTransitions(
        simulator_pb2.CollectTransitionsRequest(env_id="CartPole-v1", num_steps=300, seed=2), timeout=T))[-1]
    fit = simulator_pb2.FitWorldModelRequest(
        dataset_id=dataset.dataset.dataset_id,
        config=simulator_pb2.WorldModelConfig(ensemble_size=2, hidden_size=32, train_steps=200))
    return list(sim.FitWorldModel(fit, timeout=120))[-1].model.model_id
