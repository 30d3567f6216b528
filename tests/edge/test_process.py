"""The edge runtime as its own process (`python -m edge_runtime.server`): torch-free, health-checked,
stops cleanly on SIGTERM, and serves its stored packet after a restart without being sent one."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from plasma.edge.v1 import edge_pb2_grpc
from tests.support.edge import REPO_ROOT, act, edge_process, healthcheck, load, status


def test_edge_modules_do_not_import_torch() -> None:
    code = ("import sys, edge_runtime.server, edge_runtime.session, edge_runtime.healthcheck, edge_runtime.metrics; "
            "sys.exit(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3] or 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, timeout=120, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to inspect the process")
def test_a_serving_process_is_torch_free_and_stops_cleanly_on_sigterm(
    tmp_path: Path, discrete: tuple[bytes, bytes]
) -> None:
    with edge_process(tmp_path) as (edge, address):
        assert healthcheck(address) == 0
        with grpc.insecure_channel(address) as channel:
            stub = edge_pb2_grpc.EdgeRuntimeServiceStub(channel)
            load(stub, discrete[0])
            assert status(stub).serving
        assert act(address, np.zeros(4, np.float32)).shape == ()
        # Having loaded and served a packet, the process has mapped no torch library.
        maps = Path(f"/proc/{edge.process.pid}/maps").read_text()
        assert "torch" not in maps
        edge.process.send_signal(signal.SIGTERM)
        assert edge.process.wait(timeout=30) == 0
        edge.wait_for(r"msg=stopped")
        assert healthcheck(address) == 1


def test_a_restarted_process_serves_its_stored_packet(tmp_path: Path, discrete: tuple[bytes, bytes]) -> None:
    observations = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32) * 0.1
    with edge_process(tmp_path) as (_, address), grpc.insecure_channel(address) as channel:
        info = load(edge_pb2_grpc.EdgeRuntimeServiceStub(channel), discrete[0])
        before = act(address, observations)
    with edge_process(tmp_path) as (edge, address), grpc.insecure_channel(address) as channel:
        assert any(f"serving stored packet={info.packet_id}" in line for line in edge.output)
        current = status(edge_pb2_grpc.EdgeRuntimeServiceStub(channel))
        assert current.serving and current.packet.sha256 == info.sha256
        np.testing.assert_array_equal(act(address, observations), before)
