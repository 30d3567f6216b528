"""Signed packets for the edge tests, compiled once per session from real LoRA policies (tests/compiler/policies.py)."""

from __future__ import annotations

import pytest

from tests.support import policies


@pytest.fixture(scope="session")
def discrete() -> tuple[bytes, bytes]:
    """(CartPole-like packet "CartPole-v1-test" v1, its fp32 model)."""
    return policies.make_packet("discrete", seed=0, version=1)


@pytest.fixture(scope="session")
def other_discrete() -> bytes:
    """Another policy of the same lineage, v2."""
    return policies.make_packet("discrete", seed=1, version=2)[0]


@pytest.fixture(scope="session")
def box() -> bytes:
    return policies.make_packet("box", seed=0, version=1)[0]


@pytest.fixture(scope="session")
def adaptable() -> bytes:
    """An adaptable model packet ("adaptable" v1): int8 base, LoRA weights as overridable inputs."""
    return policies.make_packet("discrete", seed=0, version=1, adaptable=True, name="adaptable")[0]


@pytest.fixture(scope="session")
def adapter(adaptable: bytes) -> bytes:
    """An adapter-only packet ("adaptable" v2) for `adaptable`, changing some of its decisions."""
    return policies.make_adapter_packet(adaptable, adapter_seed=5, version=2)[0]
