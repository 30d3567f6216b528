"""Channel settings shared by every client (SDK, CLI, services calling each other) and, for message sizes, servers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from plasma.server import settings

# Packets and bundles stream in 64 KiB chunks; anything near this bound is a client bug. Servers use the same.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MESSAGE_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
# Every client call carries a deadline; these are the defaults by kind of call.
UNARY_DEADLINE_S = 30.0
# Long streams (collection, fitting, training, compiling) get a generous bound, not none.
STREAM_DEADLINE_S = 3600.0


@dataclass(frozen=True)
class ClientSecurity:
    """How a client reaches servers that speak TLS: the CA that signed their certificates, for mTLS this client's
    own certificate and key, and optionally a bearer token sent on every call.

    Read from PLASMA_TLS_CA, PLASMA_TLS_CERT, PLASMA_TLS_KEY, PLASMA_TLS_SERVER_NAME and PLASMA_TOKEN_FILE by every
    client alike: the SDK, the CLI, the container health checks, and the trainer's and compiler's calls to other
    services. Files are read when a channel opens, so a restarted client picks up rotated certificates."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    # Name checked against the server's certificate instead of the host in the address (e.g. an IP address
    # that the certificate does not name, or a tunnel); empty: the address's host.
    server_name: str = ""
    token: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ClientSecurity | None:
        """None (plaintext) when PLASMA_TLS_CA is unset; an error naming the variable for a half-given setting."""
        ca = settings.file(env, "PLASMA_TLS_CA", "PEM certificate of the CA that signed the servers' certificates")
        cert = settings.file(env, "PLASMA_TLS_CERT", "this client's PEM certificate, for mutual TLS")
        key = settings.file(env, "PLASMA_TLS_KEY", "the PEM private key of PLASMA_TLS_CERT")
        token_file = settings.file(env, "PLASMA_TOKEN_FILE", "a file holding this client's bearer token")
        server_name = env.get("PLASMA_TLS_SERVER_NAME", "")
        if (cert is None) != (key is None):
            raise settings.ConfigError("PLASMA_TLS_CERT and PLASMA_TLS_KEY are not valid: expected both or neither")
        if ca is None:
            given = [name for name, value in (("PLASMA_TLS_CERT", cert), ("PLASMA_TOKEN_FILE", token_file),
                                              ("PLASMA_TLS_SERVER_NAME", server_name)) if value]
            if given:
                raise settings.ConfigError(f"{given[0]} is set but PLASMA_TLS_CA is not: expected PLASMA_TLS_CA too "
                                           "(certificates and tokens are only sent over TLS)")
            return None
        token = token_file.read_text().strip() if token_file is not None else ""
        if token_file is not None and not token:
            raise settings.ConfigError(f"PLASMA_TOKEN_FILE={str(token_file)!r} is not valid: the file is empty")
        return cls(ca=ca, cert=cert, key=key, server_name=server_name, token=token)

    def credentials(self) -> grpc.ChannelCredentials:
        pair = (self.key.read_bytes(), self.cert.read_bytes()) if self.cert and self.key else (None, None)
        tls = grpc.ssl_channel_credentials(self.ca.read_bytes(), *pair)
        if not self.token:
            return tls
        # Sends `authorization: Bearer <token>` on every call; gRPC sends it over TLS channels only.
        return grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(self.token))


def channel(address: str, security: ClientSecurity | None = None) -> grpc.Channel:
    """A channel to `address`: plaintext without `security` (local processes on loopback), TLS with it."""
    if security is None:
        return grpc.insecure_channel(address, options=MESSAGE_OPTIONS)
    options: list[tuple[str, str | int]] = [*MESSAGE_OPTIONS]
    if security.server_name:
        options.append(("grpc.ssl_target_name_override", security.server_name))
    return grpc.secure_channel(address, security.credentials(), options=options)


def wait_ready(ch: grpc.Channel, timeout_s: float) -> None:
    grpc.channel_ready_future(ch).result(timeout=timeout_s)
