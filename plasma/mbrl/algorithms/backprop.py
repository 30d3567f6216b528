"""Model backpropagation (SVG/Dreamer-style): the trainer's second algorithm.

The policy is trained by gradient ascent on the TD(lambda) return of short imagined rollouts, bootstrapped by
a critic beyond their horizon, with the gradient flowing through the world model's predicted next states (and
learned reward, if used) into the actions. Each rollout step follows a random ensemble member per row, so that
the policy cannot exploit the errors of one member. Box actions only: they are squashed into the bounds, which
keeps the return differentiable in the action.

1. A base policy is trained from start states of random-policy phantom paths.
2. A LoRA adapter on it is trained the same way from start states of the base policy's own phantom
   paths: the "base + adapter" structure that the compiler and the edge expect.

Start states come from phantom paths like planner distillation's; the world model itself is needed for its
gradient, so the source is a `ModelSource`, which hands it over (the trainer fetches it with ExportWorldModel).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from plasma import log as plog
from plasma.mbrl import devices
from plasma.mbrl.algorithms.base import (
    ModelSource,
    PolicyIO,
    Progress,
    Report,
    TrainResult,
    held_out_states,
    host_copy,
    mean_return,
    mlp_weights_of,
    parameter_counts,
    whole_path_metrics,
)
from plasma.mbrl.models.ensemble import EnsembleWorldModel
from plasma.mbrl.policy_net import PolicyNet, PolicySpec, actions_from_output, linear_layer_names
from plasma.mbrl.tasks import Task
from plasma.mbrl.types import PhantomPath

log = plog.get(__name__)

# Start states per gradient step.
_BATCH_SIZE = 256
# Gradient norm clip: backpropagation through many model steps can produce rare huge gradients.
_MAX_GRAD_NORM = 10.0
# Progress log lines per phase.
_REPORTS = 5
# TD(lambda) mixing of the critic's values into the imagined returns (Dreamer's 0.95).
_LAMBDA = 0.95
_CRITIC_LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class BackpropConfig:
    """The fields of the proto's TrainConfig that this algorithm reads."""

    seed: int = 0
    hidden_size: int = 64
    # Phantom paths whose states are start states, per phase.
    paths_per_round: int = 16
    # Steps per phantom path.
    horizon: int = 200
    lora_rank: int = 8
    lora_alpha: int = 16
    learning_rate: float = 1e-3
    # Imagined steps the return is backpropagated over, and gradient steps per phase.
    backprop_horizon: int = 15
    backprop_steps: int = 300
    discount: float = 0.99
    reward_source: str = "task"

    def __post_init__(self) -> None:
        for name in ("hidden_size", "paths_per_round", "horizon", "lora_rank", "lora_alpha", "backprop_horizon",
                     "backprop_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"seed must not be negative, got {self.seed}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if self.reward_source not in ("", "task", "learned"):
            raise ValueError(f"reward_source must be 'task', 'learned' or '', got {self.reward_source!r}")


def check_io(io: PolicyIO) -> None:
    """Raises ValueError for what this algorithm cannot train."""
    if io.action_kind != "box":
        raise ValueError(
            "ALGORITHM_MODEL_BACKPROP needs a box (continuous) action space to differentiate the return in the "
            "action; this world model's actions are discrete: use ALGORITHM_PLANNER_DISTILLATION"
        )
    if not np.isfinite([*io.action_low, *io.action_high]).all():
        raise ValueError("ALGORITHM_MODEL_BACKPROP squashes actions into the bounds, which must be finite")


class Critic(nn.Module):
    """State value V(s) [B] of the current policy, bootstrapping the return beyond the short horizon."""

    # Buffers (register_buffer): declared here so that they are typed as tensors, not Tensor | Module.
    obs_mean: torch.Tensor
    obs_std: torch.Tensor

    def __init__(self, spec: PolicySpec, hidden_size: int, scale: float) -> None:
        super().__init__()
        # Values in units of `scale` (about the size of a return): a network whose outputs are O(1) learns returns
        # of -1000 (Pendulum) within a few hundred steps, which raw outputs under gradient clipping do not.
        self.scale = scale
        self.register_buffer("obs_mean", torch.tensor(spec.obs_mean))
        self.register_buffer("obs_std", torch.tensor(spec.obs_std))
        self.body = nn.Sequential(nn.Linear(spec.obs_dim, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size),
                                  nn.SiLU(), nn.Linear(hidden_size, 1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        value: torch.Tensor = self.scale * self.body((obs - self.obs_mean) / self.obs_std).squeeze(-1)
        return value


def imagine(
    policy: nn.Module,
    spec: PolicySpec,
    model: EnsembleWorldModel,
    task: Task | None,
    start: torch.Tensor,
    horizon: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`horizon` imagined steps from start [B, obs_dim], differentiable in the policy's parameters: states
    [H + 1, B, obs_dim], rewards [H, B] and continuation [H, B] (0 after a termination; the learned
    termination probability's complement when `task` is None, which also means the learned reward)."""
    states, rewards, continues = [start], [], []
    for _ in range(horizon):
        state = states[-1]
        actions = actions_from_output(spec, policy(state))
        members = torch.randint(model.config.ensemble_size, (state.shape[0],), generator=generator, device=state.device)
        next_state, learned_reward, done_prob = model.rollout_step(state, actions, members)
        if task is None:
            reward, done = learned_reward, done_prob
        else:
            reward, done = task.reward(state, actions, next_state), task.terminated(next_state).float()
        states.append(next_state)
        rewards.append(reward)
        continues.append(1.0 - done)
    return torch.stack(states), torch.stack(rewards), torch.stack(continues)


def lambda_returns(
    rewards: torch.Tensor, continues: torch.Tensor, values: torch.Tensor, discount: float, lam: float
) -> torch.Tensor:
    """TD(lambda) returns [H, B] of rewards/continues [H, B] with values [H + 1, B] of the states."""
    returns = []
    following = values[-1]
    for t in reversed(range(rewards.shape[0])):
        following = rewards[t] + discount * continues[t] * ((1 - lam) * values[t + 1] + lam * following)
        returns.append(following)
    return torch.stack(returns[::-1])


def train(source: ModelSource, io: PolicyIO, cfg: BackpropConfig, progress: Report | None = None,
          device: torch.device = devices.CPU) -> TrainResult:
    """Trains on `device` (with a copy of the source's world model there, where it is elsewhere). The source's task
    gives the reward and termination (None: the model's learned heads); cfg.reward_source is what the phantom paths
    that give the start states are scored with."""
    check_io(io)
    started = time.monotonic()
    report = progress or (lambda _: None)
    model = source.model if source.model.device == device else copy.deepcopy(source.model).to(device)
    model = model.eval().requires_grad_(False)
    task = source.task
    paths_used = steps_used = 0

    def phantom(policy: PolicyNet | PeftModel | None, call: int) -> list[PhantomPath]:
        nonlocal paths_used, steps_used
        paths = list(source.simulate(
            policy=None if policy is None else mlp_weights_of(policy), num_paths=cfg.paths_per_round,
            horizon=cfg.horizon, seed=(cfg.seed * 1_000_003 + call) % 2**62, start_states="any",
            label_with_planner=None, reward_source=cfg.reward_source,
        ))
        paths_used += len(paths)
        steps_used += sum(p.length for p in paths)
        return paths

    def optimize(policy: nn.Module, critic: Critic, spec: PolicySpec, starts: np.ndarray, phase: str) -> float:
        """Gradient steps on the policy's trainable parameters and the critic; the last mean return."""
        pool = torch.as_tensor(starts, device=device)
        actor_opt = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=cfg.learning_rate)
        critic_opt = torch.optim.Adam(critic.parameters(), lr=_CRITIC_LEARNING_RATE)
        value = 0.0
        for step in range(1, cfg.backprop_steps + 1):
            batch = pool[torch.randint(len(pool), (_BATCH_SIZE,), generator=generator, device=device)]
            states, rewards, continues = imagine(policy, spec, model, task, batch, cfg.backprop_horizon, generator)
            returns = lambda_returns(rewards, continues, critic(states), cfg.discount, _LAMBDA)  # [H, B]
            # The actor ascends the return of the first step; the critic's weights are not moved by it.
            actor_opt.zero_grad(set_to_none=True)
            (-returns[0].mean()).backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), _MAX_GRAD_NORM)
            actor_opt.step()
            # The critic regresses every imagined state's value onto its (fixed) return.
            critic_opt.zero_grad(set_to_none=True)
            critic_loss = (((critic(states[:-1].detach()) - returns.detach()) / critic.scale) ** 2).mean()
            critic_loss.backward()
            torch.nn.utils.clip_grad_norm_(critic.parameters(), _MAX_GRAD_NORM)
            critic_opt.step()
            value = float(returns[0].detach().mean())
            if step % max(1, cfg.backprop_steps // _REPORTS) == 0 or step == cfg.backprop_steps:
                log.info("%s step=%d/%d return=%.2f critic_loss=%.3g", phase, step, cfg.backprop_steps, value,
                         float(critic_loss.detach()))
        return value

    # The networks are initialised on the CPU from the seeded global generator, then moved: they start alike on
    # every device. Sampling draws from a generator on the device.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        generator = devices.generator(device, cfg.seed)

        # 1. Base policy from the states of random-policy phantom paths.
        random_paths = phantom(None, call=0)
        starts = np.concatenate([p.observations for p in random_paths]).astype(np.float32)
        spec = PolicySpec(
            obs_dim=io.obs_dim, action_kind="box", action_dim=io.action_dim, hidden_sizes=(cfg.hidden_size,) * 2,
            obs_mean=tuple(float(v) for v in starts.mean(0)),
            obs_std=tuple(float(max(v, 1e-3)) for v in starts.std(0)),
            action_low=tuple(io.action_low), action_high=tuple(io.action_high),
        )
        base = PolicyNet(spec)
        reward_size = float(np.mean([np.abs(p.rewards).mean() for p in random_paths if p.length]))
        critic = Critic(spec, cfg.hidden_size, scale=max(reward_size, 1e-3) / (1 - cfg.discount * _LAMBDA)).to(device)
        base.to(device)
        short_return = optimize(base, critic, spec, starts, "base")
        base_paths = phantom(base, call=1)
        report(Progress("base", 0, 1, mean_return(base_paths), paths_used, {"short_return": short_return}))
        base_state = host_copy(base.state_dict())

        # 2. The LoRA adapter, from the states the base policy itself reaches.
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                          target_modules=linear_layer_names(spec))
        peft_model = get_peft_model(base.to(devices.CPU), lora).to(device)
        on_policy = np.concatenate([p.observations for p in base_paths]).astype(np.float32)
        short_return = optimize(peft_model, critic, spec, on_policy, "adapter")

        # 3. The final policy's own phantom paths: metrics, and parity states it was never trained on.
        final_paths = phantom(peft_model, call=2)
        final_return = mean_return(final_paths)
        report(Progress("adapter", 1, 1, final_return, paths_used, {"short_return": short_return}))

    metrics = {
        "imagined_return": final_return,
        **whole_path_metrics(final_paths, final_paths),  # no audit cuts these paths
        "phantom_paths_used": paths_used,
        "phantom_steps_used": steps_used,
        "training_seconds": time.monotonic() - started,
        **parameter_counts(base_state, peft_model),
    }
    return TrainResult(spec, base_state, peft_model.to(devices.CPU), held_out_states(final_paths, cfg.seed), metrics)
