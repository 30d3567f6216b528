"""The CLI's progress lines: at most one per counting stage per interval, every compile step, and a stage's last
event before its "done" (also for a single command such as `plasma collect`)."""

from __future__ import annotations

import pytest

from plasma.cli import progress
from plasma.cli.progress import LinePrinter
from plasma.compiler.v1 import compiler_pb2
from plasma.sdk.workflow import StageDone
from plasma.simulator.v1 import simulator_pb2


def _collected(steps: int) -> simulator_pb2.CollectionProgress:
    return simulator_pb2.CollectionProgress(steps_done=steps, steps_total=200, episodes_done=steps // 20)


def test_a_stage_quicker_than_the_interval_shows_its_first_and_last_events(
    capsys: pytest.CaptureFixture[str],
) -> None:
    printer = LinePrinter(interval_s=3600.0)
    for steps in (2, 100, 200):
        printer("collect", _collected(steps))
    printer("collect", StageDone(seconds=0.1))
    assert capsys.readouterr().err.splitlines() == [
        "[collect] 2/200 real steps, 0 episodes",
        "[collect] 200/200 real steps, 10 episodes",
        "[collect] done in 0.1 s",
    ]


def test_an_event_already_printed_is_not_repeated_before_done(capsys: pytest.CaptureFixture[str]) -> None:
    printer = LinePrinter(interval_s=0.0)
    printer("collect", _collected(200))
    printer("collect", StageDone(seconds=2.0))
    assert capsys.readouterr().err.splitlines() == [
        "[collect] 200/200 real steps, 10 episodes",
        "[collect] done in 2.0 s",
    ]


def test_every_compile_step_is_printed_however_quick(capsys: pytest.CaptureFixture[str]) -> None:
    printer = LinePrinter(interval_s=3600.0)
    for stage in ("int8", "parity", "package"):
        printer("compile", compiler_pb2.CompileProgress(stage=stage, message=f"{stage} step"))
    assert capsys.readouterr().err.splitlines() == [
        "[compile] int8: int8 step", "[compile] parity: parity step", "[compile] package: package step"]


def test_one_command_s_stage_ends_with_its_final_state_and_no_escape_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with progress.stage("collect") as on_progress:  # stderr is captured: no terminal, so plain lines
        for steps in (2, 100, 200):
            on_progress(_collected(steps))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[collect] 2/200 real steps, 0 episodes"
    assert lines[-2] == "[collect] 200/200 real steps, 10 episodes"
    assert lines[-1].startswith("[collect] done in ")
    assert not any("\x1b" in line for line in lines)
