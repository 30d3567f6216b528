"""A fleet in containers on the session's compose stack: three edge containers follow channel `stable` of the
stack's registry. A good packet published to the channel reaches all three; a staged rollout of a packet that
fails CartPole stops at its one canary and is rolled back automatically on the episode returns a device reports,
the fleet ending on the good packet; `plasma rollout decisions` lists every decision with its reason.

The edges are started with the docker SDK (like test_edge_container.py), not by a compose override: the session
stack stays as it is for the other tests, and the edges' configuration is read from the stack's own edge container
(its environment and volumes, its store excepted) plus the variables that make each follow the channel under its
own id, so they are edges of this stack as `make up` makes them. The packets are the ones tests/fleet uses, signed
by the stack's signing key and written into the compiler's store with the compiler's own code: compiling them
through the stack takes minutes of training, and no training makes a policy that fails on purpose. From there on
everything goes through the services: the registry fetches them from the compiler over mutual TLS, the edges
from the registry.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tarfile
import time
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import docker
import grpc
import gymnasium as gym
import numpy as np
import pytest
from docker.models.containers import Container

from plasma import channels, packet, signing, tensors
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.registry.v1 import registry_pb2
from plasma.sdk.local import free_port
from plasma.sdk.rollout import RolloutClient
from tests.e2e import dockerutil
from tests.e2e.conftest import ComposeStack
from tests.e2e.dockerutil import run
from tests.fleet import fleet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

CHANNEL = fleet.CHANNEL
EDGE_STORE = "/var/lib/plasma/edge"
PYTHON = "/opt/plasma/venv/bin/python"
THRESHOLDS = registry_pb2.RolloutThresholds(
    min_requests=50, min_episodes=3, bake_seconds=3, timeout_seconds=240, silence_seconds=30, max_return_drop=0.5,
    # Five services and three edges share two cores here: latency is not what this test is about.
    max_latency_p99_ratio=1000, latency_slack_ms=1000)
A = registry_pb2.DecisionAction

# Runs in the compiler's container: stores each packet file given with the compiler's own store code.
INSTALL = """
import sys
from pathlib import Path
from plasma import blobs, packet
from plasma.compiler.v1 import compiler_pb2
from services.compiler.store import PacketStore
store = PacketStore(Path(sys.argv[1]))
for path in sys.argv[2:]:
    data = Path(path).read_bytes()
    manifest, _ = packet.read(data)
    store.save(compiler_pb2.Packet(packet_id=manifest.packet_id, name=manifest.name, version=manifest.version,
                                   sha256=blobs.sha256_hex(data), size_bytes=len(data)), data)
"""


@dataclass
class Edge:
    """One edge container of the fleet: its id in the registry and a channel to its published gRPC port."""

    edge_id: str
    channel: grpc.Channel

    @property
    def stub(self) -> edge_pb2_grpc.EdgeRuntimeServiceStub:
        return edge_pb2_grpc.EdgeRuntimeServiceStub(self.channel)

    def serving(self) -> str:
        return self.stub.GetStatus(edge_pb2.GetStatusRequest(), timeout=fleet.T).packet.packet_id


@dataclass
class Device:
    """CartPole episodes through the edges' Act, reported to the registry as the device's returns for the packet
    that answered every step (as tests/fleet does)."""

    registry: RolloutClient
    env: gym.Env = field(default_factory=lambda: gym.make("CartPole-v1"))
    seed: int = 0
    returns: dict[tuple[str, str], list[float]] = field(default_factory=lambda: defaultdict(list))
    seen: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))

    def episode(self, edge: Edge) -> None:
        self.seed += 1
        observation, _ = self.env.reset(seed=self.seed)
        total, packets = 0.0, set()
        for _ in range(fleet.EPISODE_STEPS):
            request = edge_pb2.ActRequest(observation=tensors.to_proto(np.asarray(observation, np.float32)))
            reply = edge.stub.Act(request, timeout=fleet.T)
            packets.add(reply.packet_id)
            observation, reward, terminated, truncated, _ = self.env.step(int(tensors.from_proto(reply.action)))
            total += float(reward)
            if terminated or truncated:
                break
        self.seen[edge.edge_id] |= packets
        if len(packets) == 1:
            (packet_id,) = packets
            self.returns[(edge.edge_id, packet_id)].append(total)
            self.registry.report_episodes(CHANNEL, edge.edge_id, packet_id, [total])


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.5)


@pytest.fixture
def edges(stack: ComposeStack) -> Iterator[list[Edge]]:
    """Three edge containers configured as the stack's edge, each following CHANNEL under its own id; removed
    afterwards whatever happened, so that `down` finds the stack's network free."""
    api = dockerutil.engine()
    model = dockerutil.container(stack.container("edge")).attrs
    [network] = model["NetworkSettings"]["Networks"]
    volumes = {m["Name"]: {"bind": m["Destination"], "mode": "ro"} for m in model["Mounts"]
               if m["Type"] == "volume" and m["Destination"] != EDGE_STORE}
    settings = dict(item.split("=", 1) for item in model["Config"]["Env"] if item.startswith("PLASMA_"))
    containers: list[Container] = []
    fleet_edges: list[Edge] = []
    try:
        for index in range(3):
            edge_id, port = f"fleet-edge-{index}", free_port()
            follow = {"PLASMA_EDGE_REGISTRY_TARGET": "registry:50055", "PLASMA_EDGE_CHANNEL": CHANNEL,
                      "PLASMA_EDGE_ID": edge_id, "PLASMA_EDGE_REPORT_SECONDS": "1"}
            containers.append(api.containers.run(
                model["Config"]["Image"], detach=True, name=f"{stack.project}-{edge_id}", network=network,
                volumes=volumes, ports={"50054/tcp": ("127.0.0.1", port)}, mem_limit="256m",
                environment={**settings, **follow}))
            # The device acts with the reader's certificate, as a device's controller would.
            fleet_edges.append(Edge(edge_id, channels.channel(f"127.0.0.1:{port}", stack.security("reader"))))
        for container in containers:
            dockerutil.wait_healthy(str(container.name), timeout_s=120)
        yield fleet_edges
    finally:
        for edge in fleet_edges:
            edge.channel.close()
        for container in containers:  # pytest shows these only for a test that failed
            with contextlib.suppress(docker.errors.NotFound):
                print(f"--- {container.name}\n{container.logs(tail=30).decode(errors='replace')}")
                container.remove(force=True, v=True)
        left = api.containers.list(all=True, filters={"name": f"{stack.project}-fleet-edge"})
        assert not left, f"edge containers left behind: {[c.name for c in left]}"


def test_three_edge_containers_follow_the_registry_and_a_failing_canary_is_rolled_back(
    stack: ComposeStack, edges: list[Edge]
) -> None:
    key = _stack_signing_key(stack)
    good, bad = _signed_by(fleet.balancing_packet(0, 1), key), _signed_by(fleet.failing_packet(2), key)
    good_id, bad_id = (packet.read(data)[0].packet_id for data in (good, bad))
    _install_in_compiler(stack, [good, bad])

    with stack.client() as client:
        registry = client.rollout
        # The good packet to every edge at once: the registry copies it from the compiler, the edges from it.
        registry.publish(CHANNEL, good_id, reason="first release")
        eventually(lambda: {edge.serving() for edge in edges} == {good_id}, "the good packet on every edge")
        eventually(lambda: {e.edge_id for e in registry.channel(CHANNEL).edges if e.watching}
                   == {edge.edge_id for edge in edges}, "every edge watches the channel")

        device = Device(registry)
        for edge in edges:  # the stable packet's returns, before the candidate's
            device.episode(edge)
        rollout = registry.start(CHANNEL, bad_id, canary_edges=1, thresholds=THRESHOLDS)
        assert rollout.state == registry_pb2.ROLLOUT_STATE_CANARY, rollout.reason
        (canary,) = rollout.canary_edge_ids
        deadline = time.monotonic() + 240
        while rollout.state == registry_pb2.ROLLOUT_STATE_CANARY:
            assert time.monotonic() < deadline, f"no verdict within 240 s: {rollout.reason}"
            for edge in edges:
                device.episode(edge)
            rollout = registry.status(rollout.rollout_id)

        assert rollout.state == registry_pb2.ROLLOUT_STATE_ROLLED_BACK, rollout.reason
        assert "regressed" in rollout.reason and "mean return" in rollout.reason, rollout.reason
        assert rollout.candidate_figures.mean_return < 0.5 * rollout.baseline_figures.mean_return
        eventually(lambda: {edge.serving() for edge in edges} == {good_id}, "the fleet back on the good packet")
        assert bad_id in device.seen[canary]
        for edge in edges:
            if edge.edge_id != canary:
                assert bad_id not in device.seen[edge.edge_id], f"{edge.edge_id} is no canary but served {bad_id}"
        assert min(device.returns[(canary, bad_id)]) < 50 <= min(device.returns[(canary, good_id)])
        decisions = registry.decisions(CHANNEL)

    assert [d.action for d in decisions] == [A.DECISION_ACTION_PUBLISHED, A.DECISION_ACTION_CANARY_STARTED,
                                             A.DECISION_ACTION_ROLLED_BACK]
    assert decisions[-1].rollout_id == rollout.rollout_id and "mean return" in decisions[-1].reason
    # The CLI, with the operator's certificate, lists the same decisions with their reasons.
    listed = run([sys.executable, "-m", "plasma.cli", "rollout", "decisions", "--channel", CHANNEL, "--json",
                  *stack.cli_flags(services=("registry",))])
    assert [d["reason"] for d in json.loads(listed.stdout)["decisions"]] == [d.reason for d in decisions]
    assert all(d.reason for d in decisions)
    dockerutil.FIGURES["fleet rollback (3 edge containers)"] = (
        f"canary {canary}: mean return {rollout.candidate_figures.mean_return:.1f} against stable's "
        f"{rollout.baseline_figures.mean_return:.1f}")


def _stack_signing_key(stack: ComposeStack) -> signing.SigningKey:
    """The key the stack's compiler signs with (made by the one-shot `keys` service), read in its container."""
    pem = _exec(dockerutil.container(stack.container("compiler")), ["cat", "/run/plasma/signing/ed25519.pem"])
    return signing.SigningKey.from_bytes(pem, "the stack's signing key")


def _signed_by(data: bytes, key: signing.SigningKey) -> bytes:
    """The same packet signed by `key` instead: its manifest and files unchanged, so its id and version too."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    manifest = entries.pop(packet.MANIFEST_FILE)
    entries.pop(packet.SIGNATURE_FILE)
    return packet.assemble(manifest, entries, packet.sign(manifest, key))


def _install_in_compiler(stack: ComposeStack, packets: list[bytes]) -> None:
    """The packets into the compiler's store, as the compiler stores what it compiles (it reads the store on every
    call, so it serves them at once)."""
    compiler = dockerutil.container(stack.container("compiler"))
    names = [f"fleet-{index}.zip" for index in range(len(packets))]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in zip(names, packets, strict=True):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
    assert compiler.put_archive("/tmp", buffer.getvalue())
    store = next(item.partition("=")[2] for item in compiler.attrs["Config"]["Env"]
                 if item.startswith("PLASMA_COMPILER_STORE="))
    _exec(compiler, [PYTHON, "-c", INSTALL, store, *(f"/tmp/{name}" for name in names)])


def _exec(container: Container, command: list[str]) -> bytes:
    """What `command` prints in the running container; fails with its output unless it exits 0."""
    done = container.exec_run(command)
    assert isinstance(done.output, bytes)  # not streamed
    assert done.exit_code == 0, f"{command[0]} exited with {done.exit_code}: {done.output.decode(errors='replace')}"
    return done.output
