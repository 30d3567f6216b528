"""The registry's state machine: channels, the edges that follow them, rollouts and their decisions.

One lock guards everything; a change bumps a revision and wakes the watch streams, which send an edge its new
assignment. Every change is saved (atomically) before the call that made it returns, except figures, which the
evaluator saves on its next tick: losing a few seconds of figures in a crash costs nothing but evidence.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

from plasma import log as plog
from plasma.registry.v1 import registry_pb2
from plasma.server.errors import FailedPrecondition, NotFound
from plasma.server.grpc_server import now_timestamp
from services.registry import decide
from services.registry.figures import Tally
from services.registry.store import RegistryStore

log = plog.get(__name__)

# How often a watch stream looks at whether its call is still active when nothing changes.
WATCH_POLL_SECONDS = 1.0
_CANARY = registry_pb2.ROLLOUT_STATE_CANARY


class Fleet:
    def __init__(self, store: RegistryStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._state = store.load()
        self._clock = clock
        self._changed = threading.Condition()
        self._revision = 0
        self._dirty = False
        self._closing = False
        self._watchers: Counter[tuple[str, str]] = Counter()
        # When each edge was last heard from, on this process' clock: a restarted registry gives every edge a
        # fresh start instead of judging canaries silent for the time it was down.
        self._heard = {(name, e.edge_id): clock() for name, c in self._state.channels.items() for e in c.edges}

    # Reads

    def channel(self, name: str) -> registry_pb2.Channel:
        with self._changed:
            return self._view(self._channel(name))

    def channels(self) -> list[registry_pb2.Channel]:
        with self._changed:
            return [self._view(c) for _, c in sorted(self._state.channels.items())]

    def rollout(self, rollout_id: str) -> registry_pb2.Rollout:
        with self._changed:
            rollout = self._state.rollouts.get(rollout_id)
            if rollout is None:
                raise NotFound(f"rollout {rollout_id!r} does not exist; GetChannel names a channel's active rollout "
                               "and ListDecisions every rollout")
            return self._with_figures(rollout)

    def decisions(self, channel: str = "", rollout_id: str = "") -> list[registry_pb2.Decision]:
        with self._changed:
            return [d for d in self._state.decisions
                    if (not channel or d.channel == channel) and (not rollout_id or d.rollout_id == rollout_id)]

    def assignment(self, channel_name: str, edge_id: str) -> registry_pb2.WatchChannelResponse:
        with self._changed:
            return self._assignment(self._channel(channel_name), edge_id)

    # Changes

    def publish(self, channel_name: str, ref: registry_pb2.PacketRef, reason: str) -> registry_pb2.Channel:
        with self._changed:
            channel = self._state.channels.get(channel_name)
            if channel is None:
                channel = registry_pb2.Channel(name=channel_name)
            if channel.active_rollout_id:
                raise FailedPrecondition(f"channel {channel_name!r} has rollout {channel.active_rollout_id} in its "
                                         "canary stage: wait for its verdict or abort it first")
            self._check_newer(channel_name, ref)
            channel.stable.CopyFrom(ref)
            channel.releases.append(ref)
            channel.update_time.CopyFrom(now_timestamp())
            self._state.channels[channel_name] = channel
            self._decide(channel_name, "", registry_pb2.DECISION_ACTION_PUBLISHED, ref.packet_id,
                         f"published {_describe(ref)} to every edge" + (f": {reason}" if reason else ""))
            self._commit()
            return self._view(channel)

    def start_rollout(self, channel_name: str, ref: registry_pb2.PacketRef, fraction: float, count: int,
                      thresholds: registry_pb2.RolloutThresholds) -> registry_pb2.Rollout:
        with self._changed:
            channel = self._channel(channel_name)
            if channel.active_rollout_id:
                raise FailedPrecondition(f"channel {channel_name!r} already has rollout {channel.active_rollout_id} "
                                         "in its canary stage: one rollout per channel at a time")
            if not channel.stable.packet_id:
                raise FailedPrecondition(f"channel {channel_name!r} has no stable packet to compare a canary with: "
                                         "publish one first")
            self._check_newer(channel_name, ref)
            live = sorted(e.edge_id for e in channel.edges if self._watchers[(channel_name, e.edge_id)])
            if not live:
                raise FailedPrecondition(f"no edge watches channel {channel_name!r} now: a canary needs edges "
                                         "(publish serves a packet without one)")
            wanted = count or max(1, math.ceil(fraction * len(live)))
            if wanted > len(live):
                raise FailedPrecondition(f"canary_edges={count} but only {len(live)} edges watch channel "
                                         f"{channel_name!r} now")
            rollout_id = f"ro-{uuid.uuid4().hex[:12]}"
            # A stable, rollout-specific order: a different canary each time, the same one after a restart.
            canaries = sorted(live, key=lambda e: hashlib.sha256(f"{rollout_id}/{e}".encode()).hexdigest())[:wanted]
            rollout = registry_pb2.Rollout(
                rollout_id=rollout_id, channel=channel_name, candidate=ref, baseline=channel.stable,
                state=_CANARY, canary_edge_ids=sorted(canaries), thresholds=thresholds,
                start_time=now_timestamp(), reason="waiting for the canaries' first figures")
            self._state.rollouts[rollout_id] = rollout
            channel.active_rollout_id = rollout_id
            channel.update_time.CopyFrom(now_timestamp())
            self._decide(channel_name, rollout_id, registry_pb2.DECISION_ACTION_CANARY_STARTED, ref.packet_id,
                         f"canary of {_describe(ref)} on {', '.join(rollout.canary_edge_ids)} ({wanted} of "
                         f"{len(live)} edges watching); stable stays {_describe(channel.stable)}")
            self._commit()
            return self._with_figures(rollout)

    def abort(self, rollout_id: str, reason: str) -> registry_pb2.Rollout:
        with self._changed:
            rollout = self._state.rollouts.get(rollout_id)
            if rollout is None:
                raise NotFound(f"rollout {rollout_id!r} does not exist")
            if rollout.state != _CANARY:
                raise FailedPrecondition(f"rollout {rollout_id} already ended "
                                         f"{registry_pb2.RolloutState.Name(rollout.state)}: {rollout.reason}")
            self._end(rollout, decide.Verdict(decide.Action.ROLL_BACK,
                                              "aborted by an operator" + (f": {reason}" if reason else "")))
            self._commit()
            return self._with_figures(rollout)

    def report(self, request: registry_pb2.ReportRequest) -> None:
        with self._changed:
            channel = self._channel(request.channel)
            edge = self._edge(channel, request.edge_id)
            self._heard[(request.channel, request.edge_id)] = self._clock()
            edge.last_seen_time.CopyFrom(now_timestamp())
            if request.serving_packet_id:
                edge.serving_packet_id = request.serving_packet_id
            if request.HasField("install_error"):
                edge.install_error.CopyFrom(request.install_error)
            elif request.serving_packet_id:
                edge.ClearField("install_error")
            if request.packet_id:
                key = (request.channel, request.packet_id)
                self._state.tallies.setdefault(key, Tally()).add(request)
            self._dirty = True

    def evaluate(self) -> None:
        """Judges every rollout in its canary stage and acts on the verdict; saves what changed."""
        with self._changed:
            ended = False
            for rollout in [r for r in self._state.rollouts.values() if r.state == _CANARY]:
                verdict = self._judge(rollout)
                if verdict.action is decide.Action.WAIT:
                    if verdict.reason != rollout.reason:
                        rollout.reason = verdict.reason
                        self._dirty = True
                    continue
                self._end(rollout, verdict)
                ended = True
            if ended:
                self._commit()
            elif self._dirty:
                self._save()

    # Watching

    def watch(self, channel_name: str, edge_id: str,
              active: Callable[[], bool]) -> Iterator[registry_pb2.WatchChannelResponse]:
        """The edge's assignment now, then each time it changes, while `active()` and the registry is open."""
        key = (channel_name, edge_id)
        with self._changed:
            self._edge(self._channel(channel_name), edge_id)
            self._watchers[key] += 1
            self._heard[key] = self._clock()
            self._dirty = True
        sent = None
        try:
            while True:
                with self._changed:
                    if self._closing or not active():
                        return
                    current = self._assignment(self._channel(channel_name), edge_id)
                    if current != sent:
                        sent = current
                    else:
                        self._wait_for_change(self._revision)
                        continue
                yield current  # outside the lock: a slow client must not hold up the registry
        finally:
            with self._changed:
                self._watchers[key] -= 1
                if not self._watchers[key]:
                    del self._watchers[key]

    def _wait_for_change(self, revision: int) -> None:
        self._changed.wait_for(lambda: self._revision != revision or self._closing, timeout=WATCH_POLL_SECONDS)

    def wake(self) -> None:
        """Lets watch streams notice a client that went away."""
        with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        """Ends every watch stream (the edges reconnect to the next registry process) and saves."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
            self._save()

    # Inside the lock

    def _channel(self, name: str) -> registry_pb2.Channel:
        channel = self._state.channels.get(name)
        if channel is None:
            known = ", ".join(sorted(self._state.channels)) or "none yet"
            raise NotFound(f"channel {name!r} does not exist (channels: {known}); Publish creates it")
        return channel

    def _edge(self, channel: registry_pb2.Channel, edge_id: str) -> registry_pb2.Edge:
        for edge in channel.edges:
            if edge.edge_id == edge_id:
                return edge
        edge = channel.edges.add(edge_id=edge_id, last_seen_time=now_timestamp())
        log.info("channel=%s edge=%s joined", channel.name, edge_id)
        return edge

    def _assignment(self, channel: registry_pb2.Channel, edge_id: str) -> registry_pb2.WatchChannelResponse:
        rollout = self._state.rollouts.get(channel.active_rollout_id)
        if rollout is not None and edge_id in rollout.canary_edge_ids:
            return registry_pb2.WatchChannelResponse(packet=rollout.candidate, rollout_id=rollout.rollout_id,
                                                     reason=f"canary of rollout {rollout.rollout_id}")
        return registry_pb2.WatchChannelResponse(packet=channel.stable, reason=f"stable of channel {channel.name}")

    def _view(self, channel: registry_pb2.Channel) -> registry_pb2.Channel:
        view = registry_pb2.Channel()
        view.CopyFrom(channel)
        rollout = self._state.rollouts.get(channel.active_rollout_id)
        for edge in view.edges:
            edge.assigned_packet_id = self._assignment(channel, edge.edge_id).packet.packet_id
            edge.canary = rollout is not None and edge.edge_id in rollout.canary_edge_ids
            edge.watching = bool(self._watchers[(channel.name, edge.edge_id)])
        return view

    def _tally(self, channel: str, packet_id: str) -> Tally:
        return self._state.tallies.get((channel, packet_id), Tally())

    def _with_figures(self, rollout: registry_pb2.Rollout) -> registry_pb2.Rollout:
        view = registry_pb2.Rollout()
        view.CopyFrom(rollout)
        view.candidate_figures.CopyFrom(self._tally(rollout.channel, rollout.candidate.packet_id).to_proto())
        view.baseline_figures.CopyFrom(self._tally(rollout.channel, rollout.baseline.packet_id).to_proto())
        return view

    def _judge(self, rollout: registry_pb2.Rollout) -> decide.Verdict:
        channel = self._channel(rollout.channel)
        now = self._clock()
        canaries = [decide.CanaryEdge(e.edge_id, e.serving_packet_id,
                                      now - self._heard.get((channel.name, e.edge_id), now),
                                      e.install_error if e.HasField("install_error") else None)
                    for e in channel.edges if e.edge_id in rollout.canary_edge_ids]
        elapsed = now_timestamp().ToMilliseconds() / 1000 - rollout.start_time.ToMilliseconds() / 1000
        return decide.judge(rollout.candidate.packet_id, canaries,
                            self._tally(rollout.channel, rollout.candidate.packet_id),
                            self._tally(rollout.channel, rollout.baseline.packet_id), rollout.thresholds, elapsed)

    def _end(self, rollout: registry_pb2.Rollout, verdict: decide.Verdict) -> None:
        channel = self._channel(rollout.channel)
        promoted = verdict.action is decide.Action.PROMOTE
        rollout.state = registry_pb2.ROLLOUT_STATE_PROMOTED if promoted else registry_pb2.ROLLOUT_STATE_ROLLED_BACK
        rollout.reason = verdict.reason
        rollout.end_time.CopyFrom(now_timestamp())
        rollout.candidate_figures.CopyFrom(self._tally(rollout.channel, rollout.candidate.packet_id).to_proto())
        rollout.baseline_figures.CopyFrom(self._tally(rollout.channel, rollout.baseline.packet_id).to_proto())
        channel.active_rollout_id = ""
        channel.update_time.CopyFrom(now_timestamp())
        if promoted:
            channel.stable.CopyFrom(rollout.candidate)
            channel.releases.append(rollout.candidate)
            action = registry_pb2.DECISION_ACTION_PROMOTED
            what = f"promoted {_describe(rollout.candidate)} to every edge"
        else:
            action = registry_pb2.DECISION_ACTION_ROLLED_BACK
            what = f"rolled back {_describe(rollout.candidate)}; canaries return to {_describe(rollout.baseline)}"
        self._decide(rollout.channel, rollout.rollout_id, action, rollout.candidate.packet_id,
                     f"{what}: {verdict.reason}")

    def _decide(self, channel: str, rollout_id: str, action: registry_pb2.DecisionAction, packet_id: str,
                reason: str) -> None:
        decisions = self._state.decisions
        sequence = decisions[-1].sequence + 1 if decisions else 1
        decisions.append(registry_pb2.Decision(sequence=sequence, time=now_timestamp(), channel=channel,
                                               rollout_id=rollout_id, action=action, packet_id=packet_id,
                                               reason=reason))
        log.info("decision=%d channel=%s rollout=%s action=%s packet=%s reason=%s", sequence, channel,
                 rollout_id or "-", registry_pb2.DecisionAction.Name(action), packet_id, reason)

    def _check_newer(self, channel_name: str, ref: registry_pb2.PacketRef) -> None:
        """Edges refuse a version at or below the highest they installed of its name: so does the registry, counting
        candidates that were rolled back (canaries installed them)."""
        channel = self._state.channels.get(channel_name)
        used = list(channel.releases) if channel is not None else []
        used += [r.candidate for r in self._state.rollouts.values() if r.channel == channel_name]
        highest = max((r for r in used if r.name == ref.name), key=lambda r: r.version, default=None)
        if highest is not None and ref.version <= highest.version:
            raise FailedPrecondition(
                f"{_describe(ref)} is not newer than {_describe(highest)}, which channel {channel_name!r} already "
                "served: edges refuse it (anti-rollback); compile a new version")

    def _commit(self) -> None:
        self._revision += 1
        self._changed.notify_all()
        self._save()

    def _save(self) -> None:
        self._store.save(self._state)
        self._dirty = False


def _describe(ref: registry_pb2.PacketRef) -> str:
    return f"{ref.packet_id} ({ref.name} v{ref.version})"
