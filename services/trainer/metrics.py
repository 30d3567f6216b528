"""The trainer's own figures for Prometheus: runs by state, and where each running run is (round, loss, return).

Read at scrape time from the runs' records, which the recorder rewrites at every completed phase or round (the
same events a Train stream reports), so training pays nothing for them. A run's own series go once it ends.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from typing import Any

from plasma.trainer.v1 import trainer_pb2
from services.trainer.store import TrainerStore

# (name, help, the figure of a run's last progress event)
_PROGRESS = (
    ("plasma_trainer_run_round", "Last completed round of a running run (0: the base phase)", lambda p: p.round),
    ("plasma_trainer_run_total_rounds", "Rounds a running run trains for", lambda p: p.total_rounds),
    ("plasma_trainer_run_loss", "Training loss at a running run's last completed round", lambda p: p.loss),
    ("plasma_trainer_run_imagined_return", "Mean return of a running run's last phantom paths",
     lambda p: p.imagined_return),
    ("plasma_trainer_run_phantom_paths", "Phantom paths a running run has used so far", lambda p: p.phantom_paths_used),
)


def _state_name(state: int) -> str:
    return trainer_pb2.RunState.Name(state).removeprefix("RUN_STATE_").lower()


def collector(store: TrainerStore) -> Callable[[], Iterator[Any]]:
    """The scrape-time figures of the runs in `store`."""

    def collect() -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        runs = store.list_runs()
        by_state = collections.Counter(_state_name(run.state) for run in runs)
        states = GaugeMetricFamily("plasma_trainer_runs", "Training runs in the store, by state", labels=["state"])
        for state in ("running", "succeeded", "failed", "cancelled"):
            states.add_metric([state], by_state[state])
        yield states
        running = [run for run in runs if run.state == trainer_pb2.RUN_STATE_RUNNING and run.HasField("checkpoint")]
        for name, text, figure in _PROGRESS:
            family = GaugeMetricFamily(name, text, labels=["run_id", "phase"])
            for run in running:
                family.add_metric([run.run_id, run.checkpoint.phase], figure(run.checkpoint))
            yield family

    return collect
