"""Named workflow recipes: what the demo and `plasma run` do unless told otherwise. Named by what they do, not by
an environment: "default" serves every environment it was measured on (docs/benchmarks.md)."""

from __future__ import annotations

import dataclasses
from typing import Any

from plasma.sdk.workflow import WorkflowConfig
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2

_RECIPES: dict[str, WorkflowConfig] = {
    # Two collection rounds of 200 real steps: random actions, then the first policy's (10 % random); phantom
    # paths from every real state (a few episodes give few episode starts); the planner 25 steps deep, 64
    # samples, 3 iterations, warm-started along each path; 32 planner paths for the base and 2 DAgger rounds of
    # 32 (with 16 and 1 round Pendulum-v1 reached -200 on 2 of 5 seeds, the planner's imitation noise). CartPole-v1
    # and Pendulum-v1 from 400 real steps (python -m bench.demo_reliability, docs/benchmarks.md).
    "default": WorkflowConfig(
        real_steps=200,
        more_rounds=(200,),
        world_model=simulator_pb2.WorldModelConfig(train_steps=1000),
        train=trainer_pb2.TrainConfig(
            base_paths=32, adapter_rounds=2, paths_per_round=32, horizon=200,
            start_states=simulator_pb2.START_STATES_ANY,
            planner=simulator_pb2.PlannerConfig(horizon=25, num_samples=64, num_iterations=3, num_elites=8),
        ),
    ),
    # One round of 5,000 random real steps and no collection with a policy (the demo's recipe before "default"):
    # far more data, no iteration.
    "random-5000": WorkflowConfig(
        real_steps=5000,
        world_model=simulator_pb2.WorldModelConfig(train_steps=2000),
        train=trainer_pb2.TrainConfig(base_paths=16, adapter_rounds=2, paths_per_round=16, horizon=500),
    ),
    # A quick end-to-end check of a deployment (about a minute): 500 random steps, a small model, few paths.
    # Clearly better than random actions, not meant to solve anything.
    "quick-check": WorkflowConfig(
        real_steps=500,
        world_model=simulator_pb2.WorldModelConfig(train_steps=800),
        train=trainer_pb2.TrainConfig(base_paths=16, adapter_rounds=2, paths_per_round=8, epochs=20, horizon=500),
    ),
}
NAMES = tuple(_RECIPES)


def workflow(name: str, **overrides: Any) -> WorkflowConfig:
    """The recipe with any non-None overrides applied (e.g. env_id, real_steps, seed)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return dataclasses.replace(_RECIPES[name], **given)
