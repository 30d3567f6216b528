"""The same seed on the same machine gives the same packet: two fresh stacks signing with the same key, one
workflow each, the same bytes (ed25519 signatures are deterministic, so a different key is the only thing that
may change them).

Runs the quick-check recipe: reproducibility does not depend on how much the workflow learns."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from plasma import blobs, signing
from plasma.sdk import recipes
from plasma.sdk.client import PlasmaClient
from plasma.sdk.local import LocalStack
from plasma.sdk.workflow import train_and_deploy

pytestmark = pytest.mark.pipeline


def _packet(root: Path, seed: int, signing_key: Path) -> bytes:
    # LocalStack keeps its compiler's key in <root>/keys and makes one there when there is none.
    (root / "keys").mkdir(parents=True)
    shutil.copy2(signing_key, root / "keys" / signing.DEV_KEY_FILE)
    cfg = recipes.workflow("quick-check", seed=seed, eval_episodes=1)
    with LocalStack(root) as stack, PlasmaClient(stack.endpoints) as client:
        summary = train_and_deploy(client, cfg)
        return client.download_packet(summary.packet_id)


def test_the_same_seed_gives_the_same_packet_bytes(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    signing.load_or_create(key)
    first = _packet(tmp_path / "first", seed=4, signing_key=key)
    second = _packet(tmp_path / "second", seed=4, signing_key=key)
    assert blobs.sha256_hex(first) == blobs.sha256_hex(second)
    assert first == second
