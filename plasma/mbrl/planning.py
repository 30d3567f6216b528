"""Model-predictive control in the world model: the cross-entropy method over action sequences, batched
over many start states at once (this planner labels every state a policy is trained on)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from plasma.mbrl.models.ensemble import EnsembleWorldModel
from plasma.mbrl.tasks import Task, TerminationFn


@dataclass(frozen=True)
class PlannerConfig:
    """The field names are those of the proto's PlannerConfig."""

    # Steps of every candidate action sequence.
    horizon: int = 20
    # Candidate sequences per state per iteration, spread over the ensemble members.
    num_samples: int = 48
    # Refinements of the sampling distribution.
    num_iterations: int = 2
    # Best candidates that the distribution is refitted to.
    num_elites: int = 6
    # Discount of the planning objective.
    discount: float = 0.99

    def __post_init__(self) -> None:
        for name in ("horizon", "num_samples", "num_iterations", "num_elites"):
            if getattr(self, name) < 1:
                raise ValueError(f"planner {name} must be at least 1, got {getattr(self, name)}")
        if self.num_elites > self.num_samples:
            raise ValueError(f"planner num_elites={self.num_elites} exceeds num_samples={self.num_samples}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"planner discount must be in (0, 1], got {self.discount}")


def check_reward_source(reward_source: str, task: Task | None) -> None:
    if reward_source not in ("task", "learned"):
        raise ValueError(f"reward_source must be 'task' or 'learned', got {reward_source!r}")
    if reward_source == "task" and task is None:
        raise ValueError(
            "reward_source 'task' needs the task's reward and termination, and this environment has none "
            "known to Plasma; use reward_source 'learned'"
        )


def rewards_and_dones(
    task: Task | None,
    obs: torch.Tensor,
    actions: torch.Tensor,
    next_obs: torch.Tensor,
    learned_reward: torch.Tensor,
    done_prob: torch.Tensor,
    ends: TerminationFn | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reward [B] and termination [B] of imagined steps: the task's when given, else the learned ones: the reward
    head's, and `ends` (plasma.mbrl.audit.episode_ends: the boundaries real episodes were seen to end at) where the
    data shows such boundaries, else the termination head's.

    Where there are boundaries, they stand in for the head rather than adding to it: a boundary is drawn only in a
    dimension where 90 % of the real ends lie beyond the acted range, so it explains the data's terminations, and
    the head (a dozen positives, 250 random CartPole steps) fired on up to 17 % of a balancing policy's safe steps,
    ending phantom paths and the planner's candidates at random: CartPole-v1 learned, 250 random steps, seeds 0-2:
    head or boundaries 334 / 500 / 237, boundaries alone 487 / 500 / 492 (docs/benchmarks.md)."""
    if task is None:
        return learned_reward, done_prob > 0.5 if ends is None else ends(next_obs)
    return task.reward(obs, actions, next_obs), task.terminated(next_obs)


@torch.no_grad()
def _score(
    model: EnsembleWorldModel, obs: torch.Tensor, sequences: torch.Tensor, discount: float, task: Task | None,
    ends: TerminationFn | None = None,
) -> torch.Tensor:
    """Discounted return [B, N] of action sequences [B, N, H(, act_dim)] from obs [B, obs_dim].

    Candidate n follows member n mod E (trajectory sampling); a candidate stops earning reward after
    its first predicted termination, whose step still counts, as in the real environment.
    """
    batch, samples, horizon = sequences.shape[:3]
    device = obs.device
    flat = sequences.reshape(batch * samples, horizon, *sequences.shape[3:])
    members = (torch.arange(samples, device=device) % model.config.ensemble_size).repeat(batch)
    returns = torch.zeros(batch * samples, device=device)
    # Only candidates still alive are simulated: `live` indexes them into the flat batch.
    live = torch.arange(batch * samples, device=device)
    state = obs.repeat_interleave(samples, dim=0)  # [live, obs_dim]
    weight = 1.0
    for t in range(horizon):
        actions = flat[live, t]
        next_state, learned_reward, done_prob = model.predict(state, actions, members[live])
        reward, done = rewards_and_dones(task, state, actions, next_state, learned_reward, done_prob, ends)
        returns.index_add_(0, live, weight * reward)
        live, state = live[~done], next_state[~done]
        if live.numel() == 0:
            break
        weight *= discount
    return returns.reshape(batch, samples)


@torch.no_grad()
def plan(
    model: EnsembleWorldModel,
    obs: torch.Tensor,
    cfg: PlannerConfig,
    *,
    task: Task | None,
    generator: torch.Generator,
    ends: TerminationFn | None = None,
) -> torch.Tensor:
    """The planned first action for each state: obs [B, obs_dim] -> [B] int64 or [B, act_dim] float32.

    `task` None scores with the learned reward and termination heads. `obs` and `generator` are on the model's
    device.
    """
    if model.spec.action.kind == "discrete":
        return _plan_discrete(model, obs.float(), cfg, task, generator, ends)
    return _plan_box(model, obs.float(), cfg, task, generator, ends=ends)[0]


def _plan_discrete(
    model: EnsembleWorldModel, obs: torch.Tensor, cfg: PlannerConfig, task: Task | None,
    generator: torch.Generator, ends: TerminationFn | None = None,
) -> torch.Tensor:
    """CEM with a categorical distribution per step. Returns the first action whose candidates scored
    best on average: with a survival reward (CartPole) many candidates tie at the top, and the single
    best one's first action is close to a coin flip, a poor label to imitate."""
    batch, n, device = obs.shape[0], model.spec.action.n, obs.device
    rows = torch.arange(batch, device=device)[:, None]
    probs = torch.full((batch, cfg.horizon, n), 1.0 / n, device=device)
    first_total = torch.zeros(batch, n, device=device)
    first_count = torch.zeros(batch, n, device=device)
    for _ in range(cfg.num_iterations):
        drawn = torch.multinomial(probs.reshape(-1, n), cfg.num_samples, replacement=True, generator=generator)
        sequences = drawn.reshape(batch, cfg.horizon, cfg.num_samples).transpose(1, 2)  # [B, N, H]
        scores = _score(model, obs, sequences, cfg.discount, task, ends)  # [B, N]
        first = F.one_hot(sequences[:, :, 0], n).float()  # [B, N, n]
        first_total += (first * scores[:, :, None]).sum(dim=1)
        first_count += first.sum(dim=1)
        elites = sequences[rows, scores.topk(cfg.num_elites, dim=1).indices]  # [B, K, H]
        probs = F.one_hot(elites, n).float().mean(dim=1)  # [B, H, n]
    value = torch.where(first_count > 0, first_total / first_count.clamp_min(1), -torch.inf)
    return value.argmax(dim=-1)


def _plan_box(
    model: EnsembleWorldModel, obs: torch.Tensor, cfg: PlannerConfig, task: Task | None,
    generator: torch.Generator, start: torch.Tensor | None = None, ends: TerminationFn | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CEM with a Gaussian per step and action dimension, clipped to the bounds: the first step of the final
    elite mean [B, act_dim], and that mean [B, H, act_dim]. `start` [B, H, act_dim] replaces the midpoint of the
    bounds as the initial mean (the width stays the whole range)."""
    space = model.spec.action
    batch, device = obs.shape[0], obs.device
    rows = torch.arange(batch, device=device)[:, None]
    low = torch.tensor(space.low, dtype=torch.float32, device=device)
    high = torch.tensor(space.high, dtype=torch.float32, device=device)
    mean = ((low + high) / 2).expand(batch, cfg.horizon, -1).clone() if start is None else start.clone()
    std = ((high - low) / 2).expand(batch, cfg.horizon, -1).clone()  # [B, H, act_dim]
    for _ in range(cfg.num_iterations):
        noise = torch.randn((batch, cfg.num_samples, *mean.shape[1:]), generator=generator, device=device)
        sequences = torch.clamp(mean[:, None] + std[:, None] * noise, low, high)  # [B, N, H, act_dim]
        scores = _score(model, obs, sequences, cfg.discount, task, ends)
        elites = sequences[rows, scores.topk(cfg.num_elites, dim=1).indices]  # [B, K, H, act_dim]
        mean, std = elites.mean(dim=1), elites.std(dim=1, correction=0)
    return mean[:, 0], mean


class PathPlanner:
    """The planner along a batch of paths, one step after another. For box actions each path's plan starts from
    its previous one shifted by a step (PETS' warm start) instead of from scratch: with the true Pendulum-v1
    dynamics, 25 steps x 64 samples x 3 iterations from scratch lost a swing-up (-365 where warm -233) and
    averaged -185 over 8 episodes against -170 warm; warm with 2 iterations -169, the same as 256 samples x 5
    iterations from scratch (-167). Discrete actions are planned from scratch at every step."""

    def __init__(self, model: EnsembleWorldModel, cfg: PlannerConfig, task: Task | None,
                 generator: torch.Generator, paths: int, ends: TerminationFn | None = None) -> None:
        self._model, self._cfg, self._task, self._generator, self._ends = model, cfg, task, generator, ends
        space = model.spec.action
        self._warm: torch.Tensor | None = None
        if space.kind == "box":
            low, high = (torch.tensor(b, dtype=torch.float32, device=model.device) for b in (space.low, space.high))
            middle = (low + high) / 2
            self._middle = middle  # [act_dim]: what a step no earlier plan covers starts from
            self._warm = middle.expand(paths, cfg.horizon, -1).clone()  # [paths, H, act_dim]

    def __call__(self, obs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The planned actions for the states `obs` of the paths `rows` (indices into the batch)."""
        if self._warm is None:
            return plan(self._model, obs, self._cfg, task=self._task, generator=self._generator, ends=self._ends)
        actions, mean = _plan_box(self._model, obs.float(), self._cfg, self._task, self._generator,
                                  self._warm[rows], self._ends)
        self._warm[rows] = torch.cat([mean[:, 1:], self._middle.expand(len(rows), 1, -1)], dim=1)
        return actions
