"""Phantom paths: batched rollouts of a policy (random, MLP or planner) inside the world model."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from plasma.mbrl import devices
from plasma.mbrl.audit import AuditSettings, Support, audit_batch, episode_ends
from plasma.mbrl.models.ensemble import EnsembleWorldModel
from plasma.mbrl.planning import PathPlanner, PlannerConfig, check_reward_source, rewards_and_dones
from plasma.mbrl.policies import MlpPolicy
from plasma.mbrl.tasks import Task, TerminationFn
from plasma.mbrl.types import MlpWeights, PhantomPath, Transitions

# Paths rolled out together; large enough to amortise per-step overhead, small enough to stream early.
BATCH_PATHS = 64
# The same on a GPU, where a step of 64 paths costs what a step of thousands does (kernel launches, copies back).
# Not tuned on a GPU yet: bench/gpu_check.sh measures paths/s at this size.
GPU_BATCH_PATHS = 4096
# How a batch's paths choose their actions: (states [B, obs_dim], their paths' rows in the batch [B]) -> actions.
Act = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def start_states(transitions: Transitions, which: str) -> np.ndarray:
    """Start pool [n, obs_dim]: first observations of the episodes ("episode_starts") or all ("any")."""
    if which == "any":
        return transitions.obs
    if which != "episode_starts":
        raise ValueError(f"start_states must be 'episode_starts' or 'any', got {which!r}")
    first_rows = np.flatnonzero(np.r_[True, transitions.episode_ids[1:] != transitions.episode_ids[:-1]])
    return transitions.obs[first_rows]


@dataclass(frozen=True)
class Plan:
    """What every batch of one request shares besides the world model. It holds no closures and nothing of the
    process, so a batch can run wherever the model can (in process, or as a Ray task:
    services/simulator/ray_batches.py)."""

    horizon: int
    start_pool: np.ndarray  # [n, obs_dim]
    policy: MlpWeights | PlannerConfig | None
    label_with_planner: PlannerConfig | None
    task: Task | None  # scores the paths; None: the learned reward and termination
    support: Support | None  # the model's audit support; None: no audit
    audit: AuditSettings | None


@dataclass(frozen=True)
class Batch:
    """Paths rolled out together: `size` paths drawn from their own `seed`, so that a batch gives the same paths
    whichever process runs it and in whatever order the batches run."""

    index: int
    size: int
    seed: int


# Runs a request's batches and yields their paths, batch by batch in order: `in_process` or a RayBatches.
Runner = Callable[[EnsembleWorldModel, Plan, Sequence[Batch]], Iterator[list[PhantomPath]]]


def batch_seed(seed: int, index: int) -> int:
    """The seed of a request's batch `index`. Batch 0 draws from the request's seed itself, so a request of one
    batch gives the paths it gave when batches still shared one generator; the others from (seed, index)."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0] >> np.uint64(2))


def batches(num_paths: int, seed: int, batch_paths: int) -> list[Batch]:
    return [Batch(index, min(batch_paths, num_paths - first), batch_seed(seed, index))
            for index, first in enumerate(range(0, num_paths, batch_paths))]


def default_batch_paths(device: torch.device) -> int:
    return BATCH_PATHS if device.type == "cpu" else GPU_BATCH_PATHS


def simulate(
    model: EnsembleWorldModel,
    *,
    policy: MlpWeights | PlannerConfig | None,
    num_paths: int,
    horizon: int,
    seed: int,
    start_pool: np.ndarray,
    label_with_planner: PlannerConfig | None = None,
    reward_source: str = "task",
    task: Task | None = None,
    support: Support | None = None,
    audit: AuditSettings | None = None,
    batch_paths: int | None = None,
    runner: Runner | None = None,
) -> Iterator[PhantomPath]:
    """The `num_paths` paths, in order, each following one ensemble member (TS1) from a start state drawn
    from `start_pool` [n, obs_dim] until its first predicted termination or `horizon` steps. The same seed and
    `batch_paths` (default: default_batch_paths of the model's device) give the same paths on the same device,
    whichever `runner` (default: in_process) runs the batches. Arguments are checked here, before the first path
    is computed. With the model's `support`, every path carries the audit's verdict under `audit` (default
    settings when None).
    """
    check_reward_source(reward_source, task)
    obs_dim = model.obs_dim
    if start_pool.ndim != 2 or start_pool.shape[1] != obs_dim or len(start_pool) == 0:
        raise ValueError(f"start_pool must be [n >= 1, {obs_dim}], got {list(start_pool.shape)}")
    if num_paths < 1 or horizon < 1:
        raise ValueError(f"num_paths and horizon must be at least 1, got {num_paths} and {horizon}")
    if seed < 0:
        raise ValueError(f"seed must not be negative, got {seed}")
    if batch_paths is not None and batch_paths < 1:
        raise ValueError(f"batch_paths must be at least 1, got {batch_paths}")
    samples_box = policy is None or isinstance(policy, PlannerConfig) or label_with_planner is not None
    bounds = [*model.spec.action.low, *model.spec.action.high]
    if samples_box and model.spec.action.kind == "box" and not np.isfinite(bounds).all():
        raise ValueError("random actions and the planner need a box action space with finite bounds")
    scored_task = task if reward_source == "task" else None
    # A task's reward is a known function of the (audited) states: only learned rewards are range-checked.
    settings = None if support is None else replace(audit or AuditSettings(), check_rewards=scored_task is None)
    plan = Plan(horizon, start_pool, policy, label_with_planner, scored_task, support, settings)
    planned = batches(num_paths, seed, batch_paths or default_batch_paths(model.device))

    def paths() -> Iterator[PhantomPath]:
        for batch in (runner or in_process)(model, plan, planned):
            yield from batch

    return paths()


def in_process(model: EnsembleWorldModel, plan: Plan, planned: Sequence[Batch]) -> Iterator[list[PhantomPath]]:
    for batch in planned:
        yield run_batch(model, plan, batch)


def run_batch(model: EnsembleWorldModel, plan: Plan, batch: Batch) -> list[PhantomPath]:
    """One batch's paths, audited when the plan has a support."""
    device = model.device
    rng = np.random.default_rng(batch.seed)
    generator = devices.generator(device, batch.seed)
    policy, size, task = plan.policy, batch.size, plan.task
    # A learned termination is where real episodes were seen to end, where the data shows it (audit.episode_ends).
    ends = episode_ends(plan.support) if task is None and plan.support is not None else None
    # A planner-driven path labelled by the same planner needs no second plan per step.
    same_planner = isinstance(policy, PlannerConfig) and policy == plan.label_with_planner
    act = _actor(model, policy, task, generator, size, ends)
    # Only the drawn rows become a tensor (a copy: stored arrays may be read-only), not the whole pool per batch.
    starts = torch.tensor(plan.start_pool[rng.integers(0, len(plan.start_pool), size)], dtype=torch.float32,
                          device=device)
    members = torch.as_tensor(rng.integers(0, model.config.ensemble_size, size), device=device)
    labeler = (None if plan.label_with_planner is None or same_planner else
               PathPlanner(model, plan.label_with_planner, task, generator, size, ends))
    paths = _rollout_batch(model, starts, members, plan.horizon, act, labeler, same_planner, task, ends)
    if plan.support is not None and plan.audit is not None:  # both or neither
        paths = _audited(paths, plan.support, plan.audit)
    return paths


def _actor(model: EnsembleWorldModel, policy: MlpWeights | PlannerConfig | None, task: Task | None,
           generator: torch.Generator, size: int, ends: TerminationFn | None) -> Act:
    """How a batch's paths choose: the MLP, the planner (warm along each path), or random actions."""
    if isinstance(policy, MlpWeights):
        mlp = MlpPolicy(policy, model.spec, model.device)
        return lambda obs, _rows: mlp.act(obs)
    if isinstance(policy, PlannerConfig):
        return PathPlanner(model, policy, task, generator, size, ends)
    return lambda obs, _rows: _random_actions(model, obs.shape[0], generator)


def _random_actions(model: EnsembleWorldModel, count: int, generator: torch.Generator) -> torch.Tensor:
    space, device = model.spec.action, generator.device
    if space.kind == "discrete":
        return torch.randint(space.n, (count,), generator=generator, device=device)
    low = torch.tensor(space.low, dtype=torch.float32, device=device)
    high = torch.tensor(space.high, dtype=torch.float32, device=device)
    return low + torch.rand((count, space.flat_dim), generator=generator, device=device) * (high - low)


def _rollout_batch(
    model: EnsembleWorldModel,
    obs: torch.Tensor,
    members: torch.Tensor,
    horizon: int,
    act: Act,
    labeler: Act | None,
    labelled_by_actor: bool,
    task: Task | None,
    ends: TerminationFn | None = None,
) -> list[PhantomPath]:
    """The batch's paths; the planner's labels come from `labeler`, or are the actions themselves when the
    planner that labels them also drives (`labelled_by_actor`). The tensors are on the model's device; each step is
    copied into the host's arrays (`.cpu()` costs nothing on the CPU)."""
    size = obs.shape[0]
    discrete = model.spec.action.kind == "discrete"
    action_shape = () if discrete else (model.spec.action.flat_dim,)
    action_dtype = np.int64 if discrete else np.float32
    observations = np.zeros((horizon + 1, size, model.obs_dim), dtype=np.float32)  # [T + 1, paths, obs_dim]
    observations[0] = obs.cpu().numpy()
    actions = np.zeros((horizon, size, *action_shape), dtype=action_dtype)
    expert = np.zeros_like(actions) if labeler is not None or labelled_by_actor else None
    rewards = np.zeros((horizon, size), dtype=np.float32)
    dones = np.zeros((horizon, size), dtype=bool)
    uncertainty = np.zeros((horizon, size), dtype=np.float32)
    lengths = np.zeros(size, dtype=np.int64)
    alive = torch.ones(size, dtype=torch.bool, device=obs.device)
    state = obs.clone()
    for t in range(horizon):
        rows = alive.nonzero().squeeze(1)
        idx = rows.cpu().numpy()
        current = state[rows]
        chosen = act(current, rows)
        if expert is not None:
            expert[t, idx] = (chosen if labeler is None else labeler(current, rows)).cpu().numpy()
        next_obs, learned_reward, done_prob, disagreement = model.step(current, chosen, members[rows])
        reward, done = rewards_and_dones(task, current, chosen, next_obs, learned_reward, done_prob, ends)
        observations[t + 1, idx] = next_obs.cpu().numpy()
        actions[t, idx] = chosen.cpu().numpy()
        rewards[t, idx] = reward.cpu().numpy()
        dones[t, idx] = done.cpu().numpy()
        uncertainty[t, idx] = disagreement.cpu().numpy()
        lengths[idx] += 1
        state[rows] = next_obs
        alive[rows] = ~done
        if not alive.any():
            break
    member_ids = members.tolist()
    return [
        PhantomPath(
            observations=observations[: steps + 1, i].copy(),
            actions=actions[:steps, i].copy(),
            rewards=rewards[:steps, i].copy(),
            dones=dones[:steps, i].copy(),
            uncertainty=uncertainty[:steps, i].copy(),
            expert_actions=None if expert is None else expert[:steps, i].copy(),
            members=np.full(steps, member_ids[i], dtype=np.int64),  # TS1: one member for the whole path
        )
        for i, steps in enumerate(lengths.tolist())
    ]


def _audited(paths: list[PhantomPath], support: Support, settings: AuditSettings) -> list[PhantomPath]:
    """The batch's paths with their verdicts, audited in one vectorized pass over [T, paths] arrays."""
    lengths = np.array([p.length for p in paths])
    horizon = int(lengths.max())
    observations = np.zeros((horizon + 1, len(paths), paths[0].observations.shape[1]))
    rewards = np.zeros((horizon, len(paths)))
    dones = np.zeros((horizon, len(paths)), dtype=bool)
    uncertainty = np.zeros((horizon, len(paths)))
    for i, path in enumerate(paths):
        observations[: path.length + 1, i] = path.observations
        rewards[: path.length, i] = path.rewards
        dones[: path.length, i] = path.dones
        uncertainty[: path.length, i] = path.uncertainty
    for path, verdict in zip(paths, audit_batch(observations, rewards, dones, uncertainty, lengths, support, settings),
                             strict=True):
        path.audit = verdict
    return paths
