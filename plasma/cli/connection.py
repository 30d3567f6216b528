"""How the CLI reaches the services: addresses and TLS settings, from flags that override the environment."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping

from plasma.sdk.client import Endpoints

SERVICES = ("simulator", "trainer", "compiler", "edge")
# Flag, the variable it overrides (plasma.channels.ClientSecurity reads them), help.
TLS_FLAGS = (
    ("--tls-ca", "PLASMA_TLS_CA", "PEM certificate of the CA that signed the servers' certificates; turns TLS on"),
    ("--tls-cert", "PLASMA_TLS_CERT", "this client's PEM certificate, for mutual TLS"),
    ("--tls-key", "PLASMA_TLS_KEY", "the PEM private key of --tls-cert"),
    ("--tls-server-name", "PLASMA_TLS_SERVER_NAME", "name to check the servers' certificates against instead of "
                                                    "the address's host"),
    ("--token-file", "PLASMA_TOKEN_FILE", "file holding a bearer token to send on every call (TLS only)"),
)


def add_tls_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS (docs/security.md)")
    for flag, variable, text in TLS_FLAGS:
        group.add_argument(flag, help=f"{text} (default ${variable})")


def endpoints(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> Endpoints:
    """The services' addresses (--simulator ... or PLASMA_<SERVICE>_TARGET) and the TLS settings (flags or env)."""
    flags = {variable: getattr(args, flag[2:].replace("-", "_"), None) for flag, variable, _ in TLS_FLAGS}
    base = Endpoints.from_env({**env, **{variable: value for variable, value in flags.items() if value}})
    addresses = {name: getattr(args, name, None) for name in SERVICES}
    return dataclasses.replace(base, **{name: value for name, value in addresses.items() if value})
