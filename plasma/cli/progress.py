"""Progress of the services' streams on stderr: bars (rich) on a terminal, plain lines anywhere else.

Either way a stage ends with its final state (e.g. 200/200 real steps) and how long it took."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TextIO

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column
from rich.text import Text

from plasma.cli.output import is_terminal
from plasma.compiler.v1 import compiler_pb2
from plasma.sdk.workflow import StageDone
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2


class Printer(Protocol):
    def __call__(self, stage: str, event: Any) -> None: ...

    def close(self) -> None: ...


def describe_progress(event: Message) -> str:
    if isinstance(event, simulator_pb2.CollectionProgress):
        return f"{event.steps_done}/{event.steps_total} real steps, {event.episodes_done} episodes"
    if isinstance(event, simulator_pb2.BatchAck):
        return f"batch {event.batch_index} stored, {event.transitions_stored} transitions so far"
    if isinstance(event, simulator_pb2.FitProgress):
        return (f"step {event.step}/{event.total_steps}  train NLL {event.train_nll:.3f}  "
                f"held-out NLL {event.holdout_nll:.3f}  held-out MSE {event.holdout_obs_mse:.5f}")
    if isinstance(event, trainer_pb2.TrainProgress):
        return (f"{event.phase} round {event.round}/{event.total_rounds}  loss {event.loss:.4f}  "
                f"imagined return {event.imagined_return:.1f}  planner agreement {event.planner_agreement:.3f}  "
                f"phantom paths {event.phantom_paths_used}")
    if isinstance(event, compiler_pb2.CompileProgress):
        return f"{event.stage}: {event.message}"
    return json_format.MessageToJson(event, indent=None)


def counter(event: Message) -> tuple[str, int, int | None] | None:
    """(the part of the stage it counts, done, total or None) of a counting event; None for one that says what
    happened (a compile step), which is always worth its own line."""
    if isinstance(event, simulator_pb2.CollectionProgress):
        return "", event.steps_done, event.steps_total
    if isinstance(event, simulator_pb2.BatchAck):
        return "", event.transitions_stored, None
    if isinstance(event, simulator_pb2.FitProgress):
        return "", event.step, event.total_steps
    if isinstance(event, trainer_pb2.TrainProgress):
        return event.phase, event.round, event.total_rounds
    return None


class LinePrinter:
    """One line per event, a counting stage's at most every `interval_s`, and a stage's last event before its
    "done" line (so a stage quicker than the interval does not seem to stop at its first event)."""

    def __init__(self, stream: TextIO | None = None, interval_s: float = 1.0) -> None:
        self._stream = stream
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._skipped: dict[str, Any] = {}  # per stage, the latest event not printed

    def __call__(self, stage: str, event: Any) -> None:
        now = time.monotonic()
        if isinstance(event, StageDone):
            if stage in self._skipped:
                self._print(stage, describe_progress(self._skipped.pop(stage)))
            self._print(stage, f"done in {event.seconds:.1f} s")
            return
        if counter(event) is not None and stage in self._last and now - self._last[stage] < self._interval_s:
            self._skipped[stage] = event
            return
        self._last[stage] = now
        self._skipped.pop(stage, None)
        self._print(stage, describe_progress(event))

    def close(self) -> None:
        """Nothing to close: every line is out."""

    def _print(self, stage: str, text: str) -> None:
        print(f"[{stage}] {text}", file=self._stream or sys.stderr, flush=True)


class BarPrinter:
    """A bar per counting stage (per training phase), left on screen at its final state; a line above the bars
    for each step that says what happened."""

    def __init__(self, stream: TextIO) -> None:
        # The stage's name and the bar keep their width; the event's figures give way on a narrow terminal.
        self._progress = Progress(
            SpinnerColumn(finished_text="✓"),
            TextColumn("[bold]{task.description}", table_column=Column(no_wrap=True, min_width=7)),
            BarColumn(bar_width=24), TimeElapsedColumn(),
            TextColumn("{task.fields[detail]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
            console=Console(file=stream), expand=True)
        self._tasks: dict[str, list[TaskID]] = {}  # per stage, its bars
        self._bars: dict[str, TaskID] = {}  # per stage and phase
        self._progress.start()

    def __call__(self, stage: str, event: Any) -> None:
        if isinstance(event, StageDone):
            for task in self._tasks.get(stage, []):
                total = self._progress.tasks[task].total
                self._progress.update(task, total=total or 1, completed=total or 1)
                self._progress.stop_task(task)
            self._progress.console.print(Text(f"[{stage}] done in {event.seconds:.1f} s"))
            return
        counted = counter(event)
        if counted is None:
            self._progress.console.print(Text(f"[{stage}] {describe_progress(event)}"))
            return
        part, done, total = counted
        label = f"{stage} {part}".strip()
        if label not in self._bars:
            self._bars[label] = self._progress.add_task(label, total=total, detail="")
            self._tasks.setdefault(stage, []).append(self._bars[label])
        self._progress.update(self._bars[label], completed=done, total=total, detail=describe_progress(event))

    def close(self) -> None:
        self._progress.stop()


@contextlib.contextmanager
def printer(stream: TextIO | None = None) -> Iterator[Printer]:
    """Bars when `stream` (stderr by default) is a terminal, else lines; the bars stop on the way out."""
    stream = stream or sys.stderr
    shown: Printer = BarPrinter(stream) if is_terminal(stream) else LinePrinter(stream)
    try:
        yield shown
    finally:
        shown.close()


@contextlib.contextmanager
def stage(name: str) -> Iterator[Callable[[Any], None]]:
    """The progress callback of one command's stage; the stage's final state and time once it succeeded."""
    started = time.monotonic()
    with printer() as show:
        yield lambda event: show(name, event)
        show(name, StageDone(time.monotonic() - started))
