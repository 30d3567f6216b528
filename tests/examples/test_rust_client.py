"""examples/rust-client (tonic + prost) built with cargo and run against a real edge runtime on port 0 serving a
real signed packet: GetStatus, unary Act, a Control loop with its sequence numbers checked."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from edge_runtime import server as edge_server
from edge_runtime.config import Config
from plasma import channels, tensors
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from tests.conftest import running
from tests.support import policies
from tests.support.edge import TRUSTED, T, load, status

CRATE = Path(__file__).resolve().parents[2] / "examples" / "rust-client"
BINARY = CRATE / "target" / "release" / "plasma-edge-client"
# The first build compiles tonic, hyper and tokio: minutes on a busy 2-core machine.
BUILD_TIMEOUT_S = 900
RUN_TIMEOUT_S = 120
# cargo's wording when it cannot reach crates.io (an offline machine cannot build the example; nothing to test).
OFFLINE = re.compile(r"failed to (download|query replaced source registry|get .* as a dependency)|"
                     r"Unable to update registry|Couldn't resolve host|failed to load source for dependency|"
                     r"you're using offline mode")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(BUILD_TIMEOUT_S + 300)]


@pytest.fixture(scope="module")
def client_binary() -> Path:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo is not on PATH (install Rust from https://rustup.rs to build examples/rust-client)")
    # Build output stays in examples/rust-client/target whatever CARGO_TARGET_DIR the caller has.
    env = {**os.environ, "CARGO_TARGET_DIR": str(CRATE / "target")}
    try:
        built = subprocess.run([cargo, "build", "--release", "--locked"], cwd=CRATE, env=env, capture_output=True,
                               text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"cargo build did not finish within {BUILD_TIMEOUT_S} s")
    if built.returncode != 0 and OFFLINE.search(built.stderr):
        pytest.skip(f"cargo cannot fetch the crates (offline?): {built.stderr.strip().splitlines()[-1]}")
    assert built.returncode == 0, f"cargo build failed:\n{built.stderr}"
    assert BINARY.is_file()
    return BINARY


@contextmanager
def edge(store: Path) -> Iterator[tuple[str, edge_pb2_grpc.EdgeRuntimeServiceStub]]:
    """A real edge runtime in this process on a free port, trusting the test key (as tests/edge does)."""
    config = Config(address="127.0.0.1:0", store_dir=store, trusted_keys=TRUSTED)
    with running(lambda: edge_server.create_server(config), edge_server.SERVICE_NAME) as address, \
            channels.channel(address) as channel:
        yield address, edge_pb2_grpc.EdgeRuntimeServiceStub(channel)


def run_client(binary: Path, address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), "--address", address, "--timeout-ms", str(int(T * 1000)), *args],
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)


def test_status_act_and_control_loop(client_binary: Path, tmp_path: Path) -> None:
    data, _ = policies.make_packet("discrete", seed=0, version=1)
    steps, acts = 200, 5
    with edge(tmp_path / "edge") as (address, stub):
        info = load(stub, data)
        before = status(stub)
        result = run_client(client_binary, address, "--steps", str(steps), "--acts", str(acts))
        after = status(stub)
        assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        out = result.stdout
        print(out)  # the figures, with -s

        # GetStatus: the served packet, and the observation shape read from its env spec (no --obs-dim given).
        assert f"serving {info.name} v{info.version} (id {info.packet_id}" in out
        assert "observation shape [4], action space discrete n=2" in out

        # Act: a discrete action for one observation without a batch axis is a 0-d int64 tensor. The printed
        # observations are exact (shortest round-trip float32), so the same Act from Python must agree.
        act_lines = re.findall(r"^act (\d+): observation \[(.*)\] -> action (-?\d+) \(int64, shape \[\]\)", out,
                               re.MULTILINE)
        assert [int(i) for i, _, _ in act_lines] == list(range(acts))
        for _, values, action in act_lines:
            observation = np.array([float(v) for v in values.split(",")], np.float32)
            assert observation.shape == (4,)
            reply = stub.Act(edge_pb2.ActRequest(observation=tensors.to_proto(observation)), timeout=T)
            assert int(tensors.from_proto(reply.action, "action")) == int(action)

        # Control: every step answered, in order (the client checks each echoed sequence number and exits 1
        # otherwise), and its figures reported.
        assert f"control: {steps} steps, {steps} actions, sequence numbers echoed in order" in out
        summary = re.search(r"^summary actions=(\d+) act=(\d+) control=(\d+) in_order=true "
                            r"p50_ms=([\d.]+) p99_ms=([\d.]+)$", out, re.MULTILINE)
        assert summary is not None, out
        total, act_count, control_count = (int(summary[i]) for i in (1, 2, 3))
        assert (total, act_count, control_count) == (acts + steps, acts, steps)
        p50, p99 = float(summary[4]), float(summary[5])
        assert 0 < p50 <= p99

        # The runtime saw exactly that: one observation per Act call and per Control message, none refused.
        assert after.requests_served - before.requests_served == acts + steps
        assert after.observations_served - before.observations_served == acts + steps
        assert after.requests_failed == before.requests_failed


def test_box_actions_are_float32(client_binary: Path, tmp_path: Path) -> None:
    """A box policy (Pendulum-like: observation [3], action [1]) answers float32 arrays, decoded exactly."""
    data, _ = policies.make_packet("box", seed=0, version=1)
    with edge(tmp_path / "edge") as (address, stub):
        load(stub, data)
        result = run_client(client_binary, address, "--steps", "20", "--acts", "3")
        assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        out = result.stdout
        assert "observation shape [3], action space box shape [1]" in out
        act_lines = re.findall(r"^act \d+: observation \[(.*)\] -> action \[(.*)\] \(float32, shape \[1\]\)", out,
                               re.MULTILINE)
        assert len(act_lines) == 3
        for values, action in act_lines:
            observation = np.array([float(v) for v in values.split(",")], np.float32)
            reply = stub.Act(edge_pb2.ActRequest(observation=tensors.to_proto(observation)), timeout=T)
            expected = tensors.from_proto(reply.action, "action")
            assert expected.dtype == np.float32 and expected.shape == (1,)
            assert np.float32(float(action)) == expected[0]
        assert re.search(r"^summary actions=23 act=3 control=20 in_order=true ", out, re.MULTILINE), out


def test_refuses_to_run_without_a_packet(client_binary: Path, tmp_path: Path) -> None:
    with edge(tmp_path / "edge") as (address, _):
        result = run_client(client_binary, address, "--steps", "3")
    assert result.returncode == 1
    assert "status: serving no packet" in result.stdout
    assert "serves no packet yet" in result.stderr
