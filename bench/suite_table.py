"""The suite's table: per environment, real steps to the solved threshold for Plasma and the baseline, per seed,
their ratio and the wall time per seed (pure formatting, no training)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from bench.sample_efficiency import Outcome

HEADER = ("| env | threshold | Plasma real steps to threshold, per seed | Plasma final return, per seed "
          "| baseline steps to threshold, per seed | ratio | Plasma wall s, per seed | baseline wall s, per seed |\n"
          "|---|---|---|---|---|---|---|---|")


@dataclass
class EnvResult:
    env_id: str
    threshold: float
    plasma: list[Outcome] = field(default_factory=list)
    baseline: list[Outcome] = field(default_factory=list)
    # Why the environment did not run at all (e.g. it cannot be made here); None when it ran.
    skipped: str | None = None
    # "method seed N: reason" for every run that raised.
    failures: list[str] = field(default_factory=list)


def _steps(outcome: Outcome) -> str:
    """Steps to the threshold, or ">N" when N real steps did not reach it."""
    return str(outcome.steps_to_threshold) if outcome.steps_to_threshold is not None else f">{outcome.real_steps}"


def _per_seed(outcomes: list[Outcome], cell: str) -> str:
    if not outcomes:
        return "-"
    ordered = sorted(outcomes, key=lambda o: o.seed)
    if cell == "steps":
        return " / ".join(_steps(o) for o in ordered)
    if cell == "return":
        return " / ".join(f"{o.final_return:.1f}" for o in ordered)
    return " / ".join(f"{o.wall_seconds:.0f}" for o in ordered)


def ratio(plasma: list[Outcome], baseline: list[Outcome]) -> str:
    """Mean baseline steps over mean Plasma steps to the threshold. Only where every Plasma seed reached it;
    ">x" where no baseline seed did within its cap (a lower bound); "-" where it cannot be said."""
    mine = [o.steps_to_threshold for o in plasma]
    if not plasma or not baseline or any(steps is None for steps in mine):
        return "-"
    mean_plasma = float(np.mean([s for s in mine if s is not None]))
    reached = [o.steps_to_threshold for o in baseline if o.steps_to_threshold is not None]
    if len(reached) == len(baseline):
        return f"{np.mean(reached) / mean_plasma:.1f}x"
    if not reached:
        return f">{min(o.real_steps for o in baseline) / mean_plasma:.1f}x"
    return "-"  # some baseline seeds reached it, some did not: no single figure


def row(result: EnvResult) -> str:
    if result.skipped is not None:
        return f"| {result.env_id} | {result.threshold:g} | skipped: {result.skipped} | | | | | |"
    baseline = f"{result.baseline[0].method}: {_per_seed(result.baseline, 'steps')}" if result.baseline else "-"
    return (f"| {result.env_id} | {result.threshold:g} | {_per_seed(result.plasma, 'steps')} "
            f"| {_per_seed(result.plasma, 'return')} | {baseline} | {ratio(result.plasma, result.baseline)} "
            f"| {_per_seed(result.plasma, 'wall')} | {_per_seed(result.baseline, 'wall')} |")


def table(results: list[EnvResult]) -> str:
    failures = [f"failed: {r.env_id} {failure}" for r in results for failure in r.failures]
    return "\n".join([HEADER, *(row(r) for r in results), *(["", *failures] if failures else [])])
