"""Registry configuration, read from the environment (and flags) in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from plasma.channels import ClientSecurity
from plasma.server import settings
from plasma.server.security import ServerSecurity


@dataclass(frozen=True)
class Config:
    # host:port to listen on; port 0 picks a free port (tests).
    address: str = "127.0.0.1:50055"
    # Where the compiler listens; Publish and StartRollout fetch packets from it.
    compiler_address: str = "127.0.0.1:50053"
    # Root directory of the registry's packets and state.
    store_dir: Path = Path("var/registry")
    # gRPC worker threads. Every edge's WatchChannel stream holds one for its whole life: at least the fleet's
    # size plus a few for reports and operators.
    workers: int = 64
    # Seconds between two verdicts on the running rollouts (and saves of the figures reported in between).
    evaluate_seconds: float = 1.0
    # Seconds in-flight RPCs get to finish after SIGTERM (watch streams end at once; edges reconnect).
    grace_seconds: float = 5.0
    # TLS, mutual TLS and authorization of callers (PLASMA_REGISTRY_TLS_*, PLASMA_REGISTRY_AUTH_TOKENS).
    security: ServerSecurity = field(default_factory=ServerSecurity)
    # How this service calls the compiler (PLASMA_TLS_*; plasma.channels.ClientSecurity); None: plaintext.
    client_security: ClientSecurity | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        evaluate_seconds = settings.seconds(env, "PLASMA_REGISTRY_EVALUATE_SECONDS", cls.evaluate_seconds)
        if evaluate_seconds <= 0:
            raise settings.ConfigError(f"PLASMA_REGISTRY_EVALUATE_SECONDS={evaluate_seconds} is not valid: "
                                       "expected a number of seconds > 0")
        return cls(
            address=settings.address(env, "PLASMA_REGISTRY_ADDRESS", cls.address),
            compiler_address=settings.address(env, "PLASMA_COMPILER_TARGET", cls.compiler_address),
            store_dir=Path(settings.directory(env, "PLASMA_REGISTRY_STORE", str(cls.store_dir))),
            workers=settings.positive_int(env, "PLASMA_REGISTRY_WORKERS", cls.workers),
            evaluate_seconds=evaluate_seconds,
            grace_seconds=settings.seconds(env, "PLASMA_REGISTRY_GRACE_SECONDS", cls.grace_seconds),
            security=ServerSecurity.from_env(env, "registry"),
            client_security=ClientSecurity.from_env(env),
        )
