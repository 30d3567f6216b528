"""Named workflow settings: "default" (the demo), "small" (the CI pipeline test) and "pendulum" (Pendulum-v1 from
400 real steps)."""

from __future__ import annotations

import dataclasses
from typing import Any

from plasma.sdk.workflow import WorkflowConfig
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2

_PRESETS: dict[str, WorkflowConfig] = {
    # The demo's whole budget of 5,000 random real steps: with 1,000 the seed-0 demo reached only ~446 (its
    # policy drifted off the track after ~300 steps in 5 of 20 episodes); with 5,000 it scored 500 in all 20.
    # Pinned (not the services' defaults) so the demo keeps the settings these figures were measured with.
    "default": WorkflowConfig(
        real_steps=5000,
        world_model=simulator_pb2.WorldModelConfig(train_steps=2000),
        train=trainer_pb2.TrainConfig(base_paths=16, adapter_rounds=2, paths_per_round=16, horizon=500),
    ),
    # Fewer real steps, a smaller model and fewer phantom paths: about a minute, clearly better than random.
    "small": WorkflowConfig(
        real_steps=500,
        world_model=simulator_pb2.WorldModelConfig(train_steps=800),
        train=trainer_pb2.TrainConfig(base_paths=16, adapter_rounds=2, paths_per_round=8, epochs=20, horizon=500),
    ),
    # Pendulum-v1 from 400 real steps: one random episode, then one with the first policy (10% random actions).
    # A longer, finer planner than CartPole's (a swing-up pays off after more than 20 steps) and phantom paths
    # from every real state (two episodes give only two episode starts). In process (bench.sample_efficiency,
    # seeds 0-2) these settings reached -172, -214 and -241: close to, not reliably past, the -200 goal (100
    # planner samples: -159, -215, -310); 400 random steps instead reached -257 and -1450 (seeds 1 and 0).
    "pendulum": WorkflowConfig(
        env_id="Pendulum-v1",
        real_steps=200,
        more_rounds=(200,),
        world_model=simulator_pb2.WorldModelConfig(train_steps=1000),
        train=trainer_pb2.TrainConfig(
            base_paths=16, adapter_rounds=1, paths_per_round=16, horizon=200,
            start_states=simulator_pb2.START_STATES_ANY,
            planner=simulator_pb2.PlannerConfig(horizon=25, num_samples=64, num_iterations=3, num_elites=8),
        ),
    ),
}
NAMES = tuple(_PRESETS)


def workflow(name: str, **overrides: Any) -> WorkflowConfig:
    """The preset with any non-None overrides applied (e.g. env_id, real_steps, seed)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return dataclasses.replace(_PRESETS[name], **given)
