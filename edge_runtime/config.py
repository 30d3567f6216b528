"""Edge runtime configuration, read from the environment (and flags) in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime.follower import FollowConfig
from plasma import blobs, signing
from plasma.server import settings
from plasma.server.security import ServerSecurity

# The experience log's cap: at least a few segments of transitions, at most what one export may carry.
MIN_EXPERIENCE_BYTES = 64 * 1024
DEFAULT_EXPERIENCE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Config:
    # host:port to listen on; port 0 picks a free port (tests).
    address: str = "127.0.0.1:50054"
    # Where installed packets are kept, so a restarted runtime serves the last good one without the network.
    store_dir: Path = Path("var/edge")
    # Public keys whose signatures this runtime accepts, by key id. Empty: every packet is refused (a device
    # must never serve unsigned or untrusted code); the runtime still starts, answers health and GetStatus.
    trusted_keys: dict[str, signing.VerifyingKey] = field(default_factory=dict)
    # onnxruntime threads: a batch-1 policy gains nothing from more, and a small device's cores are shared.
    ort_intra_threads: int = 1
    ort_inter_threads: int = 1
    # gRPC worker threads. Each in-flight RPC holds one; an open Control stream holds one for its whole life.
    workers: int = 8
    # In-flight RPCs beyond this are refused with RESOURCE_EXHAUSTED. At most `workers` (the default), so an
    # accepted RPC never waits in a queue for a thread.
    max_concurrent_rpcs: int = 8
    # Open Control streams beyond this are refused with RESOURCE_EXHAUSTED; below max_concurrent_rpcs (default:
    # half of it), so Act, LoadPacket and health checks always find a worker however many streams are open.
    max_control_streams: int = 4
    # Most observations one Act or Control message may carry.
    max_batch: int = 1024
    # Seconds in-flight RPCs get to finish after SIGTERM.
    grace_seconds: float = 5.0
    # host:port of the Prometheus /metrics HTTP endpoint; "" turns it off (port 0 picks a free port).
    metrics_address: str = ""
    # TLS, mutual TLS and authorization of callers (PLASMA_EDGE_TLS_*, PLASMA_EDGE_AUTH_TOKENS; docs/security.md).
    # Default: plaintext and no authorization, for local processes on loopback.
    security: ServerSecurity = field(default_factory=ServerSecurity)
    # The registry channel this edge follows (PLASMA_EDGE_REGISTRY_TARGET, PLASMA_EDGE_CHANNEL, PLASMA_EDGE_ID,
    # PLASMA_EDGE_REPORT_SECONDS; docs/fleet.md); None: packets arrive only through LoadPacket.
    follow: FollowConfig | None = None
    # Where experience from Control streams is recorded (docs/feedback-loop.md); None: nothing is recorded, the
    # default, since a device's observations may be private.
    experience_dir: Path | None = None
    # The experience log's size cap in bytes; the oldest transitions are dropped beyond it.
    experience_max_bytes: int = DEFAULT_EXPERIENCE_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        try:
            trusted = signing.parse_trusted_keys(env.get("PLASMA_EDGE_TRUSTED_KEYS", ""))
        except signing.SigningKeyError as exc:
            raise settings.ConfigError(f"PLASMA_EDGE_TRUSTED_KEYS is not valid: {exc}") from exc
        workers = settings.positive_int(env, "PLASMA_EDGE_WORKERS", cls.workers)
        max_rpcs = settings.positive_int(env, "PLASMA_EDGE_MAX_CONCURRENT_RPCS", workers)
        config = cls(
            address=settings.address(env, "PLASMA_EDGE_ADDRESS", cls.address),
            store_dir=Path(settings.directory(env, "PLASMA_EDGE_STORE", str(cls.store_dir))),
            trusted_keys=trusted,
            ort_intra_threads=settings.positive_int(env, "PLASMA_EDGE_ORT_INTRA_THREADS", cls.ort_intra_threads),
            ort_inter_threads=settings.positive_int(env, "PLASMA_EDGE_ORT_INTER_THREADS", cls.ort_inter_threads),
            workers=workers,
            max_concurrent_rpcs=max_rpcs,
            max_control_streams=settings.positive_int(env, "PLASMA_EDGE_MAX_CONTROL_STREAMS", max_rpcs // 2),
            max_batch=settings.positive_int(env, "PLASMA_EDGE_MAX_BATCH", cls.max_batch),
            grace_seconds=settings.seconds(env, "PLASMA_EDGE_GRACE_SECONDS", cls.grace_seconds),
            metrics_address=settings.read(env, "PLASMA_EDGE_METRICS_ADDRESS", cls.metrics_address, str,
                                          lambda a: ":" in a, "host:port"),
            security=ServerSecurity.from_env(env, "edge"),
            follow=FollowConfig.from_env(env),
            experience_dir=(Path(settings.directory(env, "PLASMA_EDGE_EXPERIENCE_DIR", ""))
                            if env.get("PLASMA_EDGE_EXPERIENCE_DIR") else None),
            experience_max_bytes=settings.read(
                env, "PLASMA_EDGE_EXPERIENCE_MAX_BYTES", DEFAULT_EXPERIENCE_BYTES, int,
                lambda n: MIN_EXPERIENCE_BYTES <= n <= blobs.MAX_BLOB_BYTES,
                f"bytes in {MIN_EXPERIENCE_BYTES}..{blobs.MAX_BLOB_BYTES}"),
        )
        config.check()
        return config

    def check(self) -> None:
        """Limits that only make sense together."""
        if self.max_concurrent_rpcs > self.workers:
            raise settings.ConfigError(
                f"PLASMA_EDGE_MAX_CONCURRENT_RPCS={self.max_concurrent_rpcs} is not valid: expected at most "
                f"PLASMA_EDGE_WORKERS={self.workers}, or accepted RPCs would queue for a thread")
        if self.max_control_streams >= self.max_concurrent_rpcs and self.max_control_streams > 0:
            raise settings.ConfigError(
                f"PLASMA_EDGE_MAX_CONTROL_STREAMS={self.max_control_streams} is not valid: expected fewer than "
                f"PLASMA_EDGE_MAX_CONCURRENT_RPCS={self.max_concurrent_rpcs}, so Act and health checks keep a worker")
