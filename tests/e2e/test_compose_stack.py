"""The compose stack for real: `deploy/compose.sh up-wait` (docker compose v2 or docker-compose v1), the
`plasma run` workflow through the published ports, a correct action from the edge container, stores that
survive recreated containers, graceful stops, and `down -v` whatever happened.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from plasma import channels
from plasma.compiler.v1 import compiler_pb2
from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.sdk.evaluate import random_baseline
from plasma.sdk.workflow import EVAL_SEED_OFFSET
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2
from tests.e2e import dockerutil
from tests.e2e.dockerutil import compose, run
from tests.support.edge import packet_action

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

SERVICES = ("simulator", "trainer", "compiler", "edge")
EPISODES = 10
SEED = 3
OBSERVATION = [0.03, -0.2, 0.05, 0.4]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    endpoints: Endpoints
    metrics_port: int

    def container(self, service: str) -> str:
        return compose(self.env, "ps", "-q", service).stdout.strip()

    def recreate(self, service: str) -> None:
        """A new container for the service on the same named volume, then wait for the whole stack."""
        compose(self.env, "up", "--detach", "--no-deps", "--force-recreate", service)
        compose(self.env, "up-wait", "300")


@pytest.fixture
def stack(images: str) -> Iterator[Stack]:
    project = f"plasma-e2e-{uuid.uuid4().hex[:8]}"
    ports = {service: free_port() for service in SERVICES}
    metrics_port = free_port()
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "PLASMA_TAG": images,
           "PLASMA_EDGE_METRICS_PORT": str(metrics_port),
           **{f"PLASMA_{service.upper()}_PORT": str(port) for service, port in ports.items()}}
    endpoints = Endpoints(**{service: f"127.0.0.1:{port}" for service, port in ports.items()})
    try:
        dockerutil.FIGURES["compose"] = compose(env, "variant").stdout.strip()
        started = time.monotonic()
        compose(env, "up-wait", "600")
        dockerutil.FIGURES["compose up to all four healthy"] = f"{time.monotonic() - started:.0f} s"
        yield Stack(project, env, endpoints, metrics_port)
    except BaseException:
        logs = compose(env, "logs", "--tail", "40", check=False)
        print(logs.stdout[-12000:], logs.stderr[-2000:])
        raise
    finally:
        compose(env, "down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
        label = f"label=com.docker.compose.project={project}"
        left = {kind: run(["docker", kind, "ls", "-q", "--filter", label]).stdout.split()
                for kind in ("volume", "network")}
        left["container"] = run(["docker", "ps", "-a", "-q", "--filter", label]).stdout.split()
        assert not any(left.values()), f"left behind by `down -v`: {left}"


def test_compose_stack_runs_the_workflow_and_keeps_its_stores(stack: Stack, tmp_path: Path) -> None:
    ep = stack.endpoints
    summary_file = tmp_path / "summary.json"
    workflow = run([sys.executable, "-m", "plasma.cli", "run", "--simulator", ep.simulator, "--trainer", ep.trainer,
                    "--compiler", ep.compiler, "--edge", ep.edge, "--env", "CartPole-v1", "--recipe", "quick-check",
                    "--seed", str(SEED), "--episodes", str(EPISODES), "--json", str(summary_file)],
                   timeout=2400, check=False)
    assert workflow.returncode == 0, f"plasma run failed:\n{workflow.stdout[-4000:]}\n{workflow.stderr[-8000:]}"
    summary = json.loads(summary_file.read_text())
    dockerutil.FIGURES["compose workflow (plasma run --recipe quick-check)"] = (
        f"mean return {summary['mean_return']:.1f} over {EPISODES} episodes, stages "
        + ", ".join(f"{k} {v:.0f}s" for k, v in summary["stage_seconds"].items()))

    random = random_baseline("CartPole-v1", EPISODES, SEED + EVAL_SEED_OFFSET)
    assert summary["real_steps_used"] <= 500
    assert summary["mean_return"] >= max(100.0, 3 * random.mean_return), (
        f"packet scored {summary['mean_return']:.1f}, random {random.mean_return:.1f}")

    deadline = channels.UNARY_DEADLINE_S
    with PlasmaClient(ep) as client:
        # The edge container serves the new packet, and answers a known observation as the packet's graph does.
        status = client.edge_status()
        assert status.serving and status.packet.packet_id == summary["packet_id"]
        data = client.download_packet(summary["packet_id"])
        expected = packet_action(data, OBSERVATION)[0]
        assert client.act(np.array(OBSERVATION, np.float32)).tolist() == expected

        datasets = client.simulator.ListDatasets(simulator_pb2.ListDatasetsRequest(), timeout=deadline).datasets
        models = client.simulator.ListWorldModels(simulator_pb2.ListWorldModelsRequest(), timeout=deadline).models
        assert len(datasets) == 1 and len(models) == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10) as metrics:
            assert metrics.status == 200 and metrics.read()
        runs = client.trainer.ListRuns(trainer_pb2.ListRunsRequest(), timeout=deadline).runs
        packets = client.compiler.ListPackets(compiler_pb2.ListPacketsRequest(), timeout=deadline).packets
        assert [r.state for r in runs] == [trainer_pb2.RUN_STATE_SUCCEEDED]
        assert [p.packet_id for p in packets] == [summary["packet_id"]]

    # New simulator and edge containers on the same volumes: datasets, models and the packet are still there,
    # and the new edge still trusts the compiler's key (kept in its volume by the one-shot `keys` service).
    before = {service: stack.container(service) for service in ("simulator", "edge")}
    stack.recreate("simulator")
    stack.recreate("edge")
    assert all(stack.container(service) != old for service, old in before.items()), "containers were not recreated"
    with PlasmaClient(ep) as client:
        after_datasets = client.simulator.ListDatasets(simulator_pb2.ListDatasetsRequest(), timeout=deadline).datasets
        after_models = client.simulator.ListWorldModels(simulator_pb2.ListWorldModelsRequest(),
                                                        timeout=deadline).models
        assert [d.dataset_id for d in after_datasets] == [d.dataset_id for d in datasets]
        assert [m.model_id for m in after_models] == [m.model_id for m in models]
        status = client.edge_status()
        assert status.serving and status.packet.packet_id == summary["packet_id"]
        assert client.act(np.array(OBSERVATION, np.float32)).tolist() == expected

    # Every service drains on SIGTERM and exits 0 (not killed at the end of the grace period).
    containers = {service: stack.container(service) for service in SERVICES}
    compose(stack.env, "stop", "--timeout", "30")
    exits = {service: dockerutil.state(container)["ExitCode"] for service, container in containers.items()}
    assert exits == dict.fromkeys(SERVICES, 0), f"exit codes after SIGTERM: {exits}"
