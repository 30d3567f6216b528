"""EdgeRuntimeService against a real server on port 0 with real channels and real signed int8 packets."""

from __future__ import annotations

import io
import json
import logging
import queue
import threading
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edge_runtime import server as edge_server
from edge_runtime.config import Config
from plasma import blobs, packet, signing, tensors
from plasma.common.v1 import common_pb2
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.server.settings import ConfigError
from services.compiler import export
from tests.conftest import rpc_error, running
from tests.support import policies
from tests.support.edge import TRUSTED, T, load, load_requests, refusal, status
from tests.support.waiting import eventually

Stub = edge_pb2_grpc.EdgeRuntimeServiceStub


@contextmanager
def edge(store: Path, **config: Any) -> Iterator[tuple[Stub, grpc.Channel]]:
    cfg = Config(address="127.0.0.1:0", store_dir=store, **{"trusted_keys": TRUSTED, **config})
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


def act_reply(stub: Stub, observation: np.ndarray) -> edge_pb2.ActResponse:
    return stub.Act(edge_pb2.ActRequest(observation=tensors.to_proto(observation)), timeout=T)


def model_of(data: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(packet.read(data)[1])


def control(stub: Stub, messages: list[edge_pb2.ControlRequest]) -> list[edge_pb2.ControlResponse]:
    return list(stub.Control(iter(messages), timeout=T))


def entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(contents: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in contents.items():
            archive.writestr(name, value)
    return buffer.getvalue()


def with_manifest(data: bytes, change: Callable[[dict], None], signer: signing.SigningKey | None) -> bytes:
    """The packet with its manifest changed; signed again by `signer`, or keeping the old signature."""
    contents = entries(data)
    manifest = json.loads(contents["manifest.json"])
    change(manifest)
    contents["manifest.json"] = packet.canonical_json(manifest)
    if signer is not None:
        contents["signature.json"] = packet.sign(contents["manifest.json"], signer)
    return rezip(contents)


# Serving


def test_health_serves_before_any_packet(tmp_path: Path) -> None:
    with edge(tmp_path) as (client, channel):
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", edge_server.SERVICE_NAME):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=T)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        current = status(client)
        assert not current.serving and list(current.trusted_key_ids) == [policies.TEST_KEY.key_id]
        assert current.start_time.seconds > 0
        error = rpc_error(lambda: act(client, np.zeros(4, np.float32)))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "LoadPacket" in error.details()
        request = edge_pb2.ControlRequest(sequence=5, observation=tensors.to_proto(np.zeros(4, np.float32)))
        error = rpc_error(lambda: control(client, [request]))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "sequence 5" in error.details()


def test_load_reports_the_packet(stub: Stub, discrete: tuple[bytes, bytes]) -> None:
    reply = stub.LoadPacket(load_requests(discrete[0]), timeout=T)
    info = reply.packet
    manifest, _ = packet.read(discrete[0])
    assert info.packet_id == manifest.packet_id and info.name == manifest.name
    assert (info.version, info.kind) == (1, common_pb2.PACKET_KIND_MERGED)
    assert info.signing_key_id == policies.TEST_KEY.key_id
    assert info.sha256 == blobs.sha256_hex(discrete[0]) and info.size_bytes == len(discrete[0])
    assert list(info.env_spec.observation_space.shape) == [4] and info.env_spec.action_space.n == 2
    assert info.env_spec.observation_space.high[1] == float("inf")
    assert info.load_time.seconds > 0
    assert not reply.HasField("previous")
    current = status(stub)
    assert current.serving and current.packet == info and current.packets_loaded == 1


def test_act_matches_onnxruntime_on_the_int8_and_fp32_models(loaded: Stub, discrete: tuple[bytes, bytes]) -> None:
    int8, fp32 = model_of(discrete[0]), ort.InferenceSession(discrete[1])
    observations = policies.observations("discrete", 200, seed=11)
    served = []
    for obs in observations:
        reply = act_reply(loaded, obs)
        action = tensors.from_proto(reply.action)
        assert action.shape == () and action.dtype == np.int64  # no batch axis in, none out
        assert action == int8.run(["action"], {"observation": obs[None]})[0][0]
        assert (reply.packet_id, reply.packet_version) == (packet.read(discrete[0])[0].packet_id, 1)
        served.append(int(action))
    fp32_actions = fp32.run(["action"], {"observation": observations})[0]
    assert np.mean(np.array(served) == fp32_actions) >= 0.95


def test_float64_observations_are_accepted(loaded: Stub) -> None:
    obs = policies.observations("discrete", 1, seed=12)[0]
    assert act(loaded, obs.astype(np.float64))[0] == act(loaded, obs)[0]


def test_batch_act_matches_onnxruntime(loaded: Stub, discrete: tuple[bytes, bytes]) -> None:
    observations = policies.observations("discrete", 64, seed=13)
    actions, _ = act(loaded, observations)
    assert actions.shape == (64,) and actions.dtype == np.int64
    np.testing.assert_array_equal(actions, model_of(discrete[0]).run(["action"], {"observation": observations})[0])
    assert status(loaded).observations_served == 64


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
    requests.append(edge_pb2.ControlRequest(sequence=7, observation=tensors.to_proto(observations[:5])))  # a batch
    responses = control(loaded, requests)
    assert [r.sequence for r in responses] == [r.sequence for r in requests]
    int8 = model_of(discrete[0])
    expected = [int8.run(["action"], {"observation": obs[None]})[0][0] for obs in observations]
    assert [int(tensors.from_proto(r.action)) for r in responses[:-1]] == expected
    np.testing.assert_array_equal(tensors.from_proto(responses[-1].action),
                                  int8.run(["action"], {"observation": observations[:5]})[0])
    assert {(r.packet_id, r.packet_version) for r in responses} == {(packet.read(discrete[0])[0].packet_id, 1)}


# Input validation: INVALID_ARGUMENT before onnxruntime runs, saying what was expected and what arrived.

def _tensor(array: np.ndarray) -> common_pb2.Tensor:
    return tensors.to_proto(array)


F32 = common_pb2.DATA_TYPE_FLOAT32
BAD_OBSERVATIONS = {
    "short": (_tensor(np.zeros(3, np.float32)), "shape [3]"),
    "long": (_tensor(np.zeros(5, np.float32)), "expected [4] or [batch, 4]"),
    "batch-of-wrong-width": (_tensor(np.zeros((2, 5), np.float32)), "shape [2, 5]"),
    "too-many-dims": (_tensor(np.zeros((1, 1, 4), np.float32)), "shape [1, 1, 4]"),
    "scalar": (_tensor(np.float32(1.0)), "shape []"),
    "empty-batch": (_tensor(np.zeros((0, 4), np.float32)), "batch in 1..256"),
    "batch-over-limit": (_tensor(np.zeros((257, 4), np.float32)), "batch in 1..256"),
    "negative-dim": (common_pb2.Tensor(shape=[-1, 4], dtype=F32), "shape [-1, 4]"),
    # product(shape) * 4 wraps around int64 to 0 bytes: the shape check comes first.
    "overflowing-dims": (common_pb2.Tensor(shape=[2**62, 4], dtype=F32), "batch in 1..256"),
    "nan": (_tensor(np.array([0, np.nan, 0, 0], np.float32)), "non-finite value"),
    "inf-in-batch": (_tensor(np.array([[0, 0, 0, 0], [0, 0, 0, np.inf]], np.float32)), "index [1, 3]"),
    "beyond-float32": (_tensor(np.array([0, 0, 1e300, 0])), "beyond float32 range"),
    "int64": (_tensor(np.zeros(4, np.int64)), "dtype must be float32 or float64, got int64"),
    "bool": (_tensor(np.zeros(4, bool)), "got bool"),
    "unknown-dtype": (common_pb2.Tensor(shape=[4], dtype=99, data=b"\0" * 16), "unknown code 99"),
    "bytes-short": (common_pb2.Tensor(shape=[4], dtype=F32, data=b"\0" * 15), "needs 16 bytes, got 15"),
    "bytes-long": (common_pb2.Tensor(shape=[2, 4], dtype=F32, data=b"\0" * 64), "needs 32 bytes, got 64"),
    "no-dtype": (common_pb2.Tensor(shape=[4], data=b"\0" * 16), "dtype must be set"),
    "no-observation": (common_pb2.Tensor(), "dtype must be set"),
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


def test_random_tensors_never_break_the_runtime(loaded: Stub) -> None:
    rng = np.random.default_rng(0)
    codes = set()
    for _ in range(300):
        rank = int(rng.integers(0, 4))
        shape = [int(d) for d in rng.choice([-3, 0, 1, 2, 4, 5, 300, 2**40, 2**62], size=rank)]
        dtype = int(rng.integers(0, 6))
        data = rng.bytes(int(rng.choice([0, 8, 15, 16, 32, 128])))
        tensor = common_pb2.Tensor(shape=shape, dtype=dtype, data=data)
        try:
            loaded.Act(edge_pb2.ActRequest(observation=tensor), timeout=T)
            codes.add(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.add(error.code())
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}
    assert grpc.StatusCode.INVALID_ARGUMENT in codes
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


# Trust: each refusal has its own status, message and refusal reason; the old packet keeps serving.


def test_corrupted_chunk_is_data_loss_and_the_old_packet_keeps_serving(
    loaded: Stub, discrete: tuple[bytes, bytes], other_discrete: bytes
) -> None:
    served_before = act(loaded, np.zeros(4, np.float32))
    damaged = bytearray(other_discrete)
    damaged[len(damaged) // 2] ^= 0xFF
    error = rpc_error(lambda: load(loaded, bytes(damaged), header=blobs.header_for(other_discrete, "")))
    assert error.code() == grpc.StatusCode.DATA_LOSS
    assert blobs.sha256_hex(other_discrete) in error.details() and blobs.sha256_hex(bytes(damaged)) in error.details()

    truncated = rpc_error(lambda: load(loaded, other_discrete[:-10], header=blobs.header_for(other_discrete, "")))
    assert truncated.code() == grpc.StatusCode.DATA_LOSS
    assert f"{len(other_discrete) - 10} of {len(other_discrete)} bytes" in truncated.details()

    assert status(loaded).packet.sha256 == blobs.sha256_hex(discrete[0])
    assert act(loaded, np.zeros(4, np.float32)) == served_before


STRANGER = signing.SigningKey.generate()


@pytest.mark.parametrize(
    ("make", "code", "reason", "message"),
    [
        (lambda data: rezip({k: v for k, v in entries(data).items() if k != "signature.json"}),
         grpc.StatusCode.PERMISSION_DENIED, "unsigned", "packet is unsigned"),
        (lambda data: with_manifest(data, lambda m: None, STRANGER),
         grpc.StatusCode.PERMISSION_DENIED, "untrusted", f"signed by key {STRANGER.key_id}, which is not trusted"),
        # An attacker raising the version of a signed packet so that it replaces a newer one.
        (lambda data: with_manifest(data, lambda m: m.update(version=99), None),
         grpc.StatusCode.PERMISSION_DENIED, "tampered", "does not match manifest.json"),
        (lambda data: rezip({**entries(data), "model.onnx": b"\x08\x07"}),
         grpc.StatusCode.PERMISSION_DENIED, "tampered", "model.onnx is 2 bytes, the signed manifest says"),
        (lambda data: b"definitely not a zip archive",
         grpc.StatusCode.INVALID_ARGUMENT, "malformed", "not a zip archive"),
        (lambda data: with_manifest(data, lambda m: m.update(format_version=7), policies.TEST_KEY),
         grpc.StatusCode.INVALID_ARGUMENT, "malformed", "format_version 7 is not supported"),
        # Signed by the trusted key, but the graph is not one onnxruntime can run.
        (lambda data: policies.make_packet_with_model(b"\x08\x07", version=5),
         grpc.StatusCode.INVALID_ARGUMENT, "malformed", "cannot be loaded by onnxruntime"),
    ],
    ids=["unsigned", "untrusted", "tampered-manifest", "tampered-model", "not-a-zip", "future-format", "bad-graph"],
)
def test_packets_that_fail_verification_are_refused_with_their_reason(
    loaded: Stub, other_discrete: bytes, discrete: tuple[bytes, bytes], make: Callable[[bytes], bytes],
    code: grpc.StatusCode, reason: str, message: str,
) -> None:
    error = rpc_error(lambda: load(loaded, make(other_discrete)))
    assert (error.code(), refusal(error)) == (code, reason)
    assert message in error.details()
    current = status(loaded)
    assert current.packet.sha256 == blobs.sha256_hex(discrete[0]) and current.packets_refused == 1
    assert act_reply(loaded, np.zeros(4, np.float32)).packet_version == 1


def test_without_trusted_keys_every_packet_is_refused(tmp_path: Path, discrete: tuple[bytes, bytes]) -> None:
    with edge(tmp_path, trusted_keys={}) as (client, _):
        error = rpc_error(lambda: load(client, discrete[0]))
        assert (error.code(), refusal(error)) == (grpc.StatusCode.PERMISSION_DENIED, "untrusted")
        assert "trusts no signing keys" in error.details()
        assert not status(client).serving and not status(client).trusted_key_ids


def test_only_newer_versions_of_a_name_are_loaded(
    loaded: Stub, discrete: tuple[bytes, bytes], other_discrete: bytes, box: bytes
) -> None:
    again = rpc_error(lambda: load(loaded, discrete[0]))
    assert (again.code(), refusal(again)) == (grpc.StatusCode.FAILED_PRECONDITION, "not-newer")
    assert "CartPole-v1-test v1, not newer than v1" in again.details() and "Rollback" in again.details()
    info = load(loaded, other_discrete)
    assert info.version == 2
    older = rpc_error(lambda: load(loaded, policies.make_packet("discrete", seed=0, version=2)[0]))
    assert refusal(older) == "not-newer" and "not newer than v2" in older.details()
    # Another lineage has versions of its own.
    assert load(loaded, box).version == 1
    assert act_reply(loaded, np.zeros(3, np.float32)).packet_version == 1


def test_rollback_serves_the_previous_packet_and_only_once(
    loaded: Stub, discrete: tuple[bytes, bytes], other_discrete: bytes
) -> None:
    first = packet.read(discrete[0])[0].packet_id
    error = rpc_error(lambda: loaded.Rollback(edge_pb2.RollbackRequest(), timeout=T))
    assert (error.code(), refusal(error)) == (grpc.StatusCode.FAILED_PRECONDITION, "nothing-to-roll-back")
    reply = loaded.LoadPacket(load_requests(other_discrete), timeout=T)
    assert (reply.previous.packet_id, reply.previous.version) == (first, 1)
    assert status(loaded).previous.packet_id == first
    wrong = rpc_error(lambda: loaded.Rollback(edge_pb2.RollbackRequest(packet_id="pkt-other"), timeout=T))
    assert refusal(wrong) == "not-previous" and first in wrong.details()

    rolled = loaded.Rollback(edge_pb2.RollbackRequest(packet_id=first), timeout=T)
    assert (rolled.packet.packet_id, rolled.packet.version) == (first, 1)
    assert rolled.rolled_back.version == 2
    assert act_reply(loaded, np.zeros(4, np.float32)).packet_version == 1
    assert not status(loaded).HasField("previous")
    assert refusal(rpc_error(lambda: loaded.Rollback(edge_pb2.RollbackRequest(), timeout=T))) == \
        "nothing-to-roll-back"
    # Rolling back does not lower the bar: v2 was installed once; a fix comes as v3.
    assert refusal(rpc_error(lambda: load(loaded, other_discrete))) == "not-newer"
    assert load(loaded, policies.make_packet("discrete", seed=1, version=3)[0]).version == 3


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


@pytest.mark.parametrize(("size_bytes", "sha256", "fragment"), [
    (0, "ab" * 32, "size_bytes=0"), (-1, "ab" * 32, "size_bytes=-1"), (2**63 - 1, "ab" * 32, "size_bytes="),
    (100, "abc", "sha256 must be 64 hex digits"), (100, "z" * 64, "sha256 must be 64 hex digits"),
])
def test_a_malformed_header_is_invalid_argument_not_data_loss(
    loaded: Stub, discrete: tuple[bytes, bytes], size_bytes: int, sha256: str, fragment: str
) -> None:
    # DATA_LOSS means bytes that do not match their header; a header that cannot be one is a bad request.
    header = common_pb2.BlobHeader(sha256=sha256, size_bytes=size_bytes, media_type=packet.MEDIA_TYPE)
    error = rpc_error(lambda: load(loaded, discrete[0], header=header))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and fragment in error.details()
    assert status(loaded).serving


# Adapter-only packets


# Self-test on this CPU


def test_a_loaded_packet_reports_its_self_test_on_this_cpu(stub: Stub, discrete: tuple[bytes, bytes]) -> None:
    info = load(stub, discrete[0])
    test = info.self_test
    assert test.ran and test.passed and not test.serving_fallback
    assert (test.observations, test.min_agreement) == (48, 0.95) and test.agreement >= 0.95
    assert test.max_abs_diff_from_compiler == 0.0  # the compiler ran the same graph on this same CPU
    assert info.precision == "int8" and list(test.cpu_features)
    assert status(stub).packet.self_test == test


def test_a_packet_that_fails_its_self_test_is_refused_and_the_old_one_serves(
    loaded: Stub, discrete: tuple[bytes, bytes]
) -> None:
    bad, _ = policies.make_miscomputing_packet(version=5, fallback=False)
    error = rpc_error(lambda: load(loaded, bad))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and refusal(error) == "self-test-failed"
    details = error.details()
    assert "failed its self-test on this CPU" in details and "int8 graph decides like fp32 on" in details
    assert "gate: 95.0%" in details and "CPU features" in details and "float_fallback" in details
    current = status(loaded)
    assert current.packet.packet_id == packet.read(discrete[0])[0].packet_id and current.packets_refused == 1


def test_a_failing_packet_with_a_float_fallback_serves_the_fallback(tmp_path: Path) -> None:
    data, fp32 = policies.make_miscomputing_packet(version=1, fallback=True)
    observations = policies.observations("discrete", 64, seed=12)
    with edge(tmp_path) as (client, _):
        info = load(client, data)
        assert info.precision == "fp32" and info.self_test.serving_fallback and info.self_test.passed
        served, _ = act(client, observations)
        np.testing.assert_array_equal(served, export.Graph(fp32, 1).act(observations))
    with edge(tmp_path) as (client, _):  # a restart checks the packet again and picks the fallback again
        assert status(client).packet.self_test.serving_fallback
        np.testing.assert_array_equal(act(client, observations)[0], served)


def test_an_adapter_packet_applies_to_the_base_it_names(
    stub: Stub, adaptable: bytes, adapter: bytes, discrete: tuple[bytes, bytes]
) -> None:
    missing = rpc_error(lambda: load(stub, adapter))
    assert (missing.code(), refusal(missing)) == (grpc.StatusCode.FAILED_PRECONDITION, "base-missing")
    base_manifest, base_model = packet.read(adaptable)
    assert base_manifest.packet_id in missing.details() and "load that adaptable packet first" in missing.details()

    assert load(stub, adaptable).kind == common_pb2.PACKET_KIND_ADAPTABLE
    observations = policies.observations("discrete", 300, seed=21)
    base_actions = [int(act(stub, obs)[0]) for obs in observations]
    info = load(stub, adapter)
    assert (info.kind, info.version, info.base_packet_id, info.base_version) == \
        (common_pb2.PACKET_KIND_ADAPTER, 2, base_manifest.packet_id, 1)
    assert len(adapter) < 8_000
    adapter_file = packet.read(adapter)[1]
    with_adapter = export.Graph(base_model, 1, adapter=adapter_file)
    expected = [int(with_adapter.act(obs[None])[0]) for obs in observations]
    served = [int(act(stub, obs)[0]) for obs in observations]
    assert served == expected and served != base_actions  # the adapter is applied, and it matters
    assert act_reply(stub, observations[0]).packet_version == 2

    rolled = stub.Rollback(edge_pb2.RollbackRequest(), timeout=T)
    assert (rolled.packet.kind, rolled.rolled_back.kind) == (common_pb2.PACKET_KIND_ADAPTABLE,
                                                             common_pb2.PACKET_KIND_ADAPTER)
    assert [int(act(stub, obs)[0]) for obs in observations] == base_actions

    # The base is held while other packets are served: the adapter's next version applies again later.
    merged = stub.LoadPacket(load_requests(discrete[0]), timeout=T)
    assert (merged.packet.kind, merged.previous.kind) == (common_pb2.PACKET_KIND_MERGED,
                                                          common_pb2.PACKET_KIND_ADAPTABLE)
    assert status(stub).packet.kind == common_pb2.PACKET_KIND_MERGED
    again = load(stub, policies.make_adapter_packet(adaptable, adapter_seed=5, version=3)[0])
    assert again.kind == common_pb2.PACKET_KIND_ADAPTER and again.base_packet_id == base_manifest.packet_id


def test_the_kept_previous_packet_is_still_adaptable_after_a_restart(
    tmp_path: Path, adaptable: bytes, discrete: tuple[bytes, bytes]
) -> None:
    with edge(tmp_path) as (client, _):
        load(client, adaptable)
        load(client, discrete[0])
    with edge(tmp_path) as (client, _):  # the previous packet's kind comes from the store's record, not a manifest
        kept = status(client)
        assert (kept.packet.kind, kept.previous.kind) == (common_pb2.PACKET_KIND_MERGED,
                                                          common_pb2.PACKET_KIND_ADAPTABLE)


def test_an_adapter_that_does_not_fit_its_base_is_refused(stub: Stub, adaptable: bytes, adapter: bytes) -> None:
    load(stub, adaptable)
    misfit = with_manifest(adapter, lambda m: m["adapter"].update(parameters=[{"name": "lora_z_9", "shape": [1, 1]}]),
                           policies.TEST_KEY)
    error = rpc_error(lambda: load(stub, misfit))
    assert (error.code(), refusal(error)) == (grpc.StatusCode.FAILED_PRECONDITION, "base-mismatch")
    assert "lora_z_9" in error.details()


# Durability


def test_a_restarted_runtime_serves_the_persisted_packet_and_can_still_roll_back(
    tmp_path: Path, discrete: tuple[bytes, bytes], other_discrete: bytes
) -> None:
    observations = policies.observations("discrete", 32, seed=16)
    with edge(tmp_path) as (client, _):
        load(client, discrete[0])
        info = load(client, other_discrete)
        served = act(client, observations)
    with edge(tmp_path) as (client, _):  # no LoadPacket: straight from the store, no network needed
        current = status(client)
        assert current.serving and current.packet.sha256 == info.sha256 and current.packet.version == 2
        assert current.previous.version == 1
        again = act(client, observations)
        np.testing.assert_array_equal(again[0], served[0])
        assert again[1] == served[1] == info.packet_id
        assert refusal(rpc_error(lambda: load(client, other_discrete))) == "not-newer"  # the bar survives too
        assert client.Rollback(edge_pb2.RollbackRequest(), timeout=T).packet.version == 1
    assert sorted(p.name for p in (tmp_path / "packets").iterdir()) == [blobs.sha256_hex(discrete[0])]


def test_a_damaged_current_packet_falls_back_to_the_previous_one(
    tmp_path: Path, discrete: tuple[bytes, bytes], other_discrete: bytes
) -> None:
    with edge(tmp_path) as (client, _):
        load(client, discrete[0])
        info = load(client, other_discrete)
    stored = tmp_path / "packets" / info.sha256 / "packet.zip"
    damaged = bytearray(stored.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    stored.write_bytes(bytes(damaged))
    with edge(tmp_path) as (client, _):
        assert status(client).packet.version == 1
    (tmp_path / "packets" / blobs.sha256_hex(discrete[0]) / "packet.zip").unlink()
    with edge(tmp_path) as (client, _):
        assert not status(client).serving
        load(client, policies.make_packet("discrete", seed=0, version=3)[0])  # and it recovers with a fresh load
        assert status(client).serving


def test_a_stored_packet_signed_by_a_key_no_longer_trusted_is_not_served(
    tmp_path: Path, discrete: tuple[bytes, bytes]
) -> None:
    with edge(tmp_path) as (client, _):
        load(client, discrete[0])
    other = signing.SigningKey.generate()
    with edge(tmp_path, trusted_keys={other.key_id: other.public}) as (client, _):
        assert not status(client).serving


# Concurrency


def test_hot_swaps_under_load_fail_no_request_and_every_answer_names_its_version(tmp_path: Path) -> None:
    """Control streams and Act calls run while the packet is swapped 12 times. Every answer must be exactly
    what the version it names computes; no request fails; a stream never sees a version go backwards."""
    def make(version: int) -> bytes:  # odd versions: a policy with a strong adapter, deciding differently
        return policies.make_packet("discrete", seed=version % 2, version=version,
                                    adapter_std=0.4 if version % 2 else 0.02)[0]

    versions = range(1, 14)
    seed_of = {v: v % 2 for v in versions}
    policies_by_seed = {seed: packet.read(make(2 - seed))[1] for seed in (0, 1)}
    observations = policies.observations("discrete", 64, seed=30)
    batch = observations[:8]
    expected_single, expected_batch = {}, {}
    for seed, model in policies_by_seed.items():  # int8 scales per call: compare like with like
        session = ort.InferenceSession(model)
        expected_single[seed] = [int(session.run(["action"], {"observation": o[None]})[0][0]) for o in observations]
        expected_batch[seed] = session.run(["action"], {"observation": batch})[0].tolist()
    assert expected_single[0] != expected_single[1]  # the two policies are told apart by their answers

    problems: list[str] = []
    seen: dict[str, set[int]] = {}
    stop = threading.Event()
    progress = threading.Condition()

    def record(worker: str, version: int) -> None:
        with progress:
            seen.setdefault(worker, set()).add(version)
            progress.notify_all()

    def stream_worker(stub: Stub, name: str) -> None:
        outbox: queue.Queue[edge_pb2.ControlRequest | None] = queue.Queue()
        responses = stub.Control(iter(outbox.get, None), timeout=120)
        last, i = 0, 0
        try:
            while not stop.is_set():
                outbox.put(edge_pb2.ControlRequest(sequence=i, observation=_tensor(observations[i % 64])))
                reply = next(responses)
                action = int(tensors.from_proto(reply.action))
                if reply.sequence != i or reply.packet_version < last or \
                        action != expected_single[seed_of[reply.packet_version]][i % 64]:
                    problems.append(f"{name}: message {i} answered {reply} after v{last}")
                last = reply.packet_version
                record(name, last)
                i += 1
        except Exception as exc:  # a failed request is what this test is about
            problems.append(f"{name}: {exc!r}")
        finally:
            outbox.put(None)
            for _ in responses:
                pass

    def act_worker(stub: Stub, name: str) -> None:
        i = 0
        try:
            while not stop.is_set():
                batched = i % 3 == 0
                reply = act_reply(stub, batch if batched else observations[i % 64])
                seed = seed_of[reply.packet_version]
                got = tensors.from_proto(reply.action).tolist()
                want = expected_batch[seed] if batched else expected_single[seed][i % 64]
                if got != want or reply.packet_id != f"pkt-disc{seed:02d}{reply.packet_version:06d}":
                    problems.append(f"{name}: request {i} answered {got} from {reply.packet_id}, expected {want}")
                record(name, reply.packet_version)
                i += 1
        except Exception as exc:
            problems.append(f"{name}: {exc!r}")

    with edge(tmp_path, workers=8, max_concurrent_rpcs=8, max_control_streams=3) as (client, _):
        load(client, make(1))
        names = ["control-0", "control-1", "control-2", "act-0", "act-1"]
        threads = [threading.Thread(target=stream_worker if name.startswith("control") else act_worker,
                                    args=(client, name), daemon=True) for name in names]
        for thread in threads:
            thread.start()
        try:
            for version in versions[1:]:
                with progress:  # every worker answered by the version before this swap
                    assert progress.wait_for(lambda v=version: all(v - 1 in seen.get(n, ()) for n in names),
                                             timeout=60), f"workers stalled: {seen} {problems}"
                assert load(client, make(version)).version == version
            with progress:
                assert progress.wait_for(lambda: all(versions[-1] in seen.get(n, ()) for n in names), timeout=60)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
        final = status(client)
    assert problems == []
    assert all(seen[name] == set(versions) for name in names)  # every worker was served by every version
    assert final.requests_failed == 0 and final.packets_loaded == len(versions)


def test_overload_is_resource_exhausted_not_a_queue(tmp_path: Path, discrete: tuple[bytes, bytes]) -> None:
    with edge(tmp_path, workers=2, max_concurrent_rpcs=2, max_control_streams=1) as (client, _):
        load(client, discrete[0])
        outbox: queue.Queue[edge_pb2.ControlRequest | None] = queue.Queue()
        held = client.Control(iter(outbox.get, None), timeout=T)
        outbox.put(edge_pb2.ControlRequest(sequence=1, observation=_tensor(np.zeros(4, np.float32))))
        assert next(held).sequence == 1  # one stream open and holding a worker
        second = rpc_error(lambda: control(client, [edge_pb2.ControlRequest(sequence=2)]))
        assert second.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "PLASMA_EDGE_MAX_CONTROL_STREAMS" in \
            second.details()
        assert act(client, np.zeros(4, np.float32))[0].shape == ()  # Act still finds a worker

        # A LoadPacket whose client never finishes takes the last slot: the next RPC is refused at once.
        gate = threading.Event()

        def stalled() -> Iterator[edge_pb2.LoadPacketRequest]:
            yield edge_pb2.LoadPacketRequest(header=blobs.header_for(discrete[0], packet.MEDIA_TYPE))
            gate.wait(T)

        pending = client.LoadPacket.future(stalled(), timeout=T)
        try:
            for _ in range(100):  # until the server has taken the stalled call in
                try:
                    act(client, np.zeros(4, np.float32))
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    break
                threading.Event().wait(0.05)
            else:
                pytest.fail("an RPC beyond max_concurrent_rpcs was never refused")
        finally:
            gate.set()
            outbox.put(None)
            list(held)
        assert rpc_error(pending.result).code() == grpc.StatusCode.DATA_LOSS  # its stream ended short
        assert act(client, np.zeros(4, np.float32))[0].shape == ()


# Status, metrics, configuration


def test_status_counts_requests_and_summarises_latency(loaded: Stub) -> None:
    for _ in range(20):
        act(loaded, np.zeros(4, np.float32))
    rpc_error(lambda: act(loaded, np.zeros(3, np.float32)))
    current = status(loaded)
    assert current.requests_served == 20 and current.requests_failed == 1 and current.observations_served == 20
    latency = current.inference_latency
    assert latency.count == 20 and 0 < latency.p50_ms <= latency.p90_ms <= latency.p99_ms


def test_prometheus_metrics_on_their_own_port(tmp_path: Path, discrete: tuple[bytes, bytes]) -> None:
    config = Config(address="127.0.0.1:0", store_dir=tmp_path, trusted_keys=TRUSTED, metrics_address="127.0.0.1:0")
    built = edge_server.build(config)
    built.server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{built.port}") as channel:
            client = Stub(channel)
            load(client, discrete[0])
            for _ in range(5):
                act(client, np.zeros(4, np.float32))
            rpc_error(lambda: act(client, np.zeros(3, np.float32)))
            rpc_error(lambda: load(client, discrete[0]))
        assert built.metrics_port and built.metrics_port != built.port
        with urllib.request.urlopen(f"http://127.0.0.1:{built.metrics_port}/metrics", timeout=T) as reply:
            text = reply.read().decode()
    finally:
        built.server.stop(None).wait()
        built.stop_metrics()
    lines = set(text.splitlines())
    assert 'plasma_edge_requests_total{outcome="ok"} 5.0' in lines
    assert 'plasma_edge_requests_total{outcome="error"} 1.0' in lines
    assert "plasma_edge_inference_seconds_count 5.0" in lines
    assert 'plasma_edge_inference_seconds_bucket{le="+Inf"} 5.0' in lines
    assert "plasma_edge_packet_version 1.0" in lines
    assert 'plasma_edge_packet_loads_total{result="refused_not-newer"} 1.0' in lines
    assert any(line.startswith("plasma_edge_packet_info{") and 'version="1"' in line for line in lines)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("PLASMA_EDGE_ADDRESS", "nowhere"), ("PLASMA_EDGE_ORT_INTRA_THREADS", "0"),
     ("PLASMA_EDGE_ORT_INTER_THREADS", "two"), ("PLASMA_EDGE_WORKERS", "-1"),
     ("PLASMA_EDGE_MAX_CONCURRENT_RPCS", "0"), ("PLASMA_EDGE_MAX_BATCH", "x"),
     ("PLASMA_EDGE_TRUSTED_KEYS", "/no/such/key.pub"), ("PLASMA_EDGE_TRUSTED_KEYS", "c2hvcnQ="),
     ("PLASMA_EDGE_METRICS_ADDRESS", "9464"), ("PLASMA_EDGE_MAX_CONCURRENT_RPCS", "9"),
     ("PLASMA_EDGE_MAX_CONTROL_STREAMS", "8")],
)
def test_bad_config_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Config.from_env({variable: value})


def test_default_threads_and_limits_suit_a_two_core_device() -> None:
    config = Config.from_env({})
    assert (config.ort_intra_threads, config.ort_inter_threads) == (1, 1)
    assert config.max_control_streams < config.max_concurrent_rpcs <= config.workers <= 8
    assert config.trusted_keys == {} and config.metrics_address == ""


def test_limits_follow_the_worker_count() -> None:
    config = Config.from_env({"PLASMA_EDGE_WORKERS": "2"})
    assert (config.workers, config.max_concurrent_rpcs, config.max_control_streams) == (2, 2, 1)
    single = Config.from_env({"PLASMA_EDGE_WORKERS": "1"})
    assert (single.max_concurrent_rpcs, single.max_control_streams) == (1, 0)  # Act only: no stream may hold it


def test_trusted_keys_from_files_and_base64(tmp_path: Path) -> None:
    key_file = tmp_path / "compiler.pub"
    key_file.write_text(policies.TEST_KEY.public.base64)
    other = signing.SigningKey.generate()
    config = Config.from_env({"PLASMA_EDGE_TRUSTED_KEYS": f"{key_file},{other.public.base64}"})
    assert sorted(config.trusted_keys) == sorted([policies.TEST_KEY.key_id, other.key_id])


def test_a_control_stream_its_client_cancels_ends_without_an_error_in_the_log(
    tmp_path: Path, discrete: tuple[bytes, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """A client going away is how control loops end: not an internal error with a traceback."""
    observation = tensors.to_proto(np.zeros(4, np.float32))
    with edge(tmp_path / "edge", max_control_streams=1, max_concurrent_rpcs=4) as (client, _), \
            caplog.at_level(logging.WARNING):
        load(client, discrete[0])
        outbox: queue.Queue[edge_pb2.ControlRequest] = queue.Queue()
        call = client.Control(iter(outbox.get, None), timeout=T)
        outbox.put(edge_pb2.ControlRequest(sequence=1, observation=observation))
        assert next(call).sequence == 1
        call.cancel()

        def slot_free() -> bool:  # the one stream slot is released once the cancelled stream's handler ended
            try:
                return len(control(client, [edge_pb2.ControlRequest(sequence=2, observation=observation)])) == 1
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                return False

        eventually(slot_free, what="the cancelled stream's slot to be released")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
