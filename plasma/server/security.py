"""How a server accepts connections and callers: TLS, mutual TLS, bearer tokens; read from one naming scheme.

For a service S (SIMULATOR, TRAINER, COMPILER, EDGE):

    PLASMA_S_TLS_CERT, PLASMA_S_TLS_KEY   the server's PEM certificate (chain) and key: TLS instead of plaintext
    PLASMA_S_TLS_CLIENT_CA                PEM CA(s) that issue client certificates: every client must present one
                                          (mutual TLS), and calls are authorized by its role
    PLASMA_S_AUTH_TOKENS                  a tokens file (plasma.server.tokens): calls are authorized by the bearer
                                          token they carry, or by the client certificate when there is no token

Nothing set: plaintext and no authorization, for local processes on loopback only (`make demo`, `plasma serve`).
Authorization is on as soon as a client CA or a tokens file is set. The files are read at start-up: restart the
service to rotate them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from plasma.server import settings
from plasma.server.auth import AuthorizationInterceptor, Authorizer
from plasma.server.tokens import Tokens


@dataclass(frozen=True)
class ServerSecurity:
    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None
    tokens: Tokens | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], service: str) -> ServerSecurity:
        prefix = f"PLASMA_{service.upper()}_"
        cert = settings.file(env, prefix + "TLS_CERT", "the server's PEM certificate")
        key = settings.file(env, prefix + "TLS_KEY", "the PEM private key of the server's certificate")
        client_ca = settings.file(env, prefix + "TLS_CLIENT_CA", "PEM certificate of the CA of the clients")
        tokens_file = settings.file(env, prefix + "AUTH_TOKENS", "a tokens file: '<role> <name> sha256:<hex>' lines")
        if (cert is None) != (key is None):
            raise settings.ConfigError(f"{prefix}TLS_CERT and {prefix}TLS_KEY are not valid: expected both or neither")
        if cert is None and (client_ca is not None or tokens_file is not None):
            which = f"{prefix}TLS_CLIENT_CA" if client_ca is not None else f"{prefix}AUTH_TOKENS"
            raise settings.ConfigError(f"{which} is set but {prefix}TLS_CERT is not: expected a server certificate "
                                       "too (identities are only accepted over TLS)")
        tokens = None
        if tokens_file is not None:
            try:
                tokens = Tokens.load(tokens_file)
            except ValueError as exc:
                raise settings.ConfigError(f"{prefix}AUTH_TOKENS is not valid: {exc}") from exc
        return cls(cert, key, client_ca, tokens)

    @property
    def tls(self) -> bool:
        return self.cert is not None

    @property
    def authorizes(self) -> bool:
        return self.client_ca is not None or self.tokens is not None

    def describe(self) -> str:
        """For the start-up log line."""
        if not self.tls:
            return "plaintext"
        how = "mtls" if self.client_ca is not None else "tls"
        return f"{how} authorization={'on' if self.authorizes else 'off'} tokens={'on' if self.tokens else 'off'}"

    def credentials(self) -> grpc.ServerCredentials:
        assert self.cert is not None and self.key is not None, "credentials() of a plaintext configuration"
        client_ca = self.client_ca.read_bytes() if self.client_ca is not None else None
        # gRPC Python either requires a client certificate or does not ask for one: with a client CA, every client
        # must present one, signed by it.
        return grpc.ssl_server_credentials([(self.key.read_bytes(), self.cert.read_bytes())],
                                           root_certificates=client_ca, require_client_auth=client_ca is not None)

    def interceptors(self) -> list[grpc.ServerInterceptor]:
        return [AuthorizationInterceptor(Authorizer(self.tokens))] if self.authorizes else []
