"""Planner distillation with DAgger in imagination: the trainer's algorithm.

1. A base policy imitates the simulator's planner on planner-driven phantom paths.
2. A LoRA adapter on that policy is trained over DAgger rounds: the current policy's own phantom
   paths are labelled by the planner, the labels aggregated, and only the adapter fitted to them.

Phantom paths come only through a `PhantomSource` (plasma.mbrl.algorithms.base).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from torch import nn

from plasma import log as plog
from plasma.mbrl.algorithms import audit_filter
from plasma.mbrl.algorithms.base import (
    PhantomSource,
    PolicyIO,
    Progress,
    Report,
    TrainResult,
    held_out_states,
    host_copy,
    mlp_weights_of,
    parameter_counts,
    whole_path_metrics,
)
from plasma.mbrl.devices import CPU
from plasma.mbrl.planning import PlannerConfig
from plasma.mbrl.policy_net import PolicyNet, PolicySpec, actions_from_output, linear_layer_names
from plasma.mbrl.types import MlpWeights, PhantomPath

log = plog.get(__name__)

# Rows per supervised gradient step.
_BATCH_SIZE = 256
# A box action "agrees" with the planner's when every dimension is within this share of its range.
_BOX_AGREEMENT_TOLERANCE = 0.1


@dataclass(frozen=True)
class DistillConfig:
    """Mirrors the proto's TrainConfig."""

    seed: int = 0
    # Width of the policy's two hidden layers.
    hidden_size: int = 64
    # Planner-driven phantom paths that the base policy imitates.
    base_paths: int = 16
    # DAgger rounds that train the LoRA adapter. More rounds did not give better CartPole policies.
    adapter_rounds: int = 1
    # Phantom paths per round, rolled out by the current policy and labelled by the planner. Paths run in
    # lockstep, so more paths per round cost less than proportionally more time; every round costs a
    # full horizon of sequential planning steps.
    paths_per_round: int = 16
    # Steps per phantom path.
    horizon: int = 200
    lora_rank: int = 8
    lora_alpha: int = 16
    # Supervised epochs over the aggregated labels, per phase and per round.
    epochs: int = 30
    learning_rate: float = 1e-3
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    # "task" (the environment's known reward/termination), "learned" (the world model's heads) or ""
    # (the simulator's choice).
    reward_source: str = "task"
    # Where phantom paths start: "episode_starts" (first states of the real episodes) or "any" (every real
    # state). Pendulum's 200-step episodes give a few hundred real steps only one or two episode starts.
    start_states: str = "episode_starts"
    # Train on every phantom path as streamed; by default paths the simulator's audit REJECTs are dropped
    # and TRUNCATEd ones cut at their last trusted step.
    ignore_audit: bool = False

    def __post_init__(self) -> None:
        for name in ("hidden_size", "base_paths", "paths_per_round", "horizon", "lora_rank", "lora_alpha",
                     "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"seed must not be negative, got {self.seed}")
        if self.adapter_rounds < 0:
            raise ValueError(f"adapter_rounds must not be negative, got {self.adapter_rounds}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        # "" leaves the choice to the simulator: the task's own reward where it knows one, else the learned heads.
        if self.reward_source not in ("", "task", "learned"):
            raise ValueError(f"reward_source must be 'task', 'learned' or '' (simulator's choice), "
                             f"got {self.reward_source!r}")
        if self.start_states not in ("episode_starts", "any"):
            raise ValueError(f"start_states must be 'episode_starts' or 'any', got {self.start_states!r}")


@dataclass
class _Labels:
    """Aggregated (state, planner action) pairs: obs [N, obs_dim], actions [N] or [N, act_dim]."""

    obs: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)

    def add(self, paths: list[PhantomPath]) -> None:
        for path in paths:
            if path.expert_actions is None:
                raise ValueError("the phantom source returned a path without the planner's labels")
            self.obs.append(path.observations[:-1])
            self.actions.append(path.expert_actions)

    def add_labels(self, obs: np.ndarray, actions: np.ndarray) -> None:
        self.obs.append(obs)
        self.actions.append(actions)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.as_tensor(np.concatenate(self.obs)), torch.as_tensor(np.concatenate(self.actions))


def _loss(spec: PolicySpec, raw: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if spec.action_kind == "discrete":
        return F.cross_entropy(raw, targets.long())
    # Regress the squashed action onto the planner's, in units of half the action range.
    high, low = (torch.tensor(bound, device=raw.device) for bound in (spec.action_high, spec.action_low))
    half_range = (high - low) / 2
    return (((actions_from_output(spec, raw) - targets.float()) / half_range) ** 2).mean()


def _agreement(spec: PolicySpec, actions: torch.Tensor, targets: torch.Tensor) -> float:
    if len(targets) == 0:
        return 0.0
    if spec.action_kind == "discrete":
        return float((actions == targets).float().mean())
    high, low = (torch.tensor(bound, device=actions.device) for bound in (spec.action_high, spec.action_low))
    tolerance = _BOX_AGREEMENT_TOLERANCE * (high - low)
    return float(((actions - targets).abs() <= tolerance).all(dim=-1).float().mean())


def _fit(
    model: nn.Module, spec: PolicySpec, labels: _Labels, cfg: DistillConfig, generator: torch.Generator,
    device: torch.device,
) -> float:
    """Supervised epochs over all labels, on `device` (the model's), updating only the trainable parameters; the
    last epoch's loss. The shuffle is drawn on the CPU by `generator`, so every device sees the same batches."""
    obs, targets = (t.to(device) for t in labels.tensors())
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.learning_rate)
    epoch_loss = 0.0
    for _ in range(cfg.epochs):
        order = torch.randperm(len(obs), generator=generator).to(device)
        total = 0.0
        for start in range(0, len(obs), _BATCH_SIZE):
            batch = order[start : start + _BATCH_SIZE]
            loss = _loss(spec, model(obs[batch]), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        epoch_loss = total / len(obs)
    return epoch_loss


def _path_stats(spec: PolicySpec, paths: list[PhantomPath]) -> tuple[float, float]:
    """Mean return of the paths and the share of their steps where the action was the planner's."""
    mean_return = float(np.mean([p.rewards.sum() for p in paths]))
    labelled = [p for p in paths if p.expert_actions is not None]
    if not labelled:
        return mean_return, 0.0
    actions = torch.as_tensor(np.concatenate([p.actions for p in labelled]))
    expert = torch.as_tensor(np.concatenate([p.expert_actions for p in labelled]))
    return mean_return, _agreement(spec, actions, expert)


def _policy_spec(io: PolicyIO, hidden_size: int, observations: np.ndarray) -> PolicySpec:
    """Policy spec whose input normalization comes from the phantom states it is trained on."""
    return PolicySpec(
        obs_dim=io.obs_dim,
        action_kind=io.action_kind,
        action_dim=io.action_dim,
        hidden_sizes=(hidden_size, hidden_size),
        obs_mean=tuple(float(v) for v in observations.mean(0)),
        obs_std=tuple(float(max(v, 1e-3)) for v in observations.std(0)),
        action_low=tuple(io.action_low),
        action_high=tuple(io.action_high),
    )


# torch's global RNG: see _seeded.
_GLOBAL_RNG_LOCK = threading.Lock()
# Seeds the LoRA initialisation like a Simulate call index that no run reaches.
_LORA_INIT_CALL = 1 << 30
_Built = TypeVar("_Built")


def _seed(base: int, call: int) -> int:
    """A distinct seed for every Simulate call of a run."""
    return (base * 1_000_003 + call) % 2**62


@dataclass(frozen=True)
class BasePolicy:
    """A trained base network that a run adapts instead of fitting its own (TrainRequest.base_run_id)."""

    spec: PolicySpec
    state: dict[str, torch.Tensor]  # PolicyNet state_dict


@dataclass
class TrainState:
    """Everything a run needs to go on after its last completed phase or round: a checkpoint.

    Restoring it rebuilds the same adapted network and generator state, so that a resumed run takes the same
    steps as an uninterrupted one (phantom paths depend only on the run seed and the call index).
    """

    progress: Progress  # the event of the completed phase ("base", round 0) or adapter round
    spec: PolicySpec
    # On the CPU, whichever device trains: a checkpoint resumes on any device.
    base_state: dict[str, torch.Tensor]  # PolicyNet state_dict, never changed by the adapter rounds
    adapter_state: dict[str, torch.Tensor]  # peft LoRA weights (get_peft_model_state_dict)
    label_obs: np.ndarray  # [N, obs_dim] aggregated planner-labelled states
    label_actions: np.ndarray  # [N] or [N, act_dim] the planner's actions
    paths_used: int
    steps_used: int
    generator_rng: torch.Tensor  # the shuffling generator's state (uint8; a CPU generator on every device)

    @property
    def round(self) -> int:
        return self.progress.round


def _snapshot(progress: Progress, spec: PolicySpec, base_state: dict[str, torch.Tensor], model: PeftModel,
              labels: _Labels, paths_used: int, steps_used: int, generator: torch.Generator) -> TrainState:
    obs, actions = labels.tensors()
    return TrainState(
        progress=progress, spec=spec, base_state=base_state,
        adapter_state=host_copy(get_peft_model_state_dict(model)),
        label_obs=obs.numpy().copy(), label_actions=actions.numpy().copy(),
        paths_used=paths_used, steps_used=steps_used,
        generator_rng=generator.get_state(),
    )


def _seeded(seed: int, build: Callable[[], _Built]) -> _Built:
    """`build()` with torch's global RNG seeded, for modules whose initialisation draws from it. The RNG is
    shared by every thread of the process: without the lock, runs training side by side would draw each
    other's numbers and stop being repeatable."""
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _adapted(spec: PolicySpec, base_state: dict[str, torch.Tensor], cfg: DistillConfig) -> PeftModel:
    """A fresh LoRA adapter, initialised from the run's seed, on a base network with `base_state`."""

    def build() -> PeftModel:
        base = PolicyNet(spec)
        base.load_state_dict(base_state)
        lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                          target_modules=linear_layer_names(spec))
        return get_peft_model(base, lora)

    return _seeded(_seed(cfg.seed, _LORA_INIT_CALL), build)


def train(
    source: PhantomSource,
    io: PolicyIO,
    cfg: DistillConfig,
    progress: Report | None = None,
    *,
    base: BasePolicy | None = None,
    resume_from: TrainState | None = None,
    on_checkpoint: Callable[[TrainState], None] | None = None,
    device: torch.device = CPU,
) -> TrainResult:
    """Trains a policy on `device`: the base phase (skipped with `base`, whose network the adapter then adapts),
    then the adapter rounds. `on_checkpoint` receives the state after the base phase and after every round, before
    `progress` hears of it; `resume_from` goes on after such a state, saved on any device."""
    started = time.monotonic()
    report = progress or (lambda _: None)
    checkpoint = on_checkpoint or (lambda _: None)
    planner = cfg.planner
    rounds = cfg.adapter_rounds
    paths_used = resume_from.paths_used if resume_from else 0
    steps_used = resume_from.steps_used if resume_from else 0

    def streamed(policy: MlpWeights | PlannerConfig, num_paths: int, call: int) -> list[PhantomPath]:
        """The paths as the simulator imagined them, before the audit."""
        return list(source.simulate(
            policy=policy, num_paths=num_paths, horizon=cfg.horizon, seed=_seed(cfg.seed, call),
            start_states=cfg.start_states, label_with_planner=planner, reward_source=cfg.reward_source,
        ))

    def learnable(paths: list[PhantomPath]) -> list[PhantomPath]:
        """What the policy may learn from: the steps the audit trusts, unless it is ignored."""
        nonlocal paths_used, steps_used
        if not cfg.ignore_audit:
            paths = audit_filter.trusted(paths)
        paths_used += len(paths)
        steps_used += sum(p.length for p in paths)
        return paths

    def phantom(policy: MlpWeights | PlannerConfig, num_paths: int, call: int) -> list[PhantomPath]:
        return learnable(streamed(policy, num_paths, call))

    # Shuffling draws from the run's own generator; module initialisation from seeded, locked sections. Both on
    # the CPU: the networks start alike on every device, and a checkpoint's generator state fits any device.
    generator = torch.Generator().manual_seed(cfg.seed)
    labels = _Labels()

    if resume_from is not None:
        # Go on after the checkpoint: the same network, labels and generator state as when it was taken.
        spec, base_state = resume_from.spec, resume_from.base_state
        model = _adapted(spec, base_state, cfg).to(device)
        set_peft_model_state_dict(model, resume_from.adapter_state)
        labels.add_labels(resume_from.label_obs, resume_from.label_actions)
        generator.set_state(resume_from.generator_rng)
        first_round = resume_from.round + 1
    elif base is not None:
        # Adapt a given base network: no base phase, only the new adapter learns.
        spec, base_state = base.spec, host_copy(base.state)
        model = _adapted(spec, base_state, cfg).to(device)
        first_round = 1
    else:
        # 1. The base policy imitates the planner on the planner's own paths.
        base_paths = phantom(planner, cfg.base_paths, call=0)
        labels.add(base_paths)
        spec = _policy_spec(io, cfg.hidden_size, np.concatenate(labels.obs))
        net = _seeded(cfg.seed, lambda: PolicyNet(spec)).to(device)
        loss = _fit(net, spec, labels, cfg, generator, device)
        planner_return, _ = _path_stats(spec, base_paths)
        obs, targets = (t.to(device) for t in labels.tensors())
        with torch.no_grad():
            agreement = _agreement(spec, net.act(obs), targets)
        log.info("base policy fitted loss=%.4f planner_return=%.1f agreement=%.3f", loss, planner_return,
                 agreement)
        base_state = host_copy(net.state_dict())
        model = _adapted(spec, base_state, cfg).to(device)
        event = Progress("base", 0, rounds, planner_return, paths_used,
                         {"loss": loss, "planner_agreement": agreement})
        checkpoint(_snapshot(event, spec, base_state, model, labels, paths_used, steps_used, generator))
        report(event)
        first_round = 1

    # 2. DAgger rounds train only the LoRA adapter on the policy's own, relabelled paths.
    for round_index in range(first_round, rounds + 1):
        paths = phantom(mlp_weights_of(model), cfg.paths_per_round, call=round_index)
        imagined_return, agreement = _path_stats(spec, paths)
        labels.add(paths)
        loss = _fit(model, spec, labels, cfg, generator, device)
        log.info("adapter round=%d/%d loss=%.4f imagined_return=%.1f agreement=%.3f", round_index, rounds,
                 loss, imagined_return, agreement)
        event = Progress("adapter", round_index, rounds, imagined_return, paths_used,
                         {"loss": loss, "planner_agreement": agreement})
        checkpoint(_snapshot(event, spec, base_state, model, labels, paths_used, steps_used, generator))
        report(event)

    # 3. The final policy on fresh paths: metrics, and held-out states it was never trained on.
    whole_paths = streamed(mlp_weights_of(model), cfg.paths_per_round, call=rounds + 1)
    final_paths = learnable(whole_paths)
    imagined_return, agreement = _path_stats(spec, final_paths)
    metrics = {
        "imagined_return": imagined_return,
        **whole_path_metrics(whole_paths, final_paths),
        "planner_agreement": agreement,
        "phantom_paths_used": paths_used,
        "phantom_steps_used": steps_used,
        "training_seconds": time.monotonic() - started,
        **parameter_counts(base_state, model),
    }
    return TrainResult(spec, base_state, model.to(CPU), held_out_states(final_paths, cfg.seed), metrics)
