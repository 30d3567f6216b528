"""TrainerService: learns a LoRA-adapted policy from phantom paths streamed by the simulator."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

import grpc
from grpc_health.v1 import health

from plasma import blobs, channels, ids, metadata
from plasma import log as plog
from plasma.mbrl import threads
from plasma.mbrl.algorithms import distill
from plasma.mbrl.algorithms.base import PolicyIO, Progress
from plasma.server import grpc_server, service_main
from plasma.server.errors import (
    Cancelled,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    bad_input,
    translate_errors,
)
from plasma.server.observability import Observability
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc, task_pb2
from plasma.spaces import EnvSpec
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from services.common import bundle
from services.trainer import configs, metrics, recorder
from services.trainer.config import Config
from services.trainer.runs import Runs, Start
from services.trainer.store import TrainerStore

log = plog.get(__name__)

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name
# How often WatchRun checks that its client is still there while a run makes no progress.
_WATCH_POLL_S = 1.0
# How long a stopping trainer waits for its training threads to reach their next phantom path or event.
_TRAINING_STOP_WAIT_S = 60.0


def progress_to_proto(progress: Progress) -> trainer_pb2.TrainProgress:
    return recorder.progress_to_proto(progress)


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    """Translates requests into runs (runs.py owns their lifecycle) and runs into responses."""

    def __init__(self, store: TrainerStore, simulator: grpc.Channel, runs: Runs) -> None:
        self._store = store
        self._simulator = simulator_pb2_grpc.SimulatorServiceStub(simulator)
        self._runs = runs

    @translate_errors
    def Train(
        self, request: trainer_pb2.TrainRequest, context: grpc.ServicerContext
    ) -> Iterator[trainer_pb2.TrainResponse]:
        configs.distill_config(request.config)  # the request's own fields first, before any other call
        if not request.model_id:
            raise InvalidArgument("model_id is required: the simulator's world model to train against")
        ids.check_id("model_id", request.model_id)
        ids.check_id("base_run_id", request.base_run_id, optional=True)
        ids.check_name("task.name", request.task.name, optional=True)
        model = self._simulator.GetWorldModel(
            simulator_pb2.GetWorldModelRequest(model_id=request.model_id), timeout=channels.UNARY_DEADLINE_S
        ).model
        env = EnvSpec.from_proto(model.env_spec)
        with bad_input():
            io = PolicyIO.of(env)
        base_run_id, base = (self._base_policy(request.base_run_id, model, request.config.hidden_size)
                             if request.base_run_id else ("", None))
        task = request.task if request.HasField("task") else None
        if task is not None:
            self._check_task(request.model_id, task)
        plan = configs.plan(request.config, io, env.env_id, bool(base_run_id), task is not None)
        run = trainer_pb2.Run(
            run_id=self._store.new_run_id(), model_id=request.model_id, state=trainer_pb2.RUN_STATE_RUNNING,
            config=request.config, env_spec=model.env_spec, create_time=grpc_server.now_timestamp(),
            task=task, base_run_id=base_run_id,
            reward_source_used=configs.reward_source_used(request.config, task, env.env_id),
        )
        # The run belongs to its Train call: a client that has gone away (cancel, deadline, lost connection) gets no
        # run, and one that goes away later cancels it at once, not at its next event.
        if not context.is_active():
            raise Cancelled("the client went away before the run started; no run was created")
        handle = self._runs.start(Start(run, plan, io, base))
        log.info("run=%s model=%s base_run=%s started", run.run_id, request.model_id, base_run_id or "-")

        def cancel() -> None:
            self._runs.cancel(run.run_id, "the client cancelled the Train stream, or its deadline expired")

        if not context.add_callback(cancel):  # the call ended between the check above and the run's start
            cancel()
        # Named at once, so that a client whose stream breaks can follow this run with WatchRun (plasma.sdk).
        with contextlib.suppress(grpc.RpcError):  # raised when the client is gone: the callback cancels the run
            context.send_initial_metadata(((metadata.RUN_ID, run.run_id),))
        for progress in handle.events():
            yield trainer_pb2.TrainResponse(progress=progress_to_proto(progress))
        ended = handle.outcome()
        if ended.state == trainer_pb2.RUN_STATE_RUNNING:
            raise Unavailable(f"the trainer is stopping; run {run.run_id} resumes when it starts again (follow it "
                              "with WatchRun)")
        if ended.state == trainer_pb2.RUN_STATE_CANCELLED:
            raise Cancelled(f"run {run.run_id} was cancelled: {ended.error}")
        yield trainer_pb2.TrainResponse(run=ended)

    def _check_task(self, model_id: str, task: task_pb2.TaskSpec) -> None:
        """One 1-step phantom path under the task, before a run exists: the simulator validates the task
        against the world model's spec, and its error (INVALID_ARGUMENT naming the field) reaches the client."""
        probe = simulator_pb2.SimulateRequest(model_id=model_id, num_paths=1, horizon=1, task=task)
        probe.policy.random.SetInParent()
        for _ in self._simulator.Simulate(probe, timeout=channels.UNARY_DEADLINE_S):
            pass

    def _base_policy(self, base_run_id: str, model: simulator_pb2.WorldModel,
                     hidden_size: int) -> tuple[str, distill.BasePolicy]:
        """The base network of a succeeded run of a world model with the same spec, and the id of the run that
        trained it (an adapter run's base is its own base run's). The base decides the hidden layers."""
        try:
            base_run = self._store.run(base_run_id)
        except NotFound as exc:
            raise NotFound(f"base_run_id {base_run_id!r}: no such run; list runs with ListRuns") from exc
        if base_run.state != trainer_pb2.RUN_STATE_SUCCEEDED:
            raise FailedPrecondition(f"base run {base_run_id!r} is {trainer_pb2.RunState.Name(base_run.state)}; "
                                     "only a succeeded run's base policy can be adapted")
        if base_run.env_spec != model.env_spec:
            raise FailedPrecondition(f"base run {base_run_id!r} was trained for another environment spec than "
                                     f"world model {model.model_id!r}; adapt a run of a world model with the same "
                                     "observations and actions")
        policy = self._runs.base_policy(base_run_id)
        if hidden_size and any(size != hidden_size for size in policy.spec.hidden_sizes):
            raise InvalidArgument(f"hidden_size={hidden_size}, but base run {base_run_id!r} has hidden layers "
                                  f"{list(policy.spec.hidden_sizes)}; leave hidden_size 0 with base_run_id")
        return base_run.base_run_id or base_run_id, policy

    @translate_errors
    def WatchRun(
        self, request: trainer_pb2.WatchRunRequest, context: grpc.ServicerContext
    ) -> Iterator[trainer_pb2.WatchRunResponse]:
        ids.check_id("run_id", request.run_id)
        sent = 0
        while True:
            seen = self._store.updates()
            run = self._store.run(request.run_id)
            for event in run.history[sent:]:
                yield trainer_pb2.WatchRunResponse(progress=event)
            sent = len(run.history)
            if run.state != trainer_pb2.RUN_STATE_RUNNING:
                yield trainer_pb2.WatchRunResponse(run=run)
                return
            if not context.is_active():
                return
            self._store.wait_for_update(seen, timeout_s=_WATCH_POLL_S)

    @translate_errors
    def GetRun(self, request: trainer_pb2.GetRunRequest, context: grpc.ServicerContext) -> trainer_pb2.GetRunResponse:
        ids.check_id("run_id", request.run_id)
        return trainer_pb2.GetRunResponse(run=self._store.run(request.run_id))

    @translate_errors
    def ListRuns(
        self, request: trainer_pb2.ListRunsRequest, context: grpc.ServicerContext
    ) -> trainer_pb2.ListRunsResponse:
        return trainer_pb2.ListRunsResponse(runs=self._store.list_runs())

    @translate_errors
    def ExportPolicy(
        self, request: trainer_pb2.ExportPolicyRequest, context: grpc.ServicerContext
    ) -> Iterator[trainer_pb2.ExportPolicyResponse]:
        ids.check_id("run_id", request.run_id)
        data = self._store.bundle(request.run_id)
        yield from blobs.send(data, bundle.MEDIA_TYPE, trainer_pb2.ExportPolicyResponse)


def create_server(
    config: Config, simulator: grpc.Channel | None = None, observability: Observability | None = None
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Builds and binds the server (not started); `simulator` defaults to a channel to config.simulator_address;
    `observability` (default: off) counts and traces its calls, and those it makes to the simulator.
    Runs left RUNNING by a previous process resume in the background."""
    server, port, health_servicer, _ = _build(config, simulator, observability or Observability("trainer"))
    return server, port, health_servicer


def _build(config: Config, simulator: grpc.Channel | None,
           observability: Observability) -> tuple[grpc.Server, int, health.HealthServicer, Runs]:
    threads.configure_torch(config.torch_threads)
    server = grpc_server.build_server(config.workers, security=config.security, observability=observability)
    health_servicer = grpc_server.add_health_and_reflection(server, [SERVICE_NAME])
    channel = observability.channel(simulator or channels.channel(config.simulator_address, config.client_security))
    store = TrainerStore(config.store_dir)
    observability.register(metrics.collector(store))
    runs = Runs(store, channel, config)
    trainer_pb2_grpc.add_TrainerServiceServicer_to_server(TrainerServicer(store, channel, runs), server)
    runs.resume_interrupted()
    port = grpc_server.bind(server, config.address, config.security)
    return server, port, health_servicer, runs


def serve(config: Config, observability: Observability) -> None:
    server, port, health_servicer, runs = _build(config, None, observability)
    server.start()
    grpc_server.set_serving(health_servicer, [SERVICE_NAME], True)
    log.info("trainer serving port=%d simulator=%s store=%s security=%s", port, config.simulator_address,
             config.store_dir, config.security.describe())
    # Runs stop (and stay RUNNING, to resume) before the server drains, so their Train streams end promptly.
    grpc_server.run_until_signal(server, config.grace_seconds, health_servicer, on_signal=runs.stop,
                                 on_stop=lambda: runs.join(_TRAINING_STOP_WAIT_S))


_FLAGS = (
    service_main.Flag("--address", "PLASMA_TRAINER_ADDRESS", "host:port to listen on"),
    service_main.Flag("--simulator", "PLASMA_SIMULATOR_TARGET", "simulator host:port"),
    service_main.Flag("--store", "PLASMA_TRAINER_STORE", "store directory"),
    service_main.Flag("--metrics-address", "PLASMA_TRAINER_METRICS_ADDRESS", "host:port for Prometheus /metrics"),
)


def main(argv: list[str] | None = None, env: Mapping[str, str] = os.environ) -> None:
    service_main.run("Plasma trainer service", _FLAGS, Config.from_env, serve, argv, env, service="trainer")


if __name__ == "__main__":
    main()
