"""Instruction packet format v1: what the compiler ships and the edge runtime serves.

A zip archive with two files:
  manifest.json  what the packet is: spaces, model I/O, normalization, quantization, parity, provenance
  model.onnx     the int8 policy graph: observation [batch, obs_dim] float32 -> action, output

Torch-free on purpose (zipfile, json, hashlib, numpy only): the edge runtime reads packets with it.
docs/packet-format.md describes every field.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MEDIA_TYPE = "application/vnd.plasma.packet+zip"
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"
INPUT_NAME = "observation"
ACTION_OUTPUT = "action"
RAW_OUTPUT = "output"
# Fixed timestamps make the archive's bytes depend only on its content.
_ZIP_EPOCH = (2020, 1, 1, 0, 0, 0)
# Far above any policy Plasma trains; stops a hostile archive from inflating in memory.
MAX_FILE_BYTES = 64 * 1024 * 1024


# A graph's inputs or outputs: [{"name": ..., "dtype": ..., "shape": [...]}, ...]
TensorList = list[dict[str, Any]]


class PacketError(ValueError):
    """A packet that cannot be served; the message says exactly what is wrong."""


@dataclass(frozen=True)
class Space:
    """An observation or action space: "discrete" (n choices) or "box" (shape, per-element bounds)."""

    kind: str
    shape: tuple[int, ...] = ()
    n: int = 0
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()

    @property
    def flat_dim(self) -> int:
        return self.n if self.kind == "discrete" else int(np.prod(self.shape, dtype=np.int64))

    def to_json(self) -> dict[str, Any]:
        if self.kind == "discrete":
            return {"kind": "discrete", "n": self.n}
        # JSON has no infinity: unbounded elements are written as the strings "inf" / "-inf".
        return {"kind": "box", "shape": list(self.shape), "low": [_bound_out(v) for v in self.low],
                "high": [_bound_out(v) for v in self.high]}

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Space:
        if not isinstance(raw, dict) or raw.get("kind") not in ("discrete", "box"):
            raise PacketError(f"manifest {where}: expected an object with kind 'discrete' or 'box', "
                              f"got {raw!r}")
        try:
            if raw["kind"] == "discrete":
                space = cls(kind="discrete", n=int(raw["n"]))
            else:
                space = cls(kind="box", shape=tuple(int(d) for d in raw["shape"]),
                            low=tuple(_bound_in(v) for v in raw["low"]),
                            high=tuple(_bound_in(v) for v in raw["high"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise PacketError(f"manifest {where} is malformed: {exc!r}") from exc
        space.check(where)
        return space

    def check(self, where: str) -> None:
        if self.kind == "discrete" and self.n < 1:
            raise PacketError(f"{where}: a discrete space needs n >= 1, got {self.n}")
        if self.kind == "box":
            if not self.shape or any(d < 1 for d in self.shape):
                raise PacketError(f"{where}: a box needs a non-empty shape of positive sizes, "
                                  f"got {list(self.shape)}")
            if not len(self.low) == len(self.high) == self.flat_dim:
                raise PacketError(f"{where}: low and high need {self.flat_dim} entries each, "
                                  f"got {len(self.low)} and {len(self.high)}")


def _bound_out(value: float) -> float | str:
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _bound_in(value: float | str) -> float:
    number = float(value)
    if math.isnan(number):
        raise ValueError("a bound cannot be NaN")
    return number


@dataclass(frozen=True)
class ModelEntry:
    """manifest["model"]: the ONNX file, its hash, and its I/O contract (fixed by the format)."""

    file: str
    sha256: str
    size_bytes: int
    opset: int
    inputs: TensorList
    outputs: TensorList


@dataclass(frozen=True)
class Manifest:
    packet_id: str
    name: str
    created_at: str  # RFC 3339, UTC
    source_run_id: str
    env_id: str  # "" when the data did not come from a Gymnasium environment
    observation_space: Space
    action_space: Space
    model: ModelEntry
    # Free-form records, documented in docs/packet-format.md.
    normalization: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def obs_dim(self) -> int:
        return self.observation_space.flat_dim

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "packet_id": self.packet_id,
            "name": self.name,
            "created_at": self.created_at,
            "source_run_id": self.source_run_id,
            "env_spec": {"env_id": self.env_id, "observation_space": self.observation_space.to_json(),
                         "action_space": self.action_space.to_json()},
            "model": {"file": self.model.file, "sha256": self.model.sha256,
                      "size_bytes": self.model.size_bytes, "opset": self.model.opset,
                      "inputs": self.model.inputs, "outputs": self.model.outputs},
            "normalization": self.normalization,
            "quantization": self.quantization,
            "parity": self.parity,
            "versions": self.versions,
        }


def model_io(observation_space: Space, action_space: Space) -> tuple[TensorList, TensorList]:
    """The graph's inputs and outputs as the format fixes them for these spaces."""
    inputs = [{"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", observation_space.flat_dim]}]
    width = action_space.flat_dim
    if action_space.kind == "discrete":
        action = {"name": ACTION_OUTPUT, "dtype": "int64", "shape": ["batch"]}
    else:
        action = {"name": ACTION_OUTPUT, "dtype": "float32", "shape": ["batch", width]}
    return inputs, [action, {"name": RAW_OUTPUT, "dtype": "float32", "shape": ["batch", width]}]


def build(
    *,
    packet_id: str,
    name: str,
    created_at: str,
    source_run_id: str,
    env_id: str,
    observation_space: Space,
    action_space: Space,
    model_onnx: bytes,
    opset: int,
    normalization: dict[str, Any],
    quantization: dict[str, Any],
    parity: dict[str, Any],
    versions: dict[str, str],
) -> bytes:
    """Writes a packet; the manifest's model entry (hash, size, I/O) is derived here, not passed in."""
    if observation_space.kind != "box":
        raise PacketError("observation_space: packets need a box observation space")
    observation_space.check("observation_space")
    action_space.check("action_space")
    inputs, outputs = model_io(observation_space, action_space)
    manifest = Manifest(
        packet_id=packet_id, name=name, created_at=created_at, source_run_id=source_run_id, env_id=env_id,
        observation_space=observation_space, action_space=action_space,
        model=ModelEntry(file=MODEL_FILE, sha256=hashlib.sha256(model_onnx).hexdigest(),
                         size_bytes=len(model_onnx), opset=opset, inputs=inputs, outputs=outputs),
        normalization=normalization, quantization=quantization, parity=parity, versions=versions,
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        _write(archive, MANIFEST_FILE, json.dumps(manifest.to_json(), indent=2, sort_keys=True).encode())
        _write(archive, MODEL_FILE, model_onnx)
    return buffer.getvalue()


def _write(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def read(data: bytes) -> tuple[Manifest, bytes]:
    """Parses and verifies a packet: format version, manifest fields, model hash and size."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise PacketError(f"packet is not a zip archive: {exc}") from exc
    with archive:
        names = [info.filename for info in archive.infolist()]
        expected = sorted({MANIFEST_FILE, MODEL_FILE})
        if sorted(names) != expected:  # also refuses duplicate entries, which readers resolve differently
            raise PacketError(f"packet must hold exactly {expected}, found {sorted(names)}")
        infos = archive.infolist()
        for info in infos:
            if info.file_size > MAX_FILE_BYTES:
                raise PacketError(f"{info.filename} is {info.file_size} bytes, "
                                  f"above the {MAX_FILE_BYTES} limit")
        try:
            manifest_bytes = archive.read(MANIFEST_FILE)
            model_bytes = archive.read(MODEL_FILE)
        except (zipfile.BadZipFile, OSError) as exc:  # CRC mismatch, truncated entry
            raise PacketError(f"packet archive is damaged: {exc}") from exc
    try:
        raw = json.loads(manifest_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PacketError(f"{MANIFEST_FILE} is not valid JSON: {exc}") from exc
    manifest = _manifest_from_json(raw)
    if manifest.model.size_bytes != len(model_bytes):
        raise PacketError(f"{MODEL_FILE} is {len(model_bytes)} bytes, "
                          f"manifest says {manifest.model.size_bytes}")
    actual = hashlib.sha256(model_bytes).hexdigest()
    if actual != manifest.model.sha256:
        raise PacketError(f"{MODEL_FILE} sha256 is {actual}, manifest says {manifest.model.sha256}")
    return manifest, model_bytes


def _manifest_from_json(raw: Any) -> Manifest:
    if not isinstance(raw, dict):
        raise PacketError(f"{MANIFEST_FILE} must be a JSON object")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise PacketError(f"packet format_version {version!r} is not supported; "
                          f"this reader reads {FORMAT_VERSION}")
    missing = sorted({"packet_id", "name", "created_at", "source_run_id", "env_spec", "model"} - set(raw))
    if missing:
        raise PacketError(f"{MANIFEST_FILE} lacks {', '.join(missing)}")
    env, model = raw["env_spec"], raw["model"]
    if not isinstance(env, dict) or not isinstance(model, dict):
        raise PacketError(f"{MANIFEST_FILE}: env_spec and model must be objects")
    observation_space = Space.from_json(env.get("observation_space"), "env_spec.observation_space")
    action_space = Space.from_json(env.get("action_space"), "env_spec.action_space")
    if observation_space.kind != "box":
        raise PacketError("env_spec.observation_space: packets need a box observation space")
    try:
        entry = ModelEntry(file=str(model["file"]), sha256=str(model["sha256"]),
                           size_bytes=int(model["size_bytes"]), opset=int(model["opset"]),
                           inputs=list(model["inputs"]), outputs=list(model["outputs"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise PacketError(f"manifest model entry is malformed: {exc!r}") from exc
    if entry.file != MODEL_FILE:
        raise PacketError(f"manifest model.file is {entry.file!r}, format v1 requires {MODEL_FILE!r}")
    inputs, outputs = model_io(observation_space, action_space)
    if entry.inputs != inputs or entry.outputs != outputs:
        raise PacketError(f"manifest model I/O {entry.inputs} -> {entry.outputs} does not match the spaces, "
                          f"expected {inputs} -> {outputs}")
    return Manifest(
        packet_id=str(raw["packet_id"]), name=str(raw["name"]), created_at=str(raw["created_at"]),
        source_run_id=str(raw["source_run_id"]), env_id=str(env.get("env_id", "")),
        observation_space=observation_space, action_space=action_space, model=entry,
        normalization=dict(raw.get("normalization", {})), quantization=dict(raw.get("quantization", {})),
        parity=dict(raw.get("parity", {})), versions=dict(raw.get("versions", {})), format_version=version,
    )
