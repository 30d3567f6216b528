"""Checkpoints of a distillation run: written after every phase, resumable to the same policy, and an
adapter-only run on a given base network."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from plasma.mbrl.algorithms.base import PolicyIO, mlp_weights_of
from plasma.mbrl.algorithms.distill import BasePolicy, DistillConfig, TrainState, train
from plasma.mbrl.planning import PlannerConfig
from services.trainer import checkpoint
from tests.support.sources import RuleSource, sign_rule

IO = PolicyIO(obs_dim=3, action_kind="discrete", action_dim=2)
CFG = DistillConfig(seed=5, base_paths=6, adapter_rounds=3, paths_per_round=3, horizon=20, epochs=8,
                    learning_rate=3e-3, planner=PlannerConfig(horizon=8, num_samples=16, num_elites=4))



def _assert_same_policy(a: torch.nn.Module, b: torch.nn.Module) -> None:
    wa, wb = mlp_weights_of(a), mlp_weights_of(b)
    for x, y in zip([*wa.weights, *wa.biases], [*wb.weights, *wb.biases], strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_checkpoint_follows_the_base_phase_and_every_round_before_its_progress() -> None:
    events: list[tuple[str, int]] = []
    train(RuleSource(IO, sign_rule), IO, CFG,
          progress=lambda p: events.append(("progress", p.round)),
          on_checkpoint=lambda s: events.append(("checkpoint", s.round)))
    assert events == [(kind, r) for r in range(CFG.adapter_rounds + 1) for kind in ("checkpoint", "progress")]


@pytest.mark.parametrize("after_round", [0, 1, CFG.adapter_rounds])
def test_resuming_from_any_checkpoint_trains_the_same_policy(after_round: int) -> None:
    states: list[TrainState] = []
    uninterrupted = train(RuleSource(IO, sign_rule), IO, CFG, on_checkpoint=states.append)
    # Through bytes, as a restarted trainer reads it from its store.
    saved = checkpoint.unpack(checkpoint.pack(states[after_round]))
    source = RuleSource(IO, sign_rule)
    resumed = train(source, IO, CFG, resume_from=saved)

    _assert_same_policy(uninterrupted.peft_model, resumed.peft_model)
    # Only the calls after the checkpoint were made again, with the same seeds.
    assert len(source.calls) == CFG.adapter_rounds - after_round + 1
    for key in ("imagined_return", "planner_agreement", "phantom_paths_used", "phantom_steps_used"):
        assert resumed.metrics[key] == uninterrupted.metrics[key], key
    np.testing.assert_array_equal(resumed.held_out_states, uninterrupted.held_out_states)


def test_an_adapter_only_run_keeps_the_base_weights_and_learns_a_new_adapter() -> None:
    first = train(RuleSource(IO, sign_rule), IO, CFG)
    base = BasePolicy(first.spec, first.base_state)
    source = RuleSource(IO, lambda obs: 1 - sign_rule(obs))  # another task: the opposite rule
    second = train(source, IO, DistillConfig(**{**vars(CFG), "seed": 6}), base=base)

    assert second.spec == first.spec
    assert second.base_state.keys() == first.base_state.keys()
    for name, tensor in first.base_state.items():
        assert torch.equal(second.base_state[name], tensor), name
    assert all(call["policy"] is not CFG.planner for call in source.calls), "no base phase on planner paths"
    assert len(source.calls) == CFG.adapter_rounds + 1
    assert second.metrics["planner_agreement"] > 0.8
    assert first.metrics["planner_agreement"] > 0.8


def test_a_foreign_file_is_not_a_checkpoint() -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        checkpoint.unpack(b"not a checkpoint at all")


def test_runs_training_side_by_side_train_what_they_train_alone() -> None:
    alone = [train(RuleSource(IO, sign_rule), IO, DistillConfig(**{**vars(CFG), "seed": s})) for s in (1, 2)]
    side_by_side: dict[int, object] = {}

    def run(seed: int) -> None:
        side_by_side[seed] = train(RuleSource(IO, sign_rule), IO, DistillConfig(**{**vars(CFG), "seed": seed}))

    threads = [threading.Thread(target=run, args=(s,)) for s in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for seed, result in zip((1, 2), alone, strict=True):
        _assert_same_policy(result.peft_model, side_by_side[seed].peft_model)  # type: ignore[attr-defined]
