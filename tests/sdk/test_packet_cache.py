"""The local packet cache: packets kept by id, verified by hash and signature on the way in and out; a damaged
or tampered entry is removed, never served; download_packet fills it and answers from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from plasma import packet, signing
from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.sdk.packet_cache import PacketCache, default_root
from plasma.server.settings import ConfigError
from tests.support import policies
from tests.support.edge import TRUSTED


def _id(data: bytes) -> str:
    return packet.read(data)[0].packet_id


def test_a_stored_packet_comes_back_verified(tmp_path: Path, signed_packet: bytes) -> None:
    cache = PacketCache(TRUSTED, tmp_path)
    assert cache.get(_id(signed_packet)) is None
    cache.put(signed_packet)
    cached = PacketCache(TRUSTED, tmp_path).get(_id(signed_packet))
    assert cached is not None
    assert cached.data == signed_packet
    assert cached.verified.key_id == policies.TEST_KEY.key_id


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "another packet under this id"])
def test_a_damaged_or_tampered_entry_is_removed_and_not_served(tmp_path: Path, signed_packet: bytes,
                                                               damage: str) -> None:
    cache = PacketCache(TRUSTED, tmp_path)
    cache.put(signed_packet)
    archive = tmp_path / _id(signed_packet) / "packet.zip"
    data = bytearray(archive.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 0x01
    elif damage == "truncate":
        data = data[: len(data) - 100]
    else:  # a validly signed packet, and its hash recorded beside it: only its id gives it away
        other = policies.make_packet("discrete", seed=0, version=2)[0]
        data = bytearray(other)
        (tmp_path / _id(signed_packet) / "sha256").write_text(packet.verify(other, TRUSTED).sha256)
    archive.write_bytes(bytes(data))
    assert cache.get(_id(signed_packet)) is None
    assert not (tmp_path / _id(signed_packet)).exists(), "the bad entry was kept"


def test_a_packet_signed_by_an_untrusted_key_is_not_stored(tmp_path: Path) -> None:
    stranger = signing.SigningKey.generate()
    data = policies.make_packet("discrete", seed=0, version=1, signer=stranger)[0]
    with pytest.raises(packet.PacketUntrusted):
        PacketCache(TRUSTED, tmp_path).put(data)
    assert list(tmp_path.iterdir()) == []


def test_ids_that_are_not_file_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="packet_id"):
        PacketCache(TRUSTED, tmp_path).get("../../etc")


def test_from_env_reads_the_root_and_needs_trusted_keys(tmp_path: Path) -> None:
    env = {"PLASMA_PACKET_CACHE": str(tmp_path / "cache"), "PLASMA_EDGE_TRUSTED_KEYS": policies.TEST_KEY.public.base64}
    cache = PacketCache.from_env(env)
    assert cache.root == tmp_path / "cache"
    assert cache.trusted_keys == TRUSTED
    with pytest.raises(ConfigError, match="PLASMA_EDGE_TRUSTED_KEYS"):
        PacketCache.from_env({"PLASMA_PACKET_CACHE": str(tmp_path)})
    assert default_root({}) == Path.home() / ".cache" / "plasma" / "packets"


def test_download_packet_fills_the_cache_and_answers_from_it(tmp_path: Path, compiler: str,
                                                             signed_packet: bytes) -> None:
    cache = PacketCache(TRUSTED, tmp_path)
    packet_id = _id(signed_packet)
    with PlasmaClient(Endpoints(compiler=compiler), packet_cache=cache) as client:
        assert client.download_packet(packet_id) == signed_packet
    assert (tmp_path / packet_id / "packet.zip").read_bytes() == signed_packet
    # No compiler now: the cache answers.
    with PlasmaClient(Endpoints(compiler="127.0.0.1:1"), packet_cache=cache) as offline:
        assert offline.download_packet(packet_id) == signed_packet
