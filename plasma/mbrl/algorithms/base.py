"""What every training algorithm shares: where phantom paths come from, what the policy reads and writes, the
progress it reports and the result it returns.

An algorithm is a config dataclass and `train(source, io, cfg, report) -> TrainResult`. It sees experience
only through its `PhantomSource` (the simulator's stream in the trainer service, `plasma.mbrl.sources` in
process); one that differentiates through the world model needs a `ModelSource`, which also hands it over.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from peft import PeftModel
from torch import nn

from plasma.mbrl.devices import CPU
from plasma.mbrl.models.ensemble import EnsembleWorldModel
from plasma.mbrl.planning import PlannerConfig
from plasma.mbrl.policy_net import PolicyNet, PolicySpec
from plasma.mbrl.tasks import Task
from plasma.mbrl.types import MlpWeights, PhantomPath
from plasma.spaces import EnvSpec

# Phantom states of the final policy kept for the compiler's parity check (never trained on).
HELD_OUT_STATES = 256


class PhantomSource(Protocol):
    def simulate(
        self,
        *,
        policy: MlpWeights | PlannerConfig | None,
        num_paths: int,
        horizon: int,
        seed: int,
        start_states: str,  # "episode_starts" or "any"
        label_with_planner: PlannerConfig | None,
        reward_source: str,  # "task", "learned" or "" (the simulator's default)
    ) -> Iterator[PhantomPath]: ...


class ModelSource(PhantomSource, Protocol):
    """A phantom source that also hands over its world model and the task it scores with (None: the model's
    learned heads), for algorithms that backpropagate through the dynamics."""

    @property
    def model(self) -> EnsembleWorldModel: ...

    @property
    def task(self) -> Task | None: ...


@dataclass(frozen=True)
class PolicyIO:
    """What the policy reads and writes, from the environment spec of the world model."""

    obs_dim: int
    action_kind: str  # "discrete" or "box"
    action_dim: int  # choices (discrete) or values (box)
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()

    @classmethod
    def of(cls, spec: EnvSpec) -> PolicyIO:
        """Raises ValueError for a spec no policy network can serve (discrete observations)."""
        if spec.observation.kind != "box":
            raise ValueError("the world model's observations are discrete; the policy needs a box observation")
        if spec.action.kind == "discrete":
            return cls(obs_dim=spec.observation.flat_dim, action_kind="discrete", action_dim=spec.action.n)
        return cls(obs_dim=spec.observation.flat_dim, action_kind="box", action_dim=spec.action.flat_dim,
                   action_low=spec.action.low, action_high=spec.action.high)


@dataclass
class Progress:
    """One phase or round of training, as reported while it runs."""

    phase: str  # "base" or "adapter"
    round: int  # 0 for the base phase, then 1..total_rounds
    total_rounds: int
    imagined_return: float  # mean return of the phantom paths this phase or round rolled out
    phantom_paths_used: int
    # Algorithm-specific figures under their own names: "loss" and "planner_agreement" (distillation),
    # "short_return" (model backprop).
    figures: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    """On the CPU, whatever device trained it: the networks leave the process (bundle, ONNX export)."""

    spec: PolicySpec
    base_state: dict[str, torch.Tensor]  # state_dict of the base PolicyNet, without the adapter
    peft_model: PeftModel
    held_out_states: np.ndarray  # [n, obs_dim] float32 phantom states of the final policy, never trained on
    # imagined_return (over the audited steps), whole_path_imagined_return, audited_step_share, phantom_paths_used,
    # phantom_steps_used, training_seconds, base_parameters, adapter_parameters, and what the algorithm measures
    # besides (planner_agreement for distillation).
    metrics: dict[str, float]


Report = Callable[[Progress], None]


def mlp_weights_of(module: PolicyNet | PeftModel) -> MlpWeights:
    """The effective weights of a policy on any device, as host arrays (LoRA merged into a copy, the module itself
    untouched)."""
    net = copy.deepcopy(module)
    if isinstance(net, PeftModel):
        net = net.merge_and_unload()
    linears = [layer for layer in net.body if isinstance(layer, nn.Linear)]
    return MlpWeights(
        weights=[layer.weight.detach().cpu().numpy().astype(np.float32) for layer in linears],
        biases=[layer.bias.detach().cpu().numpy().astype(np.float32) for layer in linears],
        activation="tanh",
        obs_mean=net.obs_mean.cpu().numpy().astype(np.float32),
        obs_std=net.obs_std.cpu().numpy().astype(np.float32),
    )


def host_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached copy of a state_dict on the CPU, where checkpoints and bundles keep it."""
    return {k: v.detach().to(CPU, copy=True) for k, v in state.items()}


def held_out_states(paths: list[PhantomPath], seed: int) -> np.ndarray:
    """Up to HELD_OUT_STATES states of the final policy's own phantom paths, drawn with `seed`, in path order."""
    states = np.concatenate([p.observations for p in paths]).astype(np.float32)
    pick = np.random.default_rng(seed).permutation(len(states))[:HELD_OUT_STATES]
    return states[np.sort(pick)]


def mean_return(paths: list[PhantomPath]) -> float:
    return float(np.mean([p.rewards.sum() for p in paths]))


def whole_path_metrics(whole: list[PhantomPath], kept: list[PhantomPath]) -> dict[str, float]:
    """The final paths' mean return over every imagined step (`whole`, as streamed) and the share of their steps
    that `kept` (what the audit left) holds: the audited return alone hides how much of each path was cut."""
    steps = sum(p.length for p in whole)
    return {"whole_path_imagined_return": mean_return(whole),
            "audited_step_share": sum(p.length for p in kept) / steps if steps else 1.0}


def parameter_counts(base_state: dict[str, torch.Tensor], model: PeftModel) -> dict[str, float]:
    return {"base_parameters": sum(v.numel() for k, v in base_state.items() if k.startswith("body.")),
            "adapter_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad)}
