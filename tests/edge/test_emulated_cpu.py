"""The edge runtime on a CPU without VNNI, emulated: QEMU's EPYC-Rome model (AVX2, no AVX-512, no VNNI, like the
AMD EPYC machines where dynamic int8 packets lost parity) runs the edge process unchanged, and onnxruntime picks
its AVX2 int8 kernels there exactly as on such a CPU.

Skipped where `qemu-x86_64` (Debian's qemu-user) is not installed or the machine is not x86-64.
"""

from __future__ import annotations

import platform
import shutil
import tempfile
from pathlib import Path

import grpc
import numpy as np
import pytest
from onnxruntime.quantization import QuantType, quantize_dynamic

from edge_runtime import self_test
from plasma import packet
from plasma.edge.v1 import edge_pb2_grpc
from plasma.spaces import EnvSpec
from services.compiler import export, gate
from tests.conftest import rpc_error
from tests.support import policies, worlds
from tests.support.edge import act, edge_process, load, refusal, status

QEMU = shutil.which("qemu-x86_64")
EPYC_ROME = (QEMU or "qemu-x86_64", "-cpu", "EPYC-Rome")
# Python, numpy, grpcio and onnxruntime start ~10x slower under emulation.
START_TIMEOUT_S = 300.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(QEMU is None or platform.machine() != "x86_64",
                       reason="needs qemu-x86_64 (Debian's qemu-user) on an x86-64 machine to emulate a CPU "
                              "without VNNI"),
]


def test_a_compiled_packet_computes_the_same_numbers_without_vnni(
    tmp_path: Path, discrete: tuple[bytes, bytes]
) -> None:
    observations = policies.observations("discrete", 64, seed=21)
    native = export.Graph(packet.read(discrete[0])[1], 1).act(observations)
    with edge_process(tmp_path, EPYC_ROME, START_TIMEOUT_S) as (_, address), \
            grpc.insecure_channel(address) as channel:
        stub = edge_pb2_grpc.EdgeRuntimeServiceStub(channel)
        test = load(stub, discrete[0]).self_test
        assert test.passed and "AVX2" in test.cpu_features and "AVX512VNNI" not in test.cpu_features
        assert test.max_abs_diff_from_compiler == 0.0  # bit for bit what this (the compiler's) CPU computed
        np.testing.assert_array_equal(act(address, observations), native)


def _saturating_packet() -> bytes:
    """What the compiler shipped before the precision ladder: dynamic int8 with full-range 8-bit weights. Its
    logits span about +-13.5, like the CartPole policy whose packet the compiler refused on an AMD EPYC."""
    bundle = policies.make_bundle()
    net, _ = export.merge_adapter(bundle, bundle.parity_observations)
    fp32 = export.export_onnx(net)
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(fp32)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8)
        int8 = target.read_bytes()
    # Its self-test as the compiler builds one (gate.judge), on this CPU: one observation per call.
    world = worlds.world("discrete")
    reference = gate.Reference.measure(export.Graph(fp32, 1), world.scenario(), np.zeros((0, 4), np.float32),
                                       discrete=True, action_span=None, seed=0)
    verdict = gate.judge(export.Graph(int8, 1, per_row=True), reference, world.scenario(), min_agreement=0.95)
    spec = EnvSpec.from_proto(policies.env_spec("discrete"))
    return packet.build(
        packet_id="pkt-saturating01", name="saturating", version=1, source_run_id="run-x",
        created_at="2026-01-01T00:00:00Z", env_id=spec.env_id, observation_space=spec.observation,
        action_space=spec.action, payload=int8, opset=export.OPSET, signer=policies.TEST_KEY,
        quantization={"precision": "int8-dynamic"},
        self_test=policies.self_test_of(fp32, int8, verdict.self_test_observations, per_row=True),
    )


@pytest.mark.skipif("AVX512VNNI" not in self_test.cpu_features() and "AVX_VNNI" not in self_test.cpu_features(),
                    reason="this CPU has no VNNI itself: the packet's self-test would record its saturated sums")
def test_a_dynamic_int8_packet_that_saturates_without_vnni_is_refused_there(tmp_path: Path) -> None:
    data = _saturating_packet()
    with edge_process(tmp_path, EPYC_ROME, START_TIMEOUT_S) as (_, address), \
            grpc.insecure_channel(address) as channel:
        stub = edge_pb2_grpc.EdgeRuntimeServiceStub(channel)
        error = rpc_error(lambda: load(stub, data))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and refusal(error) == "self-test-failed"
        assert "CPU features" in error.details() and "AVX512VNNI" not in error.details()
        assert not status(stub).serving
