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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import gymnasium as gym
import numpy as np
from google.protobuf.message import Message

from plasma import channels, signing
from plasma.cli import connection, loop, output, plots, progress, render, rollout
from plasma.cli.render import SOLVED as SOLVED  # bench.demo_reliability judges runs by it
from plasma.compiler.v1 import compiler_pb2
from plasma.sdk import calls, local, recipes, tasks
from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.sdk.evaluate import observation_size, run_episodes
from plasma.sdk.local import LocalStack
from plasma.sdk.logged import load_npz
from plasma.sdk.quality_table import quality_tables
from plasma.sdk.training import RunNotSucceeded
from plasma.sdk.workflow import EVAL_SEED_OFFSET, train_and_deploy
from plasma.server.settings import ConfigError
from plasma.simulator.v1 import simulator_pb2, task_pb2
from plasma.spaces import EnvSpec
from plasma.trainer.v1 import trainer_pb2

# Where `--json` with no file sends the workflow's summary (demo, run).
STDOUT = "-"


class UsageError(Exception):
    """A request the CLI refuses before (or without) calling a service; exit status 2."""


def _workflow(client: PlasmaClient, args: argparse.Namespace) -> int:
    cfg = recipes.workflow(args.recipe, env_id=args.env, real_steps=args.real_steps, seed=args.seed,
                           eval_episodes=args.episodes, task=tasks.parse_task(args.task) if args.task else None)
    rounds = " + ".join(str(steps) for steps in (cfg.real_steps, *cfg.more_rounds))
    print(f"{cfg.env_id}: recipe {args.recipe} ({rounds} real steps), seed {cfg.seed}", file=sys.stderr, flush=True)
    with progress.printer() as show:
        summary = train_and_deploy(client, cfg, show)
    for line in render.warning_lines(summary):  # plainly, whatever stdout gets
        print(line, file=sys.stderr, flush=True)
    record = render.summary_document(summary)
    if args.json not in (None, STDOUT):
        Path(args.json).write_text(json.dumps(record, indent=2))
    table = render.summary_table(summary, cfg.real_steps + sum(cfg.more_rounds))
    return output.show(args.json == STDOUT, record, [table])


def cmd_demo(args: argparse.Namespace) -> int:
    root = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="plasma-demo-"))
    print(f"starting simulator, trainer, compiler, edge runtime and packet registry as local processes (store {root})",
          file=sys.stderr)
    with LocalStack(root) as stack, PlasmaClient(stack.endpoints) as client:
        return _workflow(client, args)


def cmd_serve(args: argparse.Namespace) -> int:
    """The four services and the packet registry on their default ports, their stores under --store, one signing
    key pair wired between the compiler and the edge runtime; until Ctrl-C (or SIGTERM), then a graceful stop."""
    defaults = Endpoints()  # where the other commands look for the services by default
    ports = {name: int(getattr(defaults, name).rsplit(":", 1)[1]) for name in local.SERVICES}
    with LocalStack(Path(args.store), ports=ports) as stack:
        for name in local.SERVICES:
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
    with PlasmaClient(_endpoints(args)) as client, progress.stage("collect") as on_progress:
        dataset = client.collect(args.env, args.steps, args.seed, on_progress=on_progress)
    return _show_message(args, f"dataset {dataset.dataset_id}", dataset)


def cmd_fit(args: argparse.Namespace) -> int:
    reports: list[simulator_pb2.QualityReport] = []
    with PlasmaClient(_endpoints(args)) as client, progress.stage("fit") as show:
        def on_progress(event: Any) -> None:
            if isinstance(event, simulator_pb2.QualityReport):
                reports.append(event)
            else:
                show(event)

        model = client.fit_world_model(args.dataset_id, on_progress=on_progress, init_from_model_id=args.init_from)
    about = simulator_pb2.WorldModel()
    about.CopyFrom(model)
    about.ClearField("quality")  # its own tables follow
    tables = [render.message_table(f"world model {model.model_id}", about)]
    for report in reports:
        tables += quality_tables(report.quality, report.stage)
    return output.show(args.json, render.document(model), tables)


def cmd_upload(args: argparse.Namespace) -> int:
    try:
        spec, arrays = load_npz(args.file, env_id=args.env_id, discrete_actions=args.discrete_actions,
                                obs_low=args.obs_low, obs_high=args.obs_high,
                                action_low=args.action_low, action_high=args.action_high)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {args.file}: {error}") from None
    with PlasmaClient(_endpoints(args)) as client, progress.stage("upload") as on_progress:
        dataset = client.upload(spec, arrays, name=args.name, append_to=args.append_to,
                                batch_rows=args.batch_rows, on_progress=on_progress)
    return _show_message(args, f"dataset {dataset.dataset_id}", dataset)


def cmd_train(args: argparse.Namespace) -> int:
    config = recipes.workflow(args.recipe).train
    with PlasmaClient(_endpoints(args)) as client:
        task = None
        if args.task is not None:  # a tracking target is checked against the model's observation
            model = client.simulator.GetWorldModel(simulator_pb2.GetWorldModelRequest(model_id=args.model_id),
                                                   timeout=channels.UNARY_DEADLINE_S).model
            task = _resolve_task(args.task, EnvSpec.from_proto(model.env_spec).observation.flat_dim)
        with progress.stage("train") as on_progress:
            run = client.train(args.model_id, config, on_progress=on_progress, task=task, base_run_id=args.base_run)
    return _show_message(args, f"run {run.run_id}", run)


def cmd_compile(args: argparse.Namespace) -> int:
    with PlasmaClient(_endpoints(args)) as client, progress.stage("compile") as on_progress:
        packet = client.compile(args.run_id, name=args.name, on_progress=on_progress, precision=args.precision,
                                float_fallback=args.float_fallback, min_agreement=args.min_agreement,
                                profile=args.profile or compiler_pb2.PROFILE_UNSPECIFIED,
                                size_budget_bytes=args.size_budget, compression_level=args.compression_level)
    return output.show(args.json, render.document(packet), render.packet_tables(packet))


def cmd_deploy(args: argparse.Namespace) -> int:
    with PlasmaClient(_endpoints(args)) as client:
        packet = Path(args.file).read_bytes() if args.file else client.download_packet(args.packet_id)
        served = client.deploy(packet)
    return _show_message(args, f"serving packet {served.packet_id}", served)


def cmd_act(args: argparse.Namespace) -> int:
    with PlasmaClient(_endpoints(args)) as client:
        action = client.act(np.array(args.observation, dtype=np.float32))
    print(json.dumps(action.tolist()))  # the same for people and scripts
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    task = None
    if args.task is not None:  # a task for another environment, or one with no real-world reward (learned)
        obs_size = observation_size(gym.make(args.env).observation_space)
        task = _resolve_task(args.task, obs_size)
        try:
            tasks.scores_real_steps(task, obs_size)
        except ValueError as error:
            raise UsageError(str(error)) from None
    with PlasmaClient(_endpoints(args)) as client:
        evaluation = run_episodes(args.env, args.episodes, args.seed + EVAL_SEED_OFFSET, client.act, task=task)
    return output.show(args.json, render.evaluation_document(args.env, evaluation),
                       [render.evaluation_table(args.env, evaluation)])


def cmd_status(args: argparse.Namespace) -> int:
    with PlasmaClient(_endpoints(args)) as client:
        return _show_message(args, "edge runtime", client.edge_status())


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
        response = calls[args.what]()
    return output.show(args.json, render.document(response), [render.list_table(args.what, response)])


TASK_HELP = (f"what to optimize: {tasks.TASK_SYNTAX}; cartpole-x=X holds CartPole's cart at x = X, "
             "pendulum-hold=DEG Pendulum DEG degrees from upright, track:obs[I]=V holds observation element I at V "
             "(@W weighs it, default 1; several comma-separated); default: the environment's own objective")


def _task_syntax(text: str) -> str:
    try:
        return tasks.check_task_syntax(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _resolve_task(text: str, obs_size: int) -> task_pb2.TaskSpec:
    try:
        return tasks.parse_task(text, obs_size)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _precision(text: str) -> int:
    names = {render.precision_name(value): value for value in compiler_pb2.Precision.values()
             if value != compiler_pb2.PRECISION_UNSPECIFIED}
    if text not in names:
        raise argparse.ArgumentTypeError(f"precision must be one of {', '.join(names)}, got {text!r}")
    return names[text]


def _bounded_int(low: int, high: int | None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is not in {low}..{high if high is not None else ''}")
        return value
    return parse


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share in [0, 1]")
    return value


def _floats(text: str) -> list[float]:
    return [float(value) for value in text.split(",")]


def _show_message(args: argparse.Namespace, title: str, message: Message) -> int:
    return output.show(args.json, render.document(message), [render.message_table(title, message)])


def _endpoints(args: argparse.Namespace) -> Endpoints:
    return connection.endpoints(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plasma", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Any, help_text: str, connects: bool = True,
            prints: bool = True) -> argparse.ArgumentParser:
        """A subcommand; `connects` ones take where the services are and how to reach them (demo and serve start
        their own on loopback); `prints` ones show what they made as tables, or as JSON for scripts."""
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(handler=handler)
        if prints:
            sub.add_argument("--json", action="store_true",
                             help="print what the command made as one JSON document on stdout (protobuf's JSON "
                                  "mapping), for scripts; progress stays on stderr")
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
        sub.add_argument("--json", nargs="?", const=STDOUT, metavar="FILE",
                         help="the summary as one JSON document: on stdout instead of the table, or with FILE "
                              "written there besides the table")
        sub.add_argument("--task", choices=("environment", "learned"),
                         help="the reward and termination to learn from: the environment's own (where Plasma knows "
                              "them) or learned from the data (default: the environment's own where known, else "
                              "learned)")

    demo = add("demo", cmd_demo, "start the four services locally and run the whole workflow", connects=False,
               prints=False)
    workflow_flags(demo)
    demo.add_argument("--store", help="store root for the services (default: a new temp dir)")
    serve = add("serve", cmd_serve, "start the four services locally on ports 50051-50054 until Ctrl-C",
                connects=False, prints=False)
    serve.add_argument("--store", default="var/local", help="store root for the services (default var/local)")
    keys = add("keys", cmd_keys, "a compiler/edge signing key pair for services started by hand: prints the "
               "variables that wire it", connects=False, prints=False)
    keys.add_argument("--dir", default="var/keys", help="where the private key is kept (default var/keys)")
    run = add("run", cmd_run, "run the whole workflow against running services", prints=False)
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
    train.add_argument("--task", type=_task_syntax, help=TASK_HELP)
    train.add_argument("--base-run", default="", help="train only a LoRA adapter for --task on this run's base policy")
    compile_ = add("compile", cmd_compile, "compile a run into a packet (the smallest precision that keeps parity)")
    compile_.add_argument("run_id")
    compile_.add_argument("--precision", type=_precision, default=compiler_pb2.PRECISION_UNSPECIFIED,
                          help="only this precision: int8, int8-float-output, fp16, fp32 or int8-dynamic "
                               "(default: the ladder, smallest first)")
    compile_.add_argument("--float-fallback", action="store_true",
                          help="also ship the fp32 graph, served where the packet fails its self-test")
    compile_.add_argument("--min-agreement", type=_share, default=0.0, metavar="SHARE",
                          help="the parity gate: the least share (0 to 1) of decisive states, visited in closed "
                               "loop in the run's world model and in the packet's self-test, on which a precision "
                               "must decide as the fp32 policy does; one below it is refused and the ladder tries "
                               "the next (it must also keep 95 %% of fp32's closed-loop return). Default 0: the "
                               "compiler's 0.95")
    compile_.add_argument("--profile", choices=calls.PROFILE_NAMES,
                          help="the device profile: edge (int8, pruned, smallest), mobile (edge's choices in "
                               "onnxruntime's ORT format, for minimal builds) or server (fp16/fp32, batched); "
                               "default: the ladder, unpruned, zlib's default compression")
    compile_.add_argument("--size-budget", type=_bounded_int(1, None), default=0, metavar="BYTES",
                          help="refuse a packet larger than this many bytes (the whole signed archive)")
    compile_.add_argument("--compression-level", type=_bounded_int(0, 9), default=None, metavar="N",
                          help="DEFLATE level of the packet archive, 0 (none) to 9 (smallest); default: the "
                               "profile's (9 for edge and mobile, else 6)")
    compile_.add_argument("--name", default="",
                          help="the packet's lineage name (default: the dataset's name, or the environment id, "
                               "with the task's name unless it is the environment's own objective)")
    deploy = add("deploy", cmd_deploy, "load a packet into the edge runtime")
    deploy.add_argument("packet_id", nargs="?", help="packet to download from the compiler")
    deploy.add_argument("--file", help="or a packet file on disk")
    act = add("act", cmd_act, "ask the edge runtime for one action")
    act.add_argument("observation", type=float, nargs="+")
    evaluate = add("evaluate", cmd_evaluate, "evaluate the served packet on the real environment")
    evaluate.add_argument("--env", default="CartPole-v1")
    evaluate.add_argument("--episodes", type=int, default=20)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--task", type=_task_syntax, help=TASK_HELP + "; returns are then the task's reward")
    add("status", cmd_status, "the edge runtime's status")
    add("list", cmd_list, "list stored objects").add_argument(
        "what", choices=("datasets", "models", "runs", "packets"))
    plots.register(commands, _endpoints)
    rollout.register(commands)
    loop.register(commands, _endpoints)
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
    except (ConfigError, UsageError) as error:
        print(f"plasma: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
