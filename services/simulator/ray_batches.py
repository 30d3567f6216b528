"""Simulation batches as Ray tasks, when PLASMA_RAY_ADDRESS names a Ray cluster (docs/scaling.md).

The simulator connects as a Ray Client driver and runs each batch of a request's phantom paths (rollout, planner
labels, audit: plasma.mbrl.rollout.run_batch) as a task on the cluster's workers, which run the simulator image
itself, so they import the same code. A batch depends only on the model, the request and its own seed, so the paths
are those the simulator gives in process, and a task that Ray retries after its worker died gives them again: a
lost worker costs time, not results. Everything else (fitting, the stores, the durable simulation logs) stays in
the simulator process, which remains the source of truth.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Iterator, Sequence

import ray
import ray.exceptions
import torch

from plasma import log as plog
from plasma.mbrl import threads
from plasma.mbrl.models.ensemble import EnsembleWorldModel
from plasma.mbrl.rollout import Batch, Plan, run_batch
from plasma.mbrl.types import PhantomPath
from plasma.server.errors import Unavailable

log = plog.get(__name__)

# Ray's own retries of a task whose worker or node died (system failures; a Python error is not retried: it
# would fail again).
TASK_RETRIES = 5
# Batches in flight per CPU of the cluster: enough to keep every worker busy while the first batches stream back,
# few enough that a cancelled request leaves little work behind.
IN_FLIGHT_PER_CPU = 2
_CONNECT_RETRY_S = 2.0


def _run_on_worker(model: EnsembleWorldModel, plan: Plan, batch: Batch, torch_threads: int) -> list[PhantomPath]:
    """A batch on a Ray worker, with the simulator's torch threads: the same arithmetic as in process."""
    threads.configure_torch(torch_threads)
    with torch.inference_mode():
        return run_batch(model, plan, batch)


class RayBatches:
    """A plasma.mbrl.rollout.Runner that runs batches on the Ray cluster at `address` (e.g. ray://ray-head:10001)."""

    def __init__(self, address: str, torch_threads: int, connect_timeout_s: float = 120.0) -> None:
        self._threads = torch_threads
        deadline = time.monotonic() + connect_timeout_s
        while True:
            try:
                ray.init(address=address, namespace="plasma", logging_level=logging.WARNING)
                break
            except ConnectionError as exc:  # the head is still starting (compose starts them together)
                if time.monotonic() >= deadline:
                    raise ConnectionError(f"no Ray cluster at PLASMA_RAY_ADDRESS={address} after "
                                          f"{connect_timeout_s:.0f} s: {exc}") from exc
                log.info("waiting for the Ray cluster at %s: %s", address, exc)
                time.sleep(_CONNECT_RETRY_S)
        self._remote = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(_run_on_worker)
        log.info("simulation batches run on the Ray cluster at %s: %s", address, self.describe())

    @staticmethod
    def describe() -> str:
        nodes = [node for node in ray.nodes() if node.get("Alive")]
        return f"{len(nodes)} nodes alive, {ray.cluster_resources().get('CPU', 0):g} CPUs"

    def __call__(self, model: EnsembleWorldModel, plan: Plan, planned: Sequence[Batch]) -> Iterator[list[PhantomPath]]:
        """The batches' paths in order, each as soon as it and those before it are done."""
        try:
            model_ref, plan_ref = ray.put(model), ray.put(plan)
            window = max(1, int(ray.cluster_resources().get("CPU", 1)) * IN_FLIGHT_PER_CPU)
        except (ConnectionError, ray.exceptions.RayError) as exc:
            raise Unavailable(f"the Ray cluster is unreachable: {exc}") from exc
        pending: collections.deque[ray.ObjectRef] = collections.deque()
        try:
            for batch in planned:
                if len(pending) >= window:
                    yield self._result(pending.popleft())
                pending.append(self._remote.remote(model_ref, plan_ref, batch, self._threads))
            while pending:
                yield self._result(pending.popleft())
        finally:
            # The caller stopped reading (a cancelled RPC, a failed batch): the rest is not wanted.
            for ref in pending:
                ray.cancel(ref)

    @staticmethod
    def _result(ref: ray.ObjectRef) -> list[PhantomPath]:
        try:
            paths: list[PhantomPath] = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the batch's own code raised: a fault, not the cluster's
            raise RuntimeError(f"a simulation batch raised on a Ray worker: {exc}") from exc
        except (ConnectionError, ray.exceptions.RayError) as exc:
            raise Unavailable(f"a simulation batch failed on the Ray cluster (after {TASK_RETRIES} retries "
                              f"of lost workers): {exc}") from exc
        return paths
