"""What other services fetch from the simulator: a world model (ExportWorldModel) and a dataset's transitions
(ExportDataset), each streamed as a header then chunks and checked against the header."""

from __future__ import annotations

import tempfile
from pathlib import Path

import grpc

from plasma import blobs, channels

# The simulator's own archive reader and model class: a caller needs the exact network to run or
# differentiate through, and importing it keeps one definition of the format.
from plasma.mbrl.models import archive
from plasma.mbrl.models.ensemble import EnsembleWorldModel
from plasma.mbrl.types import Transitions
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc
from services.common import transitions_archive


def fetch_model(channel: grpc.Channel, model_id: str) -> EnsembleWorldModel:
    """Streams the model's archive, checks it against its header and loads it (into memory; the
    unpacked files live only as long as the call)."""
    stub = simulator_pb2_grpc.SimulatorServiceStub(channel)
    stream = stub.ExportWorldModel(simulator_pb2.ExportWorldModelRequest(model_id=model_id),
                                   timeout=channels.STREAM_DEADLINE_S)
    data = blobs.receive(stream, "ExportWorldModel")
    with tempfile.TemporaryDirectory(prefix="plasma-world-model-") as scratch:
        return archive.load(data, Path(scratch))


def fetch_model_record(channel: grpc.Channel, model_id: str) -> simulator_pb2.WorldModel:
    stub = simulator_pb2_grpc.SimulatorServiceStub(channel)
    return stub.GetWorldModel(simulator_pb2.GetWorldModelRequest(model_id=model_id),
                              timeout=channels.UNARY_DEADLINE_S).model


def fetch_transitions(channel: grpc.Channel, dataset_id: str) -> Transitions:
    stub = simulator_pb2_grpc.SimulatorServiceStub(channel)
    stream = stub.ExportDataset(simulator_pb2.ExportDatasetRequest(dataset_id=dataset_id),
                                timeout=channels.STREAM_DEADLINE_S)
    return transitions_archive.load(blobs.receive(stream, "ExportDataset"))
