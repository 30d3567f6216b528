"""What a workflow learned from, and its warnings: the simulator's findings about the data and the world model
that matter for the reward source the run used, and whether imagined and real returns agree."""

from __future__ import annotations

from dataclasses import dataclass

from plasma.sdk.evaluate import Evaluation
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2

# Findings about the data that matter only where the reward and termination are learned from it.
_LEARNED_ONLY = frozenset({
    simulator_pb2.MODEL_WARNING_KIND_CONSTANT_REWARD,
    simulator_pb2.MODEL_WARNING_KIND_REWARD_FROM_ACTIONS_ONLY,
    simulator_pb2.MODEL_WARNING_KIND_NO_TERMINATIONS,
})
# Imagined and real returns disagree badly when one is more than twice the other, or their signs differ: within a
# factor of two, imagined paths (from any real state, cut at the run's horizon) and real episodes (from the reset
# distribution) differ for reasons of their own; beyond it the model or the objective is wrong.
MAX_RETURN_RATIO = 2.0
# TrainConfig.horizon's default (plasma.mbrl.algorithms.distill.DistillConfig).
_DEFAULT_HORIZON = 200


@dataclass(frozen=True)
class WorkflowWarning:
    kind: str  # "constant_reward", "reward_from_actions_only", "no_terminations", "holdout_gap", "returns_disagree"
    message: str


def learns_from(run: trainer_pb2.Run) -> str:
    """What the run's reward and termination came from, in words."""
    if run.reward_source_used == simulator_pb2.REWARD_SOURCE_LEARNED:
        return "learned from the data (the world model's reward and termination heads)"
    if run.task.WhichOneof("objective") == "tracking":
        return f"task {run.task.name}: its reward and termination computed on predicted states"
    if run.reward_source_used == simulator_pb2.REWARD_SOURCE_TASK:
        return f"the environment's own, known to Plasma ({run.env_spec.env_id}'s reward and termination functions)"
    return "unknown (a trainer that does not report it)"


def warnings(model: simulator_pb2.WorldModel, run: trainer_pb2.Run, evaluation: Evaluation) -> list[WorkflowWarning]:
    """The model's findings that matter for the run's reward source, then the imagined-against-real check."""
    learned = run.reward_source_used == simulator_pb2.REWARD_SOURCE_LEARNED
    found = [WorkflowWarning(simulator_pb2.ModelWarningKind.Name(w.kind).removeprefix("MODEL_WARNING_KIND_").lower(),
                             f"world model {model.model_id}: {w.message}")
             for w in model.warnings if learned or w.kind not in _LEARNED_ONLY]
    # A tracking task's returns are not the environment's: nothing real to compare them with.
    if run.task.WhichOneof("objective") != "tracking" and evaluation.rewards:
        horizon = run.config.horizon or _DEFAULT_HORIZON
        disagreement = returns_disagree(run.metrics.whole_path_imagined_return,
                                        evaluation.mean_return_within(horizon), horizon)
        if disagreement is not None:
            found.append(disagreement)
    return found


def returns_disagree(imagined: float, real: float, horizon: int) -> WorkflowWarning | None:
    """A warning when the imagined return (whole paths of `horizon` steps) and the real one over the same number of
    steps are more than MAX_RETURN_RATIO apart or of opposite signs."""
    low, high = sorted((abs(imagined), abs(real)))
    if (imagined > 0) == (real > 0) and high <= MAX_RETURN_RATIO * low:
        return None
    return WorkflowWarning("returns_disagree", (
        f"imagined return {imagined:.1f} against a real {real:.1f} over the first {horizon} steps of each evaluation "
        f"episode (more than {MAX_RETURN_RATIO:g}x apart): the world model, or the reward and termination it "
        "imagines, does not match the real system where this policy goes"))
