"""A trainer that is told to stop (SIGTERM) leaves its runs RUNNING for the next start to resume, and first
lets its training threads end: a thread still inside torch or gRPC when the interpreter exits can abort
the process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from plasma import log as plog
from plasma.mbrl.algorithms.distill import PhantomSource
from plasma.mbrl.types import PhantomPath
from plasma.server.streaming import Cancelled

log = plog.get(__name__)

# Names of the threads that train: ProgressJob's worker and the resume thread (server.py).
TRAINING_THREADS = ("job", "resume-runs")


class StoppableSource:
    """A phantom source that ends its run's training at the next path once the trainer is stopping."""

    def __init__(self, source: PhantomSource, stopping: threading.Event) -> None:
        self._source = source
        self._stopping = stopping

    def simulate(self, **request: Any) -> Iterator[PhantomPath]:
        for path in self._source.simulate(**request):
            if self._stopping.is_set():
                raise Cancelled("the trainer is stopping; the run resumes on its next start")
            yield path


def wait_for_training_threads(timeout_s: float) -> None:
    """Joins the training threads, each at its next phantom path or progress event, for at most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    for thread in threading.enumerate():
        if thread.name in TRAINING_THREADS and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("training thread %s still running after %.0f s; exiting anyway", thread.name, timeout_s)
