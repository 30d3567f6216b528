"""Quantization settings against each other, on real trained policies, on this CPU and on emulated CPUs without
VNNI: where int8 kernels differ between machines and which settings hold parity everywhere.

    .venv/bin/python -m bench.quantization [--env CartPole-v1 Pendulum-v1] [--cpus EPYC-Rome Westmere]

For each environment it trains a policy in process the way the services do (random real steps, world model,
planner distillation), collects the states the policy visits in closed loop in its world model, and builds
the policy's graph in every setting: onnxruntime's dynamic int8 (what the compiler shipped before the
precision ladder) with and without `reduce_range`, with uint8 weights; static QDQ int8 per channel with and
without `reduce_range`; the ladder's rungs (int8 = static, 7-bit weights, first layer float; int8-float-output;
fp16); fp32. Every graph then runs on the visited states, one observation per call as a device serves them,
natively and under QEMU user-mode emulation of each `--cpus` model (EPYC-Rome: AVX2 without AVX-512 or VNNI,
like the AMD EPYC machines where the old packets failed; Westmere: SSE4.1 only). Printed per setting and CPU:
decision agreement with fp32 on decisive states (plasma.parity, near-ties apart), the largest |output - fp32|,
and whether the outputs are bit for bit those of this CPU. Emulation needs `qemu-x86_64` (make emulator).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from plasma import parity

SETTINGS = ("dynamic-s8", "dynamic-s8-reduce-range", "dynamic-u8", "static-s8-per-channel",
            "static-s8-per-channel-reduce-range", "int8", "int8-float-output", "fp16", "fp32")


def _cpu_flags() -> str:
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[-1].split("\n", 1)[0] if Path(
        "/proc/cpuinfo").exists() else ""
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni")
    return ", ".join(f for f in wanted if f" {f}" in flags) or "unknown"


def train_policy(env_id: str, seed: int) -> tuple[bytes, np.ndarray, np.ndarray, bool]:
    """(fp32 graph, real observations, visited states, discrete) of a policy trained in process."""
    import torch

    from plasma.mbrl import threads
    from plasma.mbrl.algorithms.base import PolicyIO
    from plasma.mbrl.algorithms.distill import DistillConfig, train
    from plasma.mbrl.collect import collect
    from plasma.mbrl.fitting import fit
    from plasma.mbrl.models.ensemble import WorldModelConfig
    from plasma.mbrl.planning import PlannerConfig
    from plasma.mbrl.sources import InProcessSource
    from plasma.mbrl.tasks import task_for
    from services.compiler import export
    from services.compiler.closed_loop import Scenario, rollout

    threads.configure_torch(1)
    torch.manual_seed(seed)
    steps = 300 if env_id == "CartPole-v1" else 400
    spec, data = collect(env_id, steps, seed)
    model, _ = fit(spec, data, WorldModelConfig(seed=seed))
    task = task_for(env_id)
    discrete = spec.action.kind == "discrete"
    io = (PolicyIO(spec.observation.flat_dim, "discrete", spec.action.n) if discrete else
          PolicyIO(spec.observation.flat_dim, "box", spec.action.flat_dim, spec.action.low, spec.action.high))
    cfg = DistillConfig(seed=seed) if discrete else DistillConfig(
        seed=seed, start_states="any", planner=PlannerConfig(horizon=25, num_samples=64, num_iterations=3,
                                                                num_elites=8))
    result = train(InProcessSource(model, data, task), io, cfg)
    net = result.peft_model.merge_and_unload().eval()
    fp32 = export.export_onnx(net)
    which = "episode_starts" if discrete else "any"
    scenario = Scenario.draw(model, task, data, which, horizon=500 if discrete else 200, seed=seed, paths=8)
    visited = rollout(scenario, export.Graph(fp32, 1).act).states
    return fp32, data.obs.astype(np.float32), visited, discrete


def build_graphs(fp32: bytes, calibration: np.ndarray, directory: Path) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    from services.compiler import precision

    source = directory / "fp32.onnx"
    source.write_bytes(fp32)
    for name in ("int8", "int8-float-output", "fp16", "fp32"):
        (directory / f"{name}.onnx").write_bytes(precision.build(name, fp32, calibration))
    quantize_dynamic(source, directory / "dynamic-s8.onnx", weight_type=QuantType.QInt8)
    quantize_dynamic(source, directory / "dynamic-s8-reduce-range.onnx", weight_type=QuantType.QInt8,
                     reduce_range=True)
    quantize_dynamic(source, directory / "dynamic-u8.onnx", weight_type=QuantType.QUInt8)
    for name, reduce_range in (("static-s8-per-channel", False), ("static-s8-per-channel-reduce-range", True)):
        quantize_static(source, directory / f"{name}.onnx", precision._Batches(calibration),
                        quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        per_channel=True, reduce_range=reduce_range)


def evaluate(directory: Path, label: str) -> None:
    """Worker: every setting's raw outputs on the states, one observation per call, into out-<label>.npz."""
    import onnxruntime as ort

    states = np.load(directory / "states.npy")
    outputs: dict[str, Any] = {}  # np.savez's keywords: its stubs would check them against allow_pickle
    for name in SETTINGS:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(directory / f"{name}.onnx"), options)
        outputs[name] = np.concatenate([session.run(["output"], {"observation": states[i:i + 1]})[0]
                                        for i in range(len(states))])
    np.savez(directory / f"out-{label}.npz", **outputs)


def report(env_id: str, directory: Path, labels: list[str], discrete: bool) -> None:
    """Box actions are compared as tanh(output), the squash before scaling to the bounds: its span is 2."""
    outputs = {label: dict(np.load(directory / f"out-{label}.npz")) for label in labels}
    native = outputs["native"]
    reference = native["fp32"]
    reference_action = reference.argmax(1) if discrete else np.tanh(reference)
    print(f"\n{env_id}: {len(reference)} visited states, "
          f"{int((~parity.decisive(reference, discrete)).sum())} near-ties (fp32 undecided)")
    heading = f"{'setting':<36} {'bytes':>6} {'deflated':>8}"
    for label in labels:
        heading += f" | {label + ': agree %':>18} {'max|d|':>7} {'= native':>8}"
    print(heading)
    for name in SETTINGS:
        data = (directory / f"{name}.onnx").read_bytes()
        line = f"{name:<36} {len(data):>6} {len(zlib.compress(data, 9)):>8}"
        for label in labels:
            out = outputs[label][name]
            action = out.argmax(1) if discrete else np.tanh(out)
            result = parity.agreement(reference, reference_action, out, action, discrete=discrete,
                                      action_span=None if discrete else np.full(out.shape[1], 2.0))
            same = "yes" if np.array_equal(out, native[name]) else "no"
            line += f" | {100 * result.share:>18.2f} {result.max_abs_diff:>7.3f} {same:>8}"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", nargs="+", default=["CartPole-v1", "Pendulum-v1"])
    parser.add_argument("--cpus", nargs="*", default=["EPYC-Rome", "Westmere"], help="QEMU CPU models to emulate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evaluate", type=Path, help=argparse.SUPPRESS)  # worker mode
    parser.add_argument("--label", default="native", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.evaluate:
        evaluate(args.evaluate, args.label)
        return
    qemu = shutil.which("qemu-x86_64")
    cpus = args.cpus if qemu and platform.machine() == "x86_64" else []
    print(f"$ {' '.join(sys.argv)}\nthis CPU: {platform.processor() or platform.machine()}, flags: {_cpu_flags()}"
          + ("" if cpus or not args.cpus else "; qemu-x86_64 not found: no emulated CPUs (make emulator)"))
    for env_id in args.env:
        fp32, real, visited, discrete = train_policy(env_id, args.seed)
        with tempfile.TemporaryDirectory(prefix="plasma-quantization-") as tmp:
            directory = Path(tmp)
            build_graphs(fp32, np.concatenate([real, visited]), directory)
            np.save(directory / "states.npy", visited)
            evaluate(directory, "native")
            for cpu in cpus:
                subprocess.run([qemu or "", "-cpu", cpu, sys.executable, "-m", "bench.quantization", "--evaluate",
                                str(directory), "--label", cpu], check=True, stderr=subprocess.DEVNULL)
            report(env_id, directory, ["native", *cpus], discrete)


if __name__ == "__main__":
    main()
