"""The edge image alone, limited like a small device: one CPU, 256 MB, read-only root filesystem, no
capabilities, a network with no way out. A signed packet is installed over gRPC into a volume; a fresh
container with that volume mounted read-only serves it from start-up, and a client on the device network
reads the packet's action back over gRPC.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from plasma import packet, signing
from tests.e2e import dockerutil
from tests.e2e.dockerutil import run
from tests.support import policies
from tests.support.edge import packet_action

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

STORE = "/var/lib/plasma/edge"
PYTHON = "/opt/plasma/venv/bin/python"
# A CartPole-like state; the action the container returns must be the packet's own answer for it.
OBSERVATION = [0.03, -0.2, 0.05, 0.4]

# Runs in a throwaway container on the device network. "load": streams the packet on stdin to LoadPacket;
# "ask": GetStatus and one Act. Prints one JSON line.
CLIENT = """
import json, sys
import grpc
import numpy as np
from plasma import packet
from plasma.core import blobs, tensors
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
command, address = sys.argv[1], sys.argv[2]
with grpc.insecure_channel(address) as channel:
    stub = edge_pb2_grpc.EdgeRuntimeServiceStub(channel)
    if command == "load":
        data = sys.stdin.buffer.read()
        parts = [edge_pb2.LoadPacketRequest(header=blobs.header_for(data, packet.MEDIA_TYPE))]
        parts += [edge_pb2.LoadPacketRequest(chunk=chunk) for chunk in blobs.chunks(data)]
        print(json.dumps({"loaded": stub.LoadPacket(iter(parts), timeout=60).packet.packet_id}))
    else:
        status = stub.GetStatus(edge_pb2.GetStatusRequest(), timeout=10)
        observation = tensors.to_proto(np.array(json.loads(sys.argv[3]), np.float32))
        reply = stub.Act(edge_pb2.ActRequest(observation=observation), timeout=10)
        print(json.dumps({"serving": status.serving, "packet_id": status.packet.packet_id,
                          "action": tensors.from_proto(reply.action, "action").tolist()}))
"""


class Resources:
    """Docker objects a test creates, removed afterwards whatever happened."""

    def __init__(self) -> None:
        self.prefix = f"plasma-e2e-{uuid.uuid4().hex[:8]}"
        self.containers: list[str] = []
        self.networks: list[str] = []
        self.volumes: list[str] = []

    def remove(self) -> None:
        for container in self.containers:
            run(["docker", "rm", "--force", "--volumes", container], check=False)
        for network in self.networks:
            run(["docker", "network", "rm", network], check=False)
        for volume in self.volumes:
            run(["docker", "volume", "rm", "--force", volume], check=False)


@pytest.fixture
def resources(images: str) -> Iterator[Resources]:
    """Containers, networks and volumes a test creates; removed afterwards whatever happened."""
    created = Resources()
    try:
        yield created
    finally:
        created.remove()
        left = run(["docker", "ps", "-a", "-q", "--filter", f"name={created.prefix}"]).stdout.strip()
        assert not left, f"containers left behind: {left}"


def test_edge_image_holds_the_runtime_only(images: str) -> None:
    image = f"plasma/edge:{images}"
    found = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", PYTHON, image, "-c",
                 "import importlib.util as u; import onnxruntime, numpy, grpc, edge_runtime.server; "
                 "print([m for m in ('torch', 'peft', 'onnx', 'gymnasium', 'services', 'pip', 'setuptools') "
                 "if u.find_spec(m)])"]).stdout.strip()
    assert found == "[]", f"the edge image holds {found}"
    tools = run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c",
                 "for tool in gcc cc c++ make ld as; do command -v $tool || true; done"]).stdout.split()
    assert tools == [], f"build tools in the edge image: {tools}"
    user = dockerutil.inspect(image, "{{.Config.User}}")
    assert user not in ("", "root", "0")
    dockerutil.FIGURES["edge image size (docker image inspect)"] = f"{dockerutil.image_size_mb(image):.0f} MB"
    base = f"plasma/service-base:{images}"
    dockerutil.FIGURES["service base image size"] = f"{dockerutil.image_size_mb(base):.0f} MB"
    for service in ("simulator", "trainer", "compiler"):
        size = dockerutil.image_size_mb(f"plasma/{service}:{images}")
        own = size - dockerutil.image_size_mb(base)
        dockerutil.FIGURES[f"{service} image size"] = f"{size:.0f} MB ({own:.1f} MB on top of the shared base)"


def test_edge_container_serves_a_packet_from_a_read_only_volume_with_device_limits(
    images: str, resources: Resources
) -> None:
    image = f"plasma/edge:{images}"
    key = signing.SigningKey.generate()
    data, _ = policies.make_packet("discrete", seed=0, signer=key)
    manifest, _ = packet.read(data)
    expected = packet_action(data, OBSERVATION)[0]

    volume, network = f"{resources.prefix}-store", f"{resources.prefix}-net"
    run(["docker", "volume", "create", volume])
    resources.volumes.append(volume)
    # An internal network: the runtime is reachable from its peers on the gRPC port, and reaches nothing.
    run(["docker", "network", "create", "--internal", network])
    resources.networks.append(network)

    def device(name: str, store_mode: str) -> str:
        resources.containers.append(name)
        run(["docker", "run", "--detach", "--name", name, "--network", network,
             "--cpus", "1", "--memory", "256m", "--memory-swap", "256m", "--pids-limit", "64",
             "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
             "--env", f"PLASMA_EDGE_TRUSTED_KEYS={key.public.base64}",
             "--volume", f"{volume}:{STORE}:{store_mode}", image])
        dockerutil.wait_healthy(name, timeout_s=120)
        return f"{name}:50054"

    def client(*args: str, stdin: bytes | None = None) -> dict[str, object]:
        done = run(["docker", "run", "--rm", "--interactive", "--network", network, "--entrypoint", PYTHON, image,
                    "-c", CLIENT, *args], stdin=stdin)
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    # Install: the runtime verifies the signature and writes the packet to its store volume.
    installer = device(f"{resources.prefix}-install", "rw")
    assert client("load", installer, stdin=data) == {"loaded": manifest.packet_id}
    run(["docker", "stop", "--time", "30", installer.split(":")[0]])

    # Serve: a new container, the store mounted read-only, serves the packet from start-up.
    name = f"{resources.prefix}-edge"
    address = device(name, "ro")
    answer = client("ask", address, json.dumps(OBSERVATION))
    assert answer == {"serving": True, "packet_id": manifest.packet_id, "action": expected}, (
        f"edge answered {answer}; the packet's graph says action {expected}")

    # No way out of the device network.
    escape = run(["docker", "exec", name, PYTHON, "-c",
                  "import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)"], check=False)
    assert escape.returncode != 0, "the edge container reached the internet"
    limits = dockerutil.inspect(name, "{{.HostConfig.NanoCpus}} {{.HostConfig.Memory}} {{.HostConfig.ReadonlyRootfs}}")
    assert limits == f"{10**9} {256 * 2**20} true"
    dockerutil.FIGURES["edge container memory while serving (docker stats)"] = dockerutil.memory_usage(name)

    # SIGTERM drains and exits cleanly (exit code 0) inside docker's grace period; no OOM on the way.
    run(["docker", "stop", "--time", "30", name])
    final = dockerutil.state(name)
    assert final["ExitCode"] == 0 and not final["OOMKilled"], f"edge stopped with {final}"
    installed = dockerutil.state(installer.split(":")[0])
    assert installed["ExitCode"] == 0, f"installing container stopped with {installed}"
