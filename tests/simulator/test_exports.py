"""ExportWorldModel and ExportDataset: the streamed archive loads into a model that predicts exactly as the
simulator's, and a dataset arrives as the very transitions the simulator stores."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from plasma import blobs
from plasma.mbrl.models import archive
from plasma.mbrl.models.ensemble import EnsembleWorldModel
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from services.common import transitions_archive
from services.simulator import server as simulator_server
from services.simulator.config import Config as SimulatorConfig
from tests.conftest import rpc_error, running

T = 60.0


@pytest.fixture(scope="module")
def simulator(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[simulator_pb2_grpc.SimulatorServiceStub, Path]]:
    store = tmp_path_factory.mktemp("export-world-model")
    config = SimulatorConfig(address="127.0.0.1:0", store_dir=store)
    with (running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME) as address,
          grpc.insecure_channel(address) as channel):
        yield simulator_pb2_grpc.SimulatorServiceStub(channel), store


def _fitted_model(stub: simulator_pb2_grpc.SimulatorServiceStub) -> str:
    collected = list(stub.CollectTransitions(
        simulator_pb2.CollectTransitionsRequest(env_id="Pendulum-v1", num_steps=120, seed=3), timeout=T))[-1]
    fit = simulator_pb2.FitWorldModelRequest(
        dataset_id=collected.dataset.dataset_id,
        config=simulator_pb2.WorldModelConfig(ensemble_size=2, hidden_size=16, train_steps=50))
    return list(stub.FitWorldModel(fit, timeout=T))[-1].model.model_id


def test_exported_model_predicts_identically(
    simulator: tuple[simulator_pb2_grpc.SimulatorServiceStub, Path], tmp_path: Path
) -> None:
    stub, _ = simulator
    model_id = _fitted_model(stub)
    responses = list(stub.ExportWorldModel(simulator_pb2.ExportWorldModelRequest(model_id=model_id), timeout=T))
    assert responses[0].WhichOneof("part") == "header"
    assert responses[0].header.media_type == archive.MEDIA_TYPE
    data = blobs.receive(responses, "stream")
    exported = archive.load(data, tmp_path)

    # The simulator's own copy, as it loads it to serve Simulate.
    reference = EnsembleWorldModel.load(simulator[1] / "models" / model_id / "weights")
    obs = torch.randn(32, 3)
    actions = torch.rand(32, 1) * 4 - 2
    members = torch.arange(32) % 2
    for got, want in zip(exported.predict(obs, actions, members), reference.predict(obs, actions, members),
                         strict=True):
        assert torch.equal(got, want)
    # The same model gives the same archive bytes (a fixed timestamp in the zip).
    again = list(stub.ExportWorldModel(simulator_pb2.ExportWorldModelRequest(model_id=model_id), timeout=T))
    assert again[0].header.sha256 == responses[0].header.sha256


def test_export_of_an_unknown_model_is_not_found(
    simulator: tuple[simulator_pb2_grpc.SimulatorServiceStub, Path]
) -> None:
    request = simulator_pb2.ExportWorldModelRequest(model_id="wm-missing")
    error = rpc_error(lambda: simulator[0].ExportWorldModel(request, timeout=T))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_bytes_that_are_no_archive_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a world model archive"):
        archive.load(b"not a zip", tmp_path)


def test_an_exported_dataset_holds_the_stored_transitions(
    simulator: tuple[simulator_pb2_grpc.SimulatorServiceStub, Path]
) -> None:
    stub, store = simulator
    dataset = list(stub.CollectTransitions(
        simulator_pb2.CollectTransitionsRequest(env_id="CartPole-v1", num_steps=80, seed=5), timeout=T))[-1].dataset
    responses = list(stub.ExportDataset(simulator_pb2.ExportDatasetRequest(dataset_id=dataset.dataset_id),
                                        timeout=T))
    assert responses[0].header.media_type == transitions_archive.MEDIA_TYPE
    exported = transitions_archive.load(blobs.receive(responses, "stream"))
    with np.load(store / "datasets" / dataset.dataset_id / "transitions.npz") as stored:
        for name in transitions_archive.FIELDS:
            np.testing.assert_array_equal(getattr(exported, name), stored[name])
    assert len(exported) == dataset.num_transitions == 80
    error = rpc_error(lambda: stub.ExportDataset(simulator_pb2.ExportDatasetRequest(dataset_id="ds-missing"),
                                                 timeout=T))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "ds-missing" in error.details()
    with pytest.raises(ValueError, match="needs arrays"):
        transitions_archive.load(_npz(obs=np.zeros(3)))


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()
