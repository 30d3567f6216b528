"""plasma.common.v1.Tensor: raw little-endian bytes with shape and dtype, checked on decode."""

from __future__ import annotations

import numpy as np
import pytest

from plasma import tensors
from plasma.common.v1 import common_pb2


@pytest.mark.parametrize(
    "array",
    [np.arange(12, dtype=np.float32).reshape(3, 4), np.array([1, -2, 3], dtype=np.int64),
     np.array([True, False]), np.zeros((0, 4), dtype=np.float64), np.float32(2.5)],
)
def test_round_trip_keeps_values_shape_and_dtype(array: np.ndarray) -> None:
    decoded = tensors.from_proto(tensors.to_proto(np.asarray(array)))
    assert decoded.dtype == np.asarray(array).dtype
    np.testing.assert_array_equal(decoded, array)


def test_bytes_are_little_endian_on_the_wire() -> None:
    assert tensors.to_proto(np.array([1], dtype=np.int64)).data == b"\x01" + b"\x00" * 7


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        (common_pb2.Tensor(shape=[2, 2], dtype=common_pb2.DATA_TYPE_FLOAT32, data=b"\x00" * 12), "needs 16 bytes"),
        (common_pb2.Tensor(shape=[2**62, 4], dtype=common_pb2.DATA_TYPE_FLOAT32, data=b"\x00" * 16), "got 16"),
        (common_pb2.Tensor(shape=[-1], dtype=common_pb2.DATA_TYPE_FLOAT32), "negative"),
        (common_pb2.Tensor(shape=[1], data=b"\x00" * 4), "dtype must be set"),
        (common_pb2.Tensor(shape=[1], dtype=99, data=b"\x00" * 4), "unknown dtype"),
    ],
)
def test_malformed_tensors_are_refused_with_a_reason(tensor: common_pb2.Tensor, fragment: str) -> None:
    with pytest.raises(tensors.TensorError, match=fragment):
        tensors.from_proto(tensor)


def test_unsupported_numpy_dtype_is_refused() -> None:
    with pytest.raises(tensors.TensorError, match="unsupported dtype"):
        tensors.to_proto(np.array([1], dtype=np.int8))
