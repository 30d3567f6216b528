"""The CLI's progress lines: at most one per stage per interval, and a stage's last event before its "done"."""

from __future__ import annotations

import pytest

from plasma.cli import ProgressPrinter
from plasma.sdk.workflow import StageDone
from plasma.simulator.v1 import simulator_pb2


def _collected(steps: int) -> simulator_pb2.CollectionProgress:
    return simulator_pb2.CollectionProgress(steps_done=steps, steps_total=200, episodes_done=steps // 20)


def test_a_stage_quicker_than_the_interval_shows_its_first_and_last_events(
    capsys: pytest.CaptureFixture[str],
) -> None:
    printer = ProgressPrinter(interval_s=3600.0)
    for steps in (2, 100, 200):
        printer("collect", _collected(steps))
    printer("collect", StageDone(seconds=0.1))
    assert capsys.readouterr().err.splitlines() == [
        "[collect] 2/200 real steps, 0 episodes",
        "[collect] 200/200 real steps, 10 episodes",
        "[collect] done in 0.1 s",
    ]


def test_an_event_already_printed_is_not_repeated_before_done(capsys: pytest.CaptureFixture[str]) -> None:
    printer = ProgressPrinter(interval_s=0.0)
    printer("collect", _collected(200))
    printer("collect", StageDone(seconds=2.0))
    assert capsys.readouterr().err.splitlines() == [
        "[collect] 200/200 real steps, 10 episodes",
        "[collect] done in 2.0 s",
    ]
