"""EdgeRuntimeService against a real server on port 0 with real channels and real int8 packets."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edge_runtime import server as edge_server
from edge_runtime.config import Config
from plasma import packet
from plasma.common.v1 import common_pb2
from plasma.core import blobs, tensors
from plasma.core.settings import ConfigError
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from tests.compiler import policies
from tests.conftest import rpc_error, running
from tests.edge.helpers import T, load, load_requests, status

Stub = edge_pb2_grpc.EdgeRuntimeServiceStub


@contextmanager
def edge(store: Path, **config: object) -> Iterator[tuple[Stub, grpc.Channel]]:
    cfg = Config(address="127.0.0.1:0", store_dir=store, **config)  # type: ignore[arg-type]
    with running(lambda: edge_server.create_server(cfg), edge_server.SERVICE_NAME) as address, \
            grpc.insecure_channel(address) as channel:
        yield Stub(channel), channel


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[Stub]:
    with edge(tmp_path / "edge", max_batch=256) as (client, _):
        yield client


@pytest.fixture
def loaded(stub: Stub, discrete: tuple[bytes, bytes]) -> Stub:
    load(stub, discrete[0])
    return stub


def act(stub: Stub, observation: np.ndarray) -> tuple[np.ndarray, str]:
    reply = stub.Act(edge_pb2.ActRequest(observation=tensors.to_proto(observation)), timeout=T)
    return tensors.from_proto(reply.action, "action"), reply.packet_id


def model_of(data: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(packet.read(data)[1])


def control(stub: Stub, messages: list[edge_pb2.ControlRequest]) -> list[edge_pb2.ControlResponse]:
    return list(stub.Control(iter(messages), timeout=T))


def test_health_serves_before_any_packet(tmp_path: Path) -> None:
    with edge(tmp_path) as (client, channel):
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", edge_server.SERVICE_NAME):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=T)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert not status(client).serving
        error = rpc_error(lambda: act(client, np.zeros(4, np.float32)))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "LoadPacket" in error.details()
        request = edge_pb2.ControlRequest(sequence=5, observation=tensors.to_proto(np.zeros(4, np.float32)))
        error = rpc_error(lambda: control(client, [request]))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "sequence 5" in error.details()


def test_load_reports_the_packet(stub: Stub, discrete: tuple[bytes, bytes]) -> None:
    info = load(stub, discrete[0])
    manifest, _ = packet.read(discrete[0])
    assert info.packet_id == manifest.packet_id and info.name == manifest.name
    assert info.sha256 == blobs.sha256_hex(discrete[0]) and info.size_bytes == len(discrete[0])
    assert list(info.env_spec.observation_space.shape) == [4] and info.env_spec.action_space.n == 2
    assert info.env_spec.observation_space.high[1] == float("inf")
    assert info.load_time.seconds > 0
    current = status(stub)
    assert current.serving and current.packet == info


def test_act_matches_onnxruntime_on_the_int8_and_fp32_models(loaded: Stub, discrete: tuple[bytes, bytes]) -> None:
    int8, fp32 = model_of(discrete[0]), ort.InferenceSession(discrete[1])
    observations = policies.observations("discrete", 200, seed=11)
    served = []
    for obs in observations:
        action, packet_id = act(loaded, obs)
        assert action.shape == () and action.dtype == np.int64  # no batch axis in, none out
        assert action == int8.run(["action"], {"observation": obs[None]})[0][0]
        served.append(int(action))
    assert packet_id == packet.read(discrete[0])[0].packet_id
    fp32_actions = fp32.run(["action"], {"observation": observations})[0]
    assert np.mean(np.array(served) == fp32_actions) >= 0.95


def test_float64_observations_are_accepted(loaded: Stub, discrete: tuple[bytes, bytes]) -> None:
    obs = policies.observations("discrete", 1, seed=12)[0]
    assert act(loaded, obs.astype(np.float64))[0] == act(loaded, obs)[0]


def test_batch_act_matches_onnxruntime(loaded: Stub, discrete: tuple[bytes, bytes]) -> None:
    observations = policies.observations("discrete", 64, seed=13)
    actions, _ = act(loaded, observations)
    assert actions.shape == (64,) and actions.dtype == np.int64
    np.testing.assert_array_equal(actions, model_of(discrete[0]).run(["action"], {"observation": observations})[0])


def test_box_packet_acts_within_bounds(stub: Stub, box: bytes) -> None:
    load(stub, box)
    observations = policies.observations("box", 8, seed=14)
    actions, _ = act(stub, observations)
    assert actions.shape == (8, 1) and actions.dtype == np.float32
    np.testing.assert_allclose(actions, model_of(box).run(["action"], {"observation": observations})[0], rtol=1e-6)
    assert np.all(np.abs(actions) <= 2.0)
    single, _ = act(stub, observations[0])
    assert single.shape == (1,)


def test_control_answers_every_message_in_order(loaded: Stub, discrete: tuple[bytes, bytes]) -> None:
    observations = policies.observations("discrete", 100, seed=15)
    requests = [edge_pb2.ControlRequest(sequence=1000 + i, observation=tensors.to_proto(obs))
                for i, obs in enumerate(observations)]
    responses = control(loaded, requests)
    assert [r.sequence for r in responses] == [r.sequence for r in requests]
    int8 = model_of(discrete[0])
    expected = [int8.run(["action"], {"observation": obs[None]})[0][0] for obs in observations]
    assert [int(tensors.from_proto(r.action)) for r in responses] == expected
    assert {r.packet_id for r in responses} == {packet.read(discrete[0])[0].packet_id}


def _tensor(array: np.ndarray) -> common_pb2.Tensor:
    return tensors.to_proto(array)


BAD_OBSERVATIONS = {
    "short": (_tensor(np.zeros(3, np.float32)), "shape [3]"),
    "long": (_tensor(np.zeros(5, np.float32)), "expected [4] or [batch, 4]"),
    "batch-of-wrong-width": (_tensor(np.zeros((2, 5), np.float32)), "shape [2, 5]"),
    "too-many-dims": (_tensor(np.zeros((1, 1, 4), np.float32)), "shape [1, 1, 4]"),
    "empty-batch": (_tensor(np.zeros((0, 4), np.float32)), "batch in 1..256"),
    "batch-over-limit": (_tensor(np.zeros((257, 4), np.float32)), "batch in 1..256"),
    "nan": (_tensor(np.array([0, np.nan, 0, 0], np.float32)), "non-finite value"),
    "inf-in-batch": (_tensor(np.array([[0, 0, 0, 0], [0, 0, 0, np.inf]], np.float32)), "index [1, 3]"),
    "beyond-float32": (_tensor(np.array([0, 0, 1e300, 0])), "beyond float32 range"),
    "int64": (_tensor(np.zeros(4, np.int64)), "dtype must be float32 or float64, got int64"),
    "bool": (_tensor(np.zeros(4, bool)), "got bool"),
    "bytes-mismatch": (common_pb2.Tensor(shape=[4], dtype=common_pb2.DATA_TYPE_FLOAT32, data=b"\0" * 15), "needs 16"),
    "no-dtype": (common_pb2.Tensor(shape=[4], data=b"\0" * 16), "dtype must be set"),
}


@pytest.mark.parametrize("name", list(BAD_OBSERVATIONS))
def test_bad_observations_are_invalid_and_serving_goes_on(loaded: Stub, name: str) -> None:
    tensor, message = BAD_OBSERVATIONS[name]
    before = status(loaded)
    error = rpc_error(lambda: loaded.Act(edge_pb2.ActRequest(observation=tensor), timeout=T))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()
    assert status(loaded).requests_failed == before.requests_failed + 1
    assert act(loaded, np.zeros(4, np.float32))[0].shape == ()


def test_a_bad_control_message_ends_the_stream_naming_its_sequence(loaded: Stub) -> None:
    good = [edge_pb2.ControlRequest(sequence=i, observation=_tensor(np.zeros(4, np.float32))) for i in range(3)]
    bad = edge_pb2.ControlRequest(sequence=3, observation=_tensor(np.array([0, np.nan, 0, 0], np.float32)))
    received: list[int] = []

    def run() -> None:
        for response in loaded.Control(iter([*good, bad, *good]), timeout=T):
            received.append(response.sequence)

    error = rpc_error(run)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "sequence 3" in error.details() and "non-finite" in error.details()
    assert received == [0, 1, 2]
    assert control(loaded, good)[-1].sequence == 2  # a new stream works


def test_corrupted_chunk_is_data_loss_and_the_old_packet_keeps_serving(
    loaded: Stub, discrete: tuple[bytes, bytes], other_discrete: bytes
) -> None:
    served_before = act(loaded, np.zeros(4, np.float32))
    damaged = bytearray(other_discrete)
    damaged[5000] ^= 0xFF
    error = rpc_error(lambda: load(loaded, bytes(damaged), header=blobs.header_for(other_discrete, "")))
    assert error.code() == grpc.StatusCode.DATA_LOSS
    assert blobs.sha256_hex(other_discrete) in error.details() and blobs.sha256_hex(bytes(damaged)) in error.details()

    truncated = rpc_error(lambda: load(loaded, other_discrete[:-10], header=blobs.header_for(other_discrete, "")))
    assert truncated.code() == grpc.StatusCode.DATA_LOSS
    assert f"{len(other_discrete) - 10} of {len(other_discrete)} bytes" in truncated.details()

    assert status(loaded).packet.sha256 == blobs.sha256_hex(discrete[0])
    assert act(loaded, np.zeros(4, np.float32)) == served_before


def _rezip(data: bytes, manifest_changes: dict[str, object], model: bytes | None = None) -> bytes:
    """The packet re-archived with manifest fields changed and/or another model.onnx."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = {**json.loads(archive.read("manifest.json")), **manifest_changes}
        model = model if model is not None else archive.read("model.onnx")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("model.onnx", model)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda data: b"definitely not a zip archive", "not a zip archive"),
        (lambda data: _rezip(data, {"format_version": 7}), "format_version 7 is not supported"),
        (lambda data: _rezip(data, {}, model=b"\x08\x07"), "canonical form"),
    ],
    ids=["not-a-zip", "future-format", "swapped-model"],
)
def test_intact_bytes_that_are_no_packet_are_invalid(
    loaded: Stub, discrete: tuple[bytes, bytes], make: Callable[[bytes], bytes], message: str
) -> None:
    error = rpc_error(lambda: load(loaded, make(discrete[0])))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and message in error.details()
    assert status(loaded).packet.sha256 == blobs.sha256_hex(discrete[0])


def test_a_stream_must_start_with_one_header(loaded: Stub, discrete: tuple[bytes, bytes]) -> None:
    chunks_only = [edge_pb2.LoadPacketRequest(chunk=discrete[0])]
    error = rpc_error(lambda: loaded.LoadPacket(iter(chunks_only), timeout=T))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "header" in error.details()
    two_headers = [*load_requests(discrete[0])][:1] * 2
    error = rpc_error(lambda: loaded.LoadPacket(iter(two_headers), timeout=T))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "only the first" in error.details()
    wrong_media = blobs.header_for(discrete[0], "application/zip")
    error = rpc_error(lambda: load(loaded, discrete[0], header=wrong_media))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and packet.MEDIA_TYPE in error.details()


def test_a_new_packet_replaces_the_old_one(loaded: Stub, other_discrete: bytes) -> None:
    info = load(loaded, other_discrete)
    assert act(loaded, np.zeros(4, np.float32))[1] == info.packet_id
    assert status(loaded).packet.sha256 == blobs.sha256_hex(other_discrete)


def test_a_restarted_runtime_serves_the_persisted_packet(
    tmp_path: Path, discrete: tuple[bytes, bytes], other_discrete: bytes
) -> None:
    observations = policies.observations("discrete", 32, seed=16)
    with edge(tmp_path) as (client, _):
        load(client, discrete[0])
        info = load(client, other_discrete)
        served = act(client, observations)
    with edge(tmp_path) as (client, _):  # no LoadPacket: straight from the store, no network needed
        current = status(client)
        assert current.serving and current.packet.sha256 == info.sha256
        again = act(client, observations)
    np.testing.assert_array_equal(again[0], served[0])
    assert again[1] == served[1] == info.packet_id
    assert [p.name for p in (tmp_path / "packets").iterdir()] == [f"{info.sha256}.zip"]


def test_a_damaged_stored_packet_is_not_served(tmp_path: Path, discrete: tuple[bytes, bytes]) -> None:
    with edge(tmp_path) as (client, _):
        info = load(client, discrete[0])
    stored = tmp_path / "packets" / f"{info.sha256}.zip"
    damaged = bytearray(stored.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    stored.write_bytes(bytes(damaged))
    with edge(tmp_path) as (client, _):
        assert not status(client).serving
        load(client, discrete[0])  # and it recovers with a fresh load
        assert status(client).serving


def test_status_counts_requests_and_summarises_latency(loaded: Stub) -> None:
    for _ in range(20):
        act(loaded, np.zeros(4, np.float32))
    rpc_error(lambda: act(loaded, np.zeros(3, np.float32)))
    current = status(loaded)
    assert current.requests_served == 20 and current.requests_failed == 1
    latency = current.inference_latency
    assert latency.count == 20 and 0 < latency.p50_ms <= latency.p99_ms


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PLASMA_EDGE_ADDRESS", "nowhere"), ("PLASMA_EDGE_ORT_INTRA_THREADS", "0"),
     ("PLASMA_EDGE_ORT_INTER_THREADS", "two"), ("PLASMA_EDGE_WORKERS", "-1"),
     ("PLASMA_EDGE_MAX_CONCURRENT_RPCS", "0"), ("PLASMA_EDGE_MAX_BATCH", "x")],
)
def test_bad_config_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Config.from_env({variable: value})


def test_default_threads_do_not_oversubscribe_two_cores() -> None:
    config = Config.from_env({})
    assert (config.ort_intra_threads, config.ort_inter_threads) == (1, 1)
