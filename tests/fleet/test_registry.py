"""The registry's rules without a fleet: verdicts from figures, the merged latency histogram, and how the service
answers bad, unknown and premature requests (a real RegistryService and CompilerService on port 0)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from edge_runtime.metrics import BUCKETS_S
from plasma import channels
from plasma.registry.v1 import registry_pb2
from plasma.sdk.rollout import RolloutClient
from services.compiler import server as compiler_server
from services.compiler.config import Config as CompilerConfig
from services.registry import decide
from services.registry import server as registry_server
from services.registry.config import Config
from services.registry.decide import Action, CanaryEdge
from services.registry.figures import Tally
from tests.conftest import running
from tests.fleet import fleet

T = decide.resolve(registry_pb2.RolloutThresholds(min_requests=10, min_episodes=2, bake_seconds=5))
CANDIDATE = "pkt-000000000002"


def tally(requests: int = 0, failed: int = 0, returns: tuple[float, ...] = (), latency_bucket: int = 0) -> Tally:
    counts = [0] * (len(BUCKETS_S) + 1)
    counts[latency_bucket] = requests
    result = Tally()
    result.add(registry_pb2.ReportRequest(
        requests=requests, failed_requests=failed, episodes=len(returns), episode_return_sum=sum(returns),
        latency=registry_pb2.LatencyHistogram(upper_bounds_seconds=BUCKETS_S, counts=counts)))
    return result


def serving(silent: float = 0.0, error: registry_pb2.InstallError | None = None) -> list[CanaryEdge]:
    return [CanaryEdge("edge-a", CANDIDATE, silent, error)]


STABLE = tally(1000, 0, (200.0,) * 10)


def test_a_canary_within_thresholds_is_promoted_after_the_bake_time() -> None:
    healthy = tally(50, 0, (190.0, 200.0))
    assert decide.judge(CANDIDATE, serving(), healthy, STABLE, T, elapsed_seconds=1).action is Action.WAIT
    verdict = decide.judge(CANDIDATE, serving(), healthy, STABLE, T, elapsed_seconds=6)
    assert verdict.action is Action.PROMOTE and "mean return 195.00" in verdict.reason


@pytest.mark.parametrize(("candidate", "edges", "says"), [
    (tally(50, 0, (9.0, 8.0)), serving(), "mean return 8.50"),
    (tally(50, 5, (200.0, 200.0)), serving(), "error rate 0.1000"),
    (tally(50, 0, (200.0, 200.0), latency_bucket=9), serving(), "p99 latency"),
    (tally(), serving(silent=61), "not heard from for 61 s"),
    (tally(), serving(error=registry_pb2.InstallError(packet_id=CANDIDATE, reason="self-test-failed",
                                                       message="agreement 0.5")), "self-test-failed"),
])
def test_a_regression_rolls_back_with_its_reason(candidate: Tally, edges: list[CanaryEdge], says: str) -> None:
    verdict = decide.judge(CANDIDATE, edges, candidate, STABLE, T, elapsed_seconds=1)
    assert verdict.action is Action.ROLL_BACK and says in verdict.reason


def test_missing_evidence_waits_then_times_out() -> None:
    few = tally(5, 0, (200.0,))
    waiting = decide.judge(CANDIDATE, serving(), few, STABLE, T, elapsed_seconds=10)
    assert waiting.action is Action.WAIT and "5/10 requests" in waiting.reason and "1/2 episodes" in waiting.reason
    timed_out = decide.judge(CANDIDATE, serving(), few, STABLE, T, elapsed_seconds=T.timeout_seconds)
    assert timed_out.action is Action.ROLL_BACK and "no verdict" in timed_out.reason
    # Returns are compared only where the devices report them.
    no_returns = decide.judge(CANDIDATE, serving(), tally(50), tally(1000), T, elapsed_seconds=10)
    assert no_returns.action is Action.PROMOTE and "return" not in no_returns.reason


def test_thresholds_take_defaults_and_refuse_nonsense() -> None:
    assert decide.resolve(registry_pb2.RolloutThresholds()) == decide.DEFAULTS
    for bad in (registry_pb2.RolloutThresholds(bake_seconds=-1), registry_pb2.RolloutThresholds(max_return_drop=2),
                registry_pb2.RolloutThresholds(max_latency_p99_ratio=0.5)):
        with pytest.raises(decide.InvalidArgument):
            decide.resolve(bad)


def test_latency_quantiles_come_from_the_merged_histogram() -> None:
    merged = tally(100, latency_bucket=1)  # all in (25 µs, 50 µs]
    merged.add(registry_pb2.ReportRequest(latency=registry_pb2.LatencyHistogram(
        upper_bounds_seconds=BUCKETS_S, counts=[0] * 5 + [100] + [0] * (len(BUCKETS_S) - 5))))  # (0.5, 1] ms
    assert 0.025 < merged.latency_ms(0.5) <= 0.05
    assert 0.5 < merged.latency_ms(0.99) <= 1.0


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RolloutClient, grpc.Channel]]:
    compiler_root = tmp_path_factory.mktemp("compiler")
    fleet.compiler_store(compiler_root, [fleet.balancing_packet(0, 1)])
    with running(lambda: compiler_server.create_server(CompilerConfig(address="127.0.0.1:0",
                                                                      store_dir=compiler_root)),
                 compiler_server.SERVICE_NAME) as compiler:
        config = Config(address="127.0.0.1:0", store_dir=Path(tmp_path_factory.mktemp("registry")),
                        compiler_address=compiler)
        built = registry_server.build(config)
        built.start()
        channel = channels.channel(f"127.0.0.1:{built.port}")
        try:
            yield RolloutClient(channel), channel
        finally:
            channel.close()
            built.stop(grace_seconds=1)


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code(), caught.value.details() or ""


def test_the_service_answers_bad_unknown_and_premature_requests(
    registry: tuple[RolloutClient, grpc.Channel]
) -> None:
    client, channel = registry
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=registry_server.SERVICE_NAME), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING

    code, message = code_of(lambda: client.publish("stable", "pkt-00000000ffff"))
    assert code == grpc.StatusCode.NOT_FOUND and "compiler has no packet" in message
    code, message = code_of(lambda: client.publish("../etc", "pkt-000000000001"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "channel" in message
    code, message = code_of(lambda: client.start("nowhere", "pkt-000000000001"))
    assert code == grpc.StatusCode.NOT_FOUND and "Publish creates it" in message

    published = client.publish("stable", "pkt-000000000001", reason="first")
    assert published.stable.version == 1 and published.stable.name == "cartpole-fleet"
    code, message = code_of(lambda: client.publish("stable", "pkt-000000000001"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not newer" in message
    code, message = code_of(lambda: client.start("stable", "pkt-000000000001", canary_fraction=2))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "canary_fraction" in message
    code, message = code_of(lambda: client.start(
        "stable", "pkt-000000000001", thresholds=registry_pb2.RolloutThresholds(min_requests=0, bake_seconds=-3)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "bake_seconds" in message
    code, message = code_of(lambda: client.registry.Report(
        registry_pb2.ReportRequest(channel="stable", edge_id="edge-a", requests=3), timeout=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "packet_id is required" in message
    code, message = code_of(lambda: client.status("ro-000000000000"))
    assert code == grpc.StatusCode.NOT_FOUND

    # The watch stream answers at once with the stable packet and makes the edge a member.
    watch = client.registry.WatchChannel(registry_pb2.WatchChannelRequest(channel="stable", edge_id="edge-a"),
                                         timeout=10)
    assert next(watch).packet.packet_id == "pkt-000000000001"
    assert [e.edge_id for e in client.channel("stable").edges if e.watching] == ["edge-a"]
    watch.cancel()
    assert [d.reason for d in client.decisions("stable")] == [
        "published pkt-000000000001 (cartpole-fleet v1) to every edge: first"]
