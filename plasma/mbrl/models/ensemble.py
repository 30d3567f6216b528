"""Ensemble of probabilistic MLPs that predicts the next state, the reward and termination (PETS/MBPO), and its
persistence (a directory of config.json and weights.safetensors; models.archive zips one).

Each member maps normalized (obs, action) to a Gaussian over normalized (state delta, reward) plus a
termination logit, and trains on its own bootstrap of the training rows (plasma.mbrl.fitting), so that
disagreement between members measures how far a state is from the data.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from plasma import files
from plasma import log as plog
from plasma.mbrl.devices import CPU
from plasma.spaces import EnvSpec

log = plog.get(__name__)

_CONFIG_FILE = "config.json"
_WEIGHTS_FILE = "weights.safetensors"


@dataclass(frozen=True)
class WorldModelConfig:
    """Hyperparameters; the field names are those of the proto's WorldModelConfig."""

    # Independently initialised members, each trained on its own bootstrap of the training rows.
    ensemble_size: int = 5
    # Width of each hidden layer. 128 rather than PETS' 200: as accurate on held-out CartPole data,
    # about twice as fast in the planner, and it extrapolated better to states the data never reached.
    hidden_size: int = 128
    # Number of hidden layers (SiLU between them).
    num_layers: int = 3
    # Adam steps; every step updates all members on a batch each. 1000 rather than 2000: as good a
    # policy in the end on CartPole (fitting held-out steps closer did not make better policies).
    train_steps: int = 1000
    learning_rate: float = 1e-3
    # Share of episodes held out for the metrics (the tail of the only episode when there is one).
    holdout_fraction: float = 0.2
    # Rows per member per step.
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("ensemble_size", "hidden_size", "num_layers", "train_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"world model {name} must be at least 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"world model seed must not be negative, got {self.seed}")
        if self.learning_rate <= 0:
            raise ValueError(f"world model learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 < self.holdout_fraction <= 0.5:
            raise ValueError(f"holdout_fraction must be in (0, 0.5], got {self.holdout_fraction}")


class StepResult(NamedTuple):
    next_obs: torch.Tensor  # [B, obs_dim]
    reward: torch.Tensor  # [B] the learned reward head
    done_prob: torch.Tensor  # [B] the learned termination head
    disagreement: torch.Tensor  # [B] std over members of the predicted next obs, normalized units


class EnsembleWorldModel(nn.Module):
    # Buffers (register_buffer): declared here so that they are typed as tensors, not Tensor | Module.
    in_mean: torch.Tensor
    in_std: torch.Tensor
    target_mean: torch.Tensor
    target_std: torch.Tensor

    def __init__(self, spec: EnvSpec, config: WorldModelConfig) -> None:
        super().__init__()
        self.spec = spec
        self.config = config
        self.obs_dim = spec.observation.flat_dim
        self.target_dim = self.obs_dim + 1  # state delta, then reward
        in_dim = self.obs_dim + spec.action.flat_dim
        sizes = [in_dim, *[config.hidden_size] * config.num_layers, 2 * self.target_dim + 1]
        size_pairs = list(itertools.pairwise(sizes))
        members = config.ensemble_size
        # One [members, in, out] tensor per layer: bmm trains all members at once, and a member's
        # slice is a plain matrix for the rollouts, where a loop over members beats bmm on CPU.
        self.weights = nn.ParameterList(nn.Parameter(torch.empty(members, i, o)) for i, o in size_pairs)
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(members, o)) for _, o in size_pairs)
        self.max_logvar = nn.Parameter(torch.full((self.target_dim,), 0.5))
        self.min_logvar = nn.Parameter(torch.full((self.target_dim,), -10.0))
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("target_mean", torch.zeros(self.target_dim))
        self.register_buffer("target_std", torch.ones(self.target_dim))
        generator = torch.Generator().manual_seed(config.seed)
        for weight in self.weights:
            bound = 1.0 / math.sqrt(weight.shape[1])
            nn.init.uniform_(weight, -bound, bound, generator=generator)

    @property
    def device(self) -> torch.device:
        """Where the weights are (`.to(device)` moves them); every tensor a method creates is made there."""
        return self.in_mean.device

    # Encoding

    def features(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Raw model inputs [B, obs_dim + act_dim]: obs, then the action (one-hot when discrete)."""
        if self.spec.action.kind == "discrete":
            encoded = F.one_hot(actions.long(), self.spec.action.n).float()
        else:
            encoded = actions.float().reshape(obs.shape[0], -1)
        return torch.cat([obs.float(), encoded], dim=-1)

    def normalized(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return (self.features(obs, actions) - self.in_mean) / self.in_std

    @property
    def obs_scale(self) -> torch.Tensor:
        """Per-dimension std of the training observations: the unit of the normalized errors."""
        return self.in_std[: self.obs_dim]

    # Networks

    def forward_all(self, x: torch.Tensor) -> torch.Tensor:
        """x [E, B, in] -> [E, B, out], member e on row block e."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b.unsqueeze(1), x, w)
            if i < last:
                x = F.silu(x)
        return x

    def _member_layers(self) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Per member, its (weight [in, out], bias [out]) views: slicing once per call, not per layer."""
        per_layer = [(w.unbind(0), b.unbind(0)) for w, b in zip(self.weights, self.biases, strict=True)]
        return [[(w[m], b[m]) for w, b in per_layer] for m in range(self.config.ensemble_size)]

    @staticmethod
    def _forward_member(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        """x [B, in] -> [B, out] through one member's layers."""
        last = len(layers) - 1
        for i, (w, b) in enumerate(layers):
            x = torch.addmm(b, x, w)
            if i < last:
                x = F.silu(x)
        return x

    def heads(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw output -> normalized target mean, bounded log-variance, termination logit."""
        d = self.target_dim
        mean, raw_logvar, logit = out[..., :d], out[..., d : 2 * d], out[..., 2 * d]
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw_logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar, logit

    def decode(self, obs: torch.Tensor, mean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized target mean [..., B, D] -> next obs [..., B, obs_dim] and reward [..., B]."""
        target = mean * self.target_std + self.target_mean
        return obs + target[..., : self.obs_dim], target[..., self.obs_dim]

    # Prediction

    @torch.no_grad()
    def predict(
        self, obs: torch.Tensor, actions: torch.Tensor, member_idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each row through its own member only (TS1, no disagreement): next_obs, reward, done_prob."""
        x = self.normalized(obs, actions)
        members = self._member_layers()
        # Rows grouped by member, so that each member runs once on a contiguous block.
        order = member_idx.argsort(stable=True)
        counts = torch.bincount(member_idx, minlength=self.config.ensemble_size).tolist()
        blocks = x[order].split(counts)
        out = torch.empty(obs.shape[0], 2 * self.target_dim + 1, device=x.device)
        out[order] = torch.cat([self._forward_member(members[m], block) for m, block in enumerate(blocks)])
        next_obs, reward = self.decode(obs.float(), out[:, : self.target_dim])
        return next_obs, reward, torch.sigmoid(out[:, 2 * self.target_dim])

    @torch.no_grad()
    def step(
        self, obs: torch.Tensor, actions: torch.Tensor, member_idx: torch.Tensor | Literal["mean"]
    ) -> StepResult:
        """One imagined step for a batch: obs [B, obs_dim], actions [B] or [B, act_dim],
        member_idx [B] (each row follows that member) or "mean" (the ensemble average)."""
        x = self.normalized(obs, actions)
        out = torch.stack([self._forward_member(layers, x) for layers in self._member_layers()])
        mean, _, logit = self.heads(out)  # [E, B, D], [E, B]
        next_all, reward_all = self.decode(obs.float(), mean)
        # Population std, so that a one-member "ensemble" reports 0 rather than NaN.
        disagreement = (next_all / self.obs_scale).std(dim=0, correction=0).mean(dim=-1)
        done_all = torch.sigmoid(logit)
        if isinstance(member_idx, str):
            if member_idx != "mean":
                raise ValueError(f"member_idx must be a tensor of member indices or 'mean', got {member_idx!r}")
            return StepResult(next_all.mean(0), reward_all.mean(0), done_all.mean(0), disagreement)
        rows = torch.arange(obs.shape[0], device=obs.device)
        member_idx = member_idx.long()
        return StepResult(
            next_all[member_idx, rows], reward_all[member_idx, rows], done_all[member_idx, rows], disagreement
        )

    def rollout_step(
        self, obs: torch.Tensor, actions: torch.Tensor, member_idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like `step` with member indices, but differentiable (no torch.no_grad), for backpropagating an
        imagined return into the actions: next_obs [B, obs_dim], reward [B], done_prob [B]."""
        x = self.normalized(obs, actions)
        mean, _, logit = self.heads(self.forward_all(x.expand(self.config.ensemble_size, -1, -1)))
        next_all, reward_all = self.decode(obs.float(), mean)  # [E, B, obs_dim], [E, B]
        rows = torch.arange(obs.shape[0], device=obs.device)
        member_idx = member_idx.long()
        return next_all[member_idx, rows], reward_all[member_idx, rows], torch.sigmoid(logit[member_idx, rows])

    @torch.no_grad()
    def predictive(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ensemble's one-step distribution of the next observation, moment-matched to one Gaussian per
        dimension: mean [B, obs_dim] = mean of the members' means; variance [B, obs_dim] = mean of their
        (aleatoric) variances + the (epistemic) variance of their means. Raw units."""
        x = self.normalized(obs, actions)
        mean, logvar, _ = self.heads(self.forward_all(x.expand(self.config.ensemble_size, -1, -1)))
        scale = self.target_std[: self.obs_dim]
        member_next, _ = self.decode(obs.float(), mean)  # [E, B, obs_dim]
        member_var = torch.exp(logvar[..., : self.obs_dim]) * scale**2
        return member_next.mean(0), member_var.mean(0) + member_next.var(0, correction=0)

    # Persistence

    def save(self, directory: str | Path) -> None:
        """Writes config.json and weights.safetensors into `directory`, which must not exist yet;
        it appears complete or not at all."""
        directory = Path(directory)
        if directory.exists():
            raise FileExistsError(f"{directory} exists already; a saved world model is never overwritten")

        def fill(tmp: Path) -> None:
            save_file({k: v.cpu().contiguous() for k, v in self.state_dict().items()}, str(tmp / _WEIGHTS_FILE))
            meta = {"spec": self.spec.to_json(), "config": asdict(self.config)}
            (tmp / _CONFIG_FILE).write_text(json.dumps(meta, sort_keys=True))

        files.write_dir_atomic(directory, fill)

    @classmethod
    def load(cls, directory: str | Path, device: torch.device = CPU) -> EnsembleWorldModel:
        """The model saved in `directory` (on any device), on `device`."""
        directory = Path(directory)
        meta = json.loads((directory / _CONFIG_FILE).read_text())
        # EnvSpec.from_json also reads models saved before specs had a JSON form of their own (every field).
        model = cls(EnvSpec.from_json(meta["spec"]), WorldModelConfig(**meta["config"]))
        model.load_state_dict(load_file(str(directory / _WEIGHTS_FILE)))
        return model.to(device).eval()
