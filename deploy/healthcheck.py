"""Container HEALTHCHECK for the simulator, trainer and compiler images: exit 0 when the standard
grpc.health.v1 service answers SERVING, 1 otherwise.

    python /opt/plasma/healthcheck.py PLASMA_SIMULATOR_ADDRESS

The argument names the environment variable the service listens on (host:port); a server listening on
every interface (0.0.0.0, [::]) is asked on loopback. It connects as every Plasma client does
(plasma.channels.ClientSecurity): TLS when PLASMA_TLS_CA is set, with PLASMA_TLS_CERT/KEY for mutual TLS (the
compose file gives each container its own certificate), plaintext otherwise. Health needs no role. Imports grpc
and plasma.channels only, so it starts fast next to torch.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from plasma import channels
from plasma.server.settings import ConfigError


def target(listen_address: str) -> str:
    host, _, port = listen_address.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or not os.environ.get(argv[1]):
        print(f"usage: {argv[0]} ENV_VAR (an environment variable holding the service's host:port)", file=sys.stderr)
        return 2
    address = target(os.environ[argv[1]])
    try:
        security = channels.ClientSecurity.from_env()
    except ConfigError as exc:
        print(f"{address}: {exc}", file=sys.stderr)
        return 1
    with channels.channel(address, security) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=3.0)
        except grpc.RpcError as error:
            print(f"{address}: {error.code().name}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(f"{address}: {status}")
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
