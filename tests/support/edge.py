"""Edge runtime helpers shared by the tests: loading packets, reading refusals, the runtime as its own process,
and what a packet's graph answers computed directly with onnxruntime."""

from __future__ import annotations

import os
import queue
import re
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
import onnxruntime as ort

from edge_runtime import errors
from plasma import blobs, packet, signing, tensors
from plasma.common.v1 import common_pb2
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from tests.support import policies

T = 30.0
TRUSTED = {policies.TEST_KEY.key_id: policies.TEST_KEY.public}


def trusted_env(key: signing.SigningKey = policies.TEST_KEY) -> dict[str, str]:
    return {"PLASMA_EDGE_TRUSTED_KEYS": key.public.base64}


def load_requests(
    data: bytes, header: common_pb2.BlobHeader | None = None, chunk_bytes: int = 4096
) -> Iterator[edge_pb2.LoadPacketRequest]:
    if header is None:
        yield from blobs.send(data, packet.MEDIA_TYPE, edge_pb2.LoadPacketRequest, chunk_bytes)
        return
    yield edge_pb2.LoadPacketRequest(header=header)
    for chunk in blobs.chunks(data, chunk_bytes):
        yield edge_pb2.LoadPacketRequest(chunk=chunk)


def load(
    stub: edge_pb2_grpc.EdgeRuntimeServiceStub, data: bytes, header: common_pb2.BlobHeader | None = None
) -> edge_pb2.PacketInfo:
    return stub.LoadPacket(load_requests(data, header), timeout=T).packet


def status(stub: edge_pb2_grpc.EdgeRuntimeServiceStub) -> edge_pb2.GetStatusResponse:
    return stub.GetStatus(edge_pb2.GetStatusRequest(), timeout=T)


def refusal(error: grpc.RpcError) -> str:
    """The machine-readable reason a LoadPacket or Rollback was refused."""
    return dict(error.trailing_metadata() or ()).get(errors.REFUSAL_KEY, "")


# The edge runtime as its own process

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


def packet_action(data: bytes, observation: list[float]) -> list[int]:
    """What the packet's int8 graph answers for one observation, computed here with onnxruntime."""
    _, model = packet.read(data)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run([packet.ACTION_OUTPUT], {packet.INPUT_NAME: np.array([observation], np.float32)})[0].tolist()
