"""Chaos on the compose stack, through the Docker Engine API: the simulator killed mid-Subscribe, the trainer
killed mid-Train, the simulator cut off its network during a run, the edge restarted under a running Control
loop. The work completes, the SDK's clients resume, nothing accepted is lost (every path of a simulation, every
event of a run, every step of a control loop, each once and in order), and the edge serves the same packet after
its restart.

A kill is `docker kill` (SIGKILL: no drain), then the same container started again on its volumes. The test
starts it because Docker does not apply the restart policy to a container it was asked to kill; after a crash
`restart: unless-stopped` would do the same.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np
import pytest
from docker.models.containers import Container
from docker.models.networks import Network

from plasma import channels, tensors
from plasma.edge.v1 import edge_pb2
from plasma.sdk import recipes
from plasma.sdk.client import PlasmaClient
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2
from tests.e2e import dockerutil
from tests.e2e.conftest import ComposeStack
from tests.support.edge import packet_action
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

RECIPE = recipes.workflow("quick-check")
SEED = 5
# Runs long enough to be interrupted after their first event, short on 2 cores (quick-check trains 16 base
# paths and 2 rounds of 8 at horizon 500).
TRAIN = trainer_pb2.TrainConfig(seed=SEED, base_paths=8, adapter_rounds=2, paths_per_round=4, epochs=10, horizon=100)
# Planner-driven paths in two batches of 64 (plasma.mbrl.rollout.BATCH_PATHS): the first batch is logged and read
# while the second is still being computed when the kill comes.
SIMULATION_PATHS = 128
SIMULATION_HORIZON = 50
OBSERVATIONS = np.array([[0.03, -0.2, 0.05, 0.4], [-0.1, 0.3, -0.02, -0.5], [0.0, 0.0, 0.0, 0.0]], np.float32)
# How long the simulator stays off its network (the fault's length): seconds, like a switch or a network plugin
# hiccup; the trainer's calls meanwhile fail or hang, and are retried.
PARTITION_S = 10.0
# Control steps answered before the edge restarts, and after it is healthy again, at a robot's 50 Hz.
CONTROL_STEPS = 20
CONTROL_PERIOD_S = 0.02
HEALTHY_TIMEOUT_S = 300.0
# The Python of every Plasma image.
SERVICE_PYTHON = "/opt/plasma/venv/bin/python"

T = TypeVar("T")


def test_the_stack_rides_out_kills_a_partition_and_an_edge_restart(stack: ComposeStack) -> None:
    started = time.monotonic()
    with stack.client() as client:
        model_id = _timed("collect and fit (quick-check world model)", lambda: _world_model(client))
        _timed("simulator killed mid-Subscribe", lambda: _simulator_killed_mid_subscribe(stack, client, model_id))
        run = _timed("trainer killed mid-Train", lambda: _trainer_killed_mid_train(stack, client, model_id))
        _timed("simulator cut off its network during a run",
               lambda: _simulator_cut_off_during_a_run(stack, client, model_id))
        _timed("edge restarted under a Control loop", lambda: _edge_restarted_under_control(stack, client, run))
    dockerutil.FIGURES["chaos test, all faults (after compose up)"] = f"{time.monotonic() - started:.0f} s"


def _world_model(client: PlasmaClient) -> str:
    dataset = client.collect(RECIPE.env_id, RECIPE.real_steps, seed=SEED)
    return str(client.fit_world_model(dataset.dataset_id, RECIPE.world_model).model_id)


def _simulator_killed_mid_subscribe(stack: ComposeStack, client: PlasmaClient, model_id: str) -> None:
    request = simulator_pb2.SimulateRequest(model_id=model_id, num_paths=SIMULATION_PATHS,
                                            horizon=SIMULATION_HORIZON, seed=SEED)
    request.policy.planner.SetInParent()  # the planner's defaults
    simulation_id = client.start_simulation(request).simulation_id
    paths = client.simulation_paths(simulation_id)
    received = [next(paths)]
    at_kill = _simulation(client, simulation_id)
    assert at_kill.state == simulator_pb2.SIMULATION_STATE_RUNNING, "the job ended before the kill"
    _kill_and_start(stack, "simulator")

    # The job resumed in the new container and the subscription where it broke: every path once, in order.
    received += list(paths)
    assert [p.index for p in received] == list(range(SIMULATION_PATHS))
    assert received == list(client.simulation_paths(simulation_id)), "paths read across the kill differ from the log"
    ended = _simulation(client, simulation_id)
    assert (ended.state, ended.paths_logged) == (simulator_pb2.SIMULATION_STATE_SUCCEEDED, SIMULATION_PATHS)


def _trainer_killed_mid_train(stack: ComposeStack, client: PlasmaClient, model_id: str) -> trainer_pb2.Run:
    events: list[trainer_pb2.TrainProgress] = []

    def on_progress(event: trainer_pb2.TrainProgress) -> None:
        events.append(event)
        if len(events) == 1:  # the base phase is checkpointed; the adapter rounds are still to come
            _kill_and_start(stack, "trainer")

    runs_before = _run_ids(client)
    run = client.train(model_id, TRAIN, on_progress=on_progress)
    # The same run, resumed from its checkpoint in the new container and followed there by the SDK.
    assert run.state == trainer_pb2.RUN_STATE_SUCCEEDED, run.error
    assert events == list(run.history), "a progress event was lost or repeated across the kill"
    assert [(e.phase, e.round) for e in events] == [("base", 0), ("adapter", 1), ("adapter", 2)]
    assert _run_ids(client) - runs_before == {run.run_id}, "a second run was started"
    return run


def _simulator_cut_off_during_a_run(stack: ComposeStack, client: PlasmaClient, model_id: str) -> None:
    simulator = dockerutil.container(stack.container("simulator"))
    trainer = dockerutil.container(stack.container("trainer"))
    events: list[trainer_pb2.TrainProgress] = []

    def on_progress(event: trainer_pb2.TrainProgress) -> None:
        events.append(event)
        if len(events) == 1:  # the run's next round needs the simulator, which is gone for a while
            with _off_its_network(simulator, "simulator"):
                assert not _reaches(trainer, "simulator", 50051), "the trainer still reaches the simulator"
                time.sleep(PARTITION_S)  # the partition's length, not a wait for anything

    config = trainer_pb2.TrainConfig()
    config.CopyFrom(TRAIN)
    config.seed = SEED + 1
    runs_before = _run_ids(client)
    run = client.train(model_id, config, on_progress=on_progress)
    assert run.state == trainer_pb2.RUN_STATE_SUCCEEDED, run.error
    assert events == list(run.history)
    assert _run_ids(client) - runs_before == {run.run_id}, "a second run was started"


def _edge_restarted_under_control(stack: ComposeStack, client: PlasmaClient, run: trainer_pb2.Run) -> None:
    packet = client.compile(run.run_id)
    data = client.download_packet(packet.packet_id)
    assert client.deploy(data).packet_id == packet.packet_id
    expected = [packet_action(data, observation.tolist())[0] for observation in OBSERVATIONS]

    loop = _ControlLoop(client)
    with loop.running():
        eventually(lambda: loop.reached(CONTROL_STEPS), 60, "control steps before the restart")
        edge = dockerutil.container(stack.container("edge"))
        edge.restart(timeout=30)  # SIGTERM: the edge drains, ends the open stream, exits; then a new start
        dockerutil.wait_healthy(edge.id or "", HEALTHY_TIMEOUT_S)
        restarted_at = len(loop.answers)
        eventually(lambda: loop.reached(restarted_at + CONTROL_STEPS), 120, "control steps after the restart")

    answers = loop.answers
    assert loop.reconnects >= 1, "the control loop never saw the edge go away"
    assert [a.sequence for a in answers] == list(range(1, len(answers) + 1)), "a step was lost or answered twice"
    assert {a.packet_id for a in answers} == {packet.packet_id}, "the edge serves another packet after its restart"
    actions = [tensors.from_proto(a.action, "action").tolist() for a in answers]
    assert actions == [expected[i % len(OBSERVATIONS)] for i in range(len(answers))]
    status = client.edge_status()
    assert status.serving and status.packet.packet_id == packet.packet_id


class _ControlLoop:
    """Steps through OBSERVATIONS over one SDK Control session at CONTROL_PERIOD_S, in a thread, until stopped."""

    def __init__(self, client: PlasmaClient) -> None:
        self._client = client
        self._stop = threading.Event()
        self.answers: list[edge_pb2.ControlResponse] = []
        self.reconnects = 0
        self.error: BaseException | None = None

    def reached(self, steps: int) -> bool:
        """True once `steps` steps were answered, or the loop failed (running() then raises its error)."""
        return len(self.answers) >= steps or self.error is not None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        thread = threading.Thread(target=self._run, name="control-loop", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join(channels.UNARY_DEADLINE_S)
        assert not thread.is_alive(), "the control loop did not stop"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            with self._client.control() as session:
                while not self._stop.wait(CONTROL_PERIOD_S):
                    self.answers.append(session.act(OBSERVATIONS[len(self.answers) % len(OBSERVATIONS)]))
                self.reconnects = session.reconnects
        except BaseException as exc:
            self.error = exc


def _kill_and_start(stack: ComposeStack, service: str) -> None:
    """`docker kill` (SIGKILL: no drain), and the same container started again on its volumes, healthy."""
    container = dockerutil.container(stack.container(service))
    started = time.monotonic()
    container.kill()
    container.wait()
    container.start()
    dockerutil.wait_healthy(container.id or "", HEALTHY_TIMEOUT_S)
    dockerutil.FIGURES[f"chaos: {service} killed, healthy again after"] = f"{time.monotonic() - started:.0f} s"


@contextlib.contextmanager
def _off_its_network(container: Container, service: str) -> Iterator[None]:
    """The container disconnected from its compose network, and connected again (under its service name) on the
    way out, whatever happened."""
    [name] = container.attrs["NetworkSettings"]["Networks"]
    network: Network = dockerutil.engine().networks.get(name)
    network.disconnect(container)
    try:
        yield
    finally:
        network.connect(container, aliases=[service])


def _reaches(container: Container, host: str, port: int) -> bool:
    """Whether a process in `container` resolves `host` and opens a TCP connection to it within a few seconds."""
    probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=3).close()"
    return container.exec_run([SERVICE_PYTHON, "-c", probe]).exit_code == 0


def _simulation(client: PlasmaClient, simulation_id: str) -> simulator_pb2.Simulation:
    return client.simulator.GetSimulation(simulator_pb2.GetSimulationRequest(simulation_id=simulation_id),
                                          timeout=channels.UNARY_DEADLINE_S).simulation


def _run_ids(client: PlasmaClient) -> set[str]:
    return {r.run_id for r in
            client.trainer.ListRuns(trainer_pb2.ListRunsRequest(), timeout=channels.UNARY_DEADLINE_S).runs}


def _timed(what: str, step: Callable[[], T]) -> T:
    started = time.monotonic()
    result = step()
    dockerutil.FIGURES[f"chaos: {what}"] = f"{time.monotonic() - started:.0f} s"
    return result
