"""How well the simulator's audit tells wrong phantom paths from right ones, judged by the real environment.

A CartPole-v1 world model is fitted on a few hundred random steps, which only cover small angles and
velocities. Policies of several kinds roll out in it: random ones, constant pushes, and CEM planners, with
the task's termination or the model's learned termination head (which a policy can exploit: the head says
"still alive" where the real pole has fallen). Every path is then judged by ground truth:

    a path is wrong when, at some step, the real environment set to the phantom state (env.unwrapped.state)
    and given the phantom action lands more than STATE_TOLERANCE (in the data's std per dimension) away from
    the phantom next state, or when the phantom return exceeds the real return of those steps (up to the
    first real termination) by more than RETURN_TOLERANCE of the real return.

Each step is re-anchored to the phantom state rather than replaying the actions open-loop from the start,
because CartPole is unstable: an open-loop replay of a long balancing path diverges even under a perfect
model. Detection = wrong paths the audit flags (truncate or reject); "in time" = flagged at or before the
first wrong step; false alarm = right paths flagged.

    .venv/bin/python -m bench.audit_detection --margins 0.1 0.2 0.3
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from plasma.mbrl import threads
from plasma.mbrl.audit import AuditSettings, Support, support_of
from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import fit
from plasma.mbrl.models.ensemble import EnsembleWorldModel, WorldModelConfig
from plasma.mbrl.planning import PlannerConfig
from plasma.mbrl.rollout import simulate, start_states
from plasma.mbrl.tasks import task_for
from plasma.mbrl.types import MlpWeights, PhantomPath, Transitions

ENV_ID = "CartPole-v1"
STATE_TOLERANCE = 0.1
RETURN_TOLERANCE = 0.1
MODEL = WorldModelConfig(train_steps=300)


def push(action: int) -> MlpWeights:
    """A CartPole policy that always pushes one way (its logits ignore the state)."""
    logits = np.array([5.0 * (1 - action), 5.0 * action], dtype=np.float32)
    return MlpWeights([np.zeros((2, 4), np.float32)], [logits], "tanh", np.zeros(4, np.float32), np.ones(4, np.float32))


@dataclass(frozen=True)
class Kind:
    name: str
    policy: MlpWeights | PlannerConfig | None
    reward_source: str
    planner: bool = False


KINDS = [
    Kind("random", None, "task"),
    Kind("random", None, "learned"),
    Kind("push_right", push(1), "learned"),
    Kind("push_left", push(0), "learned"),
    Kind("planner_h20", PlannerConfig(horizon=20, num_samples=32), "task", planner=True),
    Kind("planner_h20", PlannerConfig(horizon=20, num_samples=32), "learned", planner=True),
    Kind("planner_h60", PlannerConfig(horizon=60, num_samples=32), "learned", planner=True),
]


def first_wrong_step(path: PhantomPath, env: gym.Env, scale: np.ndarray) -> int | None:
    """The first step where the real environment disagrees with the path (see the module doc), or None."""
    real_return, real_end = 0.0, path.length
    cartpole = env.unwrapped
    assert isinstance(cartpole, CartPoleEnv), f"{ENV_ID} is a CartPoleEnv"
    for t in range(path.length):
        cartpole.state = path.observations[t].astype(np.float64)
        cartpole.steps_beyond_terminated = None  # else a second termination pays 0 instead of 1
        real_next, reward, terminated, _, _ = cartpole.step(int(path.actions[t]))
        if np.max(np.abs(real_next - path.observations[t + 1]) / scale) > STATE_TOLERANCE:
            return t
        real_return += float(reward)
        if terminated:
            real_end = t + 1
            break
    excess = float(path.rewards.sum()) - real_return
    return real_end if excess > RETURN_TOLERANCE * max(1.0, abs(real_return)) else None


@dataclass
class Row:
    kind: str
    paths: int = 0
    wrong: int = 0
    detected: int = 0
    in_time: int = 0
    right_flagged: int = 0
    rejected: int = 0
    truncated: int = 0

    def add(self, other: Row) -> None:
        for name in ("paths", "wrong", "detected", "in_time", "right_flagged", "rejected", "truncated"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def measure(
    model: EnsembleWorldModel,
    data: Transitions,
    support: Support,
    settings: AuditSettings,
    kinds: list[Kind],
    paths: int,
    planner_paths: int,
    seed: int = 1,
) -> list[Row]:
    """One row per kind: its paths audited with `settings` and judged by the real environment."""
    env = gym.make(ENV_ID)
    env.reset(seed=seed)
    scale = model.obs_scale.numpy()
    rows = []
    for kind in kinds:
        row = Row(f"{kind.name}/{kind.reward_source}")
        rolled = simulate(
            model, policy=kind.policy, num_paths=planner_paths if kind.planner else paths, horizon=200, seed=seed,
            start_pool=start_states(data, "episode_starts"), reward_source=kind.reward_source,
            task=task_for(ENV_ID), support=support, audit=settings,
        )
        for path in rolled:
            wrong = first_wrong_step(path, env, scale)
            audit = path.audit
            assert audit is not None, "simulate audits every path when given the model's support"
            flagged = audit.verdict != "pass"
            row.paths += 1
            row.rejected += audit.verdict == "reject"
            row.truncated += audit.verdict == "truncate"
            if wrong is None:
                row.right_flagged += flagged
            else:
                row.wrong += 1
                row.detected += flagged
                row.in_time += flagged and audit.valid_steps <= wrong
        rows.append(row)
    env.close()
    return rows


def _rate(part: int, whole: int) -> str:
    return f"{part / whole:.2f}" if whole else "-"


def print_table(rows: list[Row], margin: float) -> Row:
    total = Row("all")
    for row in rows:
        total.add(row)
    print(f"\nsupport_margin={margin}")
    print(f"{'policy/reward':<22}{'paths':>6}{'wrong':>6}{'detect':>8}{'in time':>8}{'right':>6}{'f.alarm':>8}"
          f"{'reject':>7}{'trunc':>6}")
    for row in [*rows, total]:
        right = row.paths - row.wrong
        print(f"{row.kind:<22}{row.paths:>6}{row.wrong:>6}{_rate(row.detected, row.wrong):>8}"
              f"{_rate(row.in_time, row.wrong):>8}{right:>6}{_rate(row.right_flagged, right):>8}"
              f"{row.rejected:>7}{row.truncated:>6}")
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--paths", type=int, default=100, help="paths per non-planner kind")
    parser.add_argument("--planner-paths", type=int, default=16, help="paths per planner kind (slow)")
    parser.add_argument("--margins", type=float, nargs="+", default=[0.2])
    args = parser.parse_args()
    threads.configure_torch(1)
    started = time.monotonic()
    spec, data = collect(ENV_ID, args.real_steps, args.seed)
    model, _ = fit(spec, data, WorldModelConfig(**{**vars(MODEL), "seed": args.seed}))
    support = support_of(model, data)
    print(f"CartPole-v1 model on {len(data)} random steps; calibrated disagreement threshold "
          f"{support.disagreement_threshold:.4f}; ground truth: state tolerance {STATE_TOLERANCE} std, "
          f"return tolerance {RETURN_TOLERANCE:.0%}")
    for margin in args.margins:
        total = print_table(
            measure(model, data, support, AuditSettings(support_margin=margin), KINDS, args.paths, args.planner_paths),
            margin,
        )
        right = total.paths - total.wrong
        print(f"detection {total.detected}/{total.wrong} = {_rate(total.detected, total.wrong)}, "
              f"false alarms {total.right_flagged}/{right} = {_rate(total.right_flagged, right)}")
    print(f"\n{time.monotonic() - started:.0f} s; command: .venv/bin/python -m bench.audit_detection "
          f"--real-steps {args.real_steps} --seed {args.seed} --paths {args.paths} "
          f"--planner-paths {args.planner_paths} --margins {' '.join(map(str, args.margins))}")


if __name__ == "__main__":
    main()
