"""Packets for the edge tests, compiled once per session from real LoRA policies (tests/compiler/policies.py)."""

from __future__ import annotations

import pytest

from tests.compiler import policies


@pytest.fixture(scope="session")
def discrete() -> tuple[bytes, bytes]:
    """(CartPole-like packet, its fp32 model)."""
    return policies.make_packet("discrete", seed=0)


@pytest.fixture(scope="session")
def other_discrete() -> bytes:
    return policies.make_packet("discrete", seed=1)[0]


@pytest.fixture(scope="session")
def box() -> bytes:
    return policies.make_packet("box", seed=0)[0]
