"""Magnitude weight pruning: the smallest |w| of each layer's weight matrix set to zero. Zeros survive every
precision (int8's symmetric zero point is 0, fp16's zero is all zero bits), so the packet's DEFLATE entry shrinks
with the sparsity even though the graph's tensors stay dense."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

# Tried in this order; the compiler keeps the last one the parity gate passes and stops at the first it refuses
# (more zeros do not act more like fp32).
SPARSITIES = (0.25, 0.5, 0.75, 0.9)
_LAYER_OPS = ("Gemm", "MatMul")


def prune(graph: bytes, sparsity: float) -> bytes:
    """The fp32 graph `graph` with `sparsity` of every layer's weights zeroed, smallest magnitude first. Biases and
    LoRA factors (an adaptable graph's overridable inputs) are kept whole."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    model = onnx.load_from_string(graph)
    weights = {node.input[1] for node in model.graph.node
               if node.op_type in _LAYER_OPS and not any(name.startswith("lora_") for name in node.input)}
    for init in model.graph.initializer:
        if init.name not in weights or init.data_type != TensorProto.FLOAT:
            continue
        w = numpy_helper.to_array(init).copy()
        smallest = np.argsort(np.abs(w), axis=None, kind="stable")[: round(sparsity * w.size)]
        w.flat[smallest] = 0.0
        init.CopyFrom(numpy_helper.from_array(w, init.name))
    return model.SerializeToString()

