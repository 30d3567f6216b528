"""TrainerService against real simulator and trainer servers on port 0."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import gymnasium
import pytest
import torch

from plasma.core import blobs
from plasma.core.errors import FailedPrecondition
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from services.common import bundle
from services.simulator import server as simulator_server
from services.simulator.config import Config as SimulatorConfig
from services.trainer import server as trainer_server
from services.trainer.config import Config as TrainerConfig
from services.trainer.store import TrainerStore
from tests.conftest import rpc_error, running

T = 30.0
TINY_TRAIN = trainer_pb2.TrainConfig(
    seed=1, hidden_size=16, base_paths=4, adapter_rounds=1, paths_per_round=2, horizon=30, epochs=3, lora_rank=2,
    lora_alpha=4,
    planner=simulator_pb2.PlannerConfig(num_samples=16, num_elites=4, horizon=10, num_iterations=1),
)


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
        sim = simulator_pb2_grpc.SimulatorServiceStub(channel)
        dataset = list(sim.CollectTransitions(
            simulator_pb2.CollectTransitionsRequest(env_id="CartPole-v1", num_steps=300, seed=2), timeout=T))[-1]
        fit = simulator_pb2.FitWorldModelRequest(
            dataset_id=dataset.dataset.dataset_id,
            config=simulator_pb2.WorldModelConfig(ensemble_size=2, hidden_size=32, train_steps=200))
        return list(sim.FitWorldModel(fit, timeout=120))[-1].model.model_id


@pytest.fixture(scope="module")
def run(stub: trainer_pb2_grpc.TrainerServiceStub, model_id: str) -> trainer_pb2.Run:
    # Training must take no real-environment steps: any attempt to build a Gymnasium env fails the run.
    patch = pytest.MonkeyPatch()
    patch.setattr(gymnasium, "make", _no_real_environment)
    try:
        responses = list(stub.Train(trainer_pb2.TrainRequest(model_id=model_id, config=TINY_TRAIN), timeout=300))
    finally:
        patch.undo()
    assert any(r.HasField("progress") for r in responses[:-1])
    return responses[-1].run


def _no_real_environment(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the trainer must learn from phantom paths only")


def test_train_succeeds_on_phantom_paths_only(run: trainer_pb2.Run, model_id: str) -> None:
    assert run.state == trainer_pb2.RUN_STATE_SUCCEEDED, run.error
    assert run.model_id == model_id
    assert run.metrics.phantom_paths_used >= TINY_TRAIN.base_paths + TINY_TRAIN.paths_per_round
    assert 0 < run.metrics.adapter_parameters < run.metrics.base_parameters


def test_export_streams_a_verifiable_bundle_with_the_adapter(
    stub: trainer_pb2_grpc.TrainerServiceStub, run: trainer_pb2.Run
) -> None:
    stream = stub.ExportPolicy(trainer_pb2.ExportPolicyRequest(run_id=run.run_id), timeout=T)
    header = next(stream).header
    data = blobs.assemble(header, (message.chunk for message in stream))
    assert header.media_type == bundle.MEDIA_TYPE
    exported = bundle.unpack(data)
    assert exported.spec.obs_dim == 4 and exported.spec.action_dim == 2
    adapted = exported.adapted_network()
    observations = torch.as_tensor(exported.parity_observations)
    assert adapted(observations).shape == (len(observations), 2)
    assert exported.provenance["run_id"] == run.run_id


def test_get_and_list_runs(stub: trainer_pb2_grpc.TrainerServiceStub, run: trainer_pb2.Run) -> None:
    assert stub.GetRun(trainer_pb2.GetRunRequest(run_id=run.run_id), timeout=T).run == run
    assert run.run_id in [r.run_id for r in stub.ListRuns(trainer_pb2.ListRunsRequest(), timeout=T).runs]


def test_bad_requests_get_precise_codes(stub: trainer_pb2_grpc.TrainerServiceStub, model_id: str) -> None:
    cases = [
        (lambda: stub.Train(trainer_pb2.TrainRequest(model_id="wm-missing"), timeout=T),
         grpc.StatusCode.NOT_FOUND, "wm-missing"),
        (lambda: stub.Train(trainer_pb2.TrainRequest(model_id=""), timeout=T),
         grpc.StatusCode.INVALID_ARGUMENT, "model_id"),
        (lambda: stub.Train(trainer_pb2.TrainRequest(
            model_id=model_id, config=trainer_pb2.TrainConfig(lora_rank=100_000)), timeout=T),
         grpc.StatusCode.INVALID_ARGUMENT, "lora_rank"),
        (lambda: stub.GetRun(trainer_pb2.GetRunRequest(run_id="run-missing"), timeout=T),
         grpc.StatusCode.NOT_FOUND, "run-missing"),
        (lambda: stub.ExportPolicy(trainer_pb2.ExportPolicyRequest(run_id="run-missing"), timeout=T),
         grpc.StatusCode.NOT_FOUND, "run-missing"),
    ]
    for call, code, fragment in cases:
        error = rpc_error(call)
        assert error.code() == code, error.details()
        assert fragment in error.details()


def test_a_run_interrupted_by_a_restart_is_marked_failed(tmp_path: Path) -> None:
    store = TrainerStore(tmp_path)
    store.save_run(trainer_pb2.Run(run_id="run-interrupted", state=trainer_pb2.RUN_STATE_RUNNING))
    reopened = TrainerStore(tmp_path)
    run = reopened.run("run-interrupted")
    assert run.state == trainer_pb2.RUN_STATE_FAILED
    assert "stopped" in run.error
    with pytest.raises(FailedPrecondition, match="only a succeeded run"):
        reopened.bundle("run-interrupted")
