"""Certificates made by scripts/make_certs.py (what `make certs` runs) and the settings that use them."""

from __future__ import annotations

from pathlib import Path

from plasma.channels import ClientSecurity
from plasma.server.security import ServerSecurity
from plasma.server.tokens import Tokens
from scripts import make_certs


def make(directory: Path) -> Path:
    make_certs.make(directory)
    return directory


def server(certs: Path, service: str, mutual: bool = True, tokens: Path | None = None) -> ServerSecurity:
    """The service's server certificate; with `mutual`, client certificates from the CA are required."""
    return ServerSecurity(cert=certs / service / "server.pem", key=certs / service / "server-key.pem",
                          client_ca=certs / "ca" / "ca.pem" if mutual else None,
                          tokens=Tokens.load(tokens) if tokens is not None else None)


def client(certs: Path, identity: str | None = None, token: str = "", server_name: str = "") -> ClientSecurity:
    """A client that trusts the CA in `certs`, presenting `identity`'s client certificate if given: operator,
    reader, trainer, compiler; or a service's server certificate (no role) as "<service>/server"."""
    if identity is None:
        return ClientSecurity(ca=certs / "ca" / "ca.pem", token=token, server_name=server_name)
    folder, _, kind = identity.partition("/")
    kind = kind or "client"
    return ClientSecurity(ca=certs / "ca" / "ca.pem", cert=certs / folder / f"{kind}.pem",
                          key=certs / folder / f"{kind}-key.pem", token=token, server_name=server_name)
