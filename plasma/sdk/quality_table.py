"""A world model's held-out quality as tables a person can read at a glance."""

from __future__ import annotations

from plasma.sdk.table import Table
from plasma.simulator.v1 import simulator_pb2

# Per-dimension columns shown; wider observations are cut with a note.
MAX_DIMS = 8


def quality_tables(quality: simulator_pb2.WorldModelQuality, stage: str = "") -> list[Table]:
    """Open-loop RMSE at each horizon against the naive "next = current"; the same per dimension, with the
    one-step NLL and 90 % interval coverage under it."""
    title = f"world model quality{f' ({stage})' if stage else ''} on {quality.holdout_transitions} held-out " \
            f"transitions of {quality.dataset_id}, normalized units (÷ training std)"
    rows = []
    for h in quality.horizons:
        ratio = h.model_rmse / h.naive_rmse if h.naive_rmse else float("nan")
        rows.append((str(h.steps), str(h.windows), f"{h.model_rmse:.4f}", f"{h.naive_rmse:.4f}", f"{ratio:.3f}"))
    overall = Table(title, ("steps", "windows", "model RMSE", "naive RMSE", "model/naive"), rows,
                    numeric=frozenset(range(5)))
    dims = max((len(h.model_rmse_per_dim) for h in quality.horizons), default=0)
    shown = min(dims, MAX_DIMS)
    per_dim_rows = [(str(h.steps), *(f"{m:.4f}/{n:.4f}" for m, n in
                                     list(zip(h.model_rmse_per_dim, h.naive_rmse_per_dim, strict=True))[:shown]))
                    for h in quality.horizons]
    coverage = " ".join(f"{c:.2f}" for c in list(quality.coverage_90_per_dim)[:MAX_DIMS])
    notes = ((f"(+{dims - MAX_DIMS} more dimensions)",) if dims > MAX_DIMS else ()) + (
        f"one-step Gaussian NLL per dimension: {quality.nll:.3f}",
        f"one-step 90 % interval coverage: {quality.coverage_90:.3f} (ideal 0.900; per dimension {coverage})",
    )
    per_dim = Table("per dimension, model/naive RMSE", ("steps", *(f"d{i}" for i in range(shown))), per_dim_rows,
                    numeric=frozenset(range(shown + 1)), notes=notes)
    return [overall, per_dim]


def format_quality(quality: simulator_pb2.WorldModelQuality, stage: str = "") -> str:
    """The tables of `quality_tables` as plain text."""
    return "\n".join(table.plain() for table in quality_tables(quality, stage))
