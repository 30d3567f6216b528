"""A policy bundle to a packet's contents: merge -> export fp32 -> fp32 in closed loop -> calibrate -> the
precision ladder (the first candidate the gate passes) -> pruning, if the profile prunes (the largest sparsity the
gate passes) -> self-test and records for the manifest."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from plasma import packet, parity
from plasma.mbrl.policy_net import PolicyNet, PolicySpec
from plasma.server.errors import FailedPrecondition
from services.common.bundle import PolicyBundle
from services.compiler import export, gate, ort_format, precision, profiles, pruning
from services.compiler.closed_loop import Scenario

Report = Callable[[tuple[str, str]], None]  # (stage, message)
# Calibration rows of each kind (real, visited): onnxruntime's calibration runs on all of them.
_CALIBRATION_ROWS = 4096


@dataclass(frozen=True)
class Settings:
    min_agreement: float
    threads: int
    precision: str | None = None  # None: the ladder
    float_fallback: bool = False
    seed: int = 0
    profile: profiles.Profile = profiles.DEFAULT
    compression_level: int | None = None  # the archive's DEFLATE level; None: zlib's default
    size_budget_bytes: int = 0  # 0: none (the compiler checks the built packet; recorded here)

    @property
    def recorded(self) -> bool:
        """Whether the manifest records the profile: not for a plain request, whose bytes stay what they were."""
        return (self.profile is not profiles.DEFAULT or self.compression_level is not None
                or self.size_budget_bytes > 0)


@dataclass(frozen=True)
class Attempt:
    precision: str
    verdict: gate.Verdict
    model_bytes: int


@dataclass(frozen=True)
class PruneAttempt:
    sparsity: float
    verdict: gate.Verdict
    model_bytes: int


@dataclass(frozen=True)
class Packaging:
    """What the profile chose beyond the precision, and what it saved: the manifest's "profile" record."""

    settings: Settings
    unpruned: bytes  # the chosen precision's graph before pruning
    pruning: tuple[PruneAttempt, ...] = ()
    required_operators: tuple[str, ...] = ()  # ORT graphs: a reduced build's operator config

    @property
    def sparsity(self) -> float:
        passed = [a.sparsity for a in self.pruning if a.verdict.passed]
        return passed[-1] if passed else 0.0


@dataclass(frozen=True)
class Compiled:
    spec: PolicySpec
    fp32_onnx: bytes
    payload: bytes  # the packet's graph, or (kind adapter) its adapter file
    precision: str
    attempts: tuple[Attempt, ...]
    reference_return: float
    closed_loop_paths: int
    closed_loop_horizon: int
    self_test: packet.SelfTest
    min_agreement: float
    torch_max_abs_diff: float
    normalization: dict[str, Any]
    calibration: dict[str, int]
    kind: str = packet.KIND_MODEL
    # ADAPTABLE graphs: their LoRA inputs; adapters: the weights they carry. Plus the LoRA rank.
    adapter_tensors: tuple[packet.Tensor, ...] = ()
    lora_rank: int = 0
    fallback: bytes | None = None
    packaging: Packaging | None = None  # model packets

    @property
    def chosen(self) -> Attempt:
        return self.attempts[-1]

    @property
    def verdict(self) -> gate.Verdict:
        """The gate's verdict on the shipped graph: the last sparsity it passed, else the chosen precision's."""
        passed = [a.verdict for a in self.packaging.pruning if a.verdict.passed] if self.packaging else []
        return passed[-1] if passed else self.chosen.verdict

    @property
    def graph_format(self) -> str:
        return self.packaging.settings.profile.graph_format if self.packaging else profiles.ONNX


@dataclass(frozen=True)
class Base:
    """An ADAPTABLE packet an adapter is compiled for: its graph, LoRA slots and precision."""

    model_onnx: bytes
    slots: tuple[packet.Tensor, ...]
    precision: str


def compile_model(bundle: PolicyBundle, scenario: Scenario, real_observations: np.ndarray, settings: Settings,
                  report: Report, adaptable: bool = False) -> Compiled:
    """The smallest graph that passes the gate (or the one `settings.precision` names); raises
    FailedPrecondition when none passes. `adaptable`: the base network with fp32 LoRA inputs (defaulting to
    this bundle's adapter) instead of the adapter merged in."""
    spec = bundle.spec
    net, rank, torch_diff, fp32, reference = _reference(bundle, scenario, settings, report)
    calibration, sources = _calibration(real_observations, reference, settings.seed)
    report(("calibrate", f"{len(calibration)} calibration states: {sources['real']} real, "
                         f"{sources['visited']} visited by the fp32 policy, {sources['held_out']} held out"))
    if adaptable:
        adaptable_graph = export.export_adaptable(bundle)
        source, keep_float, slots = adaptable_graph.fp32, adaptable_graph.lora_nodes, adaptable_graph.slots
    else:
        source, keep_float, slots = fp32, (), ()
    rungs = settings.profile.rungs if settings.precision is None else (settings.precision,)
    graph_format = settings.profile.graph_format

    def candidate(rung: str, fp32_source: bytes) -> tuple[bytes, gate.Verdict]:
        model = precision.build(rung, fp32_source, calibration, keep_float)
        if slots:
            model = export.expose_lora_inputs(model, slots)
        if graph_format == profiles.ORT:
            model = ort_format.convert(model)  # judged as it ships: the ORT graph itself
        graph = export.Graph(model, settings.threads, per_row=rung == precision.INT8_DYNAMIC)
        return model, gate.judge(graph, reference, scenario, settings.min_agreement)

    attempts: list[Attempt] = []
    for rung in rungs:
        model, verdict = candidate(rung, source)
        attempts.append(Attempt(rung, verdict, len(model)))
        outcome = "passed" if verdict.passed else f"refused: {verdict.reason}"
        report((rung, f"{len(model)} bytes; {verdict.describe()}; {outcome}"))
        if verdict.passed:
            unpruned, pruned_attempts = model, []
            for sparsity in pruning.SPARSITIES if settings.profile.prune else ():
                pruned, pruned_verdict = candidate(rung, pruning.prune(source, sparsity))
                pruned_attempts.append(PruneAttempt(sparsity, pruned_verdict, len(pruned)))
                outcome = "passed" if pruned_verdict.passed else f"refused: {pruned_verdict.reason}"
                report(("prune", f"{rung} at sparsity {sparsity:.0%}: {len(pruned)} bytes; "
                                 f"{pruned_verdict.describe()}; {outcome}"))
                if not pruned_verdict.passed:
                    break
                model, verdict = pruned, pruned_verdict
            operators = ort_format.required_operators(model) if graph_format == profiles.ORT else ()
            fallback = (precision.build(precision.FP32, fp32, calibration)
                        if settings.float_fallback and rung != precision.FP32 else None)
            return Compiled(
                spec, fp32, model, rung, tuple(attempts), reference.rollouts.mean_return, len(scenario.starts),
                scenario.horizon, _self_test(reference, verdict, settings.min_agreement), settings.min_agreement,
                torch_diff, _normalization(net), sources, adapter_tensors=slots, lora_rank=rank if adaptable else 0,
                fallback=fallback, packaging=Packaging(settings, unpruned, tuple(pruned_attempts), operators))
    tried = "; ".join(f"{a.precision}: {a.verdict.reason}" for a in attempts)
    raise FailedPrecondition(
        f"no precision keeps parity with the fp32 policy ({tried}). "
        + ("Even fp32 fails, so the exported graph does not compute what the trained policy does: report this "
           "as a bug with the run's policy bundle." if attempts[-1].precision == precision.FP32 else
           "Compile with precision unspecified (the ladder) to allow a larger graph, or lower min_agreement.")
    )


def compile_adapter(bundle: PolicyBundle, base: Base, scenario: Scenario, settings: Settings,
                    report: Report) -> Compiled:
    """This bundle's LoRA weights as an onnxruntime adapter for `base`, gated like a merged packet: base graph +
    adapter must act like the merged fp32 network in closed loop."""
    spec = bundle.spec
    net, rank, torch_diff, fp32, reference = _reference(bundle, scenario, settings, report)
    weights = export.lora_weights(bundle)
    expected = {t.name: t.shape for t in base.slots}
    found = {name: tuple(array.shape) for name, array in weights.items()}
    if found != expected:
        raise FailedPrecondition(f"the run's LoRA weights {found} do not fit the base packet's slots {expected} "
                                 "(different rank or layers)")
    adapter = export.adapter_bytes(weights)
    graph = export.Graph(base.model_onnx, settings.threads, adapter=adapter,
                         per_row=base.precision == precision.INT8_DYNAMIC)
    verdict = gate.judge(graph, reference, scenario, settings.min_agreement)
    report(("adapter", f"LoRA adapter r={rank}: {len(adapter)} bytes on the {base.precision} base; "
                       f"{verdict.describe()}"))
    if not verdict.passed:
        raise FailedPrecondition(f"the adapter on base graph ({base.precision}) does not keep parity with the merged "
                                 f"fp32 policy: {verdict.reason}; compile a merged packet instead")
    tensors = tuple(packet.Tensor(name, shape) for name, shape in sorted(found.items()))
    return Compiled(spec, fp32, adapter, base.precision, (Attempt(base.precision, verdict, len(adapter)),),
                    reference.rollouts.mean_return, len(scenario.starts), scenario.horizon,
                    _self_test(reference, verdict, settings.min_agreement), settings.min_agreement, torch_diff,
                    _normalization(net), {}, kind=packet.KIND_ADAPTER, adapter_tensors=tensors, lora_rank=rank)


def _reference(bundle: PolicyBundle, scenario: Scenario, settings: Settings,
               report: Report) -> tuple[PolicyNet, int, float, bytes, gate.Reference]:
    """Merged network, LoRA rank, |onnx - torch|, the fp32 graph and its closed-loop behaviour."""
    spec = bundle.spec
    held_out = np.ascontiguousarray(bundle.parity_observations, dtype=np.float32)  # [n, obs_dim]
    if held_out.shape[0] == 0:
        raise FailedPrecondition("the policy bundle holds no held-out phantom states; cannot check parity")
    if spec.action_kind == "box" and not np.isfinite([*spec.action_low, *spec.action_high]).all():
        raise FailedPrecondition("a box action needs finite bounds to squash into; the policy spec has ±inf")
    net, rank = export.merge_adapter(bundle, held_out)
    report(("merge", f"merged the LoRA adapter (r={rank}) into {len(spec.hidden_sizes) + 1} linear layers"))
    fp32 = export.export_onnx(net)
    graph = export.Graph(fp32, settings.threads)
    torch_diff = export.check_against_torch(net, graph, held_out)
    report(("export", f"fp32 ONNX opset {export.OPSET}: {len(fp32)} bytes; max |onnx - torch| = {torch_diff:.2e}"))
    span = None if spec.action_kind == "discrete" else np.subtract(spec.action_high, spec.action_low)
    reference = gate.Reference.measure(graph, scenario, held_out, spec.action_kind == "discrete", span, settings.seed)
    rollouts = reference.rollouts
    report(("reference", f"fp32 in closed loop: {len(rollouts.returns)} paths of up to {scenario.horizon} steps in "
                         f"the world model, mean return {rollouts.mean_return:.2f}, {len(rollouts.states)} states"))
    return net, rank, torch_diff, fp32, reference


def _calibration(real: np.ndarray, reference: gate.Reference, seed: int) -> tuple[np.ndarray, dict[str, int]]:
    """Real observations and the states the fp32 policy visits: where the packet's inputs will come from."""
    rng = np.random.default_rng(seed)

    def sample(rows: np.ndarray) -> np.ndarray:
        return rows[np.sort(rng.permutation(len(rows))[:_CALIBRATION_ROWS])]

    parts = {"real": sample(real.astype(np.float32)), "visited": sample(reference.rollouts.states),
             "held_out": reference.held_out}
    return np.concatenate(list(parts.values())), {name: len(rows) for name, rows in parts.items()}


def _self_test(reference: gate.Reference, verdict: gate.Verdict, min_agreement: float) -> packet.SelfTest:
    observations = verdict.self_test_observations
    reference_action, reference_output = reference.graph.run(observations)
    return packet.SelfTest(observations=observations, reference_output=reference_output,
                           reference_action=reference_action, expected_output=verdict.self_test_output,
                           min_agreement=min_agreement)


def _normalization(net: PolicyNet) -> dict[str, Any]:
    return {"kind": "standardize", "in_graph": True,
            "obs_mean": net.obs_mean.tolist(), "obs_std": net.obs_std.tolist()}


_METHODS = {
    precision.INT8: {"method": "static QDQ, first layer float",
                     "weights": "int8 per output channel, 7-bit range (reduce_range); first layer float32",
                     "activations": "observation float32; tanh outputs int8 over [-1, 1]; layer outputs int8, "
                                    "ranges calibrated"},
    precision.INT8_FLOAT_OUTPUT: {"method": "static QDQ, first and output layers float",
                                  "weights": "int8 per output channel, 7-bit range; first and output layers float32",
                                  "activations": "observation float32; tanh outputs int8 over [-1, 1]; hidden layer "
                                                 "outputs int8, ranges calibrated"},
    precision.FP16: {"method": "float16 weights", "weights": "float16, cast to float32", "activations": "float32"},
    precision.FP32: {"method": "none", "weights": "float32", "activations": "float32"},
    precision.INT8_DYNAMIC: {"method": "dynamic", "weights": "int8, 7-bit range (reduce_range)",
                             "activations": "uint8, scaled per call"},
}


def _attempt_record(attempt: Attempt) -> dict[str, Any]:
    verdict = attempt.verdict
    return {"precision": attempt.precision, "passed": verdict.passed, "reason": verdict.reason,
            "agreement": verdict.agreement.share, "closed_loop_return": verdict.closed_loop_return,
            "self_test_agreement": verdict.self_test.share, "model_bytes": attempt.model_bytes}


def packet_records(compiled: Compiled) -> dict[str, dict[str, Any]]:
    """The manifest's normalization, quantization and parity records for a compiled policy."""
    chosen = compiled.verdict
    if compiled.kind == packet.KIND_ADAPTER:
        quantization: dict[str, Any] = {
            "precision": compiled.precision, "method": "none",
            "weights": f"float32 LoRA factors, scaling folded in, for a {compiled.precision} base",
            "tool": "onnxruntime.AdapterFormat", "onnxruntime_version": ort.__version__,
            "adapter_bytes": len(compiled.payload)}
    else:
        quantization = {"precision": compiled.precision, **_METHODS[compiled.precision],
                        "tool": "onnxruntime.quantization", "onnxruntime_version": ort.__version__,
                        "fp32_model_bytes": len(compiled.fp32_onnx), "model_bytes": len(compiled.payload),
                        "fp32_model_sha256": hashlib.sha256(compiled.fp32_onnx).hexdigest(),
                        "calibration": compiled.calibration,
                        "ladder": [_attempt_record(a) for a in compiled.attempts]}
        if compiled.adapter_tensors:
            names = [t.name for t in compiled.adapter_tensors]
            quantization["lora"] = f"fp32, not quantized: overridable inputs {names}"
        if compiled.fallback is not None:
            quantization["fallback"] = {"file": packet.FALLBACK_FILE, "precision": precision.FP32,
                                        "model_bytes": len(compiled.fallback)}
    agreement = chosen.agreement
    profile = ({"profile": profile_record(compiled)}
               if compiled.packaging is not None and compiled.packaging.settings.recorded else {})
    return {
        **profile,
        "normalization": compiled.normalization,
        "quantization": quantization,
        "parity": {"states": agreement.states, "near_ties": agreement.near_ties, "agreement": agreement.share,
                   "max_abs_diff": agreement.max_abs_diff, "near_tie_margin": parity.NEAR_TIE_MARGIN,
                   "box_tolerance": parity.BOX_TOLERANCE, "min_agreement": compiled.min_agreement,
                   "closed_loop": {"paths": compiled.closed_loop_paths, "horizon": compiled.closed_loop_horizon,
                                   "fp32_return": compiled.reference_return, "return": chosen.closed_loop_return,
                                   "return_tolerance": gate.RETURN_TOLERANCE},
                   "fp32_vs_torch_max_abs_diff": compiled.torch_max_abs_diff},
    }


def profile_record(compiled: Compiled) -> dict[str, Any]:
    """The manifest's "profile": the profile's name and what it chose, and the graph's size before (unpruned,
    deflated at zlib's default level) and after (shipped, deflated at the chosen level)."""
    packaging, shipped = compiled.packaging, compiled.payload
    assert packaging is not None  # model packets
    settings = packaging.settings
    record: dict[str, Any] = {
        "name": settings.profile.name, "precision": compiled.precision,
        "rungs": list(settings.profile.rungs) if settings.precision is None else [settings.precision],
        "format": settings.profile.graph_format, "batch": "dynamic",
        "compression": {"method": "deflate", "level": profiles.level(settings.compression_level)},
        "pruning": {"method": "magnitude, per layer, weights only" if settings.profile.prune else "none",
                    "sparsity": packaging.sparsity,
                    "tried": [{"sparsity": a.sparsity, "passed": a.verdict.passed, "reason": a.verdict.reason,
                               "agreement": a.verdict.agreement.share,
                               "closed_loop_return": a.verdict.closed_loop_return, "model_bytes": a.model_bytes}
                              for a in packaging.pruning]},
        "sizes": {"model_bytes_before": len(packaging.unpruned), "model_bytes_after": len(shipped),
                  "deflated_before": profiles.deflated_size(packaging.unpruned, None),
                  "deflated_after": profiles.deflated_size(shipped, settings.compression_level)},
        "size_budget_bytes": settings.size_budget_bytes,
    }
    if packaging.required_operators:
        record["required_operators"] = list(packaging.required_operators)
    return record
