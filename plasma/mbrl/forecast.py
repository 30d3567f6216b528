"""Error forecasts: where, and how likely, a policy's path from one start state goes wrong.

Many phantom paths (one ensemble member each, TS1) are rolled out from the same start state; their spread
is the model's uncertainty about the future, their terminations the chance of failure, and the steps the
audit no longer trusts the chance that the model itself is wrong about that future.

Statistics over the samples are taken over ALL sampled paths at every step: a path that terminated early
keeps its last (terminal) state for the steps after its end, so the bands show where the system is, not
only where the survivors are, and the probabilities are shares of all samples. Disagreement is the mean
over the paths still running at a step (NaN once every path has ended: no step, no disagreement).
A path counts as a model error from the first step the audit (plasma.mbrl.audit) does not trust; like a
failure, that status stays once reached. The simulator's ForecastErrors samples the paths
(services/simulator/forecasts.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plasma.mbrl.types import PhantomPath

# Sample paths returned for drawing: enough to see the spread, few enough to keep the reply small.
RETURNED_SAMPLES = 8
# A probability that reaches this marks the "likely" step.
LIKELY = 0.5


@dataclass(frozen=True)
class Forecast:
    """Statistics over the sampled paths; T is the requested horizon."""

    mean_observations: np.ndarray  # [T + 1, obs_dim]
    lower_observations: np.ndarray  # [T + 1, obs_dim], 5th percentile
    upper_observations: np.ndarray  # [T + 1, obs_dim], 95th percentile
    failure_probability: np.ndarray  # [T]
    model_error_probability: np.ndarray  # [T]
    disagreement: np.ndarray  # [T]
    likely_failure_step: int
    likely_model_error_step: int
    samples: list[PhantomPath]


def summarize(paths: list[PhantomPath], horizon: int, untrusted_from: list[int | None]) -> Forecast:
    """Folds sampled paths into a forecast. `untrusted_from[i]` is the first step of path i that is not
    trusted (None: all trusted)."""
    count = len(paths)
    obs_dim = paths[0].observations.shape[1]
    states = np.empty((count, horizon + 1, obs_dim), dtype=np.float32)  # [paths, T + 1, obs_dim]
    disagreement = np.full((count, horizon), np.nan, dtype=np.float32)  # [paths, T]
    failed_at = np.full(count, horizon, dtype=np.int64)  # first failed step; horizon = never
    for i, path in enumerate(paths):
        steps = path.length
        states[i, : steps + 1] = path.observations
        states[i, steps + 1:] = path.observations[-1]  # an ended path holds its last state
        disagreement[i, :steps] = path.uncertainty
        if steps and bool(path.dones[-1]):
            failed_at[i] = steps - 1
    distrusted_at = np.array([horizon if u is None else u for u in untrusted_from], dtype=np.int64)
    step = np.arange(horizon)
    failure = (failed_at[:, None] <= step[None, :]).mean(axis=0).astype(np.float32)  # [T]
    model_error = (distrusted_at[:, None] <= step[None, :]).mean(axis=0).astype(np.float32)  # [T]
    running = ~np.isnan(disagreement)
    with np.errstate(invalid="ignore"):  # steps no path reached: 0 / 0 -> NaN, as documented
        mean_disagreement = (np.where(running, disagreement, 0.0).sum(axis=0) / running.sum(axis=0))
    lower, upper = np.percentile(states, [5.0, 95.0], axis=0)
    return Forecast(
        mean_observations=states.mean(axis=0),
        lower_observations=lower.astype(np.float32),
        upper_observations=upper.astype(np.float32),
        failure_probability=failure,
        model_error_probability=model_error,
        disagreement=mean_disagreement.astype(np.float32),
        likely_failure_step=_first_reaching(failure, LIKELY),
        likely_model_error_step=_first_reaching(model_error, LIKELY),
        samples=paths[:RETURNED_SAMPLES],
    )


def _first_reaching(probability: np.ndarray, level: float) -> int:
    reached = np.flatnonzero(probability >= level)
    return int(reached[0]) if len(reached) else -1


def untrusted_from(path: PhantomPath) -> int | None:
    """First step of the path that the audit does not trust (TRUNCATE at k, or REJECT at its first flagged
    step k: steps before k are trusted), or None when it passed."""
    if path.audit is None or path.audit.verdict == "pass":
        return None
    return path.audit.valid_steps
