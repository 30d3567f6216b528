"""The rollout verdict: from the canary's and the stable packet's figures, wait, promote or roll back.

Pure functions of what the registry knows at one moment, so every rule is tested without a fleet.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from plasma.registry.v1 import registry_pb2
from plasma.server.errors import InvalidArgument
from services.registry.figures import Tally

DEFAULTS = registry_pb2.RolloutThresholds(
    max_error_rate_increase=0.01, max_latency_p99_ratio=2.0, latency_slack_ms=1.0, max_return_drop=0.1,
    min_requests=100, min_episodes=5, bake_seconds=60.0, timeout_seconds=900.0, silence_seconds=60.0)


def resolve(given: registry_pb2.RolloutThresholds) -> registry_pb2.RolloutThresholds:
    """`given` with every field left 0 set to its default; INVALID_ARGUMENT for a negative or absurd value."""
    resolved = registry_pb2.RolloutThresholds()
    for field in DEFAULTS.DESCRIPTOR.fields:
        value = getattr(given, field.name)
        if value < 0:
            raise InvalidArgument(f"thresholds.{field.name}={value} must be >= 0 (0 for the default "
                                  f"{getattr(DEFAULTS, field.name)})")
        setattr(resolved, field.name, value or getattr(DEFAULTS, field.name))
    if resolved.max_latency_p99_ratio < 1:
        raise InvalidArgument(f"thresholds.max_latency_p99_ratio={resolved.max_latency_p99_ratio} must be >= 1: "
                              "below it the stable packet's own latency would count as a regression")
    if resolved.max_return_drop > 1:
        raise InvalidArgument(f"thresholds.max_return_drop={resolved.max_return_drop} is a share of the stable "
                              "return: at most 1")
    return resolved


class Action(enum.Enum):
    WAIT = "wait"
    PROMOTE = "promote"
    ROLL_BACK = "roll back"


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str


@dataclass(frozen=True)
class CanaryEdge:
    edge_id: str
    serving_packet_id: str
    # Seconds since the registry last heard from it.
    silent_seconds: float
    install_error: registry_pb2.InstallError | None


def judge(candidate_id: str, canaries: list[CanaryEdge], candidate: Tally, baseline: Tally,
          thresholds: registry_pb2.RolloutThresholds, elapsed_seconds: float) -> Verdict:
    """Rolls back on the first sign of harm (a refused install, a silent canary, a regressed figure once its
    evidence is in); promotes once every figure has its evidence and the bake time has passed; else waits."""
    t = thresholds
    for edge in canaries:
        error = edge.install_error
        if error is not None and error.packet_id == candidate_id:
            return Verdict(Action.ROLL_BACK, f"canary {edge.edge_id} refused {candidate_id}: {error.reason}: "
                                             f"{error.message}")
        if edge.silent_seconds > t.silence_seconds:
            return Verdict(Action.ROLL_BACK, f"canary {edge.edge_id} not heard from for {edge.silent_seconds:.0f} s "
                                             f"(silence_seconds {t.silence_seconds:g})")
    regressions: list[str] = []
    checks: list[str] = []
    missing: list[str] = []
    if candidate.requests >= t.min_requests:
        limit = baseline.error_rate + t.max_error_rate_increase
        line = (f"error rate {candidate.error_rate:.4f} (stable {baseline.error_rate:.4f}, at most {limit:.4f}, "
                f"{candidate.requests} requests)")
        (regressions if candidate.error_rate > limit else checks).append(line)
        if sum(baseline.counts) >= t.min_requests:
            p99, stable_p99 = candidate.latency_ms(0.99), baseline.latency_ms(0.99)
            limit = stable_p99 * t.max_latency_p99_ratio + t.latency_slack_ms
            line = f"p99 latency {p99:.3f} ms (stable {stable_p99:.3f} ms, at most {limit:.3f} ms)"
            (regressions if p99 > limit else checks).append(line)
    else:
        missing.append(f"{candidate.requests}/{t.min_requests} requests")
    if baseline.episodes >= t.min_episodes:  # the devices report returns: they must hold up too
        if candidate.episodes >= t.min_episodes:
            limit = baseline.mean_return - t.max_return_drop * abs(baseline.mean_return)
            line = (f"mean return {candidate.mean_return:.2f} over {candidate.episodes} episodes (stable "
                    f"{baseline.mean_return:.2f} over {baseline.episodes}, at least {limit:.2f})")
            (regressions if candidate.mean_return < limit else checks).append(line)
        else:
            missing.append(f"{candidate.episodes}/{t.min_episodes} episodes")
    if regressions:
        return Verdict(Action.ROLL_BACK, "regressed: " + "; ".join(regressions))
    not_serving = [e.edge_id for e in canaries if e.serving_packet_id != candidate_id]
    if not_serving:
        missing.append(f"canaries not serving it yet: {', '.join(not_serving)}")
    if missing:
        if elapsed_seconds >= t.timeout_seconds:
            return Verdict(Action.ROLL_BACK, f"no verdict after {elapsed_seconds:.0f} s (timeout_seconds "
                                             f"{t.timeout_seconds:g}): " + "; ".join(missing))
        return Verdict(Action.WAIT, "waiting for " + "; ".join(missing))
    if elapsed_seconds < t.bake_seconds:
        return Verdict(Action.WAIT, f"baking: {elapsed_seconds:.0f} of {t.bake_seconds:g} s; so far " +
                       "; ".join(checks))
    return Verdict(Action.PROMOTE, "within thresholds: " + "; ".join(checks))
