"""Packet format v2 (plasma.packet): round trip, signatures, determinism, self-test and fallback, v1 still read,
and a precise error for every defect."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from plasma import packet, signing
from plasma.spaces import Space

INF = float("inf")
CARTPOLE_OBS = Space(kind="box", shape=(4,), low=(-4.8, -INF, -0.418, -INF), high=(4.8, INF, 0.418, INF))
MODEL = b"not really onnx, the format does not look inside" * 20
KEY = signing.SigningKey.generate()
OTHER_KEY = signing.SigningKey.generate()
TRUSTED = {KEY.key_id: KEY.public}
_OBS = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
SELF_TEST = packet.SelfTest(observations=_OBS, reference_output=np.array([[1, 0], [0, 1], [2, -2]], np.float32),
                            reference_action=np.array([0, 1, 0], np.int64),
                            expected_output=np.array([[0.98, 0], [0, 1.01], [2, -2]], np.float32), min_agreement=0.95)


def build(**overrides: Any) -> bytes:
    fields: dict[str, Any] = dict(
        packet_id="pkt-0123456789ab", name="CartPole-v1", version=3, created_at="2026-01-02T03:04:05Z",
        source_run_id="run-x", env_id="CartPole-v1", observation_space=CARTPOLE_OBS,
        action_space=Space(kind="discrete", n=2), payload=MODEL, opset=18, signer=KEY,
        normalization={"kind": "standardize", "in_graph": True, "obs_mean": [0.0] * 4, "obs_std": [1.0] * 4},
        quantization={"method": "dynamic", "weights": "int8"},
        parity={"agreement": 0.99, "num_observations": 256}, versions={"onnxruntime": "1.32.0"},
        self_test=SELF_TEST,
    )
    return packet.build(**{**fields, **overrides})


def build_adapter(**overrides: Any) -> bytes:
    return build(kind=packet.KIND_ADAPTER, opset=0, payload=b"adapter weights", adapter_rank=8,
                 adapter_parameters=(packet.Tensor("lora_a_0", (4, 8)), packet.Tensor("lora_b_0", (8, 64))),
                 base=packet.BaseRef(packet_id="pkt-base00000000", name="CartPole-v1", version=1,
                                     model_sha256="ab" * 32), **overrides)


def entries(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rewrite(data: bytes, edit_manifest: Callable[[dict], None] | None = None,
            files: dict[str, bytes | None] | None = None, resign: signing.SigningKey | None = None) -> bytes:
    """The packet with its manifest edited and/or files replaced (None removes one); signed again with
    `resign` if given, else the old signature.json stays as it was."""
    contents = entries(data)
    if edit_manifest is not None:
        manifest = json.loads(contents["manifest.json"])
        edit_manifest(manifest)
        contents["manifest.json"] = packet.canonical_json(manifest)
    if resign is not None:
        contents["signature.json"] = packet.sign(contents["manifest.json"], resign)
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
    verified = packet.verify(build(), TRUSTED)
    manifest = verified.manifest
    assert verified.payload == MODEL and verified.key_id == KEY.key_id
    assert manifest.format_version == 2 and manifest.kind == packet.KIND_MODEL
    assert (manifest.packet_id, manifest.name, manifest.version) == ("pkt-0123456789ab", "CartPole-v1", 3)
    assert manifest.source_run_id == "run-x"
    assert manifest.observation_space == CARTPOLE_OBS  # infinite bounds survive JSON
    assert manifest.action_space == Space(kind="discrete", n=2)
    assert manifest.obs_dim == 4 and manifest.opset == 18
    assert manifest.files == (packet.FileEntry("model.onnx", packet.hashlib.sha256(MODEL).hexdigest(), len(MODEL)),)
    inputs, outputs = manifest.io
    assert inputs == [{"name": "observation", "dtype": "float32", "shape": ["batch", 4]}]
    assert [o["name"] for o in outputs] == ["action", "output"]
    assert manifest.parity["agreement"] == 0.99 and manifest.normalization["in_graph"] is True
    assert manifest.self_test == SELF_TEST and manifest.self_test.reference_action.dtype == np.int64
    assert not manifest.has_fallback and verified.fallback is None
    assert packet.read(build()) == (manifest, MODEL)


def test_a_fallback_graph_is_signed_like_the_model() -> None:
    fallback = b"the fp32 graph" * 10
    verified = packet.verify(build(fallback=fallback), TRUSTED)
    assert verified.fallback == fallback and verified.payload == MODEL and verified.manifest.has_fallback
    assert [f.path for f in verified.manifest.files] == ["model.onnx", "fallback.onnx"]
    with pytest.raises(packet.PacketTampered, match=r"fallback\.onnx sha256 is"):
        packet.verify(rewrite(build(fallback=fallback), files={"fallback.onnx": fallback[::-1]}), TRUSTED)
    with pytest.raises(packet.PacketError, match="only a model packet carries a fallback"):
        build_adapter(fallback=fallback)


def test_format_1_packets_without_a_self_test_are_still_read() -> None:
    def as_v1(manifest: dict) -> None:
        manifest.update(format_version=1)
        manifest.pop("self_test")

    manifest = packet.verify(rewrite(build(), as_v1, resign=KEY), TRUSTED).manifest
    assert manifest.format_version == 1 and manifest.self_test is None


def test_adapter_packets_name_their_base() -> None:
    manifest = packet.verify(build_adapter(), TRUSTED).manifest
    assert manifest.kind == packet.KIND_ADAPTER and manifest.payload.path == "adapter.onnx_adapter"
    assert manifest.base == packet.BaseRef("pkt-base00000000", "CartPole-v1", 1, "ab" * 32)
    assert manifest.adapter_rank == 8 and [t.name for t in manifest.adapter_parameters] == ["lora_a_0", "lora_b_0"]


def test_box_actions_are_float_vectors() -> None:
    action = Space(kind="box", shape=(2,), low=(-1.0, -2.0), high=(1.0, 2.0))
    outputs = np.zeros((3, 2), np.float32)
    box_test = packet.SelfTest(observations=_OBS, reference_output=outputs, reference_action=outputs,
                               expected_output=outputs, min_agreement=0.95)
    manifest, _ = packet.read(build(action_space=action, self_test=box_test))
    assert manifest.self_test == box_test
    assert manifest.io[1][0] == {"name": "action", "dtype": "float32", "shape": ["batch", 2]}


def test_bytes_depend_only_on_content() -> None:
    assert build() == build()  # ed25519 signatures are deterministic
    assert build() != build(name="other")


def test_an_empty_packet_id_is_derived_from_the_content() -> None:
    bare = {"packet_id": "", "created_at": "", "source_run_id": ""}
    first, again = build(**bare), build(**bare)
    manifest = packet.verify(first, TRUSTED).manifest
    assert first == again and manifest.packet_id.startswith("pkt-") and len(manifest.packet_id) == 16
    assert "created_at" not in json.loads(entries(first)["manifest.json"])
    assert packet.verify(build(**bare, payload=MODEL + b"!"), TRUSTED).manifest.packet_id != manifest.packet_id


def test_manifest_is_canonical_strict_json() -> None:
    text = entries(build())["manifest.json"]
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert text == packet.canonical_json(json.loads(text))


def test_unsigned_untrusted_and_tampered_packets_are_refused_each_with_its_own_error() -> None:
    with pytest.raises(packet.PacketUnsigned, match="unsigned"):
        packet.verify(rewrite(build(), files={"signature.json": None}), TRUSTED)
    with pytest.raises(packet.PacketUntrusted, match=f"key {OTHER_KEY.key_id}, which is not trusted"):
        packet.verify(build(signer=OTHER_KEY), TRUSTED)
    with pytest.raises(packet.PacketUntrusted, match="trusts no signing keys"):
        packet.verify(build(), {})
    # The manifest changed after signing (here: a higher version, the attack monotonic versions stop).
    with pytest.raises(packet.PacketTampered, match=r"does not match manifest\.json"):
        packet.verify(rewrite(build(), lambda m: m.update(version=99)), TRUSTED)
    # The model swapped under an intact manifest and signature.
    with pytest.raises(packet.PacketTampered, match="sha256 is"):
        packet.verify(rewrite(build(), files={"model.onnx": MODEL[:-1] + b"?"}), TRUSTED)
    with pytest.raises(packet.PacketTampered, match="exactly the signed files"):
        packet.verify(rewrite(build(), files={"extra.bin": b"x"}), TRUSTED)
    with pytest.raises(packet.PacketTampered, match="signature record"):
        packet.verify(rewrite(build(), files={"signature.json": b"{}"}), TRUSTED)
    # A valid signature by a trusted key, but over another manifest: still tampered.
    other = entries(build(version=4))["signature.json"]
    with pytest.raises(packet.PacketTampered, match="does not match"):
        packet.verify(rewrite(build(), files={"signature.json": other}), TRUSTED)
    assert [c.reason for c in (packet.PacketUnsigned, packet.PacketUntrusted, packet.PacketTampered,
                               packet.PacketError)] == ["unsigned", "untrusted", "tampered", "malformed"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK not a zip", "not a zip archive"),
        (rewrite(build(), files={"model.onnx": MODEL + b"!"}), "bytes, the signed manifest says"),
        (rewrite(build(), files={"model.onnx": None}), "exactly"),
        (rewrite(build(), files={"manifest.json": b"{"}, resign=None), "does not match"),
        (rewrite(build(), lambda m: m.update(format_version=3), resign=KEY), "format_version 3 is not supported"),
        (rewrite(build(), lambda m: m.pop("self_test"), resign=KEY), "lacks self_test"),
        (rewrite(build(), lambda m: m["self_test"]["observations"].update(shape=[4, 3]), resign=KEY),
         r"self_test.observations has shape \[4, 3\], expected \[4, 4\]"),
        (rewrite(build(), lambda m: m["self_test"]["reference_output"].update(shape=[3, 3]), resign=KEY),
         "does not match its 24 bytes"),
        (rewrite(build(), lambda m: m["self_test"].update(min_agreement=1.5), resign=KEY), "min_agreement"),
        (rewrite(build(), lambda m: (m.update(format_version=1), m.pop("self_test"), m.pop("created_at")),
                 resign=KEY), "lacks created_at"),
        (rewrite(build(), lambda m: m.update(version=0), resign=KEY), "version must be an integer >= 1"),
        (rewrite(build(), lambda m: m.update(version="3"), resign=KEY), "version must be an integer"),
        (rewrite(build(), lambda m: m.update(kind="firmware"), resign=KEY), "kind 'firmware'"),
        (rewrite(build(), lambda m: m["env_spec"]["observation_space"].update(kind="cube"), resign=KEY),
         "observation_space"),
        (rewrite(build(), lambda m: m["env_spec"]["observation_space"].update(low=[0, 0]), resign=KEY),
         "low and high"),
        (rewrite(build(), lambda m: m["io"]["inputs"][0].update(name="obs"), resign=KEY), "does not match"),
        (rewrite(build(), lambda m: m["model"].update(file="other.onnx"), resign=KEY), "model.file"),
        (rewrite(build(), lambda m: m["files"][0].pop("sha256"), resign=KEY), "files entry is malformed"),
        (rewrite(build_adapter(), lambda m: m.pop("base"), resign=KEY), "adapter section is malformed"),
    ],
    ids=["not-zip", "model-size", "missing-model", "manifest-replaced", "version", "no-self-test",
         "self-test-shape", "self-test-bytes", "self-test-gate", "missing-field",
         "packet-version-0", "packet-version-string", "kind", "bad-space", "bounds", "io-names", "model-file",
         "file-entry", "adapter-without-base"],
)
def test_defects_raise_packet_error_saying_what_is_wrong(data: bytes, message: str) -> None:
    with pytest.raises(packet.PacketError, match=message):
        packet.verify(data, TRUSTED)


def test_a_signed_but_non_canonical_manifest_is_refused() -> None:
    contents = entries(build())
    pretty = json.dumps(json.loads(contents["manifest.json"]), indent=2, sort_keys=True).encode()
    data = rewrite(build(), files={"manifest.json": pretty, "signature.json": packet.sign(pretty, KEY)})
    with pytest.raises(packet.PacketError, match="canonical"):
        packet.verify(data, TRUSTED)


def test_duplicate_entries_are_refused() -> None:
    buffer = io.BytesIO(build())
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("model.onnx", b"a second model")
    with pytest.raises(packet.PacketError, match="duplicate"):
        packet.verify(buffer.getvalue(), TRUSTED)


def test_build_refuses_a_discrete_observation_space_and_a_base_on_a_model() -> None:
    with pytest.raises(packet.PacketError, match="box observation"):
        build(observation_space=Space(kind="discrete", n=3))
    with pytest.raises(packet.PacketError, match="only an adapter packet"):
        build(base=packet.BaseRef("pkt-x", "n", 1, "00" * 32))


def test_keys_load_from_pem_raw_and_base64(tmp_path: Path) -> None:
    key, created = signing.load_or_create(tmp_path / "k.pem")
    assert created and (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    again, created = signing.load_or_create(tmp_path / "k.pem")
    assert not created and again.key_id == key.key_id
    (tmp_path / "k.pub").write_text(key.public.base64 + "\n")
    trusted = signing.parse_trusted_keys(f"{tmp_path / 'k.pub'}, {OTHER_KEY.public.base64}")
    assert sorted(trusted) == sorted([key.key_id, OTHER_KEY.key_id])
    assert signing.parse_trusted_keys(str(tmp_path / "k.pem")) == {key.key_id: key.public}  # public half of a private
    with pytest.raises(signing.SigningKeyError, match="neither an existing key file"):
        signing.parse_trusted_keys("/no/such/key.pem")
    with pytest.raises(signing.SigningKeyError, match="32 bytes"):
        signing.parse_trusted_keys("c2hvcnQ=")


def test_packet_module_does_not_import_torch() -> None:
    code = "import sys, plasma.packet; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


# RFC 8032 section 7.1, tests 1 and 2: (public key, message, signature).
RFC8032 = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe"
     "24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302a"
     "eeb00d291612bb0c00"),
]


@pytest.mark.parametrize(("public", "message", "signature"), RFC8032)
def test_both_verifiers_agree_with_rfc8032(public: str, message: str, signature: str) -> None:
    lib = signing._libcrypto()
    assert lib is not None, "Python's libcrypto was not found: the edge would fall back to cryptography"
    key, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    flipped = sig[:-1] + bytes([sig[-1] ^ 1])
    for verify in (lambda k, s, m: signing._verify_openssl(lib, k, s, m), signing._verify_cryptography):
        assert verify(key, sig, msg) and not verify(key, flipped, msg) and not verify(key, sig, msg + b"!")


def test_openssl_verification_matches_cryptography_on_random_tampering() -> None:
    import random

    lib = signing._libcrypto()
    assert lib is not None
    rng = random.Random(0)
    for _ in range(200):
        message = rng.randbytes(rng.randrange(0, 300))
        signature = KEY.sign(message)
        if rng.random() < 0.5:
            where = rng.randrange(len(signature))
            signature = signature[:where] + bytes([signature[where] ^ (1 << rng.randrange(8))]) + signature[where + 1:]
        expected = signing._verify_cryptography(KEY.public.raw, signature, message)
        assert signing._verify_openssl(lib, KEY.public.raw, signature, message) == expected


def test_a_public_pem_parses_without_cryptography(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = KEY._private.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    assert signing.public_key_from_bytes(pem, "pem") == KEY.public


def test_verifying_a_packet_does_not_import_cryptography() -> None:
    data = build()
    code = ("import sys, plasma.packet, plasma.signing; "
            f"keys = plasma.signing.parse_trusted_keys({KEY.public.base64!r}); "
            f"plasma.packet.verify(bytes.fromhex({data.hex()!r}), keys); "
            "sys.exit('cryptography' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_dev_key_env_wires_a_compiler_and_an_edge_to_one_key(tmp_path: Path) -> None:
    env = signing.dev_key_env(tmp_path / "keys")
    key = signing.SigningKey.from_file(Path(env["PLASMA_COMPILER_SIGNING_KEY"]))
    assert signing.parse_trusted_keys(env["PLASMA_EDGE_TRUSTED_KEYS"]) == {key.key_id: key.public}
    assert signing.dev_key_env(tmp_path / "keys") == env  # the same key on the next start
