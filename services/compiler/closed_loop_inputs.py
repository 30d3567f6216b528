"""What the parity gate needs from the simulator for one run: its world model, the objective it trained on,
start states from the real data and the real observations to calibrate on."""

from __future__ import annotations

import grpc
import numpy as np

from plasma.mbrl import tasks
from plasma.server.errors import FailedPrecondition, bad_input
from plasma.spaces import EnvSpec
from plasma.trainer.v1 import trainer_pb2
from services.common import simulator_client, wire
from services.compiler.closed_loop import Scenario

# The trainer's default path length (TrainConfig.horizon = 0).
_DEFAULT_HORIZON = 200


def gather(simulator: grpc.Channel, run: trainer_pb2.Run, env: EnvSpec) -> tuple[Scenario, np.ndarray]:
    """(the closed-loop scenario, the real observations [n, obs_dim]) of `run`."""
    try:
        record = simulator_client.fetch_model_record(simulator, run.model_id)
        model = simulator_client.fetch_model(simulator, run.model_id)
        data = simulator_client.fetch_transitions(simulator, record.dataset_id)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise FailedPrecondition(
                f"the simulator no longer holds world model {run.model_id!r} of run {run.run_id!r} or its data, "
                f"which the parity check runs the policy in: {exc.details()}"
            ) from exc
        raise
    config = run.config
    horizon = config.horizon or _DEFAULT_HORIZON
    which = wire.start_states_from_proto(config.start_states)
    scenario = Scenario.draw(model, _task(run, env), data, which, horizon, seed=int(config.seed))
    return scenario, data.obs


def _task(run: trainer_pb2.Run, env: EnvSpec) -> tasks.Task | None:
    """The objective the run trained on: its task, else the environment's known one unless it learned the
    reward; None means the world model's learned heads (as in the trainer's phantom paths)."""
    if run.HasField("task"):
        return wire.task_from_proto(run.task, env)
    known = tasks.task_for(env.env_id)
    with bad_input():
        source = tasks.resolve_reward_source(wire.reward_source_from_proto(run.config.reward_source), known,
                                             env.env_id)
    return known if source == "task" else None
