"""The trainer's side of the simulator's adversarial audit: a policy learns only from the steps the audit
trusts, so that it cannot learn to steer the world model into states where the model is guessing."""

from __future__ import annotations

from dataclasses import replace

from plasma import log as plog
from plasma.mbrl.types import PhantomPath

log = plog.get(__name__)


class NothingTrusted(ValueError):
    """The audit rejected every phantom path: a precondition of training (the data, the world model) is not met,
    not a fault of the trainer."""


def cut(path: PhantomPath, steps: int) -> PhantomPath:
    """The first `steps` steps of a path: states [steps + 1], every per-step array [steps]. The audit stays
    as the simulator gave it, for the record."""
    return replace(
        path, observations=path.observations[: steps + 1], actions=path.actions[:steps], rewards=path.rewards[:steps],
        dones=path.dones[:steps], uncertainty=path.uncertainty[:steps],
        expert_actions=None if path.expert_actions is None else path.expert_actions[:steps],
        members=None if path.members is None else path.members[:steps],
    )


def trusted(paths: list[PhantomPath]) -> list[PhantomPath]:
    """REJECTed paths dropped, TRUNCATEd ones cut to their valid steps; unaudited and PASSed ones kept whole.

    Raises NothingTrusted when every path was rejected: nothing trustworthy is left to learn from."""
    kept, rejected, truncated = [], 0, 0
    for path in paths:
        audit = path.audit
        if audit is not None and audit.verdict == "reject":
            rejected += 1
        elif audit is not None and audit.verdict == "truncate":
            truncated += 1
            kept.append(cut(path, audit.valid_steps))
        else:
            kept.append(path)
    log.info("audit paths=%d rejected=%d truncated=%d steps_kept=%d/%d", len(paths), rejected, truncated,
             sum(p.length for p in kept), sum(p.length for p in paths))
    if paths and not kept:
        raise NothingTrusted(
            f"the simulator's audit rejected all {len(paths)} phantom paths: the policy drives the world model "
            "where the real data never went; collect more real data there, or set ignore_audit to train anyway"
        )
    return kept
