"""PNG figures for `plasma plot`: error forecasts against real rollouts, learning curves, a run's history.

Drawing only: callers fetch the messages and real rollouts (plasma.plot_commands) and pass them in. The
Agg backend renders without a display, so plots work on servers and in CI.

Learning-curve JSON (written by `python -m bench.sample_efficiency`, read by `plasma plot learning-curves`):

    {
      "env_id": "CartPole-v1",            # for the title
      "threshold": 475.0,                  # optional: the return that counts as solved (a horizontal line)
      "runs": [                            # one curve per method and seed
        {
          "method": "plasma",              # lines of one method share a colour
          "seed": 0,
          "points": [                      # in order of real_steps
            {"real_steps": 1000,           # real environment steps used for learning so far
             "real_return": 500.0,         # mean return of real evaluation episodes at that point
             "imagined_return": 498.2}     # optional (null or absent for model-free methods)
          ]
        }
      ]
    }
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: files only, no display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from plasma import files, tensors
from plasma.sdk.real_rollouts import RealPath
from plasma.simulator.v1 import audit_pb2, simulator_pb2
from plasma.trainer.v1 import trainer_pb2

# Names of the observation elements of environments Plasma knows; others are drawn as obs[i].
OBS_NAMES = {
    "CartPole-v1": ("cart position", "cart velocity", "pole angle (rad)", "pole angular velocity"),
    "Pendulum-v1": ("cos(theta)", "sin(theta)", "angular velocity"),
}
_PHANTOM = "tab:blue"
_REAL = "black"
_FAILURE = "tab:red"
_MODEL_ERROR = "tab:purple"
DPI = 110


def forecast_figure(
    reply: simulator_pb2.ForecastErrorsResponse,
    real_paths: Sequence[RealPath],
    *,
    env_id: str = "",
    title: str = "",
) -> Figure:
    """One panel per observation element (5-95 % band, mean, sample phantom paths, real rollouts from the
    same start) over a panel of failure and model-error probability, with the share of real rollouts that
    failed. Audit verdicts: a REJECTed sample is dashed; a TRUNCATEd one turns dotted, its first untrusted
    state marked with an x. A dot marks where a path terminated (failed)."""
    mean = tensors.from_proto(reply.mean_observations, "mean_observations")  # [T + 1, obs_dim]
    lower = tensors.from_proto(reply.lower_observations, "lower_observations")
    upper = tensors.from_proto(reply.upper_observations, "upper_observations")
    failure = tensors.from_proto(reply.failure_probability, "failure_probability")  # [T]
    model_error = tensors.from_proto(reply.model_error_probability, "model_error_probability")
    obs_dim = mean.shape[1]
    names = OBS_NAMES.get(env_id, ())
    if len(names) != obs_dim:
        names = tuple(f"obs[{i}]" for i in range(obs_dim))
    steps = np.arange(mean.shape[0])
    figure, axes = plt.subplots(obs_dim + 1, 1, figsize=(9, 2.1 * (obs_dim + 1) + 0.6), sharex=True,
                                squeeze=False)
    panels: list[Axes] = list(axes[:, 0])
    samples = [(path, tensors.from_proto(path.observations, "sample observations")) for path in reply.samples]
    for d, ax in enumerate(panels[:obs_dim]):
        ax.fill_between(steps, lower[:, d], upper[:, d], color=_PHANTOM, alpha=0.2, label="phantom 5-95 %")
        ax.plot(steps, mean[:, d], color=_PHANTOM, linewidth=2, label="phantom mean")
        for i, (path, states) in enumerate(samples):
            _draw_sample(ax, path, states[:, d], first=i == 0)
        for i, real in enumerate(real_paths):
            ax.plot(np.arange(len(real.states)), real.states[:, d], color=_REAL, linewidth=1.2,
                    label="real rollout, same start" if i == 0 else None)
            if real.terminated:
                ax.plot([len(real.states) - 1], [real.states[-1, d]], marker="o", color=_FAILURE,
                        markeredgecolor=_REAL, linestyle="none", label="real failure")
        ax.set_ylabel(names[d])
        ax.grid(alpha=0.25)
        _mark_steps(ax, reply)
    risk = panels[obs_dim]
    risk.plot(np.arange(1, len(failure) + 1), failure, color=_FAILURE, label="forecast failure probability")
    risk.plot(np.arange(1, len(model_error) + 1), model_error, color=_MODEL_ERROR, linestyle="--",
              label="model-error probability (audit)")
    if real_paths:
        ends = [len(r.states) - 1 if r.terminated else np.inf for r in real_paths]
        state = np.arange(len(failure) + 1)
        risk.step(state, [np.mean([e <= t for e in ends]) for t in state], where="post", color=_REAL,
                  linewidth=1, label=f"real failure share ({len(real_paths)} rollouts)")
    risk.set_ylim(-0.03, 1.03)
    risk.set_ylabel("probability")
    risk.set_xlabel("step")
    risk.grid(alpha=0.25)
    _mark_steps(risk, reply)
    handles: dict[str, Any] = {}
    for ax in panels:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    figure.suptitle(title or f"Error forecast ({len(reply.samples)} sample paths drawn)")
    figure.legend(handles.values(), handles.keys(), loc="upper center", ncol=4, fontsize=8,
                  bbox_to_anchor=(0.5, 0.965))
    figure.tight_layout(rect=(0, 0, 1, 0.92))
    return figure


def _draw_sample(ax: Any, path: simulator_pb2.PhantomPath, values: np.ndarray, *, first: bool) -> None:
    """A sample path [T + 1] with its audit: dashed when rejected; after a truncation point (x) dotted."""
    verdict = path.audit.verdict
    style = {"color": _PHANTOM, "linewidth": 0.7, "alpha": 0.7}
    if verdict == audit_pb2.AUDIT_VERDICT_REJECT:
        ax.plot(np.arange(len(values)), values, linestyle="--", **style, label="phantom sample, audit: REJECT")
    elif verdict == audit_pb2.AUDIT_VERDICT_TRUNCATE:
        # Step k (into state k + 1) is the first the audit does not trust.
        k = min(path.audit.valid_steps, len(values) - 2)
        ax.plot(np.arange(k + 1), values[: k + 1], **style, label="phantom sample" if first else None)
        ax.plot(np.arange(k, len(values)), values[k:], linestyle=":", **style)
        ax.plot([k + 1], [values[k + 1]], marker="x", color=_MODEL_ERROR, markersize=7, linestyle="none",
                label="audit: first untrusted state (TRUNCATE)")
    else:
        ax.plot(np.arange(len(values)), values, **style, label="phantom sample" if first else None)
    if len(path.dones.data) and tensors.from_proto(path.dones, "dones")[-1]:
        ax.plot([len(values) - 1], [values[-1]], marker="o", markersize=4, color=_FAILURE, linestyle="none",
                label="phantom failure")


def _mark_steps(ax: Any, reply: simulator_pb2.ForecastErrorsResponse) -> None:
    # Probabilities are per step t (the step into state t + 1): the mark sits at that next state.
    if reply.likely_failure_step >= 0:
        ax.axvline(reply.likely_failure_step + 1, color=_FAILURE, linestyle="--", linewidth=1,
                   label="likely failure")
    if reply.likely_model_error_step >= 0:
        ax.axvline(reply.likely_model_error_step + 1, color=_MODEL_ERROR, linestyle=":", linewidth=1,
                   label="likely model error")


def validate_learning_curves(record: Mapping[str, Any]) -> None:
    """Raises ValueError naming what is wrong with a learning-curve record (schema in the module docstring)."""
    runs = record.get("runs")
    if not isinstance(runs, list) or not runs:
        raise ValueError("learning curves need a non-empty 'runs' list")
    for i, run in enumerate(runs):
        if not isinstance(run, Mapping) or "method" not in run or not isinstance(run.get("points"), list):
            raise ValueError(f"runs[{i}] needs 'method' and a 'points' list")
        for j, point in enumerate(run["points"]):
            if not isinstance(point, Mapping) or "real_steps" not in point or "real_return" not in point:
                raise ValueError(f"runs[{i}].points[{j}] needs 'real_steps' and 'real_return'")


def learning_curves_figure(record: Mapping[str, Any]) -> Figure:
    """Real evaluation return (left) and imagined return (right) against real steps, one line per run."""
    validate_learning_curves(record)
    methods = sorted({str(run["method"]) for run in record["runs"]})
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    figure, (real_ax, imagined_ax) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    labelled: set[tuple[str, str]] = set()
    for run in record["runs"]:
        method = str(run["method"])
        points = sorted(run["points"], key=lambda p: p["real_steps"])
        steps = [p["real_steps"] for p in points]
        for ax, key in ((real_ax, "real_return"), (imagined_ax, "imagined_return")):
            values = [np.nan if p.get(key) is None else p[key] for p in points]
            if np.isnan(values).all():
                continue
            label = method if (method, key) not in labelled else None
            labelled.add((method, key))
            ax.plot(steps, values, marker="o", markersize=3, color=colours[method], alpha=0.85, label=label)
    for ax, what in ((real_ax, "real evaluation return"), (imagined_ax, "imagined return")):
        if record.get("threshold") is not None:
            ax.axhline(record["threshold"], color="grey", linestyle="--", linewidth=1, label="solved")
        ax.set_xlabel("real environment steps")
        ax.set_title(what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    real_ax.set_ylabel("return")
    figure.suptitle(f"Learning curves: {record.get('env_id', '')} (one line per method and seed)")
    figure.tight_layout()
    return figure


def run_history_figure(run: trainer_pb2.Run) -> Figure:
    """A run's Progress history: imagined return and planner agreement per round, phases side by side."""
    if not run.history:
        raise ValueError(f"run {run.run_id!r} has no progress history yet")
    figure, (return_ax, agreement_ax) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    x = np.arange(1, len(run.history) + 1)
    phases = [event.phase or "train" for event in run.history]
    for phase in dict.fromkeys(phases):
        rows = [i for i, p in enumerate(phases) if p == phase]
        return_ax.plot(x[rows], [run.history[i].imagined_return for i in rows], marker="o", label=phase)
        agreement_ax.plot(x[rows], [run.history[i].planner_agreement for i in rows], marker="o", label=phase)
    return_ax.set_ylabel("imagined return")
    agreement_ax.set_ylabel("planner agreement")
    agreement_ax.set_xlabel("progress event (round, oldest first)")
    for ax in (return_ax, agreement_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(f"Run {run.run_id} on model {run.model_id}")
    figure.tight_layout()
    return figure


def save(figure: Figure, out: str | Path) -> Path:
    """Writes the figure as a PNG (atomically: never a half-written file) and closes it (figures hold memory
    until closed)."""
    path = Path(out)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_bytes_atomic(path, buffer.getvalue(), mode=0o644)
    return path
