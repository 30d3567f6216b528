"""Edge runtime configuration, read from the environment (and flags) in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from plasma.core import settings


@dataclass(frozen=True)
class Config:
    # host:port to listen on; port 0 picks a free port (tests).
    address: str = "127.0.0.1:50054"
    # Where the current packet is kept, so a restarted runtime serves it without the network.
    store_dir: Path = Path("var/edge")
    # onnxruntime threads: a batch-1 policy gains nothing from more, and the device's cores are shared.
    ort_intra_threads: int = 1
    ort_inter_threads: int = 1
    # gRPC worker threads; each open Control stream holds one for its whole life.
    workers: int = 8
    # In-flight RPCs beyond this are refused with RESOURCE_EXHAUSTED instead of queueing without bound.
    max_concurrent_rpcs: int = 64
    # Most observations one Act or Control message may carry.
    max_batch: int = 1024
    # Seconds in-flight RPCs get to finish after SIGTERM.
    grace_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        return cls(
            address=settings.address(env, "PLASMA_EDGE_ADDRESS", cls.address),
            store_dir=Path(settings.directory(env, "PLASMA_EDGE_STORE", str(cls.store_dir))),
            ort_intra_threads=settings.positive_int(env, "PLASMA_EDGE_ORT_INTRA_THREADS", cls.ort_intra_threads),
            ort_inter_threads=settings.positive_int(env, "PLASMA_EDGE_ORT_INTER_THREADS", cls.ort_inter_threads),
            workers=settings.positive_int(env, "PLASMA_EDGE_WORKERS", cls.workers),
            max_concurrent_rpcs=settings.positive_int(env, "PLASMA_EDGE_MAX_CONCURRENT_RPCS", cls.max_concurrent_rpcs),
            max_batch=settings.positive_int(env, "PLASMA_EDGE_MAX_BATCH", cls.max_batch),
            grace_seconds=settings.seconds(env, "PLASMA_EDGE_GRACE_SECONDS", cls.grace_seconds),
        )
