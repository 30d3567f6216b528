"""The feedback loop end to end on the four services as local processes, with a small budget: a device drives a
changed CartPole through the edge's Control stream, the edge records it, and one loop through the SDK (loading the
edge directly) and a second through `plasma loop` (a staged rollout through the registry, which the edge follows) turn
it into dataset versions, fine-tuned world models, adapters on the first run's base and packets the edge serves. How
much a loop recovers is bench.feedback_loop's to measure (docs/feedback-loop.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plasma import channels, cli
from plasma.sdk import recipes
from plasma.sdk.client import PlasmaClient
from plasma.sdk.evaluate import run_episodes
from plasma.sdk.feedback import FIELD_SUFFIX, LoopConfig, drive, read_experience, run_loop
from plasma.sdk.local import LocalStack, free_port
from plasma.sdk.variants import PREFIX
from plasma.sdk.workflow import EVAL_SEED_OFFSET, train_and_deploy
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2
from tests.support.waiting import eventually

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

CHANGED = PREFIX + "plasma/CartPoleReversed-v0"
FIRST_STEPS, SECOND_STEPS = 150, 60
CHANNEL = "stable"


def test_recorded_experience_goes_round_the_loop_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = recipes.workflow("quick-check", eval_episodes=2, seed=0)
    # The stack's edge records experience and follows a channel of the stack's own registry.
    registry_port = free_port()
    edge = {"PLASMA_EDGE_EXPERIENCE_DIR": str(tmp_path / "experience"), "PLASMA_EDGE_ID": "device-1",
            "PLASMA_EDGE_REGISTRY_TARGET": f"127.0.0.1:{registry_port}", "PLASMA_EDGE_CHANNEL": CHANNEL}
    stack = LocalStack(tmp_path, ports={"registry": registry_port}, env=edge)
    with stack, PlasmaClient(stack.endpoints) as client:
        summary = train_and_deploy(client, cfg)  # its evaluation acts through Act: nothing is recorded
        device = drive(client, CHANGED, FIRST_STEPS, seed=7)
        experience = read_experience(client.export_experience())
        train = trainer_pb2.TrainConfig()
        train.CopyFrom(cfg.train)
        train.adapter_rounds = 1
        first = run_loop(client, LoopConfig(model_id=summary.model_id, base_run_id=summary.run_id,
                                            world_model=simulator_pb2.WorldModelConfig(train_steps=300), train=train))
        on_changed = run_episodes(CHANGED, 2, EVAL_SEED_OFFSET, client.act)
        again = drive(client, CHANGED, SECOND_STEPS, seed=8)
        endpoints = [f"--{name}={getattr(stack.endpoints, name)}" for name in ("simulator", "trainer", "compiler",
                                                                               "edge")]
        client.rollout.publish(CHANNEL, first.packet.packet_id)  # what the fleet runs now
        eventually(lambda: any(e.watching for e in client.rollout.channel(CHANNEL).edges),
                   what="the edge watching its channel")
        capsys.readouterr()
        code = cli.main(["loop", "--model", first.model.model_id, "--base-run", summary.run_id, "--append-to",
                         first.dataset.dataset_id, "--from-sequence", str(first.next_sequence), "--recipe",
                         "quick-check", "--channel", CHANNEL, "--registry", stack.endpoints.registry, "--json",
                         *endpoints])
        second = json.loads(capsys.readouterr().out)
        rollout = client.rollout.status(second["rollout_id"])
        # The edge is the channel's only edge, so the canary: it installs the candidate from its watch stream.
        status = eventually(lambda: (s := client.edge_status()).packet.packet_id == second["packet_id"] and s,
                            what="the edge serving the rollout's candidate")
        appended = client.simulator.GetDataset(simulator_pb2.GetDatasetRequest(dataset_id=second["dataset_id"]),
                                               timeout=channels.UNARY_DEADLINE_S).dataset

    # The edge recorded exactly the device's steps, episodes split where the device said done.
    assert device.steps == experience.steps == FIRST_STEPS and experience.next_sequence == FIRST_STEPS
    ended = experience.arrays["terminated"] | experience.arrays["truncated"]
    assert int(ended.sum()) == len(device.returns) and experience.episodes >= len(device.returns)
    assert (experience.arrays["rewards"] == 1.0).all()
    # Loop 1: a new dataset of the changed system's data only, the model fine-tuned on it, an adapter on the
    # first run's base, and the next version of the served lineage, now served.
    assert first.real_steps == FIRST_STEPS and first.next_sequence == FIRST_STEPS
    assert first.dataset.name == "CartPole-v1" + FIELD_SUFFIX  # after the dataset the model was fitted on
    assert (first.dataset.version, first.dataset.num_transitions, first.dataset.origin) == (1, FIRST_STEPS, "upload")
    assert first.model.parent_model_id == summary.model_id and first.model.dataset_id == first.dataset.dataset_id
    assert first.run.base_run_id == summary.run_id and first.run.state == trainer_pb2.RUN_STATE_SUCCEEDED
    assert first.packet.name == summary.served.name and first.packet.version == summary.served.version + 1
    assert first.served is not None and first.served.packet_id == first.packet.packet_id
    assert again.packet_ids == (first.packet.packet_id,) and len(on_changed.returns) == 2
    # Loop 2 through the CLI: only what was recorded since, appended as the dataset's next version.
    assert code == 0 and second["real_steps"] == SECOND_STEPS
    assert second["next_sequence"] == FIRST_STEPS + SECOND_STEPS
    assert second["served_packet_id"] == "" and rollout.candidate.packet_id == second["packet_id"]
    assert rollout.baseline.packet_id == first.packet.packet_id and list(rollout.canary_edge_ids) == ["device-1"]
    assert status.packet.version == summary.served.version + 2
    assert (appended.name, appended.version, appended.parent_dataset_id) == (first.dataset.name, 2,
                                                                             first.dataset.dataset_id)
    assert appended.num_transitions == FIRST_STEPS + SECOND_STEPS
