"""`plasma plot KIND`: fetches what a figure needs from the services (and real rollouts from Gymnasium), then
draws it with plasma.sdk.plot. Kinds: forecast, learning-curves, run."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from plasma import channels, tensors
from plasma.cli.connection import add_tls_flags
from plasma.sdk import real_rollouts
from plasma.sdk.client import Endpoints, PlasmaClient
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2

EndpointsFrom = Callable[[argparse.Namespace], Endpoints]


def register(commands: Any, endpoints_from: EndpointsFrom) -> None:
    """Adds `plot` and its kinds to the CLI's subcommands; `endpoints_from(args)` resolves service addresses."""
    plot = commands.add_parser("plot", help="draw PNG figures: error forecasts, learning curves, a run's history")
    kinds = plot.add_subparsers(dest="kind", required=True)

    forecast = kinds.add_parser("forecast", help="phantom-path forecast with uncertainty bands against real rollouts")
    forecast.add_argument("--model", required=True, help="world model id")
    forecast.add_argument("--policy", default="random",
                          help="random, planner, or run:RUN_ID (the run's trained MLP policy)")
    forecast.add_argument("--seed", type=int, default=0, help="seed of the forecast and of the real env's reset")
    forecast.add_argument("--horizon", type=int, default=100)
    forecast.add_argument("--samples", type=int, default=256, help="sampled phantom paths, 1..4096")
    forecast.add_argument("--start", type=float, nargs="+",
                          help="start state (default: the real environment's reset state for --seed)")
    forecast.add_argument("--out", required=True, help="PNG file to write")
    forecast.set_defaults(handler=lambda args: _forecast(args, endpoints_from(args)))

    curves = kinds.add_parser("learning-curves", help="real and imagined return against real steps, from JSON")
    curves.add_argument("file", help="JSON in the schema of plasma.sdk.plot (bench.sample_efficiency writes it)")
    curves.add_argument("--out", required=True, help="PNG file to write")
    curves.set_defaults(handler=_learning_curves)

    run = kinds.add_parser("run", help="a training run's imagined return per round")
    run.add_argument("run_id")
    run.add_argument("--out", required=True, help="PNG file to write")
    run.set_defaults(handler=lambda args: _run(args, endpoints_from(args)))

    for sub in (forecast, run):
        for service in ("simulator", "trainer"):
            sub.add_argument(f"--{service}", help=f"{service} host:port (default from PLASMA_{service.upper()}_TARGET)")
        add_tls_flags(sub)
        for service in ("compiler", "edge"):  # resolved with the others; unused by plots
            sub.set_defaults(**{service: None})


def rollout_policy(text: str, client: PlasmaClient) -> simulator_pb2.RolloutPolicy:
    """--policy: "random", "planner" (default settings) or "run:RUN_ID" (that run's merged MLP policy)."""
    if text == "random":
        return simulator_pb2.RolloutPolicy(random=simulator_pb2.RandomPolicy())
    if text == "planner":
        return simulator_pb2.RolloutPolicy(planner=simulator_pb2.PlannerConfig())
    if text.startswith("run:"):
        run_id = text.removeprefix("run:")
        run = client.trainer.GetRun(trainer_pb2.GetRunRequest(run_id=run_id),
                                    timeout=channels.UNARY_DEADLINE_S).run
        if not run.HasField("policy"):
            raise ValueError(f"run {run_id!r} has no trained policy (state "
                             f"{trainer_pb2.RunState.Name(run.state)}); wait until it has succeeded")
        return simulator_pb2.RolloutPolicy(mlp=run.policy)
    raise ValueError(f"--policy must be random, planner or run:RUN_ID, got {text!r}")


def forecast_with_real_rollouts(
    client: PlasmaClient, model_id: str, policy_text: str, *, seed: int, horizon: int, samples: int,
    start: list[float] | None = None,
) -> tuple[simulator_pb2.ForecastErrorsResponse, list[real_rollouts.RealPath], str]:
    """The forecast from `start` (default: the real env's reset state) and the real rollouts to compare it
    with: the MLP policy run in the real env, or each sample path's actions replayed there (random,
    planner). Returns (forecast, real paths, env_id)."""
    model = client.simulator.GetWorldModel(simulator_pb2.GetWorldModelRequest(model_id=model_id),
                                           timeout=channels.UNARY_DEADLINE_S).model
    env_id = model.env_spec.env_id
    if start is None:
        if not env_id:
            raise ValueError(f"model {model_id!r} was fitted on logged data with no environment; pass --start")
        start = real_rollouts.start_state(env_id, seed).tolist()
    policy = rollout_policy(policy_text, client)
    reply = client.forecast(model_id, np.array(start, dtype=np.float32), policy, horizon=horizon,
                            num_samples=samples, seed=seed)
    if not env_id:
        return reply, [], env_id
    begin = np.array(start, dtype=np.float32)
    if policy.HasField("mlp"):
        real = [real_rollouts.run_policy(env_id, begin, policy.mlp, horizon, seed)]
    else:
        real = [real_rollouts.replay(env_id, begin, tensors.from_proto(path.actions, "actions"), seed)
                for path in reply.samples]
    return reply, real, env_id


def _forecast(args: argparse.Namespace, endpoints: Endpoints) -> int:
    from plasma.sdk import plot

    with PlasmaClient(endpoints) as client:
        try:
            reply, real, env_id = forecast_with_real_rollouts(
                client, args.model, args.policy, seed=args.seed, horizon=args.horizon, samples=args.samples,
                start=args.start,
            )
        except ValueError as exc:
            return _fail(exc)
    title = (f"{env_id or 'model ' + args.model}: policy {args.policy}, {args.samples} phantom paths, "
             f"seed {args.seed}")
    out = plot.save(plot.forecast_figure(reply, real, env_id=env_id, title=title), args.out)
    print(f"wrote {out}: likely failure step {reply.likely_failure_step}, likely model-error step "
          f"{reply.likely_model_error_step} (-1: never within {args.horizon} steps)")
    return 0


def _learning_curves(args: argparse.Namespace) -> int:
    from plasma.sdk import plot

    try:
        record = json.loads(Path(args.file).read_text())
        out = plot.save(plot.learning_curves_figure(record), args.out)
    except (OSError, ValueError) as exc:
        return _fail(exc)
    print(f"wrote {out}")
    return 0


def _run(args: argparse.Namespace, endpoints: Endpoints) -> int:
    from plasma.sdk import plot

    with PlasmaClient(endpoints) as client:
        run = client.trainer.GetRun(trainer_pb2.GetRunRequest(run_id=args.run_id),
                                    timeout=channels.UNARY_DEADLINE_S).run
    try:
        out = plot.save(plot.run_history_figure(run), args.out)
    except ValueError as exc:
        return _fail(exc)
    print(f"wrote {out}")
    return 0


def _fail(exc: Exception) -> int:
    print(f"plasma plot: {exc}", file=sys.stderr)
    return 2
