"""A PhantomSource over a world model in this process: what the gRPC Simulate stream does, for tests
and benchmarks that run the trainer's algorithm without servers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from typing import Any

from plasma.mbrl import audit, rollout
from plasma.mbrl.models.ensemble import EnsembleWorldModel
from plasma.mbrl.planning import PlannerConfig
from plasma.mbrl.tasks import Task, task_from_spec
from plasma.mbrl.types import MlpWeights, PhantomPath, TaskSpecData, Transitions


def planner_config_of(settings: Any) -> PlannerConfig:
    """Any object with PlannerConfig's fields (e.g. the trainer's PlannerSettings) as a PlannerConfig."""
    return PlannerConfig(**{f.name: getattr(settings, f.name) for f in fields(PlannerConfig)})


class InProcessSource:
    """`task` is a compiled Task (None: the learned heads) or a task spec. A spec supersedes every
    reward_source asked for, as SimulateRequest.task does."""

    def __init__(
        self,
        model: EnsembleWorldModel,
        transitions: Transitions,
        task: Task | TaskSpecData | None,
        audit_settings: audit.AuditSettings | None = None,
    ) -> None:
        self._model = model
        self._transitions = transitions
        # Every path is audited, as the Simulate stream does: its support is computed once, here.
        self._support = audit.support_of(model, transitions)
        self._audit = audit_settings or audit.AuditSettings()
        self._from_spec = isinstance(task, TaskSpecData)
        self._task = task_from_spec(task, model.spec) if isinstance(task, TaskSpecData) else task

    def simulate(
        self,
        *,
        policy: Any,
        num_paths: int,
        horizon: int,
        seed: int,
        start_states: str,
        label_with_planner: Any,
        reward_source: str,
    ) -> Iterator[PhantomPath]:
        rollout_policy = policy if policy is None or isinstance(policy, MlpWeights) else planner_config_of(policy)
        label = None if label_with_planner is None else planner_config_of(label_with_planner)
        # "" is the Simulate RPC's default: the task's reward where it is known, else the learned heads.
        if self._from_spec or not reward_source:
            reward_source = "task" if self._task is not None else "learned"
        return rollout.simulate(
            self._model, policy=rollout_policy, num_paths=num_paths, horizon=horizon, seed=seed,
            start_pool=rollout.start_states(self._transitions, start_states), label_with_planner=label,
            reward_source=reward_source, task=self._task, support=self._support, audit=self._audit,
        )

