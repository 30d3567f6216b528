"""Compiler configuration, read from the environment (and flags) in one place."""

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
    address: str = "127.0.0.1:50053"
    # Where the trainer listens; the compiler pulls policy bundles from it.
    trainer_address: str = "127.0.0.1:50052"
    # Where the simulator listens; the parity check runs policies in the run's world model there.
    simulator_address: str = "127.0.0.1:50051"
    # Root directory of stored packets.
    store_dir: Path = Path("var/compiler")
    # Torch and onnxruntime intra-op threads: 1 keeps four services on a 2-core machine from oversubscribing it.
    torch_threads: int = 1
    # gRPC worker threads (each in-flight RPC holds one; compilations themselves run one at a time).
    workers: int = 4
    # Seconds in-flight RPCs get to finish after SIGTERM.
    grace_seconds: float = 10.0
    # Deadline of one ExportPolicy stream from the trainer.
    fetch_deadline_seconds: float = 120.0
    # ed25519 private key that signs packets (PEM, raw or base64). None: a development key is generated
    # into <store_dir>/signing/dev-ed25519.pem on first start and reused after; its public half is logged.
    signing_key: Path | None = None
    # TLS, mutual TLS and authorization of callers (PLASMA_COMPILER_TLS_*, PLASMA_COMPILER_AUTH_TOKENS;
    # docs/security.md). Default: plaintext and no authorization, for local processes on loopback.
    security: ServerSecurity = field(default_factory=ServerSecurity)
    # How this service calls the trainer and the simulator: PLASMA_TLS_CA, PLASMA_TLS_CERT, PLASMA_TLS_KEY,
    # PLASMA_TLS_SERVER_NAME, PLASMA_TOKEN_FILE (plasma.channels.ClientSecurity); None: plaintext.
    client_security: ClientSecurity | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        return cls(
            address=settings.address(env, "PLASMA_COMPILER_ADDRESS", cls.address),
            trainer_address=settings.address(env, "PLASMA_TRAINER_TARGET", cls.trainer_address),
            simulator_address=settings.address(env, "PLASMA_SIMULATOR_TARGET", cls.simulator_address),
            store_dir=Path(settings.directory(env, "PLASMA_COMPILER_STORE", str(cls.store_dir))),
            torch_threads=settings.positive_int(env, "PLASMA_COMPILER_TORCH_THREADS", cls.torch_threads),
            workers=settings.positive_int(env, "PLASMA_COMPILER_WORKERS", cls.workers),
            grace_seconds=settings.seconds(env, "PLASMA_COMPILER_GRACE_SECONDS", cls.grace_seconds),
            fetch_deadline_seconds=settings.seconds(
                env, "PLASMA_COMPILER_FETCH_DEADLINE_SECONDS", cls.fetch_deadline_seconds
            ),
            signing_key=_signing_key(env),
            security=ServerSecurity.from_env(env, "compiler"),
            client_security=ClientSecurity.from_env(env),
        )


def _signing_key(env: Mapping[str, str]) -> Path | None:
    raw = env.get("PLASMA_COMPILER_SIGNING_KEY", "")
    if not raw:
        return None
    path = Path(raw).expanduser().absolute()
    if not path.is_file():
        raise settings.ConfigError(f"PLASMA_COMPILER_SIGNING_KEY={raw!r} is not valid: expected the path of an "
                                   "ed25519 private key file")
    return path
