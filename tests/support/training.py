"""A training config small enough for tests, and their deadline."""

from __future__ import annotations

from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2

T = 30.0
TINY_TRAIN = trainer_pb2.TrainConfig(
    seed=1, hidden_size=16, base_paths=4, adapter_rounds=1, paths_per_round=2, horizon=30, epochs=3, lora_rank=2,
    lora_alpha=4,
    planner=simulator_pb2.PlannerConfig(num_samples=16, num_elites=4, horizon=10, num_iterations=1),
)
