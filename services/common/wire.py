"""Conversions between the service-internal array types and their protobuf messages."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from google.protobuf.message import Message

from plasma import ids, tensors
from plasma.mbrl import diagnosis, quality, tasks
from plasma.mbrl.audit import AuditSettings
from plasma.mbrl.planning import PlannerConfig
from plasma.mbrl.types import AuditFinding, MlpWeights, PathAuditResult, PhantomPath, TaskSpecData, TrackingSpec
from plasma.server.errors import FailedPrecondition, InvalidArgument, bad_input
from plasma.simulator.v1 import audit_pb2, simulator_pb2, task_pb2
from plasma.spaces import EnvSpec

_ACTIVATIONS = {
    "tanh": simulator_pb2.ACTIVATION_TANH,
    "relu": simulator_pb2.ACTIVATION_RELU,
    "silu": simulator_pb2.ACTIVATION_SILU,
}
_VERDICTS = {
    "pass": audit_pb2.AUDIT_VERDICT_PASS,
    "truncate": audit_pb2.AUDIT_VERDICT_TRUNCATE,
    "reject": audit_pb2.AUDIT_VERDICT_REJECT,
}
_REASONS = {
    "ensemble_disagreement": audit_pb2.AUDIT_REASON_ENSEMBLE_DISAGREEMENT,
    "out_of_support": audit_pb2.AUDIT_REASON_OUT_OF_SUPPORT,
    "impossible_reward": audit_pb2.AUDIT_REASON_IMPOSSIBLE_REWARD,
    "impossible_jump": audit_pb2.AUDIT_REASON_IMPOSSIBLE_JUMP,
}


# The one table of each enum's names as the library uses them. A reward source "" leaves the choice to the
# simulator (the task's reward where it knows one, else the learned heads).
_REWARD_SOURCES = {
    simulator_pb2.REWARD_SOURCE_UNSPECIFIED: "",
    simulator_pb2.REWARD_SOURCE_TASK: "task",
    simulator_pb2.REWARD_SOURCE_LEARNED: "learned",
}
_START_STATES = {
    simulator_pb2.START_STATES_UNSPECIFIED: "episode_starts",
    simulator_pb2.START_STATES_EPISODE_STARTS: "episode_starts",
    simulator_pb2.START_STATES_ANY: "any",
}
# Upper bounds on planner settings: beyond these one Simulate call would tie up the service for hours.
_PLANNER_LIMITS = {"horizon": 200, "num_samples": 4096, "num_iterations": 20, "num_elites": 4096}


def reward_source_from_proto(value: simulator_pb2.RewardSource) -> str:
    if value not in _REWARD_SOURCES:
        raise InvalidArgument(f"unknown reward_source {value}; use REWARD_SOURCE_TASK or REWARD_SOURCE_LEARNED")
    return _REWARD_SOURCES[value]


def reward_source_to_proto(name: str) -> simulator_pb2.RewardSource:
    return next(value for value, known in _REWARD_SOURCES.items() if known == name)


def start_states_from_proto(value: simulator_pb2.StartStates) -> str:
    if value not in _START_STATES:
        raise InvalidArgument(f"unknown start_states {value}; use START_STATES_EPISODE_STARTS or START_STATES_ANY")
    return _START_STATES[value]


def start_states_to_proto(name: str) -> simulator_pb2.StartStates:
    return simulator_pb2.START_STATES_ANY if name == "any" else simulator_pb2.START_STATES_EPISODE_STARTS


def planner_from_proto(message: simulator_pb2.PlannerConfig) -> PlannerConfig:
    """PlannerConfig message -> the library's PlannerConfig, zero fields taking the defaults, within limits."""
    fields = fields_within(message, _PLANNER_LIMITS, "planner")
    if not 0.0 <= fields.get("discount", 0.0) <= 1.0:
        raise InvalidArgument(f"planner discount={fields['discount']} must be in (0, 1] (0 for the default)")
    with bad_input():
        return PlannerConfig(**fields)


def planner_to_proto(config: PlannerConfig) -> simulator_pb2.PlannerConfig:
    return simulator_pb2.PlannerConfig(**dataclasses.asdict(config))

def set_fields(message: Message) -> dict[str, Any]:
    """The fields of a message that differ from their zero value ("zero means default")."""
    return {field.name: value for field, value in message.ListFields()}


def fields_within(message: Message, limits: dict[str, int], what: str) -> dict[str, Any]:
    """`set_fields`, checking that each integer field named in `limits` is at most its limit."""
    fields = set_fields(message)
    for name, limit in limits.items():
        if not 0 <= fields.get(name, 0) <= limit:
            raise InvalidArgument(f"{what} {name}={fields[name]} must be in 1..{limit} (0 for the default)")
    return fields


def mlp_to_proto(policy: MlpWeights) -> simulator_pb2.MlpPolicy:
    return simulator_pb2.MlpPolicy(
        weights=[tensors.to_proto(np.asarray(w, dtype=np.float32)) for w in policy.weights],
        biases=[tensors.to_proto(np.asarray(b, dtype=np.float32)) for b in policy.biases],
        activation=_ACTIVATIONS[policy.activation],
        obs_mean=tensors.to_proto(np.asarray(policy.obs_mean, dtype=np.float32)),
        obs_std=tensors.to_proto(np.asarray(policy.obs_std, dtype=np.float32)),
    )


def mlp_from_proto(policy: simulator_pb2.MlpPolicy) -> MlpWeights:
    """Decodes an MlpPolicy; raises ValueError (or TensorError) naming the malformed part."""
    names = {code: name for name, code in _ACTIVATIONS.items()}
    if policy.activation not in names:
        raise ValueError("mlp policy: activation must be set to TANH, RELU or SILU")
    if not policy.weights or len(policy.weights) != len(policy.biases):
        raise ValueError(
            f"mlp policy: needs one bias per weight matrix, got {len(policy.weights)} weights "
            f"and {len(policy.biases)} biases"
        )
    return MlpWeights(
        weights=[tensors.from_proto(w, f"mlp weights[{i}]") for i, w in enumerate(policy.weights)],
        biases=[tensors.from_proto(b, f"mlp biases[{i}]") for i, b in enumerate(policy.biases)],
        activation=names[policy.activation],
        obs_mean=tensors.from_proto(policy.obs_mean, "mlp obs_mean"),
        obs_std=tensors.from_proto(policy.obs_std, "mlp obs_std"),
    )


def path_to_proto(path: PhantomPath, index: int) -> simulator_pb2.PhantomPath:
    message = simulator_pb2.PhantomPath(
        index=index,
        length=path.length,
        observations=tensors.to_proto(path.observations.astype(np.float32, copy=False)),
        actions=tensors.to_proto(path.actions),
        rewards=tensors.to_proto(path.rewards.astype(np.float32, copy=False)),
        dones=tensors.to_proto(path.dones.astype(bool, copy=False)),
        uncertainty=tensors.to_proto(path.uncertainty.astype(np.float32, copy=False)),
        total_reward=float(np.sum(path.rewards, dtype=np.float64)),
    )
    if path.expert_actions is not None:
        message.expert_actions.CopyFrom(tensors.to_proto(path.expert_actions))
    if path.audit is not None:
        message.audit.CopyFrom(audit_to_proto(path.audit))
    if path.members is not None:
        message.members.CopyFrom(tensors.to_proto(path.members.astype(np.int64, copy=False)))
    return message


def path_from_proto(message: simulator_pb2.PhantomPath) -> PhantomPath:
    return PhantomPath(
        observations=tensors.from_proto(message.observations, "observations"),
        actions=tensors.from_proto(message.actions, "actions"),
        rewards=tensors.from_proto(message.rewards, "rewards"),
        dones=tensors.from_proto(message.dones, "dones"),
        uncertainty=tensors.from_proto(message.uncertainty, "uncertainty"),
        expert_actions=(
            tensors.from_proto(message.expert_actions, "expert_actions")
            if message.HasField("expert_actions")
            else None
        ),
        audit=audit_from_proto(message.audit) if message.HasField("audit") else None,
        members=tensors.from_proto(message.members, "members") if message.HasField("members") else None,
    )


def audit_to_proto(audit: PathAuditResult) -> audit_pb2.PathAudit:
    return audit_pb2.PathAudit(
        verdict=_VERDICTS[audit.verdict],
        valid_steps=audit.valid_steps,
        findings=[
            audit_pb2.AuditFinding(reason=_REASONS[f.reason], step=f.step, value=f.value, threshold=f.threshold,
                                   detail=f.detail)
            for f in audit.findings
        ],
        penalized_rewards=tensors.to_proto(audit.penalized_rewards.astype(np.float32, copy=False)),
        penalized_return=audit.penalized_return,
    )


def audit_from_proto(message: audit_pb2.PathAudit) -> PathAuditResult:
    """Decodes a PathAudit; raises ValueError on an unknown verdict or reason."""
    verdicts = {code: name for name, code in _VERDICTS.items()}
    reasons = {code: name for name, code in _REASONS.items()}
    if message.verdict not in verdicts or any(f.reason not in reasons for f in message.findings):
        raise ValueError(f"path audit: unknown verdict {message.verdict} or finding reason")
    return PathAuditResult(
        verdict=verdicts[message.verdict],
        valid_steps=int(message.valid_steps),
        findings=[
            AuditFinding(reasons[f.reason], int(f.step), f.value, f.threshold, f.detail) for f in message.findings
        ],
        penalized_rewards=tensors.from_proto(message.penalized_rewards, "audit penalized_rewards"),
        penalized_return=float(message.penalized_return),
    )


def task_spec_to_proto(spec: TaskSpecData) -> task_pb2.TaskSpec:
    message = task_pb2.TaskSpec(name=spec.name)
    if spec.objective == "environment":
        message.environment.SetInParent()
    elif spec.objective == "learned":
        message.learned.SetInParent()
    elif spec.objective == "tracking" and spec.tracking is not None:
        message.tracking.CopyFrom(task_pb2.TrackingObjective(**vars(spec.tracking)))
    else:
        raise ValueError(f"task objective must be environment, learned or tracking (with its spec), "
                         f"got {spec.objective!r}")
    return message


def task_spec_from_proto(message: task_pb2.TaskSpec) -> TaskSpecData:
    """Decodes a TaskSpec; its values are checked against a model's spec by tasks.task_from_spec."""
    ids.check_name("task.name", message.name, optional=True)
    objective = message.WhichOneof("objective")
    if objective is None:
        raise InvalidArgument("task needs one objective: environment, learned or tracking")
    if objective != "tracking":
        return TaskSpecData(objective=objective, name=message.name)
    t = message.tracking
    tracking = TrackingSpec(
        target_observation=tuple(t.target_observation), state_weights=tuple(t.state_weights),
        action_weights=tuple(t.action_weights), target_action=tuple(t.target_action),
        alive_bonus=float(t.alive_bonus), terminate_below=tuple(t.terminate_below),
        terminate_above=tuple(t.terminate_above),
    )
    return TaskSpecData(objective=objective, name=message.name, tracking=tracking)


def audit_settings_from_proto(message: audit_pb2.AuditConfig) -> AuditSettings:
    """AuditConfig -> AuditSettings, zero fields taking the defaults; ValueError names a bad field."""
    defaults = AuditSettings()
    if message.disagreement_threshold < 0 or message.penalty_coefficient < 0 or message.support_margin < 0:
        raise ValueError("audit disagreement_threshold, penalty_coefficient and support_margin must not be "
                         "negative (0 for the default)")
    if message.min_valid_steps < 0:
        raise ValueError(f"audit min_valid_steps={message.min_valid_steps} must not be negative (0 for the default)")
    return AuditSettings(
        disabled=message.disabled,
        disagreement_threshold=message.disagreement_threshold or defaults.disagreement_threshold,
        penalty_coefficient=message.penalty_coefficient or defaults.penalty_coefficient,
        support_margin=message.support_margin or defaults.support_margin,
        min_valid_steps=message.min_valid_steps or defaults.min_valid_steps,
    )


def task_from_proto(message: task_pb2.TaskSpec, env_spec: EnvSpec) -> tasks.Task | None:
    """A TaskSpec decoded and compiled for a model of `env_spec` (None: the learned heads): INVALID_ARGUMENT for
    a malformed spec, FAILED_PRECONDITION for an environment objective Plasma does not know."""
    try:
        return tasks.task_from_spec(task_spec_from_proto(message), env_spec)
    except tasks.TaskError as exc:
        raise InvalidArgument(str(exc)) from exc
    except tasks.UnknownObjective as exc:
        raise FailedPrecondition(str(exc)) from exc


def quality_to_proto(measured: quality.Quality) -> simulator_pb2.WorldModelQuality:
    return simulator_pb2.WorldModelQuality(
        horizons=[simulator_pb2.HorizonError(**vars(error)) for error in measured.horizons],
        nll=measured.nll, coverage_90=measured.coverage_90, coverage_90_per_dim=measured.coverage_90_per_dim,
        holdout_transitions=measured.holdout_transitions, dataset_id=measured.dataset_id,
    )


def model_warning_to_proto(found: diagnosis.Finding) -> simulator_pb2.ModelWarning:
    return simulator_pb2.ModelWarning(kind=f"MODEL_WARNING_KIND_{found.kind.upper()}", message=found.message)
