"""Client-side channel settings shared by the SDK and by services calling each other."""

from __future__ import annotations

import grpc

from plasma.core.grpc_server import MESSAGE_OPTIONS

# Every client call carries a deadline; these are the defaults by kind of call.
UNARY_DEADLINE_S = 30.0
# Long streams (collection, fitting, training, compiling) get a generous bound, not none.
STREAM_DEADLINE_S = 3600.0


def channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=MESSAGE_OPTIONS)


def wait_ready(ch: grpc.Channel, timeout_s: float) -> None:
    grpc.channel_ready_future(ch).result(timeout=timeout_s)
