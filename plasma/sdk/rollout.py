"""The packet registry from Python: channels, staged rollouts and their decisions, and the episode returns a device
reports for the packet that acted (docs/fleet.md). Every call carries a deadline."""

from __future__ import annotations

import time
from collections.abc import Sequence

import grpc

from plasma import channels
from plasma.registry.v1 import registry_pb2, registry_pb2_grpc

_CANARY = registry_pb2.ROLLOUT_STATE_CANARY


class RolloutClient:
    def __init__(self, channel: grpc.Channel, deadline_s: float = channels.UNARY_DEADLINE_S) -> None:
        self.registry = registry_pb2_grpc.RegistryServiceStub(channel)
        self._deadline_s = deadline_s

    def publish(self, channel: str, packet_id: str, reason: str = "") -> registry_pb2.Channel:
        """Makes a compiler's packet the channel's stable packet on every edge at once (no canary)."""
        request = registry_pb2.PublishRequest(channel=channel, packet_id=packet_id, reason=reason)
        return self.registry.Publish(request, timeout=self._deadline_s).channel

    def channel(self, name: str) -> registry_pb2.Channel:
        return self.registry.GetChannel(registry_pb2.GetChannelRequest(channel=name), timeout=self._deadline_s).channel

    def channels(self) -> list[registry_pb2.Channel]:
        return list(self.registry.ListChannels(registry_pb2.ListChannelsRequest(), timeout=self._deadline_s).channels)

    def start(self, channel: str, packet_id: str, canary_fraction: float = 0.0, canary_edges: int = 0,
              thresholds: registry_pb2.RolloutThresholds | None = None) -> registry_pb2.Rollout:
        """A staged rollout: the packet on a canary share (`canary_fraction`, default 0.1) or number
        (`canary_edges`) of the channel's edges, then on all of them or rolled back, by `thresholds` (a field left
        0 takes the registry's default)."""
        request = registry_pb2.StartRolloutRequest(channel=channel, packet_id=packet_id,
                                                   canary_fraction=canary_fraction, canary_edges=canary_edges,
                                                   thresholds=thresholds)
        return self.registry.StartRollout(request, timeout=self._deadline_s).rollout

    def status(self, rollout_id: str) -> registry_pb2.Rollout:
        return self.registry.GetRollout(registry_pb2.GetRolloutRequest(rollout_id=rollout_id),
                                        timeout=self._deadline_s).rollout

    def abort(self, rollout_id: str, reason: str = "") -> registry_pb2.Rollout:
        return self.registry.AbortRollout(registry_pb2.AbortRolloutRequest(rollout_id=rollout_id, reason=reason),
                                          timeout=self._deadline_s).rollout

    def decisions(self, channel: str = "", rollout_id: str = "") -> list[registry_pb2.Decision]:
        request = registry_pb2.ListDecisionsRequest(channel=channel, rollout_id=rollout_id)
        return list(self.registry.ListDecisions(request, timeout=self._deadline_s).decisions)

    def wait(self, rollout_id: str, timeout_s: float, poll_s: float = 1.0) -> registry_pb2.Rollout:
        """The rollout once it has left its canary stage; TimeoutError with its last reason if it has not by then."""
        deadline = time.monotonic() + timeout_s
        while True:
            rollout = self.status(rollout_id)
            if rollout.state != _CANARY:
                return rollout
            if time.monotonic() >= deadline:
                raise TimeoutError(f"rollout {rollout_id} still in its canary stage after {timeout_s:g} s: "
                                   f"{rollout.reason}")
            time.sleep(poll_s)

    def report_episodes(self, channel: str, edge_id: str, packet_id: str, returns: Sequence[float]) -> None:
        """Episodes a device completed with the edge `edge_id` acting, all with the packet `packet_id` (the one its
        Act or Control answers named): what lets a rollout compare returns."""
        request = registry_pb2.ReportRequest(channel=channel, edge_id=edge_id, packet_id=packet_id,
                                             episodes=len(returns), episode_return_sum=float(sum(returns)))
        self.registry.Report(request, timeout=self._deadline_s)
