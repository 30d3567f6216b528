"""Conversion between numpy arrays and `plasma.common.v1.Tensor` (raw little-endian bytes)."""

from __future__ import annotations

import math

import numpy as np

from plasma.common.v1 import common_pb2

_TO_NUMPY: dict[int, np.dtype] = {
    common_pb2.DATA_TYPE_FLOAT32: np.dtype("<f4"),
    common_pb2.DATA_TYPE_FLOAT64: np.dtype("<f8"),
    common_pb2.DATA_TYPE_INT64: np.dtype("<i8"),
    common_pb2.DATA_TYPE_BOOL: np.dtype("u1"),
}
_FROM_NUMPY: dict[str, common_pb2.DataType] = {
    "float32": common_pb2.DATA_TYPE_FLOAT32,
    "float64": common_pb2.DATA_TYPE_FLOAT64,
    "int64": common_pb2.DATA_TYPE_INT64,
    "bool": common_pb2.DATA_TYPE_BOOL,
}


class TensorError(ValueError):
    """A Tensor message that cannot be a valid array; the message says why."""


def to_proto(array: np.ndarray) -> common_pb2.Tensor:
    array = np.asarray(array)
    dtype_code = _FROM_NUMPY.get(array.dtype.name)
    if dtype_code is None:
        raise TensorError(f"unsupported dtype {array.dtype}; use float32, float64, int64 or bool")
    wire = array.astype(_TO_NUMPY[dtype_code], copy=False)
    data = np.ascontiguousarray(wire).tobytes()
    return common_pb2.Tensor(shape=list(array.shape), dtype=dtype_code, data=data)


def from_proto(tensor: common_pb2.Tensor, name: str = "tensor") -> np.ndarray:
    """Decodes a Tensor, checking that its bytes match its declared shape and dtype."""
    wire_dtype = _TO_NUMPY.get(tensor.dtype)
    if wire_dtype is None:
        raise TensorError(f"{name}: dtype must be set (got {common_pb2.DataType.Name(tensor.dtype)!s})"
                          if tensor.dtype in common_pb2.DataType.values()
                          else f"{name}: unknown dtype code {tensor.dtype}")
    shape = tuple(int(d) for d in tensor.shape)
    if any(d < 0 for d in shape):
        raise TensorError(f"{name}: negative dimension in shape {list(shape)}")
    # Plain Python ints: a hostile shape like [2**62, 4] must not overflow into a plausible size.
    expected = math.prod(shape) * wire_dtype.itemsize
    if len(tensor.data) != expected:
        raise TensorError(
            f"{name}: shape {list(shape)} of {wire_dtype.name} needs {expected} bytes, got {len(tensor.data)}"
        )
    array = np.frombuffer(tensor.data, dtype=wire_dtype).reshape(shape)
    if tensor.dtype == common_pb2.DATA_TYPE_BOOL:
        return array.astype(bool)
    return array.astype(wire_dtype.newbyteorder("="), copy=False)
