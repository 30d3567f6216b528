"""A world model's held-out quality as a table a person can read at a glance."""

from __future__ import annotations

from plasma.simulator.v1 import simulator_pb2

# Per-dimension columns shown; wider observations are cut with a note.
MAX_DIMS = 8


def _dims(model: list[float], naive: list[float]) -> str:
    cells = [f"d{i} {m:.4f}/{n:.4f}" for i, (m, n) in enumerate(zip(model, naive, strict=True))]
    more = f"  (+{len(cells) - MAX_DIMS} more)" if len(cells) > MAX_DIMS else ""
    return "  ".join(cells[:MAX_DIMS]) + more


def format_quality(quality: simulator_pb2.WorldModelQuality, stage: str = "") -> str:
    """Open-loop RMSE at each horizon against the naive "next = current", per dimension, NLL, coverage."""
    title = f"world model quality{f' ({stage})' if stage else ''} on {quality.holdout_transitions} held-out " \
            f"transitions of {quality.dataset_id}, normalized units (÷ training std)"
    lines = [title, "   steps  windows  model RMSE  naive RMSE  model/naive"]
    for h in quality.horizons:
        ratio = h.model_rmse / h.naive_rmse if h.naive_rmse else float("nan")
        lines.append(f"  {h.steps:>6}  {h.windows:>7}  {h.model_rmse:>10.4f}  {h.naive_rmse:>10.4f}  {ratio:>11.3f}")
    lines.append("  per dimension, model/naive RMSE:")
    lines += [f"  {h.steps:>6}  {_dims(list(h.model_rmse_per_dim), list(h.naive_rmse_per_dim))}"
              for h in quality.horizons]
    per_dim = " ".join(f"{c:.2f}" for c in list(quality.coverage_90_per_dim)[:MAX_DIMS])
    lines.append(f"  one-step Gaussian NLL per dimension: {quality.nll:.3f}")
    lines.append(f"  one-step 90 % interval coverage: {quality.coverage_90:.3f} (ideal 0.900; per dimension {per_dim})")
    return "\n".join(lines)
