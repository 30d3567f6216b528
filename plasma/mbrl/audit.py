"""Adversarial audit of phantom paths: where a policy steers the world model into states the real data never
showed, the model is guessing, and a policy trained on those steps learns to exploit the guesses.

Each step is checked against what the real data showed (`Support`): the ensemble's disagreement, the
next state's range (its margin stopping where real episodes were seen to end), the size of the state change
and, for learned rewards, the reward's range. The first flagged step k decides the verdict: PASS (none),
TRUNCATE at k, or REJECT when k < min_valid_steps.
Rewards also get the MOPO penalty: reward - coefficient * disagreement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from plasma.mbrl.models.ensemble import EnsembleWorldModel
from plasma.mbrl.tasks import TerminationFn
from plasma.mbrl.types import AuditFinding, PathAuditResult, PhantomPath, Transitions

# The quantile of the ensemble's disagreement on the real transitions that calibrates the threshold, and
# the factor above it. Measured on CartPole (seed 0, 400 random steps, 5 members, 300 fit steps): on the real rows
# the disagreement's median is 0.0032, its 99th percentile 0.0065 and its maximum 0.015, while random-policy
# phantom steps reach 0.028 at their 99th percentile with one-step errors (the real environment stepped from
# the phantom state) still under 0.06 std. Factor 2 flagged 10 of 99 such correct random paths, factor 4
# 7, and both caught the same wrong paths (bench.audit_detection), so 4.
CALIBRATION_QUANTILE = 0.99
CALIBRATION_FACTOR = 4.0
# A dimension where at least this share of the real episode ends (terminal next states) lies outside the
# range the real system acted from is a termination boundary, and the margin does not widen the range past
# the nearest real end on that side. CartPole's random data ends past the acted range in the pole angle in
# 100 % of its ends (seeds 0, 1, 2) and in the other dimensions in 5-22 %. Without it the margin let a phantom
# pole go on past 12 degrees, where the real episode ends (the learned termination head's misses);
# bench.audit_detection, seed 0 / seed 1 at margin 0.2: detection 0.85 / 0.76 -> 0.95 / 0.88 at false
# alarms 0.02 / 0.04 -> 0.07 / 0.06. The members' disagreement on the termination head, tried for the same
# misses, flagged right paths near the boundary about as often as wrong ones at every threshold.
END_SHARE = 0.9
# Rows per forward pass while calibrating.
_CHUNK = 4096

REASONS = ("ensemble_disagreement", "out_of_support", "impossible_reward", "impossible_jump")


@dataclass(frozen=True)
class AuditSettings:
    """The proto's AuditConfig with its defaults filled in."""

    # Every path passes, and penalized rewards equal raw rewards.
    disabled: bool = False
    # Disagreement above which a step is not trusted; 0: the support's calibrated threshold.
    disagreement_threshold: float = 0.0
    # MOPO: penalized reward = reward - penalty_coefficient * disagreement.
    penalty_coefficient: float = 1.0
    # How far past the real range a state, reward or state change may go, as a share of that range. 0.2:
    # bench.audit_detection (seeds 0 / 1) flags 95 % / 88 % of wrong paths at 7 % / 6 % false alarms; 0.1
    # flags 100 % / 91 % at 16 % / 28 %, 0.3 95 % / 84 % at 6 % / 3 %.
    support_margin: float = 0.2
    # A path flagged before this step is rejected rather than truncated.
    min_valid_steps: int = 5
    # Check rewards against the real range. The simulator turns it off when rewards come from the task's
    # known function: such a reward is right whenever its state is, and states are checked already; a
    # task reward outside the real range (a balanced Pendulum never seen in random data) is no model error.
    check_rewards: bool = True

    def __post_init__(self) -> None:
        for name in ("disagreement_threshold", "penalty_coefficient", "support_margin"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise ValueError(f"audit {name}={value} must be a finite number >= 0")
        if not 0 <= self.min_valid_steps <= 1000:
            raise ValueError(f"audit min_valid_steps={self.min_valid_steps} must be in 0..1000")


@dataclass(frozen=True)
class Support:
    """What the real data showed, in raw units: obs_low/obs_high [obs_dim] over the states the real system
    acted from (a terminal next state is not one: CartPole's data holds poles past 12 degrees only as
    episode ends, and a phantom path that goes on from there is a model error), max_jump [obs_dim] the
    largest |next_obs - obs|, the reward range, the disagreement threshold calibrated on the model's
    predictions for the real transitions, and end_low/end_high [obs_dim]: where real episodes were seen to
    end on a termination boundary (see END_SHARE), the nearest such end below/above the acted range, else
    -inf/inf; the margin stops there."""

    obs_low: np.ndarray
    obs_high: np.ndarray
    max_jump: np.ndarray
    reward_low: float
    reward_high: float
    disagreement_threshold: float
    end_low: np.ndarray
    end_high: np.ndarray


@torch.no_grad()
def support_of(model: EnsembleWorldModel, transitions: Transitions) -> Support:
    """The support of `transitions`, the data `model` was fitted on (once per model: a forward pass over
    every row). The disagreement is calibrated on all of its rows, not only the held-out ones that
    AuditConfig mentions: the split is not stored with the model, and CALIBRATION_FACTOR covers the gap."""
    if len(transitions) == 0:
        raise ValueError("the audit's support needs at least one real transition")
    # The rows' states, and next states where the episode went on past the data (truncated or cut off).
    went_on = ~transitions.terminated
    states = np.concatenate([transitions.obs, transitions.next_obs[went_on]]).astype(np.float64)
    disagreement = []
    for start in range(0, len(transitions), _CHUNK):
        obs = torch.as_tensor(transitions.obs[start : start + _CHUNK], dtype=torch.float32, device=model.device)
        actions = torch.as_tensor(transitions.actions[start : start + _CHUNK], device=model.device)
        disagreement.append(model.step(obs, actions, "mean").disagreement.cpu().numpy())
    quantile = float(np.quantile(np.concatenate(disagreement), CALIBRATION_QUANTILE))
    low, high = states.min(0), states.max(0)
    end_low, end_high = _episode_ends(transitions.next_obs[transitions.terminated].astype(np.float64), low, high)
    return Support(
        obs_low=low,
        obs_high=high,
        max_jump=np.abs(transitions.next_obs.astype(np.float64) - transitions.obs).max(0),
        reward_low=float(transitions.rewards.min()),
        reward_high=float(transitions.rewards.max()),
        disagreement_threshold=CALIBRATION_FACTOR * quantile,
        end_low=end_low,
        end_high=end_high,
    )


def _episode_ends(ends: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """end_low, end_high [obs_dim] of the Support from the real terminal next states ends [n, obs_dim] and the
    acted range low/high [obs_dim]."""
    end_low = np.full(low.shape, -np.inf)
    end_high = np.full(high.shape, np.inf)
    if len(ends) == 0:
        return end_low, end_high
    below, above = ends < low, ends > high  # [n, obs_dim]
    for d in np.flatnonzero((below | above).mean(0) >= END_SHARE):
        if below[:, d].any():
            end_low[d] = ends[below[:, d], d].max()
        if above[:, d].any():
            end_high[d] = ends[above[:, d], d].min()
    return end_low, end_high


def episode_ends(support: Support) -> TerminationFn | None:
    """A termination learned from where real episodes ended, for the learned objective: a next state [B, obs_dim]
    ends its path once an element passes the midpoint between the range the system acted from and the nearest
    real end beyond it (the widest margin the data allows), in each dimension END_SHARE of the ends lie beyond;
    None when no dimension has such a boundary.

    Where there is one, it replaces the termination head (plasma.mbrl.planning.rewards_and_dones): a bound is one
    number per side and dimension, so a dozen terminal examples place it well; the head, a classifier of (state,
    action) trained on the same dozen, missed many real ends and fired on safe states (docs/benchmarks.md,
    "Learned reward and termination")."""
    below, above = (support.obs_low + support.end_low) / 2, (support.obs_high + support.end_high) / 2
    if np.isinf(below).all() and np.isinf(above).all():
        return None
    low, high = (torch.as_tensor(bound, dtype=torch.float32) for bound in (below, above))

    def terminated(next_obs: torch.Tensor) -> torch.Tensor:
        low_, high_ = low.to(next_obs.device), high.to(next_obs.device)
        return ((next_obs < low_) | (next_obs > high_)).any(dim=1)

    return terminated


@dataclass(frozen=True)
class _Limits:
    """The per-request bounds: support widened by the margin."""

    low: np.ndarray  # [obs_dim]
    high: np.ndarray  # [obs_dim]
    jump: np.ndarray  # [obs_dim]
    reward_low: float
    reward_high: float
    disagreement: float


def _limits(support: Support, settings: AuditSettings) -> _Limits:
    margin = settings.support_margin
    span = support.obs_high - support.obs_low
    # A constant reward (CartPole's 1) has no range; its own size stands in, so that 1 +- margin is allowed.
    reward_span = max(support.reward_high - support.reward_low, abs(support.reward_low), abs(support.reward_high))
    return _Limits(
        low=np.maximum(support.obs_low - margin * span, support.end_low),
        high=np.minimum(support.obs_high + margin * span, support.end_high),
        jump=support.max_jump * (1 + margin),
        reward_low=support.reward_low - margin * reward_span,
        reward_high=support.reward_high + margin * reward_span,
        disagreement=settings.disagreement_threshold or support.disagreement_threshold,
    )


def audit_batch(
    observations: np.ndarray,
    rewards: np.ndarray,
    dones: np.ndarray,
    uncertainty: np.ndarray,
    lengths: np.ndarray,
    support: Support,
    settings: AuditSettings,
) -> list[PathAuditResult]:
    """Audits B paths rolled out together: observations [T + 1, B, obs_dim], rewards, dones and uncertainty
    [T, B], lengths [B] (steps past a path's length are ignored). Vectorized over steps and paths: findings
    are only spelled out for flagged paths.

    A terminating step's next state is not checked: no one acts from it, and the step's termination can
    only make the path claim less than the real system would give, which is no exploit. Its reward is.
    """
    horizon, size = rewards.shape
    valid = np.arange(horizon)[:, None] < lengths[None, :]  # [T, B]
    penalty = 0.0 if settings.disabled else settings.penalty_coefficient
    penalized = np.where(valid, rewards - penalty * uncertainty, 0.0).astype(np.float32)  # [T, B]
    returns = penalized.sum(0, dtype=np.float64)  # [B]
    if settings.disabled:
        return [_result("pass", int(n), [], penalized[:n, i], returns[i]) for i, n in enumerate(lengths)]
    limits = _limits(support, settings)
    # One [T, B] slice per dimension: numpy reduces a short last axis (.any(-1)) many times slower.
    outside = np.zeros((horizon, size), dtype=bool)
    too_far = np.zeros((horizon, size), dtype=bool)
    for d in range(observations.shape[2]):
        now, nxt = observations[:-1, :, d], observations[1:, :, d]
        outside |= (nxt < limits.low[d]) | (nxt > limits.high[d])
        too_far |= np.abs(nxt - now) > limits.jump[d]
    goes_on = valid & ~dones.astype(bool)
    flags = {
        "ensemble_disagreement": (uncertainty > limits.disagreement) & goes_on,
        "out_of_support": outside & goes_on,
        "impossible_jump": too_far & goes_on,
    }
    if settings.check_rewards:
        flags["impossible_reward"] = ((rewards < limits.reward_low) | (rewards > limits.reward_high)) & valid
    flagged = np.logical_or.reduce(list(flags.values()))  # [T, B]
    any_flag = flagged.any(0)
    first = np.where(any_flag, flagged.argmax(0), lengths)  # [B]
    results = []
    for i in range(size):
        n, k = int(lengths[i]), int(first[i])
        if not any_flag[i]:
            results.append(_result("pass", n, [], penalized[:n, i], returns[i]))
            continue
        findings = [
            _finding(reason, int(flags[reason][:, i].argmax()), i, observations, rewards, uncertainty, limits)
            for reason in REASONS
            if reason in flags and flags[reason][:, i].any()
        ]
        findings.sort(key=lambda f: f.step)
        verdict = "reject" if k < settings.min_valid_steps else "truncate"
        results.append(_result(verdict, k, findings, penalized[:n, i], returns[i]))
    return results


def audit_path(path: PhantomPath, support: Support, settings: AuditSettings) -> PathAuditResult:
    """The verdict on one path (see audit_batch)."""
    return audit_batch(
        path.observations[:, None], path.rewards[:, None], path.dones[:, None], path.uncertainty[:, None],
        np.array([path.length]), support, settings,
    )[0]


def _result(
    verdict: str, valid_steps: int, findings: list[AuditFinding], penalized: np.ndarray, total: float
) -> PathAuditResult:
    return PathAuditResult(verdict, valid_steps, findings, penalized.copy(), float(total))


def _finding(
    reason: str,
    step: int,
    i: int,
    observations: np.ndarray,
    rewards: np.ndarray,
    uncertainty: np.ndarray,
    limits: _Limits,
) -> AuditFinding:
    """The finding of `reason` at `step` of path i, with the worst dimension where a state is involved."""
    if reason == "ensemble_disagreement":
        value = float(uncertainty[step, i])
        return AuditFinding(reason, step, value, limits.disagreement,
                            f"ensemble disagreement {value:.3g} > {limits.disagreement:.3g}")
    if reason == "impossible_reward":
        value = float(rewards[step, i])
        bound = limits.reward_low if value < limits.reward_low else limits.reward_high
        return AuditFinding(reason, step, value, bound,
                            f"reward {value:.3g} outside [{limits.reward_low:.3g}, {limits.reward_high:.3g}]")
    nxt = observations[step + 1, i].astype(np.float64)
    if reason == "out_of_support":
        excess = np.maximum(limits.low - nxt, nxt - limits.high)
        d = int(excess.argmax())
        bound = limits.low[d] if nxt[d] < limits.low[d] else limits.high[d]
        return AuditFinding(reason, step, float(nxt[d]), float(bound),
                            f"obs[{d}] = {nxt[d]:.3g} outside [{limits.low[d]:.3g}, {limits.high[d]:.3g}]")
    change = np.abs(nxt - observations[step, i])
    d = int((change / np.maximum(limits.jump, 1e-12)).argmax())
    return AuditFinding(reason, step, float(change[d]), float(limits.jump[d]),
                        f"|obs[{d}] change| = {change[d]:.3g} > {limits.jump[d]:.3g}, the largest real change "
                        f"with the margin")
