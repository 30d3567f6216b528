"""What each command made, as tables for a person (--json gives the same objects to scripts)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from plasma.common.v1 import common_pb2
from plasma.compiler.v1 import compiler_pb2
from plasma.edge.v1 import edge_pb2
from plasma.sdk.evaluate import Evaluation
from plasma.sdk.table import Table, key_values
from plasma.sdk.workflow import WorkflowSummary
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2

SOLVED = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}
# A value longer than this (a policy's weights, say) is cut: --json has all of it.
MAX_VALUE = 100
MAX_LIST = 8


def document(message: Message) -> dict[str, Any]:
    """A message as --json prints it: protobuf's JSON mapping (camelCase names)."""
    return json_format.MessageToDict(message)


def message_table(title: str, message: Message) -> Table:
    """Every set field of `message`, nested ones as dotted names, long lists and values cut."""
    return key_values(title, _flatten(json_format.MessageToDict(message, preserving_proto_field_name=True), ""))


def _flatten(value: Any, name: str) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [row for key, item in value.items() for row in _flatten(item, f"{name}.{key}" if name else key)]
    if isinstance(value, list):
        if any(isinstance(item, dict | list) for item in value):
            return [(name, f"{len(value)} entries (--json shows them)")]
        shown = ", ".join(str(item) for item in value[:MAX_LIST])
        return [(name, shown + (f", … ({len(value)} values)" if len(value) > MAX_LIST else ""))]
    text = str(value)
    return [(name, text if len(text) <= MAX_VALUE else f"{text[:MAX_VALUE]}… ({len(text)} characters)")]


def precision_name(value: int) -> str:
    """compiler_pb2.PRECISION_INT8_FLOAT_OUTPUT -> "int8-float-output" (the manifest's names)."""
    return compiler_pb2.Precision.Name(value).removeprefix("PRECISION_").lower().replace("_", "-")


def describe_packet(packet: compiler_pb2.Packet) -> str:
    tried = ", ".join(f"{precision_name(a.precision)} {'passed' if a.passed else 'refused'}" for a in packet.attempts)
    return (f"{packet.size_bytes:,} bytes, {precision_name(packet.precision)} (tried: {tried}); model "
            f"{packet.model_bytes:,} B, fp32 {packet.fp32_model_bytes:,} B")


def describe_compression(packet: compiler_pb2.Packet) -> str:
    """The profile's choices beyond the precision and what they saved on the model's DEFLATE entry."""
    c = packet.compression
    profile = compiler_pb2.Profile.Name(packet.profile).removeprefix("PROFILE_").lower() if packet.profile else "none"
    graph_format = compiler_pb2.GraphFormat.Name(c.graph_format).removeprefix("GRAPH_FORMAT_").lower()
    return (f"{profile}: {graph_format}, {100 * c.sparsity:.0f} % of weights pruned, deflate level "
            f"{c.compression_level}; model deflated {c.deflated_model_bytes_before:,} B -> "
            f"{c.deflated_model_bytes_after:,} B")


def describe_parity(parity: compiler_pb2.ParityReport) -> str:
    decisive = parity.num_observations - parity.near_ties
    return (f"{100 * parity.agreement:.2f} % of {decisive:,} decisive visited states ({parity.near_ties:,} near-ties "
            f"apart); closed-loop return {parity.closed_loop_return:.1f} (fp32 {parity.fp32_closed_loop_return:.1f})")


def describe_self_test(test: edge_pb2.SelfTestReport) -> str:
    if not test.ran:
        return "none (format 1 packet)"
    verdict = "passed" if test.passed else "FAILED"
    fallback = ", serving the fp32 fallback" if test.serving_fallback else ""
    return (f"{verdict}{fallback}: {100 * test.agreement:.1f} % of {test.observations - test.near_ties} decisive, "
            f"max |diff| from fp32 {test.max_abs_diff:.3f} (allowed {test.allowed_max_abs_diff:.3f}); "
            f"CPU {' '.join(test.cpu_features) or 'features unknown'}")


def packet_tables(packet: compiler_pb2.Packet) -> list[Table]:
    """The packet, and each precision the ladder tried with the parity gate's verdict."""
    about = key_values(f"packet {packet.packet_id}", [
        ("name", f"{packet.name} v{packet.version}"),
        ("kind", common_pb2.PacketKind.Name(packet.kind).removeprefix("PACKET_KIND_").lower()),
        ("run", packet.run_id),
        ("size", describe_packet(packet)),
        *([("profile", describe_compression(packet))] if packet.HasField("compression") else []),
        ("parity with fp32", describe_parity(packet.parity)),
        ("float fallback", "yes" if packet.float_fallback else "no"),
        ("signed by key", packet.signing_key_id),
    ])
    attempts = Table("precisions tried (the parity gate)", ("precision", "verdict", "agreement", "closed-loop return",
                                                          "model bytes", "why refused"),
                     [(precision_name(a.precision), "passed" if a.passed else "refused", f"{100 * a.agreement:.2f} %",
                       f"{a.closed_loop_return:.1f}", f"{a.model_bytes:,}", a.reason) for a in packet.attempts],
                     numeric=frozenset({2, 3, 4}))
    return [about, attempts]


def list_table(what: str, response: Message) -> Table:
    """One row per stored object, the columns that tell them apart."""
    if isinstance(response, simulator_pb2.ListDatasetsResponse):
        return Table("datasets", ("id", "name", "version", "transitions", "episodes", "environment", "origin"),
                     [(d.dataset_id, d.name, str(d.version), f"{d.num_transitions:,}", f"{d.num_episodes:,}",
                       d.env_spec.env_id, d.origin) for d in response.datasets], numeric=frozenset({2, 3, 4}))
    if isinstance(response, simulator_pb2.ListWorldModelsResponse):
        return Table("world models", ("id", "dataset", "environment", "held-out MSE", "naive MSE", "parent"),
                     [(m.model_id, m.dataset_id, m.env_spec.env_id, f"{m.metrics.holdout_obs_mse:.2e}",
                       f"{m.metrics.holdout_naive_obs_mse:.2e}", m.parent_model_id) for m in response.models],
                     numeric=frozenset({3, 4}))
    if isinstance(response, trainer_pb2.ListRunsResponse):
        return Table("runs", ("id", "model", "state", "task", "imagined return", "base run"),
                     [(r.run_id, r.model_id, trainer_pb2.RunState.Name(r.state).removeprefix("RUN_STATE_"),
                       r.task.name, f"{r.metrics.imagined_return:.1f}", r.base_run_id) for r in response.runs],
                     numeric=frozenset({4}))
    if isinstance(response, compiler_pb2.ListPacketsResponse):
        return Table("packets", ("id", "name", "version", "precision", "bytes", "agreement", "run"),
                     [(p.packet_id, p.name, str(p.version), precision_name(p.precision), f"{p.size_bytes:,}",
                       f"{100 * p.parity.agreement:.2f} %", p.run_id) for p in response.packets],
                     numeric=frozenset({2, 4, 5}))
    return message_table(what, response)


def evaluation_document(env_id: str, evaluation: Evaluation) -> dict[str, Any]:
    return {"env_id": env_id, "episodes": len(evaluation.returns), "mean_return": evaluation.mean_return,
            "std_return": evaluation.std_return, "returns": list(evaluation.returns),
            "act_p50_ms": evaluation.latency_percentile(50), "act_p99_ms": evaluation.latency_percentile(99)}


def evaluation_table(env_id: str, evaluation: Evaluation) -> Table:
    return key_values(f"evaluation on {env_id}", [
        ("mean return", f"{evaluation.mean_return:.1f} ± {evaluation.std_return:.1f} over "
                        f"{len(evaluation.returns)} episodes"),
        ("Act latency", f"p50 {evaluation.latency_percentile(50):.3f} ms, "
                        f"p99 {evaluation.latency_percentile(99):.3f} ms"),
    ])


def summary_table(summary: WorkflowSummary, budget: int) -> Table:
    ev = summary.evaluation
    metrics = summary.model_metrics
    solved = SOLVED.get(summary.env_id)
    verdict = "" if solved is None else (
        f"  (solved at {solved:g}: {'yes' if ev.mean_return >= solved else 'NO'})")
    stages = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in summary.stage_seconds.items())
    return key_values(f"Plasma summary: {summary.env_id}  packet {summary.packet_id}", [
        ("real steps used for learning", f"{summary.real_steps_used} (budget {budget})"),
        ("world model held-out error", f"MSE {metrics.holdout_obs_mse:.2e} normalized "
                                       f"(naive next=current: {metrics.holdout_naive_obs_mse:.2e}), "
                                       f"NLL {metrics.holdout_nll:.3f}"),
        ("reward and termination", summary.learns_from),
        ("training time", f"{summary.training_seconds:.1f} s (imagined return {describe_imagined(summary)})"),
        ("packet", describe_packet(summary.packet)),
        ("parity with fp32", describe_parity(summary.packet.parity)),
        ("self-test on the edge's CPU", describe_self_test(summary.served.self_test)),
        ("edge latency (Act over gRPC)", f"p50 {ev.latency_percentile(50):.3f} ms, "
                                         f"p99 {ev.latency_percentile(99):.3f} ms (inference in runtime "
                                         f"p50 {summary.edge_inference_p50_ms:.3f} ms)"),
        ("mean real return", f"{ev.mean_return:.1f} ± {ev.std_return:.1f} over {len(ev.returns)} episodes{verdict}"),
        ("wall time", f"{summary.wall_seconds:.0f} s ({stages})"),
        ("seed", f"{summary.seed} (same seed and machine: same packet id; same bytes with the same signing key)"),
        ("warnings", f"{len(summary.warnings)} (on stderr, and below)" if summary.warnings else "none"),
    ], notes=tuple(f"warning: {w.message}" for w in summary.warnings))


def describe_imagined(summary: WorkflowSummary) -> str:
    """The whole paths' imagined return, and the audited remainder's where the audit cut steps."""
    whole = f"{summary.whole_path_imagined_return:.1f} over whole paths"
    if summary.audited_step_share >= 1.0:
        return whole
    return (f"{whole}; {summary.imagined_return:.1f} over the {100 * summary.audited_step_share:.0f} % of steps the "
            "audit kept")


def warning_lines(summary: WorkflowSummary) -> list[str]:
    """The summary's warnings as the CLI prints them on stderr, one line each."""
    return [f"plasma: warning ({w.kind}): {w.message}" for w in summary.warnings]


def summary_document(summary: WorkflowSummary) -> dict[str, Any]:
    ev = summary.evaluation
    return {
        "env_id": summary.env_id, "real_steps_used": summary.real_steps_used, "packet_id": summary.packet_id,
        "dataset_id": summary.dataset_id, "model_id": summary.model_id, "run_id": summary.run_id,
        "holdout_obs_mse": summary.model_metrics.holdout_obs_mse,
        "holdout_naive_obs_mse": summary.model_metrics.holdout_naive_obs_mse,
        "training_seconds": summary.training_seconds, "seed": summary.seed, "learns_from": summary.learns_from,
        "imagined_return": summary.imagined_return, "whole_path_imagined_return": summary.whole_path_imagined_return,
        "audited_step_share": summary.audited_step_share,
        "warnings": [{"kind": w.kind, "message": w.message} for w in summary.warnings],
        "packet": document(summary.packet), "served": document(summary.served),
        "act_p50_ms": ev.latency_percentile(50), "act_p99_ms": ev.latency_percentile(99),
        "mean_return": ev.mean_return, "returns": list(ev.returns), "stage_seconds": summary.stage_seconds,
    }

