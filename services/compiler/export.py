"""Policy bundle -> ONNX graphs: merge the LoRA adapter, export fp32, build adaptable graphs and adapter files,
and run any of them in onnxruntime.

The graph is the packet's contract (plasma.packet): observation [batch, obs_dim] float32 in;
"action" ([batch] int64 argmax, or [batch, act_dim] float32 squashed into the bounds) and "output"
(raw logits / pre-squash values) out, with observation normalization inside the graph.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import onnx
import onnxruntime as ort
import peft
import torch
from torch import nn

from plasma import packet
from plasma.mbrl.policy_net import PolicyNet, actions_from_output, linear_layer_names
from plasma.server.errors import FailedPrecondition, PlasmaError
from services.common.bundle import PolicyBundle

# The dynamo exporter's lowest opset; onnxruntime 1.32 runs it.
OPSET = 18
# fp32 ONNX and merged torch compute the same float32 graph: only rounding may differ.
_SAME_GRAPH_TOLERANCE = 1e-4
# Where this source tree lives; an exported graph must not mention it (no paths leak to devices).
_SOURCE_ROOT = str(Path(__file__).resolve().parents[2]).encode()


class _PacketGraph(nn.Module):
    """observation -> (action, output): what model.onnx computes."""

    def __init__(self, net: PolicyNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw = self.net(observation)
        return actions_from_output(self.net.spec, raw), raw


class Graph:
    """One warm onnxruntime session over a packet graph (plus an adapter file applied to it, if given).

    `per_row` runs one observation per call, as a device serves a control loop: a dynamic int8 graph scales its
    activations by each call's whole input, so its answer for a state depends on the batch it arrives in."""

    def __init__(self, model: bytes, threads: int, adapter: bytes | None = None, per_row: bool = False) -> None:
        self._per_row = per_row
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # adaptable graphs' LoRA inputs are initializers on purpose
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self._run_options: ort.RunOptions | None = None
        if adapter is not None:
            with tempfile.TemporaryDirectory(prefix="plasma-adapter-") as tmp:
                path = Path(tmp) / packet.ADAPTER_FILE
                path.write_bytes(adapter)
                self._adapter = ort.LoraAdapter()  # must outlive the run options that name it
                self._adapter.Load(str(path))
            self._run_options = ort.RunOptions()
            self._run_options.add_active_adapter(self._adapter)

    def run(self, observations: np.ndarray, per_row: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(action, output) for [n, obs_dim] float32 observations, one per call if `per_row` (or the graph's)."""
        batch = np.ascontiguousarray(observations, dtype=np.float32)
        if not (per_row or self._per_row):
            return self._run(batch)
        rows = [self._run(batch[i : i + 1]) for i in range(len(batch))]
        return np.concatenate([a for a, _ in rows]), np.concatenate([o for _, o in rows])

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        action, output = self._session.run([packet.ACTION_OUTPUT, packet.RAW_OUTPUT], {packet.INPUT_NAME: batch},
                                           self._run_options)
        return action, output

    def act(self, observations: np.ndarray) -> np.ndarray:
        return self.run(observations)[0]


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
    modules = dict(adapted.get_base_model().named_modules())
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


@dataclass(frozen=True)
class AdaptableGraph:
    """The base network's fp32 graph with a LoRA branch beside every layer, its factors still initializers:
    quantize it with `lora_nodes` kept float, then `expose_lora_inputs` makes the factors overridable."""

    fp32: bytes
    lora_nodes: tuple[str, ...]  # the LoRA MatMuls, which stay fp32 at every precision
    slots: tuple[packet.Tensor, ...]


def export_adaptable(bundle: PolicyBundle) -> AdaptableGraph:
    weights = lora_weights(bundle)
    graph = _AdaptableGraph(bundle.base_network().eval(), weights).eval()
    model = _export(graph, bundle.spec.obs_dim)
    initializers = {init.name for init in model.graph.initializer}
    if not set(weights) <= initializers:
        raise PlasmaError(f"the exporter renamed the LoRA factors: {sorted(set(weights) - initializers)} missing")
    lora_nodes = tuple(node.name for node in model.graph.node if any(i in weights for i in node.input))
    slots = tuple(packet.Tensor(name, tuple(array.shape)) for name, array in sorted(weights.items()))
    return AdaptableGraph(_serialized(model), lora_nodes, slots)


def expose_lora_inputs(model_bytes: bytes, slots: tuple[packet.Tensor, ...]) -> bytes:
    """The LoRA factors as graph inputs with their initializers as defaults: onnxruntime's adapters replace
    exactly such inputs (quantization must come first: it would quantize graph inputs' consumers otherwise)."""
    model = onnx.load_from_string(model_bytes)
    names = {t.name for t in slots}
    present = {i.name for i in model.graph.input}
    for init in model.graph.initializer:
        if init.name in names and init.name not in present:
            model.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, init.dims))
    return model.SerializeToString()


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


def merge_adapter(bundle: PolicyBundle, observations: np.ndarray) -> tuple[PolicyNet, int]:
    """Folds the LoRA weights into the base network; returns it with the adapter's rank."""
    adapted = bundle.adapted_network().eval()
    rank = int(cast(peft.LoraConfig, adapted.peft_config["default"]).r)
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
    return _serialized(_export(_PacketGraph(net).eval(), net.spec.obs_dim))


def _export(graph: nn.Module, obs_dim: int) -> onnx.ModelProto:
    example = torch.zeros(2, obs_dim)  # batch 2: a batch of 1 would be specialised away
    program = torch.onnx.export(
        graph, (example,), None, dynamo=True, verbose=False, opset_version=OPSET,
        input_names=[packet.INPUT_NAME], output_names=[packet.ACTION_OUTPUT, packet.RAW_OUTPUT],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
    )
    assert program is not None  # dynamo=True without a file: the program itself
    model = program.model_proto
    _strip_metadata(model)
    return model


def _serialized(model: onnx.ModelProto) -> bytes:
    data = model.SerializeToString()
    if _SOURCE_ROOT in data:
        raise PlasmaError("the exported graph still names source paths after stripping metadata")
    return data


def _strip_metadata(model: onnx.ModelProto) -> None:
    # The dynamo exporter stores stack traces (absolute source paths), fx nodes and module names per
    # node and value: +19 % size and a leak of the build machine's layout. None of it affects inference.
    graph = model.graph
    items: tuple[onnx.NodeProto | onnx.ValueInfoProto | onnx.TensorProto, ...] = (
        *graph.node, *graph.input, *graph.output, *graph.initializer, *graph.value_info)
    for item in items:
        del item.metadata_props[:]
        item.doc_string = ""
    del graph.value_info[:]  # intermediate shapes; onnxruntime infers them
    del graph.metadata_props[:]
    del model.metadata_props[:]
    model.doc_string = graph.doc_string = ""


def check_against_torch(net: PolicyNet, fp32: Graph, observations: np.ndarray) -> float:
    """Largest |fp32 ONNX - merged torch| over raw outputs; raises if it is more than rounding."""
    _, onnx_out = fp32.run(observations)
    with torch.no_grad():
        torch_out = net(torch.from_numpy(observations)).numpy()
    if not np.isfinite(torch_out).all():
        raise FailedPrecondition("the trained policy's outputs are not finite (NaN or inf) on its own phantom states: "
                                 "its weights are broken; train the run again")
    diff = float(np.abs(onnx_out - torch_out).max())
    if not np.allclose(onnx_out, torch_out, rtol=_SAME_GRAPH_TOLERANCE, atol=_SAME_GRAPH_TOLERANCE):
        raise PlasmaError(f"the exported fp32 graph differs from the trained network by up to {diff:.2e}: an exporter "
                          f"defect (torch {torch.__version__}, onnx {onnx.__version__}), not a precision problem; "
                          "report it with the run's policy bundle (ExportPolicy)")
    return diff


def versions() -> dict[str, str]:
    try:
        plasma_version = importlib.metadata.version("plasma")
    except importlib.metadata.PackageNotFoundError:  # running from a source checkout
        plasma_version = "source"
    return {"plasma": plasma_version, "torch": torch.__version__, "peft": peft.__version__,
            "onnx": onnx.__version__, "onnxruntime": ort.__version__}
