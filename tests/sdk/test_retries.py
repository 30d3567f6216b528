"""Channels retry idempotent RPCs on UNAVAILABLE with backoff (plasma.channels.RETRY_POLICY), sync and asyncio
alike, and never send a non-idempotent one twice: a real server that fails the first calls counts the attempts."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health_pb2

from plasma import channels
from plasma.compiler.v1 import compiler_pb2
from plasma.edge.v1 import edge_pb2
from plasma.registry.v1 import registry_pb2
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from plasma.trainer.v1 import trainer_pb2
from tests.support.training import T


class Flaky(simulator_pb2_grpc.SimulatorServiceServicer):
    """Answers UNAVAILABLE to the first `failures` attempts of each method, then succeeds; counts attempts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _attempt(self, method: str, context: grpc.ServicerContext) -> None:
        with self._lock:
            self.attempts[method] += 1
            attempt = self.attempts[method]
        if attempt <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"attempt {attempt} of {method} fails on purpose")

    def GetDataset(self, request: simulator_pb2.GetDatasetRequest,
                   context: grpc.ServicerContext) -> simulator_pb2.GetDatasetResponse:
        self._attempt("GetDataset", context)
        return simulator_pb2.GetDatasetResponse(dataset=simulator_pb2.Dataset(dataset_id=request.dataset_id))

    def StartSimulation(self, request: simulator_pb2.StartSimulationRequest,
                        context: grpc.ServicerContext) -> simulator_pb2.StartSimulationResponse:
        self._attempt("StartSimulation", context)
        return simulator_pb2.StartSimulationResponse(simulation=simulator_pb2.Simulation(simulation_id="sim-1"))

    def Subscribe(self, request: simulator_pb2.SubscribeRequest,
                  context: grpc.ServicerContext) -> Iterator[simulator_pb2.SubscribeResponse]:
        self._attempt("Subscribe", context)
        for index in range(3):
            yield simulator_pb2.SubscribeResponse(path=simulator_pb2.PhantomPath(index=index))


@pytest.fixture
def flaky() -> Iterator[tuple[Flaky, str]]:
    servicer = Flaky(failures=2)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    simulator_pb2_grpc.add_SimulatorServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None).wait()


def test_an_idempotent_unary_call_succeeds_after_failed_attempts(flaky: tuple[Flaky, str]) -> None:
    servicer, address = flaky
    with channels.channel(address) as channel:
        response = simulator_pb2_grpc.SimulatorServiceStub(channel).GetDataset(
            simulator_pb2.GetDatasetRequest(dataset_id="ds-1"), timeout=T)
    assert response.dataset.dataset_id == "ds-1"
    assert servicer.attempts["GetDataset"] == 3


def test_an_idempotent_stream_is_retried_before_its_first_message(flaky: tuple[Flaky, str]) -> None:
    servicer, address = flaky
    with channels.channel(address) as channel:
        paths = list(simulator_pb2_grpc.SimulatorServiceStub(channel).Subscribe(
            simulator_pb2.SubscribeRequest(simulation_id="sim-1"), timeout=T))
    assert [p.path.index for p in paths] == [0, 1, 2]
    assert servicer.attempts["Subscribe"] == 3


def test_a_call_that_creates_something_is_sent_once(flaky: tuple[Flaky, str]) -> None:
    servicer, address = flaky
    with channels.channel(address) as channel, pytest.raises(grpc.RpcError) as caught:
        simulator_pb2_grpc.SimulatorServiceStub(channel).StartSimulation(
            simulator_pb2.StartSimulationRequest(), timeout=T)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts["StartSimulation"] == 1


def test_aio_channels_retry_the_same_calls(flaky: tuple[Flaky, str]) -> None:
    servicer, address = flaky

    async def calls() -> tuple[simulator_pb2.GetDatasetResponse, grpc.StatusCode]:
        async with channels.aio_channel(address) as channel:
            stub: simulator_pb2_grpc.SimulatorServiceAsyncStub = simulator_pb2_grpc.SimulatorServiceStub(channel)
            dataset = await stub.GetDataset(simulator_pb2.GetDatasetRequest(dataset_id="ds-2"), timeout=T)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.StartSimulation(simulator_pb2.StartSimulationRequest(), timeout=T)
            return dataset, caught.value.code()

    dataset, start_code = asyncio.run(calls())
    assert dataset.dataset.dataset_id == "ds-2"
    assert start_code == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts == Counter({"GetDataset": 3, "StartSimulation": 1})


def test_the_retry_policy_names_only_rpcs_that_exist() -> None:
    """A misspelt name would silently turn retries off for that RPC."""
    descriptors = {d.full_name: d for d in (
        simulator_pb2.DESCRIPTOR.services_by_name["SimulatorService"],
        trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"],
        compiler_pb2.DESCRIPTOR.services_by_name["CompilerService"],
        edge_pb2.DESCRIPTOR.services_by_name["EdgeRuntimeService"],
        registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
        health_pb2.DESCRIPTOR.services_by_name["Health"],
    )}
    config = json.loads(channels.SERVICE_CONFIG)
    names = [(n["service"], n["method"]) for method in config["methodConfig"] for n in method["name"]]
    assert names, "no RPC is retried"
    for service, method in names:
        assert method in descriptors[service].methods_by_name, f"{service}/{method} does not exist"
    for never in ("StartSimulation", "UploadTransitions", "CollectTransitions", "FitWorldModel", "Train",
                  "Compile", "LoadPacket", "Rollback", "Control", "Report", "Publish", "StartRollout", "AbortRollout"):
        assert never not in {method for _, method in names}
