"""The SDK's long calls carry on when the service under them restarts: a Train followed to the same run, a
Control loop that loses no step, a simulation's paths each once and in order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest

from plasma import packet, tensors
from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.sdk.local import free_port, wait_serving
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2
from services.simulator import server as simulator_server
from services.simulator.config import Config as SimulatorConfig
from services.trainer.store import TrainerStore
from tests.conftest import running
from tests.support import policies
from tests.support.edge import packet_action, trusted_env
from tests.support.training import small_cartpole_model

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
# Enough rounds that the trainer, killed at the first progress event, is killed mid-run.
CONFIG = trainer_pb2.TrainConfig(
    seed=3, hidden_size=16, base_paths=4, adapter_rounds=4, paths_per_round=4, horizon=40, epochs=3, lora_rank=2,
    lora_alpha=4,
    planner=simulator_pb2.PlannerConfig(num_samples=16, num_elites=4, horizon=10, num_iterations=1),
)
OBSERVATION = [0.03, -0.2, 0.05, 0.4]


@contextmanager
def _service(module: str, address: str, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m <module>` serving on `address`, as in production; killed (if still alive) on exit."""
    process = subprocess.Popen([sys.executable, "-m", module], cwd=REPO_ROOT, env={**os.environ, **env},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(address, 120.0, process)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _simulator(store: Path, address: str) -> AbstractContextManager[str]:
    config = SimulatorConfig(address=address, store_dir=store)
    return running(lambda: simulator_server.create_server(config), simulator_server.SERVICE_NAME)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A simulator store holding a small CartPole world model, and the model's id; tests serve it themselves."""
    store = tmp_path_factory.mktemp("simulator")
    address = f"127.0.0.1:{free_port()}"
    with _simulator(store, address), grpc.insecure_channel(address) as channel:
        return store, small_cartpole_model(channel)


def test_simulation_paths_come_each_once_in_order_across_a_simulator_restart(world: tuple[Path, str]) -> None:
    store, model_id = world
    address = f"127.0.0.1:{free_port()}"
    request = simulator_pb2.SimulateRequest(model_id=model_id, num_paths=400, horizon=60, seed=5)
    request.policy.random.SetInParent()
    with PlasmaClient(Endpoints(simulator=address)) as client:
        with _simulator(store, address):
            simulation = client.start_simulation(request)
            paths = client.simulation_paths(simulation.simulation_id)
            received = [next(paths) for _ in range(10)]
        # Down (its streams cut), then back on the same store: the job resumes, the client resubscribes.
        with _simulator(store, address):
            received += list(paths)
            replayed = list(client.simulation_paths(simulation.simulation_id))
    assert [p.index for p in received] == list(range(request.num_paths))
    assert received == replayed, "the paths read across the restart differ from the job's log"


def test_train_follows_its_run_to_the_end_across_a_trainer_kill(world: tuple[Path, str], tmp_path: Path) -> None:
    store, model_id = world
    simulator_address = f"127.0.0.1:{free_port()}"
    address = f"127.0.0.1:{free_port()}"
    env = {"PLASMA_TRAINER_ADDRESS": address, "PLASMA_SIMULATOR_TARGET": simulator_address,
           "PLASMA_TRAINER_STORE": str(tmp_path / "trainer"), "PLASMA_TRAINER_TORCH_THREADS": "1"}
    events: list[trainer_pb2.TrainProgress] = []
    with ExitStack() as processes:
        processes.enter_context(_simulator(store, simulator_address))
        first = processes.enter_context(_service("services.trainer.server", address, env))
        client = processes.enter_context(PlasmaClient(Endpoints(simulator=simulator_address, trainer=address)))

        def on_progress(event: trainer_pb2.TrainProgress) -> None:
            events.append(event)
            if len(events) == 1:  # mid-run: the trainer dies, and comes back on its store
                first.send_signal(signal.SIGKILL)
                first.wait()
                processes.enter_context(_service("services.trainer.server", address, env))

        run = client.train(model_id, CONFIG, on_progress=on_progress)

    assert run.state == trainer_pb2.RUN_STATE_SUCCEEDED, run.error
    assert [r.run_id for r in TrainerStore(tmp_path / "trainer").list_runs()] == [run.run_id], "a second run"
    # Every event once, in order, across the kill: the run's whole history.
    assert events == list(run.history)
    rounds = [("base", 0)] + [("adapter", r) for r in range(1, CONFIG.adapter_rounds + 1)]
    assert [(e.phase, e.round) for e in events] == rounds


def test_a_control_loop_carries_on_across_an_edge_restart(tmp_path: Path) -> None:
    data, _ = policies.make_packet("discrete", seed=0)
    manifest, _ = packet.read(data)
    address = f"127.0.0.1:{free_port()}"
    env = {**trusted_env(), "PLASMA_EDGE_ADDRESS": address, "PLASMA_EDGE_STORE": str(tmp_path / "edge"),
           "PLASMA_EDGE_GRACE_SECONDS": "1"}
    expected = packet_action(data, OBSERVATION)[0]
    with _service("edge_runtime.server", address, env) as edge, \
            PlasmaClient(Endpoints(edge=address)) as client, client.control() as loop:
        client.deploy(data)
        before = [loop.act(np.array(OBSERVATION, np.float32)) for _ in range(3)]
        # The edge restarts under the open stream: SIGTERM (it drains, then cancels the stream), a new process.
        edge.send_signal(signal.SIGTERM)
        assert edge.wait(timeout=60) == 0
        with _service("edge_runtime.server", address, env):
            after = [loop.act(np.array(OBSERVATION, np.float32)) for _ in range(3)]
            assert loop.reconnects >= 1
    answers = before + after
    assert [a.sequence for a in answers] == list(range(1, 7)), "a step was lost or answered twice"
    assert {(a.packet_id, a.packet_version) for a in answers} == {(manifest.packet_id, manifest.version)}
    assert [tensors.from_proto(a.action, "action").tolist() for a in answers] == [expected] * 6
