"""The ensemble world model: fitting, held-out metrics, batched steps, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import FitProgress, fit
from plasma.mbrl.models.ensemble import EnsembleWorldModel, WorldModelConfig
from plasma.mbrl.types import Transitions
from plasma.spaces import EnvSpec

SMALL = WorldModelConfig(ensemble_size=3, hidden_size=64, num_layers=2, train_steps=400, batch_size=128)
METRIC_KEYS = {
    "holdout_obs_mse", "holdout_naive_obs_mse", "holdout_reward_mse", "holdout_termination_accuracy",
    "holdout_nll", "train_nll",
}



@pytest.fixture(scope="module")
def cartpole() -> tuple[EnvSpec, Transitions]:
    return collect("CartPole-v1", 400, seed=0)


@pytest.fixture(scope="module")
def fitted(cartpole: tuple[EnvSpec, Transitions]) -> tuple[EnsembleWorldModel, dict[str, float],
                                                                   list[FitProgress]]:
    reports: list[FitProgress] = []
    model, metrics = fit(*cartpole, SMALL, progress=reports.append)
    return model, metrics, reports


def test_fit_beats_the_naive_baseline_on_held_out_episodes(fitted) -> None:
    _, metrics, _ = fitted
    assert set(metrics) == METRIC_KEYS
    assert metrics["holdout_obs_mse"] < 0.05 * metrics["holdout_naive_obs_mse"]
    assert metrics["holdout_reward_mse"] < 0.01  # CartPole pays 1 per step
    assert metrics["holdout_termination_accuracy"] > 0.9
    assert all(np.isfinite(v) for v in metrics.values())


def test_progress_is_reported_a_few_dozen_times_and_improves(fitted) -> None:
    _, metrics, reports = fitted
    assert 20 <= len(reports) <= 50
    assert [r.step for r in reports] == sorted(r.step for r in reports)
    assert reports[-1].step == reports[-1].total_steps == SMALL.train_steps
    assert reports[-1].holdout_nll < reports[0].holdout_nll
    assert reports[-1].holdout_obs_mse == pytest.approx(metrics["holdout_obs_mse"])


def test_step_follows_members_and_reports_disagreement(fitted, cartpole) -> None:
    model, _, _ = fitted
    _, data = cartpole
    obs = torch.as_tensor(data.obs[:32])
    actions = torch.as_tensor(data.actions[:32])
    member_0 = model.step(obs, actions, torch.zeros(32, dtype=torch.long))
    member_2 = model.step(obs, actions, torch.full((32,), 2))
    mean = model.step(obs, actions, "mean")
    assert member_0.next_obs.shape == (32, 4) and member_0.disagreement.shape == (32,)
    assert not torch.equal(member_0.next_obs, member_2.next_obs)
    torch.testing.assert_close(mean.disagreement, member_0.disagreement)
    assert (mean.disagreement > 0).all() and (mean.done_prob >= 0).all() and (mean.done_prob <= 1).all()
    # TS1 prediction without disagreement gives the same next state as `step`.
    next_obs, _, _ = model.predict(obs, actions, torch.full((32,), 2))
    torch.testing.assert_close(next_obs, member_2.next_obs)
    # The fitted one-step prediction is close to the real next state.
    error = ((mean.next_obs - torch.as_tensor(data.next_obs[:32])) / model.obs_scale).pow(2).mean()
    assert error < 0.01


def test_disagreement_grows_far_from_the_data(fitted, cartpole) -> None:
    model, _, _ = fitted
    _, data = cartpole
    obs = torch.as_tensor(data.obs[:64])
    far = obs * 20
    actions = torch.as_tensor(data.actions[:64])
    near_disagreement = model.step(obs, actions, "mean").disagreement.mean()
    assert model.step(far, actions, "mean").disagreement.mean() > 5 * near_disagreement


def test_save_load_round_trips_predictions_exactly(fitted, cartpole, tmp_path: Path) -> None:
    model, _, _ = fitted
    _, data = cartpole
    model.save(tmp_path / "model")
    loaded = EnsembleWorldModel.load(tmp_path / "model")
    assert loaded.spec == model.spec and loaded.config == model.config
    obs, actions = torch.as_tensor(data.obs[:50]), torch.as_tensor(data.actions[:50])
    members = torch.arange(50) % 3
    for a, b in zip(model.step(obs, actions, members), loaded.step(obs, actions, members), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(FileExistsError):  # stored models are immutable
        model.save(tmp_path / "model")


def test_box_actions_and_a_single_episode(tmp_path: Path) -> None:
    spec, data = collect("Pendulum-v1", 150, seed=1)  # one episode: the tail is held out
    model, metrics = fit(spec, data, SMALL)
    assert metrics["holdout_obs_mse"] < metrics["holdout_naive_obs_mse"]
    step = model.step(torch.as_tensor(data.obs[:5]), torch.as_tensor(data.actions[:5]), "mean")
    assert step.next_obs.shape == (5, 3)
    assert step.reward.shape == (5,)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="holdout_fraction"):
        WorldModelConfig(holdout_fraction=0.9)
    with pytest.raises(ValueError, match="ensemble_size"):
        WorldModelConfig(ensemble_size=0)
