"""LoRA training: one world model, one base policy, and a LoRA adapter that retargets it to another task.

Starts the four services as local processes and, on CartPole-v1: collects random real steps, fits a world model,
trains a base policy for the environment's own objective (balance the pole), collects more real steps with that
policy (a balancing cart drifts along the track, so the data reaches where the new task goes) and fine-tunes the
model. Then it trains only a LoRA adapter on the same base (`base_run_id`) for another task, "balance with the cart
at x = TARGET" (a tracking objective, plasma.sdk.tasks), with no further real data. The base compiles to an
ADAPTABLE packet and the adapter to an ADAPTER packet of a few KB for it; the edge runtime serves the base, then
the adapter applied to it, each evaluated on the real CartPole under both objectives.

    .venv/bin/python examples/lora_training.py                  # 300 random + 1,000 policy steps, target x = 1
    .venv/bin/python examples/lora_training.py --target -1
    .venv/bin/python examples/lora_training.py --quick          # the small budget make test runs
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from plasma.common.v1 import common_pb2
from plasma.sdk import recipes, tasks
from plasma.sdk.client import PlasmaClient
from plasma.sdk.evaluate import run_episodes
from plasma.sdk.local import LocalStack
from plasma.sdk.workflow import EVAL_SEED_OFFSET
from plasma.simulator.v1 import simulator_pb2, task_pb2
from plasma.trainer.v1 import trainer_pb2

ENV_ID = "CartPole-v1"
QUICK_MODEL = simulator_pb2.WorldModelConfig(ensemble_size=3, hidden_size=64, train_steps=300)
# A small training budget: fewer and shorter planner-labelled paths than the demo's recipe.
QUICK_TRAIN = trainer_pb2.TrainConfig(
    hidden_size=32, base_paths=8, adapter_rounds=1, paths_per_round=8, horizon=100, epochs=10,
    start_states=simulator_pb2.START_STATES_ANY,
    planner=simulator_pb2.PlannerConfig(horizon=15, num_samples=32, num_iterations=2, num_elites=4),
)


def evaluate(client: PlasmaClient, task: task_pb2.TaskSpec | None, episodes: int, seed: int) -> tuple[float, float]:
    """The served packet on real episodes: mean return under `task` (None: the environment's reward) and the
    mean cart position over every step."""
    positions: list[float] = []

    def choose(observation: np.ndarray) -> np.ndarray:
        positions.append(float(observation[0]))
        return client.act(observation)

    evaluation = run_episodes(ENV_ID, episodes, seed, choose, task=task)
    return evaluation.mean_return, float(np.mean(positions))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=1.0, help="the adapter's task: the cart's target x")
    parser.add_argument("--random-steps", type=int, default=300, help="real steps with random actions")
    parser.add_argument("--policy-steps", type=int, default=1000, help="real steps with the base policy acting")
    parser.add_argument("--episodes", type=int, default=10, help="real evaluation episodes per packet and task")
    parser.add_argument("--seed", type=int, default=0, help="seeds real data collection and evaluation")
    parser.add_argument("--quick", action="store_true", help="a small budget: 300 policy steps, a small policy")
    args = parser.parse_args()
    recipe = recipes.workflow("default")
    model_config, train = recipe.world_model, recipe.train
    if args.quick:
        args.policy_steps, args.episodes, model_config, train = 300, 3, QUICK_MODEL, QUICK_TRAIN
    task = tasks.cartpole_balance_at(args.target)

    with tempfile.TemporaryDirectory(prefix="plasma-example-") as root, LocalStack(Path(root)) as stack, \
            PlasmaClient(stack.endpoints) as client:
        data = client.collect(ENV_ID, args.random_steps, args.seed)
        model = client.fit_world_model(data.dataset_id, model_config)
        first = client.train(model.model_id, train)
        data = client.collect(ENV_ID, args.policy_steps, args.seed + 1, policy=first.policy, epsilon=0.2,
                              collection_policy=simulator_pb2.COLLECTION_POLICY_MLP,
                              append_to_dataset_id=data.dataset_id)
        model = client.fit_world_model(data.dataset_id, model_config, init_from_model_id=model.model_id)
        print(f"world model {model.model_id} on {data.num_transitions} real steps ({args.random_steps} random, "
              f"{args.policy_steps} by the first policy)")

        # The base: a whole policy (base MLP + its own adapter) for the environment's objective.
        base = client.train(model.model_id, train)
        # The adapter: the base stays frozen; only new LoRA weights learn the tracking task.
        adapted = client.train(model.model_id, train, task=task, base_run_id=base.run_id)
        base_packet = client.compile(base.run_id, kind=common_pb2.PACKET_KIND_ADAPTABLE)
        adapter_packet = client.compile(adapted.run_id, kind=common_pb2.PACKET_KIND_ADAPTER,
                                        base_packet_id=base_packet.packet_id)

        seed = args.seed + EVAL_SEED_OFFSET
        print(f"{'packet':<36} {'kind':<9} {'bytes':>7} {'weights':>7} {'imagined':>8}  real return (mean x): "
              f"environment | {task.name}")
        for run, packet in ((base, base_packet), (adapted, adapter_packet)):
            served = client.deploy(client.download_packet(packet.packet_id))
            kind = common_pb2.PacketKind.Name(served.kind).removeprefix("PACKET_KIND_")
            # Weights this run trained: the base run its MLP and adapter, the task run only its adapter.
            params = run.metrics.adapter_parameters + (0 if run.base_run_id else run.metrics.base_parameters)
            own, own_x = evaluate(client, None, args.episodes, seed)
            tracked, tracked_x = evaluate(client, task, args.episodes, seed)
            label = f"{packet.packet_id} ({run.task.name or 'environment'})"
            print(f"{label:<36} {kind:<9} {packet.size_bytes:>7,} {params:>7,} {run.metrics.imagined_return:>8.1f}  "
                  f"{own:.1f} (x {own_x:+.2f}) | {tracked:.1f} (x {tracked_x:+.2f})")
        print(f"the adapter packet applies to {served.base_packet_id}: {adapter_packet.size_bytes:,} bytes instead of "
              f"another {base_packet.size_bytes:,}, over {args.episodes} real episodes per cell")


if __name__ == "__main__":
    main()
