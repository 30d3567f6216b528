"""A fleet for real: the registry and three edge runtimes as processes, CartPole episodes through every edge.

A good packet reaches every edge through a canary; a packet that fails CartPole stops at its canary and is rolled
back, the fleet ending on the last good packet; every decision is listed with its reason (RPC and CLI); the
registry's state survives a restart, and the edges follow the restarted registry."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import grpc
import pytest

from plasma import channels
from plasma.cli import main as cli
from plasma.registry.v1 import registry_pb2
from plasma.sdk.rollout import RolloutClient
from services.compiler import server as compiler_server
from services.compiler.config import Config as CompilerConfig
from tests.conftest import running
from tests.fleet import fleet

EDGES = ("edge-a", "edge-b", "edge-c")
THRESHOLDS = registry_pb2.RolloutThresholds(
    min_requests=50, min_episodes=3, bake_seconds=3, timeout_seconds=240, silence_seconds=30,
    max_return_drop=0.5,
    # Latency on a shared 2-core machine moves by multiples from one second to the next: not what this test is about.
    max_latency_p99_ratio=1000, latency_slack_ms=1000)
A = registry_pb2.DecisionAction


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:g} s: {what}")
        time.sleep(0.25)


@pytest.fixture(scope="module")
def packets() -> dict[str, bytes]:
    return {"v1": fleet.balancing_packet(0, 1), "v2": fleet.balancing_packet(1, 2), "bad": fleet.failing_packet(3)}


@pytest.fixture(scope="module")
def compiler(packets: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("compiler")
    fleet.compiler_store(root, list(packets.values()))
    config = CompilerConfig(address="127.0.0.1:0", store_dir=root)
    with running(lambda: compiler_server.create_server(config), compiler_server.SERVICE_NAME) as address:
        yield address


def test_canary_promotes_a_good_packet_rolls_back_a_failing_one_and_survives_a_restart(
    compiler: str, packets: dict[str, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = {key: f"pkt-{version:012x}" for key, version in (("v1", 1), ("v2", 2), ("bad", 3))}
    registry_address = f"127.0.0.1:{fleet.free_port()}"
    client_channel = channels.channel(registry_address)
    client = RolloutClient(client_channel)
    with fleet.registry_process(registry_address, tmp_path / "registry", compiler) as registry, ExitStack() as stack:
        addresses = {edge: _address(stack.enter_context(fleet.edge_process(edge, tmp_path / edge,
                                                                           registry_address)))
                     for edge in EDGES}

        # v1 to every edge at once; the edges wait for the channel to exist.
        client.publish(fleet.CHANNEL, ids["v1"], reason="first release")
        eventually(lambda: {fleet.serving(x) for x in addresses.values()} == {ids["v1"]}, "v1 on every edge")
        eventually(lambda: _watching(client) == set(EDGES), "every edge watches the channel")

        with fleet.Devices(addresses, client) as devices:
            # A good packet: canary, then every edge.
            good = client.start(fleet.CHANNEL, ids["v2"], canary_edges=1, thresholds=THRESHOLDS)
            assert good.state == registry_pb2.ROLLOUT_STATE_CANARY and len(good.canary_edge_ids) == 1
            good = client.wait(good.rollout_id, timeout_s=240)
            assert good.state == registry_pb2.ROLLOUT_STATE_PROMOTED, good.reason
            assert "within thresholds" in good.reason and "mean return" in good.reason
            eventually(lambda: {fleet.serving(x) for x in addresses.values()} == {ids["v2"]},
                       "v2 on every edge")

            # A packet that fails CartPole: its canary's returns collapse, it is rolled back.
            bad = client.start(fleet.CHANNEL, ids["bad"], canary_edges=1, thresholds=THRESHOLDS)
            (canary,) = bad.canary_edge_ids
            bad = client.wait(bad.rollout_id, timeout_s=240)
            assert bad.state == registry_pb2.ROLLOUT_STATE_ROLLED_BACK, bad.reason
            assert "regressed" in bad.reason and "mean return" in bad.reason
            assert bad.candidate_figures.mean_return < 0.5 * bad.baseline_figures.mean_return
            eventually(lambda: {fleet.serving(x) for x in addresses.values()} == {ids["v2"]},
                       "the fleet back on v2")
        assert not devices.errors, devices.errors
        assert ids["bad"] in devices.seen[canary]
        for edge in set(EDGES) - {canary}:
            assert ids["bad"] not in devices.seen[edge], f"{edge} is no canary but served the failing packet"
        assert min(devices.returns[(canary, ids["bad"])]) < 50 <= min(devices.returns[(canary, ids["v2"])])

        decisions = client.decisions(fleet.CHANNEL)
        assert [d.action for d in decisions] == [A.DECISION_ACTION_PUBLISHED, A.DECISION_ACTION_CANARY_STARTED,
                                                 A.DECISION_ACTION_PROMOTED, A.DECISION_ACTION_CANARY_STARTED,
                                                 A.DECISION_ACTION_ROLLED_BACK]
        assert all(d.reason for d in decisions)
        assert decisions[-1].rollout_id == bad.rollout_id and "mean return" in decisions[-1].reason

        # The CLI lists the same decisions and shows the rollout.
        assert cli(["rollout", "decisions", "--registry", registry_address, "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)["decisions"]
        assert [d["reason"] for d in listed] == [d.reason for d in decisions]
        assert cli(["rollout", "status", bad.rollout_id, "--registry", registry_address]) == 0
        shown = capsys.readouterr().out
        assert "rolled-back" in shown and "mean return" in shown

        # A restart keeps channels, rollouts and decisions; the edges follow the new process.
        registry.process.terminate()
        assert registry.process.wait(timeout=30) == 0
        with fleet.registry_process(registry_address, tmp_path / "registry", compiler):
            channel = client.channel(fleet.CHANNEL)
            assert channel.stable.packet_id == ids["v2"] and not channel.active_rollout_id
            assert [r.packet_id for r in channel.releases] == [ids["v1"], ids["v2"]]
            assert client.decisions(fleet.CHANNEL) == decisions
            assert client.status(bad.rollout_id).state == registry_pb2.ROLLOUT_STATE_ROLLED_BACK
            eventually(lambda: _watching(client) == set(EDGES), "every edge watches the restarted registry")
            # The failing packet's version is burned: the registry refuses it as the edges would.
            with pytest.raises(grpc.RpcError) as refused:
                client.publish(fleet.CHANNEL, ids["bad"])
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "not newer" in (refused.value.details() or "")
            assert {fleet.serving(x) for x in addresses.values()} == {ids["v2"]}
    client_channel.close()


def _address(edge: fleet.EdgeProcess) -> str:
    line = next(line for line in edge.output if "edge serving port=" in line)
    return f"127.0.0.1:{line.split('edge serving port=')[1].split()[0]}"


def _watching(client: RolloutClient) -> set[str]:
    try:
        return {e.edge_id for e in client.channel(fleet.CHANNEL).edges if e.watching}
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:  # no publish yet: the channel does not exist
            return set()
        raise
