"""Simulator configuration, read from the environment (and flags) in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from plasma.mbrl import devices
from plasma.server import settings
from plasma.server.security import ServerSecurity


@dataclass(frozen=True)
class Config:
    # host:port to listen on; port 0 picks a free port (tests).
    address: str = "127.0.0.1:50051"
    # Root directory of stored datasets and world models.
    store_dir: Path = Path("var/simulator")
    # Torch intra-op threads: 1 keeps four services on a 2-core machine from oversubscribing it.
    torch_threads: int = 1
    # Where world models are fitted and phantom paths rolled out (PLASMA_SIMULATOR_DEVICE: cpu, cuda or auto,
    # resolved here, at start; docs/gpu.md).
    device: torch.device = devices.CPU
    # Paths rolled out together (PLASMA_SIMULATOR_BATCH_PATHS; default rollout.default_batch_paths: 64 on a CPU,
    # 4,096 on a GPU). Each batch draws from its own seed, so this setting, like the seed, decides the paths.
    batch_paths: int | None = None
    # A Ray cluster that runs the batches (PLASMA_RAY_ADDRESS, e.g. ray://ray-head:10001; docs/scaling.md); empty:
    # everything in this process.
    ray_address: str = ""
    # gRPC worker threads (each in-flight RPC holds one).
    workers: int = 8
    # Seconds in-flight RPCs get to finish after SIGTERM.
    grace_seconds: float = 10.0
    # World models kept loaded in memory for Simulate.
    model_cache_size: int = 4
    # Durable simulations running at once (each on its own worker thread); StartSimulation beyond this is
    # refused with RESOURCE_EXHAUSTED.
    max_simulations: int = 4
    # TLS, mutual TLS and authorization of callers (PLASMA_SIMULATOR_TLS_*, PLASMA_SIMULATOR_AUTH_TOKENS;
    # docs/security.md). Default: plaintext and no authorization, for local processes on loopback.
    security: ServerSecurity = field(default_factory=ServerSecurity)

    def __post_init__(self) -> None:
        if self.ray_address and self.device.type != "cpu":
            raise settings.ConfigError(
                f"PLASMA_RAY_ADDRESS runs simulation batches on the Ray workers' CPUs; it cannot be combined with "
                f"PLASMA_SIMULATOR_DEVICE={self.device.type}: set one of them")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        return cls(
            address=settings.address(env, "PLASMA_SIMULATOR_ADDRESS", cls.address),
            store_dir=Path(settings.directory(env, "PLASMA_SIMULATOR_STORE", str(cls.store_dir))),
            torch_threads=settings.positive_int(env, "PLASMA_SIMULATOR_TORCH_THREADS", cls.torch_threads),
            device=settings.read(env, "PLASMA_SIMULATOR_DEVICE", cls.device, devices.resolve),
            # Unset (0 here): the device's default.
            batch_paths=settings.positive_int(env, "PLASMA_SIMULATOR_BATCH_PATHS", 0) or None,
            ray_address=settings.read(env, "PLASMA_RAY_ADDRESS", cls.ray_address, str),
            workers=settings.positive_int(env, "PLASMA_SIMULATOR_WORKERS", cls.workers),
            grace_seconds=settings.seconds(env, "PLASMA_SIMULATOR_GRACE_SECONDS", cls.grace_seconds),
            model_cache_size=settings.positive_int(env, "PLASMA_SIMULATOR_MODEL_CACHE", cls.model_cache_size),
            max_simulations=settings.positive_int(env, "PLASMA_SIMULATOR_MAX_SIMULATIONS", cls.max_simulations),
            security=ServerSecurity.from_env(env, "simulator"),
        )
