"""TrainerService: learns a LoRA-adapted policy from phantom paths streamed by the simulator."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping

import grpc
import numpy as np
import torch
from grpc_health.v1 import health

from plasma.core import blobs, grpc_client, grpc_server, service_main
from plasma.core import logging as plog
from plasma.core.errors import FailedPrecondition, InvalidArgument, bad_input, translate_errors
from plasma.core.streaming import Cancelled, ProgressJob
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from services.common import bundle, threads, wire
from services.common.types import EnvSpecArrays
from services.trainer import distill
from services.trainer.config import Config
from services.trainer.phantom_source import GrpcPhantomSource
from services.trainer.store import TrainerStore

log = plog.get(__name__)

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"].full_name
_LIMITS = {
    "hidden_size": 1024, "base_paths": 10_000, "adapter_rounds": 100, "paths_per_round": 10_000,
    "horizon": 1_000, "lora_rank": 256, "lora_alpha": 4096, "epochs": 1_000,
}
_REWARD_SOURCES = {
    simulator_pb2.REWARD_SOURCE_UNSPECIFIED: "",
    simulator_pb2.REWARD_SOURCE_TASK: "task",
    simulator_pb2.REWARD_SOURCE_LEARNED: "learned",
}



def distill_config(message: trainer_pb2.TrainConfig) -> distill.DistillConfig:
    """TrainConfig -> DistillConfig, zero fields taking the defaults; InvalidArgument names a bad field."""
    if message.algorithm not in (trainer_pb2.ALGORITHM_UNSPECIFIED, trainer_pb2.ALGORITHM_PLANNER_DISTILLATION):
        raise InvalidArgument(f"unknown algorithm {message.algorithm}; use ALGORITHM_PLANNER_DISTILLATION")
    if message.reward_source not in _REWARD_SOURCES:
        raise InvalidArgument(f"unknown reward_source {message.reward_source}")
    fields = wire.fields_within(message, _LIMITS, "train config")
    if fields.get("learning_rate", 0.0) < 0:
        raise InvalidArgument(f"learning_rate={fields['learning_rate']} must be positive (0 for the default)")
    fields.pop("algorithm", None)
    fields["reward_source"] = _REWARD_SOURCES[message.reward_source]
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
    def __init__(self, store: TrainerStore, simulator: grpc.Channel, config: Config) -> None:
        self._store = store
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
            simulator_pb2.GetWorldModelRequest(model_id=request.model_id), timeout=grpc_client.UNARY_DEADLINE_S
        ).model
        env = wire.env_spec_from_proto(model.env_spec)
        io = policy_io_for(env)
        run = trainer_pb2.Run(
            run_id=self._store.new_run_id(), model_id=request.model_id, state=trainer_pb2.RUN_STATE_RUNNING,
            config=request.config, env_spec=model.env_spec, create_time=grpc_server.now_timestamp(),
        )
        self._store.save_run(run)
        log.info("run=%s model=%s started", run.run_id, request.model_id)
        source = GrpcPhantomSource(self._simulator_channel, request.model_id, self._config.simulate_deadline_seconds)
        job = ProgressJob(lambda report: distill.train(source, io, cfg, report))
        started = time.monotonic()
        finished = False
        try:
            for progress in job.events():
                yield trainer_pb2.TrainResponse(progress=_progress_to_proto(progress))
            result = job.result
            self._store.save_bundle(run.run_id, _bundle_bytes(run, result))
            run.metrics.CopyFrom(trainer_pb2.RunMetrics(**{**result.metrics,
                                                           "training_seconds": time.monotonic() - started}))
            run.state = trainer_pb2.RUN_STATE_SUCCEEDED
            self._store.save_run(run)
            finished = True
            log.info("run=%s succeeded imagined_return=%.1f", run.run_id, run.metrics.imagined_return)
            yield trainer_pb2.TrainResponse(run=run)
        except (Cancelled, GeneratorExit):
            run.state = trainer_pb2.RUN_STATE_CANCELLED
            run.error = "the client cancelled the Train stream"
            raise
        except Exception as exc:
            run.state = trainer_pb2.RUN_STATE_FAILED
            run.error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            if not finished:
                self._store.save_run(run)
                log.warning("run=%s ended state=%s error=%s", run.run_id,
                            trainer_pb2.RunState.Name(run.state), run.error)

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


def _progress_to_proto(progress: distill.TrainProgress) -> trainer_pb2.TrainProgress:
    return trainer_pb2.TrainProgress(
        phase=progress.phase, round=progress.round, total_rounds=progress.total_rounds, loss=progress.loss,
        imagined_return=progress.imagined_return, planner_agreement=progress.planner_agreement,
        phantom_paths_used=progress.phantom_paths_used,
    )


def _bundle_bytes(run: trainer_pb2.Run, result: distill.DistillResult) -> bytes:
    provenance = {"run_id": run.run_id, "model_id": run.model_id, "torch": torch.__version__,
                  "numpy": np.__version__}
    return bundle.pack(bundle.PolicyBundle(
        spec=result.spec,
        base_state=result.base_state,
        adapter_files=bundle.adapter_files_of(result.peft_model),
        parity_observations=result.parity_observations,
        provenance=provenance,
    ))


def create_server(
    config: Config, simulator: grpc.Channel | None = None
) -> tuple[grpc.Server, int, health.HealthServicer]:
    threads.configure_torch(config.torch_threads)
    server = grpc_server.build_server(config.workers)
    health_servicer = grpc_server.add_health_and_reflection(server, [SERVICE_NAME])
    channel = simulator or grpc_client.channel(config.simulator_address)
    servicer = TrainerServicer(TrainerStore(config.store_dir), channel, config)
    trainer_pb2_grpc.add_TrainerServiceServicer_to_server(servicer, server)
    port = grpc_server.bind(server, config.address)
    return server, port, health_servicer


def serve(config: Config) -> None:
    server, port, health_servicer = create_server(config)
    server.start()
    grpc_server.set_serving(health_servicer, [SERVICE_NAME], True)
    log.info("trainer serving port=%d simulator=%s store=%s", port, config.simulator_address, config.store_dir)
    grpc_server.run_until_signal(server, config.grace_seconds, health_servicer)


_FLAGS = (
    service_main.Flag("--address", "PLASMA_TRAINER_ADDRESS", "host:port to listen on"),
    service_main.Flag("--simulator", "PLASMA_SIMULATOR_TARGET", "simulator host:port"),
    service_main.Flag("--store", "PLASMA_TRAINER_STORE", "store directory"),
)


def main(argv: list[str] | None = None, env: Mapping[str, str] = os.environ) -> None:
    service_main.run("Plasma trainer service", _FLAGS, Config.from_env, serve, argv, env)


if __name__ == "__main__":
    main()
