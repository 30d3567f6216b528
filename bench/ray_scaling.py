"""Phantom paths and training against the number of Ray workers, all in one run on one machine: in process (the
embedded default, the baseline), then on a local Ray cluster (services/simulator/ray_local.py: a head that runs no
tasks and N worker nodes of one CPU each, reached through Ray Client exactly as the simulator reaches a real one).

    .venv/bin/python -m bench.ray_scaling [--workers 1 2] [--paths 64] [--batch-paths 8]

Per setup: planner-driven phantom paths (the default recipe's planner, which labels every state a policy learns
from: the work that dominates training) in paths/s, and a planner-distillation training (base phase + 2 adapter
rounds of 16 paths) in seconds; each checked to give the same paths and policy as in process. Also the bytes a
request ships to the cluster (the model and the request's plan, once per request) and back (a batch of paths),
from which docs/scaling.md estimates N nodes. One torch thread everywhere. Asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import time
from dataclasses import dataclass

import numpy as np
import ray

from bench import host
from plasma.mbrl import audit, threads
from plasma.mbrl.algorithms.base import PolicyIO, mlp_weights_of
from plasma.mbrl.algorithms.distill import DistillConfig, train
from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import fit
from plasma.mbrl.models.ensemble import EnsembleWorldModel, WorldModelConfig
from plasma.mbrl.planning import PlannerConfig
from plasma.mbrl.rollout import Plan, Runner, batches, run_batch, simulate, start_states
from plasma.mbrl.sources import InProcessSource
from plasma.mbrl.tasks import task_for
from plasma.mbrl.types import PhantomPath, Transitions
from services.simulator.ray_batches import RayBatches
from services.simulator.ray_local import LocalRayCluster

ENV = "CartPole-v1"
# The default recipe's planner (plasma/sdk/recipes.py).
PLANNER = PlannerConfig(horizon=25, num_samples=64, num_iterations=3, num_elites=8)
HORIZON = 200


@dataclass
class Figures:
    setup: str
    paths_per_s: float
    steps_per_s: float
    train_s: float
    same_paths: bool
    same_policy: bool


def fingerprint_paths(paths: list[PhantomPath]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        for array in (path.observations, path.actions, path.rewards, path.expert_actions):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def measure(setup: str, model: EnsembleWorldModel, data: Transitions, args: argparse.Namespace,
            runner: Runner | None) -> tuple[Figures, str, str]:
    task = task_for(ENV)
    support = audit.support_of(model, data)
    started = time.perf_counter()
    paths = list(simulate(model, policy=PLANNER, num_paths=args.paths, horizon=HORIZON, seed=1,
                          start_pool=start_states(data, "any"), label_with_planner=PLANNER, task=task,
                          support=support, batch_paths=args.batch_paths, runner=runner))
    seconds = time.perf_counter() - started
    source = InProcessSource(model, data, task, batch_paths=args.batch_paths, runner=runner)
    cfg = DistillConfig(seed=3, base_paths=16, adapter_rounds=2, paths_per_round=16, epochs=20, horizon=HORIZON,
                        planner=PLANNER, start_states="any")
    started = time.perf_counter()
    result = train(source, PolicyIO.of(model.spec), cfg)
    train_s = time.perf_counter() - started
    weights = mlp_weights_of(result.peft_model)
    policy = hashlib.sha256(b"".join(np.ascontiguousarray(w).tobytes()
                                     for w in [*weights.weights, *weights.biases])).hexdigest()
    steps = sum(p.length for p in paths)
    figures = Figures(setup, len(paths) / seconds, steps / seconds, train_s, True, True)
    return figures, fingerprint_paths(paths), policy


def transfer_bytes(model: EnsembleWorldModel, data: Transitions, batch_paths: int) -> dict[str, int]:
    """What one request ships: the model and plan (once per request, through Ray's object store) and a batch's
    paths (back, per task), as pickled."""
    plan = Plan(HORIZON, start_states(data, "any"), PLANNER, PLANNER, task_for(ENV), audit.support_of(model, data),
                audit.AuditSettings())
    batch = run_batch(model, plan, batches(batch_paths, 1, batch_paths)[0])
    return {"model": len(pickle.dumps(model)), "plan": len(pickle.dumps(plan)),
            f"batch of {batch_paths} paths": len(pickle.dumps(batch))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray worker nodes to measure")
    parser.add_argument("--paths", type=int, default=64, help="planner-driven paths per measurement")
    parser.add_argument("--batch-paths", type=int, default=8, help="paths per batch, i.e. per Ray task")
    parser.add_argument("--real-steps", type=int, default=500, help="random real steps the model is fitted on")
    args = parser.parse_args(argv)
    threads.configure_torch(1)
    print(host.describe("bench.ray_scaling"))

    spec, data = collect(ENV, args.real_steps, seed=0)
    model = fit(spec, data, WorldModelConfig(train_steps=800, seed=0))[0]
    print(f"world model: {model.config.ensemble_size} members x {model.config.num_layers} x "
          f"{model.config.hidden_size}, fitted on {args.real_steps} random {ENV} steps")

    rows: list[Figures] = []
    baseline, paths_print, policy_print = measure("in process (no Ray)", model, data, args, None)
    rows.append(baseline)
    for workers in args.workers:
        with LocalRayCluster(workers=workers) as address:
            runner = RayBatches(address, torch_threads=1)
            figures, paths, policy = measure(f"Ray, {workers} worker{'s' if workers > 1 else ''}", model, data,
                                             args, runner)
            ray.shutdown()
        figures.same_paths, figures.same_policy = paths == paths_print, policy == policy_print
        rows.append(figures)

    print(f"\n{args.paths} planner-driven, planner-labelled {ENV} paths of up to {HORIZON} steps in batches of "
          f"{args.batch_paths}; training: base 16 paths + 2 rounds x 16 paths\n")
    print("| setup | paths/s | path-steps/s | vs in process | training s | vs in process | same paths | same policy |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.setup} | {row.paths_per_s:.2f} | {row.steps_per_s:,.0f} | "
              f"{row.paths_per_s / baseline.paths_per_s:.2f}x | {row.train_s:.1f} | "
              f"{baseline.train_s / row.train_s:.2f}x | {'yes' if row.same_paths else 'NO'} | "
              f"{'yes' if row.same_policy else 'NO'} |")
    sizes = transfer_bytes(model, data, args.batch_paths)
    print("\nbytes shipped per request (pickled): " + ", ".join(f"{name} {size:,}" for name, size in sizes.items()))


if __name__ == "__main__":
    main()
