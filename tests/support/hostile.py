"""Hostile requests for any gRPC method, built from its descriptor alone (hypothesis strategies), and one generic
way to send them: raw bytes through a channel with identity serializers, so the client checks nothing.

A request is a list of serialized messages (one for a unary request, 0..3 for a streamed one). Each message is
raw bytes, an empty message, or a message whose every field may be set to a hostile value: ids and names too long
or shaped like paths, unbuildable and unknown Gymnasium ids, integers at the int64 limits and negative sizes,
NaN/inf, unknown enum values, tensors whose shape and bytes disagree or that hold NaN. `known` strings (ids that
exist in the services' stores) are mixed in, so that requests also reach past the id checks.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
from google.protobuf import descriptor, message_factory
from google.protobuf.message import Message
from hypothesis import strategies as st

from plasma.common.v1 import common_pb2

HOSTILE_STRINGS = [
    "", "a" * 129, "a" * 256, "a" * 16 * 1024, "../../etc/passwd", "/etc/passwd", ".hidden", "..", "CON", "x\ny",
    "\x00", "ds-é", "%s%n", "CartPole-v1", "Pendulum-v1", "Ant-v5", "LunarLander-v3", "CarRacing-v3",
    "phys2d/CartPole-v1", "gymnasium.envs.classic_control:CartPole-v1", "NoSuchEnv-v9", "Blackjack-v1",
    "FrozenLake-v1", "application/zip", "ab" * 32,
]
INT64_EDGES = [0, 1, 2, 3, -1, 2**31 - 1, -(2**31), 2**32, 2**63 - 1, -(2**63)]
FLOAT_EDGES = [math.nan, math.inf, -math.inf, 0.0, -0.0, 0.5, 1.0, -1.0, 1e308, -1e308, 5e-324, 1e-45]
MAX_DEPTH = 3


def request(method: descriptor.MethodDescriptor, known: Sequence[str] = ()) -> st.SearchStrategy[list[bytes]]:
    """What a client may send to `method`: one message, or for a streamed request 0..3 of them."""
    one = message_bytes(method.input_type, known)
    if method.client_streaming:
        return st.lists(one, max_size=3)
    return one.map(lambda data: [data])


def message_bytes(message_type: descriptor.Descriptor, known: Sequence[str] = ()) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(b""),
        st.binary(max_size=300),
        message(message_type, known, MAX_DEPTH).map(lambda m: m.SerializeToString()),
    )


def message(message_type: descriptor.Descriptor, known: Sequence[str], depth: int) -> st.SearchStrategy[Message]:
    cls = message_factory.GetMessageClass(message_type)
    if message_type.full_name == common_pb2.Tensor.DESCRIPTOR.full_name:
        return st.one_of(tensor(), _fields(cls, message_type, known, depth))
    if depth == 0:
        return st.builds(cls)
    return _fields(cls, message_type, known, depth)


def _fields(cls: type[Message], message_type: descriptor.Descriptor, known: Sequence[str],
            depth: int) -> st.SearchStrategy[Message]:
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in message_type.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            continue
        value = _value(field, known, depth)
        optional[field.name] = st.lists(value, max_size=3) if _repeated(field) else value
    return st.fixed_dictionaries({}, optional=optional).map(lambda values: _build(cls, message_type, values))


def _repeated(field: descriptor.FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _build(cls: type[Message], message_type: descriptor.Descriptor, values: dict[str, Any]) -> Message:
    built = cls()
    for name, value in values.items():
        field = message_type.fields_by_name[name]
        target = getattr(built, name)
        if _repeated(field):
            if field.message_type is not None:
                for item in value:
                    target.add().CopyFrom(item)
            else:
                target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(built, name, value)
    return built


def _value(field: descriptor.FieldDescriptor, known: Sequence[str], depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if field.message_type is not None:
        return message(field.message_type, known, depth - 1)
    if kind == field.TYPE_STRING:
        text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)  # Cs: lone surrogates, not UTF-8
        hostile = st.sampled_from(HOSTILE_STRINGS)
        return st.one_of(st.sampled_from(known), hostile, text) if known else st.one_of(hostile, text)
    if kind == field.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"\x00" * 100_000))
    if kind == field.TYPE_BOOL:
        return st.booleans()
    if kind in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
        return st.one_of(st.sampled_from(FLOAT_EDGES), st.floats(width=32 if kind == field.TYPE_FLOAT else 64))
    if field.enum_type is not None:
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-3, 99))
    low, high = _int_range(field)
    return st.one_of(st.sampled_from([v for v in INT64_EDGES if low <= v <= high]), st.integers(max(low, -5), 10))


def _int_range(field: descriptor.FieldDescriptor) -> tuple[int, int]:
    kind = field.type
    if kind in (field.TYPE_INT32, field.TYPE_SINT32, field.TYPE_SFIXED32):
        return -(2**31), 2**31 - 1
    if kind in (field.TYPE_UINT32, field.TYPE_FIXED32):
        return 0, 2**32 - 1
    if kind in (field.TYPE_UINT64, field.TYPE_FIXED64):
        return 0, 2**64 - 1
    return -(2**63), 2**63 - 1


def tensor() -> st.SearchStrategy[common_pb2.Tensor]:
    """A tensor whose declared shape and dtype fit its bytes (so it reaches the checks behind the size check),
    with hostile values: NaN, inf, huge, or a shape that fits no model (empty, zero-sized, odd widths)."""
    shapes = st.sampled_from([[], [0], [1], [2], [3], [4], [1, 4], [2, 4], [0, 4], [4, 1], [1, 3], [2, 2, 1],
                              [1024, 4]])
    dtypes = st.sampled_from([(common_pb2.DATA_TYPE_FLOAT32, "<f4"), (common_pb2.DATA_TYPE_FLOAT64, "<f8"),
                              (common_pb2.DATA_TYPE_INT64, "<i8"), (common_pb2.DATA_TYPE_BOOL, "u1")])
    fill = st.sampled_from([*FLOAT_EDGES, 1e30, 3.0])

    def build(shape: list[int], dtype: tuple[common_pb2.DataType, str], value: float) -> common_pb2.Tensor:
        with np.errstate(over="ignore"):  # 1e308 as float32 is inf: one more hostile value
            array = np.full(shape, value if dtype[1].startswith("<f") else (0 if math.isnan(value) else 1),
                            dtype=np.dtype(dtype[1]))
        return common_pb2.Tensor(shape=shape, dtype=dtype[0], data=array.tobytes())

    return st.builds(build, shapes, dtypes, fill)


def _identity(data: bytes) -> bytes:
    return data


def call(channel: grpc.Channel, path: str, method: descriptor.MethodDescriptor, messages: list[bytes],
         timeout_s: float, max_responses: int = 3, linger_s: float = 1.0) -> tuple[str, str]:
    """Sends `messages` to `path`; the status code's name and details. A response stream is read until it ends,
    for at most `max_responses` messages and `linger_s` after its first one (Health.Watch never ends), then
    cancelled: "STREAM_OPEN" says it was still serving when the client stopped."""
    raw: dict[str, Any] = {"request_serializer": _identity, "response_deserializer": _identity}
    try:
        if method.client_streaming and method.server_streaming:
            return _read(channel.stream_stream(path, **raw)(iter(messages), timeout=timeout_s), max_responses,
                         linger_s)
        if method.client_streaming:
            channel.stream_unary(path, **raw)(iter(messages), timeout=timeout_s)
        elif method.server_streaming:
            return _read(channel.unary_stream(path, **raw)(messages[0], timeout=timeout_s), max_responses, linger_s)
        else:
            channel.unary_unary(path, **raw)(messages[0], timeout=timeout_s)
    except grpc.RpcError as error:
        return error.code().name, error.details() or ""
    return "OK", ""


def _read(responses: Any, max_responses: int, linger_s: float) -> tuple[str, str]:
    stopped = threading.Event()

    def stop() -> None:
        stopped.set()
        responses.cancel()

    timer: threading.Timer | None = None
    try:
        for count, _ in enumerate(responses, start=1):
            if count >= max_responses:
                stop()
                return "STREAM_OPEN", ""
            if timer is None:
                timer = threading.Timer(linger_s, stop)
                timer.start()
    except grpc.RpcError as error:
        if stopped.is_set() and error.code() == grpc.StatusCode.CANCELLED:
            return "STREAM_OPEN", ""
        raise
    finally:
        if timer is not None:
            timer.cancel()
    return "OK", ""
