"""How good a world model is on held-out episodes, in figures a person can compare across models.

- Open-loop error at k = 1, 10, 50 steps: from a real held-out state, the ensemble mean is stepped k times
  under the logged actions (each step feeds the previous prediction back in) and compared with the real
  state k steps later, against the naive "the state stays where it is". Windows stay inside one episode;
  a horizon no held-out episode is long enough for is left out.
- One-step calibration: the members' Gaussians are moment-matched to one Gaussian per dimension (mean of
  the means; variance = mean aleatoric variance + epistemic variance of the means, see
  `EnsembleWorldModel.predictive`). Its negative log-likelihood and the share of real next states inside
  its central 90 % interval (mean ± 1.645 std) say whether the model's uncertainty can be trusted.

Errors and NLL are in normalized units: divided by each observation dimension's training std (the
model's `obs_scale`), so dimensions of different scale weigh alike and numbers compare across systems.
To compare two models on the same data (a parent before fine-tuning, the child after), measure both with
the same `obs_scale`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from plasma.mbrl.models.ensemble import EnsembleWorldModel
from plasma.mbrl.types import Transitions

HORIZONS = (1, 10, 50)
# Open-loop windows per horizon, evenly spaced over all valid starts: bounds the cost on big datasets.
MAX_WINDOWS = 4096
# Rows per forward pass for the one-step figures.
_CHUNK = 4096
# Half-width of the central 90 % interval of a standard normal.
_Z90 = 1.6448536269514722


@dataclass(frozen=True)
class HorizonError:
    """Open-loop error `steps` ahead, normalized RMSE, against "next = current"."""

    steps: int
    model_rmse: float
    naive_rmse: float
    model_rmse_per_dim: list[float]
    naive_rmse_per_dim: list[float]
    windows: int


@dataclass(frozen=True)
class Quality:
    """What `measure` finds; the fields are those of the proto's WorldModelQuality."""

    horizons: list[HorizonError]
    nll: float
    coverage_90: float
    coverage_90_per_dim: list[float]
    holdout_transitions: int
    dataset_id: str


def window_starts(episode_ids: np.ndarray, held_rows: np.ndarray, steps: int) -> np.ndarray:
    """Held-out rows t whose rows t..t + steps - 1 all belong to t's episode (rows of an episode are
    contiguous), at most MAX_WINDOWS of them, evenly spaced."""
    held = np.zeros(len(episode_ids), dtype=bool)
    held[held_rows] = True
    starts = np.arange(len(episode_ids) - steps + 1)
    ends = starts + steps - 1
    valid: np.ndarray = starts[held[starts] & held[ends] & (episode_ids[starts] == episode_ids[ends])]
    if len(valid) > MAX_WINDOWS:
        valid = valid[np.linspace(0, len(valid) - 1, MAX_WINDOWS).round().astype(np.int64)]
    return valid


@torch.no_grad()
def horizon_error(model: EnsembleWorldModel, data: Transitions, held_rows: np.ndarray, steps: int,
                  scale: torch.Tensor) -> HorizonError | None:
    """Open-loop error `steps` ahead on held-out windows; None when there is no window that long."""
    starts = window_starts(data.episode_ids, held_rows, steps)
    if not len(starts):
        return None
    obs = torch.as_tensor(data.obs, dtype=torch.float32, device=model.device)
    actions = torch.as_tensor(data.actions, device=model.device)
    state = obs[starts]  # [W, obs_dim]
    for offset in range(steps):
        state = model.step(state, actions[starts + offset], "mean").next_obs
    target = torch.as_tensor(data.next_obs[starts + steps - 1], dtype=torch.float32, device=model.device)
    model_sq = (((state - target) / scale) ** 2).double()  # [W, obs_dim]
    naive_sq = (((obs[starts] - target) / scale) ** 2).double()
    return HorizonError(
        steps=steps,
        model_rmse=float(model_sq.mean().sqrt()),
        naive_rmse=float(naive_sq.mean().sqrt()),
        model_rmse_per_dim=model_sq.mean(0).sqrt().tolist(),
        naive_rmse_per_dim=naive_sq.mean(0).sqrt().tolist(),
        windows=len(starts),
    )


@torch.no_grad()
def _calibration(model: EnsembleWorldModel, data: Transitions, held_rows: np.ndarray,
                 scale: torch.Tensor) -> tuple[float, list[float]]:
    """Mean one-step Gaussian NLL per dimension and the per-dimension 90 % interval coverage."""
    scale = scale.double()
    nll_sum = 0.0
    inside = torch.zeros(model.obs_dim, dtype=torch.float64, device=model.device)
    for start in range(0, len(held_rows), _CHUNK):
        rows = held_rows[start : start + _CHUNK]
        mean, var = model.predictive(torch.as_tensor(data.obs[rows], device=model.device),
                                     torch.as_tensor(data.actions[rows], device=model.device))
        target = torch.as_tensor(data.next_obs[rows], device=model.device).double()
        z = (target - mean.double()) / scale  # [B, obs_dim] normalized error
        var_n = var.double() / scale**2
        nll_sum += float((0.5 * (math.log(2 * math.pi) + var_n.log() + z**2 / var_n)).sum())
        inside += (z.abs() <= _Z90 * var_n.sqrt()).double().sum(0)
    count = len(held_rows)
    return nll_sum / (count * model.obs_dim), (inside / count).tolist()


def measure(model: EnsembleWorldModel, data: Transitions, held_rows: np.ndarray, dataset_id: str,
            obs_scale: torch.Tensor | None = None) -> Quality:
    """All quality figures of `model` on the rows `held_rows` of `data` (held-out episodes), in units of
    `obs_scale` [obs_dim] (default: the model's own training std)."""
    held_rows = np.sort(np.asarray(held_rows, dtype=np.int64))
    scale = model.obs_scale if obs_scale is None else obs_scale
    model.eval()
    horizons = [error for steps in HORIZONS
                if (error := horizon_error(model, data, held_rows, steps, scale)) is not None]
    nll, coverage = _calibration(model, data, held_rows, scale)
    return Quality(
        horizons=horizons,
        nll=nll,
        coverage_90=float(np.mean(coverage)),
        coverage_90_per_dim=coverage,
        holdout_transitions=len(held_rows),
        dataset_id=dataset_id,
    )


def fit_reports(
    fitted: EnsembleWorldModel,
    parent: EnsembleWorldModel | None,
    data: Transitions,
    held_rows: np.ndarray,
    dataset_id: str,
) -> list[tuple[str, Quality]]:
    """What a fit reports: ("before", the parent on the new held-out rows, in the new model's units) when
    fine-tuning, then ("after", the new model)."""
    reports = []
    if parent is not None:
        reports.append(("before", measure(parent, data, held_rows, dataset_id, obs_scale=fitted.obs_scale)))
    reports.append(("after", measure(fitted, data, held_rows, dataset_id)))
    return reports
