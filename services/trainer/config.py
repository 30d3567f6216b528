"""Trainer configuration, read from the environment (and flags) in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from plasma.channels import ClientSecurity
from plasma.mbrl import devices
from plasma.server import settings
from plasma.server.security import ServerSecurity


@dataclass(frozen=True)
class Config:
    # host:port to listen on; port 0 picks a free port (tests).
    address: str = "127.0.0.1:50052"
    # Where the simulator listens; the trainer streams phantom paths from it.
    simulator_address: str = "127.0.0.1:50051"
    # Root directory of runs and their policy bundles.
    store_dir: Path = Path("var/trainer")
    # Torch intra-op threads: 1 keeps four services on a 2-core machine from oversubscribing it.
    torch_threads: int = 1
    # Where policies (and their adapters) are trained (PLASMA_TRAINER_DEVICE: cpu, cuda or auto, resolved here, at
    # start; docs/gpu.md). Phantom paths are the simulator's: PLASMA_SIMULATOR_DEVICE.
    device: torch.device = devices.CPU
    workers: int = 8
    grace_seconds: float = 10.0
    # Deadline of one Simulate stream; a round of phantom paths that takes longer is an error.
    simulate_deadline_seconds: float = 1800.0
    # TLS, mutual TLS and authorization of callers (PLASMA_TRAINER_TLS_*, PLASMA_TRAINER_AUTH_TOKENS; docs/security.md).
    # Default: plaintext and no authorization, for local processes on loopback.
    security: ServerSecurity = field(default_factory=ServerSecurity)
    # How this service calls the simulator: PLASMA_TLS_CA, PLASMA_TLS_CERT, PLASMA_TLS_KEY, PLASMA_TLS_SERVER_NAME,
    # PLASMA_TOKEN_FILE (plasma.channels.ClientSecurity); None: plaintext.
    client_security: ClientSecurity | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        return cls(
            address=settings.address(env, "PLASMA_TRAINER_ADDRESS", cls.address),
            simulator_address=settings.address(env, "PLASMA_SIMULATOR_TARGET", cls.simulator_address),
            store_dir=Path(settings.directory(env, "PLASMA_TRAINER_STORE", str(cls.store_dir))),
            torch_threads=settings.positive_int(env, "PLASMA_TRAINER_TORCH_THREADS", cls.torch_threads),
            device=settings.read(env, "PLASMA_TRAINER_DEVICE", cls.device, devices.resolve),
            workers=settings.positive_int(env, "PLASMA_TRAINER_WORKERS", cls.workers),
            grace_seconds=settings.seconds(env, "PLASMA_TRAINER_GRACE_SECONDS", cls.grace_seconds),
            simulate_deadline_seconds=settings.seconds(
                env, "PLASMA_TRAINER_SIMULATE_DEADLINE_SECONDS", cls.simulate_deadline_seconds
            ),
            security=ServerSecurity.from_env(env, "trainer"),
            client_security=ClientSecurity.from_env(env),
        )
