"""The policy network shared by the trainer (which trains it) and the compiler (which exports it)."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class PolicySpec:
    """Everything needed to rebuild a policy network, serialisable as JSON."""

    obs_dim: int
    # "discrete" (output = logits over `action_dim` choices) or "box" (output squashed into bounds).
    action_kind: str
    action_dim: int
    hidden_sizes: tuple[int, ...] = (64, 64)
    obs_mean: tuple[float, ...] = field(default_factory=tuple)
    obs_std: tuple[float, ...] = field(default_factory=tuple)
    action_low: tuple[float, ...] = field(default_factory=tuple)
    action_high: tuple[float, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.action_kind not in ("discrete", "box"):
            raise ValueError(f"action_kind must be 'discrete' or 'box', got {self.action_kind!r}")
        for name in ("obs_mean", "obs_std"):
            if len(getattr(self, name)) not in (0, self.obs_dim):
                raise ValueError(f"{name} must have obs_dim={self.obs_dim} entries")
        bounds_complete = len(self.action_low) == len(self.action_high) == self.action_dim
        if self.action_kind == "box" and not bounds_complete:
            raise ValueError("a box action needs action_low and action_high with action_dim entries")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PolicySpec:
        raw = json.loads(text)
        for key in ("hidden_sizes", "obs_mean", "obs_std", "action_low", "action_high"):
            raw[key] = tuple(raw.get(key, ()))
        return cls(**raw)


# Names of the Linear layers inside PolicyNet.body that LoRA adapts.
def linear_layer_names(spec: PolicySpec) -> list[str]:
    return [f"body.{2 * i}" for i in range(len(spec.hidden_sizes) + 1)]


class PolicyNet(nn.Module):
    """obs [batch, obs_dim] -> raw output [batch, action_dim]: logits, or pre-squash actions for a box."""

    # Buffers (register_buffer): declared here so that they are typed as tensors, not Tensor | Module.
    obs_mean: torch.Tensor
    obs_std: torch.Tensor

    def __init__(self, spec: PolicySpec) -> None:
        super().__init__()
        self.spec = spec
        sizes = [spec.obs_dim, *spec.hidden_sizes, spec.action_dim]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(nn.Tanh())
        self.body = nn.Sequential(*layers)
        mean = torch.tensor(spec.obs_mean or [0.0] * spec.obs_dim, dtype=torch.float32)
        std = torch.tensor(spec.obs_std or [1.0] * spec.obs_dim, dtype=torch.float32)
        self.register_buffer("obs_mean", mean)
        self.register_buffer("obs_std", std.clamp_min(1e-6))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.body((obs - self.obs_mean) / self.obs_std)
        return output

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic action: argmax index [batch] (discrete) or bounded values [batch, act_dim] (box)."""
        return actions_from_output(self.spec, self.forward(obs))


def actions_from_output(spec: PolicySpec, raw: torch.Tensor) -> torch.Tensor:
    if spec.action_kind == "discrete":
        return raw.argmax(dim=-1)
    low = torch.tensor(spec.action_low, dtype=raw.dtype, device=raw.device)
    high = torch.tensor(spec.action_high, dtype=raw.dtype, device=raw.device)
    return low + (torch.tanh(raw) + 1.0) * 0.5 * (high - low)
