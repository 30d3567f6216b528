"""A real simulator and trainer on port 0, shared by the trainer's service tests, and a small world model."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from plasma.trainer.v1 import trainer_pb2_grpc
from services.simulator import server as simulator_server
from services.simulator.config import Config as SimulatorConfig
from services.trainer import server as trainer_server
from services.trainer.config import Config as TrainerConfig
from tests.conftest import running
from tests.support.training import small_cartpole_model


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root = tmp_path_factory.mktemp("trainer-test")
    simulator_config = SimulatorConfig(address="127.0.0.1:0", store_dir=root / "simulator")
    with running(lambda: simulator_server.create_server(simulator_config), simulator_server.SERVICE_NAME) as sim:
        trainer_config = TrainerConfig(address="127.0.0.1:0", simulator_address=sim, store_dir=root / "trainer")
        with running(lambda: trainer_server.create_server(trainer_config), trainer_server.SERVICE_NAME) as trainer:
            yield {"simulator": sim, "trainer": trainer, "trainer_store": str(root / "trainer")}


@pytest.fixture(scope="module")
def stub(services: dict[str, str]) -> Iterator[trainer_pb2_grpc.TrainerServiceStub]:
    with grpc.insecure_channel(services["trainer"]) as channel:
        yield trainer_pb2_grpc.TrainerServiceStub(channel)


@pytest.fixture(scope="module")
def model_id(services: dict[str, str]) -> str:
    with grpc.insecure_channel(services["simulator"]) as channel:
        return small_cartpole_model(channel)
