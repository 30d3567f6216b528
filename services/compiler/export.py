"""Policy bundle -> int8 ONNX graph: merge the LoRA adapter, export, quantize, check parity.

The graph is the packet's contract (plasma.packet): observation [batch, obs_dim] float32 in;
"action" ([batch] int64 argmax, or [batch, act_dim] float32 squashed into the bounds) and "output"
(raw logits / pre-squash values) out, with observation normalization inside the graph.
"""

from __future__ import annotations

import hashlib
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
from services.common.policy_net import PolicyNet, PolicySpec, actions_from_output, linear_layer_names

# The dynamo exporter's lowest opset; onnxruntime 1.32 runs it.
OPSET = 18
# A box action "agrees" when every element is within this share of its range of the fp32 action. Dynamic int8
# quantizes each layer's input per call with one scale, and tanh doubles raw-output errors near the middle of
# the range: a Pendulum-v1 policy (torque in [-2, 2]) differed by up to 3.2 % of its range, and 2 % rejected
# it (90 % agreement). 5 % is 0.2 N m of torque.
BOX_TOLERANCE = 0.05
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
    int8_onnx: bytes  # the packet's payload: the int8 graph, or (kind adapter) the adapter file
    parity: Parity
    min_agreement: float
    torch_max_abs_diff: float  # fp32 ONNX vs the merged torch network, raw outputs
    normalization: dict[str, Any]
    kind: str = packet.KIND_MODEL
    # ADAPTABLE graphs: their LoRA inputs; adapters: the weights they carry. Plus the LoRA rank.
    adapter_tensors: tuple[packet.Tensor, ...] = ()
    lora_rank: int = 0


@dataclass(frozen=True)
class Base:
    """An ADAPTABLE packet an adapter is compiled for: its int8 graph and LoRA slots."""

    model_onnx: bytes
    slots: tuple[packet.Tensor, ...]


class _PacketGraph(nn.Module):
    """observation -> (action, output): what model.onnx computes."""

    def __init__(self, net: PolicyNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.net(observation)
        return actions_from_output(self.net.spec, raw), raw


def compile_bundle(bundle: PolicyBundle, min_agreement: float, threads: int, report: Report,
                   adaptable: bool = False) -> Compiled:
    """Runs merge -> export -> quantize -> parity, reporting each stage; raises if parity fails.

    `adaptable`: quantize the base network and keep the LoRA weights as overridable fp32 graph inputs
    (defaulting to this bundle's adapter) instead of merging them into the int8 weights.
    """
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

    slots: tuple[packet.Tensor, ...] = ()
    if adaptable:
        int8, slots = export_adaptable(bundle)
        report(("quantize", f"int8 dynamic base with {len(slots)} fp32 LoRA inputs (r={rank}): {len(int8)} bytes "
                            f"({len(int8) / len(fp32):.0%} of the merged fp32 graph)"))
    else:
        int8 = quantize_int8(fp32)
        report(("quantize", f"int8 dynamic: {len(int8)} bytes ({len(int8) / len(fp32):.0%} of fp32)"))

    result = parity(spec, fp32, int8, observations, threads)
    _report_parity(report, result, min_agreement)
    return Compiled(spec, fp32, int8, result, min_agreement, torch_diff, _normalization(net),
                    adapter_tensors=slots, lora_rank=rank if adaptable else 0)


def compile_adapter(bundle: PolicyBundle, base: Base, min_agreement: float, threads: int,
                    report: Report) -> Compiled:
    """This bundle's LoRA weights as an onnxruntime adapter for `base`, checked like a merged packet:
    base graph + adapter must choose the merged fp32 network's actions."""
    spec = bundle.spec
    observations = np.ascontiguousarray(bundle.parity_observations, dtype=np.float32)
    if observations.shape[0] == 0:
        raise FailedPrecondition("the policy bundle holds no parity observations; cannot check parity")
    net, rank = merge_adapter(bundle, observations)
    fp32 = export_onnx(net)
    torch_diff = check_against_torch(net, fp32, observations, threads)
    report(("base", f"merged fp32 reference: {len(fp32)} bytes; max |onnx - torch| = {torch_diff:.2e}"))
    weights = lora_weights(bundle)
    expected = {t.name: t.shape for t in base.slots}
    found = {name: tuple(array.shape) for name, array in weights.items()}
    if found != expected:
        raise FailedPrecondition(f"the run's LoRA weights {found} do not fit the base packet's slots {expected} "
                                 "(different rank or layers)")
    adapter = adapter_bytes(weights)
    report(("adapter", f"LoRA adapter r={rank}: {len(adapter)} bytes ({len(weights)} tensors)"))
    action32, out32 = run_onnx(fp32, observations, threads)
    action8, out8 = run_onnx(base.model_onnx, observations, threads, adapter=adapter)
    result = _agreement(spec, action32, out32, action8, out8)
    _report_parity(report, result, min_agreement)
    tensors = tuple(packet.Tensor(name, shape) for name, shape in sorted(found.items()))
    return Compiled(spec, fp32, adapter, result, min_agreement, torch_diff, _normalization(net),
                    kind=packet.KIND_ADAPTER, adapter_tensors=tensors, lora_rank=rank)


def _normalization(net: PolicyNet) -> dict[str, Any]:
    return {"kind": "standardize", "in_graph": True,
            "obs_mean": net.obs_mean.tolist(), "obs_std": net.obs_std.tolist()}


def _report_parity(report: Report, result: Parity, min_agreement: float) -> None:
    report(("parity", f"int8 agrees with fp32 on {result.agreement:.1%} of {result.num_observations} "
                      f"observations (need {min_agreement:.1%}); max |diff| = {result.max_abs_diff:.4f}"))
    if result.agreement < min_agreement:
        raise FailedPrecondition(
            f"int8 parity too low: the int8 model picks the fp32 action on {result.agreement:.1%} of "
            f"{result.num_observations} parity observations, below min_agreement {min_agreement:.1%}"
        )


def base_weights_sha256(bundle: PolicyBundle) -> str:
    """Identifies the base network: runs with equal values can share one ADAPTABLE packet."""
    digest = hashlib.sha256(bundle.spec.to_json().encode())
    for name in sorted(bundle.base_state):
        tensor = bundle.base_state[name].detach().to(torch.float32).contiguous()
        digest.update(f"{name}:{list(tensor.shape)}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def lora_weights(bundle: PolicyBundle) -> dict[str, np.ndarray]:
    """The adapter as the graph's LoRA inputs: per Linear layer i of the body, lora_a_i [in, r] and
    lora_b_i [r, out] with the LoRA scaling folded into b, so that layer(x) = W x + b + (x @ a) @ b."""
    adapted = bundle.adapted_network().eval()
    config = adapted.peft_config["default"]
    if getattr(config, "use_dora", False) or getattr(config, "lora_bias", False):
        raise FailedPrecondition("DoRA and LoRA biases cannot be served as onnxruntime adapters")
    modules = dict(adapted.base_model.model.named_modules())
    weights: dict[str, np.ndarray] = {}
    for index, name in enumerate(linear_layer_names(bundle.spec)):
        layer = modules[name]
        if not hasattr(layer, "lora_A") or "default" not in layer.lora_A:
            raise FailedPrecondition(f"layer {name} carries no LoRA adapter; adaptable packets need every layer")
        with torch.no_grad():
            a = layer.lora_A["default"].weight.detach().T.contiguous()  # [in, r]
            b = (layer.lora_B["default"].weight.detach() * layer.scaling["default"]).T.contiguous()  # [r, out]
        weights[f"lora_a_{index}"] = a.numpy().astype(np.float32)
        weights[f"lora_b_{index}"] = b.numpy().astype(np.float32)
    return weights


class _AdaptableGraph(nn.Module):
    """PolicyNet's forward with a LoRA branch beside every Linear layer, its factors as named parameters
    (lora_a_i, lora_b_i) that become overridable graph inputs."""

    def __init__(self, net: PolicyNet, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.net = net
        for name, array in weights.items():
            self.register_parameter(name, nn.Parameter(torch.from_numpy(array.copy()), requires_grad=False))

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = (observation - self.net.obs_mean) / self.net.obs_std
        index = 0
        for layer in self.net.body:
            if isinstance(layer, nn.Linear):
                h = layer(h) + (h @ getattr(self, f"lora_a_{index}")) @ getattr(self, f"lora_b_{index}")
                index += 1
            else:
                h = layer(h)
        return actions_from_output(self.net.spec, h), h


def export_adaptable(bundle: PolicyBundle) -> tuple[bytes, tuple[packet.Tensor, ...]]:
    """int8 base graph whose LoRA factors stay fp32 and overridable: quantize first, then make the factors
    graph inputs (onnxruntime's adapters replace inputs that have initializer defaults)."""
    weights = lora_weights(bundle)
    graph = _AdaptableGraph(bundle.base_network().eval(), weights).eval()
    example = torch.zeros(2, bundle.spec.obs_dim)
    program = torch.onnx.export(
        graph, (example,), None, dynamo=True, verbose=False, opset_version=OPSET,
        input_names=[packet.INPUT_NAME], output_names=[packet.ACTION_OUTPUT, packet.RAW_OUTPUT],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    model = program.model_proto
    _strip_metadata(model)
    initializers = {init.name for init in model.graph.initializer}
    if not set(weights) <= initializers:
        raise PlasmaError(f"the exporter renamed the LoRA factors: {sorted(set(weights) - initializers)} missing")
    lora_nodes = [node.name for node in model.graph.node if any(i in weights for i in node.input)]
    with tempfile.TemporaryDirectory(prefix="plasma-quantize-") as tmp:
        target = Path(tmp) / "int8.onnx"
        quantize_dynamic(model, target, weight_type=QuantType.QInt8, nodes_to_exclude=lora_nodes)
        quantized = onnx.load(target)
    for init in quantized.graph.initializer:
        if init.name in weights:
            quantized.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, init.dims))
    data = quantized.SerializeToString()
    if _SOURCE_ROOT in data:
        raise PlasmaError("the exported graph still names source paths after stripping metadata")
    slots = tuple(packet.Tensor(name, tuple(array.shape)) for name, array in sorted(weights.items()))
    return data, slots


def adapter_bytes(weights: dict[str, np.ndarray]) -> bytes:
    """An onnxruntime adapter file (AdapterFormat) holding these tensors."""
    adapter = ort.AdapterFormat()
    adapter.set_adapter_version(1)
    adapter.set_model_version(1)
    adapter.set_parameters({name: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))
                            for name, array in sorted(weights.items())})
    with tempfile.TemporaryDirectory(prefix="plasma-adapter-") as tmp:
        target = Path(tmp) / packet.ADAPTER_FILE
        adapter.export_adapter(str(target))
        return target.read_bytes()


def adapter_slots_of(model_onnx: bytes) -> tuple[packet.Tensor, ...]:
    """The LoRA inputs (overridable initializers named lora_*) of an adaptable graph."""
    model = onnx.load_from_string(model_onnx)
    inputs = {i.name for i in model.graph.input}
    return tuple(sorted((packet.Tensor(init.name, tuple(init.dims)) for init in model.graph.initializer
                         if init.name in inputs and init.name.startswith("lora_")), key=lambda t: t.name))


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


def run_onnx(model: bytes, observations: np.ndarray, threads: int,
             adapter: bytes | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(action, output) of a packet graph on [n, obs_dim] float32 observations, optionally with an adapter."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # adaptable graphs' LoRA inputs are initializers on purpose
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    run_options = None
    with tempfile.TemporaryDirectory(prefix="plasma-adapter-") as tmp:
        if adapter is not None:
            path = Path(tmp) / packet.ADAPTER_FILE
            path.write_bytes(adapter)
            lora = ort.LoraAdapter()
            lora.Load(str(path))
            run_options = ort.RunOptions()
            run_options.add_active_adapter(lora)
        action, output = session.run([packet.ACTION_OUTPUT, packet.RAW_OUTPUT], {packet.INPUT_NAME: observations},
                                     run_options)
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
    return _agreement(spec, action32, out32, action8, out8)


def _agreement(spec: PolicySpec, action32: np.ndarray, out32: np.ndarray, action8: np.ndarray,
               out8: np.ndarray) -> Parity:
    if spec.action_kind == "discrete":
        agree, tolerance = action32 == action8, 0.0
    else:
        span = np.asarray(spec.action_high, np.float32) - np.asarray(spec.action_low, np.float32)
        agree, tolerance = np.all(np.abs(action32 - action8) <= BOX_TOLERANCE * span, axis=1), BOX_TOLERANCE
    return Parity(int(action32.shape[0]), float(np.mean(agree)), float(np.abs(out32 - out8).max()), tolerance)


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
    if compiled.kind == packet.KIND_ADAPTER:
        quantization: dict[str, Any] = {"method": "none", "weights": "float32 LoRA factors, scaling folded in",
                                        "tool": "onnxruntime.AdapterFormat", "onnxruntime_version": ort.__version__,
                                        "adapter_bytes": len(compiled.int8_onnx)}
    else:
        quantization = {"method": "dynamic", "weights": "int8", "activations": "uint8, scaled per call",
                        "tool": "onnxruntime.quantization.quantize_dynamic", "onnxruntime_version": ort.__version__,
                        "fp32_model_bytes": len(compiled.fp32_onnx), "int8_model_bytes": len(compiled.int8_onnx)}
        if compiled.adapter_tensors:
            names = [t.name for t in compiled.adapter_tensors]
            quantization["lora"] = f"fp32, not quantized: overridable inputs {names}"
    return {
        "normalization": compiled.normalization,
        "quantization": quantization,
        "parity": {"num_observations": result.num_observations, "agreement": result.agreement,
                   "max_abs_diff": result.max_abs_diff, "tolerance": result.tolerance,
                   "min_agreement": compiled.min_agreement,
                   "fp32_vs_torch_max_abs_diff": compiled.torch_max_abs_diff},
    }
