"""A trainer process killed mid-run resumes the run from its last checkpoint when it starts again, and
finishes with the policy an uninterrupted run with the same seed trains."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from plasma.sdk.local import free_port, wait_serving
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from services.common import wire
from services.simulator import server as simulator_server
from services.simulator.config import Config as SimulatorConfig
from services.trainer.store import TrainerStore
from tests.conftest import rpc_error, running
from tests.support.training import small_cartpole_model
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

T = 30.0
# Enough adapter rounds that the kill, right after the base phase's checkpoint, lands mid-run.
CONFIG = trainer_pb2.TrainConfig(
    seed=3, hidden_size=16, base_paths=4, adapter_rounds=6, paths_per_round=4, horizon=40, epochs=3, lora_rank=2,
    lora_alpha=4,
    planner=simulator_pb2.PlannerConfig(num_samples=16, num_elites=4, horizon=10, num_iterations=1),
)


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A simulator on port 0 and a small CartPole world model in it."""
    config = SimulatorConfig(address="127.0.0.1:0", store_dir=tmp_path_factory.mktemp("simulator"))
    with running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME) as address:
        with grpc.insecure_channel(address) as channel:
            model_id = small_cartpole_model(channel)
        yield address, model_id


@contextmanager
def trainer_process(simulator_address: str, store: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A trainer as its own process, as in production; killed (if still alive) on exit."""
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "PLASMA_TRAINER_ADDRESS": address, "PLASMA_SIMULATOR_TARGET": simulator_address,
           "PLASMA_TRAINER_STORE": str(store), "PLASMA_TRAINER_TORCH_THREADS": "1",
           "PLASMA_TRAINER_GRACE_SECONDS": "1"}
    with open(store.parent / "trainer.log", "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "services.trainer.server"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    try:
        wait_serving(address, 60.0, process)
        yield process, address
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _get(stub: trainer_pb2_grpc.TrainerServiceStub, run_id: str) -> trainer_pb2.Run:
    return stub.GetRun(trainer_pb2.GetRunRequest(run_id=run_id), timeout=T).run


def _wait_for(stub: trainer_pb2_grpc.TrainerServiceStub, run_id: str, done: Callable[[trainer_pb2.Run], bool],
              timeout_s: float) -> None:
    eventually(lambda: done(_get(stub, run_id)), timeout_s, f"run {run_id} getting there")


def test_a_killed_trainer_resumes_its_run_to_the_uninterrupted_policy(
    simulator: tuple[str, str], tmp_path: Path
) -> None:
    simulator_address, model_id = simulator
    store = tmp_path / "trainer"
    request = trainer_pb2.TrainRequest(model_id=model_id, config=CONFIG)

    with trainer_process(simulator_address, store) as (process, address), grpc.insecure_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        # A run whose client goes away is cancelled, and stays so.
        cancelled_stream = stub.Train(request, timeout=300)
        cancelled_id = _first_run_id(stub, cancelled_stream)
        cancelled_stream.cancel()
        _wait_for(stub, cancelled_id, lambda run: run.state == trainer_pb2.RUN_STATE_CANCELLED, 60)

        # A run whose trainer dies is resumed.
        stream = stub.Train(request, timeout=300)
        run_id = _first_run_id(stub, stream)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed = TrainerStore(store).run(run_id)
        assert killed.state == trainer_pb2.RUN_STATE_RUNNING
        assert len(killed.history) < CONFIG.adapter_rounds + 1, "the kill came after the run had finished"

    with trainer_process(simulator_address, store) as (_, address), grpc.insecure_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        watched = list(stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run_id), timeout=300))
        resumed = watched[-1].run
        assert resumed.state == trainer_pb2.RUN_STATE_SUCCEEDED, resumed.error
        expected_events = [("base", 0)] + [("adapter", r) for r in range(1, CONFIG.adapter_rounds + 1)]
        assert [(w.progress.phase, w.progress.round) for w in watched[:-1]] == expected_events
        assert list(resumed.history) == [w.progress for w in watched[:-1]]
        assert resumed.checkpoint == resumed.history[-1]
        assert _get(stub, cancelled_id).state == trainer_pb2.RUN_STATE_CANCELLED

        uninterrupted = list(stub.Train(request, timeout=300))[-1].run

    assert uninterrupted.state == trainer_pb2.RUN_STATE_SUCCEEDED, uninterrupted.error
    assert list(uninterrupted.history) == list(resumed.history)
    for key in ("imagined_return", "planner_agreement", "phantom_paths_used", "phantom_steps_used"):
        assert getattr(resumed.metrics, key) == getattr(uninterrupted.metrics, key), key
    ours, theirs = wire.mlp_from_proto(resumed.policy), wire.mlp_from_proto(uninterrupted.policy)
    for a, b in zip([*ours.weights, *ours.biases], [*theirs.weights, *theirs.biases], strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_trainer_stopped_by_sigterm_leaves_its_run_to_resume(simulator: tuple[str, str], tmp_path: Path) -> None:
    simulator_address, model_id = simulator
    store = tmp_path / "trainer"
    with trainer_process(simulator_address, store) as (process, address), grpc.insecure_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        stream = stub.Train(trainer_pb2.TrainRequest(model_id=model_id, config=CONFIG), timeout=300)
        run_id = _first_run_id(stub, stream)
        process.send_signal(signal.SIGTERM)
        # Training stops at its next phantom path.
        assert process.wait(timeout=300) == 0
        error = rpc_error(lambda: list(stream))
        assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
    stopped = TrainerStore(store).run(run_id)
    assert stopped.state == trainer_pb2.RUN_STATE_RUNNING, stopped.error
    assert len(stopped.history) < CONFIG.adapter_rounds + 1, "the stop came after the run had finished"

    with trainer_process(simulator_address, store) as (_, address), grpc.insecure_channel(address) as channel:
        stub = trainer_pb2_grpc.TrainerServiceStub(channel)
        resumed = list(stub.WatchRun(trainer_pb2.WatchRunRequest(run_id=run_id), timeout=300))[-1].run
    assert resumed.state == trainer_pb2.RUN_STATE_SUCCEEDED, resumed.error
    assert [p.round for p in resumed.history] == list(range(CONFIG.adapter_rounds + 1))
    assert resumed.HasField("policy")


def _first_run_id(stub: trainer_pb2_grpc.TrainerServiceStub, stream: grpc.Future) -> str:
    """Reads the stream's first progress event (the base phase is then checkpointed) and finds its run."""
    first = next(stream)  # type: ignore[call-overload]
    assert first.progress.phase == "base"
    running_runs = [r for r in stub.ListRuns(trainer_pb2.ListRunsRequest(), timeout=T).runs
                    if r.state == trainer_pb2.RUN_STATE_RUNNING and r.history]
    assert len(running_runs) == 1
    return running_runs[0].run_id
