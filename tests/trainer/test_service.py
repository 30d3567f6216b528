"""TrainerService against real simulator and trainer servers on port 0."""

from __future__ import annotations

from pathlib import Path

import grpc
import gymnasium
import numpy as np
import pytest
import torch

from plasma import blobs
from plasma.mbrl.algorithms.base import mlp_weights_of
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc, task_pb2
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from services.common import bundle, wire
from services.trainer import server as trainer_server
from services.trainer.config import Config as TrainerConfig
from services.trainer.store import TrainerStore
from tests.conftest import rpc_error, running
from tests.support.training import TINY_TRAIN, T


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


def test_a_succeeded_run_carries_its_merged_policy(
    stub: trainer_pb2_grpc.TrainerServiceStub, run: trainer_pb2.Run
) -> None:
    exported = _bundle(stub, run.run_id)
    merged = mlp_weights_of(exported.adapted_network())
    policy = wire.mlp_from_proto(run.policy)
    for ours, theirs in zip([*policy.weights, *policy.biases], [*merged.weights, *merged.biases], strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_the_runs_policy_collects_more_real_data(services: dict[str, str], run: trainer_pb2.Run) -> None:
    with grpc.insecure_channel(services["simulator"]) as channel:
        sim = simulator_pb2_grpc.SimulatorServiceStub(channel)
        request = simulator_pb2.CollectTransitionsRequest(
            env_id="CartPole-v1", num_steps=100, seed=4, collection_policy=simulator_pb2.COLLECTION_POLICY_MLP,
            policy=run.policy)
        dataset = list(sim.CollectTransitions(request, timeout=T))[-1].dataset
    assert dataset.num_transitions == 100


def test_watching_a_finished_run_replays_its_history_then_the_run(
    stub: trainer_pb2_grpc.TrainerServiceStub, run: trainer_pb2.Run
) -> None:
    responses = list(stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run.run_id), timeout=T))
    assert [r.progress for r in responses[:-1]] == list(run.history)
    assert [(p.phase, p.round) for p in run.history] == [("base", 0), ("adapter", 1)]
    assert run.checkpoint == run.history[-1]
    assert responses[-1].run == run


@pytest.fixture(scope="module")
def adapter_run(stub: trainer_pb2_grpc.TrainerServiceStub, model_id: str, run: trainer_pb2.Run) -> trainer_pb2.Run:
    request = trainer_pb2.TrainRequest(model_id=model_id, base_run_id=run.run_id, task=LEARNED_TASK,
                                       config=trainer_pb2.TrainConfig(**{**_fields(TINY_TRAIN), "seed": 7}))
    return list(stub.Train(request, timeout=300))[-1].run


LEARNED_TASK = task_pb2.TaskSpec(name="learned-heads", learned=task_pb2.LearnedObjective())


def _fields(config: trainer_pb2.TrainConfig) -> dict[str, object]:
    return {field.name: value for field, value in config.ListFields()}


def test_an_adapter_run_trains_only_a_new_adapter_on_the_base_runs_weights(
    stub: trainer_pb2_grpc.TrainerServiceStub, run: trainer_pb2.Run, adapter_run: trainer_pb2.Run
) -> None:
    assert adapter_run.state == trainer_pb2.RUN_STATE_SUCCEEDED, adapter_run.error
    assert adapter_run.base_run_id == run.run_id
    assert adapter_run.task == LEARNED_TASK
    assert [p.phase for p in adapter_run.history] == ["adapter"], "no base phase"
    assert adapter_run.metrics.phantom_paths_used == 2 * TINY_TRAIN.paths_per_round  # one round + final paths
    base, adapted = _bundle(stub, run.run_id), _bundle(stub, adapter_run.run_id)
    assert adapted.spec == base.spec
    assert adapted.base_state.keys() == base.base_state.keys()
    assert all(torch.equal(adapted.base_state[k], v) for k, v in base.base_state.items())
    assert adapted.adapter_files["adapter_model.safetensors"] != base.adapter_files["adapter_model.safetensors"]
    assert adapted.provenance["base_run_id"] == run.run_id


def test_adapting_an_adapter_run_uses_the_same_base(
    stub: trainer_pb2_grpc.TrainerServiceStub, model_id: str, run: trainer_pb2.Run, adapter_run: trainer_pb2.Run
) -> None:
    request = trainer_pb2.TrainRequest(model_id=model_id, base_run_id=adapter_run.run_id, config=TINY_TRAIN)
    again = list(stub.Train(request, timeout=300))[-1].run
    assert again.state == trainer_pb2.RUN_STATE_SUCCEEDED, again.error
    assert again.base_run_id == run.run_id
    base, adapted = _bundle(stub, run.run_id), _bundle(stub, again.run_id)
    assert all(torch.equal(adapted.base_state[k], v) for k, v in base.base_state.items())


def test_bad_base_runs_get_precise_codes(
    stub: trainer_pb2_grpc.TrainerServiceStub, services: dict[str, str], model_id: str, run: trainer_pb2.Run
) -> None:
    store = TrainerStore(Path(services["trainer_store"]))
    failed = trainer_pb2.Run(run_id="run-failed-base", model_id=model_id, state=trainer_pb2.RUN_STATE_FAILED,
                             env_spec=run.env_spec)
    store.save_run(failed)
    other_env = trainer_pb2.Run(run_id="run-other-env", model_id=model_id, state=trainer_pb2.RUN_STATE_SUCCEEDED)
    other_env.env_spec.CopyFrom(run.env_spec)
    other_env.env_spec.env_id = "Other-v0"
    store.save_run(other_env)
    cases = [
        ("run-missing", grpc.StatusCode.NOT_FOUND, "base_run_id 'run-missing'"),
        ("run-failed-base", grpc.StatusCode.FAILED_PRECONDITION, "RUN_STATE_FAILED"),
        ("run-other-env", grpc.StatusCode.FAILED_PRECONDITION, "environment spec"),
    ]
    for base_run_id, code, fragment in cases:
        request = trainer_pb2.TrainRequest(model_id=model_id, base_run_id=base_run_id, config=TINY_TRAIN)
        error = rpc_error(lambda request=request: stub.Train(request, timeout=T))
        assert error.code() == code, error.details()
        assert fragment in error.details()
    wider = trainer_pb2.TrainRequest(model_id=model_id, base_run_id=run.run_id,
                                     config=trainer_pb2.TrainConfig(hidden_size=32))
    error = rpc_error(lambda: stub.Train(wider, timeout=T))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "hidden_size" in error.details()


def test_a_task_the_simulator_rejects_fails_before_a_run_exists(
    stub: trainer_pb2_grpc.TrainerServiceStub, model_id: str
) -> None:
    before = len(stub.ListRuns(trainer_pb2.ListRunsRequest(), timeout=T).runs)
    task = task_pb2.TaskSpec(tracking=task_pb2.TrackingObjective(target_observation=[0.0], state_weights=[1.0]))
    error = rpc_error(lambda: stub.Train(trainer_pb2.TrainRequest(model_id=model_id, task=task), timeout=T))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert len(stub.ListRuns(trainer_pb2.ListRunsRequest(), timeout=T).runs) == before


def test_watching_an_unknown_run_is_not_found(stub: trainer_pb2_grpc.TrainerServiceStub) -> None:
    error = rpc_error(lambda: stub.WatchRun(trainer_pb2.WatchRunRequest(run_id="run-missing"), timeout=T))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def _bundle(stub: trainer_pb2_grpc.TrainerServiceStub, run_id: str) -> bundle.PolicyBundle:
    stream = stub.ExportPolicy(trainer_pb2.ExportPolicyRequest(run_id=run_id), timeout=T)
    header = next(stream).header
    return bundle.unpack(blobs.assemble(header, (message.chunk for message in stream)))


def test_watching_a_run_in_progress_streams_its_events_live(
    stub: trainer_pb2_grpc.TrainerServiceStub, model_id: str
) -> None:
    stream = stub.Train(trainer_pb2.TrainRequest(model_id=model_id, config=TINY_TRAIN), timeout=300)
    assert next(stream).progress.phase == "base"
    [running_run] = [r for r in stub.ListRuns(trainer_pb2.ListRunsRequest(), timeout=T).runs
                     if r.state == trainer_pb2.RUN_STATE_RUNNING]
    watched = list(stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=running_run.run_id), timeout=300))
    trained = list(stream)[-1].run
    assert watched[-1].run == trained
    assert [w.progress for w in watched[:-1]] == list(trained.history)


def test_a_run_that_cannot_resume_fails_saying_why(services: dict[str, str], run: trainer_pb2.Run,
                                                   tmp_path: Path) -> None:
    store = TrainerStore(tmp_path)
    store.save_run(trainer_pb2.Run(run_id="run-orphan", model_id="wm-deleted", state=trainer_pb2.RUN_STATE_RUNNING,
                                   config=TINY_TRAIN, env_spec=run.env_spec))
    config = TrainerConfig(address="127.0.0.1:0", simulator_address=services["simulator"], store_dir=tmp_path)
    with running(lambda: trainer_server.create_server(config), trainer_server.SERVICE_NAME) as address, \
            grpc.insecure_channel(address) as channel:
        watched = list(trainer_pb2_grpc.TrainerServiceStub(channel).WatchRun(
            trainer_pb2.WatchRunRequest(run_id="run-orphan"), timeout=T))
    assert watched[-1].run.state == trainer_pb2.RUN_STATE_FAILED
    assert "resuming after a trainer restart failed" in watched[-1].run.error
    assert "wm-deleted" in watched[-1].run.error
