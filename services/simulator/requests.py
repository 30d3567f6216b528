"""Turns SimulateRequest messages into validated rollouts: shared by Simulate, durable simulations and
forecasts, so that every way of asking for phantom paths checks the same things the same way."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from plasma.mbrl import audit, devices, rollout, tasks
from plasma.mbrl.models import ensemble
from plasma.mbrl.planning import PlannerConfig
from plasma.mbrl.types import MlpWeights, PhantomPath, Transitions
from plasma.server.errors import InvalidArgument, bad_input
from plasma.simulator.v1 import simulator_pb2
from plasma.spaces import EnvSpec
from services.common import wire
from services.simulator.store import SimulatorStore

MAX_PATHS = 100_000
MAX_HORIZON = 1_000


class ModelCache:
    """Loaded world models by id, on `device`, least recently used evicted first, each with its audit support."""

    def __init__(self, store: SimulatorStore, capacity: int, device: torch.device = devices.CPU) -> None:
        self._store = store
        self._capacity = capacity
        self._device = device
        self._models: OrderedDict[str, ensemble.EnsembleWorldModel] = OrderedDict()
        self._supports: dict[str, audit.Support] = {}
        self._lock = threading.Lock()

    def get(self, model_id: str) -> ensemble.EnsembleWorldModel:
        with self._lock:
            if model_id in self._models:
                self._models.move_to_end(model_id)
                return self._models[model_id]
        loaded = ensemble.EnsembleWorldModel.load(self._store.model_weights_dir(model_id), self._device)
        with self._lock:
            self._models[model_id] = loaded
            while len(self._models) > self._capacity:
                evicted, _ = self._models.popitem(last=False)
                self._supports.pop(evicted, None)
        return loaded

    def support(self, model_id: str, transitions: Transitions) -> audit.Support:
        """The audit's support of a model on `transitions`, the data it was fitted on: one pass over the
        data, once per loaded model."""
        with self._lock:
            if model_id in self._supports:
                return self._supports[model_id]
        computed = audit.support_of(self.get(model_id), transitions)
        with self._lock:
            if model_id in self._models:
                self._supports[model_id] = computed
        return computed


@dataclass(frozen=True)
class Execution:
    """How a request's batches run: their size (None: the device's default) and the runner (None: in process)."""

    batch_paths: int | None = None
    runner: rollout.Runner | None = None


def decode_mlp(message: simulator_pb2.MlpPolicy) -> MlpWeights:
    try:
        return wire.mlp_from_proto(message)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


def rollout_policy(message: simulator_pb2.RolloutPolicy) -> MlpWeights | PlannerConfig | None:
    kind = message.WhichOneof("policy")
    if kind in (None, "random"):
        return None
    if kind == "planner":
        return wire.planner_from_proto(message.planner)
    return decode_mlp(message.mlp)


def task_and_source(
    request: simulator_pb2.SimulateRequest | simulator_pb2.ForecastErrorsRequest, meta: simulator_pb2.WorldModel
) -> tuple[tasks.Task | None, str]:
    """The task that scores a request's paths (and that its planners plan on) and the matching rollout
    reward_source: the request's TaskSpec when set (None for its learned objective), else the
    environment's known task or the learned heads as `reward_source` (where the request has one) says."""
    if request.HasField("task"):
        task = wire.task_from_proto(request.task, EnvSpec.from_proto(meta.env_spec))
        return task, "task" if task is not None else "learned"
    env_id = meta.env_spec.env_id
    task = tasks.task_for(env_id)
    # ForecastErrorsRequest has no reward_source: its default is that of REWARD_SOURCE_UNSPECIFIED.
    value = (request.reward_source if isinstance(request, simulator_pb2.SimulateRequest)
             else simulator_pb2.REWARD_SOURCE_UNSPECIFIED)
    with bad_input():
        return task, tasks.resolve_reward_source(wire.reward_source_from_proto(value), task, env_id)


def open_paths(
    request: simulator_pb2.SimulateRequest, store: SimulatorStore, models: ModelCache, execution: Execution
) -> Iterator[PhantomPath]:
    """Validates `request` (raising before any path is computed) and returns its paths, in order."""
    meta = store.model(request.model_id)
    if not 1 <= request.num_paths <= MAX_PATHS:
        raise InvalidArgument(f"num_paths={request.num_paths} must be in 1..{MAX_PATHS}")
    if not 1 <= request.horizon <= MAX_HORIZON:
        raise InvalidArgument(f"horizon={request.horizon} must be in 1..{MAX_HORIZON}")
    policy = rollout_policy(request.policy)
    label = wire.planner_from_proto(request.label_with_planner) if request.HasField("label_with_planner") else None
    task, source = task_and_source(request, meta)
    _, data = store.transitions(meta.dataset_id)
    start_pool = rollout.start_states(data, wire.start_states_from_proto(request.start_states))
    model = models.get(request.model_id)
    with bad_input():
        settings = wire.audit_settings_from_proto(request.audit)
        return rollout.simulate(
            model, policy=policy, num_paths=int(request.num_paths), horizon=int(request.horizon),
            seed=int(request.seed), start_pool=start_pool, label_with_planner=label,
            reward_source=source, task=task, support=models.support(request.model_id, data), audit=settings,
            batch_paths=execution.batch_paths, runner=execution.runner,
        )
