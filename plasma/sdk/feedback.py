"""The real-world feedback loop, one iteration (docs/feedback-loop.md): the experience an edge recorded from its
Control streams -> a dataset version (UploadTransitions) -> the world model fine-tuned on it (FitWorldModel with
init_from_model_id) -> a new LoRA adapter on the same base policy (Train with base_run_id) -> a packet -> served by
the edge, or rolled out through the registry on a channel.

`drive` is the device's side: a real environment stepped through the edge's Control stream, sending each step's
reward and done flags so that the edge records it."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from plasma import channels, tensors
from plasma.compiler.v1 import compiler_pb2
from plasma.edge.v1 import edge_pb2
from plasma.registry.v1 import registry_pb2
from plasma.sdk import logged, recipes
from plasma.sdk.client import PlasmaClient
from plasma.sdk.evaluate import env_action
from plasma.sdk.workflow import OnEvent, StageDone
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2

# A new dataset of experience is named after the dataset the world model was fitted on, plus this.
FIELD_SUFFIX = "-field"


@dataclass(frozen=True)
class Experience:
    """What ExportExperience streamed, ready for PlasmaClient.upload."""

    arrays: dict[str, np.ndarray]  # named and typed as TransitionBatch's fields
    # The from_sequence of the next loop: past every transition here.
    next_sequence: int

    @property
    def steps(self) -> int:
        return len(self.arrays["observations"])

    @property
    def episodes(self) -> int:
        return len(np.unique(self.arrays["episode_ids"]))


def read_experience(data: bytes) -> Experience:
    """An ExportExperience archive as upload arrays (the npz names of plasma.sdk.logged, renamed)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        names = {**logged.REQUIRED, **logged.OPTIONAL}
        arrays = {field_name: npz[name] for name, field_name in names.items() if name in npz.files}
        next_sequence = int(npz["sequences"].max()) + 1
    return Experience(arrays, next_sequence)


@dataclass(frozen=True)
class LoopConfig:
    # The world model to fine-tune, and the run whose base policy the new adapter is trained on.
    model_id: str
    base_run_id: str
    # The dataset the experience extends as its next version; empty: a new dataset `dataset_name` (default: the
    # model's dataset's name + FIELD_SUFFIX), so the fine-tune sees only the changed system's data.
    append_to: str = ""
    dataset_name: str = ""
    # Only experience recorded from this sequence number on (a previous loop's next_sequence).
    from_sequence: int = 0
    # The fine-tune's settings (architecture fields are inherited) and the adapter's training.
    world_model: simulator_pb2.WorldModelConfig = field(
        default_factory=lambda: simulator_pb2.WorldModelConfig(train_steps=1000))
    train: trainer_pb2.TrainConfig = field(default_factory=lambda: recipes.workflow("default").train)
    # The packet's lineage; empty: the name of the packet the edge (or the channel) serves, so its version goes up.
    packet_name: str = ""
    # Roll the packet out on this registry channel (a canary share, then all or back) instead of loading it into
    # the edge directly; wait up to `rollout_wait_s` for the verdict.
    channel: str = ""
    canary_fraction: float = 0.0
    rollout_wait_s: float = 0.0


@dataclass(frozen=True)
class LoopSummary:
    real_steps: int  # transitions recorded by the edge and uploaded
    episodes: int
    next_sequence: int
    dataset: simulator_pb2.Dataset
    model: simulator_pb2.WorldModel
    run: trainer_pb2.Run
    packet: compiler_pb2.Packet
    served: edge_pb2.PacketInfo | None  # loaded into the edge (no channel)
    rollout: registry_pb2.Rollout | None  # started on the channel
    stage_seconds: dict[str, float]


def run_loop(client: PlasmaClient, cfg: LoopConfig, on_event: OnEvent | None = None) -> LoopSummary:
    """One iteration through the services; `on_event(stage, event)` hears each stage's progress and its StageDone."""
    stages: dict[str, float] = {}

    def timed(stage: str, fn: Callable[[Callable[[Any], None] | None], Any]) -> Any:
        started = time.monotonic()
        result = fn((lambda event: on_event(stage, event)) if on_event else None)
        stages[stage] = time.monotonic() - started
        if on_event:
            on_event(stage, StageDone(stages[stage]))
        return result

    deadline = channels.UNARY_DEADLINE_S
    parent = client.simulator.GetWorldModel(simulator_pb2.GetWorldModelRequest(model_id=cfg.model_id),
                                            timeout=deadline).model
    experience = timed("export", lambda _p: read_experience(client.export_experience(cfg.from_sequence)))
    name = "" if cfg.append_to else (cfg.dataset_name or _field_name(client, parent.dataset_id))
    dataset = timed("upload", lambda p: client.upload(parent.env_spec, experience.arrays, name=name,
                                                      append_to=cfg.append_to, on_progress=p))
    model = timed("fine-tune", lambda p: client.fit_world_model(dataset.dataset_id, cfg.world_model, on_progress=p,
                                                                init_from_model_id=cfg.model_id))
    run = timed("train", lambda p: client.train(model.model_id, cfg.train, on_progress=p,
                                                base_run_id=cfg.base_run_id))
    packet_name = cfg.packet_name or _lineage(client, cfg.channel)
    packet = timed("compile", lambda p: client.compile(run.run_id, name=packet_name, on_progress=p))
    served, rollout = None, None
    if cfg.channel:
        rollout = timed("rollout", lambda _p: _roll_out(client, cfg, packet.packet_id))
    else:
        served = timed("deploy", lambda _p: client.deploy(client.download_packet(packet.packet_id)))
    return LoopSummary(experience.steps, experience.episodes, experience.next_sequence, dataset, model, run, packet,
                       served, rollout, stages)


def _field_name(client: PlasmaClient, dataset_id: str) -> str:
    source = client.simulator.GetDataset(simulator_pb2.GetDatasetRequest(dataset_id=dataset_id),
                                         timeout=channels.UNARY_DEADLINE_S).dataset
    return source.name + FIELD_SUFFIX


def _lineage(client: PlasmaClient, channel: str) -> str:
    """The name of what is served now: the channel's stable packet, or the edge's."""
    if channel:
        return client.rollout.channel(channel).stable.name
    status = client.edge_status()
    return status.packet.name if status.serving else ""


def _roll_out(client: PlasmaClient, cfg: LoopConfig, packet_id: str) -> registry_pb2.Rollout:
    rollout = client.rollout.start(cfg.channel, packet_id, canary_fraction=cfg.canary_fraction)
    if cfg.rollout_wait_s <= 0:
        return rollout
    try:
        return client.rollout.wait(rollout.rollout_id, cfg.rollout_wait_s)
    except TimeoutError:  # still in its canary stage: say where it stands
        return client.rollout.status(rollout.rollout_id)


@dataclass(frozen=True)
class Drive:
    """What a device's run through the edge did."""

    steps: int  # environment steps, each one transition for an edge that records
    returns: tuple[float, ...]  # of the episodes that ended
    packet_ids: tuple[str, ...]  # the packets that answered, in order of first appearance


def drive(client: PlasmaClient, env_id: str, steps: int, seed: int) -> Drive:
    """Steps `env_id` for `steps` steps with the edge choosing every action over one Control stream, each message
    carrying the reward and done flags of the step that led to its observation. An episode cut short by the budget
    is left as it is (not done): it did not end."""
    env = gym.make(env_id)
    returns: list[float] = []
    packets: dict[str, None] = {}
    try:
        with client.control() as session:
            observation, _ = env.reset(seed=seed)
            reply = session.act(observation)
            total = 0.0
            for _ in range(steps):
                packets[reply.packet_id] = None
                action = tensors.from_proto(reply.action, "action")
                observation, reward, terminated, truncated, _ = env.step(env_action(env, action))
                total += float(reward)
                reply = session.act(observation, float(reward), bool(terminated), bool(truncated))
                if terminated or truncated:
                    returns.append(total)
                    total = 0.0
                    observation, _ = env.reset()
                    reply = session.act(observation)
    finally:
        env.close()
    return Drive(steps, tuple(returns), tuple(packets))
