"""The graphs a packet can carry, from smallest to exact: the precision ladder's rungs.

- "int8": static QDQ quantization of every layer after the first. Weights int8 per output channel in 7 bits
  (`reduce_range`); activations int8: the tanh outputs that the layers read with the fixed range [-1, 1] they
  can reach, the layers' outputs with ranges calibrated on real and visited states. The first layer stays float:
  it reads the observation, which has no range a state cannot leave, and with it float no input is ever clipped
  (10x smaller errors than quantizing it, also far outside the calibration data, for 1 KB more).
  x86 CPUs without VNNI multiply uint8 x int8 pairs into int16 sums (vpmaddubsw) that saturate when both factors
  are large; with 7-bit weights a pair's sum stays within int16 (2 x 255 x 63 < 32767), so the graph computes the
  same numbers with and without VNNI (bit for bit, measured under QEMU's EPYC-Rome and Westmere models against a
  VNNI Xeon: docs/packet-format.md).
- "int8-float-output": "int8" with the last layer float too, so the logits / pre-squash values are not rounded.
- "fp16": weights stored as float16 and cast to float32 before use: computed in float32 on every CPU.
- "fp32": the exported graph itself.
- "int8-dynamic": onnxruntime's dynamic quantization (7-bit weights, activation ranges per call). Never chosen by
  the ladder: its per-call ranges make a state's action depend on the batch it arrives in.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime.quantization
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from plasma import packet

INT8 = "int8"
INT8_FLOAT_OUTPUT = "int8-float-output"
FP16 = "fp16"
FP32 = "fp32"
INT8_DYNAMIC = "int8-dynamic"
# Tried in this order; the first graph that passes the parity gate is shipped.
LADDER = (INT8, INT8_FLOAT_OUTPUT, FP16, FP32)
ALL = (*LADDER, INT8_DYNAMIC)
# Calibration rows per onnxruntime run.
_CALIBRATION_BATCH = 256
_MATMUL_OPS = ("Gemm", "MatMul")


class _Batches(CalibrationDataReader):
    def __init__(self, observations: np.ndarray) -> None:
        self._batches: Iterator[np.ndarray] = iter(np.array_split(
            observations, max(1, len(observations) // _CALIBRATION_BATCH)))

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {packet.INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}


def build(precision: str, fp32: bytes, calibration: np.ndarray, keep_float: Sequence[str] = ()) -> bytes:
    """The `precision` graph of the fp32 graph `fp32`, with short internal names. `calibration` [n, obs_dim]
    float32 sets the int8 activation ranges; `keep_float` names nodes no rung may quantize (an adaptable graph's
    LoRA branch)."""
    return _compact_names(_graph(precision, fp32, calibration, keep_float))


def _graph(precision: str, fp32: bytes, calibration: np.ndarray, keep_float: Sequence[str]) -> bytes:
    if precision == FP32:
        return fp32
    if precision == FP16:
        return _fp16_weights(fp32, keep_float)
    if precision not in (INT8, INT8_FLOAT_OUTPUT, INT8_DYNAMIC):
        raise ValueError(f"precision must be one of {ALL}, got {precision!r}")
    model = onnx.load_from_string(fp32)
    layers = _layers(model)
    exclude = [*keep_float, layers[0]]
    if precision == INT8_FLOAT_OUTPUT:
        exclude.append(layers[-1])
    with tempfile.TemporaryDirectory(prefix="plasma-quantize-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "quantized.onnx"
        source.write_bytes(fp32)
        if precision == INT8_DYNAMIC:
            quantize_dynamic(source, target, weight_type=QuantType.QInt8, reduce_range=True,
                             nodes_to_exclude=exclude)
        else:
            tanh_range = [{"rmin": np.float32(-1.0), "rmax": np.float32(1.0)}]
            quantize_static(
                source, target, _Batches(calibration), quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                nodes_to_exclude=exclude,
                extra_options={"TensorQuantOverrides": {name: tanh_range for name in _tanh_outputs(model)}},
            )
        return target.read_bytes()


def _compact_names(data: bytes) -> bytes:
    """Node and internal tensor names shortened to t0, t1, ...: exporters and quantizers name every tensor after
    its origin, a quarter of a small graph's bytes. The graph's inputs, outputs and LoRA slots keep theirs."""
    model = onnx.load_from_string(data)
    graph = model.graph
    kept = {i.name for i in graph.input} | {o.name for o in graph.output}
    short: dict[str, str] = {}

    def rename(name: str) -> str:
        if not name or name in kept or name.startswith("lora_"):
            return name
        return short.setdefault(name, f"t{len(short)}")

    for init in graph.initializer:
        init.name = rename(init.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    return model.SerializeToString()


def _layers(model: onnx.ModelProto) -> list[str]:
    """The policy's Gemm/MatMul nodes in order (an adaptable graph's LoRA MatMuls not among them)."""
    layers = [node.name for node in model.graph.node if node.op_type in _MATMUL_OPS and not _is_lora(node)]
    if not layers:
        raise ValueError("the graph has no Gemm/MatMul layer")
    return layers


def _is_lora(node: onnx.NodeProto) -> bool:
    return any(name.startswith("lora_") for name in node.input)


def _tanh_outputs(model: onnx.ModelProto) -> list[str]:
    return [node.output[0] for node in model.graph.node if node.op_type == "Tanh"]


def _fp16_weights(fp32: bytes, keep_float: Sequence[str]) -> bytes:
    """Every weight and bias of a Gemm/MatMul layer stored as float16, with a Cast back to float32 in front."""
    model = onnx.load_from_string(fp32)
    graph = model.graph
    kept = set(keep_float)
    layer_inputs = {name for node in graph.node if node.op_type in _MATMUL_OPS and node.name not in kept
                    for name in node.input[1:]}
    overridable = {i.name for i in graph.input}
    casts, initializers = [], []
    for init in graph.initializer:
        if init.name in layer_inputs and init.name not in overridable and init.data_type == TensorProto.FLOAT:
            half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), f"{init.name}.fp16")
            initializers.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], name=f"{init.name}.cast",
                                          to=TensorProto.FLOAT))
        else:
            initializers.append(init)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    nodes = [*casts, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model.SerializeToString()


class _QuantizationAdvice(logging.Filter):
    """onnxruntime.quantization logs advice (run pre-processing, per-tensor notes) at WARNING through the root
    logger itself; the compiler reports what it chose in its own stages instead."""

    _SOURCE = str(Path(onnxruntime.quantization.__file__).parent)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING or not record.pathname.startswith(self._SOURCE)


# On the root logger, which is where onnxruntime.quantization logs (a logger's filters see only its own records).
logging.getLogger().addFilter(_QuantizationAdvice())
