"""The simulator's world model, fetched with ExportWorldModel, for algorithms that differentiate through it."""

from __future__ import annotations

import tempfile
from pathlib import Path

import grpc

from plasma.core import blobs, grpc_client
from plasma.simulator.v1 import simulator_pb2, simulator_pb2_grpc

# The simulator's own archive reader and model class: the trainer needs the exact network to backpropagate
# through, and importing it keeps one definition of the format.
from services.simulator import model_archive
from services.simulator.world_model import EnsembleWorldModel


def fetch(channel: grpc.Channel, model_id: str) -> EnsembleWorldModel:
    """Streams the model's archive, checks it against its header and loads it (into memory; the
    unpacked files live only as long as the call)."""
    stub = simulator_pb2_grpc.SimulatorServiceStub(channel)
    stream = stub.ExportWorldModel(simulator_pb2.ExportWorldModelRequest(model_id=model_id),
                                   timeout=grpc_client.STREAM_DEADLINE_S)
    first = next(stream)
    if first.WhichOneof("part") != "header":
        raise blobs.BlobError("ExportWorldModel must start with a header")
    data = blobs.assemble(first.header, (response.chunk for response in stream))
    with tempfile.TemporaryDirectory(prefix="plasma-world-model-") as scratch:
        return model_archive.load(data, Path(scratch))
