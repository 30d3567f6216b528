"""ForecastErrors: the request checked, its paths sampled in the world model (plasma.mbrl.rollout), folded into a
forecast (plasma.mbrl.forecast) and encoded."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from plasma import tensors
from plasma.mbrl import rollout
from plasma.mbrl.forecast import Forecast, summarize, untrusted_from
from plasma.mbrl.types import PhantomPath
from plasma.server.errors import Cancelled, InvalidArgument, bad_input
from plasma.simulator.v1 import simulator_pb2
from services.common import wire
from services.simulator import requests
from services.simulator.store import SimulatorStore

DEFAULT_SAMPLES = 256
MAX_SAMPLES = 4096


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
        settings = wire.audit_settings_from_proto(request.audit)
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
