"""Hostile input against the four services as processes (plasma.sdk.local.LocalStack, plaintext on loopback):
a property-based fuzz (hypothesis, tests/support/hostile.py) of every RPC of every service, and of the health and
reflection services each process also serves, with raw bytes, empty messages and hostile field values, sent raw
(unary and streaming) with a deadline on every call. Asserted: no UNKNOWN or INTERNAL status and no call that
runs into its deadline, no message longer than the servers' bound or naming a store path, every process alive and
SERVING after, no ERROR or unbounded line in any log, and memory that does not grow with unparseable requests or
with health watches of ever new service names (RSS read from /proc, before and after a flood). The calls made,
their statuses and each process's RSS are printed in pytest's terminal summary ("hostile input figures").

The simulator's store holds the small CartPole and Pendulum worlds (tests.support.worlds) and the edge serves a
signed packet, and their ids are among the strings tried, so requests also reach past the id checks. The trainer
and compiler get no valid ids: a Train or Compile that started for real would take minutes of CPU.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from google.protobuf import descriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from hypothesis import HealthCheck, given, settings

from plasma import channels
from plasma.compiler.v1 import compiler_pb2
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.registry.v1 import registry_pb2
from plasma.sdk.local import LocalStack
from plasma.server.errors import MAX_DETAILS_CHARS
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from plasma.trainer.v1 import trainer_pb2
from tests.support import hostile, policies, worlds
from tests.support.edge import load

pytestmark = pytest.mark.slow

SERVICES: dict[str, descriptor.ServiceDescriptor] = {
    "simulator": simulator_pb2.DESCRIPTOR.services_by_name["SimulatorService"],
    "trainer": trainer_pb2.DESCRIPTOR.services_by_name["TrainerService"],
    "compiler": compiler_pb2.DESCRIPTOR.services_by_name["CompilerService"],
    "edge": edge_pb2.DESCRIPTOR.services_by_name["EdgeRuntimeService"],
    "registry": registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
}
SHARED = [health_pb2.DESCRIPTOR.services_by_name["Health"],
          reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]]
CASES = [(process, service, method) for process, own in SERVICES.items()
         for service in (own, *SHARED) for method in service.methods]
# Per method, seeded (derandomize): 6,200 calls in all, about a minute on 2 cores. Two unseeded runs of 400 each
# (18,800 calls apiece) found nothing these do not.
EXAMPLES = 100
# A response stream is read for at most this many messages and this long after its first, then cancelled
# (Health.Watch never ends): enough to see it started well. Watch streams made a 1 s linger cost 2 minutes.
MAX_RESPONSES = 3
LINGER_S = 0.2
CALL_TIMEOUT_S = 20.0
# DEADLINE_EXCEEDED: a server that hung on a request (nothing fuzzed here needs seconds, let alone the deadline).
FORBIDDEN = {"UNKNOWN", "INTERNAL", "DEADLINE_EXCEEDED"}
# Unparseable requests per process in the memory check: grpcio kept ~16 KB of each (48 MB) before the fix.
FLOOD = 3000
# Health watches of distinct 1 MB service names per process, measured after a warm-up (the allocator keeps some
# freed 1 MB buffers: ~15 MB): each name stayed in memory (60 MB) before plasma.server.health.
WATCH_WARMUP = 20
WATCHES = 60
WATCHED_NAME_BYTES = 1024 * 1024
GROWTH_LIMIT_MB = 16.0
MAX_LOG_LINE = 4096
# Where the servers' code lives: a traceback or a module path in a message would name it.
REPOSITORY = str(Path(__file__).resolve().parents[2])


@dataclass
class Stack:
    local: LocalStack
    root: Path
    known: dict[str, list[str]]
    rss_before_mb: dict[str, float] = field(default_factory=dict)
    statuses: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)
    fuzz_s: float = 0.0
    # What pytest's terminal summary prints under "hostile input figures".
    figures: list[str] = field(default_factory=list)

    def address(self, process: str) -> str:
        return str(getattr(self.local.endpoints, process))

    def pid(self, process: str) -> int:
        return self.local.processes[process].pid


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class _Figures:
    """A plugin registered by the `stack` fixture: a test module cannot implement pytest hooks itself."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.lines:
            terminalreporter.section("hostile input figures")
            for line in self.lines:
                terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("hostile")
    store = worlds.simulator_store(root / "simulator")
    packet, _ = policies.make_packet("discrete", seed=0, version=1)
    env = {"PLASMA_EDGE_TRUSTED_KEYS": policies.TEST_KEY.public.base64, "PLASMA_LOG_LEVEL": "INFO"}
    with LocalStack(root, env=env) as local:
        with channels.channel(local.endpoints.edge) as channel:
            packet_id = load(edge_pb2_grpc.EdgeRuntimeServiceStub(channel), packet).packet_id
        with channels.channel(local.endpoints.simulator) as channel:
            job = simulator_pb2_grpc.SimulatorServiceStub(channel).StartSimulation(simulator_pb2.StartSimulationRequest(
                request=simulator_pb2.SimulateRequest(model_id=worlds.world("discrete").model_id, num_paths=2,
                                                      horizon=5)), timeout=CALL_TIMEOUT_S).simulation
        known = {"simulator": [*(d.dataset_id for d in store.list_datasets()),
                               *(m.model_id for m in store.list_models()), job.simulation_id],
                 "edge": [packet_id], "trainer": [], "compiler": [], "registry": ["stable"]}
        stack = Stack(local, root, known)
        pytestconfig.pluginmanager.register(_Figures(stack.figures))
        stack.rss_before_mb = {name: rss_mb(stack.pid(name)) for name in SERVICES}
        yield stack


def test_reflection_lists_exactly_the_services_fuzzed(stack: Stack) -> None:
    for process, own in SERVICES.items():
        with channels.channel(stack.address(process)) as channel:
            replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=CALL_TIMEOUT_S)
            listed = {s.name for reply in replies for s in reply.list_services_response.service}
        assert listed == {own.full_name, *(s.full_name for s in SHARED)}, process


@pytest.mark.parametrize(("process", "service", "method"), CASES,
                         ids=[f"{p}:{s.name}.{m.name}" for p, s, m in CASES])
def test_no_rpc_answers_hostile_input_with_unknown_or_internal(
    stack: Stack, process: str, service: descriptor.ServiceDescriptor, method: descriptor.MethodDescriptor
) -> None:
    path = f"/{service.full_name}/{method.name}"
    with channels.channel(stack.address(process)) as channel:

        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(messages=hostile.request(method, stack.known[process]))
        def fuzz(messages: list[bytes]) -> None:
            status, details = hostile.call(channel, path, method, messages, CALL_TIMEOUT_S, MAX_RESPONSES, LINGER_S)
            stack.statuses[(process, status)] += 1
            assert status not in FORBIDDEN, f"{path} answered {status}: {details[:300]}"
            assert len(details) <= MAX_DETAILS_CHARS + 100, f"{path}: {len(details)} characters of details"
            assert str(stack.root) not in details, f"{path} named a store path: {details[:300]}"
            assert REPOSITORY not in details, f"{path} named a path of the server's code: {details[:300]}"

        begun = time.monotonic()
        try:
            fuzz()
        finally:
            stack.fuzz_s += time.monotonic() - begun


def test_fine_tuning_takes_the_architecture_from_the_parents_weights(stack: Stack) -> None:
    """Found by the fuzz: the worlds' stored records carry no config, and a fine-tune of one with nothing else set
    asked for an ensemble of 0 members (INTERNAL)."""
    world = worlds.world("box")
    with channels.channel(stack.address("simulator")) as channel:
        replies = list(simulator_pb2_grpc.SimulatorServiceStub(channel).FitWorldModel(
            simulator_pb2.FitWorldModelRequest(dataset_id=world.dataset_id, init_from_model_id=world.model_id,
                                               config=simulator_pb2.WorldModelConfig(train_steps=1)),
            timeout=CALL_TIMEOUT_S))
    config = replies[-1].model.config
    assert (config.ensemble_size, config.hidden_size, config.num_layers) == (
        world.model.config.ensemble_size, world.model.config.hidden_size, world.model.config.num_layers)


def test_unparseable_requests_do_not_grow_memory(stack: Stack) -> None:
    rng = random.Random(0)
    growth = {}
    for process, own in SERVICES.items():
        methods = [(service, m) for service in (own, *SHARED) for m in service.methods]
        with channels.channel(stack.address(process)) as channel:
            before = rss_mb(stack.pid(process))
            for index in range(FLOOD):
                service, method = methods[index % len(methods)]
                payload = b"\xff" + rng.randbytes(rng.randint(1, 200))  # wire type 7: never parses
                status, _ = hostile.call(channel, f"/{service.full_name}/{method.name}", method, [payload],
                                         CALL_TIMEOUT_S)
                assert status in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"), (process, method.name, status)
            growth[process] = rss_mb(stack.pid(process)) - before
    stack.figures.append(f"RSS growth over {FLOOD} unparseable requests per process: "
                         + ", ".join(f"{p} {g:+.1f} MB" for p, g in growth.items()))
    assert all(g < GROWTH_LIMIT_MB for g in growth.values()), growth


def test_watching_ever_new_service_names_does_not_grow_memory(stack: Stack) -> None:
    growth = {}
    for process in SERVICES:
        with channels.channel(stack.address(process)) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            before = 0.0
            for index in range(WATCH_WARMUP + WATCHES):
                if index == WATCH_WARMUP:
                    before = rss_mb(stack.pid(process))
                name = f"{index:04d}".ljust(WATCHED_NAME_BYTES, "x")
                watch = health.Watch(health_pb2.HealthCheckRequest(service=name), timeout=CALL_TIMEOUT_S)
                assert next(watch).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
                watch.cancel()
            growth[process] = rss_mb(stack.pid(process)) - before
    stack.figures.append(f"RSS growth over {WATCHES} health watches of distinct 1 MB service names per process "
                         f"(after {WATCH_WARMUP}): "
                         + ", ".join(f"{p} {g:+.1f} MB" for p, g in growth.items()))
    assert all(g < GROWTH_LIMIT_MB for g in growth.values()), growth


def test_every_process_still_serves_and_logged_bounded_lines(stack: Stack) -> None:
    after = {}
    for process in SERVICES:
        assert stack.local.processes[process].poll() is None, f"{process} exited"
        with channels.channel(stack.address(process)) as channel:
            reply = health_pb2_grpc.HealthStub(channel).List(health_pb2.HealthListRequest(), timeout=CALL_TIMEOUT_S)
        serving = health_pb2.HealthCheckResponse.SERVING
        assert {name: s.status for name, s in reply.statuses.items()} == {
            "": serving, SERVICES[process].full_name: serving}, process
        after[process] = rss_mb(stack.pid(process))
    for log_file in (stack.root / "logs").glob("*.log"):
        lines = log_file.read_text(errors="replace").splitlines()
        longest = max((len(line) for line in lines), default=0)
        assert longest <= MAX_LOG_LINE, f"{log_file.name}: a line of {longest} characters"
        errors = [line[:300] for line in lines if "level=ERROR" in line]
        assert not errors, f"{log_file.name}: hostile input logged {len(errors)} ERROR lines, e.g. {errors[0]}"
    totals = collections.Counter[str]()
    for (_, status), count in stack.statuses.items():
        totals[status] += count
    stack.figures.insert(0, f"fuzz: {sum(totals.values())} calls over {len(CASES)} methods in {stack.fuzz_s:.0f} s "
                            f"({EXAMPLES} hypothesis examples each), statuses: {dict(sorted(totals.items()))}")
    for process in SERVICES:
        seen = {status: count for (p, status), count in sorted(stack.statuses.items()) if p == process}
        stack.figures.append(f"{process}: {sum(seen.values())} fuzz calls {seen}; RSS "
                             f"{stack.rss_before_mb[process]:.0f} MB before the fuzz, {after[process]:.0f} MB after "
                             "it and the floods")
    assert not FORBIDDEN & set(totals)
