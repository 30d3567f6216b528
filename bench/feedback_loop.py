"""Does the feedback loop close a sim-to-real gap? Learn on CartPole-v1, deploy onto a changed CartPole, measure the
drop, then run feedback loops on a few hundred real steps the edge recorded and measure the recovery.

    .venv/bin/python -m bench.feedback_loop [--variant plasma/CartPoleReversed-v0] [--steps 500] [--loops 2]

The four services run as local processes, the edge recording experience (PLASMA_EDGE_EXPERIENCE_DIR). The policy
is learned with the demo's own recipe on CartPole-v1. The "device" is this process: it drives the changed
environment (plasma.sdk.variants) through the edge's Control stream for `--steps` steps per loop, sending each step's
reward and done flags; only those steps reach the simulator (ExportExperience -> UploadTransitions). Each loop
then fine-tunes the world model, trains a new adapter on the first run's base policy, compiles and deploys
(plasma.sdk.feedback.run_loop). Every return is the mean over `--episodes` evaluation episodes through Act (not
recorded), on seeds no device episode used.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from plasma.sdk import recipes
from plasma.sdk.client import PlasmaClient
from plasma.sdk.evaluate import Evaluation, run_episodes
from plasma.sdk.feedback import LoopConfig, drive, run_loop
from plasma.sdk.local import LocalStack
from plasma.sdk.variants import PREFIX, VARIANTS
from plasma.sdk.workflow import EVAL_SEED_OFFSET, train_and_deploy

# Device episodes start from seeds far from the collection's and the evaluation's.
DEVICE_SEED_OFFSET = 500_000
GOAL = 0.95


def cpu_model() -> str:
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.processor() or "unknown")


def row(label: str, env_id: str, evaluation: Evaluation, reference: float, steps: str) -> str:
    share = evaluation.mean_return / reference if reference else float("nan")
    return (f"{label:<18} {env_id:<28} {evaluation.mean_return:7.1f} ± {evaluation.std_return:5.1f} "
            f"{share:10.1%} {steps:>14}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="plasma/CartPoleReversed-v0", choices=sorted(VARIANTS),
                        help="the changed CartPole (plasma.sdk.variants)")
    parser.add_argument("--steps", type=int, default=500, help="real steps the edge records per loop")
    parser.add_argument("--loops", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=20, help="evaluation episodes per figure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", help="store root for the services (default: a new temp dir)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    command = " ".join(["python", "-m", "bench.feedback_loop", *(sys.argv[1:] if argv is None else argv)])
    changed = PREFIX + args.variant
    root = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="plasma-feedback-"))
    eval_seed = args.seed + EVAL_SEED_OFFSET
    started = time.monotonic()
    lines: list[str] = []

    def note(text: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {text}", file=sys.stderr, flush=True)

    stack = LocalStack(root, env={"PLASMA_EDGE_EXPERIENCE_DIR": str(root / "experience")})
    with stack, PlasmaClient(stack.endpoints) as client:
        cfg = recipes.workflow("default", seed=args.seed, eval_episodes=args.episodes)
        summary = train_and_deploy(client, cfg)
        before = summary.evaluation
        note(f"learned on CartPole-v1: packet {summary.packet_id}, return {before.mean_return:.1f}")
        after_change = run_episodes(changed, args.episodes, eval_seed, client.act)
        note(f"on {args.variant}: return {after_change.mean_return:.1f}")
        lines.append(row("before the change", "CartPole-v1", before, before.mean_return,
                         f"{summary.real_steps_used} (learn)"))
        lines.append(row("after the change", args.variant, after_change, before.mean_return, "0"))
        model_id, append_to, from_sequence = summary.model_id, "", 0
        for number in range(1, args.loops + 1):
            device = drive(client, changed, args.steps, args.seed + DEVICE_SEED_OFFSET + 1000 * number)
            note(f"loop {number}: device drove {device.steps} steps, {len(device.returns)} episodes ended "
                 f"(mean {np.mean(device.returns) if device.returns else float('nan'):.1f})")
            loop = run_loop(client, LoopConfig(model_id=model_id, base_run_id=summary.run_id, append_to=append_to,
                                               from_sequence=from_sequence, world_model=cfg.world_model,
                                               train=cfg.train))
            evaluation = run_episodes(changed, args.episodes, eval_seed, client.act)
            note(f"loop {number}: packet {loop.packet.packet_id} v{loop.packet.version}, {loop.real_steps} steps "
                 f"uploaded, return {evaluation.mean_return:.1f}; stages {loop.stage_seconds}")
            lines.append(row(f"after loop {number}", args.variant, evaluation, before.mean_return,
                             str(loop.real_steps)))
            model_id, append_to, from_sequence = loop.model.model_id, loop.dataset.dataset_id, loop.next_sequence
    physics = ", ".join(f"{k}={v:g}" for k, v in VARIANTS[args.variant].items())
    print(f"feedback loop: learned on CartPole-v1, deployed on {args.variant} ({physics}); seed {args.seed}, "
          f"{args.episodes} evaluation episodes per row")
    print(f"{'':<18} {'environment':<28} {'mean return':>15} {'of before':>10} {'real steps':>14}")
    print("\n".join(lines))
    print(f"goal: >= {GOAL:.0%} of the unchanged return within 2 loops of <= 500 recorded steps each")
    print(f"cpu: {cpu_model()}")
    print(f"command: {command}")
    print(f"wall time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
