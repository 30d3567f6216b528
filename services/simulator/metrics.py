"""The simulator's own figures for Prometheus: durable simulations by state and the phantom paths produced.

Read at scrape time from the jobs' own records, plus one count kept by Simulate, so a rollout's loop pays
nothing for them. Paths per second is the rate of plasma_simulator_phantom_paths_total.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from typing import Any

from plasma.simulator.v1 import simulator_pb2
from services.simulator.jobs import SimulationJobs


def _state_name(state: int) -> str:
    return simulator_pb2.SimulationState.Name(state).removeprefix("SIMULATION_STATE_").lower()


class Figures:
    def __init__(self, jobs: SimulationJobs) -> None:
        self._jobs = jobs
        self._lock = threading.Lock()
        self._streamed = 0

    def streamed(self) -> None:
        """One phantom path sent by Simulate."""
        with self._lock:
            self._streamed += 1

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        simulations = self._jobs.list_all()
        by_state = collections.Counter(_state_name(s.state) for s in simulations)
        states = GaugeMetricFamily("plasma_simulator_simulations", "Durable simulations in the store, by state",
                                   labels=["state"])
        for state in ("running", "succeeded", "failed", "cancelled"):
            states.add_metric([state], by_state[state])
        yield states
        paths = CounterMetricFamily(
            "plasma_simulator_phantom_paths",
            "Phantom paths produced: logged by durable simulations (all in the store) and streamed by Simulate "
            "(since start)", labels=["source"])
        paths.add_metric(["simulation"], sum(s.paths_logged for s in simulations))
        with self._lock:
            paths.add_metric(["simulate"], self._streamed)
        yield paths
