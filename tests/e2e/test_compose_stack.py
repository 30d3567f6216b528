"""The compose stack for real (the session's `stack`; tests/e2e/conftest.py also checks that every service stops
gracefully at the end and that `down -v` leaves nothing): mutual TLS and roles on every port, the `plasma run`
workflow through the published ports with the operator's client certificate, a correct action from the edge
container, and stores that survive recreated containers.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest

from plasma import channels
from plasma.compiler.v1 import compiler_pb2
from plasma.sdk.client import PlasmaClient
from plasma.sdk.evaluate import random_baseline
from plasma.sdk.workflow import EVAL_SEED_OFFSET
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2
from tests.e2e import dockerutil
from tests.e2e.conftest import ComposeStack
from tests.e2e.dockerutil import run
from tests.support.edge import packet_action

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

EPISODES = 10
SEED = 3
OBSERVATION = [0.03, -0.2, 0.05, 0.4]


def refused_without_mutual_tls_or_the_role(stack: ComposeStack) -> None:
    """A plaintext client gets no connection; the reader's certificate may look but not deploy."""
    deadline = channels.UNARY_DEADLINE_S
    with PlasmaClient(replace(stack.endpoints, security=None)) as plaintext, pytest.raises(grpc.RpcError) as caught:
        plaintext.simulator.ListDatasets(simulator_pb2.ListDatasetsRequest(), timeout=deadline)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    with stack.client("reader") as reader:
        reader.edge_status()
        with pytest.raises(grpc.RpcError) as caught:
            reader.deploy(b"not a packet")
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == ("LoadPacket needs the operator role; caller 'reader' (client certificate) has "
                                      "the reader role")


def test_compose_stack_runs_the_workflow_and_keeps_its_stores(stack: ComposeStack, tmp_path: Path) -> None:
    refused_without_mutual_tls_or_the_role(stack)
    with stack.client() as client:
        before = _stored(client)
    summary_file = tmp_path / "summary.json"
    workflow = run([sys.executable, "-m", "plasma.cli", "run", *stack.cli_flags(), "--env", "CartPole-v1",
                    "--recipe", "quick-check",
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
    with stack.client() as client:
        # The edge container serves the new packet, and answers a known observation as the packet's graph does.
        status = client.edge_status()
        assert status.serving and status.packet.packet_id == summary["packet_id"]
        data = client.download_packet(summary["packet_id"])
        expected = packet_action(data, OBSERVATION)[0]
        assert client.act(np.array(OBSERVATION, np.float32)).tolist() == expected

        # Every service's /metrics answers; the RPCs the workflow made are counted where they were served.
        for service, port in stack.metrics_ports.items():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as metrics:
                text = metrics.read().decode()
            assert metrics.status == 200 and "grpc_server_handled_total" in text, service
        with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_ports['trainer']}/metrics", timeout=10) as got:
            assert 'grpc_method="Train"' in got.read().decode()
        # What the workflow added: one of each, and its run succeeded.
        made = {kind: ids - before[kind] for kind, ids in _stored(client).items()}
        assert {kind: len(ids) for kind, ids in made.items()} == dict.fromkeys(made, 1), made
        assert made["packet"] == {summary["packet_id"]}
        [run_id] = made["run"]
        assert client.trainer.GetRun(trainer_pb2.GetRunRequest(run_id=run_id),
                                     timeout=deadline).run.state == trainer_pb2.RUN_STATE_SUCCEEDED

    # New simulator and edge containers on the same volumes: datasets, models and the packet are still there,
    # and the new edge still trusts the compiler's key (kept in its volume by the one-shot `keys` service).
    old_containers = {service: stack.container(service) for service in ("simulator", "edge")}
    stack.recreate("simulator")
    stack.recreate("edge")
    assert all(stack.container(service) != old for service, old in old_containers.items()), (
        "containers were not recreated")
    with stack.client() as client:
        assert _stored(client) == {kind: before[kind] | made[kind] for kind in made}
        status = client.edge_status()
        assert status.serving and status.packet.packet_id == summary["packet_id"]
        assert client.act(np.array(OBSERVATION, np.float32)).tolist() == expected


def _stored(client: PlasmaClient) -> dict[str, set[str]]:
    """The ids of every dataset, world model, run and packet in the stack's stores."""
    deadline = channels.UNARY_DEADLINE_S
    return {
        "dataset": {d.dataset_id for d in
                    client.simulator.ListDatasets(simulator_pb2.ListDatasetsRequest(), timeout=deadline).datasets},
        "world model": {m.model_id for m in client.simulator.ListWorldModels(simulator_pb2.ListWorldModelsRequest(),
                                                                             timeout=deadline).models},
        "run": {r.run_id for r in client.trainer.ListRuns(trainer_pb2.ListRunsRequest(), timeout=deadline).runs},
        "packet": {p.packet_id for p in
                   client.compiler.ListPackets(compiler_pb2.ListPacketsRequest(), timeout=deadline).packets},
    }
