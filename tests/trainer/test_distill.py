"""Planner distillation: LoRA-only DAgger rounds, weight export, and the in-process phantom source."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch

from plasma.mbrl.algorithms.audit_filter import NothingTrusted
from plasma.mbrl.algorithms.base import PolicyIO, Progress, mlp_weights_of
from plasma.mbrl.algorithms.distill import DistillConfig, train
from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import fit
from plasma.mbrl.models.ensemble import WorldModelConfig
from plasma.mbrl.planning import PlannerConfig
from plasma.mbrl.sources import InProcessSource
from plasma.mbrl.tasks import task_for
from plasma.mbrl.types import MlpWeights, PathAuditResult
from plasma.server.errors import status_for
from services.trainer import runs
from tests.support.sources import RuleSource, forward, sign_rule

QUICK = DistillConfig(base_paths=8, adapter_rounds=2, paths_per_round=4, horizon=25, epochs=20,
                      learning_rate=3e-3, planner=PlannerConfig(horizon=8, num_samples=16, num_elites=4))
METRIC_KEYS = {"imagined_return", "whole_path_imagined_return", "audited_step_share", "planner_agreement",
               "phantom_paths_used", "phantom_steps_used", "training_seconds", "base_parameters", "adapter_parameters"}



def test_discrete_distillation_trains_only_the_adapter_and_exports_its_weights() -> None:
    io = PolicyIO(obs_dim=3, action_kind="discrete", action_dim=2)
    source = RuleSource(io, sign_rule)
    reports: list[Progress] = []
    result = train(source, io, QUICK, progress=reports.append)

    assert [(r.phase, r.round) for r in reports] == [("base", 0), ("adapter", 1), ("adapter", 2)]
    assert all(r.total_rounds == 2 for r in reports) and reports[-1].phantom_paths_used == 16
    assert set(result.metrics) == METRIC_KEYS
    assert result.metrics["planner_agreement"] > 0.95
    assert result.metrics["phantom_paths_used"] == 20 and result.metrics["phantom_steps_used"] == 20 * 25
    assert result.metrics["base_parameters"] == 3 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2
    assert result.metrics["adapter_parameters"] == 8 * (3 + 64) + 8 * (64 + 64) + 8 * (64 + 2)

    # Every call asked for the planner's labels, with its own seed, from the episode starts.
    assert all(c["label"] == QUICK.planner and c["reward_source"] == "task" for c in source.calls)
    assert len({c["seed"] for c in source.calls}) == len(source.calls) == 4
    assert isinstance(source.calls[0]["policy"], PlannerConfig)
    assert all(isinstance(c["policy"], MlpWeights) for c in source.calls[1:])

    # LoRA-only: the frozen base layers inside the adapted model still hold the base weights.
    adapted = dict(result.peft_model.named_parameters())
    for name, value in result.base_state.items():
        if name.startswith("body."):
            layer, kind = name.rsplit(".", 1)
            torch.testing.assert_close(adapted[f"base_model.model.{layer}.base_layer.{kind}"], value,
                                       rtol=0, atol=0)
    assert any(name.endswith("lora_B.default.weight") and p.abs().sum() > 0 for name, p in adapted.items())

    # The exported weights compute what the adapted model computes, and exporting changes nothing.
    obs = torch.as_tensor(result.held_out_states)
    weights = mlp_weights_of(result.peft_model)
    with torch.no_grad():
        expected = result.peft_model(obs).numpy()
    np.testing.assert_allclose(forward(weights, obs.numpy()), expected, rtol=1e-4, atol=1e-4)
    assert any("lora_A" in name for name, _ in result.peft_model.named_parameters())

    # Parity observations: phantom states of the final evaluation paths, never trained on.
    assert result.held_out_states.shape[1] == 3 and 0 < len(result.held_out_states) <= 256
    assert result.held_out_states.dtype == np.float32
    np.testing.assert_allclose(result.spec.obs_mean, [1, 1, 1], atol=0.3)


def test_box_actions_regress_the_squashed_output_onto_the_planner() -> None:
    io = PolicyIO(obs_dim=2, action_kind="box", action_dim=1, action_low=(-2.0,), action_high=(2.0,))

    def rule(obs: np.ndarray) -> np.ndarray:
        return np.clip(0.5 * (obs[:, :1] - 1), -1.5, 1.5).astype(np.float32)

    result = train(RuleSource(io, rule), io, DistillConfig(**{**vars(QUICK), "epochs": 60}))
    assert result.spec.action_kind == "box" and result.spec.action_low == (-2.0,)
    assert result.metrics["planner_agreement"] > 0.8


def test_the_same_seed_trains_the_same_policy() -> None:
    io = PolicyIO(obs_dim=3, action_kind="discrete", action_dim=2)
    cfg = DistillConfig(**{**vars(QUICK), "adapter_rounds": 1, "epochs": 5})
    first = mlp_weights_of(train(RuleSource(io, sign_rule), io, cfg).peft_model)
    again = mlp_weights_of(train(RuleSource(io, sign_rule), io, cfg).peft_model)
    for a, b in zip(first.weights, again.weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="reward_source"):
        DistillConfig(reward_source="magic")
    with pytest.raises(ValueError, match="base_paths"):
        DistillConfig(base_paths=0)


def test_in_process_source_distills_a_cartpole_planner() -> None:
    spec, data = collect("CartPole-v1", 300, seed=0)
    model, _ = fit(spec, data, WorldModelConfig(ensemble_size=3, hidden_size=64, num_layers=2, train_steps=500,
                                                batch_size=128))
    io = PolicyIO(obs_dim=4, action_kind="discrete", action_dim=2)
    source = InProcessSource(model, data, task_for("CartPole-v1"))
    # reward_source "" lets the source choose, as Simulate does: the task's reward, CartPole being known.
    result = train(source, io, DistillConfig(**{**vars(QUICK), "horizon": 60, "reward_source": ""}))
    # The distilled policy keeps the imagined pole up far longer than random actions (~20 steps).
    assert result.metrics["imagined_return"] > 45
    assert result.metrics["planner_agreement"] > 0.6


class _RejectedSource(RuleSource):
    """The rule's paths, each rejected by the audit as a simulator would reject paths it cannot trust."""

    def simulate(self, **request):  # type: ignore[no-untyped-def, override]
        for path in super().simulate(**request):
            path.audit = PathAuditResult(verdict="reject", valid_steps=0, findings=[],
                                         penalized_rewards=path.rewards, penalized_return=float(path.rewards.sum()))
            yield path


def test_paths_the_audit_rejects_all_fail_the_run_as_a_precondition_saying_what_to_do() -> None:
    io = PolicyIO(obs_dim=3, action_kind="discrete", action_dim=2)
    with pytest.raises(NothingTrusted, match=r"rejected all 8 phantom paths.*ignore_audit") as caught:
        train(_RejectedSource(io, sign_rule), io, QUICK)
    # What the Train stream answers: FAILED_PRECONDITION with the same advice, not INTERNAL.
    assert status_for(runs._as_status(caught.value)) == (grpc.StatusCode.FAILED_PRECONDITION, str(caught.value))
