"""Edge latency, batch 1: onnxruntime direct, the runtime in-process, Act over gRPC, Control ping-pong and
Control pipelined, against an edge runtime started as its own process on loopback.

    .venv/bin/python -m bench.edge_latency [--packet FILE] [--requests N] [--window W]

Without --packet it compiles an untrained 4->64->64->2 policy (CartPole-sized) into a packet first.
Prints the command, the machine, and p50/p99 per path; asserts nothing (figures depend on the machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort

from edge_runtime.session import Runtime
from edge_runtime.store import EdgeStore
from plasma import packet
from plasma.core import blobs, grpc_client, tensors
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]

WARMUP = 200


def build_packet() -> bytes:
    """An untrained CartPole-sized policy through the compiler's own export and quantization."""
    import torch

    from services.common.policy_net import PolicyNet, PolicySpec
    from services.compiler import export

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = PolicyNet(PolicySpec(obs_dim=4, action_kind="discrete", action_dim=2)).eval()
    int8 = export.quantize_int8(export.export_onnx(net))
    inf = float("inf")
    return packet.build(
        packet_id="pkt-bench0000000", name="bench", created_at="2026-01-01T00:00:00Z", source_run_id="bench",
        env_id="CartPole-v1", action_space=packet.Space(kind="discrete", n=2),
        observation_space=packet.Space(kind="box", shape=(4,), low=(-4.8, -inf, -0.42, -inf),
                                       high=(4.8, inf, 0.42, inf)),
        model_onnx=int8, opset=export.OPSET, normalization={}, quantization={}, parity={}, versions={},
    )


def timed(call: Callable[[np.ndarray], object], observations: np.ndarray) -> np.ndarray:
    """Per-call latency in ms after a warm-up."""
    for obs in observations[:WARMUP]:
        call(obs)
    latencies = np.empty(len(observations))
    for i, obs in enumerate(observations):
        started = time.perf_counter()
        call(obs)
        latencies[i] = time.perf_counter() - started
    return latencies * 1e3


def control_ping_pong(stub: edge_pb2_grpc.EdgeRuntimeServiceStub, observations: np.ndarray) -> np.ndarray:
    """One stream; each observation is sent only after the previous action came back."""
    outbox: queue.Queue[edge_pb2.ControlRequest | None] = queue.Queue()
    responses = stub.Control(iter(outbox.get, None), timeout=grpc_client.STREAM_DEADLINE_S)
    sequence = iter(range(10**9))

    def call(obs: np.ndarray) -> None:
        outbox.put(edge_pb2.ControlRequest(sequence=next(sequence), observation=tensors.to_proto(obs)))
        next(responses)

    try:
        return timed(call, observations)
    finally:
        outbox.put(None)
        list(responses)


def control_pipelined(
    stub: edge_pb2_grpc.EdgeRuntimeServiceStub, observations: np.ndarray, window: int
) -> tuple[np.ndarray, float]:
    """Up to `window` observations in flight on one stream; per-message latency and messages per second."""
    in_flight = threading.Semaphore(window)
    sent_at = np.zeros(len(observations))

    def requests() -> Iterator[edge_pb2.ControlRequest]:
        for i, obs in enumerate(observations):
            in_flight.acquire()
            sent_at[i] = time.perf_counter()
            yield edge_pb2.ControlRequest(sequence=i, observation=tensors.to_proto(obs))

    latencies = np.empty(len(observations))
    started = time.perf_counter()
    for response in stub.Control(requests(), timeout=grpc_client.STREAM_DEADLINE_S):
        latencies[response.sequence] = time.perf_counter() - sent_at[response.sequence]
        in_flight.release()
    return latencies * 1e3, len(observations) / (time.perf_counter() - started)


def start_edge(store: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime.server", "--address", "127.0.0.1:0", "--store", str(store)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PLASMA_LOG_LEVEL": "INFO"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if match := re.search(r"edge serving port=(\d+)", line):
            # Keep draining so the server never blocks on a full pipe.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, f"127.0.0.1:{match.group(1)}"
    raise RuntimeError(f"edge runtime exited with code {process.wait()} before serving")


def summary(name: str, latencies_ms: np.ndarray, rate: float | None = None) -> str:
    p50, p99 = np.percentile(latencies_ms, [50, 99])
    rate = rate if rate is not None else 1e3 / latencies_ms.mean()
    return f"{name:<34} {p50:9.3f} {p99:9.3f} {rate:10.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packet", type=Path, help="packet file (default: compile an untrained policy)")
    parser.add_argument("--requests", type=int, default=3000, help="timed requests per path")
    parser.add_argument("--window", type=int, default=32, help="messages in flight for the pipelined Control run")
    args = parser.parse_args()
    print("command:", " ".join([sys.executable, "-m", "bench.edge_latency", *sys.argv[1:]]))
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}, "
          f"onnxruntime {ort.__version__}, grpcio {grpc.__version__}")

    data = args.packet.read_bytes() if args.packet else build_packet()
    manifest, model = packet.read(data)
    print(f"packet: {manifest.packet_id} {len(data)} bytes, int8 model {len(model)} bytes")
    rng = np.random.default_rng(0)
    observations = (rng.normal(size=(args.requests, manifest.obs_dim)) * 0.5).astype(np.float32)

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    direct = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    rows = [summary("onnxruntime direct", timed(
        lambda obs: direct.run([packet.ACTION_OUTPUT], {packet.INPUT_NAME: obs[None]}), observations))]

    with tempfile.TemporaryDirectory(prefix="plasma-bench-") as tmp:
        runtime = Runtime(EdgeStore(Path(tmp) / "inprocess"), 1, 1, 1024)
        runtime.load(data)
        rows.append(summary("runtime in-process (checks + ort)", timed(runtime.act, observations)))

        process, address = start_edge(Path(tmp) / "edge")
        try:
            with grpc_client.channel(address) as channel:
                stub = edge_pb2_grpc.EdgeRuntimeServiceStub(channel)
                header = blobs.header_for(data, packet.MEDIA_TYPE)
                stub.LoadPacket(iter([edge_pb2.LoadPacketRequest(header=header),
                                      edge_pb2.LoadPacketRequest(chunk=data)]), timeout=grpc_client.UNARY_DEADLINE_S)

                def act(obs: np.ndarray) -> None:
                    reply = stub.Act(edge_pb2.ActRequest(observation=tensors.to_proto(obs)),
                                     timeout=grpc_client.UNARY_DEADLINE_S)
                    tensors.from_proto(reply.action)

                rows.append(summary("Act over gRPC (unary)", timed(act, observations)))
                rows.append(summary("Control ping-pong (one stream)", control_ping_pong(stub, observations)))
                latencies, rate = control_pipelined(stub, observations, args.window)
                rows.append(summary(f"Control pipelined (window {args.window})", latencies, rate))
                server = stub.GetStatus(edge_pb2.GetStatusRequest(), timeout=grpc_client.UNARY_DEADLINE_S)
        finally:
            process.terminate()
            process.wait(timeout=30)

    print(f"\n{'path (batch 1)':<34} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>10}")
    print("\n".join(rows))
    latency = server.inference_latency
    print(f"\nserver-side inference (GetStatus, last {latency.count} requests): "
          f"p50 {latency.p50_ms:.3f} ms, p99 {latency.p99_ms:.3f} ms")


if __name__ == "__main__":
    main()
