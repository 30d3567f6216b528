"""Shared fixtures: real gRPC servers on port 0 with real channels."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest

from plasma import channels
from plasma.server import grpc_server


def pytest_collection_finish(session: pytest.Session) -> None:
    """Torch on one thread, as in the services: on a busy 2-core machine two threads per process ran many
    times slower than one. Only where a collected test module imported torch (edge tests never do)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


@contextmanager
def running(create: Callable[[], tuple[grpc.Server, int, object]], service_name: str) -> Iterator[str]:
    """Starts a server from a `create_server`-style factory, marks it SERVING, yields its address."""
    server, port, health_servicer = create()
    server.start()
    grpc_server.set_serving(health_servicer, [service_name], True)  # type: ignore[arg-type]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait()


@pytest.fixture(scope="session")
def worlds_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real SimulatorService holding the small CartPole and Pendulum worlds of tests.support.worlds."""
    from services.simulator import server as simulator_server
    from services.simulator.config import Config
    from tests.support import worlds

    root = tmp_path_factory.mktemp("worlds-simulator")
    worlds.simulator_store(root)
    config = Config(address="127.0.0.1:0", store_dir=root)
    with running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME) as address:
        yield address


@pytest.fixture
def channel_to() -> Iterator[Callable[[str], grpc.Channel]]:
    opened: list[grpc.Channel] = []

    def open_channel(address: str) -> grpc.Channel:
        ch = channels.channel(address)
        opened.append(ch)
        return ch

    yield open_channel
    for ch in opened:
        ch.close()


def rpc_error(call: Callable[[], object]) -> grpc.RpcError:
    """Runs a call that must fail (consuming a stream if it returns one) and returns the error."""
    with pytest.raises(grpc.RpcError) as caught:
        result = call()
        if hasattr(result, "__iter__") and not hasattr(result, "ByteSize"):
            list(result)  # type: ignore[call-overload]
    return caught.value


@pytest.fixture(scope="session")
def dev_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A development CA and every certificate of a deployment, made by scripts/make_certs.py (`make certs`)."""
    from tests.support import certs

    return certs.make(tmp_path_factory.mktemp("certs"))
