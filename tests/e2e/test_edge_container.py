"""The edge image alone, limited like a small device: one CPU, 256 MB, read-only root filesystem, no
capabilities, a network with no way out. A signed packet is installed over gRPC into a volume; a fresh
container with that volume mounted read-only serves it from start-up, and a client on the device network
reads the packet's action back over gRPC.
"""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
import uuid
from collections.abc import Iterator

import docker
import pytest
from docker.models.containers import Container
from docker.models.networks import Network
from docker.models.volumes import Volume

from plasma import packet, signing
from tests.e2e import dockerutil
from tests.support import policies
from tests.support.edge import packet_action

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

STORE = "/var/lib/plasma/edge"
PYTHON = "/opt/plasma/venv/bin/python"
# A CartPole-like state; the action the container returns must be the packet's own answer for it.
OBSERVATION = [0.03, -0.2, 0.05, 0.4]

# Runs in a throwaway container on the device network. "load": streams the packet file PACKET to LoadPacket;
# "ask": GetStatus and one Act. Prints one JSON line.
PACKET = "/tmp/packet.zip"
CLIENT = """
import json, sys
import grpc
import numpy as np
from plasma import blobs, packet, tensors
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
command, address = sys.argv[1], sys.argv[2]
with grpc.insecure_channel(address) as channel:
    stub = edge_pb2_grpc.EdgeRuntimeServiceStub(channel)
    if command == "load":
        data = open(sys.argv[3], "rb").read()
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
        self.containers: list[Container] = []
        self.networks: list[Network] = []
        self.volumes: list[Volume] = []

    def remove(self) -> None:
        for container in self.containers:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
        for network in self.networks:
            with contextlib.suppress(docker.errors.NotFound):
                network.remove()
        for volume in self.volumes:
            with contextlib.suppress(docker.errors.NotFound):
                volume.remove(force=True)


@pytest.fixture
def resources(images: str) -> Iterator[Resources]:
    """Containers, networks and volumes a test creates; removed afterwards whatever happened."""
    created = Resources()
    try:
        yield created
    finally:
        created.remove()
        left = dockerutil.engine().containers.list(all=True, filters={"name": created.prefix})
        assert not left, f"containers left behind: {[c.name for c in left]}"


def test_edge_image_holds_the_runtime_only(images: str) -> None:
    image = f"plasma/edge:{images}"
    found = _output(image, PYTHON, "-c",
                    "import importlib.util as u; import onnxruntime, numpy, grpc, edge_runtime.server; "
                    "print([m for m in ('torch', 'peft', 'onnx', 'gymnasium', 'services', 'pip', 'setuptools') "
                    "if u.find_spec(m)])").strip()
    assert found == "[]", f"the edge image holds {found}"
    tools = _output(image, "sh", "-c", "for tool in gcc cc c++ make ld as; do command -v $tool || true; done").split()
    assert tools == [], f"build tools in the edge image: {tools}"
    user = dockerutil.attrs(image)["Config"]["User"]
    assert user not in ("", "root", "0")
    dockerutil.FIGURES["edge image size (docker image inspect)"] = f"{dockerutil.image_size_mb(image):.0f} MB"
    services = [f"plasma/{service}:{images}" for service in ("simulator", "trainer", "compiler")]
    layers = [dockerutil.attrs(image)["RootFS"]["Layers"] for image in services]
    shared = next((i for i, group in enumerate(zip(*layers, strict=False)) if len(set(group)) > 1),
                  min(map(len, layers)))
    for image in services:
        dockerutil.FIGURES[f"{image} size"] = f"{dockerutil.image_size_mb(image):.0f} MB"
    dockerutil.FIGURES["layers the three service images share"] = f"{shared} of {max(map(len, layers))}"
    # The dependency layers (the big ones) must be stored once, whatever the project layers on top.
    assert shared >= min(map(len, layers)) - 3, f"the service images share only {shared} layers: {layers}"


def test_edge_container_serves_a_packet_from_a_read_only_volume_with_device_limits(
    images: str, resources: Resources
) -> None:
    image = f"plasma/edge:{images}"
    key = signing.SigningKey.generate()
    data, _ = policies.make_packet("discrete", seed=0, signer=key)
    manifest, _ = packet.read(data)
    expected = packet_action(data, OBSERVATION)[0]

    api = dockerutil.engine()
    volume = api.volumes.create(f"{resources.prefix}-store")
    resources.volumes.append(volume)
    # An internal network: the runtime is reachable from its peers on the gRPC port, and reaches nothing.
    network = api.networks.create(f"{resources.prefix}-net", internal=True)
    resources.networks.append(network)

    def device(name: str, store_mode: str) -> str:
        container = api.containers.run(
            image, detach=True, name=name, network=network.name, nano_cpus=10**9, mem_limit="256m",
            memswap_limit="256m", pids_limit=64, read_only=True, tmpfs={"/tmp": ""}, cap_drop=["ALL"],
            security_opt=["no-new-privileges"], environment={"PLASMA_EDGE_TRUSTED_KEYS": key.public.base64},
            volumes={volume.name: {"bind": STORE, "mode": store_mode}})
        resources.containers.append(container)
        dockerutil.wait_healthy(name, timeout_s=120)
        return f"{name}:50054"

    def client(*args: str, packet_file: bytes | None = None) -> dict[str, object]:
        container = api.containers.create(image, ["-c", CLIENT, *args], entrypoint=PYTHON, network=network.name)
        resources.containers.append(container)
        if packet_file is not None:
            container.put_archive("/tmp", _tar({PACKET.removeprefix("/tmp/"): packet_file}))
        container.start()
        exit_code = container.wait(timeout=120)["StatusCode"]
        output = container.logs().decode(errors="replace")
        assert exit_code == 0, f"the client container exited with {exit_code}:\n{output[-4000:]}"
        return json.loads(output.strip().splitlines()[-1])

    # Install: the runtime verifies the signature and writes the packet to its store volume.
    installer = device(f"{resources.prefix}-install", "rw")
    assert client("load", installer, PACKET, packet_file=data) == {"loaded": manifest.packet_id}
    dockerutil.container(installer.split(":")[0]).stop(timeout=30)

    # Serve: a new container, the store mounted read-only, serves the packet from start-up.
    name = f"{resources.prefix}-edge"
    address = device(name, "ro")
    answer = client("ask", address, json.dumps(OBSERVATION))
    assert answer == {"serving": True, "packet_id": manifest.packet_id, "action": expected}, (
        f"edge answered {answer}; the packet's graph says action {expected}")

    # No way out of the device network.
    escape = dockerutil.container(name).exec_run(
        [PYTHON, "-c", "import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)"])
    assert escape.exit_code != 0, "the edge container reached the internet"
    host = dockerutil.attrs(name)["HostConfig"]
    assert (host["NanoCpus"], host["Memory"], host["ReadonlyRootfs"]) == (10**9, 256 * 2**20, True)
    dockerutil.FIGURES["edge container memory while serving (docker stats)"] = dockerutil.memory_usage(name)

    # SIGTERM drains and exits cleanly (exit code 0) inside docker's grace period; no OOM on the way.
    dockerutil.container(name).stop(timeout=30)
    final = dockerutil.state(name)
    assert final["ExitCode"] == 0 and not final["OOMKilled"], f"edge stopped with {final}"
    installed = dockerutil.state(installer.split(":")[0])
    assert installed["ExitCode"] == 0, f"installing container stopped with {installed}"


def _output(image: str, entrypoint: str, *args: str) -> str:
    """What a throwaway container of `image` with no network prints on stdout."""
    logs = dockerutil.engine().containers.run(image, list(args), entrypoint=entrypoint, network_mode="none",
                                              remove=True, stdout=True, stderr=False)
    return bytes(logs).decode(errors="replace")


def _tar(files: dict[str, bytes]) -> bytes:
    """An uncompressed tar archive of `files` (name: content), as the Engine API's put_archive takes them."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()
