"""Error forecasts: where, and how likely, a policy's path from one start state goes wrong.

Many phantom paths (one ensemble member each, TS1) are rolled out from the same start state; their spread
is the model's uncertainty about the future, their terminations the chance of failure, and the steps the
audit no longer trusts the chance that the model itself is wrong about that future.

Statistics over the samples are taken over ALL sampled paths at every step: a path that terminated early
keeps its last (terminal) state for the steps after its end, so the bands show where the system is, not
only where the survivors are, and the probabilities are shares of all samples. Disagreement is the mean
over the paths still running at a step (NaN once every path has ended: no step, no disagreement).
A path counts as a model error from the first step the audit (services.simulator.audit, the request's
AuditConfig, as in Simulate) does not trust; like a failure, that status stays once reached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from plasma import tensors
from plasma.mbrl import audit, rollout
from plasma.mbrl.types import PhantomPath
from plasma.server.errors import Cancelled, InvalidArgument, bad_input
from plasma.simulator.v1 import simulator_pb2
from services.common import wire
from services.simulator import requests
from services.simulator.store import SimulatorStore

DEFAULT_SAMPLES = 256
MAX_SAMPLES = 4096
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


def start_observation(message: simulator_pb2.ForecastErrorsRequest, obs_dim: int) -> np.ndarray:
    """The request's start state as [obs_dim] float32, checked."""
    if not message.HasField("start_observation"):
        raise InvalidArgument(f"start_observation is required: a [{obs_dim}] float32 tensor")
    with bad_input():
        start = tensors.from_proto(message.start_observation, "start_observation")
    if start.size != obs_dim or start.ndim > 1:
        raise InvalidArgument(
            f"start_observation must have shape [{obs_dim}] for this model, got {list(start.shape)}"
        )
    start = start.astype(np.float32).reshape(obs_dim)
    if not np.isfinite(start).all():
        raise InvalidArgument(f"start_observation must be finite, got {start.tolist()}")
    return start


def forecast(
    request: simulator_pb2.ForecastErrorsRequest,
    store: SimulatorStore,
    models: requests.ModelCache,
    active: Callable[[], bool] = lambda: True,
) -> Forecast:
    """Validates `request`, samples its paths and folds them into a forecast. `active()` is asked between
    batches of paths: a forecast nobody waits for any more (a planner's can take minutes) stops early."""
    meta = store.model(request.model_id)
    if not 1 <= request.horizon <= requests.MAX_HORIZON:
        raise InvalidArgument(f"horizon={request.horizon} must be in 1..{requests.MAX_HORIZON}")
    num_samples = request.num_samples or DEFAULT_SAMPLES
    if not 1 <= num_samples <= MAX_SAMPLES:
        raise InvalidArgument(
            f"num_samples={request.num_samples} must be in 1..{MAX_SAMPLES} (0 for the default {DEFAULT_SAMPLES})"
        )
    with bad_input():
        settings = audit.settings_from_proto(request.audit)
    policy = requests.rollout_policy(request.policy)
    task, source = requests.task_and_source(request, meta)
    model = models.get(request.model_id)
    start = start_observation(request, model.obs_dim)
    _, data = store.transitions(meta.dataset_id)
    support = models.support(request.model_id, data)
    paths: list[PhantomPath] = []
    with bad_input():
        for path in rollout.simulate(
            model, policy=policy, num_paths=num_samples, horizon=int(request.horizon), seed=int(request.seed),
            start_pool=start[None, :], reward_source=source, task=task, support=support, audit=settings,
        ):
            if len(paths) % rollout.BATCH_PATHS == 0 and not active():
                raise Cancelled(f"forecast stopped after {len(paths)} of {num_samples} paths: the caller went away")
            paths.append(path)
    return summarize(paths, int(request.horizon), [untrusted_from(path) for path in paths])


def to_proto(result: Forecast) -> simulator_pb2.ForecastErrorsResponse:
    return simulator_pb2.ForecastErrorsResponse(
        mean_observations=tensors.to_proto(result.mean_observations.astype(np.float32)),
        lower_observations=tensors.to_proto(result.lower_observations),
        upper_observations=tensors.to_proto(result.upper_observations),
        failure_probability=tensors.to_proto(result.failure_probability),
        model_error_probability=tensors.to_proto(result.model_error_probability),
        disagreement=tensors.to_proto(result.disagreement),
        likely_failure_step=result.likely_failure_step,
        likely_model_error_step=result.likely_model_error_step,
        samples=[wire.path_to_proto(path, index) for index, path in enumerate(result.samples)],
    )
