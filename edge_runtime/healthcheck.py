"""Exit 0 when the edge runtime's gRPC health service answers SERVING, 1 otherwise (container HEALTHCHECK).

    python -m edge_runtime.healthcheck [--address host:port] [--service NAME] [--timeout SECONDS]

Connects as every Plasma client does: TLS when PLASMA_TLS_CA is set, with PLASMA_TLS_CERT/KEY for mutual TLS
(plasma.channels.ClientSecurity); plaintext otherwise. Health needs no role.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edge_runtime.config import Config
from plasma import channels
from plasma.server.settings import ConfigError


def main(argv: list[str] | None = None) -> int:
    # A server listening on every interface is reached on loopback from inside its own container.
    default = Config.from_env().address.replace("0.0.0.0:", "127.0.0.1:").replace("[::]:", "127.0.0.1:")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default=default, help=f"host:port of the runtime (default {default})")
    parser.add_argument("--service", default="", help="service name to check (default: the whole server)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for an answer")
    args = parser.parse_args(argv)
    try:
        security = channels.ClientSecurity.from_env()
    except ConfigError as exc:
        print(f"{args.address}: {exc}", file=sys.stderr)
        return 1
    with channels.channel(args.address, security) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError:
            return 1
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
