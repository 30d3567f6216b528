"""Client-server workflow: simulate -> train -> compile -> deploy -> evaluate, one gRPC call at a time.

The four services run as separate processes (or machines); this client drives them over gRPC. With no address
given it starts them as local processes on free ports (like `plasma demo`); with --connect it uses running ones:
PLASMA_SIMULATOR_TARGET etc. (default 127.0.0.1:50051-50054, where `plasma serve` listens, and the TLS variables
of the README's Configuration), each overridden by its flag. The served packet is evaluated on the real
environment over one long-lived Control stream to the edge runtime, as a device's control loop would run.

    .venv/bin/python examples/client_server.py                          # starts its own services
    plasma serve & .venv/bin/python examples/client_server.py --connect  # the services of `plasma serve`
    .venv/bin/python examples/client_server.py --simulator sim:50051 --trainer trainer:50052 \\
        --compiler compiler:50053 --edge edge:50054
    .venv/bin/python examples/client_server.py --quick                  # the small budget make test runs
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plasma import tensors
from plasma.sdk import Endpoints, PlasmaClient, recipes
from plasma.sdk.evaluate import random_baseline, run_episodes
from plasma.sdk.local import LocalStack
from plasma.sdk.workflow import EVAL_SEED_OFFSET
from plasma.simulator.v1 import simulator_pb2
from plasma.trainer.v1 import trainer_pb2

SERVICES = ("simulator", "trainer", "compiler", "edge")
QUICK_MODEL = simulator_pb2.WorldModelConfig(ensemble_size=3, hidden_size=64, train_steps=300)
QUICK_TRAIN = trainer_pb2.TrainConfig(
    hidden_size=32, base_paths=8, adapter_rounds=1, paths_per_round=8, horizon=100, epochs=10,
    start_states=simulator_pb2.START_STATES_ANY,
    planner=simulator_pb2.PlannerConfig(horizon=15, num_samples=32, num_iterations=2, num_elites=4),
)


@contextmanager
def services(args: argparse.Namespace) -> Iterator[Endpoints]:
    """The running services' endpoints (--connect or any address flag), or a local stack started for this run."""
    given = {name: getattr(args, name) for name in SERVICES if getattr(args, name)}
    if args.connect or given:
        yield dataclasses.replace(Endpoints.from_env(), **given)
        return
    with tempfile.TemporaryDirectory(prefix="plasma-example-") as root, LocalStack(Path(root)) as stack:
        print(f"started the services as local processes: {', '.join(getattr(stack.endpoints, n) for n in SERVICES)}")
        yield stack.endpoints


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connect", action="store_true", help="use running services (PLASMA_*_TARGET, defaults)")
    for name in SERVICES:
        parser.add_argument(f"--{name}", metavar="HOST:PORT", help=f"a running {name} (implies --connect)")
    parser.add_argument("--env", default="CartPole-v1", help="Gymnasium environment id")
    parser.add_argument("--steps", type=int, default=500, help="real steps to learn from (random actions)")
    parser.add_argument("--episodes", type=int, default=20, help="real evaluation episodes")
    parser.add_argument("--seed", type=int, default=0, help="seeds real data collection and evaluation")
    parser.add_argument("--quick", action="store_true", help="a small budget: 300 steps, small model and policy")
    args = parser.parse_args()
    recipe = recipes.workflow("quick-check")  # one round of random steps, as here
    model_config, train = recipe.world_model, recipe.train
    if args.quick:
        args.steps, args.episodes, model_config, train = 300, 5, QUICK_MODEL, QUICK_TRAIN

    with services(args) as endpoints, PlasmaClient(endpoints) as client:
        client.wait_ready()
        dataset = client.collect(args.env, args.steps, args.seed)
        print(f"simulator  collected {dataset.num_transitions} real steps: {dataset.dataset_id}")
        model = client.fit_world_model(dataset.dataset_id, model_config)
        print(f"simulator  world model {model.model_id}: held-out MSE {model.metrics.holdout_obs_mse:.2e} "
              f"(naive {model.metrics.holdout_naive_obs_mse:.2e})")
        run = client.train(model.model_id, train)
        print(f"trainer    run {run.run_id}: {run.metrics.phantom_paths_used} phantom paths, imagined return "
              f"{run.metrics.imagined_return:.1f}, {run.metrics.training_seconds:.1f} s")
        packet = client.compile(run.run_id)
        print(f"compiler   packet {packet.packet_id}: {packet.size_bytes:,} bytes, agreement with fp32 "
              f"{100 * packet.parity.agreement:.1f} %")
        served = client.deploy(client.download_packet(packet.packet_id))
        print(f"edge       serving {served.packet_id} v{served.version} ({served.precision}), self-test "
              f"{'passed' if served.self_test.passed else 'FAILED'}")

        seed = args.seed + EVAL_SEED_OFFSET
        with client.control() as loop:
            evaluation = run_episodes(args.env, args.episodes, seed,
                                      lambda observation: tensors.from_proto(loop.act(observation).action, "action"))
        random = random_baseline(args.env, args.episodes, seed)
        print(f"evaluate   mean real return {evaluation.mean_return:.1f} ± {evaluation.std_return:.1f} over "
              f"{args.episodes} episodes (random actions {random.mean_return:.1f}); Control round trip p50 "
              f"{evaluation.latency_percentile(50):.3f} ms, p99 {evaluation.latency_percentile(99):.3f} ms, "
              f"{len(evaluation.latencies_ms)} steps")
        status = client.edge_status()
        print(f"edge       {status.observations_served} observations served, inference p50 "
              f"{status.inference_latency.p50_ms:.3f} ms")


if __name__ == "__main__":
    main()
