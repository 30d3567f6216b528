"""The suite (issue 16): Plasma's "default" recipe on six environments, against model-free baselines.

Per environment and seed, Plasma runs as `plasma demo` does: the "default" recipe (plasma.sdk.recipes) through
plasma.sdk.workflow.train_and_deploy against the services as local processes (one LocalStack for the suite).
Every real step of every collection round counts. After each round its policy is evaluated on the 20 real
episodes the workflow evaluates the served packet on (reset seeds from 1,000,000 + seed, never used for
learning); the last round's point is the served packet's own evaluation. Side by side, in the same run:
stable-baselines3 PPO (discrete actions) or SAC (continuous) on the real environment, up to a step cap and
evaluated every tenth of it (bench.sample_efficiency.run_baseline; its 20 evaluation episodes reset from seeds
1,000,000 + 100 * seed, the same as Plasma's for seed 0).

    .venv/bin/python -m bench.suite --envs CartPole-v1 Pendulum-v1 --seeds 0

Wall time per seed: Plasma from its first real step to the packet served on the edge (evaluation not counted);
the baseline's learning time, with one torch thread (evaluations not counted). Writes, under --out:
<env_id>.json (learning curves in plasma.sdk.plot's schema), <env_id>.png (through `plasma plot
learning-curves`), suite.md (the table) and suite.json. Asserts nothing. An environment that cannot be made here
(MuJoCo's without `mujoco`) is reported as skipped with the reason; a run that fails is reported with its error and
the suite goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import gymnasium as gym

from bench import host
from bench.sample_efficiency import Baseline, Outcome, Point, run_baseline
from bench.suite_table import EnvResult, table
from plasma import log as plog
from plasma.mbrl import threads
from plasma.sdk import recipes
from plasma.sdk.client import PlasmaClient
from plasma.sdk.evaluate import run_episodes
from plasma.sdk.local import LocalStack
from plasma.sdk.real_rollouts import mlp_actor
from plasma.sdk.workflow import EVAL_SEED_OFFSET, StageDone, WorkflowConfig, train_and_deploy
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2


@dataclass(frozen=True)
class SuiteEnv:
    # The usual "solved" return (issue 16's goals).
    threshold: float
    baseline: Baseline


# Baseline caps bounded for a 2-core machine (PPO CartPole 50k and SAC Pendulum 10k as bench.sample_efficiency);
# --baseline-steps overrides every cap.
SUITE = {
    "CartPole-v1": SuiteEnv(475.0, Baseline("PPO", 50_000, 5_120)),
    "Pendulum-v1": SuiteEnv(-200.0, Baseline("SAC", 10_000, 1_000)),
    "Acrobot-v1": SuiteEnv(-100.0, Baseline("PPO", 100_000, 10_240)),
    "MountainCarContinuous-v0": SuiteEnv(90.0, Baseline("SAC", 50_000, 5_000)),
    "InvertedPendulum-v5": SuiteEnv(950.0, Baseline("SAC", 20_000, 2_000)),
    "Reacher-v5": SuiteEnv(-5.0, Baseline("SAC", 50_000, 5_000)),
}


class RecordingClient(PlasmaClient):
    """A PlasmaClient that keeps each collection round's dataset and each round's run, for the learning curve."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.datasets: list[simulator_pb2.Dataset] = []
        self.runs: list[trainer_pb2.Run] = []

    def collect(self, *args: Any, **kwargs: Any) -> simulator_pb2.Dataset:
        dataset = super().collect(*args, **kwargs)
        self.datasets.append(dataset)
        return dataset

    def train(self, *args: Any, **kwargs: Any) -> trainer_pb2.Run:
        run = super().train(*args, **kwargs)
        self.runs.append(run)
        return run


def unavailable(env_id: str) -> str | None:
    """Why `env_id` cannot be made here (e.g. MuJoCo missing), or None."""
    try:
        gym.make(env_id).close()
    except Exception as exc:  # gymnasium raises several kinds (DependencyNotInstalled, NameNotFound, ...)
        return f"{type(exc).__name__}: {exc}"
    return None


def _progress(stage: str, event: Any) -> None:
    if isinstance(event, StageDone):
        print(f"    [{stage}] {event.seconds:.1f}s", flush=True)


def run_plasma(stack: LocalStack, env_id: str, seed: int, threshold: float) -> Outcome:
    """The default recipe through the services; one curve point per collection round."""
    cfg: WorkflowConfig = recipes.workflow("default", env_id=env_id, seed=seed)
    client = RecordingClient(stack.endpoints)
    with client:
        summary = train_and_deploy(client, cfg, _progress)
    space = gym.make(env_id).action_space
    points = []
    # Every round but the last: its fp32 policy in process; the last: the packet as the edge served it.
    for dataset, run in zip(client.datasets[:-1], client.runs[:-1], strict=True):
        earlier = run_episodes(env_id, cfg.eval_episodes, seed + EVAL_SEED_OFFSET, mlp_actor(run.policy, space))
        points.append(Point(int(dataset.num_transitions), earlier.mean_return,
                            run.metrics.whole_path_imagined_return))
    points.append(Point(summary.real_steps_used, summary.evaluation.mean_return, summary.whole_path_imagined_return))
    wall = summary.wall_seconds - summary.stage_seconds.get("evaluate", 0.0)
    for point in points:
        print(f"  {env_id} plasma seed={seed} real_steps={point.real_steps} real={point.real_return:.1f} "
              f"imagined(whole paths)={point.imagined_return:.1f}", flush=True)
    print(f"  learns from: {summary.learns_from}; packet {summary.packet_id} "
          f"{summary.packet.size_bytes} B; wall {wall:.0f}s", flush=True)
    for warning in summary.warnings:
        print(f"  warning [{warning.kind}]: {warning.message}", flush=True)
    reached = next((p.real_steps for p in points if p.real_return >= threshold), None)
    return Outcome(env_id, "plasma (default recipe)", seed, points, wall, reached)


def _guarded(result: EnvResult, what: str, seed: int, run: Callable[[], Outcome]) -> Outcome | None:
    """run(), or None with the error recorded: one failing run must not end the suite."""
    try:
        outcome = run()
    except Exception as exc:  # gRPC errors, a service that exited, an environment Plasma cannot handle
        # A gRPC error's str() is a multi-line dump; its code and details fit a table line.
        reason = (f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.RpcError)
                  else f"{type(exc).__name__}: {exc}")
        result.failures.append(f"{what} seed {seed}: {reason}")
        print(f"  FAILED {result.env_id} {what} seed={seed}: {reason}", flush=True)
        return None
    return outcome


def run_env(stack: LocalStack, env_id: str, seeds: list[int], baseline: Baseline | None) -> EnvResult:
    spec = SUITE[env_id]
    result = EnvResult(env_id, spec.threshold)
    result.skipped = unavailable(env_id)
    if result.skipped is not None:
        print(f"{env_id}: skipped ({result.skipped})", flush=True)
        return result
    for seed in seeds:
        print(f"{env_id} plasma seed={seed}", flush=True)
        outcome = _guarded(result, "plasma", seed, partial(run_plasma, stack, env_id, seed, spec.threshold))
        result.plasma += [outcome] if outcome else []
    if baseline is None:
        return result
    for seed in seeds:
        print(f"{env_id} {baseline.algorithm} seed={seed} (cap {baseline.cap} real steps)", flush=True)
        outcome = _guarded(result, baseline.algorithm, seed,
                           partial(run_baseline, env_id, seed, baseline, spec.threshold))
        result.baseline += [outcome] if outcome else []
    return result


def write_curves(out: Path, result: EnvResult) -> Path:
    record = {
        "env_id": result.env_id,
        "threshold": result.threshold,
        "runs": [{"method": o.method, "seed": o.seed, "wall_seconds": o.wall_seconds,
                  "steps_to_threshold": o.steps_to_threshold, "points": [dataclasses.asdict(p) for p in o.points]}
                 for o in result.plasma + result.baseline],
    }
    path = out / f"{result.env_id}.json"
    path.write_text(json.dumps(record, indent=1))
    return path


def plot(curves: Path) -> None:
    """The PNG beside the JSON, through the CLI command a user would run."""
    from plasma import cli

    png = curves.with_suffix(".png")
    print(f"plasma plot learning-curves {curves} --out {png}", flush=True)
    cli.main(["plot", "learning-curves", str(curves), "--out", str(png)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", choices=list(SUITE), default=list(SUITE))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--baseline-steps", type=int,
                        help="every baseline's real-step cap (evaluated every tenth); default per environment")
    parser.add_argument("--no-baselines", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("var/bench/suite"))
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    plog.configure(args.log_level)
    # SIGTERM unwinds like Ctrl-C, so that the LocalStack's service processes are stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The baselines train in this process: one torch thread, as bench.sample_efficiency's runs. With two threads
    # on 2 cores beside another busy process, SAC's updates slowed from 7 to over 100 s per 1,000 steps.
    threads.configure_torch(1)
    print(host.describe("bench.suite"))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="plasma-suite-") as root, LocalStack(Path(root)) as stack:
        for env_id in args.envs:
            baseline = None if args.no_baselines else SUITE[env_id].baseline
            if baseline is not None and args.baseline_steps:
                baseline = Baseline(baseline.algorithm, args.baseline_steps, max(1, args.baseline_steps // 10))
            result = run_env(stack, env_id, args.seeds, baseline)
            results.append(result)
            if result.plasma or result.baseline:
                plot(write_curves(args.out, result))
    text = table(results)
    (args.out / "suite.md").write_text(text + "\n")
    (args.out / "suite.json").write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    print(f"\n{text}\n\nload average at the end: {host.load()}; written to {args.out}/")


if __name__ == "__main__":
    main()
