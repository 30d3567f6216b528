"""The workflow's own checks (plasma.sdk.checks): which of the world model's warnings matter for the reward source a
run used, what the summary says it learned from, and when imagined and real returns disagree."""

from __future__ import annotations

import pytest

from plasma.sdk import checks
from plasma.sdk.evaluate import Evaluation
from plasma.simulator.v1 import simulator_pb2, task_pb2
from plasma.trainer.v1 import trainer_pb2

MODEL = simulator_pb2.WorldModel(model_id="wm-1", warnings=[
    simulator_pb2.ModelWarning(kind=simulator_pb2.MODEL_WARNING_KIND_CONSTANT_REWARD, message="every reward is 1"),
    simulator_pb2.ModelWarning(kind=simulator_pb2.MODEL_WARNING_KIND_HOLDOUT_GAP, message="held-out NLL 3.7"),
])


def _run(source: int, whole: float = 200.0, horizon: int = 200) -> trainer_pb2.Run:
    run = trainer_pb2.Run(reward_source_used=source, config=trainer_pb2.TrainConfig(horizon=horizon),
                          metrics=trainer_pb2.RunMetrics(whole_path_imagined_return=whole))
    run.env_spec.env_id = "CartPole-v1"
    return run


def _evaluation(episodes: list[list[float]]) -> Evaluation:
    return Evaluation(tuple(sum(e) for e in episodes), (), tuple(tuple(e) for e in episodes))


REAL = _evaluation([[1.0] * 500, [1.0] * 500])


def test_data_warnings_matter_only_where_the_reward_is_learned() -> None:
    learned = checks.warnings(MODEL, _run(simulator_pb2.REWARD_SOURCE_LEARNED), REAL)
    assert [w.kind for w in learned] == ["constant_reward", "holdout_gap"]
    assert learned[0].message == "world model wm-1: every reward is 1"
    known = checks.warnings(MODEL, _run(simulator_pb2.REWARD_SOURCE_TASK), REAL)
    assert [w.kind for w in known] == ["holdout_gap"]


def test_imagined_whole_paths_are_compared_with_real_returns_over_the_run_s_horizon() -> None:
    # 200 imagined over 200 steps against 500 real over 500: the same 200 over the first 200 steps.
    assert checks.warnings(simulator_pb2.WorldModel(), _run(simulator_pb2.REWARD_SOURCE_TASK), REAL) == []
    bad = checks.warnings(simulator_pb2.WorldModel(), _run(simulator_pb2.REWARD_SOURCE_TASK, whole=-10.8), REAL)
    assert [w.kind for w in bad] == ["returns_disagree"]
    assert "-10.8" in bad[0].message and "200.0" in bad[0].message


def test_a_tracking_task_s_imagined_return_is_not_compared_with_the_environment_s() -> None:
    run = _run(simulator_pb2.REWARD_SOURCE_TASK, whole=-3.0)
    run.task.CopyFrom(task_pb2.TaskSpec(name="track-obs0=0", tracking=task_pb2.TrackingObjective()))
    assert checks.warnings(simulator_pb2.WorldModel(), run, REAL) == []


@pytest.mark.parametrize(("imagined", "real", "warned"), [
    (124.0, 200.0, False), (90.0, 200.0, True), (-150.0, -280.0, False), (-10.8, -142.9, True), (5.0, -5.0, True),
    (0.0, 0.0, False),
])
def test_returns_disagree_beyond_a_factor_of_two_or_in_sign(imagined: float, real: float, warned: bool) -> None:
    assert (checks.returns_disagree(imagined, real, 200) is not None) == warned


def test_the_summary_names_the_reward_source() -> None:
    assert "learned from the data" in checks.learns_from(_run(simulator_pb2.REWARD_SOURCE_LEARNED))
    assert "CartPole-v1" in checks.learns_from(_run(simulator_pb2.REWARD_SOURCE_TASK))
    tracked = _run(simulator_pb2.REWARD_SOURCE_TASK)
    tracked.task.CopyFrom(task_pb2.TaskSpec(name="cartpole-x=1", tracking=task_pb2.TrackingObjective()))
    assert checks.learns_from(tracked).startswith("task cartpole-x=1")


def test_returns_within_a_horizon_cut_longer_episodes() -> None:
    evaluation = _evaluation([[1.0] * 500, [2.0] * 50])
    assert evaluation.mean_return_within(200) == pytest.approx((200 + 100) / 2)
    assert evaluation.mean_return == pytest.approx((500 + 100) / 2)
