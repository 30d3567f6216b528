"""`plasma rollout ...`: the packet registry's channels, staged rollouts and decisions (docs/fleet.md)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from plasma import channels
from plasma.cli import output, render
from plasma.cli.connection import add_tls_flags
from plasma.registry.v1 import registry_pb2
from plasma.sdk.client import Endpoints
from plasma.sdk.rollout import RolloutClient
from plasma.sdk.table import Table, key_values

# Threshold flags: (flag, RolloutThresholds field, help).
_THRESHOLDS = (
    ("--max-error-rate-increase", "max_error_rate_increase", "roll back above stable's error rate + this (0.01)"),
    ("--max-latency-p99-ratio", "max_latency_p99_ratio", "roll back above stable's p99 x this + the slack (2.0)"),
    ("--latency-slack-ms", "latency_slack_ms", "milliseconds added to the p99 limit (1.0)"),
    ("--max-return-drop", "max_return_drop", "roll back below stable's mean return by more than this share (0.1)"),
    ("--min-requests", "min_requests", "canary requests needed before a verdict (100)"),
    ("--min-episodes", "min_episodes", "canary episodes needed when devices report returns (5)"),
    ("--bake-seconds", "bake_seconds", "least time before a promotion (60)"),
    ("--timeout-seconds", "timeout_seconds", "roll back when the evidence is not in by then (900)"),
    ("--silence-seconds", "silence_seconds", "roll back when a canary is not heard from this long (60)"),
)


def _short(text: str) -> str:
    return text.removeprefix("ROLLOUT_STATE_").removeprefix("DECISION_ACTION_").lower().replace("_", "-")


def _client(args: argparse.Namespace) -> tuple[RolloutClient, Any]:
    tls = {variable: getattr(args, flag[2:].replace("-", "_"), None) for flag, variable in _TLS_VARIABLES}
    base = Endpoints.from_env({**os.environ, **{k: v for k, v in tls.items() if v}})
    channel = channels.channel(args.registry or base.registry, base.security)
    return RolloutClient(channel), channel


_TLS_VARIABLES = (("--tls-ca", "PLASMA_TLS_CA"), ("--tls-cert", "PLASMA_TLS_CERT"), ("--tls-key", "PLASMA_TLS_KEY"),
                  ("--tls-server-name", "PLASMA_TLS_SERVER_NAME"), ("--token-file", "PLASMA_TOKEN_FILE"))


def _call(args: argparse.Namespace, work: Any) -> Any:
    client, channel = _client(args)
    try:
        return work(client)
    finally:
        channel.close()


def figures_row(label: str, figures: registry_pb2.Figures) -> tuple[str, ...]:
    return (label, f"{figures.requests:,}", f"{figures.error_rate:.4f}", f"{figures.latency_p50_ms:.3f}",
            f"{figures.latency_p99_ms:.3f}", f"{figures.episodes:,}", f"{figures.mean_return:.2f}")


def rollout_tables(rollout: registry_pb2.Rollout) -> list[Table]:
    candidate, baseline = rollout.candidate, rollout.baseline
    about = key_values(f"rollout {rollout.rollout_id}", [
        ("channel", rollout.channel),
        ("state", _short(registry_pb2.RolloutState.Name(rollout.state))),
        ("candidate", f"{candidate.packet_id} ({candidate.name} v{candidate.version})"),
        ("baseline", f"{baseline.packet_id} ({baseline.name} v{baseline.version})"),
        ("canaries", ", ".join(rollout.canary_edge_ids)),
        ("reason", rollout.reason),
    ])
    figures = Table("figures", ("packet", "requests", "error rate", "p50 ms", "p99 ms", "episodes", "mean return"),
                    [figures_row("candidate", rollout.candidate_figures),
                     figures_row("baseline", rollout.baseline_figures)], numeric=frozenset(range(1, 7)))
    return [about, figures]


def channel_tables(channel: registry_pb2.Channel) -> list[Table]:
    stable = channel.stable
    about = key_values(f"channel {channel.name}", [
        ("stable", f"{stable.packet_id} ({stable.name} v{stable.version})"),
        ("releases", ", ".join(f"{r.name} v{r.version}" for r in channel.releases)),
        ("active rollout", channel.active_rollout_id or "none"),
    ])
    edges = Table("edges", ("edge", "serving", "assigned", "canary", "watching", "last seen", "refused"),
                  [(e.edge_id, e.serving_packet_id or "-", e.assigned_packet_id, "yes" if e.canary else "",
                    "yes" if e.watching else "no", e.last_seen_time.ToJsonString(),
                    f"{e.install_error.packet_id}: {e.install_error.reason}" if e.HasField("install_error") else "")
                   for e in channel.edges])
    return [about, edges]


def decisions_table(decisions: list[registry_pb2.Decision]) -> Table:
    return Table("decisions", ("#", "time", "channel", "rollout", "action", "packet", "reason"),
                 [(str(d.sequence), d.time.ToJsonString(), d.channel, d.rollout_id or "-",
                   _short(registry_pb2.DecisionAction.Name(d.action)), d.packet_id, d.reason) for d in decisions],
                 numeric=frozenset({0}))


def _publish(args: argparse.Namespace) -> int:
    channel = _call(args, lambda c: c.publish(args.channel, args.packet_id, args.reason))
    return output.show(args.json, render.document(channel), channel_tables(channel))


def _start(args: argparse.Namespace) -> int:
    thresholds = registry_pb2.RolloutThresholds(
        **{name: getattr(args, name) for _, name, _ in _THRESHOLDS if getattr(args, name) is not None})

    def work(client: RolloutClient) -> registry_pb2.Rollout:
        rollout = client.start(args.channel, args.packet_id, args.canary_fraction, args.canary_edges, thresholds)
        if not args.wait:
            return rollout
        try:
            return client.wait(rollout.rollout_id, args.wait)
        except TimeoutError:  # still in its canary stage: show where it stands
            return client.status(rollout.rollout_id)

    rollout = _call(args, work)
    return output.show(args.json, render.document(rollout), rollout_tables(rollout))


def _status(args: argparse.Namespace) -> int:
    rollout = _call(args, lambda c: c.status(args.rollout_id))
    return output.show(args.json, render.document(rollout), rollout_tables(rollout))


def _abort(args: argparse.Namespace) -> int:
    rollout = _call(args, lambda c: c.abort(args.rollout_id, args.reason))
    return output.show(args.json, render.document(rollout), rollout_tables(rollout))


def _channel(args: argparse.Namespace) -> int:
    channel = _call(args, lambda c: c.channel(args.name))
    return output.show(args.json, render.document(channel), channel_tables(channel))


def _decisions(args: argparse.Namespace) -> int:
    decisions = _call(args, lambda c: c.decisions(args.channel, args.rollout))
    document = render.document(registry_pb2.ListDecisionsResponse(decisions=decisions))
    return output.show(args.json, document, [decisions_table(decisions)])


def register(commands: Any) -> None:
    """Adds `rollout` and its actions to the CLI's subcommands."""
    rollout = commands.add_parser("rollout", help="packet registry: channels, staged rollouts, decisions")
    actions = rollout.add_subparsers(dest="action", required=True)

    def add(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
        sub.add_argument("--registry", help="registry host:port (default from PLASMA_REGISTRY_TARGET, "
                                            "else 127.0.0.1:50055)")
        add_tls_flags(sub)
        return sub

    publish = add("publish", _publish, "make a compiler's packet a channel's stable packet on every edge at once")
    publish.add_argument("channel")
    publish.add_argument("packet_id")
    publish.add_argument("--reason", default="", help="said in the decision log")
    start = add("start", _start, "roll a packet out to a canary share of a channel, then to all or back")
    start.add_argument("channel")
    start.add_argument("packet_id")
    start.add_argument("--canary-fraction", type=float, default=0.0, help="share of the channel's edges (0.1)")
    start.add_argument("--canary-edges", type=int, default=0, help="or this many edges")
    start.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                       help="wait up to this long for the verdict and show it (default: return at once)")
    for flag, name, text in _THRESHOLDS:
        start.add_argument(flag, dest=name, type=int if name.startswith("min_") else float,
                           help=f"{text}; default in parentheses")
    add("status", _status, "a rollout's state, canaries, figures and reason").add_argument("rollout_id")
    abort = add("abort", _abort, "end a rollout in its canary stage: the canaries go back to stable")
    abort.add_argument("rollout_id")
    abort.add_argument("--reason", default="", help="said in the decision log")
    add("channel", _channel, "a channel: its stable packet, releases and edges").add_argument("name")
    decisions = add("decisions", _decisions, "every decision with its reason, oldest first")
    decisions.add_argument("--channel", default="", help="only this channel's")
    decisions.add_argument("--rollout", default="", help="only this rollout's")
