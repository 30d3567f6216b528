"""Running a blocking job that reports progress through a callback, as a stream of events.

Server-streaming handlers `yield` what the job reports while it runs in a worker thread; when the
client goes away the job is told to stop at its next progress report.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

R = TypeVar("R")

_DONE = object()


class ConsumerGone(Exception):
    """The consumer went away; raised inside the job at its next progress report."""


class ProgressJob(Generic[R]):
    """`for event in job.events(): ...` streams what `fn(report)` reports; `job.result` holds its return."""

    def __init__(self, fn: Callable[[Callable[[Any], None]], R]) -> None:
        self._fn = fn
        self._events: queue.Queue[Any] = queue.Queue(maxsize=1024)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.result: R | None = None

    def _report(self, event: Any) -> None:
        if self._stop.is_set():
            raise ConsumerGone()
        # Progress is advisory: dropping a report beats stalling the job.
        with contextlib.suppress(queue.Full):
            self._events.put_nowait(event)

    def _run(self) -> None:
        try:
            self.result = self._fn(self._report)
        except BaseException as exc:
            self._error = exc
        self._events.put(_DONE)

    def events(self) -> Iterator[Any]:
        thread = threading.Thread(target=self._run, name="job", daemon=True)
        thread.start()
        try:
            while (event := self._events.get()) is not _DONE:
                yield event
        finally:
            # Reached on normal completion and when the consumer closes the generator early.
            self._stop.set()
        thread.join()
        if self._error is not None:
            raise self._error
