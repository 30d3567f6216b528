"""Learns CartPole-v1 in imagination from a few hundred random real steps, all in one process:
collect -> fit the world model -> distill the planner into a LoRA policy -> evaluate on real episodes.

    .venv/bin/python -m bench.learn_cartpole --seeds 0 1 2 --real-steps 250 --preset full

The 20 evaluation episodes use environment seeds never used for learning. Torch runs on one thread,
as in the services, which share two cores.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

from plasma.core import logging as plog
from services.common import threads
from services.simulator.collect import collect
from services.simulator.inprocess import InProcessSource
from services.simulator.mlp_policy import MlpPolicy
from services.simulator.tasks import task_for
from services.simulator.world_model import WorldModelConfig, fit
from services.trainer.distill import DistillConfig, PolicyIO, mlp_weights_of, train

ENV_ID = "CartPole-v1"
EVAL_EPISODES = 20
# Evaluation episodes reset with seeds from here on; collection uses the run's seed, far below.
EVAL_SEED_BASE = 1_000_000
PRESETS = {
    "full": (WorldModelConfig(), DistillConfig()),
    # For the CI pipeline test: about half the work of "full", still far above random (~22).
    "small": (WorldModelConfig(train_steps=500), DistillConfig(horizon=100)),
}


def evaluate(policy: MlpPolicy, seed: int) -> list[float]:
    env = gym.make(ENV_ID)
    returns = []
    for episode in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=EVAL_SEED_BASE + 100 * seed + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(policy.act_numpy(obs[None])[0]))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def run_seed(seed: int, real_steps: int, preset: str, reward_source: str) -> float:
    model_cfg, distill_cfg = PRESETS[preset]
    model_cfg = WorldModelConfig(**{**vars(model_cfg), "seed": seed})
    distill_cfg = DistillConfig(**{**vars(distill_cfg), "seed": seed, "reward_source": reward_source})
    started = time.monotonic()
    spec, transitions = collect(ENV_ID, real_steps, seed)
    collected = time.monotonic()
    model, metrics = fit(spec, transitions, model_cfg)
    fitted = time.monotonic()
    io = PolicyIO(obs_dim=spec.observation.flat_dim, action_kind="discrete", action_dim=spec.action.n)
    result = train(InProcessSource(model, transitions, task_for(ENV_ID)), io, distill_cfg)
    trained = time.monotonic()
    returns = evaluate(MlpPolicy(mlp_weights_of(result.peft_model), spec), seed)
    print(
        f"seed={seed} real_steps={len(transitions)} episodes={len(np.unique(transitions.episode_ids))} "
        f"holdout_obs_mse={metrics['holdout_obs_mse']:.2e} naive={metrics['holdout_naive_obs_mse']:.2e} "
        f"termination_acc={metrics['holdout_termination_accuracy']:.3f}\n"
        f"  collect={collected - started:.1f}s fit={fitted - collected:.1f}s train={trained - fitted:.1f}s "
        f"phantom_paths={result.metrics['phantom_paths_used']} phantom_steps={result.metrics['phantom_steps_used']} "
        f"imagined_return={result.metrics['imagined_return']:.1f} "
        f"planner_agreement={result.metrics['planner_agreement']:.3f}\n"
        f"  real return over {EVAL_EPISODES} episodes: mean={np.mean(returns):.1f} min={min(returns):.0f}",
        flush=True,
    )
    return float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--real-steps", type=int, default=250)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--reward-source", choices=["task", "learned"], default="task")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    plog.configure(args.log_level)
    threads.configure_torch(1)
    torch.manual_seed(0)
    means = [run_seed(s, args.real_steps, args.preset, args.reward_source) for s in args.seeds]
    solved = sum(m >= 475 for m in means)
    print(f"preset={args.preset} reward_source={args.reward_source} real_steps={args.real_steps} "
          f"mean returns={[round(m, 1) for m in means]} seeds>=475: {solved}/{len(means)}")


if __name__ == "__main__":
    main()
