"""Memory of a service under hostile requests: starts one service as its own process on loopback, sends it N
requests that are random bytes, truncated messages or oversized messages, spread over every method of its
service and the health service (read from the generated descriptors; unary and streaming, through a generic channel
with identity serializers, so nothing is checked on the client side), and prints the process's RSS before and after
and the statuses it answered.

    .venv/bin/python -m bench.hostile_input --service edge [--requests 10000] [--kinds random truncated oversized]
    .venv/bin/python -m bench.hostile_input --service bare [--guard]   # grpcio alone: a server with health only

`--source DIR` runs the service from another checkout (e.g. `git worktree add /tmp/before <commit>`), to compare
before and after a change with the same client. RSS is read from /proc/<pid>/status (VmRSS, VmHWM) after a warm-up
of 500 requests of the same kinds; figures depend on the machine and the allocator, so nothing is asserted here
(tests/security/test_hostile_input.py asserts a bound).
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from google.protobuf import descriptor, message_factory
from grpc_health.v1 import health_pb2

from plasma import channels
from plasma.compiler.v1 import compiler_pb2
from plasma.edge.v1 import edge_pb2
from plasma.sdk.local import free_port, wait_serving
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 500
TIMEOUT_S = 10.0
STOP_WAIT_S = 30.0

SERVICES = {
    "simulator": ("services.simulator.server", simulator_pb2.DESCRIPTOR.services_by_name["SimulatorService"]),
    "trainer": ("services.trainer.server", trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"]),
    "compiler": ("services.compiler.server", compiler_pb2.DESCRIPTOR.services_by_name["CompilerService"]),
    "edge": ("edge_runtime.server", edge_pb2.DESCRIPTOR.services_by_name["EdgeRuntimeService"]),
}
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"]
# What each server accepts in one message (edge_runtime.server.MAX_RECEIVE_BYTES; the others, plasma.channels).
MAX_RECEIVE = {"edge": 4 * 1024 * 1024}


def _bare_server(guard: bool) -> None:
    """grpcio with the health service only (what the issue reproduced), optionally with Plasma's parse guard."""
    from concurrent import futures

    from grpc_health.v1 import health, health_pb2_grpc

    from plasma.server.parsing import RejectUnparseable

    server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=[RejectUnparseable()] if guard else [])
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{os.environ['BARE_PORT']}")
    server.start()
    print(f"bare serving port={port}", flush=True)
    server.wait_for_termination()


def _start(service: str, source: Path, store: Path, port: int, guard: bool) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(source), "PLASMA_LOG_LEVEL": "WARNING"}
    if service == "bare":
        command = [sys.executable, "-m", "bench.hostile_input", "--bare-server", *(["--guard"] if guard else [])]
        env = {**env, "PYTHONPATH": f"{source}{os.pathsep}{ROOT}", "BARE_PORT": str(port)}
    else:
        command = [sys.executable, "-m", SERVICES[service][0], "--address", f"127.0.0.1:{port}", "--store", str(store)]
    return subprocess.Popen(command, cwd=source, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes]) -> bool:
    """SIGTERM, then SIGKILL after STOP_WAIT_S; whether SIGTERM was enough."""
    process.terminate()
    try:
        process.wait(timeout=STOP_WAIT_S)
        return True
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return False


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def full_request(method: descriptor.MethodDescriptor) -> bytes:
    """A request of `method` with every field set (two levels deep): what truncation cuts into."""
    message = message_factory.GetMessageClass(method.input_type)()
    _fill(message, depth=2)
    return message.SerializeToString()


def _fill(message: object, depth: int) -> None:
    fields = message.DESCRIPTOR.fields  # type: ignore[attr-defined]
    for field in fields:
        if field.containing_oneof is not None and field.containing_oneof.fields[0] is not field:
            continue  # one member per oneof
        value: object
        if field.type == field.TYPE_MESSAGE:
            if depth == 0 or field.message_type.full_name.startswith("google.protobuf"):
                continue
            child = (getattr(message, field.name).add() if field.is_repeated
                     else getattr(message, field.name))
            _fill(child, depth - 1)
            continue
        if field.type == field.TYPE_STRING:
            value = "x" * 12
        elif field.type == field.TYPE_BYTES:
            value = b"\x01" * 12
        elif field.type in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
            value = 0.5
        elif field.type == field.TYPE_BOOL:
            value = True
        else:
            value = 1
        if field.is_repeated:
            getattr(message, field.name).append(value)
        else:
            setattr(message, field.name, value)


def payloads(kind: str, method: descriptor.MethodDescriptor, rng: random.Random, max_receive: int) -> bytes:
    if kind == "random":
        return rng.randbytes(rng.randint(1, 256))
    if kind == "truncated":
        whole = full_request(method)
        return whole[: rng.randint(1, max(1, len(whole) - 1))]
    return rng.randbytes(64) * (max_receive // 64 + 1)  # oversized: one message past the server's limit


def _identity(data: bytes) -> bytes:
    return data


def call(channel: grpc.Channel, service: str, method: descriptor.MethodDescriptor, payload: bytes) -> str:
    """Sends `payload` as the (only) request message of `method`; the status it ended with."""
    path = f"/{service}/{method.name}"
    raw = {"request_serializer": _identity, "response_deserializer": _identity}
    try:
        if method.client_streaming:
            requests: Iterator[bytes] = iter([payload])
            if method.server_streaming:
                for _ in channel.stream_stream(path, **raw)(requests, timeout=TIMEOUT_S):
                    pass
            else:
                channel.stream_unary(path, **raw)(requests, timeout=TIMEOUT_S)
        elif method.server_streaming:
            for _ in channel.unary_stream(path, **raw)(payload, timeout=TIMEOUT_S):
                pass
        else:
            channel.unary_unary(path, **raw)(payload, timeout=TIMEOUT_S)
    except grpc.RpcError as error:
        return error.code().name
    return "OK"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=[*SERVICES, "bare"], default="edge")
    parser.add_argument("--requests", type=int, default=10_000, help="measured requests (after the warm-up)")
    parser.add_argument("--kinds", nargs="+", choices=["random", "truncated", "oversized"],
                        default=["random", "truncated", "oversized"])
    parser.add_argument("--source", type=Path, default=ROOT, help="checkout to run the service from")
    parser.add_argument("--guard", action="store_true", help="--service bare: with plasma.server.parsing's guard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        _bare_server(args.guard)
        return
    print("command:", " ".join([sys.executable, "-m", "bench.hostile_input", *sys.argv[1:]]))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    print(f"machine: {cpu}, {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}, python "
          f"{platform.python_version()}, grpcio {grpc.__version__}, MALLOC_ARENA_MAX="
          f"{os.environ.get('MALLOC_ARENA_MAX', 'unset')}, source {args.source}")

    methods = [(HEALTH.full_name, m) for m in HEALTH.methods if m.name == "Check"]
    if args.service != "bare":
        service = SERVICES[args.service][1]
        methods += [(service.full_name, m) for m in service.methods]
    max_receive = MAX_RECEIVE.get(args.service, channels.MAX_MESSAGE_BYTES)
    rng = random.Random(args.seed)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="plasma-hostile-") as tmp:
        process = _start(args.service, args.source, Path(tmp) / "store", port, args.guard)
        address = f"127.0.0.1:{port}"
        try:
            wait_serving(address, 120.0, process)
            # The client sends anything (no size limit of its own), to see what the server does with it.
            with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", -1)]) as channel:
                started_mb = rss_mb(process.pid)[0]

                def send(count: int, statuses: collections.Counter[tuple[str, str]]) -> None:
                    for index in range(count):
                        service_name, method = methods[index % len(methods)]
                        round_ = index // len(methods)  # every method gets every kind in turn
                        kind = args.kinds[round_ % len(args.kinds)]
                        if kind == "oversized" and round_ % (50 * len(args.kinds)) >= len(args.kinds):
                            kind = "random"  # oversized messages are 4-16 MB each: one in 50 of their turns
                        status = call(channel, service_name, method, payloads(kind, method, rng, max_receive))
                        statuses[(f"{method.name} {kind}", status)] += 1

                send(WARMUP, collections.Counter())
                before_mb = rss_mb(process.pid)[0]
                statuses: collections.Counter[tuple[str, str]] = collections.Counter()
                begun = time.monotonic()
                send(args.requests, statuses)
                elapsed = time.monotonic() - begun
                time.sleep(1.0)
                after_mb, peak_mb = rss_mb(process.pid)
                alive = process.poll() is None
        finally:
            stopped = stop(process)

    print(f"\n{'method and kind':<44} {'status':<20} {'calls':>7}")
    for (what, status), count in sorted(statuses.items()):
        print(f"{what:<44} {status:<20} {count:>7}")
    totals: collections.Counter[str] = collections.Counter()
    for (_, status), count in statuses.items():
        totals[status] += count
    print(f"\nstatuses: {dict(sorted(totals.items()))}; {args.requests} requests in {elapsed:.1f} s; "
          f"process alive after: {alive}; stopped on SIGTERM within {STOP_WAIT_S:.0f} s: {stopped}")
    growth = after_mb - before_mb
    print(f"RSS: {started_mb:.1f} MB serving, {before_mb:.1f} MB after {WARMUP} warm-up requests, {after_mb:.1f} MB "
          f"after {args.requests} more (peak {peak_mb:.1f} MB): {growth:+.1f} MB, "
          f"{growth * 1024 / max(1, args.requests):+.2f} KB per request")


if __name__ == "__main__":
    main()
