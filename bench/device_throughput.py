"""Phantom paths per second on the CPU and on a CUDA GPU, in the same run: 200-step paths with the audit on, for a
5 x 3 x 128 ensemble (the default world model) and a 7 x 4 x 512 one (members x hidden layers x width).

    .venv/bin/python -m bench.device_throughput [--horizon T] [--seconds S] [--torch-threads K] [--gpu-batch-paths B]

bench/gpu_check.sh runs it after the GPU tests. Without a GPU it measures the CPU alone and says so.

Model: CartPole-v1, fitted for 50 steps on 2,000 random real steps (real normalisation and audit support; the
figures do not depend on how well it predicts). Paths are scored by a tracking task without termination bounds, so
that every path runs its full horizon; random actions; the audit on with its default settings (what Simulate does).
Both devices roll out copies of the same weights, in batches of rollout.BATCH_PATHS on the CPU and
rollout.GPU_BATCH_PATHS on the GPU, for at least --seconds each after a warm-up batch; paths/s counts paths
delivered as PhantomPath objects with their audit, as the simulator streams them.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import torch

from plasma.mbrl import audit, devices, rollout
from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import fit
from plasma.mbrl.models.ensemble import EnsembleWorldModel, WorldModelConfig
from plasma.mbrl.tasks import Task, task_from_spec
from plasma.mbrl.types import TaskSpecData, TrackingSpec, Transitions

# (members, hidden layers, width) of the two ensembles the issue asks for.
ENSEMBLES = ((5, 3, 128), (7, 4, 512))


def measure(model: EnsembleWorldModel, data: Transitions, task: Task, support: audit.Support, horizon: int,
            batch: int, seconds: float) -> tuple[float, int]:
    """(paths/s, paths timed): batches of `batch` paths, one untimed first, then for at least `seconds`."""
    pool = rollout.start_states(data, "any")

    def batch_of_paths(seed: int) -> int:
        paths = list(rollout.simulate(model, policy=None, num_paths=batch, horizon=horizon, seed=seed,
                                      start_pool=pool, task=task, support=support))
        if any(p.length != horizon or p.audit is None for p in paths):
            raise RuntimeError("every path must run its full horizon and carry its audit")
        return len(paths)

    batch_of_paths(0)  # warm-up: CUDA context and kernels, allocator, first-call overheads
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    paths, seed, started = 0, 1, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds or paths == 0:
        paths += batch_of_paths(seed)
        seed += 1
    return paths / elapsed, paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--horizon", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per ensemble and device")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="CPU threads (default 1, as the service's PLASMA_SIMULATOR_TORCH_THREADS)")
    parser.add_argument("--gpu-batch-paths", type=int, default=rollout.GPU_BATCH_PATHS,
                        help="paths rolled out together on the GPU (rollout.GPU_BATCH_PATHS)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    rollout.GPU_BATCH_PATHS = args.gpu_batch_paths
    targets = [devices.CPU]
    if torch.cuda.is_available():
        targets.append(devices.resolve("cuda"))

    spec, data = collect("CartPole-v1", 2000, seed=0)
    task = task_from_spec(TaskSpecData(objective="tracking", tracking=TrackingSpec(
        target_observation=(0.0,) * 4, state_weights=(1.0, 0.0, 1.0, 0.0), alive_bonus=1.0)), spec)
    assert task is not None
    rows = []
    for members, layers, width in ENSEMBLES:
        cfg = WorldModelConfig(ensemble_size=members, num_layers=layers, hidden_size=width, train_steps=50,
                               batch_size=64)
        fitted, _ = fit(spec, data, cfg, device=targets[-1])
        for device in targets:
            model = copy.deepcopy(fitted).to(device)
            support = audit.support_of(model, data)
            batch = rollout.BATCH_PATHS if device.type == "cpu" else rollout.GPU_BATCH_PATHS
            rate, paths = measure(model, data, task, support, args.horizon, batch, args.seconds)
            rows.append((f"{members} x {layers} x {width}", device, rate, paths, batch))

    command = ["python", "-m", "bench.device_throughput", *(sys.argv[1:] if argv is None else argv)]
    print(f"command: {' '.join(command)}")
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}; torch threads {args.torch_threads}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for device in targets:
        print(f"{device}: {devices.describe(device)}" + (f", {os.cpu_count()} CPUs" if device.type == "cpu" else ""))
    if len(targets) == 1:
        print("cuda: torch sees no CUDA GPU here; CPU figures only")
    print(f"{args.horizon}-step paths, audit on, random actions, at least {args.seconds:.0f} s per row\n")
    print("| ensemble | device | paths/s | path-steps/s | batch | paths timed | vs CPU |")
    print("|---|---|---:|---:|---:|---:|---:|")
    cpu_rates = {name: rate for name, device, rate, _, _ in rows if device.type == "cpu"}
    for name, device, rate, paths, batch in rows:
        print(f"| {name} | {device} | {rate:,.0f} | {rate * args.horizon:,.0f} | {batch} | {paths} | "
              f"{rate / cpu_rates[name]:.1f}x |")


if __name__ == "__main__":
    main()
