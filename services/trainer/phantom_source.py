"""Phantom paths from the simulator over gRPC: the trainer's only source of experience."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import grpc

from plasma.mbrl.algorithms.distill import PlannerSettings
from plasma.mbrl.types import MlpWeights, PhantomPath
from plasma.simulator.v1 import simulator_pb2, task_pb2
from services.common import wire
from services.trainer.subscription import DEFAULT_RECONNECT, DurablePaths, Reconnect

_START_STATES = {name: value for value, name in wire.START_STATE_NAMES.items()}
_REWARD_SOURCES = {name: value for value, name in wire.REWARD_SOURCE_NAMES.items()}


def planner_to_proto(settings: PlannerSettings) -> simulator_pb2.PlannerConfig:
    return simulator_pb2.PlannerConfig(**dataclasses.asdict(settings))


class GrpcPhantomSource:
    """Starts one durable simulation per call and decodes its paths as they arrive over Subscribe, resuming
    where it stopped when the stream breaks (subscription.py)."""

    def __init__(
        self, channel: grpc.Channel, model_id: str, deadline_seconds: float, reconnect: Reconnect = DEFAULT_RECONNECT
    ) -> None:
        self._paths = DurablePaths(channel, deadline_seconds, reconnect)
        self._model_id = model_id
        self.paths_received = 0
        # The run's objective (TrainRequest.task), sent with every request; None: the environment's own.
        self.task: task_pb2.TaskSpec | None = None

    @property
    def reconnects(self) -> int:
        """Resubscriptions after broken streams so far."""
        return self._paths.reconnects

    def simulate(
        self,
        *,
        policy: MlpWeights | PlannerSettings | None,
        num_paths: int,
        horizon: int,
        seed: int,
        start_states: str,
        label_with_planner: PlannerSettings | None,
        reward_source: str,
    ) -> Iterator[PhantomPath]:
        request = simulator_pb2.SimulateRequest(
            model_id=self._model_id,
            num_paths=num_paths,
            horizon=horizon,
            seed=seed,
            start_states=_START_STATES[start_states],
            reward_source=_REWARD_SOURCES[reward_source],
        )
        if policy is None:
            request.policy.random.SetInParent()
        elif isinstance(policy, MlpWeights):
            request.policy.mlp.CopyFrom(wire.mlp_to_proto(policy))
        else:
            request.policy.planner.CopyFrom(planner_to_proto(policy))
        if label_with_planner is not None:
            request.label_with_planner.CopyFrom(planner_to_proto(label_with_planner))
        if self.task is not None:
            request.task.CopyFrom(self.task)
        for message in self._paths.paths(request):
            self.paths_received += 1
            yield wire.path_from_proto(message)
