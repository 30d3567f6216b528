"""A small fleet for the rollout tests: packets that balance CartPole and one that fails at it, a compiler store
that holds them, the registry and edge runtimes as processes, and a device loop that drives CartPole episodes
through every edge's Act and reports their returns to the registry."""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import gymnasium as gym
import numpy as np

from plasma import blobs, packet, tensors
from plasma.compiler.v1 import compiler_pb2
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.sdk.rollout import RolloutClient
from plasma.spaces import EnvSpec
from services.compiler import export, pipeline
from services.compiler.store import PacketStore
from tests.support import policies, worlds
from tests.support.edge import REPO_ROOT, EdgeProcess, trusted_env

CHANNEL = "stable"
# Steps per CartPole episode in the device loop: enough to tell a balancing policy (hundreds) from a failing one
# (about ten), short enough to finish many episodes.
EPISODE_STEPS = 200
T = 30.0


def _packet_of(result: pipeline.Compiled, version: int, packet_id: str) -> bytes:
    spec = EnvSpec.from_proto(policies.env_spec("discrete"))
    records: dict[str, Any] = pipeline.packet_records(result)
    return packet.build(
        packet_id=packet_id, name="cartpole-fleet", version=version, source_run_id=f"run-fleet-{version}",
        created_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        env_id=spec.env_id, observation_space=spec.observation, action_space=spec.action,
        payload=result.payload, opset=export.OPSET, adapter_slots=result.adapter_tensors, signer=policies.TEST_KEY,
        versions=export.versions(), self_test=result.self_test, **records)


def balancing_packet(seed: int, version: int) -> bytes:
    """A policy trained to push the cart under the pole (tests.support.policies): it balances CartPole."""
    return _packet_of(policies.compiled("discrete", seed), version, f"pkt-{version:012x}")


def failing_packet(version: int) -> bytes:
    """The same policy with its output layer negated: it pushes the cart away from the pole, which falls in
    about ten steps. Signed and self-tested like any packet: only its behaviour on the real system is bad."""
    bundle = policies.make_bundle("discrete", seed=0)
    last = [name for name in bundle.base_state if name.endswith((".weight", ".bias"))][-2:]
    for name in last:
        bundle.base_state[name] = -bundle.base_state[name]
    world = worlds.world("discrete")
    result = pipeline.compile_model(bundle, world.scenario(), world.data.obs,
                                    pipeline.Settings(min_agreement=0.95, threads=1), report=lambda _: None)
    return _packet_of(result, version, f"pkt-{version:012x}")


def compiler_store(root: Path, packets: list[bytes]) -> None:
    """A compiler store holding `packets`, as the compiler records them."""
    store = PacketStore(root)
    for data in packets:
        manifest, _ = packet.read(data)
        store.save(compiler_pb2.Packet(packet_id=manifest.packet_id, name=manifest.name, version=manifest.version,
                                       sha256=blobs.sha256_hex(data), size_bytes=len(data)), data)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def process(args: list[str], env: dict[str, str], ready: str) -> Iterator[EdgeProcess]:
    """A Plasma service as its own process, once it logged a line matching `ready`; SIGTERM at the end."""
    child = subprocess.Popen([sys.executable, *args], cwd=REPO_ROOT,
                             env={**os.environ, "PLASMA_LOG_LEVEL": "INFO", **env},
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    running = EdgeProcess(child)
    threading.Thread(target=running._drain, daemon=True).start()
    try:
        running.wait_for(ready)
        yield running
    finally:
        if child.poll() is None:
            child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def registry_process(address: str, store: Path, compiler: str) -> Any:
    return process(["-m", "services.registry.server", "--address", address, "--store", str(store),
                    "--compiler", compiler], {"PLASMA_REGISTRY_EVALUATE_SECONDS": "0.5"},
                   r"registry serving port=\d+")


def edge_process(edge_id: str, store: Path, registry: str) -> Any:
    env = {**trusted_env(), "PLASMA_EDGE_REGISTRY_TARGET": registry, "PLASMA_EDGE_CHANNEL": CHANNEL,
           "PLASMA_EDGE_ID": edge_id, "PLASMA_EDGE_REPORT_SECONDS": "0.5"}
    return process(["-m", "edge_runtime.server", "--address", "127.0.0.1:0", "--store", str(store)], env,
                   r"edge serving port=\d+")


def serving(address: str) -> str:
    with grpc.insecure_channel(address) as channel:
        reply = edge_pb2_grpc.EdgeRuntimeServiceStub(channel).GetStatus(edge_pb2.GetStatusRequest(), timeout=T)
    return reply.packet.packet_id


class Devices:
    """CartPole episodes through each edge's Act, in a thread, one edge after another; each episode whose every
    action came from one packet is reported to the registry as the device's figure for that packet."""

    def __init__(self, edges: dict[str, str], registry: RolloutClient) -> None:
        self._edges = edges
        self._registry = registry
        self._stop = threading.Event()
        self.returns: dict[tuple[str, str], list[float]] = defaultdict(list)  # (edge, packet) -> returns
        self.seen: dict[str, set[str]] = defaultdict(set)  # edge -> packets that answered it
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Devices:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        env = gym.make("CartPole-v1")
        stubs = {edge: (edge_pb2_grpc.EdgeRuntimeServiceStub(grpc.insecure_channel(address)))
                 for edge, address in self._edges.items()}
        seed = 0
        try:
            while not self._stop.is_set():
                for edge, stub in stubs.items():
                    seed += 1
                    self._episode(env, edge, stub, seed)
        except BaseException as exc:  # the test reads it: a silent device would only look like a slow rollout
            self.errors.append(exc)

    def _episode(self, env: gym.Env, edge: str, stub: edge_pb2_grpc.EdgeRuntimeServiceStub, seed: int) -> None:
        observation, _ = env.reset(seed=seed)
        total, packets = 0.0, set()
        for _ in range(EPISODE_STEPS):
            try:
                reply = stub.Act(edge_pb2.ActRequest(observation=tensors.to_proto(
                    np.asarray(observation, np.float32))), timeout=T)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:  # no packet yet
                    return
                raise
            packets.add(reply.packet_id)
            observation, reward, terminated, truncated, _ = env.step(int(tensors.from_proto(reply.action)))
            total += float(reward)
            if terminated or truncated:
                break
        self.seen[edge] |= packets
        if len(packets) == 1:
            (packet_id,) = packets
            self.returns[(edge, packet_id)].append(total)
            self._registry.report_episodes(CHANNEL, edge, packet_id, [total])

