"""Edge latency, batch 1, all in one run on one machine: onnxruntime called directly (the floor), the runtime's
in-process path (validation + onnxruntime + figures), Act over gRPC, Control ping-pong, and Control pipelined
(one observation per message, and batches of observations per message), against an edge runtime started as
its own process on loopback; plus that process's RSS while serving and its cold start (process start ->
health SERVING, and -> first action, with the packet already in its store).

    .venv/bin/python -m bench.edge_latency [--packet FILE --trusted-key BASE64] [--requests N] [--window W] [--pin]

Without --packet it compiles an untrained 4->64->64->2 policy (CartPole-sized) into a packet signed by a
throwaway key. Prints the command, the machine, and p50/p99 and throughput per path; asserts nothing
(figures depend on the machine, and on what else runs on it).
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edge_runtime.config import Config
from edge_runtime.runtime import Runtime
from edge_runtime.server import MAX_RECEIVE_BYTES, SERVICE_NAME
from edge_runtime.store import EdgeStore
from plasma import blobs, channels, packet, signing, tensors
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.server import grpc_server
from plasma.server.observability import Observability
from plasma.spaces import Space

ROOT = Path(__file__).resolve().parents[1]

WARMUP = 200
PING_PONG = "Control ping-pong (one stream)"


def build_packet(key: signing.SigningKey) -> bytes:
    """An untrained CartPole-sized policy through the compiler's own export and int8 rung (its self-test: states
    drawn around the origin, with the fp32 graph's answers)."""
    import torch

    from plasma.mbrl.policy_net import PolicyNet, PolicySpec
    from services.compiler import export, precision

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = PolicyNet(PolicySpec(obs_dim=4, action_kind="discrete", action_dim=2)).eval()
    fp32 = export.export_onnx(net)
    states = np.random.default_rng(0).normal(0.0, 0.5, (512, 4)).astype(np.float32)
    int8 = precision.build(precision.INT8, fp32, states)
    test = states[:48]
    reference_action, reference_output = export.Graph(fp32, 1).run(test)
    self_test = packet.SelfTest(observations=test, reference_output=reference_output,
                                reference_action=reference_action, expected_output=export.Graph(int8, 1).run(test)[1],
                                min_agreement=0.95)
    inf = float("inf")
    return packet.build(
        packet_id="pkt-bench0000000", name="bench", version=1, created_at="2026-01-01T00:00:00Z",
        source_run_id="bench", env_id="CartPole-v1", action_space=Space(kind="discrete", n=2),
        observation_space=Space(kind="box", shape=(4,), low=(-4.8, -inf, -0.42, -inf),
                                       high=(4.8, inf, 0.42, inf)),
        payload=int8, opset=export.OPSET, signer=key, quantization={"precision": precision.INT8},
        self_test=self_test,
    )


def timed(call: Callable[[Any], object], observations: Any) -> np.ndarray:
    """Per-call latency in ms after a warm-up."""
    for obs in observations[:WARMUP]:
        call(obs)
    latencies = np.empty(len(observations))
    for i, obs in enumerate(observations):
        started = time.perf_counter()
        call(obs)
        latencies[i] = time.perf_counter() - started
    return latencies * 1e3


def interleaved(paths: dict[str, Callable[[Any], object]], items: np.ndarray, rounds: int) -> dict[str, np.ndarray]:
    """Each path's latencies, measured in alternating slices so that a busy moment of a shared machine
    falls on every path alike instead of on whichever ran then."""
    slices = np.array_split(items, rounds)
    results: dict[str, list[np.ndarray]] = {name: [] for name in paths}
    for part in slices:
        for name, call in paths.items():
            results[name].append(timed(call, part))
    return {name: np.concatenate(parts) for name, parts in results.items()}


class EchoServicer(edge_pb2_grpc.EdgeRuntimeServiceServicer):
    """The transport alone: answers every Act and Control message with a fixed action, no checks, no inference.
    What the edge's gRPC server on this machine can do at best with the same client and messages."""

    def __init__(self) -> None:
        self._action = tensors.to_proto(np.array(0, dtype=np.int64))

    def Act(self, request: edge_pb2.ActRequest, context: grpc.ServicerContext) -> edge_pb2.ActResponse:
        return edge_pb2.ActResponse(action=self._action, packet_id="pkt-echo", packet_version=1)

    def Control(self, request_iterator: Iterator[edge_pb2.ControlRequest],
                context: grpc.ServicerContext) -> Iterator[edge_pb2.ControlResponse]:
        for request in request_iterator:
            yield edge_pb2.ControlResponse(sequence=request.sequence, action=self._action, packet_id="pkt-echo",
                                           packet_version=1)

    # Not part of the transport measured: UNIMPLEMENTED, like the generated base class.
    def LoadPacket(self, request_iterator: Iterator[edge_pb2.LoadPacketRequest],
                   context: grpc.ServicerContext) -> edge_pb2.LoadPacketResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the echo server answers Act and Control only")

    def Rollback(self, request: edge_pb2.RollbackRequest, context: grpc.ServicerContext) -> edge_pb2.RollbackResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the echo server answers Act and Control only")

    def GetStatus(self, request: edge_pb2.GetStatusRequest,
                  context: grpc.ServicerContext) -> edge_pb2.GetStatusResponse:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the echo server answers Act and Control only")

    def ExportExperience(self, request: edge_pb2.ExportExperienceRequest,
                         context: grpc.ServicerContext) -> Iterator[edge_pb2.ExportExperienceResponse]:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "the echo server answers Act and Control only")


def echo_server() -> None:
    """The echo servicer in the server the edge builds from the same environment (edge_runtime.server.build): the
    same worker pool, limits, message sizes and interceptors, health and reflection beside it; a process of its own,
    like the edge's. Only the servicer differs, so the ratio of the two is what the edge's own code costs."""
    config = Config.from_env()
    # Metrics (when asked for) on a port of the echo's own: the same interceptor, no clash with the edge's.
    observability = Observability("edge", "127.0.0.1:0" if config.metrics_address else "")
    server = grpc_server.build_server(config.workers, config.max_concurrent_rpcs, MAX_RECEIVE_BYTES, config.security,
                                      observability)
    grpc_server.add_health_and_reflection(server, [SERVICE_NAME])
    edge_pb2_grpc.add_EdgeRuntimeServiceServicer_to_server(EchoServicer(), server)
    port = grpc_server.bind(server, "127.0.0.1:0", config.security)
    server.start()
    print(f"edge serving port={port}", flush=True)
    server.wait_for_termination()


def control_ping_pong(stub: edge_pb2_grpc.EdgeRuntimeServiceStub, observations: np.ndarray) -> np.ndarray:
    """One stream; each observation is sent only after the previous action came back."""
    outbox: queue.Queue[edge_pb2.ControlRequest | None] = queue.Queue()
    responses = stub.Control(iter(outbox.get, None), timeout=channels.STREAM_DEADLINE_S)
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
    stub: edge_pb2_grpc.EdgeRuntimeServiceStub, observations: np.ndarray, window: int, per_message: int = 1
) -> tuple[np.ndarray, float]:
    """Up to `window` messages in flight on one stream, each carrying `per_message` observations; per-message
    latency and observations (actions) per second."""
    messages = [observations[i:i + per_message] if per_message > 1 else observations[i]
                for i in range(0, len(observations) - per_message + 1, per_message)]
    encoded = [tensors.to_proto(m) for m in messages]  # built before the clock starts: the client is not timed
    in_flight = threading.Semaphore(window)
    sent_at = np.zeros(len(messages))

    def requests() -> Iterator[edge_pb2.ControlRequest]:
        for i, tensor in enumerate(encoded):
            in_flight.acquire()
            sent_at[i] = time.perf_counter()
            yield edge_pb2.ControlRequest(sequence=i, observation=tensor)

    latencies = np.empty(len(messages))
    started = time.perf_counter()
    for response in stub.Control(requests(), timeout=channels.STREAM_DEADLINE_S):
        latencies[response.sequence] = time.perf_counter() - sent_at[response.sequence]
        in_flight.release()
    return latencies * 1e3, len(messages) * per_message / (time.perf_counter() - started)


def start_edge(store: Path, key: signing.VerifyingKey, echo: bool = False,
               cpus: set[int] | None = None) -> tuple[subprocess.Popen[str], str, float]:
    """The runtime (or the echo server) as its own process, on `cpus` if given; returns it, its address, and seconds
    from spawn to the log line."""
    started = time.perf_counter()
    command = ([sys.executable, "-m", "bench.edge_latency", "--echo-server"] if echo else
               [sys.executable, "-m", "edge_runtime.server", "--address", "127.0.0.1:0", "--store", str(store)])
    process = subprocess.Popen(
        command,
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PLASMA_LOG_LEVEL": "INFO", "PLASMA_EDGE_TRUSTED_KEYS": key.base64},
    )
    if cpus is not None:  # before its interpreter is up, so that every thread it starts inherits them
        os.sched_setaffinity(process.pid, cpus)
    assert process.stdout is not None
    for line in process.stdout:
        if match := re.search(r"edge serving port=(\d+)", line):
            # Keep draining so the server never blocks on a full pipe.
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, f"127.0.0.1:{match.group(1)}", time.perf_counter() - started
    raise RuntimeError(f"edge runtime exited with code {process.wait()} before serving")


def cold_start(store: Path, key: signing.VerifyingKey, observation: np.ndarray,
               cpus: set[int] | None = None) -> tuple[float, float]:
    """Seconds from spawning a runtime whose store holds a packet to (health SERVING, first action)."""
    started = time.perf_counter()
    process, address, _ = start_edge(store, key, cpus=cpus)
    try:
        with channels.channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while health.Check(health_pb2.HealthCheckRequest(), timeout=5).status != \
                    health_pb2.HealthCheckResponse.SERVING:
                time.sleep(0.002)
            serving = time.perf_counter() - started
            edge_pb2_grpc.EdgeRuntimeServiceStub(channel).Act(
                edge_pb2.ActRequest(observation=tensors.to_proto(observation)), timeout=5)
            return serving, time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)


def rss_mb(pid: int) -> tuple[float, float]:
    """(resident set now, its peak) in MB, from /proc."""
    text = Path(f"/proc/{pid}/status").read_text()

    def kilobytes(field: str) -> int:
        match = re.search(rf"{field}:\s+(\d+) kB", text)
        assert match is not None, f"/proc/{pid}/status has no {field}"
        return int(match.group(1))

    now, peak = kilobytes("VmRSS"), kilobytes("VmHWM")
    return now / 1024, peak / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (/proc/PID/stat): less swayed by a busy machine than
    latency, which also counts the time a ready thread waits for a core."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_parts_mb(pid: int) -> dict[str, float]:
    """What the resident set holds (/proc/PID/smaps_rollup): "Anonymous" is the process's own memory (heaps,
    arenas, thread stacks), the rest is file-backed, mostly shared libraries' code; "Pss" counts pages shared
    with other processes (the client here imports the same libraries) by share."""
    parts = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value, *_ = line.split()
        parts[name.rstrip(":")] = int(value) / 1024
    return parts


def summary(name: str, latencies_ms: np.ndarray, rate: float | None = None) -> str:
    p50, p99 = np.percentile(latencies_ms, [50, 99])
    rate = rate if rate is not None else 1e3 / latencies_ms.mean()
    return f"{name:<40} {p50:9.3f} {p99:9.3f} {rate:10.0f}"


def grpc_paths(stub: edge_pb2_grpc.EdgeRuntimeServiceStub, observations: np.ndarray, window: int,
               batch: int) -> dict[str, tuple[np.ndarray, float | None]]:
    """One round of every gRPC path against one server: name -> (latencies ms, actions/s or None)."""

    def act(obs: np.ndarray) -> None:
        reply = stub.Act(edge_pb2.ActRequest(observation=tensors.to_proto(obs)), timeout=channels.UNARY_DEADLINE_S)
        tensors.from_proto(reply.action)

    return {
        "Act over gRPC (unary)": (timed(act, observations), None),
        PING_PONG: (control_ping_pong(stub, observations), None),
        f"Control pipelined (window {window})": control_pipelined(stub, observations, window),
        f"Control pipelined, {batch} obs/message": control_pipelined(stub, observations, window, batch),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packet", type=Path, help="packet file (default: compile an untrained policy)")
    parser.add_argument("--trusted-key", help="base64 public key that signed --packet")
    parser.add_argument("--requests", type=int, default=6000, help="timed requests per path")
    parser.add_argument("--rounds", type=int, default=3, help="alternating slices the requests are split into")
    parser.add_argument("--window", type=int, default=32, help="messages in flight for the pipelined Control runs")
    parser.add_argument("--batch", type=int, default=8, help="observations per message for the batched Control run")
    parser.add_argument("--cold-starts", type=int, default=3, help="cold starts to time (median reported)")
    parser.add_argument("--pin", action="store_true",
                        help="both servers on the last CPU, this client on the others: on a small shared machine, "
                             "fewer migrations between cores, steadier figures")
    parser.add_argument("--echo-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        echo_server()
        return
    server_cpus = None
    if args.pin:
        allowed = sorted(os.sched_getaffinity(0))
        if len(allowed) < 2:
            parser.error("--pin needs at least 2 CPUs")
        server_cpus = {allowed[-1]}
        os.sched_setaffinity(0, allowed[:-1])  # before any thread starts: gRPC's and onnxruntime's inherit it
    print("command:", " ".join([sys.executable, "-m", "bench.edge_latency", *sys.argv[1:]]))
    pinned = f", servers pinned to CPU {min(server_cpus)}" if server_cpus else ""
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus{pinned}, load average {os.getloadavg()[0]:.2f} at "
          f"start, python {platform.python_version()}, onnxruntime {ort.__version__}, grpcio {grpc.__version__}")

    if args.packet:
        if not args.trusted_key:
            parser.error("--packet needs --trusted-key (the base64 public key that signed it)")
        data = args.packet.read_bytes()
        verifying = next(iter(signing.parse_trusted_keys(args.trusted_key).values()))
    else:
        signer = signing.SigningKey.generate()
        data, verifying = build_packet(signer), signer.public
    manifest, model = packet.read(data)
    print(f"packet: {manifest.packet_id} v{manifest.version} {len(data)} bytes, int8 model {len(model)} bytes")
    rng = np.random.default_rng(0)
    observations = (rng.normal(size=(args.requests, manifest.obs_dim)) * 0.5).astype(np.float32)

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    direct = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="plasma-bench-") as tmp:
        runtime = Runtime(EdgeStore(Path(tmp) / "inprocess"), {verifying.key_id: verifying}, 1, 1, 1024)
        runtime.load(data)
        # Inputs are prepared before the clock starts; each path gets the i-th observation in its own form.
        rows_1 = [obs[None] for obs in observations]
        wire = [tensors.to_proto(obs) for obs in observations]
        in_process = interleaved({
            "onnxruntime InferenceSession.run (floor)":
                lambda i: direct.run([packet.ACTION_OUTPUT], {packet.INPUT_NAME: rows_1[i]}),
            "runtime in-process from a Tensor message": lambda i: runtime.act_tensor(wire[i]),
        }, np.arange(len(observations)), max(20, args.rounds))  # cheap paths: fine slices
        rows += [summary(name, latencies) for name, latencies in in_process.items()]
        floor, own = (np.percentile(in_process[n], 50) for n in list(in_process)[:2])
        ratio = f"in-process / floor, p50: {own / floor:.2f}x"

        store = Path(tmp) / "edge"
        process, address, _ = start_edge(store, verifying, cpus=server_cpus)
        echo, echo_address, _ = start_edge(store, verifying, echo=True, cpus=server_cpus)
        measured: dict[str, dict[str, list]] = {"edge": {}, "echo": {}}
        try:
            with channels.channel(address) as channel, channels.channel(echo_address) as echo_channel:
                stub = edge_pb2_grpc.EdgeRuntimeServiceStub(channel)
                header = blobs.header_for(data, packet.MEDIA_TYPE)
                stub.LoadPacket(iter([edge_pb2.LoadPacketRequest(header=header),
                                      edge_pb2.LoadPacketRequest(chunk=data)]), timeout=channels.UNARY_DEADLINE_S)
                stubs = {"edge": stub, "echo": edge_pb2_grpc.EdgeRuntimeServiceStub(echo_channel)}
                pids = {"edge": process.pid, "echo": echo.pid}
                cpu = {label: -cpu_seconds(pid) for label, pid in pids.items()}
                for part in np.array_split(observations, args.rounds):
                    for label, client in stubs.items():
                        for name, (latencies, rate) in grpc_paths(client, part, args.window, args.batch).items():
                            measured[label].setdefault(name, []).append((latencies, rate))
                cpu = {label: spent + cpu_seconds(pids[label]) for label, spent in cpu.items()}
                server = stub.GetStatus(edge_pb2.GetStatusRequest(), timeout=channels.UNARY_DEADLINE_S)
                rss_now, rss_peak = rss_mb(process.pid)
                rss_parts = rss_parts_mb(process.pid)
        finally:
            for proc in (process, echo):
                proc.terminate()
                proc.wait(timeout=30)
        starts = [cold_start(store, verifying, observations[0], server_cpus) for _ in range(args.cold_starts)]

    for label, prefix in (("edge", ""), ("echo", "echo server: ")):
        for name, runs in measured[label].items():
            latencies = np.concatenate([r[0] for r in runs])
            rates = [r[1] for r in runs if r[1] is not None]
            rows.append(summary(prefix + name, latencies, float(np.median(rates)) if rates else None))
    print(f"\n{'path (batch 1 unless said)':<40} {'p50 ms':>9} {'p99 ms':>9} {'actions/s':>10}")
    print("\n".join(rows))
    print(f"({ratio}; pipelined actions/s: median of {args.rounds} rounds; the echo server answers without checks or "
          "inference in the same server stack: the transport's ceiling with this client)")
    p50 = {label: np.percentile(np.concatenate([r[0] for r in measured[label][PING_PONG]]), 50) for label in measured}
    print(f"\nControl ping-pong p50, edge / echo server: {p50['edge'] / p50['echo']:.2f}x; server CPU time over all "
          f"gRPC runs: edge {cpu['edge']:.2f} s, echo {cpu['echo']:.2f} s ({cpu['edge'] / cpu['echo']:.2f}x)")
    latency = server.inference_latency
    print(f"server-side inference (GetStatus, last {latency.count} requests): "
          f"p50 {latency.p50_ms:.3f} ms, p99 {latency.p99_ms:.3f} ms")
    print(f"serving process RSS after the runs: {rss_now:.1f} MB (peak {rss_peak:.1f} MB): "
          f"{rss_parts['Anonymous']:.1f} MB its own (heaps, arenas, stacks), "
          f"{rss_now - rss_parts['Anonymous']:.1f} MB file-backed (libraries' code and data); "
          f"PSS {rss_parts['Pss']:.1f} MB")
    serving, first = (statistics.median(s[i] for s in starts) for i in (0, 1))
    print(f"cold start, packet in store (median of {len(starts)}): process start -> SERVING {serving:.2f} s, "
          f"-> first action {first:.2f} s")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
