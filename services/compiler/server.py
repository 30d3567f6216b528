"""CompilerService: pulls a run's policy bundle from the trainer and turns it into a verified packet."""

from __future__ import annotations

import dataclasses
import datetime
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health

from plasma import blobs, channels, ids, packet, signing
from plasma import log as plog
from plasma.common.v1 import common_pb2
from plasma.compiler.v1 import compiler_pb2, compiler_pb2_grpc
from plasma.mbrl import threads
from plasma.mbrl.policy_net import PolicySpec
from plasma.server import grpc_server, service_main, settings
from plasma.server.errors import FailedPrecondition, InvalidArgument, NotFound, translate_errors
from plasma.server.observability import Observability
from plasma.server.streaming import ProgressJob
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc, task_pb2
from plasma.spaces import EnvSpec
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from services.common import bundle, simulator_client
from services.compiler import closed_loop_inputs, export, metrics, pipeline, precision, profiles
from services.compiler.config import Config
from services.compiler.store import PacketStore

log = plog.get(__name__)

SERVICE_NAME = compiler_pb2.DESCRIPTOR.services_by_name["CompilerService"].full_name
DEFAULT_MIN_AGREEMENT = 0.95
DEV_KEY_FILE = "signing/dev-ed25519.pem"
_KINDS = {common_pb2.PACKET_KIND_MERGED, common_pb2.PACKET_KIND_ADAPTABLE, common_pb2.PACKET_KIND_ADAPTER}
PRECISIONS = {
    compiler_pb2.PRECISION_INT8: precision.INT8,
    compiler_pb2.PRECISION_INT8_FLOAT_OUTPUT: precision.INT8_FLOAT_OUTPUT,
    compiler_pb2.PRECISION_FP16: precision.FP16,
    compiler_pb2.PRECISION_FP32: precision.FP32,
    compiler_pb2.PRECISION_INT8_DYNAMIC: precision.INT8_DYNAMIC,
}
PRECISION_ENUMS = {name: value for value, name in PRECISIONS.items()}
PROFILES = {
    compiler_pb2.PROFILE_UNSPECIFIED: profiles.DEFAULT,
    compiler_pb2.PROFILE_EDGE: profiles.EDGE,
    compiler_pb2.PROFILE_MOBILE: profiles.MOBILE,
    compiler_pb2.PROFILE_SERVER: profiles.SERVER,
}
GRAPH_FORMATS = {profiles.ONNX: compiler_pb2.GRAPH_FORMAT_ONNX, profiles.ORT: compiler_pb2.GRAPH_FORMAT_ORT}
_MAX_COMPRESSION_LEVEL = 9


def load_signing_key(config: Config) -> tuple[signing.SigningKey, bool]:
    """The configured signing key, or the store's development key (created on first use); (key, generated)."""
    if config.signing_key is not None:
        try:
            return signing.SigningKey.from_file(config.signing_key), False
        except signing.SigningKeyError as exc:
            raise settings.ConfigError(f"PLASMA_COMPILER_SIGNING_KEY: {exc}") from exc
    key, created = signing.load_or_create(config.store_dir / DEV_KEY_FILE)
    if created:
        log.warning("generated a development signing key at %s (set PLASMA_COMPILER_SIGNING_KEY for real devices)",
                    config.store_dir / DEV_KEY_FILE)
    return key, True


def _progress(stage: str, message: str) -> compiler_pb2.CompileResponse:
    return compiler_pb2.CompileResponse(progress=compiler_pb2.CompileProgress(stage=stage, message=message))


def _options(request: compiler_pb2.CompileRequest, kind: int, config: Config, seed: int) -> pipeline.Settings:
    if not 0.0 <= request.min_agreement <= 1.0:
        raise InvalidArgument(f"min_agreement={request.min_agreement} must be in [0, 1] (0 for the default 0.95)")
    if request.precision and request.precision not in PRECISIONS:
        raise InvalidArgument(f"precision {request.precision} is not a Precision")
    if request.float_fallback and kind != common_pb2.PACKET_KIND_MERGED:
        raise InvalidArgument("float_fallback is for PACKET_KIND_MERGED packets: an adaptable base's adapters and "
                              "an adapter packet need the base graph itself")
    profile = _profile(request, kind)
    if request.size_budget_bytes < 0:
        raise InvalidArgument(f"size_budget_bytes={request.size_budget_bytes} must be >= 0 (0: no limit)")
    level = request.compression_level if request.HasField("compression_level") else profile.compression_level
    if level is not None and not 0 <= level <= _MAX_COMPRESSION_LEVEL:
        raise InvalidArgument(f"compression_level={level} must be 0 (none) to {_MAX_COMPRESSION_LEVEL} (smallest)")
    return pipeline.Settings(min_agreement=request.min_agreement or DEFAULT_MIN_AGREEMENT,
                             threads=config.torch_threads, precision=PRECISIONS.get(request.precision),
                             float_fallback=request.float_fallback, seed=seed, profile=profile,
                             compression_level=level, size_budget_bytes=request.size_budget_bytes)


def _profile(request: compiler_pb2.CompileRequest, kind: int) -> profiles.Profile:
    """The request's profile, refusing the combinations it cannot honour."""
    profile = PROFILES.get(request.profile)
    names = ", ".join(compiler_pb2.Profile.Name(v) for v in PROFILES if v != compiler_pb2.PROFILE_UNSPECIFIED)
    if profile is None:
        raise InvalidArgument(f"profile {request.profile} is not a Profile: use one of {names} (or leave it unset)")
    if profile is profiles.DEFAULT:
        return profile
    if kind == common_pb2.PACKET_KIND_ADAPTER:
        raise InvalidArgument("an adapter packet runs on its base's graph and takes its base's profile: leave "
                              "profile unset (compile the ADAPTABLE base with the profile instead)")
    if profile is profiles.MOBILE and (kind != common_pb2.PACKET_KIND_MERGED or request.float_fallback):
        raise InvalidArgument("profile PROFILE_MOBILE makes one ORT-format graph for PACKET_KIND_MERGED packets: "
                              "no LoRA slots, no float_fallback (a minimal build loads no ONNX fallback)")
    chosen = PRECISIONS.get(request.precision)
    if chosen is not None and chosen not in profile.rungs:
        raise InvalidArgument(f"profile {compiler_pb2.Profile.Name(request.profile)} is "
                              f"{', '.join(profile.rungs)} only, not precision {chosen}")
    return profile


def default_name(dataset_name: str, env_id: str, task: task_pb2.TaskSpec | None) -> str:
    """A packet's lineage name when the request gives none: its data's (the dataset's name, else the environment
    id), then the task's unless the run optimized the environment's own objective: "my-plant/track-obs1=0.5"."""
    name = dataset_name or env_id or "policy"
    objective = task.WhichOneof("objective") if task is not None else None
    if task is not None and objective not in (None, "environment"):
        name = f"{name}/{task.name or objective}"
    return name[:ids.MAX_LENGTH]  # a valid name cut short is still a valid name


def check_spaces(env: EnvSpec, spec: PolicySpec) -> None:
    """The run's environment and the bundle's network must describe the same interface."""
    if env.observation.kind != "box" or env.observation.flat_dim != spec.obs_dim:
        raise FailedPrecondition(f"the run's observation space ({env.observation.kind}, {env.observation.flat_dim} "
                                 f"values) does not fit the policy's input of {spec.obs_dim} values")
    if env.action.kind != spec.action_kind or env.action.flat_dim != spec.action_dim:
        raise FailedPrecondition(f"the run's action space ({env.action.kind}, {env.action.flat_dim}) does not fit "
                                 f"the policy's output ({spec.action_kind}, {spec.action_dim})")


class CompilerServicer(compiler_pb2_grpc.CompilerServiceServicer):
    def __init__(self, store: PacketStore, trainer: trainer_pb2_grpc.TrainerServiceStub, simulator: grpc.Channel,
                 config: Config, signer: signing.SigningKey, generated_key: bool = False) -> None:
        self._store = store
        self._trainer = trainer
        self._simulator = simulator
        self._config = config
        self._signer = signer
        self._generated_key = generated_key
        # Export and quantization are CPU-bound: one compilation at a time keeps the shared cores usable.
        self._compile_lock = threading.Lock()
        # Version assignment and storing happen together, so two packets of a name never share a version.
        self._package_lock = threading.Lock()
        self.figures = metrics.Figures()

    @translate_errors
    def Compile(
        self, request: compiler_pb2.CompileRequest, context: grpc.ServicerContext
    ) -> Iterator[compiler_pb2.CompileResponse]:
        yield from self.figures.counted(self._compile(request))

    def _compile(self, request: compiler_pb2.CompileRequest) -> Iterator[compiler_pb2.CompileResponse]:
        if not request.run_id:
            raise InvalidArgument("run_id is required: the trainer run whose policy to compile")
        ids.check_id("run_id", request.run_id)
        ids.check_name("name", request.name, optional=True)
        ids.check_id("base_packet_id", request.base_packet_id, optional=True)
        kind = request.kind or common_pb2.PACKET_KIND_MERGED
        if kind not in _KINDS:
            raise InvalidArgument(f"kind {request.kind} is not a PacketKind")
        options = _options(request, kind, self._config, seed=0)
        base = self._base(request.base_packet_id) if kind == common_pb2.PACKET_KIND_ADAPTER else None
        if base is None and request.base_packet_id:
            raise InvalidArgument("base_packet_id is only for kind PACKET_KIND_ADAPTER")
        run = self._get_run(request.run_id)
        options = dataclasses.replace(options, seed=int(run.config.seed))
        data = self._fetch_bundle(request.run_id)
        yield _progress("fetch", f"policy bundle of run {run.run_id}: {len(data)} bytes, verified sha256")
        try:
            policy = bundle.unpack(data)
        except ValueError as exc:
            raise FailedPrecondition(f"run {run.run_id}'s policy bundle is unusable: {exc}") from exc
        env = EnvSpec.from_proto(run.env_spec)
        check_spaces(env, policy.spec)
        weights_sha256 = export.base_weights_sha256(policy)
        if base is not None and base[0].base_weights_sha256 != weights_sha256:
            raise FailedPrecondition(
                f"run {run.run_id} was trained on other base weights (sha256 {weights_sha256[:16]}…) than base "
                f"packet {base[0].packet_id} ({base[0].base_weights_sha256[:16]}…); compile a merged or adaptable "
                "packet instead"
            )

        scenario, real_observations = closed_loop_inputs.gather(self._simulator, run, env)
        name = request.name or (base[0].name if base is not None else self._default_name(run))
        yield _progress("world", f"world model {run.model_id} and {len(real_observations)} real observations "
                                 f"from the simulator, for the parity check in closed loop")

        def work(report: pipeline.Report) -> pipeline.Compiled:
            with self._compile_lock:
                if base is not None:
                    return pipeline.compile_adapter(policy, base[1], scenario, options, report)
                return pipeline.compile_model(policy, scenario, real_observations, options, report,
                                              adaptable=kind == common_pb2.PACKET_KIND_ADAPTABLE)

        job = ProgressJob(work)
        for stage, message in job.events():
            yield _progress(stage, message)
        assert job.result is not None
        record = self._package(job.result, run, env, name, kind, weights_sha256, base[0] if base is not None else None,
                               options)
        yield _progress("package", f"packet {record.packet_id} {record.name} v{record.version}: "
                                   f"{record.size_bytes} bytes, signed by key {record.signing_key_id}, stored")
        log.info("packet=%s name=%s version=%d kind=%s precision=%s run=%s size_bytes=%d agreement=%.4f",
                 record.packet_id, record.name, record.version, common_pb2.PacketKind.Name(kind),
                 job.result.precision, run.run_id, record.size_bytes, record.parity.agreement)
        yield compiler_pb2.CompileResponse(packet=record)

    def _base(self, base_packet_id: str) -> tuple[compiler_pb2.Packet, pipeline.Base]:
        if not base_packet_id:
            raise InvalidArgument("base_packet_id is required for kind PACKET_KIND_ADAPTER: the adaptable packet "
                                  "the adapter is for")
        record, data = self._store.read(base_packet_id)
        if record.kind != common_pb2.PACKET_KIND_ADAPTABLE:
            raise FailedPrecondition(f"base packet {base_packet_id} is {common_pb2.PacketKind.Name(record.kind)}; "
                                     "adapters apply only to PACKET_KIND_ADAPTABLE packets")
        manifest, model = packet.read(data)
        base_precision = str(manifest.quantization.get("precision", precision.INT8_DYNAMIC))
        return record, pipeline.Base(model_onnx=model, slots=manifest.adapter_slots, precision=base_precision)

    def _default_name(self, run: trainer_pb2.Run) -> str:
        model = simulator_client.fetch_model_record(self._simulator, run.model_id)
        dataset = simulator_pb2_grpc.SimulatorServiceStub(self._simulator).GetDataset(
            simulator_pb2.GetDatasetRequest(dataset_id=model.dataset_id), timeout=channels.UNARY_DEADLINE_S).dataset
        return default_name(dataset.name, run.env_spec.env_id, run.task if run.HasField("task") else None)

    def _get_run(self, run_id: str) -> trainer_pb2.Run:
        try:
            run = self._trainer.GetRun(trainer_pb2.GetRunRequest(run_id=run_id),
                                       timeout=channels.UNARY_DEADLINE_S).run
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"the trainer has no run {run_id!r}: {exc.details()}") from exc
            raise
        if run.state != trainer_pb2.RUN_STATE_SUCCEEDED:
            raise FailedPrecondition(f"run {run_id!r} is {trainer_pb2.RunState.Name(run.state)}; "
                                     "only a succeeded run can be compiled")
        return run

    def _fetch_bundle(self, run_id: str) -> bytes:
        stream = self._trainer.ExportPolicy(trainer_pb2.ExportPolicyRequest(run_id=run_id),
                                            timeout=self._config.fetch_deadline_seconds)
        return blobs.receive(stream, f"the trainer's ExportPolicy stream for run {run_id!r}")

    def _package(self, compiled: pipeline.Compiled, run: trainer_pb2.Run, env: EnvSpec, name: str,
                 kind: common_pb2.PacketKind, weights_sha256: str,
                 base: compiler_pb2.Packet | None, options: pipeline.Settings) -> compiler_pb2.Packet:
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        create_time = timestamp_pb2.Timestamp()
        create_time.FromDatetime(now)
        if base is not None:
            manifest_fields: dict[str, Any] = dict(
                kind=packet.KIND_ADAPTER, adapter_parameters=compiled.adapter_tensors, adapter_rank=compiled.lora_rank,
                base=packet.BaseRef(packet_id=base.packet_id, name=base.name, version=base.version,
                                    model_sha256=packet.read(self._store.read(base.packet_id)[1])[0].payload.sha256))
        else:
            manifest_fields = dict(kind=packet.KIND_MODEL, opset=export.OPSET, adapter_slots=compiled.adapter_tensors,
                                   model_file=packet.MODEL_ORT_FILE if compiled.graph_format == profiles.ORT
                                   else packet.MODEL_FILE)
        records: dict[str, Any] = pipeline.packet_records(compiled)
        chosen = compiled.verdict
        with self._package_lock:
            version = self._store.next_version(name)
            data = packet.build(
                packet_id="", name=name, version=version,
                env_id=env.env_id,
                observation_space=env.observation, action_space=env.action,
                payload=compiled.payload, signer=self._signer, versions=export.versions(),
                self_test=compiled.self_test, fallback=compiled.fallback,
                compression_level=options.compression_level, **manifest_fields, **records,
            )
            if options.size_budget_bytes and len(data) > options.size_budget_bytes:
                raise FailedPrecondition(_over_budget(len(data), compiled, options))
            packet_id = packet.read(data)[0].packet_id  # derived from the content: same policy, same bytes
            record = compiler_pb2.Packet(
                packet_id=packet_id, name=name, sha256=blobs.sha256_hex(data), size_bytes=len(data),
                fp32_model_bytes=len(compiled.fp32_onnx), int8_model_bytes=len(compiled.payload),
                model_bytes=len(compiled.payload),
                parity=compiler_pb2.ParityReport(
                    num_observations=chosen.agreement.states, agreement=chosen.agreement.share,
                    max_abs_diff=chosen.agreement.max_abs_diff, near_ties=chosen.agreement.near_ties,
                    fp32_closed_loop_return=compiled.reference_return, closed_loop_return=chosen.closed_loop_return,
                    closed_loop_paths=compiled.closed_loop_paths),
                run_id=run.run_id, env_spec=run.env_spec, create_time=create_time, version=version, kind=kind,
                base_packet_id=base.packet_id if base is not None else "", signing_key_id=self._signer.key_id,
                base_weights_sha256=weights_sha256, precision=PRECISION_ENUMS[compiled.precision],
                attempts=[_attempt_message(a) for a in compiled.attempts],
                float_fallback=compiled.fallback is not None,
                profile=next(v for v, p in PROFILES.items() if p is options.profile),
                compression=_compression_report(compiled, options),
            )
            self._store.save(record, data)
        return record

    @translate_errors
    def GetPacket(
        self, request: compiler_pb2.GetPacketRequest, context: grpc.ServicerContext
    ) -> compiler_pb2.GetPacketResponse:
        ids.check_id("packet_id", request.packet_id)
        return compiler_pb2.GetPacketResponse(packet=self._store.get(request.packet_id))

    @translate_errors
    def ListPackets(
        self, request: compiler_pb2.ListPacketsRequest, context: grpc.ServicerContext
    ) -> compiler_pb2.ListPacketsResponse:
        return compiler_pb2.ListPacketsResponse(packets=self._store.list_packets())

    @translate_errors
    def DownloadPacket(
        self, request: compiler_pb2.DownloadPacketRequest, context: grpc.ServicerContext
    ) -> Iterator[compiler_pb2.DownloadPacketResponse]:
        ids.check_id("packet_id", request.packet_id)
        _, data = self._store.read(request.packet_id)
        yield from blobs.send(data, packet.MEDIA_TYPE, compiler_pb2.DownloadPacketResponse)

    @translate_errors
    def GetSigningKey(
        self, request: compiler_pb2.GetSigningKeyRequest, context: grpc.ServicerContext
    ) -> compiler_pb2.GetSigningKeyResponse:
        return compiler_pb2.GetSigningKeyResponse(algorithm=signing.ALGORITHM, key_id=self._signer.key_id,
                                                  public_key=self._signer.public.raw, generated=self._generated_key)


def _attempt_message(attempt: pipeline.Attempt) -> compiler_pb2.PrecisionAttempt:
    verdict = attempt.verdict
    return compiler_pb2.PrecisionAttempt(
        precision=PRECISION_ENUMS[attempt.precision], passed=verdict.passed, reason=verdict.reason,
        agreement=verdict.agreement.share, closed_loop_return=verdict.closed_loop_return,
        model_bytes=attempt.model_bytes, self_test_agreement=verdict.self_test.share)


def _compression_report(compiled: pipeline.Compiled, options: pipeline.Settings) -> compiler_pb2.CompressionReport:
    packaging = compiled.packaging
    before = packaging.unpruned if packaging is not None else compiled.payload
    return compiler_pb2.CompressionReport(
        graph_format=GRAPH_FORMATS[compiled.graph_format], compression_level=profiles.level(options.compression_level),
        sparsity=packaging.sparsity if packaging is not None else 0.0,
        pruning_attempts=[compiler_pb2.PruningAttempt(
            sparsity=a.sparsity, passed=a.verdict.passed, reason=a.verdict.reason, agreement=a.verdict.agreement.share,
            closed_loop_return=a.verdict.closed_loop_return, model_bytes=a.model_bytes)
            for a in (packaging.pruning if packaging is not None else ())],
        model_bytes_before=len(before), model_bytes_after=len(compiled.payload),
        deflated_model_bytes_before=profiles.deflated_size(before, None),
        deflated_model_bytes_after=profiles.deflated_size(compiled.payload, options.compression_level),
        required_operators=packaging.required_operators if packaging is not None else ())


def _over_budget(size: int, compiled: pipeline.Compiled, options: pipeline.Settings) -> str:
    """Why the packet does not fit its budget, and what would make a smaller one."""
    packaging = compiled.packaging
    sparsity = packaging.sparsity if packaging is not None else 0.0
    level = profiles.level(options.compression_level)
    advice = []
    if options.precision is not None and options.precision != precision.INT8:
        advice.append("leave precision unset so the ladder can try int8")
    if not options.profile.prune and compiled.kind == packet.KIND_MODEL:
        advice.append("compile with profile PROFILE_EDGE (int8 first, pruning, compression level 9)")
    elif level < _MAX_COMPRESSION_LEVEL:
        advice.append(f"compression_level {_MAX_COMPRESSION_LEVEL}")
    advice.append(f"lower min_agreement (now {options.min_agreement:.2f}) so a smaller graph can pass")
    advice.append(f"raise size_budget_bytes to at least {size}")
    return (f"no packet that keeps parity fits size_budget_bytes={options.size_budget_bytes}: the smallest is "
            f"{size} bytes ({compiled.precision}, {sparsity:.0%} of weights pruned, {compiled.graph_format}, "
            f"compression level {level}, profile {options.profile.name}); to fit, " + "; or ".join(advice))


def create_server(
    config: Config, trainer: grpc.Channel | None = None, simulator: grpc.Channel | None = None,
    observability: Observability | None = None,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Builds and binds the server (not started); `trainer` and `simulator` default to channels to
    config.trainer_address and config.simulator_address; `observability` (default: off) counts and traces its
    calls, and those it makes to them."""
    observability = observability or Observability("compiler")
    threads.configure_torch(config.torch_threads)
    server = grpc_server.build_server(config.workers, security=config.security, observability=observability)
    health_servicer = grpc_server.add_health_and_reflection(server, [SERVICE_NAME])
    stub = trainer_pb2_grpc.TrainerServiceStub(
        observability.channel(trainer or channels.channel(config.trainer_address, config.client_security)))
    store = PacketStore(config.store_dir)
    signer, generated = load_signing_key(config)
    # The public half is what edge runtimes must trust (PLASMA_EDGE_TRUSTED_KEYS); it is no secret.
    log.info("signing key_id=%s public_key=%s generated=%s", signer.key_id, signer.public.base64, generated)
    to_simulator = observability.channel(
        simulator or channels.channel(config.simulator_address, config.client_security))
    servicer = CompilerServicer(store, stub, to_simulator, config, signer, generated)
    observability.register(servicer.figures.collect)
    compiler_pb2_grpc.add_CompilerServiceServicer_to_server(servicer, server)
    port = grpc_server.bind(server, config.address, config.security)
    return server, port, health_servicer


def serve(config: Config, observability: Observability) -> None:
    server, port, health_servicer = create_server(config, observability=observability)
    server.start()
    grpc_server.set_serving(health_servicer, [SERVICE_NAME], True)
    log.info("compiler serving port=%d trainer=%s simulator=%s store=%s security=%s", port, config.trainer_address,
             config.simulator_address, config.store_dir, config.security.describe())
    grpc_server.run_until_signal(server, config.grace_seconds, health_servicer)


_FLAGS = (
    service_main.Flag("--address", "PLASMA_COMPILER_ADDRESS", "host:port to listen on"),
    service_main.Flag("--trainer", "PLASMA_TRAINER_TARGET", "trainer host:port"),
    service_main.Flag("--simulator", "PLASMA_SIMULATOR_TARGET", "simulator host:port"),
    service_main.Flag("--store", "PLASMA_COMPILER_STORE", "store directory"),
    service_main.Flag("--signing-key", "PLASMA_COMPILER_SIGNING_KEY", "ed25519 private key file"),
    service_main.Flag("--metrics-address", "PLASMA_COMPILER_METRICS_ADDRESS", "host:port for Prometheus /metrics"),
)


def main(argv: list[str] | None = None, env: Mapping[str, str] = os.environ) -> None:
    service_main.run("Plasma compiler service", _FLAGS, Config.from_env, serve, argv, env, service="compiler")


if __name__ == "__main__":
    main()
