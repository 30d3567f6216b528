"""Batched evaluation of an `MlpWeights` policy, checked against the environment it has to act in."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from plasma.mbrl.devices import CPU
from plasma.mbrl.types import MlpWeights
from plasma.spaces import EnvSpec

_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "silu": F.silu}


def _shape(array: np.ndarray) -> str:
    return str(list(np.shape(array)))


def validate(weights: MlpWeights, spec: EnvSpec) -> None:
    """Raises ValueError, naming the layer and the expected size, when `weights` cannot act in `spec`."""
    obs_dim = spec.observation.flat_dim
    if weights.activation not in _ACTIVATIONS:
        raise ValueError(f"activation {weights.activation!r} is not one of {sorted(_ACTIVATIONS)}")
    if not weights.weights or len(weights.weights) != len(weights.biases):
        raise ValueError(
            f"a policy needs at least one layer and one bias per weight, got {len(weights.weights)} weights "
            f"and {len(weights.biases)} biases"
        )
    n_in = obs_dim
    for i, (w, b) in enumerate(zip(weights.weights, weights.biases, strict=True)):
        if np.ndim(w) != 2:
            raise ValueError(f"layer {i} weight must be a [out, in] matrix, got shape {_shape(w)}")
        if w.shape[1] != n_in:
            source = f"the observation has {obs_dim} dims" if i == 0 else f"layer {i - 1} outputs {n_in}"
            raise ValueError(f"layer {i} weight is {_shape(w)} but {source}")
        if np.shape(b) != (w.shape[0],):
            raise ValueError(f"layer {i} bias is {_shape(b)} but its weight has {w.shape[0]} outputs")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ValueError(f"layer {i} holds NaN or infinite values")
        n_in = w.shape[0]
    needed = spec.action.flat_dim
    if n_in != needed:
        what = f"logits for {needed} choices" if spec.action.kind == "discrete" else f"{needed} action values"
        raise ValueError(f"the last layer outputs {n_in} values but the action space needs {what}")
    for name in ("obs_mean", "obs_std"):
        value = getattr(weights, name)
        if np.shape(value) != (obs_dim,):
            raise ValueError(f"{name} is {_shape(value)} but the observation has {obs_dim} dims")
    if not (np.asarray(weights.obs_std) > 0).all():
        raise ValueError("obs_std must be positive in every dimension")
    if spec.action.kind == "box" and not np.isfinite([*spec.action.low, *spec.action.high]).all():
        raise ValueError("a policy can only squash into a box action space with finite bounds")


class MlpPolicy:
    """Deterministic actions of a validated MlpWeights policy: argmax (discrete) or tanh-squashed (box), computed
    on `device` (observations given to `act` are there too)."""

    def __init__(self, weights: MlpWeights, spec: EnvSpec, device: torch.device = CPU) -> None:
        validate(weights, spec)
        self._spec = spec
        self._device = device

        def tensor(values: object) -> torch.Tensor:
            # A copy: arrays decoded from a message are read-only, and the policy must not alias the caller's.
            return torch.tensor(np.asarray(values), dtype=torch.float32, device=device)

        self._weights = [tensor(w) for w in weights.weights]
        self._biases = [tensor(b) for b in weights.biases]
        self._activation = _ACTIVATIONS[weights.activation]
        self._obs_mean = tensor(weights.obs_mean)
        self._obs_std = tensor(weights.obs_std)
        if spec.action.kind == "box":
            self._low = tensor(spec.action.low)
            self._high = tensor(spec.action.high)

    @torch.no_grad()
    def output(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, obs_dim] -> raw output [B, out]: logits or pre-squash values."""
        x = (obs.float() - self._obs_mean) / self._obs_std
        last = len(self._weights) - 1
        for i, (w, b) in enumerate(zip(self._weights, self._biases, strict=True)):
            x = torch.addmm(b, x, w.T)
            if i < last:
                x = self._activation(x)
        return x

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [B, obs_dim] -> actions [B] int64 (discrete) or [B, act_dim] float32 (box)."""
        raw = self.output(obs)
        if self._spec.action.kind == "discrete":
            return raw.argmax(dim=-1)
        return self._low + (torch.tanh(raw) + 1.0) * 0.5 * (self._high - self._low)

    def act_numpy(self, obs: np.ndarray) -> np.ndarray:
        return self.act(torch.as_tensor(np.asarray(obs, dtype=np.float32), device=self._device)).cpu().numpy()
