"""The whole job in one call: collect -> fit -> train -> compile -> deploy -> evaluate."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from plasma.compiler.v1 import compiler_pb2
from plasma.edge.v1 import edge_pb2
from plasma.sdk import checks
from plasma.sdk.checks import WorkflowWarning
from plasma.sdk.client import PlasmaClient
from plasma.sdk.evaluate import Evaluation, run_episodes
from plasma.simulator.v1 import simulator_pb2, task_pb2
from plasma.trainer.v1 import trainer_pb2

# Evaluation seeds start far from collection seeds so the two never share an episode.
EVAL_SEED_OFFSET = 1_000_000


@dataclass(frozen=True)
class WorkflowConfig:
    env_id: str = "CartPole-v1"
    # Real environment steps used for learning (the world model's data), all of them.
    real_steps: int = 1000
    seed: int = 0
    # Real episodes to evaluate the served packet on; never used for learning.
    eval_episodes: int = 20
    world_model: simulator_pb2.WorldModelConfig = field(default_factory=simulator_pb2.WorldModelConfig)
    train: trainer_pb2.TrainConfig = field(default_factory=trainer_pb2.TrainConfig)
    # Real steps of later collection rounds, each acting with the policy trained so far (`collection_epsilon` of
    # its actions random) and appended to the dataset, which the world model and the policy then learn again
    # from. `real_steps` is the first, random round; every round's steps count as real steps used.
    more_rounds: tuple[int, ...] = ()
    collection_epsilon: float = 0.1
    # What to optimize (plasma.sdk.tasks.parse_task): None is the environment's own reward and termination where
    # Plasma knows them, else those learned from the data; "learned" asks for the learned ones everywhere.
    task: task_pb2.TaskSpec | None = None


@dataclass(frozen=True)
class WorkflowSummary:
    env_id: str
    real_steps_used: int
    dataset_id: str
    model_id: str
    run_id: str
    packet_id: str
    model_metrics: simulator_pb2.WorldModelMetrics
    training_seconds: float
    imagined_return: float  # over the steps the audit kept, what the policy learned from
    whole_path_imagined_return: float  # over every imagined step of the same paths
    audited_step_share: float  # share of those steps the audit kept
    learns_from: str  # the reward and termination source the run used, in words (plasma.sdk.checks)
    packet: compiler_pb2.Packet  # its precision, the precisions tried and its parity figures
    served: edge_pb2.PacketInfo  # as the edge runtime loaded it: its self-test on the edge's CPU
    seed: int
    evaluation: Evaluation
    edge_inference_p50_ms: float
    edge_inference_p99_ms: float
    stage_seconds: dict[str, float]
    # What can make this packet worse than it looks: the data, the world model, imagined against real returns.
    warnings: tuple[WorkflowWarning, ...] = ()

    @property
    def wall_seconds(self) -> float:
        return sum(self.stage_seconds.values())


@dataclass(frozen=True)
class StageDone:
    """The last event of every stage."""

    seconds: float


OnEvent = Callable[[str, Any], None]


def train_and_deploy(client: PlasmaClient, cfg: WorkflowConfig, on_event: OnEvent | None = None) -> WorkflowSummary:
    """Runs every stage through the services' gRPC APIs and evaluates the packet as the edge serves it."""
    stages: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[Callable[[Any], None] | None], Any]) -> Any:
        started = time.monotonic()
        forward = (lambda event: on_event(stage, event)) if on_event else None
        result = fn(forward)
        stages[stage] = time.monotonic() - started
        if on_event:
            on_event(stage, StageDone(stages[stage]))
        return result

    dataset = timed("collect", lambda p: client.collect(cfg.env_id, cfg.real_steps, cfg.seed, on_progress=p))
    model = timed("fit", lambda p: client.fit_world_model(dataset.dataset_id, cfg.world_model, on_progress=p))
    run = timed("train", lambda p: client.train(model.model_id, cfg.train, on_progress=p, task=cfg.task))
    for number, steps in enumerate(cfg.more_rounds, start=2):
        dataset, model, run = _next_round(client, cfg, timed, number, steps, dataset.dataset_id, run.policy)
    packet = timed("compile", lambda p: client.compile(run.run_id, on_progress=p))
    served = timed("deploy", lambda _p: client.deploy(client.download_packet(packet.packet_id)))
    evaluation = timed("evaluate", lambda _p: run_episodes(
        cfg.env_id, cfg.eval_episodes, cfg.seed + EVAL_SEED_OFFSET, client.act))
    status = client.edge_status()
    found = checks.warnings(model, run, evaluation)
    return WorkflowSummary(
        env_id=cfg.env_id,
        real_steps_used=int(dataset.num_transitions),
        dataset_id=dataset.dataset_id,
        model_id=model.model_id,
        run_id=run.run_id,
        packet_id=packet.packet_id,
        model_metrics=model.metrics,
        training_seconds=run.metrics.training_seconds,
        imagined_return=run.metrics.imagined_return,
        whole_path_imagined_return=run.metrics.whole_path_imagined_return,
        audited_step_share=run.metrics.audited_step_share,
        learns_from=checks.learns_from(run),
        packet=packet,
        served=served,
        seed=cfg.seed,
        evaluation=evaluation,
        edge_inference_p50_ms=status.inference_latency.p50_ms,
        edge_inference_p99_ms=status.inference_latency.p99_ms,
        stage_seconds=stages,
        warnings=tuple(found),
    )


def _next_round(
    client: PlasmaClient, cfg: WorkflowConfig, timed: Callable[[str, Callable[[Any], Any]], Any], number: int,
    steps: int, dataset_id: str, policy: simulator_pb2.MlpPolicy,
) -> tuple[simulator_pb2.Dataset, simulator_pb2.WorldModel, trainer_pb2.Run]:
    """Collection round `number` with the current policy, appended to the dataset; then fit and train again."""
    dataset = timed(f"collect {number}", lambda p: client.collect(
        cfg.env_id, steps, cfg.seed + number - 1, on_progress=p, collection_policy=simulator_pb2.COLLECTION_POLICY_MLP,
        policy=policy, epsilon=cfg.collection_epsilon, append_to_dataset_id=dataset_id))
    model = timed(f"fit {number}", lambda p: client.fit_world_model(dataset.dataset_id, cfg.world_model, on_progress=p))
    run = timed(f"train {number}", lambda p: client.train(model.model_id, cfg.train, on_progress=p, task=cfg.task))
    return dataset, model, run
