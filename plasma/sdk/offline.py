"""A packet served in this process, without the edge server or the network: a device acts from a packet in its
cache (plasma.sdk.packet_cache) as its edge runtime would from the same packet.

The edge's own code does the work: the signature check (plasma.packet.verify), the self-test on this CPU with
the float fallback (edge_runtime.runtime.checked_session) and the observation checks (ServedPacket.decode), so
the same packet answers the same observations with the same actions here as over Act. Torch-free: it needs the
`edge` extra (onnxruntime), like the edge runtime.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from edge_runtime import errors
from edge_runtime.runtime import checked_session
from edge_runtime.self_test import Report
from edge_runtime.session import ServedPacket
from plasma import packet, tensors
from plasma.sdk.packet_cache import PacketCache
from plasma.signing import VerifyingKey

# The edge's default bound on one request's observations (PLASMA_EDGE_MAX_BATCH).
MAX_BATCH = 1024


class NotCached(LookupError):
    """The packet is not in the cache, or was removed from it for failing its checks."""


class OfflinePolicy:
    """`act(observation)` -> action, from one verified, self-tested packet."""

    def __init__(self, served: ServedPacket, max_batch: int = MAX_BATCH) -> None:
        self._served = served
        self._max_batch = max_batch

    @classmethod
    def from_bytes(cls, data: bytes, trusted_keys: Mapping[str, VerifyingKey], threads: int = 1) -> OfflinePolicy:
        """Verifies and self-tests the packet as the edge's LoadPacket does; edge_runtime.errors.Refused (with
        its `reason`) when the edge would refuse it. Adapter packets need their base, held only by an edge."""
        try:
            verified = packet.verify(data, trusted_keys)
        except packet.PacketError as exc:
            raise errors.refusal(exc) from exc
        if verified.manifest.kind == packet.KIND_ADAPTER:
            raise errors.Malformed(f"packet {verified.manifest.packet_id} is an adapter packet: it runs only on "
                                   "its base in an edge runtime; act offline from a merged or adaptable packet")
        return cls(checked_session(verified, None, None, threads, threads))

    @classmethod
    def from_cache(cls, packet_id: str, trusted_keys: Mapping[str, VerifyingKey] | None = None,
                   cache: PacketCache | None = None, threads: int = 1) -> OfflinePolicy:
        """The cached packet `packet_id` (PlasmaClient.download_packet with a cache puts it there). `cache`
        defaults to the default cache directory trusting `trusted_keys`."""
        if cache is None:
            if trusted_keys is None:
                raise ValueError("give trusted_keys or a cache: a packet is served only with a trusted signature")
            cache = PacketCache(trusted_keys)
        cached = cache.get(packet_id)
        if cached is None:
            raise NotCached(f"packet {packet_id} is not in the cache {cache.root} (or failed its checks there)")
        return cls.from_bytes(cached.data, cache.trusted_keys, threads)

    @property
    def manifest(self) -> packet.Manifest:
        return self._served.manifest

    @property
    def self_test(self) -> Report | None:
        """The packet's self-test on this CPU (None: the packet carries none)."""
        return self._served.self_test

    @property
    def serving_fallback(self) -> bool:
        """True when the packet's graph failed its self-test here and its fp32 fallback serves instead."""
        return self._served.serving_fallback

    def act(self, observation: np.ndarray) -> np.ndarray:
        """The action for one observation [obs_dim] (a 0-d int64 for a discrete action), or actions for a batch
        [n, obs_dim]; plasma.server.errors.InvalidArgument for what the edge's Act would refuse."""
        tensor = tensors.to_proto(np.asarray(observation, np.float32))
        batch, single = self._served.decode(tensor, self._max_batch)
        actions = self._served.run(batch)
        return actions[0] if single else actions
