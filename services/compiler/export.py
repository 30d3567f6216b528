"""Policy bundle -> int8 ONNX graph: merge the LoRA adapter, export, quantize, check parity.

The graph is the packet's contract (plasma.packet): observation [batch, obs_dim] float32 in;
"action" ([batch] int64 argmax, or [batch, act_dim] float32 squashed into the bounds) and "output"
(raw logits / pre-squash values) out, with observation normalization inside the graph.
"""

from __future__ import annotations

import importlib.metadata
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import peft
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from torch import nn

from plasma import packet
from plasma.core.errors import FailedPrecondition, PlasmaError
from services.common.bundle import PolicyBundle
from services.common.policy_net import PolicyNet, PolicySpec, actions_from_output

# The dynamo exporter's lowest opset; onnxruntime 1.32 runs it.
OPSET = 18
# A box action "agrees" when every element is within this share of its range of the fp32 action.
BOX_TOLERANCE = 0.02
# fp32 ONNX and merged torch compute the same float32 graph: only rounding may differ.
_SAME_GRAPH_TOLERANCE = 1e-4
# Where this source tree lives; an exported graph must not mention it (no paths leak to devices).
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2]).encode()

Report = Callable[[tuple[str, str]], None]  # (stage, message)


@dataclass(frozen=True)
class Parity:
    num_observations: int
    agreement: float  # share of observations with the same action (within tolerance for a box)
    max_abs_diff: float  # largest |int8 - fp32| over the raw outputs
    tolerance: float  # BOX_TOLERANCE for a box, 0 (exact match) for a discrete action


@dataclass(frozen=True)
class Compiled:
    spec: PolicySpec
    fp32_onnx: bytes
    int8_onnx: bytes
    parity: Parity
    min_agreement: float
    torch_max_abs_diff: float  # fp32 ONNX vs the merged torch network, raw outputs
    normalization: dict[str, Any]


class _PacketGraph(nn.Module):
    """observation -> (action, output): what model.onnx computes."""

    def __init__(self, net: PolicyNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.net(observation)
        return actions_from_output(self.net.spec, raw), raw


def compile_bundle(bundle: PolicyBundle, min_agreement: float, threads: int, report: Report) -> Compiled:
    """Runs merge -> export -> quantize -> parity, reporting each stage; raises if parity fails."""
    spec = bundle.spec
    observations = np.ascontiguousarray(bundle.parity_observations, dtype=np.float32)  # [n, obs_dim]
    if observations.shape[0] == 0:
        raise FailedPrecondition("the policy bundle holds no parity observations; cannot check int8 parity")
    if spec.action_kind == "box" and not all(map(math.isfinite, (*spec.action_low, *spec.action_high))):
        raise FailedPrecondition("a box action needs finite bounds to squash into; the policy spec has ±inf")

    net, rank = merge_adapter(bundle, observations)
    report(("merge", f"merged the LoRA adapter (r={rank}) into {len(spec.hidden_sizes) + 1} linear layers"))

    fp32 = export_onnx(net)
    torch_diff = check_against_torch(net, fp32, observations, threads)
    report(("export", f"fp32 ONNX opset {OPSET}: {len(fp32)} bytes; max |onnx - torch| = {torch_diff:.2e}"))

    int8 = quantize_int8(fp32)
    report(("quantize", f"int8 dynamic: {len(int8)} bytes ({len(int8) / len(fp32):.0%} of fp32)"))

    result = parity(spec, fp32, int8, observations, threads)
    report(("parity", f"int8 agrees with fp32 on {result.agreement:.1%} of {result.num_observations} "
                      f"observations (need {min_agreement:.1%}); max |diff| = {result.max_abs_diff:.4f}"))
    if result.agreement < min_agreement:
        raise FailedPrecondition(
            f"int8 parity too low: the int8 model picks the fp32 action on {result.agreement:.1%} of "
            f"{result.num_observations} parity observations, below min_agreement {min_agreement:.1%}"
        )
    normalization = {"kind": "standardize", "in_graph": True,
                     "obs_mean": net.obs_mean.tolist(), "obs_std": net.obs_std.tolist()}
    return Compiled(spec, fp32, int8, result, min_agreement, torch_diff, normalization)


def merge_adapter(bundle: PolicyBundle, observations: np.ndarray) -> tuple[PolicyNet, int]:
    """Folds the LoRA weights into the base network; returns it with the adapter's rank."""
    adapted = bundle.adapted_network().eval()
    rank = int(adapted.peft_config["default"].r)
    obs = torch.from_numpy(observations)
    with torch.no_grad():
        before = adapted(obs).numpy()
        merged = adapted.merge_and_unload().eval()
        after = merged(obs).numpy()
    # Merging is exact up to rounding; anything more means the adapter did not load as trained.
    if not np.allclose(before, after, rtol=_SAME_GRAPH_TOLERANCE, atol=_SAME_GRAPH_TOLERANCE):
        raise PlasmaError(f"merged network differs from adapted one by {np.abs(before - after).max():.2e}")
    return merged, rank


def export_onnx(net: PolicyNet) -> bytes:
    """Exports the fp32 packet graph with a dynamic batch axis and no exporter metadata."""
    example = torch.zeros(2, net.spec.obs_dim)  # batch 2: a batch of 1 would be specialised away
    program = torch.onnx.export(
        _PacketGraph(net).eval(), (example,), None, dynamo=True, verbose=False, opset_version=OPSET,
        input_names=[packet.INPUT_NAME], output_names=[packet.ACTION_OUTPUT, packet.RAW_OUTPUT],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    model = program.model_proto
    _strip_metadata(model)
    data = model.SerializeToString()
    if _SOURCE_ROOT in data:
        raise PlasmaError("the exported graph still names source paths after stripping metadata")
    return data


def _strip_metadata(model: onnx.ModelProto) -> None:
    # The dynamo exporter stores stack traces (absolute source paths), fx nodes and module names per
    # node and value: +19 % size and a leak of the build machine's layout. None of it affects inference.
    graph = model.graph
    for item in (*graph.node, *graph.input, *graph.output, *graph.initializer, *graph.value_info):
        del item.metadata_props[:]
        item.doc_string = ""
    del graph.value_info[:]  # intermediate shapes; onnxruntime infers them
    del graph.metadata_props[:]
    del model.metadata_props[:]
    model.doc_string = graph.doc_string = ""


def quantize_int8(fp32: bytes) -> bytes:
    """Dynamic int8: weights stored as int8, activations quantized per call (no calibration data)."""
    with tempfile.TemporaryDirectory(prefix="plasma-quantize-") as tmp:
        target = Path(tmp) / "int8.onnx"
        quantize_dynamic(onnx.load_from_string(fp32), target, weight_type=QuantType.QInt8)
        return target.read_bytes()


def run_onnx(model: bytes, observations: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """(action, output) of a packet graph on [n, obs_dim] float32 observations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    action, output = session.run([packet.ACTION_OUTPUT, packet.RAW_OUTPUT], {packet.INPUT_NAME: observations})
    return action, output


def check_against_torch(net: PolicyNet, fp32: bytes, observations: np.ndarray, threads: int) -> float:
    _, onnx_out = run_onnx(fp32, observations, threads)
    with torch.no_grad():
        torch_out = net(torch.from_numpy(observations)).numpy()
    diff = float(np.abs(onnx_out - torch_out).max())
    if not np.allclose(onnx_out, torch_out, rtol=_SAME_GRAPH_TOLERANCE, atol=_SAME_GRAPH_TOLERANCE):
        raise PlasmaError(f"fp32 ONNX differs from the merged torch network by {diff:.2e}")
    return diff


def parity(spec: PolicySpec, fp32: bytes, int8: bytes, observations: np.ndarray, threads: int) -> Parity:
    action32, out32 = run_onnx(fp32, observations, threads)
    action8, out8 = run_onnx(int8, observations, threads)
    if spec.action_kind == "discrete":
        agree, tolerance = action32 == action8, 0.0
    else:
        span = np.asarray(spec.action_high, np.float32) - np.asarray(spec.action_low, np.float32)
        agree, tolerance = np.all(np.abs(action32 - action8) <= BOX_TOLERANCE * span, axis=1), BOX_TOLERANCE
    return Parity(int(observations.shape[0]), float(np.mean(agree)), float(np.abs(out32 - out8).max()), tolerance)


def versions() -> dict[str, str]:
    try:
        plasma_version = importlib.metadata.version("plasma")
    except importlib.metadata.PackageNotFoundError:  # running from a source checkout
        plasma_version = "source"
    return {"plasma": plasma_version, "torch": torch.__version__, "peft": peft.__version__,
            "onnx": onnx.__version__, "onnxruntime": ort.__version__}


def packet_records(compiled: Compiled) -> dict[str, dict[str, Any]]:
    """The manifest's normalization, quantization and parity records for a compiled policy."""
    result = compiled.parity
    return {
        "normalization": compiled.normalization,
        "quantization": {"method": "dynamic", "weights": "int8", "activations": "uint8, scaled per call",
                         "tool": "onnxruntime.quantization.quantize_dynamic",
                         "onnxruntime_version": ort.__version__,
                         "fp32_model_bytes": len(compiled.fp32_onnx), "int8_model_bytes": len(compiled.int8_onnx)},
        "parity": {"num_observations": result.num_observations, "agreement": result.agreement,
                   "max_abs_diff": result.max_abs_diff, "tolerance": result.tolerance,
                   "min_agreement": compiled.min_agreement,
                   "fp32_vs_torch_max_abs_diff": compiled.torch_max_abs_diff},
    }
