"""A phantom source over a world model in this process: what the simulator's Simulate stream does, for using the
library without servers (tests, benchmarks, notebooks). It is a `ModelSource`: algorithms that differentiate
through the dynamics get the model and task from it too."""

from __future__ import annotations

from collections.abc import Iterator

from plasma.mbrl import audit, rollout
from plasma.mbrl.models.ensemble import EnsembleWorldModel
from plasma.mbrl.planning import PlannerConfig
from plasma.mbrl.tasks import Task, task_from_spec
from plasma.mbrl.types import MlpWeights, PhantomPath, TaskSpecData, Transitions


class InProcessSource:
    """`task` is a compiled Task (None: the learned heads) or a task spec. A spec supersedes every
    reward_source asked for, as SimulateRequest.task does."""

    def __init__(
        self,
        model: EnsembleWorldModel,
        transitions: Transitions,
        task: Task | TaskSpecData | None,
        audit_settings: audit.AuditSettings | None = None,
        *,
        batch_paths: int | None = None,
        runner: rollout.Runner | None = None,
    ) -> None:
        """`batch_paths` and `runner` as rollout.simulate takes them (default: the device's batch size, in this
        process)."""
        self._model = model
        self._batch_paths, self._runner = batch_paths, runner
        self._transitions = transitions
        # Every path is audited, as the Simulate stream does: its support is computed once, here.
        self._support = audit.support_of(model, transitions)
        self._audit = audit_settings or audit.AuditSettings()
        self._from_spec = isinstance(task, TaskSpecData)
        self._task = task_from_spec(task, model.spec) if isinstance(task, TaskSpecData) else task

    @property
    def model(self) -> EnsembleWorldModel:
        return self._model

    @property
    def task(self) -> Task | None:
        return self._task

    def simulate(
        self,
        *,
        policy: MlpWeights | PlannerConfig | None,
        num_paths: int,
        horizon: int,
        seed: int,
        start_states: str,
        label_with_planner: PlannerConfig | None,
        reward_source: str,
    ) -> Iterator[PhantomPath]:
        # "" is the Simulate RPC's default: the task's reward where it is known, else the learned heads.
        if self._from_spec or not reward_source:
            reward_source = "task" if self._task is not None else "learned"
        return rollout.simulate(
            self._model, policy=policy, num_paths=num_paths, horizon=horizon, seed=seed,
            start_pool=rollout.start_states(self._transitions, start_states), label_with_planner=label_with_planner,
            reward_source=reward_source, task=self._task, support=self._support, audit=self._audit,
            batch_paths=self._batch_paths, runner=self._runner,
        )
