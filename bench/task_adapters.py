"""One world model, one base policy, one LoRA adapter per task: trained, compiled and served through the
four services (as local processes), each packet evaluated on the real CartPole under every task's reward.

    .venv/bin/python -m bench.task_adapters --seed 0

Data: `--random-steps` random real steps, then `--policy-steps` collected by the first policy (epsilon
random): a balancing policy drifts along the track, so the data covers the cart away from the centre,
which random episodes (about 20 steps each) never reach. The base run is trained for the environment's
own task on that data; the task runs reuse its base (base_run_id) and train only an adapter each, with no
further real data. The base compiles to an ADAPTABLE packet, each task to an ADAPTER packet for it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

from plasma.common.v1 import common_pb2
from plasma.sdk import recipes, tasks
from plasma.sdk.client import PlasmaClient
from plasma.sdk.local import LocalStack
from plasma.simulator.v1 import simulator_pb2, task_pb2

ENV_ID = "CartPole-v1"
EPISODES = 10
# Evaluation seeds, far from collection seeds.
EVAL_SEED = 1_000_000


def _evaluate(client: PlasmaClient, task: task_pb2.TaskSpec | None, seed: int) -> tuple[float, float]:
    """Mean return under `task`'s reward (the environment's when None) and mean cart x over the last 100 steps
    of each episode, with the served packet acting."""
    env = gym.make(ENV_ID)
    returns, final_x = [], []
    for episode in range(EPISODES):
        obs, _ = env.reset(seed=seed + episode)
        total, xs, done = 0.0, [], False
        while not done:
            action = int(client.act(np.asarray(obs, dtype=np.float32)))
            previous = obs
            obs, reward, terminated, truncated, _ = env.step(action)
            if task is not None:
                reward = float(tasks.real_reward(task, previous, action, obs))
                terminated = terminated or bool(tasks.left_bounds(task, obs))
            total += float(reward)
            xs.append(float(obs[0]))
            done = terminated or truncated
        returns.append(total)
        final_x.append(float(np.mean(xs[-100:])))
    env.close()
    return float(np.mean(returns)), float(np.mean(final_x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-steps", type=int, default=1000)
    parser.add_argument("--policy-steps", type=int, default=1000)
    parser.add_argument("--targets", type=float, nargs="+", default=[1.0, -1.0])
    args = parser.parse_args()
    train = recipes.workflow("default").train
    task_specs = {f"cartpole-x={x:g}": tasks.cartpole_balance_at(x) for x in args.targets}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="plasma-tasks-") as root, LocalStack(Path(root)) as stack, \
            PlasmaClient(stack.endpoints) as client:
        data = client.collect(ENV_ID, args.random_steps, args.seed)
        model = client.fit_world_model(data.dataset_id)
        first = client.train(model.model_id, train)
        data = client.collect(ENV_ID, args.policy_steps, args.seed + 1, policy=first.policy,
                              collection_policy=simulator_pb2.COLLECTION_POLICY_MLP, epsilon=0.2,
                              append_to_dataset_id=data.dataset_id)
        model = client.fit_world_model(data.dataset_id, init_from_model_id=model.model_id)
        base = client.train(model.model_id, train)
        runs = {"environment": base}
        for name, spec in task_specs.items():
            runs[name] = client.train(model.model_id, train, task=spec, base_run_id=base.run_id)
        base_packet = client.compile(base.run_id, kind=common_pb2.PACKET_KIND_ADAPTABLE)
        packets = {"environment": base_packet}
        for name in task_specs:
            packets[name] = client.compile(runs[name].run_id, kind=common_pb2.PACKET_KIND_ADAPTER,
                                           base_packet_id=base_packet.packet_id)
        rows = []
        for name, packet in packets.items():
            client.deploy(client.download_packet(packet.packet_id))
            scores = {task: _evaluate(client, spec, EVAL_SEED) for task, spec in
                      [("environment", None), *task_specs.items()]}
            rows.append((name, common_pb2.PacketKind.Name(packet.kind), packet.size_bytes,
                         runs[name].metrics.adapter_parameters, scores))
    print(f"\n{ENV_ID}, seed {args.seed}: {data.num_transitions} real steps in all ({args.random_steps} random + "
          f"{args.policy_steps} by the first policy), one world model, one base; {EPISODES} real episodes per cell; "
          f"{time.monotonic() - started:.0f} s")
    task_names = ["environment", *task_specs]
    print("packet trained for | kind | bytes | adapter params | " + " | ".join(
        f"return under {t} (mean x, last 100 steps)" for t in task_names))
    for name, kind, size, params, scores in rows:
        cells = " | ".join(f"{scores[t][0]:.1f} (x {scores[t][1]:+.2f})" for t in task_names)
        print(f"{name} | {kind} | {size:,} | {params:,} | {cells}")
    flags = [f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
             for k, v in vars(args).items()]
    print("command: .venv/bin/python -m bench.task_adapters " + " ".join(flags))


if __name__ == "__main__":
    main()
