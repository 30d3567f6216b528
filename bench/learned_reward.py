"""Learning from the learned reward and termination: the default workflow recipe with `--task learned`, in one
process per seed (the services' algorithms without gRPC, compile or edge), against the environment's own reward.

    .venv/bin/python -m bench.learned_reward --env CartPole-v1 --seeds 0 1 2
    .venv/bin/python -m bench.learned_reward --rounds 200 200 200 --reward-source task learned

Collection rounds as the workflow runs them (plasma.sdk.workflow): the first random, each later one acting with the
policy trained so far (the recipe's share of random actions), appended to the data; after every round the world
model is fitted on every real step so far and a policy trained from phantom paths alone. The last round's policy
is evaluated on 20 real episodes whose seeds are never used for learning (the workflow's EVAL_SEED_OFFSET). One
torch thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from bench.sample_efficiency import _env_act, _join
from plasma.mbrl import threads
from plasma.mbrl.algorithms.base import PolicyIO, mlp_weights_of
from plasma.mbrl.algorithms.distill import train
from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import fit
from plasma.mbrl.policies import MlpPolicy
from plasma.mbrl.sources import InProcessSource
from plasma.mbrl.tasks import task_for
from plasma.mbrl.types import MlpWeights, Transitions
from plasma.sdk import recipes
from plasma.sdk.evaluate import run_episodes
from plasma.sdk.workflow import EVAL_SEED_OFFSET
from services.simulator.server import _fit_config
from services.trainer.configs import distill_config


def run(env_id: str, seed: int, rounds: tuple[int, ...], reward_source: str) -> tuple[int, float, float, float]:
    """(real steps, mean real return, imagined whole-path return, seconds) of the last round's policy."""
    cfg = recipes.workflow("default", env_id=env_id, seed=seed)
    model_cfg = _fit_config(cfg.world_model)
    distill_cfg = dataclasses.replace(distill_config(cfg.train), reward_source=reward_source)
    task = task_for(env_id) if reward_source == "task" else None
    data: Transitions | None = None
    weights: MlpWeights | None = None
    started = time.monotonic()
    for number, steps in enumerate(rounds, start=1):
        # The workflow's collection seeds: the seed, then seed + 1, ... for the rounds after the first.
        spec, fresh = collect(env_id, steps, seed + number - 1, policy=weights,
                              epsilon=cfg.collection_epsilon if weights is not None else 0.0)
        data = _join(data, fresh)
        model, _ = fit(spec, data, model_cfg)
        result = train(InProcessSource(model, data, task), PolicyIO.of(spec), distill_cfg)
        weights = mlp_weights_of(result.peft_model)
    seconds = time.monotonic() - started
    assert data is not None and weights is not None
    evaluation = run_episodes(env_id, 20, seed + EVAL_SEED_OFFSET, _env_act(spec, MlpPolicy(weights, spec)))
    return len(data), evaluation.mean_return, float(result.metrics["whole_path_imagined_return"]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    default = recipes.workflow("default")
    parser.add_argument("--rounds", type=int, nargs="+", default=[default.real_steps, *default.more_rounds],
                        help="real steps per collection round (default: the default recipe's)")
    parser.add_argument("--reward-source", choices=["task", "learned"], nargs="+", default=["learned"])
    args = parser.parse_args()
    threads.configure_torch(1)
    print(f"{'source':<8} {'seed':>4} {'real steps':>10} {'return':>8} {'imagined':>9} {'wall s':>7}", flush=True)
    for source in args.reward_source:
        returns = []
        for seed in args.seeds:
            steps, real, imagined, seconds = run(args.env, seed, tuple(args.rounds), source)
            returns.append(real)
            print(f"{source:<8} {seed:>4} {steps:>10} {real:>8.1f} {imagined:>9.1f} {seconds:>7.0f}", flush=True)
        print(f"{source}: mean {np.mean(returns):.1f}; per seed {' / '.join(f'{r:.0f}' for r in returns)}")


if __name__ == "__main__":
    main()
