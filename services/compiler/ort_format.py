"""ONNX graph -> onnxruntime's ORT format (flatbuffers), what minimal onnxruntime builds load on phones: no ONNX
protobuf parser, only the operators a reduced-build config names (`required_operators` writes that config).
The same conversion as onnxruntime.tools.convert_onnx_models_to_ort, through the Python API, in memory."""

from __future__ import annotations

import logging
import pathlib
import tempfile

import onnxruntime as ort


def convert(model: bytes) -> bytes:
    """The graph in ORT format. Basic optimizations only (constant folding, redundant nodes): extended and layout
    ones fuse into kernels of the converting CPU's build, which a minimal build elsewhere may not have."""
    with tempfile.TemporaryDirectory(prefix="plasma-ort-") as tmp:
        target = pathlib.Path(tmp) / "model.ort"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(target)
        options.add_session_config_entry("session.save_model_format", "ORT")
        # As the converter does for x86: QDQ stays QDQ, a device's build fuses it into its own int8 kernels.
        options.add_session_config_entry("session.qdqisint8allowed", "0")
        options.log_severity_level = 3
        ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return target.read_bytes()


def required_operators(ort_model: bytes) -> tuple[str, ...]:
    """The operators the ORT graph runs, as a reduced build's config lines: "ai.onnx;13;ArgMax,Gemm,Tanh"."""
    # Imported here: the module's logger calls logging.basicConfig on import, which must not precede the
    # service's own logging set-up; its INFO line ("Created config in /tmp/...") says nothing to a user.
    from onnxruntime.tools.ort_format_model.utils import create_config_from_models

    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="plasma-ort-") as tmp:
        source, config = pathlib.Path(tmp) / "model.ort", pathlib.Path(tmp) / "required_operators.config"
        source.write_bytes(ort_model)
        create_config_from_models([source], config, enable_type_reduction=False)
        lines = config.read_text().splitlines()
    return tuple(line for line in lines if line and not line.startswith("#"))


def is_ort(model: bytes) -> bool:
    """ORT format files carry the flatbuffer identifier "ORTM" after the root offset."""
    return model[4:8] == b"ORTM"
