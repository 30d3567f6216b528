"""The four real services on port 0, each with metrics and tracing on, driven once from a real world model to a
served packet: every service's /metrics moved with the right labels, and the whole deployment is one trace, from
the client through the trainer into the simulator, the compiler into the trainer and simulator, and on to the edge.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from edge_runtime import server as edge_server
from edge_runtime.config import Config as EdgeConfig
from plasma import blobs, signing, tensors
from plasma.compiler.v1 import compiler_pb2, compiler_pb2_grpc
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.server.observability import Observability
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from services.compiler import server as compiler_server
from services.compiler.config import Config as CompilerConfig
from services.simulator import server as simulator_server
from services.simulator.config import Config as SimulatorConfig
from services.trainer import server as trainer_server
from services.trainer.config import Config as TrainerConfig
from tests.conftest import rpc_error, running
from tests.observability.telemetry import Samples, observed, provider, rpc, scrape, service_of, value
from tests.support.edge import load
from tests.support.training import TINY_TRAIN, small_cartpole_model

pytestmark = pytest.mark.slow

T = 300.0
SIMULATOR = "plasma.simulator.v1.SimulatorService"
TRAINER = "plasma.trainer.v1.TrainerService"
COMPILER = "plasma.compiler.v1.CompilerService"
EDGE = "plasma.edge.v1.EdgeRuntimeService"
NO_RUN = "run-0123456789ab"
DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "plasma.json"


@dataclass
class Deployed:
    observability: dict[str, Observability]
    spans: InMemorySpanExporter
    root: ReadableSpan | None
    run: trainer_pb2.Run
    packet: compiler_pb2.Packet
    during_training: Samples  # the trainer's /metrics once the run reported its first progress
    simulated_paths: tuple[float, float]  # the simulator's Simulate path count before and after 3 paths


def _edge(config: EdgeConfig, observability: Observability) -> tuple[grpc.Server, int, object]:
    built = edge_server.build(config, observability)
    return built.server, built.port, built.health


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    root_dir: Path = tmp_path_factory.mktemp("observed")
    spans = InMemorySpanExporter()
    observability = {name: observed(name, spans) for name in ("simulator", "trainer", "compiler", "edge")}
    client_traces = provider("client", spans)
    client = Observability("client", tracer_provider=client_traces)
    tracer = client_traces.get_tracer("tests")
    with ExitStack() as stack:
        sim = stack.enter_context(running(lambda: simulator_server.create_server(
            SimulatorConfig(address="127.0.0.1:0", store_dir=root_dir / "simulator"), observability["simulator"]),
            simulator_server.SERVICE_NAME))
        trainer = stack.enter_context(running(lambda: trainer_server.create_server(
            TrainerConfig(address="127.0.0.1:0", simulator_address=sim, store_dir=root_dir / "trainer"),
            observability=observability["trainer"]), trainer_server.SERVICE_NAME))
        compiler = stack.enter_context(running(lambda: compiler_server.create_server(
            CompilerConfig(address="127.0.0.1:0", trainer_address=trainer, simulator_address=sim,
                           store_dir=root_dir / "compiler"), observability=observability["compiler"]),
            compiler_server.SERVICE_NAME))
        channels = {name: stack.enter_context(client.channel(grpc.insecure_channel(address)))
                    for name, address in (("simulator", sim), ("trainer", trainer), ("compiler", compiler))}
        simulator_stub = simulator_pb2_grpc.SimulatorServiceStub(channels["simulator"])
        trainer_stub = trainer_pb2_grpc.TrainerServiceStub(channels["trainer"])
        compiler_stub = compiler_pb2_grpc.CompilerServiceStub(channels["compiler"])
        key = compiler_stub.GetSigningKey(compiler_pb2.GetSigningKeyRequest(), timeout=T)
        edge_config = EdgeConfig(address="127.0.0.1:0", store_dir=root_dir / "edge",
                                 trusted_keys={key.key_id: signing.VerifyingKey(key.public_key)})
        edge = stack.enter_context(running(lambda: _edge(edge_config, observability["edge"]),
                                           edge_server.SERVICE_NAME))
        edge_stub = edge_pb2_grpc.EdgeRuntimeServiceStub(stack.enter_context(
            client.channel(grpc.insecure_channel(edge))))

        with tracer.start_as_current_span("deploy"):
            model_id = small_cartpole_model(channels["simulator"])
            during_training: Samples = {}
            run = None
            for response in trainer_stub.Train(
                    trainer_pb2.TrainRequest(model_id=model_id, config=TINY_TRAIN), timeout=T):
                if response.HasField("progress") and not during_training:
                    during_training = scrape(observability["trainer"])
                if response.HasField("run"):
                    run = response.run
            assert run is not None and run.state == trainer_pb2.RUN_STATE_SUCCEEDED, run
            packet = list(compiler_stub.Compile(compiler_pb2.CompileRequest(run_id=run.run_id), timeout=T))[-1].packet
            downloaded = list(compiler_stub.DownloadPacket(
                compiler_pb2.DownloadPacketRequest(packet_id=packet.packet_id), timeout=T))
            load(edge_stub, blobs.assemble(downloaded[0].header, (r.chunk for r in downloaded[1:])))
            for _ in range(3):
                edge_stub.Act(edge_pb2.ActRequest(observation=tensors.to_proto(np.zeros(4, np.float32))), timeout=T)
        # Calls that fail, each with its own status.
        rpc_error(lambda: trainer_stub.GetRun(trainer_pb2.GetRunRequest(run_id=NO_RUN), timeout=T))
        rpc_error(lambda: list(compiler_stub.Compile(compiler_pb2.CompileRequest(run_id=NO_RUN), timeout=T)))
        rpc_error(lambda: edge_stub.Act(edge_pb2.ActRequest(observation=tensors.to_proto(np.zeros(3, np.float32))),
                                        timeout=T))
        before = value(scrape(observability["simulator"]), "plasma_simulator_phantom_paths_total", source="simulate")
        simulate = simulator_pb2.SimulateRequest(model_id=model_id, num_paths=3, horizon=5, seed=1)
        simulate.policy.random.SetInParent()
        assert len(list(simulator_stub.Simulate(simulate, timeout=T))) == 3
        after = value(scrape(observability["simulator"]), "plasma_simulator_phantom_paths_total", source="simulate")
        roots = [s for s in spans.get_finished_spans() if s.name == "deploy"]
        yield Deployed(observability, spans, roots[0] if roots else None, run, packet, during_training,
                       (before, after))
    for each in observability.values():
        each.stop()


def _handled(deployed: Deployed, service: str, full_service: str, method: str, code: str = "OK",
             kind: str = "unary") -> float:
    return value(scrape(deployed.observability[service]), "grpc_server_handled_total",
                 **rpc(full_service, method, kind), grpc_code=code)


def test_every_service_counts_its_calls_by_method_and_status(deployed: Deployed) -> None:
    assert _handled(deployed, "simulator", SIMULATOR, "FitWorldModel", kind="server_stream") == 1
    assert _handled(deployed, "simulator", SIMULATOR, "GetWorldModel") >= 2  # the trainer's and the compiler's
    assert _handled(deployed, "simulator", SIMULATOR, "StartSimulation") >= 1
    assert _handled(deployed, "trainer", TRAINER, "Train", kind="server_stream") == 1
    assert _handled(deployed, "trainer", TRAINER, "GetRun") == 1  # the compiler's
    assert _handled(deployed, "trainer", TRAINER, "GetRun", "NOT_FOUND") == 2  # the client's and the compiler's
    assert _handled(deployed, "trainer", TRAINER, "ExportPolicy", kind="server_stream") == 1
    assert _handled(deployed, "compiler", COMPILER, "Compile", kind="server_stream") == 1
    assert _handled(deployed, "compiler", COMPILER, "Compile", "NOT_FOUND", kind="server_stream") == 1
    assert _handled(deployed, "edge", EDGE, "LoadPacket", kind="client_stream") == 1
    assert _handled(deployed, "edge", EDGE, "Act") == 3
    assert _handled(deployed, "edge", EDGE, "Act", "INVALID_ARGUMENT") == 1
    edge = scrape(deployed.observability["edge"])
    assert value(edge, "grpc_server_started_total", **rpc(EDGE, "Act")) == 4
    assert value(edge, "grpc_server_handling_seconds_count", **rpc(EDGE, "Act")) == 4
    assert value(edge, "grpc_server_handling_seconds_bucket", **rpc(EDGE, "Act"), le="+Inf") == 4
    # The edge's own figures are still there beside the common ones.
    assert value(edge, "plasma_edge_requests_total", outcome="ok") == 3
    assert value(edge, "plasma_edge_packet_version") == deployed.packet.version


def test_the_simulator_reports_its_simulations_and_phantom_paths(deployed: Deployed) -> None:
    samples = scrape(deployed.observability["simulator"])
    assert value(samples, "plasma_simulator_simulations", state="succeeded") >= 1
    assert value(samples, "plasma_simulator_simulations", state="running") == 0
    assert value(samples, "plasma_simulator_phantom_paths_total", source="simulation") >= TINY_TRAIN.base_paths
    before, after = deployed.simulated_paths
    assert after - before == 3


def test_the_trainer_reports_its_runs_and_a_running_runs_progress(deployed: Deployed) -> None:
    labels = {"run_id": deployed.run.run_id, "phase": "base"}
    during = deployed.during_training
    assert value(during, "plasma_trainer_runs", state="running") == 1
    assert value(during, "plasma_trainer_run_round", **labels) == 0
    assert value(during, "plasma_trainer_run_total_rounds", **labels) == TINY_TRAIN.adapter_rounds
    assert value(during, "plasma_trainer_run_loss", **labels) > 0
    assert value(during, "plasma_trainer_run_phantom_paths", **labels) >= TINY_TRAIN.base_paths
    after = scrape(deployed.observability["trainer"])
    assert value(after, "plasma_trainer_runs", state="succeeded") == 1
    assert value(after, "plasma_trainer_runs", state="running") == 0
    assert not [key for key in after if key[0] == "plasma_trainer_run_loss"]  # an ended run's series are gone


def test_the_compiler_reports_compiles_by_outcome_and_packet_sizes(deployed: Deployed) -> None:
    samples = scrape(deployed.observability["compiler"])
    precision = compiler_pb2.Precision.Name(deployed.packet.precision).removeprefix("PRECISION_").lower()
    assert value(samples, "plasma_compiler_compiles_total", outcome="succeeded", precision=precision) == 1
    assert value(samples, "plasma_compiler_compiles_total", outcome="failed", precision="") == 1
    assert value(samples, "plasma_compiler_packet_bytes_count") == 1
    assert value(samples, "plasma_compiler_packet_bytes_sum") == deployed.packet.size_bytes


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


def _server_spans(spans: list[ReadableSpan], service: str, method: str) -> list[ReadableSpan]:
    return [s for s in spans if s.kind == trace.SpanKind.SERVER and s.name == f"{service}/{method}"]


def test_one_trace_runs_from_the_client_through_every_service(deployed: Deployed) -> None:
    assert deployed.root is not None
    trace_id = deployed.root.context.trace_id
    spans = [s for s in deployed.spans.get_finished_spans() if s.context.trace_id == trace_id]
    by_id = {s.context.span_id: s for s in spans}
    assert {service_of(s) for s in spans} == {"plasma-client", "plasma-simulator", "plasma-trainer",
                                              "plasma-compiler", "plasma-edge"}

    def lineage(span: ReadableSpan) -> list[tuple[str, str, str]]:
        return [(service_of(s), s.kind.name, s.name) for s in [span, *_ancestors(span, by_id)]]

    # Simulations the run's training thread started and followed: children of the Train call, under the client's.
    train = ("plasma-trainer", "SERVER", f"{TRAINER}/Train")
    for method in ("StartSimulation", "Subscribe"):
        found = _server_spans(spans, SIMULATOR, method)
        assert found, method
        for span in found:
            chain = lineage(span)
            assert chain[1] == ("plasma-trainer", "CLIENT", f"{SIMULATOR}/{method}")
            assert train in chain and chain[-1] == ("plasma-client", "INTERNAL", "deploy"), chain
    # The compiler's calls into the trainer and the simulator: children of Compile.
    compile_ = ("plasma-compiler", "SERVER", f"{COMPILER}/Compile")
    for service, method in ((TRAINER, "GetRun"), (TRAINER, "ExportPolicy"), (SIMULATOR, "GetWorldModel")):
        chains = [lineage(span) for span in _server_spans(spans, service, method)]
        assert any(compile_ in chain and chain[1][:2] == ("plasma-compiler", "CLIENT") for chain in chains), chains
    # And the packet into the edge.
    (loaded,) = _server_spans(spans, EDGE, "LoadPacket")
    assert lineage(loaded)[1:] == [("plasma-client", "CLIENT", f"{EDGE}/LoadPacket"),
                                   ("plasma-client", "INTERNAL", "deploy")]
    assert loaded.attributes is not None and loaded.attributes["rpc.grpc.status_code"] == 0


def test_failed_calls_carry_their_status_into_their_spans(deployed: Deployed) -> None:
    spans = deployed.spans.get_finished_spans()
    not_found = [s for s in _server_spans(list(spans), TRAINER, "GetRun")
                 if s.attributes is not None and s.attributes["rpc.grpc.status_code"] == 5]
    assert len(not_found) == 2
    by_id = {s.context.span_id: s for s in spans}
    # One of them is the compiler's, inside the failed Compile, which ended NOT_FOUND too.
    (inside,) = [s for s in not_found if any(a.name == f"{COMPILER}/Compile" for a in _ancestors(s, by_id))]
    (failed_compile,) = [a for a in _ancestors(inside, by_id)
                         if a.name == f"{COMPILER}/Compile" and a.kind == trace.SpanKind.SERVER]
    assert failed_compile.attributes is not None and failed_compile.attributes["rpc.grpc.status_code"] == 5


def test_the_grafana_dashboard_reads_only_figures_the_services_export(deployed: Deployed) -> None:
    exported = {name for observability in deployed.observability.values() for name, _ in scrape(observability)}
    exported |= {name for name, _ in deployed.during_training}  # a running run's series
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    read = {name for expr in expressions for name in re.findall(r"\b(?:grpc_server|plasma)_[a-z_]+", expr)}
    assert len(expressions) >= 15 and read
    assert read <= exported, read - exported
