"""What can make a policy learned from some data and its world model fail, found before any training: data that
carries no signal for a learned reward or termination, and a model that does not generalize to unseen episodes.

Each finding is a fact with its figures, never a refusal: the data may still serve another objective (the
environment's known reward, a tracking task). `kind` names are those of the proto's ModelWarningKind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plasma.mbrl.types import Transitions

CONSTANT_REWARD = "constant_reward"
REWARD_FROM_ACTIONS_ONLY = "reward_from_actions_only"
NO_TERMINATIONS = "no_terminations"
HOLDOUT_GAP = "holdout_gap"

# Rewards whose std is below this share of their typical size are constant (float32 sums of equal rewards).
_CONSTANT_TOLERANCE = 1e-6
# Share of the rewards' variance a fit on the actions alone must explain for the states to carry no reward signal.
# MountainCarContinuous's random data (-0.1 a^2 per step, the goal never reached) is explained to 100 %;
# Pendulum's (dominated by the angle) to well under 1 %.
_ACTIONS_ONLY_R2 = 0.99
# Held-out NLL minus training NLL, nats per output dimension. For a Gaussian whose variance matches its training
# errors, held-out squared errors k times the training ones add (k - 1) / 2 nats: 4.5 is an error 10 times the
# training error. Fits of CartPole-v1 and Pendulum-v1 on a few hundred random steps stay below 1.
MAX_HOLDOUT_NLL_GAP = 4.5


@dataclass(frozen=True)
class Finding:
    kind: str  # one of the names above
    message: str  # the fact with its figures, and what to do about it


def data_findings(data: Transitions, discrete_actions: int = 0) -> list[Finding]:
    """What the transitions lack for a learned reward and termination; `discrete_actions` is the number of
    choices of a discrete action space (0 for a box)."""
    findings = []
    rewards = np.asarray(data.rewards, dtype=np.float64)
    terminates = bool(np.any(data.terminated))
    spread = float(rewards.std())
    if spread <= _CONSTANT_TOLERANCE * max(1.0, float(np.abs(rewards).mean())):
        # With terminations, a constant reward is a survival bonus or a cost per step (CartPole, Acrobot): the
        # signal is in when episodes end. Without, nothing tells one state from another.
        if not terminates:
            findings.append(Finding(CONSTANT_REWARD, (
                f"every one of the {len(rewards):,} rewards in the data is {float(rewards.mean()):g} and no episode "
                "terminated: a reward and termination learned from it cannot prefer any state; collect data where "
                "the reward varies or episodes end, or give the task's reward")))
    elif (explained := action_explained_share(rewards, data.actions, discrete_actions)) >= _ACTIONS_ONLY_R2:
        findings.append(Finding(REWARD_FROM_ACTIONS_ONLY, (
            f"the actions alone explain {100 * explained:.1f} % of the rewards' variance: no state in the data paid "
            "more than another (a goal never reached?), so a learned reward can only teach the cheapest action; "
            "collect data that reaches the rewarding states, or give the task's reward")))
    if not terminates:
        findings.append(Finding(NO_TERMINATIONS, (
            f"none of the {len(rewards):,} transitions terminated: a learned termination can only predict "
            "'never'; if the system can fail or finish, collect data where it does, or give the task's termination")))
    return findings


def fit_findings(metrics: dict[str, float]) -> list[Finding]:
    """What a fit's own metrics (plasma.mbrl.fitting.fit) say about how the model generalizes."""
    gap = metrics["holdout_nll"] - metrics["train_nll"]
    if not gap > MAX_HOLDOUT_NLL_GAP:
        return []
    return [Finding(HOLDOUT_GAP, (
        f"held-out NLL {metrics['holdout_nll']:.2f} against {metrics['train_nll']:.2f} in training ({gap:.1f} nats "
        f"per dimension apart, more than {MAX_HOLDOUT_NLL_GAP:g}: held-out errors about {1 + 2 * gap:.0f}x the "
        "training ones): the model does not generalize to unseen episodes; collect more varied data"))]


def action_explained_share(rewards: np.ndarray, actions: np.ndarray, discrete_actions: int = 0) -> float:
    """R^2 of the least-squares fit of rewards [N] on the actions alone: one-hot for a discrete space, [1, a, a^2]
    per element for a box (the usual action costs)."""
    actions = np.asarray(actions)
    if discrete_actions:
        features = np.eye(discrete_actions)[actions.astype(np.int64).reshape(-1)]
    else:
        flat = actions.reshape(len(rewards), -1).astype(np.float64)
        features = np.concatenate([np.ones((len(rewards), 1)), flat, flat**2], axis=1)
    coefficients, *_ = np.linalg.lstsq(features, rewards, rcond=None)
    residual = float(((rewards - features @ coefficients) ** 2).mean())
    variance = float(rewards.var())
    return 1.0 - residual / variance if variance > 0 else 1.0
