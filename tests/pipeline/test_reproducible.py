"""The same seed on the same machine gives the same packet: two fresh stacks, one workflow each, the same bytes.

Runs the quick-check recipe: reproducibility does not depend on how much the workflow learns."""

from __future__ import annotations

from pathlib import Path

import pytest

from plasma import blobs
from plasma.sdk import recipes
from plasma.sdk.client import PlasmaClient
from plasma.sdk.local import LocalStack
from plasma.sdk.workflow import train_and_deploy

pytestmark = pytest.mark.pipeline


def _packet(root: Path, seed: int) -> bytes:
    cfg = recipes.workflow("quick-check", seed=seed, eval_episodes=1)
    with LocalStack(root) as stack, PlasmaClient(stack.endpoints) as client:
        summary = train_and_deploy(client, cfg)
        return client.download_packet(summary.packet_id)


def test_the_same_seed_gives_the_same_packet_bytes(tmp_path: Path) -> None:
    first, second = _packet(tmp_path / "first", seed=4), _packet(tmp_path / "second", seed=4)
    assert blobs.sha256_hex(first) == blobs.sha256_hex(second)
    assert first == second
