"""The suite on a Ray cluster (deploy/docker-compose.cluster.yml: a Ray head and two Ray workers from the simulator
image): a training whose phantom paths the simulator computes as Ray tasks spreads them over both workers, and
when one worker is killed in the middle of a batch, Ray runs the batch again on the other and the run ends with
the very policy of an uninterrupted run. What ran where comes from Ray's own state API (`ray list`, in the head).

A project of its own, not the session's stack: the simulator's topology differs, and a worker gets killed."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from plasma import blobs
from plasma.sdk.client import PlasmaClient
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2
from services.common import bundle
from tests.e2e import dockerutil
from tests.e2e.conftest import ComposeStack, compose_project
from tests.e2e.dockerutil import run
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

WORKERS = ("ray-worker-1", "ray-worker-2")
# 16 paths per Simulate call in batches of 8: two Ray tasks per call, both workers busy at once.
BATCH_PATHS = 8
TRAIN = trainer_pb2.TrainConfig(seed=3, base_paths=16, adapter_rounds=2, paths_per_round=16, epochs=20, horizon=200)
BATCH_TASK = "_run_on_worker"  # services/simulator/ray_batches.py


@pytest.fixture(scope="module")
def cluster(images: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeStack]:
    with compose_project(images, tmp_path_factory.mktemp("cluster-certs"), prefix="plasma-e2e-ray", cluster=True,
                         settings={"PLASMA_SIMULATOR_BATCH_PATHS": str(BATCH_PATHS)},
                         services=("simulator", "trainer", *WORKERS)) as served:
        yield served


def ray_list(stack: ComposeStack, what: str) -> list[dict[str, Any]]:
    """`ray list <what>` through the head's state API, as JSON."""
    done = run(["docker", "exec", stack.container("ray-head"), "ray", "list", what, "--format", "json", "--detail",
                "--limit", "10000"])
    listed: list[dict[str, Any]] = json.loads(done.stdout)
    return listed


def node_of(stack: ComposeStack, service: str) -> str:
    """The Ray node id of a worker container, by its address on the compose network."""
    networks = dockerutil.attrs(stack.container(service))["NetworkSettings"]["Networks"]
    address = next(iter(networks.values()))["IPAddress"]
    return next(node["node_id"] for node in ray_list(stack, "nodes") if node["node_ip"] == address)


def batch_tasks(stack: ComposeStack) -> list[dict[str, Any]]:
    return [task for task in ray_list(stack, "tasks") if task["func_or_class_name"] == BATCH_TASK]


def policy(client: PlasmaClient, run_id: str) -> bundle.PolicyBundle:
    parts = client.trainer.ExportPolicy(trainer_pb2.ExportPolicyRequest(run_id=run_id), timeout=120)
    return bundle.unpack(blobs.receive(parts, "policy bundle"))


def assert_same_policy(first: bundle.PolicyBundle, second: bundle.PolicyBundle) -> None:
    assert first.spec == second.spec
    assert first.base_state.keys() == second.base_state.keys()
    assert all(torch.equal(first.base_state[name], second.base_state[name]) for name in first.base_state)
    assert first.adapter_files == second.adapter_files
    assert (first.parity_observations == second.parity_observations).all()


def test_training_on_the_ray_cluster_survives_a_killed_worker(cluster: ComposeStack, tmp_path: Path) -> None:
    workers = {service: node_of(cluster, service) for service in WORKERS}
    assert len(set(workers.values())) == 2
    with PlasmaClient(cluster.endpoints) as client:
        dataset = client.collect("CartPole-v1", 500, seed=3)
        model = client.fit_world_model(dataset.dataset_id, simulator_pb2.WorldModelConfig(train_steps=800, seed=3))

        # An uninterrupted run: its batches ran on both workers.
        started = time.monotonic()
        reference = client.train(model.model_id, TRAIN)
        dockerutil.FIGURES["ray cluster: training, 2 workers"] = f"{time.monotonic() - started:.0f} s"
        assert reference.state == trainer_pb2.RUN_STATE_SUCCEEDED
        before = batch_tasks(cluster)
        assert {task["node_id"] for task in before} == set(workers.values())
        assert all(task["state"] == "FINISHED" and task["attempt_number"] == 0 for task in before)

        # The same run again; worker 1 is killed while it computes one of its batches.
        result: dict[str, trainer_pb2.Run] = {}
        again = threading.Thread(target=lambda: result.update(run=client.train(model.model_id, TRAIN)))
        started = time.monotonic()
        again.start()
        seen = {task["task_id"] for task in before}
        def running_on_worker_1() -> dict[str, Any] | None:
            return next((task for task in batch_tasks(cluster) if task["task_id"] not in seen
                         and task["state"] == "RUNNING" and task["node_id"] == workers["ray-worker-1"]), None)

        victim = eventually(running_on_worker_1, timeout_s=300, what="a batch running on ray-worker-1", interval_s=0.5)
        assert victim is not None  # eventually returns only what is truthy
        dockerutil.container(cluster.container("ray-worker-1")).kill()
        again.join(timeout=1200)
        dockerutil.FIGURES["ray cluster: training with a worker killed"] = f"{time.monotonic() - started:.0f} s"
        assert not again.is_alive() and result["run"].state == trainer_pb2.RUN_STATE_SUCCEEDED

        # Ray ran the killed batch again, on the surviving worker.
        attempts = [task for task in batch_tasks(cluster) if task["task_id"] == victim["task_id"]]
        assert any(task["attempt_number"] >= 1 and task["state"] == "FINISHED"
                   and task["node_id"] == workers["ray-worker-2"] for task in attempts), attempts
        assert_same_policy(policy(client, reference.run_id), policy(client, result["run"].run_id))
