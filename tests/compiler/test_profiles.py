"""Device profiles through a real compiler on port 0 (stand-in trainer, real simulator): each profile's packet,
what its manifest records, an edge runtime serving it, and the refusals (size budget, unknown profile)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import onnx
import pytest
from onnx import numpy_helper

from edge_runtime import server as edge_server
from edge_runtime.config import Config as EdgeConfig
from plasma import blobs, cli, packet, signing, tensors
from plasma.compiler.v1 import compiler_pb2, compiler_pb2_grpc
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.sdk import calls
from plasma.server import grpc_server
from plasma.trainer.v1 import trainer_pb2_grpc
from services.common import bundle
from services.compiler import gate, ort_format, profiles
from services.compiler import server as compiler_server
from services.compiler.config import Config
from tests.conftest import rpc_error, running
from tests.support import policies
from tests.support.edge import load

T = 120.0
Compiled = tuple[compiler_pb2.Packet, bytes]


@pytest.fixture(scope="module")
def compiler(worlds_simulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    fake = policies.FakeTrainer()
    fake.add(policies.make_run("run-discrete", "discrete"), bundle.pack(policies.make_bundle("discrete")))

    def trainer() -> tuple[grpc.Server, int, object]:
        server = grpc_server.build_server(4)
        health_servicer = grpc_server.add_health_and_reflection(server, ["plasma.trainer.v1.TrainerService"])
        trainer_pb2_grpc.add_TrainerServiceServicer_to_server(fake, server)
        return server, grpc_server.bind(server, "127.0.0.1:0"), health_servicer

    with running(trainer, "plasma.trainer.v1.TrainerService") as trainer_address:
        config = Config(address="127.0.0.1:0", trainer_address=trainer_address, simulator_address=worlds_simulator,
                        store_dir=tmp_path_factory.mktemp("compiler-profiles"))
        with running(lambda: compiler_server.create_server(config), compiler_server.SERVICE_NAME) as address:
            yield address


@pytest.fixture(scope="module")
def stub(compiler: str) -> Iterator[compiler_pb2_grpc.CompilerServiceStub]:
    with grpc.insecure_channel(compiler) as channel:
        yield compiler_pb2_grpc.CompilerServiceStub(channel)


def compile_packet(stub: compiler_pb2_grpc.CompilerServiceStub, **request: object) -> Compiled:
    """(record, packet bytes) of a compilation of run-discrete, each in its own lineage."""
    name = f"profile-{request.get('profile', 0)}-{request.get('compression_level', 'x')}"
    responses = list(stub.Compile(compiler_pb2.CompileRequest(run_id="run-discrete", name=name, **request),
                                  timeout=T))
    record = responses[-1].packet
    download = list(stub.DownloadPacket(compiler_pb2.DownloadPacketRequest(packet_id=record.packet_id), timeout=T))
    return record, blobs.assemble(download[0].header, (r.chunk for r in download[1:]))


@pytest.fixture(scope="module")
def packets(stub: compiler_pb2_grpc.CompilerServiceStub) -> dict[str, Compiled]:
    """One packet per profile, plus the plain request's ("default")."""
    compiled = {"default": compile_packet(stub)}
    for name in calls.PROFILE_NAMES:
        compiled[name] = compile_packet(stub, profile=calls.profile_value(name))
    return compiled


@pytest.fixture(scope="module")
def trusted(stub: compiler_pb2_grpc.CompilerServiceStub) -> dict[str, signing.VerifyingKey]:
    key = stub.GetSigningKey(compiler_pb2.GetSigningKeyRequest(), timeout=T)
    return {key.key_id: signing.VerifyingKey(key.public_key)}


def manifest_of(data: bytes) -> packet.Manifest:
    return packet.read(data)[0]


def test_a_plain_request_records_no_profile(packets: dict[str, Compiled]) -> None:
    record, data = packets["default"]
    manifest = manifest_of(data)
    # Absent, so that packets compiled without a profile keep the bytes (and ids) they always had.
    assert "profile" not in manifest.to_json() and manifest.payload.path == packet.MODEL_FILE
    assert record.profile == compiler_pb2.PROFILE_UNSPECIFIED and record.precision == compiler_pb2.PRECISION_INT8
    assert record.compression.compression_level == profiles.DEFAULT_COMPRESSION_LEVEL
    assert record.compression.sparsity == 0.0 and not record.compression.pruning_attempts


@pytest.mark.parametrize("name", calls.PROFILE_NAMES)
def test_each_profile_records_what_it_chose(packets: dict[str, Compiled], name: str) -> None:
    record, data = packets[name]
    choice = manifest_of(data).profile
    assert choice["name"] == name and record.profile == calls.profile_value(name)
    assert choice["precision"] == compiler_server.PRECISIONS[record.precision]
    assert choice["compression"] == {"method": "deflate", "level": record.compression.compression_level}
    assert choice["pruning"]["sparsity"] == record.compression.sparsity
    assert choice["sizes"]["model_bytes_after"] == record.model_bytes == manifest_of(data).payload.size_bytes
    assert choice["sizes"]["deflated_after"] == record.compression.deflated_model_bytes_after
    assert choice["sizes"]["deflated_before"] == record.compression.deflated_model_bytes_before
    assert record.parity.agreement >= 0.95


def test_edge_is_int8_pruned_and_smallest(packets: dict[str, Compiled]) -> None:
    record, data = packets["edge"]
    choice = manifest_of(data).profile
    assert record.precision == compiler_pb2.PRECISION_INT8 and choice["format"] == profiles.ONNX
    assert record.compression.compression_level == 9 and record.compression.sparsity > 0
    assert record.compression.deflated_model_bytes_after < record.compression.deflated_model_bytes_before
    assert record.size_bytes < min(r.size_bytes for n, (r, _) in packets.items() if n != "edge")
    # The zeros are in the shipped graph: the int8 weight matrices hold at least the recorded share of them.
    model = onnx.load_from_string(packet.read(data)[1])
    weights = [numpy_helper.to_array(i) for i in model.graph.initializer
               if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 2]
    assert weights and all((w == 0).mean() >= 0.95 * record.compression.sparsity for w in weights)


def test_pruning_keeps_parity(packets: dict[str, Compiled]) -> None:
    """Only sparsities that passed the same closed-loop gate are kept; the shipped one is the largest of them."""
    record, _ = packets["edge"]
    tried = record.compression.pruning_attempts
    passed = [a.sparsity for a in tried if a.passed]
    assert passed and record.compression.sparsity == max(passed)
    # Tried in increasing order, stopping at the first refusal.
    assert [a.sparsity for a in tried] == sorted(a.sparsity for a in tried)
    assert all(a.passed for a in tried[:-1])
    for attempt in tried:
        assert attempt.passed == (attempt.agreement >= 0.95 and not attempt.reason)
    parity = record.parity
    assert parity.agreement >= 0.95
    assert parity.fp32_closed_loop_return - parity.closed_loop_return <= \
        gate.RETURN_TOLERANCE * abs(parity.fp32_closed_loop_return)


def test_mobile_ships_an_ort_graph_with_its_operator_config(packets: dict[str, Compiled]) -> None:
    record, data = packets["mobile"]
    manifest, graph = packet.read(data)
    assert [f.path for f in manifest.files] == [packet.MODEL_ORT_FILE]
    assert manifest.to_json()["model"]["file"] == packet.MODEL_ORT_FILE
    assert ort_format.is_ort(graph) and not ort_format.is_ort(packet.read(packets["edge"][1])[1])
    assert record.compression.graph_format == compiler_pb2.GRAPH_FORMAT_ORT
    operators = list(record.compression.required_operators)
    assert operators == manifest.profile["required_operators"]
    assert any(line.startswith("ai.onnx;") and "Gemm" in line for line in operators)


def test_server_is_float(packets: dict[str, Compiled]) -> None:
    record, data = packets["server"]
    assert record.precision in (compiler_pb2.PRECISION_FP16, compiler_pb2.PRECISION_FP32)
    assert manifest_of(data).profile["batch"] == "dynamic" and record.compression.sparsity == 0.0


def test_the_edge_runtime_serves_every_profile(
    packets: dict[str, Compiled], trusted: dict[str, signing.VerifyingKey], tmp_path: Path
) -> None:
    config = EdgeConfig(address="127.0.0.1:0", store_dir=tmp_path / "edge", trusted_keys=trusted, max_batch=256)
    observations = policies.observations("discrete", 64, seed=7)
    with running(lambda: edge_server.create_server(config), edge_server.SERVICE_NAME) as address, \
            grpc.insecure_channel(address) as channel:
        edge = edge_pb2_grpc.EdgeRuntimeServiceStub(channel)
        for name, (record, data) in packets.items():
            info = load(edge, data)
            assert info.packet_id == record.packet_id and info.self_test.passed, name
            single = edge.Act(edge_pb2.ActRequest(observation=tensors.to_proto(observations[0])), timeout=T)
            assert tensors.from_proto(single.action, "action").shape == (), name
            if name == "server":  # a batch in one call
                batch = edge.Act(edge_pb2.ActRequest(observation=tensors.to_proto(observations)), timeout=T)
                assert tensors.from_proto(batch.action, "action").shape == (64,)


def test_a_size_budget_nothing_fits_is_refused_with_what_to_change(
    stub: compiler_pb2_grpc.CompilerServiceStub, packets: dict[str, Compiled]
) -> None:
    error = rpc_error(lambda: compile_packet(stub, profile=compiler_pb2.PROFILE_EDGE, size_budget_bytes=1_000))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = error.details() or ""
    found = re.search(r"the smallest is (\d+) bytes", details)
    assert "size_budget_bytes=1000" in details and found is not None
    smallest = int(found.group(1))
    # The edge profile's packet, give or take the digits of its version and budget in the manifest.
    assert abs(smallest - packets["edge"][0].size_bytes) < 32
    assert f"raise size_budget_bytes to at least {smallest}" in details and "min_agreement" in details
    # A budget it fits is no obstacle, and is recorded.
    record, data = compile_packet(stub, profile=compiler_pb2.PROFILE_EDGE, size_budget_bytes=smallest + 32)
    assert record.size_bytes <= smallest + 32 and manifest_of(data).profile["size_budget_bytes"] == smallest + 32


def test_a_larger_profile_over_budget_points_at_the_edge_profile(stub: compiler_pb2_grpc.CompilerServiceStub) -> None:
    error = rpc_error(lambda: compile_packet(stub, profile=compiler_pb2.PROFILE_SERVER, size_budget_bytes=2_000))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "PROFILE_EDGE" in (error.details() or "")


def test_the_compression_level_is_an_override(
    stub: compiler_pb2_grpc.CompilerServiceStub, packets: dict[str, Compiled]
) -> None:
    record, data = compile_packet(stub, compression_level=0)
    assert manifest_of(data).profile["compression"]["level"] == 0 == record.compression.compression_level
    assert record.size_bytes > packets["default"][0].size_bytes
    assert record.compression.deflated_model_bytes_after > record.model_bytes  # stored blocks: no smaller


@pytest.mark.parametrize(("request_fields", "expected"), [
    ({"profile": 99}, "profile 99 is not a Profile"),
    ({"compression_level": 10}, "compression_level=10"),
    ({"size_budget_bytes": -1}, "size_budget_bytes=-1"),
    ({"profile": compiler_pb2.PROFILE_SERVER, "precision": compiler_pb2.PRECISION_INT8}, "not precision int8"),
    ({"profile": compiler_pb2.PROFILE_MOBILE, "float_fallback": True}, "no float_fallback"),
])
def test_bad_requests_are_invalid_arguments(
    stub: compiler_pb2_grpc.CompilerServiceStub, request_fields: dict[str, object], expected: str
) -> None:
    error = rpc_error(lambda: compile_packet(stub, **request_fields))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and expected in (error.details() or "")


def test_a_bad_profile_name_is_refused_before_any_call(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="profile must be one of edge, mobile, server, got 'tablet'"):
        calls.profile_value("tablet")
    with pytest.raises(SystemExit) as exited:
        cli.main(["compile", "run-discrete", "--profile", "tablet"])
    assert exited.value.code == 2 and "invalid choice: 'tablet'" in capsys.readouterr().err


def test_the_cli_passes_profile_budget_and_level(
    compiler: str, worlds_simulator: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[compiler_pb2.CompileRequest] = []
    original: Callable[..., object] = calls.compile_packet

    def spy(*args: object, **kwargs: object) -> compiler_pb2.CompileRequest:
        request = original(*args, **kwargs)
        assert isinstance(request, compiler_pb2.CompileRequest)
        seen.append(request)
        return request

    monkeypatch.setattr(calls, "compile_packet", spy)
    code = cli.main(["compile", "run-discrete", "--profile", "server", "--size-budget", "100000",
                     "--compression-level", "7", "--name", "cli-profile", "--compiler", compiler,
                     "--simulator", worlds_simulator, "--json"])
    assert code == 0, capsys.readouterr().err
    assert [(r.profile, r.size_budget_bytes, r.compression_level) for r in seen] == \
        [(compiler_pb2.PROFILE_SERVER, 100_000, 7)]
    assert json.loads(capsys.readouterr().out)["compression"]["compressionLevel"] == 7
