"""Durable simulations: StartSimulation, Subscribe (replay, live follow, resume), restarts and the path log."""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from services.simulator import server as simulator_server
from services.simulator.config import Config
from services.simulator.path_log import LogReader, PathLog
from tests.conftest import rpc_error, running
from tests.support.waiting import eventually

T = 60.0  # deadline for every call in these tests
SMALL_MODEL = simulator_pb2.WorldModelConfig(ensemble_size=3, hidden_size=32, train_steps=200, seed=1)
Stub = simulator_pb2_grpc.SimulatorServiceStub



def _start(store: Path, address: str = "127.0.0.1:0"):  # type: ignore[no-untyped-def]
    config = Config(address=address, store_dir=store, max_simulations=2)
    return running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("simulator-store")


@pytest.fixture(scope="module")
def model_id(store: Path) -> str:
    with _start(store) as address, grpc.insecure_channel(address) as channel:
        stub = Stub(channel)
        collected = list(stub.CollectTransitions(
            simulator_pb2.CollectTransitionsRequest(env_id="CartPole-v1", num_steps=400, seed=7), timeout=T))
        fitted = list(stub.FitWorldModel(simulator_pb2.FitWorldModelRequest(
            dataset_id=collected[-1].dataset.dataset_id, config=SMALL_MODEL), timeout=120))
        return fitted[-1].model.model_id


@pytest.fixture(scope="module")
def stub(store: Path, model_id: str) -> Iterator[Stub]:
    with _start(store) as address, grpc.insecure_channel(address) as channel:
        yield Stub(channel)


def _request(model_id: str, num_paths: int, horizon: int = 30, seed: int = 3) -> simulator_pb2.SimulateRequest:
    request = simulator_pb2.SimulateRequest(model_id=model_id, num_paths=num_paths, horizon=horizon, seed=seed)
    request.policy.random.SetInParent()
    return request


def _start_simulation(stub: Stub, request: simulator_pb2.SimulateRequest) -> str:
    started = stub.StartSimulation(simulator_pb2.StartSimulationRequest(request=request), timeout=T).simulation
    assert started.state == simulator_pb2.SIMULATION_STATE_RUNNING
    assert started.request == request
    return started.simulation_id


def _subscribe(stub: Stub, simulation_id: str, from_sequence: int = 0) -> list[simulator_pb2.PhantomPath]:
    request = simulator_pb2.SubscribeRequest(simulation_id=simulation_id, from_sequence=from_sequence)
    return [r.path for r in stub.Subscribe(request, timeout=T)]


def _wait_logged(stub: Stub, simulation_id: str, at_least: int) -> simulator_pb2.Simulation:
    def logged() -> simulator_pb2.Simulation | None:
        simulation = stub.GetSimulation(
            simulator_pb2.GetSimulationRequest(simulation_id=simulation_id), timeout=T).simulation
        ended = simulation.state != simulator_pb2.SIMULATION_STATE_RUNNING
        return simulation if simulation.paths_logged >= at_least or ended else None

    return eventually(logged, T, f"simulation {simulation_id} logging {at_least} paths")


def test_subscribers_get_identical_paths_equal_to_simulate(stub: Stub, model_id: str) -> None:
    request = _request(model_id, num_paths=150)
    simulation_id = _start_simulation(stub, request)
    results: list[list[simulator_pb2.PhantomPath]] = [[] for _ in range(3)]
    threads = [threading.Thread(target=lambda i=i: results[i].extend(_subscribe(stub, simulation_id)))
               for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    late = _subscribe(stub, simulation_id)  # joins after the job ended: a pure replay
    direct = [r.path for r in stub.Simulate(request, timeout=T)]
    assert [p.index for p in late] == list(range(150))
    assert results[0] == results[1] == results[2] == late == direct
    simulation = stub.GetSimulation(simulator_pb2.GetSimulationRequest(simulation_id=simulation_id), timeout=T)
    assert simulation.simulation.state == simulator_pb2.SIMULATION_STATE_SUCCEEDED
    assert simulation.simulation.paths_logged == 150
    listed = stub.ListSimulations(simulator_pb2.ListSimulationsRequest(), timeout=T).simulations
    assert simulation_id in [s.simulation_id for s in listed]


def test_replay_from_the_middle_and_errors_with_codes(stub: Stub, model_id: str) -> None:
    simulation_id = _start_simulation(stub, _request(model_id, num_paths=100, seed=4))
    middle = _subscribe(stub, simulation_id, from_sequence=70)  # may start while the job still runs
    everything = _subscribe(stub, simulation_id)
    assert middle == everything[70:]
    assert _subscribe(stub, simulation_id, from_sequence=100) == []

    def subscribe(name: str, sequence: int):  # type: ignore[no-untyped-def]
        return lambda: _subscribe(stub, name, sequence)

    assert rpc_error(subscribe(simulation_id, 101)).code() == grpc.StatusCode.OUT_OF_RANGE
    assert rpc_error(subscribe(simulation_id, -1)).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rpc_error(subscribe("sim-000000000000", 0)).code() == grpc.StatusCode.NOT_FOUND
    bad = _request(model_id, num_paths=0)
    error = rpc_error(lambda: stub.StartSimulation(simulator_pb2.StartSimulationRequest(request=bad), timeout=T))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = _request("wm-000000000000", num_paths=5)
    error = rpc_error(lambda: stub.StartSimulation(simulator_pb2.StartSimulationRequest(request=missing), timeout=T))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_resume_after_a_client_disconnect_loses_and_repeats_nothing(stub: Stub, model_id: str) -> None:
    simulation_id = _start_simulation(stub, _request(model_id, num_paths=200, seed=5))
    call = stub.Subscribe(simulator_pb2.SubscribeRequest(simulation_id=simulation_id), timeout=T)
    received = []
    for response in call:
        received.append(response.path)
        if len(received) == 37:
            call.cancel()  # the client goes away mid-stream
            break
    received += _subscribe(stub, simulation_id, from_sequence=received[-1].index + 1)
    assert [p.index for p in received] == list(range(200))
    assert received == _subscribe(stub, simulation_id)


def test_a_slow_subscriber_does_not_hold_back_the_job_or_another_subscriber(stub: Stub, model_id: str) -> None:
    num_paths = 200
    simulation_id = _start_simulation(stub, _request(model_id, num_paths=num_paths, seed=6))
    slow_received: list[int] = []
    first_read, go_on = threading.Event(), threading.Event()

    def slow() -> None:
        # Reads one path, then does not read again until the others are done: as slow as a subscriber can be.
        for path in _subscribe_iter(stub, simulation_id):
            slow_received.append(path.index)
            first_read.set()
            go_on.wait(T)

    slow_thread = threading.Thread(target=slow)
    slow_thread.start()
    assert first_read.wait(T)
    fast = _subscribe(stub, simulation_id)
    simulation = _wait_logged(stub, simulation_id, num_paths)
    held_back = list(slow_received)  # what the slow subscriber had while the fast one and the job finished
    go_on.set()
    slow_thread.join(T)
    assert simulation.state == simulator_pb2.SIMULATION_STATE_SUCCEEDED
    assert [p.index for p in fast] == list(range(num_paths)) and slow_received == list(range(num_paths))
    # The fast subscriber and the job were done while the slow one still held its first path.
    assert held_back == [0]


def _subscribe_iter(stub: Stub, simulation_id: str) -> Iterator[simulator_pb2.PhantomPath]:
    for response in stub.Subscribe(simulator_pb2.SubscribeRequest(simulation_id=simulation_id), timeout=T):
        yield response.path


def test_cancel_ends_the_job_and_its_subscriptions_and_running_jobs_are_limited(stub: Stub, model_id: str) -> None:
    big = [_start_simulation(stub, _request(model_id, num_paths=100_000, seed=s)) for s in (10, 11)]
    error = rpc_error(lambda: stub.StartSimulation(
        simulator_pb2.StartSimulationRequest(request=_request(model_id, num_paths=5)), timeout=T))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _wait_logged(stub, big[0], 64)
    for simulation_id in big:
        cancelled = stub.CancelSimulation(
            simulator_pb2.CancelSimulationRequest(simulation_id=simulation_id), timeout=T).simulation
        assert cancelled.state == simulator_pb2.SIMULATION_STATE_CANCELLED
        assert cancelled.paths_logged < 100_000
    received = []
    error = rpc_error(lambda: received.extend(_subscribe_iter(stub, big[0])))
    assert error.code() == grpc.StatusCode.CANCELLED
    cancelled = stub.GetSimulation(simulator_pb2.GetSimulationRequest(simulation_id=big[0]), timeout=T).simulation
    assert [p.index for p in received] == list(range(cancelled.paths_logged))
    _start_simulation(stub, _request(model_id, num_paths=5))  # room again


def _stop_mid_job(store: Path, request: simulator_pb2.SimulateRequest) -> str:
    with _start(store) as address, grpc.insecure_channel(address) as channel:
        stub = Stub(channel)
        simulation_id = _start_simulation(stub, request)
        at_stop = _wait_logged(stub, simulation_id, 64)
    assert at_stop.state == simulator_pb2.SIMULATION_STATE_RUNNING and at_stop.paths_logged < request.num_paths
    return simulation_id


def _last_segment(store: Path, simulation_id: str) -> Path:
    return sorted((store / "simulations" / simulation_id / "log").glob("*.seg"))[-1]


@pytest.mark.slow
def test_a_job_resumes_after_a_restart_with_a_torn_tail(store: Path, model_id: str) -> None:
    request = _request(model_id, num_paths=3000, horizon=60, seed=8)
    simulation_id = _stop_mid_job(store, request)
    segment = _last_segment(store, simulation_id)
    with open(segment, "r+b") as handle:  # a crash in the middle of the last record
        handle.truncate(segment.stat().st_size - 5)
    with _start(store) as address, grpc.insecure_channel(address) as channel:
        stub = Stub(channel)
        resumed = _subscribe(stub, simulation_id)
        simulation = stub.GetSimulation(
            simulator_pb2.GetSimulationRequest(simulation_id=simulation_id), timeout=T).simulation
        direct = [r.path for r in stub.Simulate(request, timeout=T)]
    assert simulation.state == simulator_pb2.SIMULATION_STATE_SUCCEEDED, simulation.error
    assert [p.index for p in resumed] == list(range(3000))
    assert resumed == direct


def test_a_resumed_job_that_regenerates_different_paths_fails(store: Path, model_id: str) -> None:
    request = _request(model_id, num_paths=3000, horizon=60, seed=9)
    simulation_id = _stop_mid_job(store, request)
    segment = _last_segment(store, simulation_id)
    data = segment.read_bytes()
    length, _ = struct.unpack_from("<II", data)
    first = simulator_pb2.PhantomPath.FromString(data[8:8 + length])
    first.total_reward += 1.0  # a logged path the regenerated one will not match
    payload = first.SerializeToString()
    segment.write_bytes(struct.pack("<II", len(payload), zlib.crc32(payload)) + payload + data[8 + length:])
    with _start(store) as address, grpc.insecure_channel(address) as channel:
        stub = Stub(channel)
        error = rpc_error(lambda: _subscribe(stub, simulation_id))
        simulation = stub.GetSimulation(
            simulator_pb2.GetSimulationRequest(simulation_id=simulation_id), timeout=T).simulation
    assert error.code() == grpc.StatusCode.ABORTED
    assert simulation.state == simulator_pb2.SIMULATION_STATE_FAILED
    assert "differs from the logged one" in simulation.error and simulation.error in error.details()


def test_path_log_truncates_a_torn_tail_and_keeps_sequence_numbers_dense(tmp_path: Path) -> None:
    records = [bytes([i]) * (10 + i) for i in range(20)]
    writer = PathLog(tmp_path)
    assert writer.append(records[:10]) == 10
    assert writer.append(records[10:]) == 20
    writer.close()
    segment = sorted(tmp_path.glob("*.seg"))[-1]
    with open(segment, "r+b") as handle:
        handle.truncate(segment.stat().st_size - 3)  # the last record's payload is cut short
    reopened = PathLog(tmp_path)
    assert reopened.count == 19
    assert reopened.append([b"new"]) == 20
    reader = LogReader(tmp_path, 0)
    assert list(reader.read(20)) == [*records[:19], b"new"]
    reader.close()
    middle = LogReader(tmp_path, 15)
    assert list(middle.read(20)) == [*records[15:19], b"new"]
    middle.close()
    reopened.close()


def test_path_log_rolls_segments_and_fences_an_older_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from services.simulator import path_log

    monkeypatch.setattr(path_log, "SEGMENT_BYTES", 64)
    old = PathLog(tmp_path)
    for i in range(10):
        old.append([bytes([i]) * 40])
    assert len(list(tmp_path.glob("*.seg"))) > 1
    assert list(LogReader(tmp_path, 3).read(10)) == [bytes([i]) * 40 for i in range(3, 10)]
    new = PathLog(tmp_path)
    assert new.count == 10
    with pytest.raises(path_log.LogTakenOver):
        old.append([b"late"])
    assert new.append([b"next"]) == 11
    old.close()
    new.close()
