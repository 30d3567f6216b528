"""Packet format v1 (plasma.packet): round trip, determinism, and a precise error for every defect."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from typing import Any

import pytest

from plasma import packet

INF = float("inf")
CARTPOLE_OBS = packet.Space(kind="box", shape=(4,), low=(-4.8, -INF, -0.418, -INF), high=(4.8, INF, 0.418, INF))
MODEL = b"not really onnx, the format does not look inside" * 20


def build(**overrides: Any) -> bytes:
    fields: dict[str, Any] = dict(
        packet_id="pkt-0123456789ab", name="CartPole-v1-run-x", created_at="2026-01-02T03:04:05Z",
        source_run_id="run-x", env_id="CartPole-v1", observation_space=CARTPOLE_OBS,
        action_space=packet.Space(kind="discrete", n=2), model_onnx=MODEL, opset=18,
        normalization={"kind": "standardize", "in_graph": True, "obs_mean": [0.0] * 4, "obs_std": [1.0] * 4},
        quantization={"method": "dynamic", "weights": "int8"},
        parity={"agreement": 0.99, "num_observations": 256}, versions={"onnxruntime": "1.32.0"},
    )
    return packet.build(**{**fields, **overrides})


def rewrite(data: bytes, edit_manifest: Callable[[dict], None] | None = None,
            files: dict[str, bytes | None] | None = None) -> bytes:
    """The packet with its manifest edited and/or files replaced (None removes one)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    if edit_manifest is not None:
        manifest = json.loads(contents["manifest.json"])
        edit_manifest(manifest)
        contents["manifest.json"] = json.dumps(manifest).encode()
    for name, value in (files or {}).items():
        if value is None:
            contents.pop(name)
        else:
            contents[name] = value
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in contents.items():
            archive.writestr(name, value)
    return buffer.getvalue()


def test_round_trip_keeps_every_field() -> None:
    manifest, model = packet.read(build())
    assert model == MODEL
    assert manifest.format_version == 1
    assert (manifest.packet_id, manifest.name, manifest.source_run_id) == ("pkt-0123456789ab", "CartPole-v1-run-x",
                                                                           "run-x")
    assert manifest.observation_space == CARTPOLE_OBS  # infinite bounds survive JSON
    assert manifest.action_space == packet.Space(kind="discrete", n=2)
    assert manifest.obs_dim == 4
    assert manifest.model.size_bytes == len(MODEL) and manifest.model.opset == 18
    assert manifest.model.inputs == [{"name": "observation", "dtype": "float32", "shape": ["batch", 4]}]
    assert [o["name"] for o in manifest.model.outputs] == ["action", "output"]
    assert manifest.parity["agreement"] == 0.99 and manifest.normalization["in_graph"] is True


def test_box_actions_are_float_vectors() -> None:
    action = packet.Space(kind="box", shape=(2,), low=(-1.0, -2.0), high=(1.0, 2.0))
    manifest, _ = packet.read(build(action_space=action))
    assert manifest.model.outputs[0] == {"name": "action", "dtype": "float32", "shape": ["batch", 2]}


def test_bytes_depend_only_on_content() -> None:
    assert build() == build()
    assert build() != build(name="other")


def test_manifest_is_strict_json() -> None:
    with zipfile.ZipFile(io.BytesIO(build())) as archive:
        text = archive.read("manifest.json").decode()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK not a zip", "not a zip archive"),
        (rewrite(build(), files={"model.onnx": MODEL[:-1] + b"?"}), "sha256"),
        (rewrite(build(), files={"model.onnx": MODEL + b"!"}), "bytes, manifest says"),
        (rewrite(build(), files={"model.onnx": None}), "exactly"),
        (rewrite(build(), files={"extra.bin": b"x"}), "exactly"),
        (rewrite(build(), files={"manifest.json": b"{"}), "not valid JSON"),
        (rewrite(build(), lambda m: m.update(format_version=2)), "format_version 2 is not supported"),
        (rewrite(build(), lambda m: m.pop("created_at")), "lacks created_at"),
        (rewrite(build(), lambda m: m["env_spec"]["observation_space"].update(kind="cube")), "observation_space"),
        (rewrite(build(), lambda m: m["env_spec"]["observation_space"].update(low=[0, 0])), "low and high"),
        (rewrite(build(), lambda m: m["model"]["inputs"][0].update(name="obs")), "does not match"),
        (rewrite(build(), lambda m: m["model"].update(file="other.onnx")), "model.file"),
        (rewrite(build(), lambda m: m["model"].pop("sha256")), "model entry is malformed"),
    ],
    ids=["not-zip", "model-hash", "model-size", "missing-model", "extra-file", "bad-json", "version",
         "missing-field", "bad-space", "bounds", "io-names", "model-file", "model-entry"],
)
def test_defects_raise_packet_error_saying_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(packet.PacketError, match=message):
        packet.read(data)


def test_duplicate_entries_are_refused() -> None:
    buffer = io.BytesIO(build())
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("model.onnx", b"a second model")
    with pytest.raises(packet.PacketError, match="exactly"):
        packet.read(buffer.getvalue())


def test_build_refuses_a_discrete_observation_space() -> None:
    with pytest.raises(packet.PacketError, match="box observation"):
        build(observation_space=packet.Space(kind="discrete", n=3))


def test_packet_module_does_not_import_torch() -> None:
    code = "import sys, plasma.packet; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
