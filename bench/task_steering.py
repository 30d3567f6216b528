"""One world model, several tasks: does a TaskSpec steer what the planner does in the REAL environment?

Fits ONE world model on random CartPole-v1 steps, then lets the CEM planner act in the real environment
(model-predictive control: plan in the world model, take the first action for real, repeat) under each
task: the environment's own objective, and tracking tasks "balance at x = X" (plasma.sdk.tasks). The
table gives the mean real cart position over each episode's last 100 steps.

The random episodes start with the cart spread over x in [-S, S] (--x-spread S) (Gymnasium starts it near 0):
random actions end an episode within about 20 steps, so from Gymnasium's starts the data never sees the
cart far from 0, and the world model then has no idea of the dynamics near x = 1 (--x-spread 0 shows it).

    .venv/bin/python -m bench.task_steering --targets 1 -1 --episodes 6 --steps 300

Torch runs on one thread, as in the services. Episodes reset with seeds never used for collection.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from plasma.mbrl import threads
from plasma.mbrl.collect import env_spec_of
from plasma.mbrl.fitting import fit
from plasma.mbrl.models.ensemble import EnsembleWorldModel, WorldModelConfig
from plasma.mbrl.planning import PlannerConfig, plan
from plasma.mbrl.tasks import Task, task_for
from plasma.mbrl.types import Transitions
from plasma.sdk import tasks as sdk_tasks
from plasma.simulator.v1 import task_pb2
from services.common import wire

ENV_ID = "CartPole-v1"
# Evaluation episodes reset with seeds from here on; collection uses the run's seed, far below.
EVAL_SEED_BASE = 1_000_000
# The last steps of an episode whose cart positions are averaged.
TAIL = 100


def spread_random_steps(steps: int, seed: int, x_spread: float) -> Transitions:
    """`steps` random real CartPole steps; every episode starts as Gymnasium's, but with the cart at a
    uniformly drawn x in [-x_spread, x_spread] (0: where Gymnasium puts it). CartPole's dynamics do not
    depend on x; a world model has to learn that from data."""
    env = gym.make(ENV_ID)
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {name: [] for name in ("obs", "actions", "rewards", "next_obs", "terminated",
                                                      "truncated", "episode_ids")}
    episode, obs = 0, None
    for step in range(steps):
        if obs is None:
            obs, _ = env.reset(seed=seed + episode)
            if x_spread > 0:
                cartpole = env.unwrapped
                assert isinstance(cartpole, CartPoleEnv) and cartpole.state is not None  # reset() set it
                state = cartpole.state
                state[0] = rng.uniform(-x_spread, x_spread)
                obs = np.array(state, dtype=np.float32)
        action = int(env.action_space.sample())
        next_obs, reward, terminated, truncated, _ = env.step(action)
        truncated = truncated or step == steps - 1
        for name, value in zip(rows, (obs, action, reward, next_obs, terminated, truncated, episode), strict=True):
            rows[name].append(value)
        obs = next_obs
        if terminated or truncated:
            episode, obs = episode + 1, None
    env.close()
    dtypes = (np.float32, np.int64, np.float32, np.float32, bool, bool, np.int64)
    return Transitions(**{name: np.array(values, dtype=dtype) for (name, values), dtype in zip(rows.items(), dtypes,
                                                                                             strict=True)})


@dataclass(frozen=True)
class Outcome:
    lengths: np.ndarray  # [episodes] real steps until termination or --steps
    tail_x: np.ndarray  # [episodes] mean real x over the last TAIL steps
    returns: np.ndarray  # [episodes] sum of the task's reward (the environment's for its own objective)


def mpc_episodes(
    model: EnsembleWorldModel, task: Task | None, spec: task_pb2.TaskSpec | None, cfg: PlannerConfig, episodes: int,
    steps: int, seed: int,
) -> Outcome:
    """Plays `episodes` real episodes side by side, planning every action for all live ones in one batch."""
    envs = [gym.make(ENV_ID) for _ in range(episodes)]
    obs = np.stack([env.reset(seed=EVAL_SEED_BASE + seed + i)[0] for i, env in enumerate(envs)])  # [E, 4]
    xs = np.full((steps, episodes), np.nan)
    returns = np.zeros(episodes)
    live = np.ones(episodes, dtype=bool)
    generator = torch.Generator().manual_seed(seed)
    for t in range(steps):
        rows = np.flatnonzero(live)
        if rows.size == 0:
            break
        actions = plan(model, torch.as_tensor(obs[rows], dtype=torch.float32), cfg, task=task, generator=generator)
        for row, action in zip(rows, actions.tolist(), strict=True):
            next_obs, reward, terminated, truncated, _ = envs[row].step(int(action))
            if spec is not None:
                reward = float(sdk_tasks.real_reward(spec, obs[row], action, next_obs))
                terminated = terminated or bool(sdk_tasks.left_bounds(spec, next_obs))
            returns[row] += reward
            xs[t, row] = next_obs[0]
            obs[row] = next_obs
            live[row] = not (terminated or truncated)
    for env in envs:
        env.close()
    lengths = np.sum(~np.isnan(xs), axis=0)
    tail_x = np.array([np.mean(xs[max(0, n - TAIL):n, e]) for e, n in enumerate(lengths)])
    return Outcome(lengths, tail_x, returns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=float, nargs="+", default=[1.0, -1.0], help="cart positions to balance at")
    parser.add_argument("--episodes", type=int, default=6, help="real episodes per task")
    parser.add_argument("--steps", type=int, default=300, help="real steps per episode at most")
    parser.add_argument("--real-steps", type=int, default=1500, help="random real steps the world model is fitted on")
    parser.add_argument("--x-spread", type=float, default=1.5,
                        help="random episodes start at x in [-this, this] (0: Gymnasium's starts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizon", type=int, default=15)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=2)
    args = parser.parse_args()
    threads.configure_torch(1)
    started = time.monotonic()
    spec = env_spec_of(gym.make(ENV_ID))
    transitions = spread_random_steps(args.real_steps, args.seed, args.x_spread)
    model_cfg = WorldModelConfig(ensemble_size=3, hidden_size=64, num_layers=2, train_steps=500, batch_size=128,
                                 seed=args.seed)
    model, metrics = fit(spec, transitions, model_cfg)
    cfg = PlannerConfig(horizon=args.horizon, num_samples=args.samples, num_iterations=args.iterations, num_elites=4)
    print(f"world model: {len(transitions)} random real steps, x in [{transitions.obs[:, 0].min():.2f}, "
          f"{transitions.obs[:, 0].max():.2f}], held-out MSE {metrics['holdout_obs_mse']:.2e} "
          f"({time.monotonic() - started:.0f} s); planner {cfg}")
    runs: list[tuple[str, Task | None, task_pb2.TaskSpec | None]] = [
        ("environment (CartPole's own)", task_for(ENV_ID), None)]
    for target in args.targets:
        balance = sdk_tasks.cartpole_balance_at(target)
        runs.append((balance.name, wire.task_from_proto(balance, spec), balance))
    header = f"{'task':<30} {'episodes':>8} {'mean length':>11} {'mean x, last 100 steps':>24} {'task return':>12}"
    rows = []
    for name, task, task_spec in runs:
        began = time.monotonic()
        out = mpc_episodes(model, task, task_spec, cfg, args.episodes, args.steps, args.seed)
        rows.append(f"{name:<30} {args.episodes:>8} {np.mean(out.lengths):>11.0f} "
                    f"{np.mean(out.tail_x):>+12.2f} ± {np.std(out.tail_x):<9.2f} {np.mean(out.returns):>12.1f}"
                    f"   ({time.monotonic() - began:.0f} s; per episode x {np.round(out.tail_x, 2).tolist()})")
        print(rows[-1], flush=True)
    print()
    print(header)
    print("\n".join(row.split("   (")[0] for row in rows))
    print(f"\ncommand: .venv/bin/python -m bench.task_steering --targets {' '.join(f'{t:g}' for t in args.targets)} "
          f"--episodes {args.episodes} --steps {args.steps} --real-steps {args.real_steps} "
          f"--x-spread {args.x_spread:g} --seed {args.seed} "
          f"--horizon {args.horizon} --samples {args.samples} --iterations {args.iterations}")
    print(f"load average (1, 5, 15 min): {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
