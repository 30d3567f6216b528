"""Small real world models of CartPole-v1 (discrete actions) and Pendulum-v1 (box actions), fitted once per
test session on real Gymnasium steps: what the compiler's parity check rolls policies out in.

`simulator_store` puts them into a real simulator store, so a real SimulatorService can serve them."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp

from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import fit
from plasma.mbrl.models.ensemble import EnsembleWorldModel, WorldModelConfig
from plasma.mbrl.tasks import Task, task_for
from plasma.mbrl.types import Transitions
from plasma.simulator.v1 import simulator_pb2
from plasma.spaces import EnvSpec
from services.compiler.closed_loop import Scenario
from services.simulator import datasets
from services.simulator.store import SimulatorStore

ENV_IDS = {"discrete": "CartPole-v1", "box": "Pendulum-v1"}
# Enough real steps and fitting for closed-loop paths that behave like the environment over a short horizon.
_REAL_STEPS = 600
_FIT = WorldModelConfig(ensemble_size=3, hidden_size=64, num_layers=2, train_steps=300, seed=0)
HORIZON = 100


@dataclass(frozen=True)
class World:
    env_id: str
    spec: EnvSpec
    data: Transitions
    model: EnsembleWorldModel
    task: Task | None

    @property
    def model_id(self) -> str:
        return f"wm-{self.env_id.lower().replace('-', '')[:12]}"

    @property
    def dataset_id(self) -> str:
        return f"ds-{self.env_id.lower().replace('-', '')[:12]}"

    def scenario(self, horizon: int = HORIZON, seed: int = 0) -> Scenario:
        return Scenario.draw(self.model, self.task, self.data, "episode_starts", horizon, seed)


@functools.cache
def world(kind: str) -> World:
    env_id = ENV_IDS[kind]
    spec, data = collect(env_id, _REAL_STEPS, seed=0)
    model, _ = fit(spec, data, _FIT)
    return World(env_id, spec, data, model, task_for(env_id))


def simulator_store(root: Path) -> SimulatorStore:
    """A simulator store holding both worlds' datasets and models under their fixed ids."""
    store = SimulatorStore(root)
    for kind in ENV_IDS:
        w = world(kind)
        now = Timestamp()
        now.GetCurrentTime()
        store.save_dataset(datasets.describe(w.dataset_id, w.spec, w.data, name=w.env_id, origin="gymnasium",
                                             parent_dataset_id="", create_time=now), w.data)
        record = simulator_pb2.WorldModel(model_id=w.model_id, dataset_id=w.dataset_id,
                                          env_spec=w.spec.to_proto(), create_time=now)
        store.save_model(record, w.model.save)
    return store
