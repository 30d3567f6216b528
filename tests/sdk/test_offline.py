"""Acting offline from a cached packet: the same actions as the edge server's Act for the same packet and
observations, the edge's refusals, and no torch in the process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_runtime import errors
from plasma import packet, signing
from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.sdk.offline import NotCached, OfflinePolicy
from plasma.sdk.packet_cache import PacketCache
from plasma.server.errors import InvalidArgument
from tests.support import policies
from tests.support.edge import TRUSTED

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_offline_runner_loads_neither_torch_nor_the_client_extra() -> None:
    probe = ("import sys, plasma.sdk.offline; "
             "print(sorted(m for m in ('torch', 'gymnasium', 'matplotlib') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True, timeout=120).stdout.strip()
    assert loaded == "[]"


def test_offline_actions_equal_the_edge_servers(tmp_path: Path, compiler: str, edge: str,
                                                signed_packet: bytes) -> None:
    packet_id = packet.read(signed_packet)[0].packet_id
    observations = policies.observations("discrete", 64, seed=7)
    with PlasmaClient(Endpoints(compiler=compiler, edge=edge), packet_cache=PacketCache(TRUSTED, tmp_path)) as client:
        client.deploy(client.download_packet(packet_id))
        served = [client.act(obs) for obs in observations]
        served_batch = client.act(observations)
    policy = OfflinePolicy.from_cache(packet_id, TRUSTED, PacketCache(TRUSTED, tmp_path))
    offline = [policy.act(obs) for obs in observations]
    assert {a.item() for a in served} == {0, 1}, "observations that all get one action would prove little"
    assert [a.shape for a in offline] == [()] * len(observations), "one discrete action is a 0-d array"
    assert [a.dtype for a in offline] == [a.dtype for a in served]
    assert [a.tolist() for a in offline] == [a.tolist() for a in served]
    assert np.array_equal(policy.act(observations), served_batch)
    assert policy.self_test is not None and policy.self_test.passed
    assert policy.manifest.packet_id == packet_id and not policy.serving_fallback


def test_offline_refuses_what_the_edge_refuses(tmp_path: Path, signed_packet: bytes) -> None:
    stranger = signing.SigningKey.generate()
    with pytest.raises(errors.Refused) as caught:
        OfflinePolicy.from_bytes(signed_packet, {stranger.key_id: stranger.public})
    assert caught.value.reason == "untrusted"
    policy = OfflinePolicy.from_bytes(signed_packet, TRUSTED)
    with pytest.raises(InvalidArgument, match="non-finite"):
        policy.act(np.array([0.0, np.nan, 0.0, 0.0]))
    with pytest.raises(InvalidArgument, match="does not fit"):
        policy.act(np.zeros(3))


def test_a_packet_not_in_the_cache_is_said_so(tmp_path: Path) -> None:
    with pytest.raises(NotCached, match="pkt-000000000000"):
        OfflinePolicy.from_cache("pkt-000000000000", TRUSTED, PacketCache(TRUSTED, tmp_path))
