"""Channel settings shared by every client (SDK, CLI, services calling each other) and, for message sizes, servers."""

from __future__ import annotations

import grpc

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


def channel(address: str) -> grpc.Channel:
    return grpc.insecure_channel(address, options=MESSAGE_OPTIONS)


def wait_ready(ch: grpc.Channel, timeout_s: float) -> None:
    grpc.channel_ready_future(ch).result(timeout=timeout_s)
