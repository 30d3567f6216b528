"""Durable storage of datasets and world models on the local filesystem.

Layout (every object is immutable and written atomically under a fresh id):
  <root>/datasets/<dataset_id>/dataset.json    Dataset message (JSON)
  <root>/datasets/<dataset_id>/transitions.npz arrays of `Transitions`
  <root>/models/<model_id>/model.json          WorldModel message (JSON)
  <root>/models/<model_id>/weights/            whatever the world model's `save` writes
  <root>/staging/<upload_id>/                  batches of an upload in progress (fsync'd before each ack);
                                               emptied when the store opens, since no upload survives a restart

Datasets are versioned by name: a saved dataset gets version 1 + the highest stored version of its name, so
that an append (parent_dataset_id set) is version n + 1 of the name it extends. A fresh dataset under a name
that exists (collecting CartPole-v1 again) continues the numbering with an empty parent.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from google.protobuf import json_format

from plasma import files, ids
from plasma.mbrl.types import Transitions
from plasma.server.errors import NotFound
from plasma.simulator.v1 import simulator_pb2
from plasma.spaces import EnvSpec
from services.common import transitions_archive


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class SimulatorStore:
    def __init__(self, root: Path) -> None:
        self.datasets_dir = root / "datasets"
        self.models_dir = root / "models"
        self.staging_dir = root / "staging"
        for directory in (self.datasets_dir, self.models_dir):
            directory.mkdir(parents=True, exist_ok=True)
            files.remove_stale_temporaries(directory)
        shutil.rmtree(self.staging_dir, ignore_errors=True)
        self.staging_dir.mkdir(parents=True)
        # Choosing a version number and saving under it is one step for concurrent appends.
        self._version_lock = threading.Lock()

    # Datasets

    def save_dataset(self, dataset: simulator_pb2.Dataset, transitions: Transitions) -> simulator_pb2.Dataset:
        """Stores `dataset` (name, parent and origin set by the caller) as the next version of its name;
        returns it with `version` filled in."""

        def fill(tmp: Path) -> None:
            (tmp / "transitions.npz").write_bytes(transitions_archive.pack(transitions))
            (tmp / "dataset.json").write_text(json_format.MessageToJson(dataset))

        with self._version_lock:
            dataset.version = 1 + max((d.version for d in self.list_datasets(dataset.name)), default=0)
            files.write_dir_atomic(self.datasets_dir / ids.check_id("dataset_id", dataset.dataset_id), fill)
        return dataset

    def dataset(self, dataset_id: str) -> simulator_pb2.Dataset:
        path = self._existing(self.datasets_dir, dataset_id, "dataset") / "dataset.json"
        return json_format.Parse(path.read_text(), simulator_pb2.Dataset())

    def transitions(self, dataset_id: str) -> tuple[EnvSpec, Transitions]:
        dataset = self.dataset(dataset_id)
        transitions = transitions_archive.load(self.transitions_file(dataset_id).read_bytes())
        return EnvSpec.from_proto(dataset.env_spec), transitions

    def transitions_file(self, dataset_id: str) -> Path:
        """The dataset's stored archive (transitions_archive format)."""
        return self._existing(self.datasets_dir, dataset_id, "dataset") / "transitions.npz"

    def list_datasets(self, name: str = "") -> list[simulator_pb2.Dataset]:
        """All datasets, or only the versions of `name`, oldest first."""
        datasets = (self.dataset(p.name) for p in self._ids(self.datasets_dir))
        return sorted(
            (d for d in datasets if not name or d.name == name),
            key=lambda d: (d.create_time.ToNanoseconds(), d.version),
        )

    def new_staging_dir(self) -> Path:
        """An empty directory for one upload's batches; remove it with `shutil.rmtree` when done."""
        path = self.staging_dir / new_id("up")
        path.mkdir()
        files.fsync_dir(self.staging_dir)
        return path

    # World models

    def save_model(self, model: simulator_pb2.WorldModel, write_weights: Callable[[Path], None]) -> None:
        def fill(tmp: Path) -> None:
            write_weights(tmp / "weights")
            (tmp / "model.json").write_text(json_format.MessageToJson(model))

        files.write_dir_atomic(self.models_dir / ids.check_id("model_id", model.model_id), fill)

    def model(self, model_id: str) -> simulator_pb2.WorldModel:
        path = self._existing(self.models_dir, model_id, "world model") / "model.json"
        return json_format.Parse(path.read_text(), simulator_pb2.WorldModel())

    def model_weights_dir(self, model_id: str) -> Path:
        return self._existing(self.models_dir, model_id, "world model") / "weights"

    def list_models(self) -> list[simulator_pb2.WorldModel]:
        return sorted(
            (self.model(p.name) for p in self._ids(self.models_dir)),
            key=lambda m: m.create_time.ToNanoseconds(),
        )

    @staticmethod
    def _ids(directory: Path) -> list[Path]:
        # Not the temporaries (.<id>.*.tmp) of an interrupted write.
        return [p for p in directory.iterdir() if p.is_dir() and ids.is_valid_id(p.name)]

    @staticmethod
    def _existing(directory: Path, object_id: str, kind: str) -> Path:
        # The servicers check ids where requests come in; this second check keeps any other caller's id (too
        # long, a separator, a leading dot) from reaching the filesystem.
        path = directory / ids.check_id(f"{kind} id", object_id)
        if not path.is_dir():
            raise NotFound(f"{kind} {object_id!r} does not exist; list them with the List RPC")
        return path
