"""`plasma loop`: one iteration of the real-world feedback loop (plasma.sdk.feedback, docs/feedback-loop.md)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from plasma.cli import connection, output, progress
from plasma.sdk import recipes
from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.sdk.feedback import FIELD_SUFFIX, LoopConfig, LoopSummary, run_loop
from plasma.sdk.table import Table, key_values
from plasma.simulator.v1 import simulator_pb2


def summary_table(summary: LoopSummary) -> Table:
    where = (f"rollout {summary.rollout.rollout_id} on {summary.rollout.channel}: {summary.rollout.reason or 'started'}"
             if summary.rollout is not None else
             f"edge serves {summary.served.packet_id} v{summary.served.version}" if summary.served is not None else "")
    stages = ", ".join(f"{stage} {seconds:.0f}s" for stage, seconds in summary.stage_seconds.items())
    return key_values("feedback loop", [
        ("real steps recorded", f"{summary.real_steps:,} in {summary.episodes} episodes"),
        ("dataset", f"{summary.dataset.dataset_id} ({summary.dataset.name} v{summary.dataset.version}, "
                    f"{summary.dataset.num_transitions:,} transitions)"),
        ("world model", f"{summary.model.model_id} (fine-tuned from {summary.model.parent_model_id})"),
        ("run", f"{summary.run.run_id} (adapter on {summary.run.base_run_id})"),
        ("packet", f"{summary.packet.packet_id} ({summary.packet.name} v{summary.packet.version}, "
                   f"{summary.packet.size_bytes:,} bytes)"),
        ("served", where),
        ("wall time", stages),
    ], notes=(f"next loop: --from-sequence {summary.next_sequence} --model {summary.model.model_id} "
              f"--append-to {summary.dataset.dataset_id}",))


def summary_document(summary: LoopSummary) -> dict[str, Any]:
    return {"real_steps": summary.real_steps, "episodes": summary.episodes, "next_sequence": summary.next_sequence,
            "dataset_id": summary.dataset.dataset_id, "model_id": summary.model.model_id,
            "run_id": summary.run.run_id, "packet_id": summary.packet.packet_id,
            "served_packet_id": summary.served.packet_id if summary.served is not None else "",
            "rollout_id": summary.rollout.rollout_id if summary.rollout is not None else "",
            "stage_seconds": summary.stage_seconds}


def _loop(args: argparse.Namespace, endpoints_from: Callable[[argparse.Namespace], Endpoints]) -> int:
    endpoints = endpoints_from(args)
    if args.registry:
        endpoints = dataclasses.replace(endpoints, registry=args.registry)
    recipe = recipes.workflow(args.recipe)
    cfg = LoopConfig(model_id=args.model, base_run_id=args.base_run, append_to=args.append_to,
                     dataset_name=args.name, from_sequence=args.from_sequence,
                     world_model=simulator_pb2.WorldModelConfig(train_steps=recipe.world_model.train_steps),
                     train=recipe.train, packet_name=args.packet_name, channel=args.channel,
                     canary_fraction=args.canary_fraction, rollout_wait_s=args.wait)
    with PlasmaClient(endpoints) as client, progress.printer() as show:
        summary = run_loop(client, cfg, show)
    return output.show(args.json, summary_document(summary), [summary_table(summary)])


def register(commands: Any, endpoints_from: Callable[[argparse.Namespace], Endpoints]) -> None:
    """Adds `loop` to the CLI's subcommands; `endpoints_from(args)` resolves the services' addresses."""
    loop = commands.add_parser(
        "loop", help="one feedback-loop iteration: the edge's recorded experience -> a dataset version -> the world "
                     "model fine-tuned -> a new adapter on the same base -> a packet -> deployed or rolled out")
    loop.set_defaults(handler=lambda args: _loop(args, endpoints_from))
    loop.add_argument("--model", required=True, help="world model to fine-tune (wm-…)")
    loop.add_argument("--base-run", required=True, help="run whose base policy the new adapter is trained on (run-…)")
    loop.add_argument("--append-to", default="", metavar="DATASET_ID",
                      help="add the experience to this dataset as its next version (default: a new dataset)")
    loop.add_argument("--name", default="",
                      help=f"the new dataset's name (default: the model's dataset's name + {FIELD_SUFFIX!r})")
    loop.add_argument("--from-sequence", type=int, default=0,
                      help="only experience recorded from this sequence number on (the last loop printed it)")
    loop.add_argument("--recipe", choices=recipes.NAMES, default="default",
                      help="the fine-tune's steps and the adapter's training settings")
    loop.add_argument("--packet-name", default="",
                      help="the packet's lineage (default: the served packet's name, so its version goes up)")
    loop.add_argument("--channel", default="",
                      help="start a staged rollout on this registry channel instead of loading the edge directly")
    loop.add_argument("--canary-fraction", type=float, default=0.0, help="share of the channel's edges (0.1)")
    loop.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                      help="wait up to this long for the rollout's verdict")
    loop.add_argument("--registry", help="registry host:port (default from PLASMA_REGISTRY_TARGET)")
    loop.add_argument("--json", action="store_true", help="print the result as one JSON document on stdout")
    for service in connection.SERVICES:
        loop.add_argument(f"--{service}", help=f"{service} host:port (default from PLASMA_{service.upper()}_TARGET)")
    connection.add_tls_flags(loop)
