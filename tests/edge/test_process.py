"""The edge runtime as its own process (`python -m edge_runtime.server`): torch-free, health-checked,
stops cleanly on SIGTERM, and serves its stored packet after a restart without being sent one."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest

from plasma import tensors
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from tests.edge.helpers import T, load, status, trusted_env

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0


@dataclass
class EdgeProcess:
    process: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)
    timeout_s: float = START_TIMEOUT_S

    def _drain(self) -> None:
        # Reading in a thread keeps the pipe from filling (which would block the server's logging).
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str) -> re.Match[str]:
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.output.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r}; output so far:\n{''.join(self.output)}")


@contextmanager
def edge_process(store: Path, launcher: tuple[str, ...] = (),
                 timeout_s: float = START_TIMEOUT_S) -> Iterator[tuple[EdgeProcess, str]]:
    """`python -m edge_runtime.server` on a free port; `launcher` runs it (e.g. under an emulator)."""
    process = subprocess.Popen(
        [*launcher, sys.executable, "-m", "edge_runtime.server", "--address", "127.0.0.1:0", "--store", str(store)],
        cwd=REPO_ROOT, env={**os.environ, "PLASMA_LOG_LEVEL": "INFO", **trusted_env()},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    edge = EdgeProcess(process, timeout_s=timeout_s)
    threading.Thread(target=edge._drain, daemon=True).start()
    try:
        port = edge.wait_for(r"edge serving port=(\d+)").group(1)
        yield edge, f"127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def healthcheck(address: str) -> int:
    return subprocess.run([sys.executable, "-m", "edge_runtime.healthcheck", "--address", address],
                          cwd=REPO_ROOT, timeout=60).returncode


def act(address: str, observation: np.ndarray) -> np.ndarray:
    with grpc.insecure_channel(address) as channel:
        stub = edge_pb2_grpc.EdgeRuntimeServiceStub(channel)
        reply = stub.Act(edge_pb2.ActRequest(observation=tensors.to_proto(observation)), timeout=T)
    return tensors.from_proto(reply.action)


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
