"""A Train call that ends before its run (the client cancels, its deadline expires) cancels the run: the run
reads CANCELLED, every simulation it started ends, and none starts after."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from tests.conftest import rpc_error
from tests.support.training import T
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

# Many planner-labelled paths per round: a round's simulation is still running when the cancel comes.
CONFIG = trainer_pb2.TrainConfig(
    seed=1, hidden_size=16, base_paths=4, adapter_rounds=20, paths_per_round=200, horizon=30, epochs=3,
    lora_rank=2, lora_alpha=4,
    planner=simulator_pb2.PlannerConfig(num_samples=16, num_elites=4, horizon=10, num_iterations=1),
)
ENDED = (simulator_pb2.SIMULATION_STATE_SUCCEEDED, simulator_pb2.SIMULATION_STATE_CANCELLED)


@pytest.fixture(scope="module")
def simulator(services: dict[str, str]) -> Iterator[simulator_pb2_grpc.SimulatorServiceStub]:
    with grpc.insecure_channel(services["simulator"]) as channel:
        yield simulator_pb2_grpc.SimulatorServiceStub(channel)


def _simulations(simulator: simulator_pb2_grpc.SimulatorServiceStub) -> dict[str, simulator_pb2.Simulation]:
    listed = simulator.ListSimulations(simulator_pb2.ListSimulationsRequest(), timeout=T).simulations
    return {s.simulation_id: s for s in listed}


def _runs(stub: trainer_pb2_grpc.TrainerServiceStub) -> dict[str, trainer_pb2.Run]:
    return {r.run_id: r for r in stub.ListRuns(trainer_pb2.ListRunsRequest(), timeout=T).runs}


def _all_ended(simulator: simulator_pb2_grpc.SimulatorServiceStub,
               before: set[str]) -> dict[str, simulator_pb2.Simulation] | None:
    """The simulations started since `before`, once none of them is running any more."""
    started = {i: s for i, s in _simulations(simulator).items() if i not in before}
    return started if all(s.state != simulator_pb2.SIMULATION_STATE_RUNNING for s in started.values()) else None


def _ended_run(stub: trainer_pb2_grpc.TrainerServiceStub, run_id: str) -> trainer_pb2.Run | None:
    run = _runs(stub)[run_id]
    return run if run.state != trainer_pb2.RUN_STATE_RUNNING else None


def _assert_cancelled_cleanly(stub: trainer_pb2_grpc.TrainerServiceStub,
                              simulator: simulator_pb2_grpc.SimulatorServiceStub, run_id: str,
                              before: set[str]) -> list[simulator_pb2.Simulation]:
    """The run reads CANCELLED; by then it has started every simulation it ever will, and each of them ends
    (an unfinished one CANCELLED); none is started afterwards. Returns them, oldest first."""
    run = eventually(lambda: _ended_run(stub, run_id), 60, f"run {run_id} ending")
    assert run is not None
    assert run.state == trainer_pb2.RUN_STATE_CANCELLED, trainer_pb2.RunState.Name(run.state)
    at_cancel = set(_simulations(simulator)) - before
    ended = eventually(lambda: _all_ended(simulator, before), 60, "the run's simulations ending")
    assert ended is not None
    assert set(ended) == at_cancel, f"simulations started after the run read CANCELLED: {set(ended) - at_cancel}"
    assert all(s.state in ENDED for s in ended.values()), [s.error for s in ended.values()]
    unfinished = [s for s in ended.values() if s.paths_logged < s.request.num_paths]
    assert all(s.state == simulator_pb2.SIMULATION_STATE_CANCELLED for s in unfinished)
    return sorted(ended.values(), key=lambda s: s.create_time.ToNanoseconds())


def test_a_client_cancel_after_the_first_progress_cancels_the_run_and_its_simulation(
    stub: trainer_pb2_grpc.TrainerServiceStub, simulator: simulator_pb2_grpc.SimulatorServiceStub, model_id: str
) -> None:
    before = set(_simulations(simulator))
    stream = stub.Train(trainer_pb2.TrainRequest(model_id=model_id, config=CONFIG), timeout=300)
    first = next(stream)
    assert first.progress.phase == "base"
    run_id = next(r.run_id for r in _runs(stub).values() if r.state == trainer_pb2.RUN_STATE_RUNNING)
    # Cancel while the first round's simulation runs.
    in_flight = eventually(lambda: _running(simulator, before), 60, "the first round's simulation starting")
    assert in_flight is not None
    stream.cancel()

    simulations = _assert_cancelled_cleanly(stub, simulator, run_id, before)
    assert "cancelled" in _runs(stub)[run_id].error
    # The simulation in flight was stopped before it had logged every path.
    [stopped] = [s for s in simulations if s.simulation_id == in_flight.simulation_id]
    assert stopped.state == simulator_pb2.SIMULATION_STATE_CANCELLED
    assert stopped.paths_logged < stopped.request.num_paths


def _running(simulator: simulator_pb2_grpc.SimulatorServiceStub, before: set[str]) -> simulator_pb2.Simulation | None:
    return next((s for i, s in _simulations(simulator).items()
                 if i not in before and s.state == simulator_pb2.SIMULATION_STATE_RUNNING), None)


@pytest.mark.parametrize("deadline_s", [0.001, 0.05, 0.3, 1.0])
def test_a_train_whose_deadline_expires_leaves_no_run_or_simulation_running(
    stub: trainer_pb2_grpc.TrainerServiceStub, simulator: simulator_pb2_grpc.SimulatorServiceStub, model_id: str,
    deadline_s: float,
) -> None:
    runs_before, before = set(_runs(stub)), set(_simulations(simulator))
    error = rpc_error(lambda: list(stub.Train(trainer_pb2.TrainRequest(model_id=model_id, config=CONFIG),
                                              timeout=deadline_s)))
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED, error.details()

    # A deadline that expired before the run was created leaves no run; one that expired after cancels it.
    eventually(lambda: all(r.state != trainer_pb2.RUN_STATE_RUNNING for i, r in _runs(stub).items()
                           if i not in runs_before), 60, "no run left running")
    created = set(_runs(stub)) - runs_before
    assert len(created) <= 1
    for run_id in created:
        _assert_cancelled_cleanly(stub, simulator, run_id, before)
    assert eventually(lambda: _all_ended(simulator, before) is not None, 60, "every simulation ending")
