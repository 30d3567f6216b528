"""One base per world model, one adapter per task, end to end: the trainer adapts run A's base for another
task (run B), the compiler ships A as an ADAPTABLE packet and B as an adapter-only packet for it, and an edge
runtime that holds A serves B's policy."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from edge_runtime import server as edge_server
from edge_runtime.config import Config as EdgeConfig
from plasma import blobs, packet, signing, tensors
from plasma.common.v1 import common_pb2
from plasma.compiler.v1 import compiler_pb2, compiler_pb2_grpc
from plasma.edge.v1 import edge_pb2, edge_pb2_grpc
from plasma.mbrl.algorithms.base import mlp_weights_of
from plasma.simulator.v1 import task_pb2
from plasma.trainer.v1 import trainer_pb2, trainer_pb2_grpc
from services.common import bundle, wire
from services.compiler import server as compiler_server
from services.compiler.config import Config as CompilerConfig
from tests.conftest import running
from tests.support.edge import load
from tests.support.training import TINY_TRAIN, T

pytestmark = pytest.mark.slow


def _train(stub: trainer_pb2_grpc.TrainerServiceStub, request: trainer_pb2.TrainRequest) -> trainer_pb2.Run:
    run = list(stub.Train(request, timeout=300))[-1].run
    assert run.state == trainer_pb2.RUN_STATE_SUCCEEDED, run.error
    return run


def _compile(stub: compiler_pb2_grpc.CompilerServiceStub, **request: object) -> tuple[compiler_pb2.Packet, bytes]:
    record = list(stub.Compile(compiler_pb2.CompileRequest(**request), timeout=T))[-1].packet
    responses = list(stub.DownloadPacket(compiler_pb2.DownloadPacketRequest(packet_id=record.packet_id), timeout=T))
    return record, blobs.receive(responses, "stream")


def _files(data: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist()


def test_an_adapter_run_ships_as_an_adapter_packet_for_its_base_runs_packet(
    services: dict[str, str], model_id: str, tmp_path: Path
) -> None:
    with grpc.insecure_channel(services["trainer"]) as channel:
        trainer = trainer_pb2_grpc.TrainerServiceStub(channel)
        base_run = _train(trainer, trainer_pb2.TrainRequest(model_id=model_id, config=TINY_TRAIN))
        task = task_pb2.TaskSpec(name="learned-heads", learned=task_pb2.LearnedObjective())
        adapter_config = trainer_pb2.TrainConfig()
        adapter_config.CopyFrom(TINY_TRAIN)
        adapter_config.seed = 11
        adapter_run = _train(trainer, trainer_pb2.TrainRequest(model_id=model_id, config=adapter_config, task=task,
                                                                base_run_id=base_run.run_id))
        stream = trainer.ExportPolicy(trainer_pb2.ExportPolicyRequest(run_id=adapter_run.run_id), timeout=T)
        header = next(stream).header
        adapted = bundle.unpack(blobs.assemble(header, (m.chunk for m in stream)))

    compiler_config = CompilerConfig(address="127.0.0.1:0", trainer_address=services["trainer"],
                                     simulator_address=services["simulator"], store_dir=tmp_path / "compiler")
    with running(lambda: compiler_server.create_server(compiler_config), compiler_server.SERVICE_NAME) as address, \
            grpc.insecure_channel(address) as channel:
        compiler = compiler_pb2_grpc.CompilerServiceStub(channel)
        key = compiler.GetSigningKey(compiler_pb2.GetSigningKeyRequest(), timeout=T)
        base_packet, base_data = _compile(compiler, run_id=base_run.run_id, name="cartpole",
                                          kind=common_pb2.PACKET_KIND_ADAPTABLE)
        adapter_packet, adapter_data = _compile(compiler, run_id=adapter_run.run_id,
                                                kind=common_pb2.PACKET_KIND_ADAPTER,
                                                base_packet_id=base_packet.packet_id)
    assert adapter_packet.kind == common_pb2.PACKET_KIND_ADAPTER
    assert adapter_packet.base_weights_sha256 == base_packet.base_weights_sha256
    assert packet.read(adapter_data)[0].base.packet_id == base_packet.packet_id
    assert packet.MODEL_FILE in _files(base_data) and packet.MODEL_FILE not in _files(adapter_data)

    edge_config = EdgeConfig(address="127.0.0.1:0", store_dir=tmp_path / "edge",
                             trusted_keys={key.key_id: signing.VerifyingKey(key.public_key)})
    with running(lambda: edge_server.create_server(edge_config), edge_server.SERVICE_NAME) as address, \
            grpc.insecure_channel(address) as channel:
        edge = edge_pb2_grpc.EdgeRuntimeServiceStub(channel)
        load(edge, base_data)
        assert load(edge, adapter_data).packet_id == adapter_packet.packet_id
        observations = adapted.parity_observations
        reply = edge.Act(edge_pb2.ActRequest(observation=tensors.to_proto(observations)), timeout=T)
    served = tensors.from_proto(reply.action, "action")

    # The edge acts like the adapter run's merged policy, which the run also reports as Run.policy.
    merged = adapted.adapted_network().merge_and_unload().eval()
    with torch.no_grad():
        expected = merged.act(torch.from_numpy(observations)).numpy()
    assert np.mean(served == expected) >= 0.9
    reported, exported = wire.mlp_from_proto(adapter_run.policy), mlp_weights_of(adapted.adapted_network())
    for ours, theirs in zip(reported.weights, exported.weights, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
