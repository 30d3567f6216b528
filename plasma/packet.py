"""Instruction packet format v1: what the compiler ships and the edge runtime serves.

A zip archive:
  manifest.json         canonical JSON: what the packet is (name, version, spaces, I/O, files and their
                        sha256, normalization, quantization, parity, provenance)
  signature.json        ed25519 signature over manifest.json, naming the signing key's id
  model.onnx            kind "model": the policy graph, observation [batch, obs_dim] float32 -> action, output
  model.ort             kind "model", instead of model.onnx: the same graph in onnxruntime's ORT format (mobile)
  fallback.onnx         kind "model", optional: the fp32 graph, served where model.onnx fails its self-test
  adapter.onnx_adapter  kind "adapter": LoRA weights (onnxruntime AdapterFormat) for a base model the device holds

Since format version 2 the manifest carries a self-test: observations with fp32's reference outputs, which a
device runs through the graph with its own kernels before serving it (`SelfTest`).

`verify` is the device's check (trusted key, signature, canonical manifest, every file's hash); `read` parses
without looking at the signature, for tools. Torch-free on purpose: the edge runtime imports this module.
docs/packet-format.md describes every field.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import io
import json
import math
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from plasma import ids
from plasma.signing import ALGORITHM, SigningKey, VerifyingKey, describe
from plasma.spaces import Space, SpaceError

FORMAT_VERSION = 2
# Version 1 packets (no self-test, no fallback) are still read.
READABLE_VERSIONS = (1, 2)
MEDIA_TYPE = "application/vnd.plasma.packet+zip"
MANIFEST_FILE = "manifest.json"
SIGNATURE_FILE = "signature.json"
MODEL_FILE = "model.onnx"
# The graph in onnxruntime's ORT format, for minimal (mobile) builds that cannot parse ONNX.
MODEL_ORT_FILE = "model.ort"
ADAPTER_FILE = "adapter.onnx_adapter"
FALLBACK_FILE = "fallback.onnx"
KIND_MODEL = "model"
KIND_ADAPTER = "adapter"
INPUT_NAME = "observation"
ACTION_OUTPUT = "action"
RAW_OUTPUT = "output"
# What is signed: this prefix, then manifest.json's bytes. The prefix keeps a packet signature from being
# valid for anything else the same key might ever sign.
SIGNING_CONTEXT = b"plasma-packet-v1\n"
# Fixed timestamps make the archive's bytes depend only on its content.
_ZIP_EPOCH = (2020, 1, 1, 0, 0, 0)
# Far above any policy Plasma trains; stops a hostile archive from inflating in memory.
MAX_FILE_BYTES = 64 * 1024 * 1024
_PAYLOAD_FILE = {KIND_MODEL: MODEL_FILE, KIND_ADAPTER: ADAPTER_FILE}
_MODEL_FILES = (MODEL_FILE, MODEL_ORT_FILE)


_T = TypeVar("_T")
# A graph's inputs or outputs: [{"name": ..., "dtype": ..., "shape": [...]}, ...]
TensorList = list[dict[str, Any]]


class PacketError(ValueError):
    """A packet that cannot be served; the message says exactly what is wrong."""

    reason = "malformed"


class PacketUnsigned(PacketError):
    """The packet carries no signature."""

    reason = "unsigned"


class PacketUntrusted(PacketError):
    """Signed, but by a key the reader does not trust (or the reader trusts no key at all)."""

    reason = "untrusted"


class PacketTampered(PacketError):
    """The signature does not match the manifest, or a file does not match the signed manifest."""

    reason = "tampered"


@dataclass(frozen=True)
class FileEntry:
    """manifest["files"][i]: one payload file of the archive, as signed."""

    path: str
    sha256: str
    size_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size_bytes": self.size_bytes}


@dataclass(frozen=True)
class Tensor:
    """A named float32 tensor of fixed shape: a LoRA slot of a model, or a parameter of an adapter."""

    name: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape)}


@dataclass(frozen=True)
class BaseRef:
    """manifest["base"] of an adapter packet: the model packet whose graph the adapter plugs into."""

    packet_id: str
    name: str
    version: int
    model_sha256: str  # sha256 of the base packet's model.onnx: what the device must hold

    def to_json(self) -> dict[str, Any]:
        return {"packet_id": self.packet_id, "name": self.name, "version": self.version,
                "model_sha256": self.model_sha256}


def _checked(read: Callable[[], _T]) -> _T:
    """A space read or checked for a manifest: its SpaceError as the packet's."""
    try:
        return read()
    except SpaceError as exc:
        raise PacketError(f"manifest {exc}") from exc


def _tensor_out(array: np.ndarray) -> dict[str, Any]:
    """A small array as JSON: dtype, shape and its little-endian bytes in base64 (like plasma.common.v1.Tensor)."""
    array = np.asarray(array)
    wire = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return {"dtype": array.dtype.name, "shape": list(array.shape),
            "base64": base64.b64encode(np.ascontiguousarray(wire).tobytes()).decode()}


_SELF_TEST_DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "int64": np.dtype("<i8")}


def _tensor_in(raw: Any, where: str) -> np.ndarray:
    try:
        dtype = _SELF_TEST_DTYPES[raw["dtype"]]
        shape = tuple(int(d) for d in raw["shape"])
        data = base64.b64decode(raw["base64"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise PacketError(f"manifest {where} is not a tensor record: {exc!r}") from exc
    if any(d < 0 for d in shape) or math.prod(shape) * dtype.itemsize != len(data):
        raise PacketError(f"manifest {where}: shape {list(shape)} of {dtype.name} does not match its "
                          f"{len(data)} bytes")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


@dataclass(frozen=True, eq=False)
class SelfTest:
    """manifest["self_test"]: observations a device runs through the packet's graph (with the adapter, for an
    adapter packet) before serving it, and what fp32 answers to them. The device computes decision agreement
    as plasma.parity defines it and refuses the graph below `min_agreement`, or when its raw outputs are further
    from fp32's than plasma.parity.allowed_output_error allows for the compiler's own (`expected_output`)."""

    observations: np.ndarray  # [n, obs_dim] float32
    reference_output: np.ndarray  # [n, width] float32: fp32's raw outputs
    reference_action: np.ndarray  # [n] int64 or [n, act_dim] float32: fp32's actions
    expected_output: np.ndarray  # [n, width] float32: the packet's graph's raw outputs on the compiler's CPU
    min_agreement: float

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SelfTest):
            return NotImplemented
        return self.min_agreement == other.min_agreement and all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in ("observations", "reference_output", "reference_action", "expected_output"))

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside

    def to_json(self) -> dict[str, Any]:
        return {"observations": _tensor_out(self.observations),
                "reference_output": _tensor_out(self.reference_output),
                "reference_action": _tensor_out(self.reference_action),
                "expected_output": _tensor_out(self.expected_output), "min_agreement": self.min_agreement}

    @classmethod
    def from_json(cls, raw: Any, observation_space: Space, action_space: Space) -> SelfTest:
        if not isinstance(raw, dict):
            raise PacketError(f"manifest self_test must be an object, got {raw!r}")
        fields = {name: _tensor_in(raw.get(name), f"self_test.{name}")
                  for name in ("observations", "reference_output", "reference_action", "expected_output")}
        test = cls(**fields, min_agreement=_share(raw.get("min_agreement"), "self_test.min_agreement"))
        n = test.observations.shape[0]
        width = action_space.flat_dim
        action_shape = (n,) if action_space.kind == "discrete" else (n, width)
        expected = {"observations": (n, observation_space.flat_dim), "reference_output": (n, width),
                    "expected_output": (n, width), "reference_action": action_shape}
        for name, shape in expected.items():
            if fields[name].shape != shape:
                raise PacketError(f"manifest self_test.{name} has shape {list(fields[name].shape)}, "
                                  f"expected {list(shape)}")
        if n < 1 or not all(np.isfinite(fields[name]).all() for name in expected):
            raise PacketError("manifest self_test needs at least one observation and finite values throughout")
        return test


def _share(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise PacketError(f"manifest {where} must be a number in [0, 1], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Manifest:
    kind: str  # KIND_MODEL or KIND_ADAPTER
    packet_id: str
    name: str  # the lineage: versions increase within a name
    version: int  # >= 1, assigned by the compiler, strictly increasing per name
    created_at: str  # RFC 3339, UTC; "" in format 2, whose bytes depend only on the packet's content
    source_run_id: str  # "" in packets the compiler writes from format 2 on (its Packet record names the run)
    env_id: str  # "" when the data did not come from a Gymnasium environment
    observation_space: Space
    action_space: Space
    files: tuple[FileEntry, ...]
    opset: int = 0  # kind model: the graph's default-domain opset
    # kind model: LoRA inputs of the graph that an adapter packet may override (empty: not adaptable).
    adapter_slots: tuple[Tensor, ...] = ()
    # kind adapter: the LoRA weights it carries, its rank, and the base it needs.
    adapter_parameters: tuple[Tensor, ...] = ()
    adapter_rank: int = 0
    base: BaseRef | None = None
    # Free-form records, documented in docs/packet-format.md.
    normalization: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    # The device profile the compiler was asked for and what it chose; empty (and absent) when none was named.
    profile: dict[str, Any] = field(default_factory=dict)
    # Format 2 on: what a device checks the graph against before serving it.
    self_test: SelfTest | None = None
    format_version: int = FORMAT_VERSION

    @property
    def obs_dim(self) -> int:
        return self.observation_space.flat_dim

    @property
    def payload(self) -> FileEntry:
        """The packet's graph or adapter: model.onnx or adapter.onnx_adapter, always listed first."""
        return self.files[0]

    @property
    def has_fallback(self) -> bool:
        return any(f.path == FALLBACK_FILE for f in self.files)

    @property
    def io(self) -> tuple[TensorList, TensorList]:
        return model_io(self.observation_space, self.action_space)

    def to_json(self) -> dict[str, Any]:
        inputs, outputs = self.io
        raw: dict[str, Any] = {
            "format_version": self.format_version,
            "kind": self.kind,
            "packet_id": self.packet_id,
            "name": self.name,
            "version": self.version,
            "env_spec": {"env_id": self.env_id, "observation_space": self.observation_space.to_json(),
                         "action_space": self.action_space.to_json()},
            "io": {"inputs": inputs, "outputs": outputs},
            "files": [f.to_json() for f in self.files],
            "normalization": self.normalization,
            "quantization": self.quantization,
            "parity": self.parity,
            "versions": self.versions,
        }
        if self.self_test is not None:
            raw["self_test"] = self.self_test.to_json()
        if self.profile:  # absent rather than empty: packets compiled without a profile keep their bytes
            raw["profile"] = self.profile
        # Absent rather than empty: format 2 packets carry neither, so their bytes depend only on their content.
        if self.created_at:
            raw["created_at"] = self.created_at
        if self.source_run_id:
            raw["source_run_id"] = self.source_run_id
        if self.kind == KIND_MODEL:
            raw["model"] = {"file": self.payload.path, "opset": self.opset,
                            "adapter_slots": [t.to_json() for t in self.adapter_slots]}
        else:
            assert self.base is not None
            raw["adapter"] = {"file": ADAPTER_FILE, "rank": self.adapter_rank,
                              "parameters": [t.to_json() for t in self.adapter_parameters]}
            raw["base"] = self.base.to_json()
        return raw


@dataclass(frozen=True)
class Packet:
    """A packet that passed `verify`: its manifest, payload bytes, the key that signed it, its archive hash."""

    manifest: Manifest
    payload: bytes
    key_id: str
    sha256: str
    size_bytes: int
    fallback: bytes | None = None  # the fp32 graph, when the packet carries one


def canonical_json(value: Any) -> bytes:
    """The one byte encoding of a JSON value that Plasma signs: sorted keys, no whitespace, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def model_io(observation_space: Space, action_space: Space) -> tuple[TensorList, TensorList]:
    """The graph's inputs and outputs as the format fixes them for these spaces."""
    inputs = [{"name": INPUT_NAME, "dtype": "float32", "shape": ["batch", observation_space.flat_dim]}]
    width = action_space.flat_dim
    action: dict[str, Any]
    if action_space.kind == "discrete":
        action = {"name": ACTION_OUTPUT, "dtype": "int64", "shape": ["batch"]}
    else:
        action = {"name": ACTION_OUTPUT, "dtype": "float32", "shape": ["batch", width]}
    return inputs, [action, {"name": RAW_OUTPUT, "dtype": "float32", "shape": ["batch", width]}]


def build(
    *,
    kind: str = KIND_MODEL,
    packet_id: str,
    name: str,
    version: int,
    created_at: str = "",
    source_run_id: str = "",
    env_id: str,
    observation_space: Space,
    action_space: Space,
    payload: bytes,
    signer: SigningKey,
    opset: int = 0,
    adapter_slots: tuple[Tensor, ...] = (),
    adapter_parameters: tuple[Tensor, ...] = (),
    adapter_rank: int = 0,
    base: BaseRef | None = None,
    normalization: dict[str, Any] | None = None,
    quantization: dict[str, Any] | None = None,
    parity: dict[str, Any] | None = None,
    versions: dict[str, str] | None = None,
    profile: dict[str, Any] | None = None,
    self_test: SelfTest,
    fallback: bytes | None = None,
    model_file: str = MODEL_FILE,
    compression_level: int | None = None,
) -> bytes:
    """Writes a signed packet; the manifest's file entries (hash, size) are derived here, not passed in. An empty
    `packet_id` is derived from the content: "pkt-" and 12 hex digits of the sha256 of the manifest without its
    id, so that the same policy compiled into the same lineage position gives the same bytes. `model_file`:
    MODEL_ORT_FILE for a graph in ORT format; `compression_level`: DEFLATE level 0-9 (None: zlib's default)."""
    if kind not in _PAYLOAD_FILE:
        raise PacketError(f"kind must be {KIND_MODEL!r} or {KIND_ADAPTER!r}, got {kind!r}")
    if observation_space.kind != "box":
        raise PacketError("observation_space: packets need a box observation space")
    _checked(lambda: observation_space.check("observation_space"))
    _checked(lambda: action_space.check("action_space"))
    if (kind == KIND_ADAPTER) != (base is not None):
        raise PacketError("an adapter packet needs a base, and only an adapter packet has one")
    if fallback is not None and kind != KIND_MODEL:
        raise PacketError("only a model packet carries a fallback graph")
    if model_file not in _MODEL_FILES or (kind != KIND_MODEL and model_file != MODEL_FILE):
        raise PacketError(f"model_file must be one of {_MODEL_FILES} (kind model only), got {model_file!r}")
    contents = {_PAYLOAD_FILE[kind] if kind != KIND_MODEL else model_file: payload}
    if fallback is not None:
        contents[FALLBACK_FILE] = fallback
    manifest = Manifest(
        kind=kind, packet_id=packet_id, name=name, version=version, created_at=created_at,
        source_run_id=source_run_id, env_id=env_id, observation_space=observation_space, action_space=action_space,
        files=tuple(FileEntry(path, hashlib.sha256(data).hexdigest(), len(data)) for path, data in contents.items()),
        opset=opset, adapter_slots=adapter_slots, adapter_parameters=adapter_parameters,
        adapter_rank=adapter_rank, base=base, normalization=normalization or {}, quantization=quantization or {},
        parity=parity or {}, versions=versions or {}, profile=profile or {}, self_test=self_test,
    )
    if not packet_id:
        digest = hashlib.sha256(canonical_json(manifest.to_json())).hexdigest()
        manifest = dataclasses.replace(manifest, packet_id=f"pkt-{digest[:12]}")
    manifest_bytes = canonical_json(manifest.to_json())
    _manifest_from_json(json.loads(manifest_bytes))  # the writer never produces what the reader refuses
    return assemble(manifest_bytes, contents, sign(manifest_bytes, signer), compression_level)


def sign(manifest_bytes: bytes, signer: SigningKey) -> bytes:
    """signature.json's bytes for a manifest."""
    return canonical_json({"algorithm": ALGORITHM, "key_id": signer.key_id,
                           "signature": base64.b64encode(signer.sign(SIGNING_CONTEXT + manifest_bytes)).decode()})


def assemble(manifest_bytes: bytes, files: Mapping[str, bytes], signature: bytes | None,
             compression_level: int | None = None) -> bytes:
    """The archive itself (tests use it to build defective packets)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compresslevel=compression_level) as archive:
        _write(archive, MANIFEST_FILE, manifest_bytes)
        if signature is not None:
            _write(archive, SIGNATURE_FILE, signature)
        for path, data in files.items():
            _write(archive, path, data)
    return buffer.getvalue()


def _write(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data, compresslevel=archive.compresslevel)  # a ZipInfo does not take the archive's


def _entries(data: bytes) -> dict[str, bytes]:
    """Every entry of the archive, refusing what readers could resolve differently or that would inflate."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise PacketError(f"packet is not a zip archive: {exc}") from exc
    with archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise PacketError(f"packet archive has duplicate entries: {sorted(names)}")
        for info in infos:
            if info.file_size > MAX_FILE_BYTES:
                raise PacketError(f"{info.filename} is {info.file_size} bytes, above the {MAX_FILE_BYTES} limit")
        try:
            return {info.filename: archive.read(info) for info in infos}
        except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:  # CRC, truncation, method
            raise PacketError(f"packet archive is damaged: {exc}") from exc


def read(data: bytes) -> tuple[Manifest, bytes]:
    """Parses a packet and checks its files against the manifest, WITHOUT checking who signed it.

    For tools and tests that inspect packets; a device must use `verify`.
    """
    entries = _entries(data)
    if MANIFEST_FILE not in entries:
        raise PacketError(f"packet has no {MANIFEST_FILE}; entries: {sorted(entries)}")
    manifest = _parse_manifest(entries[MANIFEST_FILE])
    _check_files(manifest, entries)
    return manifest, entries[manifest.payload.path]


def verify(data: bytes, trusted_keys: Mapping[str, VerifyingKey]) -> Packet:
    """The device's check, in this order: signed at all, by a trusted key, signature valid over the manifest,
    manifest canonical and well formed, archive holding exactly the signed files with their signed hashes."""
    entries = _entries(data)
    if MANIFEST_FILE not in entries:
        raise PacketError(f"packet has no {MANIFEST_FILE}; entries: {sorted(entries)}")
    if SIGNATURE_FILE not in entries:
        raise PacketUnsigned(f"packet is unsigned (no {SIGNATURE_FILE}); this runtime serves only packets "
                             f"signed by a trusted key ({describe(trusted_keys)})")
    key_id, signature = _parse_signature(entries[SIGNATURE_FILE])
    if not trusted_keys:
        raise PacketUntrusted(f"packet is signed by key {key_id}, but this runtime trusts no signing keys")
    key = trusted_keys.get(key_id)
    if key is None:
        raise PacketUntrusted(f"packet is signed by key {key_id}, which is not trusted here "
                              f"(trusted: {describe(trusted_keys)})")
    manifest_bytes = entries[MANIFEST_FILE]
    if not key.verify(signature, SIGNING_CONTEXT + manifest_bytes):
        raise PacketTampered(f"signature by key {key_id} does not match {MANIFEST_FILE}: the manifest was changed "
                             "after signing, or the signature was not made with that key")
    manifest = _parse_manifest(manifest_bytes)
    _check_files(manifest, entries)
    return Packet(manifest, entries[manifest.payload.path], key_id, hashlib.sha256(data).hexdigest(), len(data),
                  fallback=entries.get(FALLBACK_FILE))


def _parse_signature(raw: bytes) -> tuple[str, bytes]:
    try:
        record = json.loads(raw)
        algorithm, key_id = record["algorithm"], record["key_id"]
        signature = base64.b64decode(record["signature"], validate=True)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, binascii.Error) as exc:
        raise PacketTampered(f"{SIGNATURE_FILE} is not a signature record: {exc!r}") from exc
    if algorithm != ALGORITHM or not isinstance(key_id, str) or len(signature) != 64:
        raise PacketTampered(f"{SIGNATURE_FILE} must hold a 64-byte {ALGORITHM} signature and a key id; got "
                             f"algorithm {algorithm!r}, key_id {key_id!r}, {len(signature)} signature bytes")
    return key_id, signature


def _parse_manifest(manifest_bytes: bytes) -> Manifest:
    try:
        raw = json.loads(manifest_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PacketError(f"{MANIFEST_FILE} is not valid JSON: {exc}") from exc
    manifest = _manifest_from_json(raw)
    if canonical_json(raw) != manifest_bytes:
        raise PacketError(f"{MANIFEST_FILE} is not in canonical form (sorted keys, no whitespace, ASCII)")
    return manifest


def _check_files(manifest: Manifest, entries: Mapping[str, bytes]) -> None:
    expected = sorted({MANIFEST_FILE, *(f.path for f in manifest.files)})
    found = sorted(set(entries) - {SIGNATURE_FILE})
    if found != expected:
        raise PacketTampered(f"packet must hold exactly the signed files {expected}, found {found}")
    for entry in manifest.files:
        data = entries[entry.path]
        if len(data) != entry.size_bytes:
            raise PacketTampered(f"{entry.path} is {len(data)} bytes, the signed manifest says {entry.size_bytes}")
        actual = hashlib.sha256(data).hexdigest()
        if actual != entry.sha256:
            raise PacketTampered(f"{entry.path} sha256 is {actual}, the signed manifest says {entry.sha256}")


def _tensors(raw: Any, where: str) -> tuple[Tensor, ...]:
    if not isinstance(raw, list):
        raise PacketError(f"manifest {where} must be a list of {{name, shape}}, got {raw!r}")
    try:
        result = tuple(Tensor(name=str(t["name"]), shape=tuple(int(d) for d in t["shape"])) for t in raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise PacketError(f"manifest {where} is malformed: {exc!r}") from exc
    if any(d < 1 for t in result for d in t.shape) or len({t.name for t in result}) != len(result):
        raise PacketError(f"manifest {where}: names must be unique and dimensions positive, got {raw!r}")
    return result


def _manifest_from_json(raw: Any) -> Manifest:
    if not isinstance(raw, dict):
        raise PacketError(f"{MANIFEST_FILE} must be a JSON object")
    version = raw.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise PacketError(f"packet format_version {version!r} is not supported; "
                          f"this reader reads {', '.join(map(str, READABLE_VERSIONS))}")
    required = {"kind", "packet_id", "name", "version", "env_spec", "io", "files"}
    if version == 1:
        required |= {"created_at", "source_run_id"}
    missing = sorted(required - set(raw))
    if missing:
        raise PacketError(f"{MANIFEST_FILE} lacks {', '.join(missing)}")
    kind = raw["kind"]
    if kind not in _PAYLOAD_FILE:
        raise PacketError(f"manifest kind {kind!r} is not {KIND_MODEL!r} or {KIND_ADAPTER!r}")
    try:  # what a runtime logs and keys its versions by follows the API's rule (plasma.ids)
        ids.check_id("manifest packet_id", str(raw["packet_id"]))
        ids.check_name("manifest name", str(raw["name"]))
    except ids.InvalidId as exc:
        raise PacketError(str(exc)) from exc
    packet_version = raw["version"]
    if not isinstance(packet_version, int) or isinstance(packet_version, bool) or packet_version < 1:
        raise PacketError(f"manifest version must be an integer >= 1, got {packet_version!r}")
    env = raw["env_spec"]
    if not isinstance(env, dict):
        raise PacketError(f"{MANIFEST_FILE}: env_spec must be an object")
    observation_space = _checked(lambda: Space.from_json(env.get("observation_space"), "env_spec.observation_space"))
    action_space = _checked(lambda: Space.from_json(env.get("action_space"), "env_spec.action_space"))
    if observation_space.kind != "box":
        raise PacketError("env_spec.observation_space: packets need a box observation space")
    inputs, outputs = model_io(observation_space, action_space)
    io_raw = raw["io"]
    if not isinstance(io_raw, dict) or io_raw.get("inputs") != inputs or io_raw.get("outputs") != outputs:
        raise PacketError(f"manifest io {io_raw!r} does not match the spaces, expected "
                          f"{{'inputs': {inputs}, 'outputs': {outputs}}}")
    try:
        files = tuple(FileEntry(path=str(f["path"]), sha256=str(f["sha256"]), size_bytes=int(f["size_bytes"]))
                      for f in raw["files"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PacketError(f"manifest files entry is malformed: {exc!r}") from exc
    allowed = [[_PAYLOAD_FILE[kind]]]
    if kind == KIND_MODEL and version >= 2:
        allowed += [[MODEL_FILE, FALLBACK_FILE], [MODEL_ORT_FILE]]
    if [f.path for f in files] not in allowed:
        raise PacketError(f"a format {version} {kind} packet carries {' or '.join(map(repr, allowed))}, "
                          f"manifest files list {[f.path for f in files]}")
    if version >= 2:
        if "self_test" not in raw:
            raise PacketError(f"{MANIFEST_FILE} lacks self_test, which format {version} requires")
        fields_v2: dict[str, Any] = {"self_test": SelfTest.from_json(raw["self_test"], observation_space,
                                                                     action_space)}
    else:
        fields_v2 = {}
    fields: dict[str, Any] = {}
    try:
        if kind == KIND_MODEL:
            model = raw["model"]
            if model["file"] != files[0].path:
                raise PacketError(f"manifest model.file is {model['file']!r}, its files list {files[0].path!r}")
            fields = {"opset": int(model["opset"]),
                      "adapter_slots": _tensors(model.get("adapter_slots", []), "model.adapter_slots")}
        else:
            adapter, base = raw["adapter"], raw["base"]
            if adapter["file"] != ADAPTER_FILE:
                raise PacketError(f"manifest adapter.file is {adapter['file']!r}, v1 requires {ADAPTER_FILE!r}")
            fields = {"adapter_rank": int(adapter["rank"]),
                      "adapter_parameters": _tensors(adapter["parameters"], "adapter.parameters"),
                      "base": BaseRef(packet_id=str(base["packet_id"]), name=str(base["name"]),
                                      version=int(base["version"]), model_sha256=str(base["model_sha256"]))}
            if not fields["adapter_parameters"]:
                raise PacketError("manifest adapter.parameters is empty: an adapter must carry weights")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PacketError):
            raise
        raise PacketError(f"manifest {kind} section is malformed: {exc!r}") from exc
    return Manifest(
        kind=kind, packet_id=str(raw["packet_id"]), name=str(raw["name"]), version=packet_version,
        created_at=str(raw.get("created_at", "")), source_run_id=str(raw.get("source_run_id", "")),
        env_id=str(env.get("env_id", "")),
        observation_space=observation_space, action_space=action_space, files=files,
        normalization=dict(raw.get("normalization", {})), quantization=dict(raw.get("quantization", {})),
        parity=dict(raw.get("parity", {})), versions=dict(raw.get("versions", {})),
        profile=dict(raw.get("profile", {})), format_version=version,
        **fields, **fields_v2,
    )
