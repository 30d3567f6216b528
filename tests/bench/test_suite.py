"""bench.suite's parts that need no training: the table and its ratio, skipping an environment that cannot be
made, the CPU flags, and the learning-curve JSON drawn through `plasma plot learning-curves`."""

from __future__ import annotations

from pathlib import Path

from bench import host
from bench.sample_efficiency import Outcome, Point
from bench.suite import unavailable, write_curves
from bench.suite_table import EnvResult, ratio, row, table
from plasma import cli

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _outcome(method: str, seed: int, steps: list[int], returns: list[float], threshold: float) -> Outcome:
    points = [Point(s, r) for s, r in zip(steps, returns, strict=True)]
    reached = next((p.real_steps for p in points if p.real_return >= threshold), None)
    return Outcome("CartPole-v1", method, seed, points, 100.0 + seed, reached)


def test_ratio_is_baseline_over_plasma_steps_and_a_lower_bound_when_the_baseline_never_reached() -> None:
    plasma = [_outcome("plasma", 0, [200, 400], [300, 500], 475), _outcome("plasma", 1, [200, 400], [480, 500], 475)]
    ppo = [_outcome("PPO", 0, [5120, 10240], [200, 500], 475), _outcome("PPO", 1, [5120, 10240], [490, 500], 475)]
    assert ratio(plasma, ppo) == f"{(10240 + 5120) / 2 / 300:.1f}x"
    never = [_outcome("PPO", 0, [5120, 10240], [100, 200], 475)]
    assert ratio(plasma, never) == f">{10240 / 300:.1f}x"
    # A Plasma seed that did not reach the threshold: no ratio, and its cell says how many steps it had.
    short = [_outcome("plasma", 0, [200, 400], [100, 200], 475)]
    assert ratio(short, ppo) == "-"
    result = EnvResult("CartPole-v1", 475.0, short + plasma[1:], ppo)
    assert "| >400 / 200 | 200.0 / 500.0 | PPO: 10240 / 5120 | - | 100 / 101 | 100 / 101 |" in row(result)


def test_an_environment_that_cannot_be_made_is_skipped_with_its_reason() -> None:
    reason = unavailable("NoSuchEnvironment-v0")
    assert reason is not None and "NoSuchEnvironment" in reason
    assert unavailable("CartPole-v1") is None
    text = table([EnvResult("NoSuchEnvironment-v0", 1.0, skipped=reason)])
    assert f"skipped: {reason}" in text


def test_cpu_flags_are_read_from_the_flags_line() -> None:
    cpuinfo = "model name\t: Some CPU\nflags\t\t: fpu sse avx2 avx512f amx_tile avx512_vnni_extra\n"
    assert host.cpu_flags(cpuinfo) == ["amx_tile", "avx2", "avx512f"]


def test_learning_curves_json_is_drawn_by_plasma_plot(tmp_path: Path) -> None:
    result = EnvResult("CartPole-v1", 475.0, [_outcome("plasma", 0, [200, 400], [300, 500], 475)],
                       [_outcome("PPO", 0, [5120, 10240], [200, 500], 475)])
    curves = write_curves(tmp_path, result)
    png = tmp_path / "curves.png"
    assert cli.main(["plot", "learning-curves", str(curves), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == PNG_SIGNATURE
