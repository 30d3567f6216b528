"""CompilerService against real servers on port 0: a stand-in trainer serves real LoRA policy bundles."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from plasma import blobs, packet, parity, signing
from plasma.common.v1 import common_pb2
from plasma.compiler.v1 import compiler_pb2, compiler_pb2_grpc
from plasma.server import grpc_server
from plasma.server.settings import ConfigError
from plasma.spaces import Space
from plasma.trainer.v1 import trainer_pb2_grpc
from services.common import bundle
from services.compiler import export
from services.compiler import server as compiler_server
from services.compiler.config import Config
from tests.conftest import rpc_error, running
from tests.support import policies

T = 120.0
STAGES = ["fetch", "world", "merge", "export", "reference", "calibrate", "int8", "package"]
REPO_ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(scope="module")
def trainer() -> Iterator[tuple[str, policies.FakeTrainer]]:
    fake = policies.FakeTrainer()
    for kind in ("discrete", "box"):
        fake.add(policies.make_run(f"run-{kind}", kind), bundle.pack(policies.make_bundle(kind)))
    fake.add(policies.make_run("run-fragile", "discrete"), bundle.pack(policies.make_bundle(fragile=True)))
    fake.add(policies.make_run("run-undecided", "discrete"), bundle.pack(policies.make_bundle(logit_scale=0.05)))
    fake.add(policies.make_run("run-corrupt", "discrete"), bundle.pack(policies.make_bundle(seed=3)))
    # Fine-tuned on run-discrete's base: another adapter, same base weights.
    fake.add(policies.make_run("run-shared-base", "discrete"),
             bundle.pack(policies.make_bundle(seed=0, adapter_seed=5, adapter_std=0.3)))
    fake.corrupt.add("run-corrupt")

    def create() -> tuple[grpc.Server, int, object]:
        server = grpc_server.build_server(4)
        health_servicer = grpc_server.add_health_and_reflection(server, ["plasma.trainer.v1.TrainerService"])
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(fake, server)
        return server, grpc_server.bind(server, "127.0.0.1:0"), health_servicer

    with running(create, "plasma.trainer.v1.TrainerService") as address:
        yield address, fake


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compiler-store")


@contextmanager
def start_compiler(trainer_address: str, simulator_address: str, store_dir: Path) -> Iterator[str]:
    config = Config(address="127.0.0.1:0", trainer_address=trainer_address, simulator_address=simulator_address,
                    store_dir=store_dir)
    with running(lambda: compiler_server.create_server(config), compiler_server.SERVICE_NAME) as address:
        yield address


@pytest.fixture(scope="module")
def compiler(trainer: tuple[str, policies.FakeTrainer], worlds_simulator: str, store_dir: Path) -> Iterator[str]:
    with start_compiler(trainer[0], worlds_simulator, store_dir) as address:
        yield address


@pytest.fixture
def stub(compiler: str, channel_to: Callable[[str], grpc.Channel]) -> compiler_pb2_grpc.CompilerServiceStub:
    return compiler_pb2_grpc.CompilerServiceStub(channel_to(compiler))


def compile_run(stub: compiler_pb2_grpc.CompilerServiceStub, run_id: str, **request: object) -> list:
    return list(stub.Compile(compiler_pb2.CompileRequest(run_id=run_id, **request), timeout=T))


def download(stub: compiler_pb2_grpc.CompilerServiceStub, packet_id: str) -> tuple[object, bytes]:
    responses = list(stub.DownloadPacket(compiler_pb2.DownloadPacketRequest(packet_id=packet_id), timeout=T))
    header = responses[0].header
    return header, blobs.assemble(header, (r.chunk for r in responses[1:]))


@pytest.fixture(scope="module")
def compiled_discrete(compiler: str) -> list[compiler_pb2.CompileResponse]:
    with grpc.insecure_channel(compiler) as channel:
        return compile_run(compiler_pb2_grpc.CompilerServiceStub(channel), "run-discrete")


def test_health_is_serving(compiler: str, channel_to: Callable[[str], grpc.Channel]) -> None:
    health = health_pb2_grpc.HealthStub(channel_to(compiler))
    for service in ("", compiler_server.SERVICE_NAME):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=T)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def trusted(stub: compiler_pb2_grpc.CompilerServiceStub) -> dict[str, signing.VerifyingKey]:
    key = stub.GetSigningKey(compiler_pb2.GetSigningKeyRequest(), timeout=T)
    assert key.algorithm == "ed25519"
    public = signing.VerifyingKey(key.public_key)
    assert public.key_id == key.key_id
    return {key.key_id: public}


def test_compile_streams_every_stage_then_a_small_packet(compiled_discrete: list) -> None:
    assert [r.progress.stage for r in compiled_discrete[:-1]] == STAGES
    assert all(r.progress.message for r in compiled_discrete[:-1])
    record = compiled_discrete[-1].packet
    assert record.packet_id.startswith("pkt-") and record.run_id == "run-discrete"
    assert record.name == "CartPole-v1" and record.version == 1
    assert record.kind == common_pb2.PACKET_KIND_MERGED and not record.base_packet_id
    assert len(record.base_weights_sha256) == 64
    assert 3_000 < record.size_bytes < 10_000  # ~8 KB for a 4->64->64->2 policy
    assert record.precision == compiler_pb2.PRECISION_INT8 and not record.float_fallback
    assert [(a.precision, a.passed, a.reason) for a in record.attempts] == [(compiler_pb2.PRECISION_INT8, True, "")]
    assert record.model_bytes == record.int8_model_bytes < 0.65 * record.fp32_model_bytes
    # Closed loop: 16 paths of each graph, plus the trainer's 256 held-out phantom states.
    assert record.parity.num_observations > 256 and record.parity.closed_loop_paths == 16
    assert record.parity.agreement >= 0.95
    assert record.parity.closed_loop_return >= 0.95 * record.parity.fp32_closed_loop_return
    assert record.env_spec.env_id == "CartPole-v1"
    assert record.create_time.seconds > 0


def test_download_round_trip_matches_the_record(
    stub: compiler_pb2_grpc.CompilerServiceStub, compiled_discrete: list
) -> None:
    record = compiled_discrete[-1].packet
    header, data = download(stub, record.packet_id)
    assert header.media_type == packet.MEDIA_TYPE
    assert header.sha256 == record.sha256 == hashlib.sha256(data).hexdigest()
    assert header.size_bytes == record.size_bytes == len(data)
    verified = packet.verify(data, trusted(stub))  # signed by the key GetSigningKey names
    assert verified.key_id == record.signing_key_id
    manifest, model = verified.manifest, verified.payload
    # Format 2 packets name no run and no time: their bytes depend on their content (the record names the run).
    assert manifest.packet_id == record.packet_id and manifest.source_run_id == "" and manifest.created_at == ""
    assert (manifest.name, manifest.version, manifest.kind) == (record.name, record.version, packet.KIND_MODEL)
    assert manifest.observation_space.high[1] == float("inf")
    assert manifest.parity["agreement"] == pytest.approx(record.parity.agreement)
    assert manifest.parity["near_ties"] == record.parity.near_ties
    assert manifest.parity["closed_loop"]["fp32_return"] == pytest.approx(record.parity.fp32_closed_loop_return)
    assert manifest.quantization["fp32_model_bytes"] == record.fp32_model_bytes
    assert manifest.quantization["precision"] == "int8" and manifest.quantization["ladder"][0]["passed"]
    assert len(model) == record.model_bytes
    assert manifest.format_version == 2 and manifest.self_test is not None
    assert manifest.self_test.min_agreement == 0.95 and manifest.self_test.observations.shape == (48, 4)
    assert stub.GetPacket(compiler_pb2.GetPacketRequest(packet_id=record.packet_id), timeout=T).packet == record


def test_packet_model_has_no_exporter_metadata_or_source_paths(
    stub: compiler_pb2_grpc.CompilerServiceStub, compiled_discrete: list
) -> None:
    _, data = download(stub, compiled_discrete[-1].packet.packet_id)
    _, model = packet.read(data)
    for leak in (REPO_ROOT.encode(), b"site-packages", b"stack_trace", b"pkg.torch"):
        assert leak not in model


def test_int8_packet_is_close_to_the_merged_torch_policy(
    stub: compiler_pb2_grpc.CompilerServiceStub, compiled_discrete: list
) -> None:
    _, data = download(stub, compiled_discrete[-1].packet.packet_id)
    _, model = packet.read(data)
    merged = policies.make_bundle("discrete").adapted_network().merge_and_unload().eval()
    obs = policies.observations("discrete", 2000, seed=7)
    with torch.no_grad():
        torch_out = merged(torch.from_numpy(obs)).numpy()
        torch_action = merged.act(torch.from_numpy(obs)).numpy()
    action, out = ort.InferenceSession(model).run(None, {packet.INPUT_NAME: obs})
    assert np.mean(action == torch_action) >= 0.95
    # Activation ranges are calibrated on real and visited states: compare the error's bulk to the logits' range.
    error, scale = np.abs(out - torch_out), np.abs(torch_out).max()
    assert error.mean() <= 0.02 * scale
    assert np.percentile(error, 99) <= 0.1 * scale


def test_compile_box_policy_squashes_into_bounds(stub: compiler_pb2_grpc.CompilerServiceStub) -> None:
    record = compile_run(stub, "run-box")[-1].packet
    assert record.parity.agreement >= 0.95
    _, data = download(stub, record.packet_id)
    manifest, model = packet.read(data)
    assert manifest.action_space == Space(kind="box", shape=(1,), low=(-2.0,), high=(2.0,))
    action, _ = ort.InferenceSession(model).run(None, {packet.INPUT_NAME: 100 * policies.observations("box", 64, 1)})
    assert action.shape == (64, 1) and action.dtype == np.float32
    assert np.all(np.abs(action) <= 2.0)


def test_the_generated_dev_key_is_kept_in_the_store(
    stub: compiler_pb2_grpc.CompilerServiceStub, store_dir: Path
) -> None:
    reply = stub.GetSigningKey(compiler_pb2.GetSigningKeyRequest(), timeout=T)
    assert reply.generated
    stored = signing.SigningKey.from_file(store_dir / compiler_server.DEV_KEY_FILE)
    assert stored.key_id == reply.key_id and stored.public.raw == reply.public_key
    assert (store_dir / compiler_server.DEV_KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_a_configured_key_signs_instead(
    trainer: tuple[str, policies.FakeTrainer], tmp_path: Path
) -> None:
    key_file = tmp_path / "production.pem"
    key, _ = signing.load_or_create(key_file)
    config = Config(address="127.0.0.1:0", trainer_address=trainer[0], store_dir=tmp_path / "store",
                    signing_key=key_file)
    with running(lambda: compiler_server.create_server(config), compiler_server.SERVICE_NAME) as address, \
            grpc.insecure_channel(address) as channel:
        reply = compiler_pb2_grpc.CompilerServiceStub(channel).GetSigningKey(compiler_pb2.GetSigningKeyRequest(),
                                                                            timeout=T)
    assert (reply.key_id, reply.generated) == (key.key_id, False)
    assert not (tmp_path / "store" / compiler_server.DEV_KEY_FILE).exists()
    key_file.write_text("not a key")
    with pytest.raises(ConfigError, match="PLASMA_COMPILER_SIGNING_KEY"):
        compiler_server.create_server(config)


def test_versions_increase_per_name(stub: compiler_pb2_grpc.CompilerServiceStub) -> None:
    first = compile_run(stub, "run-box", name="lineage-a")[-1].packet
    second = compile_run(stub, "run-box", name="lineage-a")[-1].packet
    other = compile_run(stub, "run-box", name="lineage-b")[-1].packet
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.packet_id != second.packet_id and first.sha256 != second.sha256


def test_adaptable_packet_then_an_adapter_only_packet_for_it(stub: compiler_pb2_grpc.CompilerServiceStub) -> None:
    keys = trusted(stub)
    base = compile_run(stub, "run-discrete", name="adaptable", kind=common_pb2.PACKET_KIND_ADAPTABLE)[-1].packet
    assert (base.kind, base.version) == (common_pb2.PACKET_KIND_ADAPTABLE, 1)
    base_manifest, base_model = packet.read(download(stub, base.packet_id)[1])
    assert {t.name for t in base_manifest.adapter_slots} == {f"lora_{ab}_{i}" for ab in "ab" for i in range(3)}
    assert base.parity.agreement >= 0.95

    responses = compile_run(stub, "run-shared-base", kind=common_pb2.PACKET_KIND_ADAPTER,
                            base_packet_id=base.packet_id)
    assert [r.progress.stage for r in responses[:-1]] == [
        "fetch", "world", "merge", "export", "reference", "adapter", "package"]
    adapter = responses[-1].packet
    assert adapter.precision == base.precision == compiler_pb2.PRECISION_INT8
    assert (adapter.kind, adapter.name, adapter.version) == (common_pb2.PACKET_KIND_ADAPTER, "adaptable", 2)
    assert adapter.base_packet_id == base.packet_id and adapter.base_weights_sha256 == base.base_weights_sha256
    verified = packet.verify(download(stub, adapter.packet_id)[1], keys)
    manifest = verified.manifest
    assert manifest.kind == packet.KIND_ADAPTER and manifest.adapter_rank == 4
    assert manifest.base == packet.BaseRef(base.packet_id, "adaptable", 1, base_manifest.payload.sha256)
    assert len(verified.payload) < 8_000  # the adapter alone, not a model
    # Base graph + adapter, in onnxruntime, acts like the fine-tuned run's merged torch network.
    merged = policies.make_bundle(seed=0, adapter_seed=5, adapter_std=0.3).adapted_network().merge_and_unload()
    obs = policies.observations("discrete", 1000, seed=8)
    with torch.no_grad():
        expected = merged.eval().act(torch.from_numpy(obs)).numpy()
    action = export.Graph(base_model, 1, adapter=verified.payload).act(obs)
    assert np.mean(action == expected) >= 0.95
    assert np.mean(export.Graph(base_model, 1).act(obs) != action) > 0  # the adapter changes decisions


def test_adapter_packets_need_a_matching_adaptable_base(
    stub: compiler_pb2_grpc.CompilerServiceStub, compiled_discrete: list
) -> None:
    adapter = common_pb2.PACKET_KIND_ADAPTER
    missing = rpc_error(lambda: compile_run(stub, "run-shared-base", kind=adapter))
    assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT and "base_packet_id" in missing.details()
    merged_id = compiled_discrete[-1].packet.packet_id
    not_adaptable = rpc_error(lambda: compile_run(stub, "run-shared-base", kind=adapter, base_packet_id=merged_id))
    assert not_adaptable.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "PACKET_KIND_ADAPTABLE" in not_adaptable.details()
    base = compile_run(stub, "run-discrete", name="adaptable-2", kind=common_pb2.PACKET_KIND_ADAPTABLE)[-1].packet
    # run-fragile's base weights differ from run-discrete's.
    other = rpc_error(lambda: compile_run(stub, "run-fragile", kind=adapter, base_packet_id=base.packet_id))
    assert other.code() == grpc.StatusCode.FAILED_PRECONDITION and "other base weights" in other.details()
    stray = rpc_error(lambda: compile_run(stub, "run-discrete", base_packet_id=base.packet_id))
    assert stray.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unknown_run_is_not_found(stub: compiler_pb2_grpc.CompilerServiceStub) -> None:
    error = rpc_error(lambda: compile_run(stub, "run-doesnotexist"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "run-doesnotexist" in error.details()


def test_missing_run_id_and_bad_min_agreement_are_invalid(stub: compiler_pb2_grpc.CompilerServiceStub) -> None:
    assert rpc_error(lambda: compile_run(stub, "")).code() == grpc.StatusCode.INVALID_ARGUMENT
    error = rpc_error(lambda: compile_run(stub, "run-discrete", min_agreement=1.5))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "min_agreement" in error.details()


def test_the_ladder_climbs_past_the_int8_rungs_a_policy_breaks(stub: compiler_pb2_grpc.CompilerServiceStub) -> None:
    # run-fragile reads one input scaled ~1000x the others: one int8 scale for the whole input rounds the inputs
    # that matter to zero, with or without a float output layer. fp16 weights keep it.
    record = compile_run(stub, "run-fragile")[-1].packet
    assert record.precision == compiler_pb2.PRECISION_FP16
    tried = [(a.precision, a.passed) for a in record.attempts]
    assert tried == [(compiler_pb2.PRECISION_INT8, False), (compiler_pb2.PRECISION_INT8_FLOAT_OUTPUT, False),
                     (compiler_pb2.PRECISION_FP16, True)]
    for refused in record.attempts[:2]:
        assert "decision agreement" in refused.reason and refused.agreement < 0.95
    manifest, _ = packet.read(download(stub, record.packet_id)[1])
    assert manifest.quantization["precision"] == "fp16"
    assert [(a["precision"], a["passed"]) for a in manifest.quantization["ladder"]] == [
        ("int8", False), ("int8-float-output", False), ("fp16", True)]
    assert record.parity.agreement >= 0.95 and record.model_bytes < record.fp32_model_bytes


def test_a_forced_precision_that_fails_is_refused_and_stores_nothing(
    stub: compiler_pb2_grpc.CompilerServiceStub,
) -> None:
    before = stub.ListPackets(compiler_pb2.ListPacketsRequest(), timeout=T).packets
    error = rpc_error(lambda: compile_run(stub, "run-fragile", precision=compiler_pb2.PRECISION_INT8))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no precision keeps parity" in error.details() and "decision agreement" in error.details()
    assert "precision unspecified" in error.details()  # what to do
    assert stub.ListPackets(compiler_pb2.ListPacketsRequest(), timeout=T).packets == before


def test_near_ties_are_counted_apart_not_as_failures(stub: compiler_pb2_grpc.CompilerServiceStub) -> None:
    # run-undecided's logits are scaled down 20x: wherever its decision is close, fp32 itself is undecided.
    record = compile_run(stub, "run-undecided", precision=compiler_pb2.PRECISION_INT8_DYNAMIC)[-1].packet
    assert record.precision == compiler_pb2.PRECISION_INT8_DYNAMIC
    assert record.parity.near_ties > 100
    assert record.parity.agreement >= 0.95
    manifest, model = packet.read(download(stub, record.packet_id)[1])
    # Where fp32 is undecided, int8 rounding flips decisions: counting them would refuse a working packet.
    test = manifest.self_test
    fp32 = export.Graph(export.export_onnx(
        policies.make_bundle(logit_scale=0.05).adapted_network().merge_and_unload().eval()), 1)
    states = np.concatenate([test.observations, policies.observations("discrete", 4000, seed=9)])
    reference_action, reference_output = fp32.run(states)
    undecided = ~parity.decisive(reference_output, discrete=True)
    flipped = export.Graph(model, 1).act(states) != reference_action
    assert undecided.sum() > 50 and flipped[undecided].any()
    assert np.mean(flipped) > np.mean(flipped[~undecided])


def test_the_parity_states_and_the_fallback_are_recorded(stub: compiler_pb2_grpc.CompilerServiceStub) -> None:
    record = compile_run(stub, "run-discrete", name="with-fallback", float_fallback=True)[-1].packet
    assert record.float_fallback and record.precision == compiler_pb2.PRECISION_INT8
    verified = packet.verify(download(stub, record.packet_id)[1], trusted(stub))
    assert verified.manifest.has_fallback and verified.fallback is not None
    assert verified.manifest.quantization["fallback"]["precision"] == "fp32"
    assert len(verified.fallback) < record.fp32_model_bytes  # the same graph, shorter names
    adaptable = rpc_error(lambda: compile_run(stub, "run-discrete", kind=common_pb2.PACKET_KIND_ADAPTABLE,
                                              float_fallback=True))
    assert adaptable.code() == grpc.StatusCode.INVALID_ARGUMENT and "float_fallback" in adaptable.details()


def test_corrupted_bundle_stream_is_data_loss(stub: compiler_pb2_grpc.CompilerServiceStub) -> None:
    error = rpc_error(lambda: compile_run(stub, "run-corrupt"))
    assert error.code() == grpc.StatusCode.DATA_LOSS
    assert "sha256" in error.details()


@pytest.mark.parametrize(("packet_id", "code"), [("pkt-000000000000", grpc.StatusCode.NOT_FOUND),
                                                ("../../etc", grpc.StatusCode.INVALID_ARGUMENT)])
def test_unknown_packet_is_not_found(
    stub: compiler_pb2_grpc.CompilerServiceStub, packet_id: str, code: grpc.StatusCode
) -> None:
    get = rpc_error(lambda: stub.GetPacket(compiler_pb2.GetPacketRequest(packet_id=packet_id), timeout=T))
    assert get.code() == code and packet_id in get.details()
    assert rpc_error(lambda: download(stub, packet_id)).code() == code


def test_empty_packet_id_is_invalid(stub: compiler_pb2_grpc.CompilerServiceStub) -> None:
    empty = rpc_error(lambda: stub.GetPacket(compiler_pb2.GetPacketRequest(), timeout=T))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_restarted_compiler_keeps_its_packets(
    trainer: tuple[str, policies.FakeTrainer], worlds_simulator: str, store_dir: Path, compiled_discrete: list,
    stub: compiler_pb2_grpc.CompilerServiceStub,
) -> None:
    before = stub.ListPackets(compiler_pb2.ListPacketsRequest(), timeout=T).packets
    assert compiled_discrete[-1].packet in before
    _, original = download(stub, compiled_discrete[-1].packet.packet_id)
    with start_compiler(trainer[0], worlds_simulator, store_dir) as address, \
            grpc.insecure_channel(address) as channel:
        restarted = compiler_pb2_grpc.CompilerServiceStub(channel)
        assert restarted.ListPackets(compiler_pb2.ListPacketsRequest(), timeout=T).packets == before
        assert download(restarted, compiled_discrete[-1].packet.packet_id)[1] == original
        assert trusted(restarted) == trusted(stub)  # the same development key after a restart


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PLASMA_COMPILER_ADDRESS", "no-port"), ("PLASMA_TRAINER_TARGET", "trainer"),
     ("PLASMA_COMPILER_TORCH_THREADS", "0"), ("PLASMA_COMPILER_FETCH_DEADLINE_SECONDS", "soon"),
     ("PLASMA_COMPILER_SIGNING_KEY", "/no/such/key.pem")],
)
def test_bad_config_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Config.from_env({variable: value})


def test_default_threads_do_not_oversubscribe_two_cores() -> None:
    assert Config.from_env({}).torch_threads == 1
