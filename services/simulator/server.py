"""SimulatorService: real data in, world models fitted, phantom paths streamed out."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping

import grpc
from grpc_health.v1 import health

from plasma import blobs, ids
from plasma import log as plog
from plasma.mbrl import collect, diagnosis, fitting, quality, threads
from plasma.mbrl.models import archive, ensemble
from plasma.mbrl.types import Transitions
from plasma.server import grpc_server, service_main
from plasma.server.errors import FailedPrecondition, InvalidArgument, bad_input, translate_errors
from plasma.server.observability import Observability
from plasma.server.streaming import ProgressJob
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from plasma.spaces import EnvSpec
from services.common import transitions_archive, wire
from services.simulator import datasets, fine_tune, forecasts, jobs, metrics, requests, upload
from services.simulator.config import Config
from services.simulator.store import SimulatorStore, new_id

log = plog.get(__name__)

SERVICE_NAME = simulator_pb2.DESCRIPTOR.services_by_name["SimulatorService"].full_name
MAX_COLLECT_STEPS = 1_000_000
_FIT_LIMITS = {
    "ensemble_size": 32, "hidden_size": 2048, "num_layers": 8, "train_steps": 200_000, "batch_size": 65_536,
}


def _fit_config(message: simulator_pb2.WorldModelConfig) -> ensemble.WorldModelConfig:
    fields = wire.fields_within(message, _FIT_LIMITS, "world model")
    if not 0.0 <= fields.get("holdout_fraction", 0.0) <= 0.5:
        raise InvalidArgument(
            f"holdout_fraction={fields['holdout_fraction']} must be in (0, 0.5] (0 for the default 0.2)"
        )
    if fields.get("learning_rate", 0.0) < 0:
        raise InvalidArgument(f"learning_rate={fields['learning_rate']} must be positive (0 for the default)")
    with bad_input():
        return ensemble.WorldModelConfig(**fields)


def _execution(config: Config) -> requests.Execution:
    """Where the batches run: on the Ray cluster at PLASMA_RAY_ADDRESS, else in this process. Ray is imported only
    when it is asked for."""
    if not config.ray_address:
        return requests.Execution(config.batch_paths)
    from services.simulator.ray_batches import RayBatches

    return requests.Execution(config.batch_paths, RayBatches(config.ray_address, config.torch_threads))


class SimulatorServicer(simulator_pb2_grpc.SimulatorServiceServicer):
    def __init__(self, store: SimulatorStore, config: Config) -> None:
        self._store = store
        self._device = config.device
        self._models = requests.ModelCache(store, config.model_cache_size, config.device)
        self._execution = _execution(config)
        self._jobs = jobs.SimulationJobs(
            config.store_dir / "simulations", store, self._models, config.max_simulations, self._execution
        )
        self.figures = metrics.Figures(self._jobs)

    @translate_errors
    def CollectTransitions(
        self, request: simulator_pb2.CollectTransitionsRequest, context: grpc.ServicerContext
    ) -> Iterator[simulator_pb2.CollectTransitionsResponse]:
        if not request.env_id:
            raise InvalidArgument("env_id is required, e.g. 'CartPole-v1'")
        ids.check_name("env_id", request.env_id)
        ids.check_id("append_to_dataset_id", request.append_to_dataset_id, optional=True)
        ids.check_name("name", request.name, optional=True)
        if not 1 <= request.num_steps <= MAX_COLLECT_STEPS:
            raise InvalidArgument(f"num_steps={request.num_steps} must be in 1..{MAX_COLLECT_STEPS}")
        if not 0.0 <= request.epsilon <= 1.0:
            raise InvalidArgument(f"epsilon={request.epsilon} must be in [0, 1]")
        policy = None
        if request.collection_policy == simulator_pb2.COLLECTION_POLICY_MLP:
            if not request.HasField("policy"):
                raise InvalidArgument("collection_policy MLP needs `policy` with the MLP's weights")
            policy = requests.decode_mlp(request.policy)
        base = self._store.transitions(request.append_to_dataset_id) if request.append_to_dataset_id else None
        name = self._store.dataset(request.append_to_dataset_id).name if base else request.name or request.env_id

        def job(report: Callable[[tuple[int, int, int]], None]) -> tuple[EnvSpec, Transitions]:
            return collect.collect(
                request.env_id, int(request.num_steps), int(request.seed), policy=policy,
                epsilon=float(request.epsilon), progress=lambda done, total, eps: report((done, total, eps)),
            )

        progress_job = ProgressJob(job)
        with bad_input():
            try:
                for done, total, episodes in progress_job.events():
                    yield simulator_pb2.CollectTransitionsResponse(
                        progress=simulator_pb2.CollectionProgress(
                            steps_done=done, steps_total=total, episodes_done=episodes
                        )
                    )
            except collect.EnvironmentUnavailable as exc:  # registered, but e.g. MuJoCo is not installed here
                raise FailedPrecondition(str(exc)) from exc
        assert progress_job.result is not None
        spec, transitions = progress_job.result
        if base is not None:
            if base[0] != spec:
                raise FailedPrecondition(
                    f"dataset {request.append_to_dataset_id!r} was collected from a different environment "
                    f"({base[0].env_id or 'logged data'}) than {request.env_id}"
                )
            transitions = datasets.concatenate(base[1], transitions)
        dataset = self._store.save_dataset(
            datasets.describe(
                new_id("ds"), spec, transitions, name=name, origin="gymnasium",
                parent_dataset_id=request.append_to_dataset_id, create_time=grpc_server.now_timestamp(),
                seed=request.seed,
            ),
            transitions,
        )
        log.info("dataset=%s env=%s transitions=%d", dataset.dataset_id, spec.env_id, len(transitions))
        yield simulator_pb2.CollectTransitionsResponse(dataset=dataset)

    @translate_errors
    def GetDataset(
        self, request: simulator_pb2.GetDatasetRequest, context: grpc.ServicerContext
    ) -> simulator_pb2.GetDatasetResponse:
        ids.check_id("dataset_id", request.dataset_id)
        return simulator_pb2.GetDatasetResponse(dataset=self._store.dataset(request.dataset_id))

    @translate_errors
    def ListDatasets(
        self, request: simulator_pb2.ListDatasetsRequest, context: grpc.ServicerContext
    ) -> simulator_pb2.ListDatasetsResponse:
        ids.check_name("name", request.name, optional=True)
        return simulator_pb2.ListDatasetsResponse(datasets=self._store.list_datasets(request.name))

    @translate_errors
    def UploadTransitions(
        self, request_iterator: Iterator[simulator_pb2.UploadTransitionsRequest], context: grpc.ServicerContext
    ) -> Iterator[simulator_pb2.UploadTransitionsResponse]:
        yield from upload.upload(self._store, request_iterator)

    @translate_errors
    def FitWorldModel(
        self, request: simulator_pb2.FitWorldModelRequest, context: grpc.ServicerContext
    ) -> Iterator[simulator_pb2.FitWorldModelResponse]:
        ids.check_id("dataset_id", request.dataset_id)
        ids.check_id("init_from_model_id", request.init_from_model_id, optional=True)
        config = _fit_config(request.config)
        spec, transitions = self._store.transitions(request.dataset_id)
        parent = None
        if request.init_from_model_id:
            parent, config = fine_tune.parent_model(
                self._models, request.init_from_model_id, spec, request.config, config
            )
        started = time.monotonic()
        fit_job = ProgressJob(lambda report: fitting.fit(spec, transitions, config, report, init=parent,
                                                         device=self._device))
        with bad_input():
            for step in fit_job.events():
                yield simulator_pb2.FitWorldModelResponse(
                    progress=simulator_pb2.FitProgress(
                        step=step.step, total_steps=step.total_steps, train_nll=step.train_nll,
                        holdout_nll=step.holdout_nll, holdout_obs_mse=step.holdout_obs_mse,
                    )
                )
        assert fit_job.result is not None
        fitted, metrics = fit_job.result
        reports = [simulator_pb2.QualityReport(stage=stage, quality=wire.quality_to_proto(measured))
                   for stage, measured in quality.fit_reports(
                       fitted, parent, transitions, fitting.holdout_rows(transitions, config), request.dataset_id)]
        for report in reports:
            yield simulator_pb2.FitWorldModelResponse(quality=report)
        model = simulator_pb2.WorldModel(
            model_id=new_id("wm"),
            dataset_id=request.dataset_id,
            env_spec=spec.to_proto(),
            config=simulator_pb2.WorldModelConfig(**vars(config)),
            metrics=simulator_pb2.WorldModelMetrics(**metrics),
            create_time=grpc_server.now_timestamp(),
            fit_seconds=time.monotonic() - started,
            quality=reports[-1].quality,
            parent_model_id=request.init_from_model_id,
            warnings=[wire.model_warning_to_proto(found) for found in (
                *diagnosis.data_findings(transitions, spec.action.n if spec.action.kind == "discrete" else 0),
                *diagnosis.fit_findings(metrics))],
        )
        self._store.save_model(model, fitted.save)
        log.info("model=%s dataset=%s holdout_obs_mse=%.5f", model.model_id, request.dataset_id,
                 metrics["holdout_obs_mse"])
        yield simulator_pb2.FitWorldModelResponse(model=model)

    @translate_errors
    def GetWorldModel(
        self, request: simulator_pb2.GetWorldModelRequest, context: grpc.ServicerContext
    ) -> simulator_pb2.GetWorldModelResponse:
        ids.check_id("model_id", request.model_id)
        return simulator_pb2.GetWorldModelResponse(model=self._store.model(request.model_id))

    @translate_errors
    def ListWorldModels(
        self, request: simulator_pb2.ListWorldModelsRequest, context: grpc.ServicerContext
    ) -> simulator_pb2.ListWorldModelsResponse:
        return simulator_pb2.ListWorldModelsResponse(models=self._store.list_models())

    @translate_errors
    def ExportWorldModel(
        self, request: simulator_pb2.ExportWorldModelRequest, context: grpc.ServicerContext
    ) -> Iterator[simulator_pb2.ExportWorldModelResponse]:
        ids.check_id("model_id", request.model_id)
        data = archive.pack(self._store.model_weights_dir(request.model_id))
        yield from blobs.send(data, archive.MEDIA_TYPE, simulator_pb2.ExportWorldModelResponse)

    @translate_errors
    def ExportDataset(
        self, request: simulator_pb2.ExportDatasetRequest, context: grpc.ServicerContext
    ) -> Iterator[simulator_pb2.ExportDatasetResponse]:
        ids.check_id("dataset_id", request.dataset_id)
        data = self._store.transitions_file(request.dataset_id).read_bytes()
        yield from blobs.send(data, transitions_archive.MEDIA_TYPE, simulator_pb2.ExportDatasetResponse)

    @translate_errors
    def Simulate(
        self, request: simulator_pb2.SimulateRequest, context: grpc.ServicerContext
    ) -> Iterator[simulator_pb2.SimulateResponse]:
        ids.check_id("model_id", request.model_id)
        paths = requests.open_paths(request, self._store, self._models, self._execution)
        with bad_input():
            for index, path in enumerate(paths):
                self.figures.streamed()
                yield simulator_pb2.SimulateResponse(path=wire.path_to_proto(path, index))

    @translate_errors
    def StartSimulation(
        self, request: simulator_pb2.StartSimulationRequest, context: grpc.ServicerContext
    ) -> simulator_pb2.StartSimulationResponse:
        ids.check_id("request.model_id", request.request.model_id)
        return simulator_pb2.StartSimulationResponse(simulation=self._jobs.start(request.request))

    @translate_errors
    def GetSimulation(
        self, request: simulator_pb2.GetSimulationRequest, context: grpc.ServicerContext
    ) -> simulator_pb2.GetSimulationResponse:
        ids.check_id("simulation_id", request.simulation_id)
        return simulator_pb2.GetSimulationResponse(simulation=self._jobs.get(request.simulation_id))

    @translate_errors
    def ListSimulations(
        self, request: simulator_pb2.ListSimulationsRequest, context: grpc.ServicerContext
    ) -> simulator_pb2.ListSimulationsResponse:
        return simulator_pb2.ListSimulationsResponse(simulations=self._jobs.list_all())

    @translate_errors
    def CancelSimulation(
        self, request: simulator_pb2.CancelSimulationRequest, context: grpc.ServicerContext
    ) -> simulator_pb2.CancelSimulationResponse:
        ids.check_id("simulation_id", request.simulation_id)
        return simulator_pb2.CancelSimulationResponse(simulation=self._jobs.cancel(request.simulation_id))

    @translate_errors
    def Subscribe(
        self, request: simulator_pb2.SubscribeRequest, context: grpc.ServicerContext
    ) -> Iterator[simulator_pb2.SubscribeResponse]:
        ids.check_id("simulation_id", request.simulation_id)
        yield from self._jobs.subscribe(request.simulation_id, request.from_sequence, context.is_active)

    @translate_errors
    def ForecastErrors(
        self, request: simulator_pb2.ForecastErrorsRequest, context: grpc.ServicerContext
    ) -> simulator_pb2.ForecastErrorsResponse:
        ids.check_id("model_id", request.model_id)
        return forecasts.to_proto(forecasts.forecast(request, self._store, self._models, context.is_active))


def create_server(
    config: Config, observability: Observability | None = None
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Builds and binds the server (not started); `observability` (default: off) counts and traces its calls."""
    observability = observability or Observability("simulator")
    threads.configure_torch(config.torch_threads)
    server = grpc_server.build_server(config.workers, security=config.security, observability=observability)
    health_servicer = grpc_server.add_health_and_reflection(server, [SERVICE_NAME])
    store = SimulatorStore(config.store_dir)
    servicer = SimulatorServicer(store, config)
    observability.register(servicer.figures.collect)
    simulator_pb2_grpc.add_SimulatorServiceServicer_to_server(servicer, server)
    port = grpc_server.bind(server, config.address, config.security)
    return server, port, health_servicer


def serve(config: Config, observability: Observability) -> None:
    server, port, health_servicer = create_server(config, observability)
    server.start()
    grpc_server.set_serving(health_servicer, [SERVICE_NAME], True)
    log.info("simulator serving port=%d store=%s security=%s", port, config.store_dir, config.security.describe())
    grpc_server.run_until_signal(server, config.grace_seconds, health_servicer)


_FLAGS = (
    service_main.Flag("--address", "PLASMA_SIMULATOR_ADDRESS", "host:port to listen on"),
    service_main.Flag("--store", "PLASMA_SIMULATOR_STORE", "store directory"),
    service_main.Flag("--metrics-address", "PLASMA_SIMULATOR_METRICS_ADDRESS", "host:port for Prometheus /metrics"),
)


def main(argv: list[str] | None = None, env: Mapping[str, str] = os.environ) -> None:
    service_main.run("Plasma simulator service", _FLAGS, Config.from_env, serve, argv, env, service="simulator")


if __name__ == "__main__":
    main()
