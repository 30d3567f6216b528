"""TrainerService: learns a LoRA-adapted policy from phantom paths streamed by the simulator."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping

import grpc
import numpy as np
import torch
from grpc_health.v1 import health

from plasma import blobs, channels
from plasma import log as plog
from plasma.mbrl import threads
from plasma.mbrl.algorithms import distill
from plasma.mbrl.types import EnvSpecArrays
from plasma.server import grpc_server, service_main
from plasma.server.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable, bad_input, translate_errors
from plasma.server.streaming import Cancelled, ProgressJob
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc, task_pb2
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from services.common import bundle, wire
from services.trainer import backprop_job, checkpoint
from services.trainer.config import Config
from services.trainer.phantom_source import GrpcPhantomSource
from services.trainer.recorder import RunRecorder, progress_to_proto
from services.trainer.stopping import StoppableSource, wait_for_training_threads
from services.trainer.store import TrainerStore

log = plog.get(__name__)

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name
_LIMITS = {
    "hidden_size": 1024, "base_paths": 10_000, "adapter_rounds": 100, "paths_per_round": 10_000,
    "horizon": 1_000, "lora_rank": 256, "lora_alpha": 4096, "epochs": 1_000,
}
# How long a resumed run waits for the simulator to come up, and how often WatchRun checks that its
# client is still there while a run makes no progress.
_SIMULATOR_WAIT_S = 300.0
_WATCH_POLL_S = 1.0
# How long a stopping trainer waits for its training threads to reach their next phantom path or event.
_TRAINING_STOP_WAIT_S = 60.0



def distill_config(message: trainer_pb2.TrainConfig) -> distill.DistillConfig:
    """TrainConfig -> DistillConfig, zero fields taking the defaults; InvalidArgument names a bad field."""
    if message.algorithm not in (trainer_pb2.ALGORITHM_UNSPECIFIED, trainer_pb2.ALGORITHM_PLANNER_DISTILLATION,
                                 trainer_pb2.ALGORITHM_MODEL_BACKPROP):
        raise InvalidArgument(f"unknown algorithm {message.algorithm}; use ALGORITHM_PLANNER_DISTILLATION or "
                              "ALGORITHM_MODEL_BACKPROP")
    if message.reward_source not in wire.REWARD_SOURCE_NAMES:
        raise InvalidArgument(f"unknown reward_source {message.reward_source}")
    fields = wire.fields_within(message, _LIMITS, "train config")
    if fields.get("learning_rate", 0.0) < 0:
        raise InvalidArgument(f"learning_rate={fields['learning_rate']} must be positive (0 for the default)")
    fields.pop("algorithm", None)
    for name in backprop_job.LIMITS:  # read by ALGORITHM_MODEL_BACKPROP only (backprop_job.config_of)
        fields.pop(name, None)
    fields["reward_source"] = wire.REWARD_SOURCE_NAMES[message.reward_source]
    if message.start_states not in wire.START_STATE_NAMES:
        raise InvalidArgument(f"unknown start_states {message.start_states}; use START_STATES_EPISODE_STARTS or "
                              "START_STATES_ANY")
    fields.pop("start_states", None)
    if message.start_states:
        fields["start_states"] = wire.START_STATE_NAMES[message.start_states]
    with bad_input():
        if "planner" in fields:
            fields["planner"] = distill.PlannerSettings(**wire.set_fields(message.planner))
        return distill.DistillConfig(**fields)


def policy_io_for(env: EnvSpecArrays) -> distill.PolicyIO:
    if env.observation.kind != "box":
        raise FailedPrecondition("the world model's observations are discrete; the policy needs a box observation")
    if env.action.kind == "discrete":
        return distill.PolicyIO(obs_dim=env.observation.flat_dim, action_kind="discrete", action_dim=env.action.n)
    return distill.PolicyIO(
        obs_dim=env.observation.flat_dim, action_kind="box", action_dim=env.action.flat_dim,
        action_low=env.action.low, action_high=env.action.high,
    )


class TrainerServicer(trainer_pb2_grpc.TrainerServiceServicer):
    def __init__(self, store: TrainerStore, simulator: grpc.Channel, config: Config,
                 stopping: threading.Event | None = None) -> None:
        self._store = store
        # Set when the process is told to stop: runs cut off then stay RUNNING and resume on the next start.
        self._stopping = stopping or threading.Event()
        self._simulator_channel = simulator
        self._simulator = simulator_pb2_grpc.SimulatorServiceStub(simulator)
        self._config = config

    @translate_errors
    def Train(
        self, request: trainer_pb2.TrainRequest, context: grpc.ServicerContext
    ) -> Iterator[trainer_pb2.TrainResponse]:
        cfg = distill_config(request.config)
        if not request.model_id:
            raise InvalidArgument("model_id is required: the simulator's world model to train against")
        model = self._simulator.GetWorldModel(
            simulator_pb2.GetWorldModelRequest(model_id=request.model_id), timeout=channels.UNARY_DEADLINE_S
        ).model
        env = wire.env_spec_from_proto(model.env_spec)
        io = policy_io_for(env)
        base_run_id, base = (self._base_policy(request.base_run_id, model, request.config.hidden_size)
                             if request.base_run_id else ("", None))
        task = request.task if request.HasField("task") else None
        if task is not None:
            self._check_task(request.model_id, task)
        backprop_cfg = (backprop_job.config_of(request.config, cfg, io, env.env_id, bool(base_run_id), task is not None)
                        if request.config.algorithm == trainer_pb2.ALGORITHM_MODEL_BACKPROP else None)
        run = trainer_pb2.Run(
            run_id=self._store.new_run_id(), model_id=request.model_id, state=trainer_pb2.RUN_STATE_RUNNING,
            config=request.config, env_spec=model.env_spec, create_time=grpc_server.now_timestamp(),
            task=task, base_run_id=base_run_id,
        )
        recorder = RunRecorder(self._store, run)
        recorder.start()
        log.info("run=%s model=%s base_run=%s started", run.run_id, request.model_id, base_run_id or "-")
        source = self._source(run)
        job = ProgressJob(
            backprop_job.job(self._simulator_channel, request.model_id, env.env_id, source, io, backprop_cfg)
            if backprop_cfg is not None
            else lambda report: distill.train(source, io, cfg, report, base=base, on_checkpoint=recorder.checkpoint)
        )
        started = time.monotonic()
        try:
            for progress in job.events():
                yield trainer_pb2.TrainResponse(progress=progress_to_proto(progress))
            assert job.result is not None
            self._succeed(recorder, job.result, started)
        except (Cancelled, GeneratorExit) as exc:
            if not self._stopping.is_set():
                recorder.end(trainer_pb2.RUN_STATE_CANCELLED, "the client cancelled the Train stream")
                raise
            log.info("run=%s left for the next start to resume: the trainer is stopping", run.run_id)
            if isinstance(exc, GeneratorExit):
                raise
            raise Unavailable(f"the trainer is stopping; run {run.run_id} resumes when it starts again (follow it "
                              "with WatchRun)") from exc
        except Exception as exc:
            recorder.end(trainer_pb2.RUN_STATE_FAILED, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if recorder.run.state not in (trainer_pb2.RUN_STATE_SUCCEEDED, trainer_pb2.RUN_STATE_RUNNING):
                log.warning("run=%s ended state=%s error=%s", run.run_id,
                            trainer_pb2.RunState.Name(recorder.run.state), recorder.run.error)
        yield trainer_pb2.TrainResponse(run=recorder.run)

    def _source(self, run: trainer_pb2.Run) -> distill.PhantomSource:
        source = GrpcPhantomSource(self._simulator_channel, run.model_id, self._config.simulate_deadline_seconds)
        source.task = run.task if run.HasField("task") else None
        return StoppableSource(source, self._stopping)

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
        policy = bundle.unpack(self._store.bundle(base_run_id))
        if hidden_size and any(size != hidden_size for size in policy.spec.hidden_sizes):
            raise InvalidArgument(f"hidden_size={hidden_size}, but base run {base_run_id!r} has hidden layers "
                                  f"{list(policy.spec.hidden_sizes)}; leave hidden_size 0 with base_run_id")
        return base_run.base_run_id or base_run_id, distill.BasePolicy(policy.spec, policy.base_state)

    def _succeed(self, recorder: RunRecorder, result: distill.DistillResult, started: float) -> None:
        run = recorder.run
        metrics = trainer_pb2.RunMetrics(**{**result.metrics, "training_seconds": time.monotonic() - started})
        policy = wire.mlp_to_proto(distill.mlp_weights_of(result.peft_model))
        recorder.succeed(_bundle_bytes(run, result), metrics, policy)
        log.info("run=%s succeeded imagined_return=%.1f", run.run_id, run.metrics.imagined_return)

    def resume_interrupted(self) -> None:
        """Resumes, one after another, the runs that were RUNNING when the trainer stopped, each from its last
        checkpoint (or from the start when it had none). Runs in a background thread."""
        for run in self._store.interrupted_runs():
            self._resume(run)

    def _resume(self, run: trainer_pb2.Run) -> None:
        recorder = RunRecorder(self._store, run)
        log.info("run=%s resuming after a restart checkpoint=%s/%d", run.run_id, run.checkpoint.phase or "-",
                 run.checkpoint.round)
        try:
            cfg = distill_config(run.config)
            if run.config.algorithm == trainer_pb2.ALGORITHM_MODEL_BACKPROP:
                raise FailedPrecondition("ALGORITHM_MODEL_BACKPROP keeps no checkpoints to resume from; train again")
            io = policy_io_for(wire.env_spec_from_proto(run.env_spec))
            base = None
            if run.base_run_id:
                policy = bundle.unpack(self._store.bundle(run.base_run_id))
                base = distill.BasePolicy(policy.spec, policy.base_state)
            data = self._store.checkpoint(run.run_id)
            state = checkpoint.unpack(data) if data is not None else None
            if state is not None:
                recorder.resume_at(state)
            # The simulator may be starting at the same time as the trainer.
            grpc.channel_ready_future(self._simulator_channel).result(timeout=_SIMULATOR_WAIT_S)
            started = time.monotonic()
            result = distill.train(self._source(run), io, cfg, base=base, resume_from=state,
                                   on_checkpoint=recorder.checkpoint)
            self._succeed(recorder, result, started)
        except Cancelled:
            log.info("run=%s left for the next start to resume: the trainer is stopping", run.run_id)
        except Exception as exc:
            recorder.end(trainer_pb2.RUN_STATE_FAILED, f"resuming after a trainer restart failed: "
                                                       f"{type(exc).__name__}: {exc}")
            log.warning("run=%s failed to resume: %s", run.run_id, exc)

    @translate_errors
    def WatchRun(
        self, request: trainer_pb2.WatchRunRequest, context: grpc.ServicerContext
    ) -> Iterator[trainer_pb2.WatchRunResponse]:
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
        data = self._store.bundle(request.run_id)
        yield trainer_pb2.ExportPolicyResponse(header=blobs.header_for(data, bundle.MEDIA_TYPE))
        for chunk in blobs.chunks(data):
            yield trainer_pb2.ExportPolicyResponse(chunk=chunk)


def _bundle_bytes(run: trainer_pb2.Run, result: distill.DistillResult) -> bytes:
    provenance = {"run_id": run.run_id, "model_id": run.model_id, "torch": torch.__version__,
                  "numpy": np.__version__}
    if run.base_run_id:
        provenance["base_run_id"] = run.base_run_id
    return bundle.pack(bundle.PolicyBundle(
        spec=result.spec,
        base_state=result.base_state,
        adapter_files=bundle.adapter_files_of(result.peft_model),
        parity_observations=result.parity_observations,
        provenance=provenance,
    ))


def create_server(
    config: Config, simulator: grpc.Channel | None = None, stopping: threading.Event | None = None
) -> tuple[grpc.Server, int, health.HealthServicer]:
    threads.configure_torch(config.torch_threads)
    server = grpc_server.build_server(config.workers)
    health_servicer = grpc_server.add_health_and_reflection(server, [SERVICE_NAME])
    channel = simulator or channels.channel(config.simulator_address)
    servicer = TrainerServicer(TrainerStore(config.store_dir), channel, config, stopping)
    trainer_pb2_grpc.add_TrainerServiceServicer_to_server(servicer, server)
    threading.Thread(target=servicer.resume_interrupted, name="resume-runs", daemon=True).start()
    port = grpc_server.bind(server, config.address)
    return server, port, health_servicer


def serve(config: Config) -> None:
    stopping = threading.Event()
    server, port, health_servicer = create_server(config, stopping=stopping)
    server.start()
    grpc_server.set_serving(health_servicer, [SERVICE_NAME], True)
    log.info("trainer serving port=%d simulator=%s store=%s", port, config.simulator_address, config.store_dir)
    grpc_server.run_until_signal(server, config.grace_seconds, health_servicer, on_signal=stopping.set,
                                 on_stop=lambda: wait_for_training_threads(_TRAINING_STOP_WAIT_S))


_FLAGS = (
    service_main.Flag("--address", "PLASMA_TRAINER_ADDRESS", "host:port to listen on"),
    service_main.Flag("--simulator", "PLASMA_SIMULATOR_TARGET", "simulator host:port"),
    service_main.Flag("--store", "PLASMA_TRAINER_STORE", "store directory"),
)


def main(argv: list[str] | None = None, env: Mapping[str, str] = os.environ) -> None:
    service_main.run("Plasma trainer service", _FLAGS, Config.from_env, serve, argv, env)


if __name__ == "__main__":
    main()
