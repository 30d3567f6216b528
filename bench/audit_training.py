"""Does the audit help the trainer? CartPole-v1 learned in imagination with the world model's learned reward
and termination heads (fitted on a few hundred random steps, so the termination head is wrong where the
data never went and a policy can learn to "survive" there), trained twice per seed on the same phantom
paths: once with the audit's verdicts respected (REJECT dropped, TRUNCATE cut) and once ignoring them.
Both policies are evaluated on 20 real episodes with seeds never used for learning.

    .venv/bin/python -m bench.audit_training --seeds 0 1 2 --real-steps 250
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import torch

from bench.sample_efficiency import EVAL_EPISODES, evaluate
from plasma import log as plog
from plasma.mbrl import threads
from plasma.mbrl.algorithms.base import PolicyIO, mlp_weights_of
from plasma.mbrl.algorithms.distill import DistillConfig, train
from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import fit
from plasma.mbrl.models.ensemble import WorldModelConfig
from plasma.mbrl.policies import MlpPolicy
from plasma.mbrl.sources import InProcessSource
from plasma.mbrl.types import PhantomPath

ENV_ID = "CartPole-v1"


class CountingSource:
    """An in-process source that tallies the audit's verdicts on every path it streams."""

    def __init__(self, inner: InProcessSource) -> None:
        self._inner = inner
        self.verdicts: Counter[str] = Counter()

    def simulate(self, **kwargs: Any) -> Iterator[PhantomPath]:
        for path in self._inner.simulate(**kwargs):
            self.verdicts[path.audit.verdict if path.audit else "unaudited"] += 1
            yield path


def _act(policy: MlpPolicy, obs: np.ndarray) -> int:
    return int(policy.act_numpy(obs[None])[0])


def run_seed(seed: int, real_steps: int) -> dict[str, float]:
    spec, transitions = collect(ENV_ID, real_steps, seed)
    model, _ = fit(spec, transitions, WorldModelConfig(seed=seed))
    io = PolicyIO(obs_dim=spec.observation.flat_dim, action_kind="discrete", action_dim=spec.action.n)
    inner = InProcessSource(model, transitions, None)  # no task: the learned reward and termination heads
    means = {}
    for label, ignore in (("audit", False), ("no audit", True)):
        source = CountingSource(inner)
        cfg = DistillConfig(seed=seed, reward_source="learned", ignore_audit=ignore)
        started = time.monotonic()
        result = train(source, io, cfg)
        policy = MlpPolicy(mlp_weights_of(result.peft_model), spec)
        means[label] = evaluate(ENV_ID, partial(_act, policy), seed)
        print(f"seed={seed} {label:<8} real return mean={means[label]:6.1f} "
              f"imagined_return={result.metrics['imagined_return']:6.1f} verdicts={dict(source.verdicts)} "
              f"paths_used={result.metrics['phantom_paths_used']} steps_used={result.metrics['phantom_steps_used']} "
              f"train={time.monotonic() - started:.0f}s", flush=True)
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--real-steps", type=int, default=250)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args()
    plog.configure(args.log_level)
    threads.configure_torch(1)
    torch.manual_seed(0)
    started = time.monotonic()
    results = [run_seed(seed, args.real_steps) for seed in args.seeds]
    print(f"\nCartPole-v1, reward_source=learned, {args.real_steps} random real steps, "
          f"{EVAL_EPISODES} real episodes per policy")
    print(f"{'seed':>4}  {'audit':>8}  {'no audit':>8}")
    for seed, means in zip(args.seeds, results, strict=True):
        print(f"{seed:>4}  {means['audit']:>8.1f}  {means['no audit']:>8.1f}")
    print(f"{'mean':>4}  {np.mean([m['audit'] for m in results]):>8.1f}  "
          f"{np.mean([m['no audit'] for m in results]):>8.1f}")
    print(f"{time.monotonic() - started:.0f} s; command: .venv/bin/python -m bench.audit_training --seeds "
          f"{' '.join(map(str, args.seeds))} --real-steps {args.real_steps}")


if __name__ == "__main__":
    main()
