"""`plasma`: the command line over the SDK. `plasma demo` runs the whole job on local processes."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import gymnasium as gym
import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message

from plasma import channels, signing
from plasma.cli import connection, plots
from plasma.compiler.v1 import compiler_pb2
from plasma.edge.v1 import edge_pb2
from plasma.sdk import recipes, tasks
from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.sdk.evaluate import observation_size, run_episodes
from plasma.sdk.local import LocalStack
from plasma.sdk.logged import load_npz
from plasma.sdk.quality_table import format_quality
from plasma.sdk.training import RunNotSucceeded
from plasma.sdk.workflow import EVAL_SEED_OFFSET, StageDone, WorkflowSummary, train_and_deploy
from plasma.server.settings import ConfigError
from plasma.simulator.v1 import simulator_pb2, task_pb2
from plasma.trainer.v1 import trainer_pb2

SOLVED = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}


class ProgressPrinter:
    """One line per progress event on stderr, at most every `interval_s` per stage, and a stage's last event
    before its "done" line (so a stage quicker than the interval does not seem to stop at its first event)."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self._interval_s = interval_s
        self._last: dict[str, float] = {}
        self._skipped: dict[str, Any] = {}  # per stage, the latest event not printed

    def __call__(self, stage: str, event: Any) -> None:
        now = time.monotonic()
        if isinstance(event, StageDone):
            if stage in self._skipped:
                self._print(stage, self._skipped.pop(stage))
            print(f"[{stage}] done in {event.seconds:.1f} s", file=sys.stderr, flush=True)
            return
        if stage in self._last and now - self._last[stage] < self._interval_s:
            self._skipped[stage] = event
            return
        self._last[stage] = now
        self._skipped.pop(stage, None)
        self._print(stage, event)

    @staticmethod
    def _print(stage: str, event: Any) -> None:
        print(f"[{stage}] {describe_progress(event)}", file=sys.stderr, flush=True)


def describe_progress(event: Message) -> str:
    if isinstance(event, simulator_pb2.CollectionProgress):
        return f"{event.steps_done}/{event.steps_total} real steps, {event.episodes_done} episodes"
    if isinstance(event, simulator_pb2.BatchAck):
        return f"batch {event.batch_index} stored, {event.transitions_stored} transitions so far"
    if isinstance(event, simulator_pb2.FitProgress):
        return (f"step {event.step}/{event.total_steps}  train NLL {event.train_nll:.3f}  "
                f"held-out NLL {event.holdout_nll:.3f}  held-out MSE {event.holdout_obs_mse:.5f}")
    if isinstance(event, trainer_pb2.TrainProgress):
        return (f"{event.phase} round {event.round}/{event.total_rounds}  loss {event.loss:.4f}  "
                f"imagined return {event.imagined_return:.1f}  planner agreement {event.planner_agreement:.3f}  "
                f"phantom paths {event.phantom_paths_used}")
    if isinstance(event, compiler_pb2.CompileProgress):
        return f"{event.stage}: {event.message}"
    return json_format.MessageToJson(event, indent=None)


def precision_name(value: int) -> str:
    """compiler_pb2.PRECISION_INT8_FLOAT_OUTPUT -> "int8-float-output" (the manifest's names)."""
    return compiler_pb2.Precision.Name(value).removeprefix("PRECISION_").lower().replace("_", "-")


def describe_packet(packet: compiler_pb2.Packet) -> str:
    tried = ", ".join(f"{precision_name(a.precision)} {'passed' if a.passed else 'refused'}" for a in packet.attempts)
    return (f"{packet.size_bytes:,} bytes, {precision_name(packet.precision)} (tried: {tried}); model "
            f"{packet.model_bytes:,} B, fp32 {packet.fp32_model_bytes:,} B")


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


def format_summary(summary: WorkflowSummary, budget: int) -> str:
    ev = summary.evaluation
    metrics = summary.model_metrics
    solved = SOLVED.get(summary.env_id)
    verdict = "" if solved is None else (
        f"  (solved at {solved:g}: {'yes' if ev.mean_return >= solved else 'NO'})")
    stages = ", ".join(f"{name} {seconds:.0f}s" for name, seconds in summary.stage_seconds.items())
    rows = [
        ("real steps used for learning", f"{summary.real_steps_used} (budget {budget})"),
        ("world model held-out error", f"MSE {metrics.holdout_obs_mse:.2e} normalized "
                                       f"(naive next=current: {metrics.holdout_naive_obs_mse:.2e}), "
                                       f"NLL {metrics.holdout_nll:.3f}"),
        ("training time", f"{summary.training_seconds:.1f} s (imagined return {summary.imagined_return:.1f})"),
        ("packet", describe_packet(summary.packet)),
        ("parity with fp32", describe_parity(summary.packet.parity)),
        ("self-test on the edge's CPU", describe_self_test(summary.served.self_test)),
        ("edge latency (Act over gRPC)", f"p50 {ev.latency_percentile(50):.3f} ms, "
                                         f"p99 {ev.latency_percentile(99):.3f} ms (inference in runtime "
                                         f"p50 {summary.edge_inference_p50_ms:.3f} ms)"),
        ("mean real return", f"{ev.mean_return:.1f} ± {ev.std_return:.1f} over {len(ev.returns)} episodes{verdict}"),
        ("wall time", f"{summary.wall_seconds:.0f} s ({stages})"),
        ("seed", f"{summary.seed} (same seed and machine: same packet id; same bytes with the same signing key)"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"Plasma summary: {summary.env_id}  packet {summary.packet_id}"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    return "\n".join(lines)


def _workflow(client: PlasmaClient, args: argparse.Namespace) -> int:
    cfg = recipes.workflow(args.recipe, env_id=args.env, real_steps=args.real_steps, seed=args.seed,
                           eval_episodes=args.episodes)
    rounds = " + ".join(str(steps) for steps in (cfg.real_steps, *cfg.more_rounds))
    print(f"{cfg.env_id}: recipe {args.recipe} ({rounds} real steps), seed {cfg.seed}", file=sys.stderr, flush=True)
    summary = train_and_deploy(client, cfg, ProgressPrinter())
    print(format_summary(summary, cfg.real_steps + sum(cfg.more_rounds)))
    if args.json:
        Path(args.json).write_text(json.dumps(summary_record(summary), indent=2))
    return 0


def summary_record(summary: WorkflowSummary) -> dict[str, Any]:
    ev = summary.evaluation
    return {
        "env_id": summary.env_id, "real_steps_used": summary.real_steps_used, "packet_id": summary.packet_id,
        "holdout_obs_mse": summary.model_metrics.holdout_obs_mse,
        "holdout_naive_obs_mse": summary.model_metrics.holdout_naive_obs_mse,
        "training_seconds": summary.training_seconds, "seed": summary.seed,
        "packet": json_format.MessageToDict(summary.packet), "served": json_format.MessageToDict(summary.served),
        "act_p50_ms": ev.latency_percentile(50), "act_p99_ms": ev.latency_percentile(99),
        "mean_return": ev.mean_return, "returns": list(ev.returns), "stage_seconds": summary.stage_seconds,
    }


def cmd_demo(args: argparse.Namespace) -> int:
    root = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="plasma-demo-"))
    print(f"starting simulator, trainer, compiler and edge runtime as local processes (store {root})",
          file=sys.stderr)
    with LocalStack(root) as stack, PlasmaClient(stack.endpoints) as client:
        return _workflow(client, args)


def cmd_serve(args: argparse.Namespace) -> int:
    """The four services on their default ports, their stores under --store, one signing key pair wired between
    the compiler and the edge runtime; until Ctrl-C (or SIGTERM), then a graceful stop."""
    defaults = Endpoints()  # where the other commands look for the services by default
    ports = {name: int(getattr(defaults, name).rsplit(":", 1)[1]) for name in connection.SERVICES}
    with LocalStack(Path(args.store), ports=ports) as stack:
        for name in connection.SERVICES:
            print(f"{name:<10} {getattr(stack.endpoints, name)}", file=sys.stderr)
        print(f"stores and logs under {args.store}; Ctrl-C stops the services", file=sys.stderr, flush=True)
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """A signing key pair for a compiler and an edge runtime started by hand: the private key in --dir (made
    unless it is there), and on stdout the two variables that wire it, for `eval "$(plasma keys)"`."""
    for name, value in signing.dev_key_env(Path(args.dir).resolve()).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    with PlasmaClient(_endpoints(args)) as client:
        client.wait_ready(args.wait)
        return _workflow(client, args)


def cmd_collect(args: argparse.Namespace) -> int:
    with PlasmaClient(_endpoints(args)) as client:
        dataset = client.collect(args.env, args.steps, args.seed, on_progress=_stage_printer("collect"))
    return _print_message(dataset)


def cmd_fit(args: argparse.Namespace) -> int:
    printer = _stage_printer("fit")
    reports: list[simulator_pb2.QualityReport] = []

    def on_progress(event: Any) -> None:
        if isinstance(event, simulator_pb2.QualityReport):
            reports.append(event)
        else:
            printer(event)

    with PlasmaClient(_endpoints(args)) as client:
        model = client.fit_world_model(args.dataset_id, on_progress=on_progress, init_from_model_id=args.init_from)
    _print_message(model)
    # The tables go to stderr with the progress, so that stdout stays one JSON document.
    for report in reports:
        print(format_quality(report.quality, report.stage), file=sys.stderr)
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    try:
        spec, arrays = load_npz(args.file, env_id=args.env_id, discrete_actions=args.discrete_actions,
                                obs_low=args.obs_low, obs_high=args.obs_high,
                                action_low=args.action_low, action_high=args.action_high)
    except (OSError, ValueError) as error:
        print(f"plasma: cannot read {args.file}: {error}", file=sys.stderr)
        return 2
    with PlasmaClient(_endpoints(args)) as client:
        dataset = client.upload(spec, arrays, name=args.name, append_to=args.append_to,
                                batch_rows=args.batch_rows, on_progress=_stage_printer("upload"))
    return _print_message(dataset)


def cmd_train(args: argparse.Namespace) -> int:
    config = recipes.workflow(args.recipe).train
    with PlasmaClient(_endpoints(args)) as client:
        run = client.train(args.model_id, config, on_progress=_stage_printer("train"), task=args.task,
                           base_run_id=args.base_run)
    return _print_message(run)


def cmd_compile(args: argparse.Namespace) -> int:
    with PlasmaClient(_endpoints(args)) as client:
        packet = client.compile(args.run_id, on_progress=_stage_printer("compile"), precision=args.precision,
                                float_fallback=args.float_fallback, min_agreement=args.min_agreement)
    print(f"{packet.packet_id}: {describe_packet(packet)}\n  parity: {describe_parity(packet.parity)}",
          file=sys.stderr)
    return _print_message(packet)


def cmd_deploy(args: argparse.Namespace) -> int:
    with PlasmaClient(_endpoints(args)) as client:
        packet = Path(args.file).read_bytes() if args.file else client.download_packet(args.packet_id)
        return _print_message(client.deploy(packet))


def cmd_act(args: argparse.Namespace) -> int:
    with PlasmaClient(_endpoints(args)) as client:
        action = client.act(np.array(args.observation, dtype=np.float32))
    print(json.dumps(action.tolist()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.task is not None:
        try:  # a task for another environment, or one with no real-world reward (learned)
            tasks.scores_real_steps(args.task, observation_size(gym.make(args.env).observation_space))
        except ValueError as error:
            print(f"plasma: {error}", file=sys.stderr)
            return 2
    with PlasmaClient(_endpoints(args)) as client:
        evaluation = run_episodes(args.env, args.episodes, args.seed + EVAL_SEED_OFFSET, client.act, task=args.task)
    print(f"mean return {evaluation.mean_return:.1f} ± {evaluation.std_return:.1f} over {args.episodes} episodes; "
          f"Act p50 {evaluation.latency_percentile(50):.3f} ms p99 {evaluation.latency_percentile(99):.3f} ms")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with PlasmaClient(_endpoints(args)) as client:
        return _print_message(client.edge_status())


def cmd_list(args: argparse.Namespace) -> int:
    deadline = channels.UNARY_DEADLINE_S
    with PlasmaClient(_endpoints(args)) as client:
        calls = {
            "datasets": lambda: client.simulator.ListDatasets(simulator_pb2.ListDatasetsRequest(), timeout=deadline),
            "models": lambda: client.simulator.ListWorldModels(simulator_pb2.ListWorldModelsRequest(),
                                                                timeout=deadline),
            "runs": lambda: client.trainer.ListRuns(trainer_pb2.ListRunsRequest(), timeout=deadline),
            "packets": lambda: client.compiler.ListPackets(compiler_pb2.ListPacketsRequest(), timeout=deadline),
        }
        return _print_message(calls[args.what]())


TASK_HELP = ("what to optimize: environment, learned, cartpole-x=X (CartPole at x = X) or pendulum-hold=DEG "
             "(Pendulum DEG degrees from upright); default: the environment's own objective")


def _task(text: str) -> task_pb2.TaskSpec:
    try:
        return tasks.parse_task(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _precision(text: str) -> int:
    names = {precision_name(value): value for value in compiler_pb2.Precision.values()
             if value != compiler_pb2.PRECISION_UNSPECIFIED}
    if text not in names:
        raise argparse.ArgumentTypeError(f"precision must be one of {', '.join(names)}, got {text!r}")
    return names[text]


def _floats(text: str) -> list[float]:
    return [float(value) for value in text.split(",")]


def _stage_printer(stage: str) -> Any:
    printer = ProgressPrinter()
    return lambda event: printer(stage, event)


def _print_message(message: Message) -> int:
    print(json_format.MessageToJson(message, indent=2))
    return 0


def _endpoints(args: argparse.Namespace) -> Endpoints:
    return connection.endpoints(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plasma", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Any, help_text: str, connects: bool = True) -> argparse.ArgumentParser:
        """A subcommand; `connects` ones take where the services are and how to reach them (demo and serve start
        their own on loopback)."""
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(handler=handler)
        if connects:
            for service in connection.SERVICES:
                sub.add_argument(f"--{service}",
                                 help=f"{service} host:port (default from PLASMA_{service.upper()}_TARGET)")
            connection.add_tls_flags(sub)
        return sub

    def workflow_flags(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id (default CartPole-v1)")
        sub.add_argument("--real-steps", type=int, default=None,
                         help="real steps of the first, random collection round (default: the recipe's)")
        sub.add_argument("--seed", type=int, default=0,
                         help="seeds collection, fitting and training: the same seed on the same machine gives the "
                              "same packet")
        sub.add_argument("--episodes", type=int, default=20, help="real evaluation episodes")
        sub.add_argument("--recipe", choices=recipes.NAMES, default="default",
                         help="default: two rounds of 200 real steps; random-5000: one round of 5,000 random steps; "
                              "quick-check: a fast end-to-end check (plasma.sdk.recipes)")
        sub.add_argument("--json", help="also write the summary as JSON to this file")

    demo = add("demo", cmd_demo, "start the four services locally and run the whole workflow", connects=False)
    workflow_flags(demo)
    demo.add_argument("--store", help="store root for the services (default: a new temp dir)")
    serve = add("serve", cmd_serve, "start the four services locally on ports 50051-50054 until Ctrl-C",
                connects=False)
    serve.add_argument("--store", default="var/local", help="store root for the services (default var/local)")
    keys = add("keys", cmd_keys, "a compiler/edge signing key pair for services started by hand: prints the "
               "variables that wire it", connects=False)
    keys.add_argument("--dir", default="var/keys", help="where the private key is kept (default var/keys)")
    run = add("run", cmd_run, "run the whole workflow against running services")
    workflow_flags(run)
    run.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the services")
    collect = add("collect", cmd_collect, "collect real transitions into a dataset")
    collect.add_argument("--env", default="CartPole-v1")
    collect.add_argument("--steps", type=int, default=1000)
    collect.add_argument("--seed", type=int, default=0)
    fit = add("fit", cmd_fit, "fit a world model on a dataset; prints its held-out quality as a table")
    fit.add_argument("dataset_id")
    fit.add_argument("--init-from", default="", help="fine-tune this model (same spec and architecture)")
    upload = add("upload", cmd_upload, "upload logged transitions from an .npz (obs, actions, rewards, next_obs, "
                                       "terminated[, truncated, episode_ids])")
    upload.add_argument("file")
    upload.add_argument("--name", default="", help="name of the new dataset (required unless --append-to)")
    upload.add_argument("--append-to", default="", help="create the next version of this dataset id")
    upload.add_argument("--env-id", default="", help="Gymnasium id the data came from, if any")
    upload.add_argument("--discrete-actions", type=int, default=0, metavar="N",
                        help="actions are integers in 0..N-1 (default: a box of the actions' shape)")
    for bound in ("obs-low", "obs-high", "action-low", "action-high"):
        upload.add_argument(f"--{bound}", type=_floats, metavar="V[,V...]",
                            help="one value for every element or one per element, comma-separated; write "
                                 "--obs-low=-1,-inf for negative values (default: unbounded)")
    upload.add_argument("--batch-rows", type=int, default=4096, help="transitions per streamed batch")
    train = add("train", cmd_train, "train a policy against a world model")
    train.add_argument("model_id")
    train.add_argument("--recipe", choices=recipes.NAMES, default="default", help="the recipe's training settings")
    train.add_argument("--task", type=_task, help=TASK_HELP)
    train.add_argument("--base-run", default="", help="train only a LoRA adapter for --task on this run's base policy")
    compile_ = add("compile", cmd_compile, "compile a run into a packet (the smallest precision that keeps parity)")
    compile_.add_argument("run_id")
    compile_.add_argument("--precision", type=_precision, default=compiler_pb2.PRECISION_UNSPECIFIED,
                          help="only this precision: int8, int8-float-output, fp16, fp32 or int8-dynamic "
                               "(default: the ladder, smallest first)")
    compile_.add_argument("--float-fallback", action="store_true",
                          help="also ship the fp32 graph, served where the packet fails its self-test")
    compile_.add_argument("--min-agreement", type=float, default=0.0,
                          help="the parity gate: decision agreement with fp32 on decisive states (default 0.95)")
    deploy = add("deploy", cmd_deploy, "load a packet into the edge runtime")
    deploy.add_argument("packet_id", nargs="?", help="packet to download from the compiler")
    deploy.add_argument("--file", help="or a packet file on disk")
    act = add("act", cmd_act, "ask the edge runtime for one action")
    act.add_argument("observation", type=float, nargs="+")
    evaluate = add("evaluate", cmd_evaluate, "evaluate the served packet on the real environment")
    evaluate.add_argument("--env", default="CartPole-v1")
    evaluate.add_argument("--episodes", type=int, default=20)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--task", type=_task, help=TASK_HELP + "; returns are then the task's reward")
    add("status", cmd_status, "the edge runtime's status")
    add("list", cmd_list, "list stored objects").add_argument(
        "what", choices=("datasets", "models", "runs", "packets"))
    plots.register(commands, _endpoints)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except grpc.RpcError as error:
        print(f"plasma: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except RunNotSucceeded as error:  # a run followed after its Train stream broke, that then failed
        print(f"plasma: {error}", file=sys.stderr)
        return 1
    except ConfigError as error:
        print(f"plasma: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
