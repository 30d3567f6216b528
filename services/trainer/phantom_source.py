"""Phantom paths from the simulator over gRPC: the trainer's only source of experience."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import grpc

from plasma.mbrl.models.ensemble import EnsembleWorldModel
from plasma.mbrl.planning import PlannerConfig
from plasma.mbrl.tasks import Task
from plasma.mbrl.types import MlpWeights, PhantomPath
from plasma.reconnect import DEFAULT_RECONNECT, Reconnect
from plasma.simulator.v1 import simulator_pb2, task_pb2
from plasma.subscription import DurablePaths
from services.common import simulator_client, wire


class GrpcPhantomSource:
    """Starts one durable simulation per call and decodes its paths as they arrive over Subscribe, resuming
    where it stopped when the stream breaks (plasma.subscription)."""

    def __init__(
        self, channel: grpc.Channel, model_id: str, deadline_seconds: float, reconnect: Reconnect = DEFAULT_RECONNECT,
        task: task_pb2.TaskSpec | None = None,
    ) -> None:
        self._paths = DurablePaths(channel, deadline_seconds, reconnect)
        self._model_id = model_id
        self.paths_received = 0
        # The run's objective (TrainRequest.task), sent with every request; None: the environment's own.
        self._task = task

    @property
    def reconnects(self) -> int:
        """Resubscriptions after broken streams so far."""
        return self._paths.reconnects

    def abort(self) -> None:
        """Ends the simulation being streamed and the stream itself, from any thread: the training thread,
        waiting for its next path, gets CANCELLED at once."""
        self._paths.abort()

    def simulate(
        self,
        *,
        policy: MlpWeights | PlannerConfig | None,
        num_paths: int,
        horizon: int,
        seed: int,
        start_states: str,
        label_with_planner: PlannerConfig | None,
        reward_source: str,
    ) -> Iterator[PhantomPath]:
        request = simulator_pb2.SimulateRequest(
            model_id=self._model_id,
            num_paths=num_paths,
            horizon=horizon,
            seed=seed,
            start_states=wire.start_states_to_proto(start_states),
            reward_source=wire.reward_source_to_proto(reward_source),
        )
        if policy is None:
            request.policy.random.SetInParent()
        elif isinstance(policy, MlpWeights):
            request.policy.mlp.CopyFrom(wire.mlp_to_proto(policy))
        else:
            request.policy.planner.CopyFrom(wire.planner_to_proto(policy))
        if label_with_planner is not None:
            request.label_with_planner.CopyFrom(wire.planner_to_proto(label_with_planner))
        if self._task is not None:
            request.task.CopyFrom(self._task)
        for message in self._paths.paths(request):
            self.paths_received += 1
            yield wire.path_from_proto(message)


class GrpcModelSource(GrpcPhantomSource):
    """For algorithms that differentiate through the dynamics: also the world model itself, fetched with
    ExportWorldModel when first asked for, and the task that scores it."""

    def __init__(self, channel: grpc.Channel, model_id: str, deadline_seconds: float, task: Task | None) -> None:
        super().__init__(channel, model_id, deadline_seconds)
        self._channel = channel
        self._scoring_task = task

    @functools.cached_property
    def model(self) -> EnsembleWorldModel:
        return simulator_client.fetch_model(self._channel, self._model_id)

    @property
    def task(self) -> Task | None:
        return self._scoring_task
