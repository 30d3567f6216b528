"""A custom Gymnasium environment learned end to end: WaterTank-v0 (water_tank.py), a system Plasma never saw.

The environment is registered with gymnasium.register in this process only, and it stays here: this script steps
it with random actions, uploads the logged transitions (UploadTransitions), fits a world model on them, trains a
policy for the tank's objective stated as a TaskSpec, compiles and deploys the packet, and runs the tank here with
the edge runtime choosing every pump command.

Why upload instead of asking the simulator to collect (CollectTransitions with env_id "WaterTank-v0"): the
services are separate processes, often machines or containers, that only make environments registered in their
own process, and they refuse "module:Env" ids (plasma/ids.py), which would make gymnasium import a module named by
a request. A user with a real pump and tank has no Gymnasium environment for a server to step anyway: they log
what their system does where it runs, upload it, and describe the objective as data (a tracking TaskSpec), so no
user code runs on the server. The Gymnasium environment here stands in for that system.

    .venv/bin/python examples/custom_env/train_tank.py            # 1,000 logged steps, the demo's training recipe
    .venv/bin/python examples/custom_env/train_tank.py --quick    # the small budget make test runs
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import water_tank  # beside this script, whose directory Python puts on sys.path

from plasma.common.v1 import common_pb2
from plasma.sdk import recipes
from plasma.sdk.client import PlasmaClient
from plasma.sdk.evaluate import random_baseline, run_episodes
from plasma.sdk.local import LocalStack
from plasma.sdk.workflow import EVAL_SEED_OFFSET
from plasma.simulator.v1 import simulator_pb2, task_pb2
from plasma.trainer.v1 import trainer_pb2

QUICK_MODEL = simulator_pb2.WorldModelConfig(ensemble_size=3, hidden_size=64, train_steps=300)
QUICK_TRAIN = trainer_pb2.TrainConfig(
    hidden_size=32, base_paths=8, adapter_rounds=1, paths_per_round=8, horizon=100, epochs=10,
    start_states=simulator_pb2.START_STATES_ANY,
    planner=simulator_pb2.PlannerConfig(horizon=15, num_samples=32, num_iterations=2, num_elites=4),
)
# The tank's reward and spill as data: the simulator applies it to imagined states, the same formula as the env's.
TASK = task_pb2.TaskSpec(name="tank-level=0.5", tracking=task_pb2.TrackingObjective(
    target_observation=[water_tank.TARGET_LEVEL, 0.0], state_weights=[water_tank.LEVEL_WEIGHT, 0.0],
    action_weights=[water_tank.COMMAND_WEIGHT], alive_bonus=1.0,
    terminate_below=[-math.inf, -math.inf], terminate_above=[water_tank.SPILL_LEVEL, math.inf],
))


def box(space: gym.spaces.Box) -> common_pb2.Space:
    return common_pb2.Space(kind=common_pb2.SPACE_KIND_BOX, shape=list(space.shape),
                            low=space.low.ravel().tolist(), high=space.high.ravel().tolist())


def log_random_steps(env: gym.Env, steps: int, seed: int) -> dict[str, np.ndarray]:
    """What a data logger beside the real tank would record: `steps` transitions under random pump commands."""
    env.action_space.seed(seed)
    rows: dict[str, list] = {key: [] for key in ("observations", "actions", "rewards", "next_observations",
                                                 "terminated", "truncated")}
    observation, _ = env.reset(seed=seed)
    for _ in range(steps):
        action = env.action_space.sample()
        next_observation, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(rows, (observation, action, reward, next_observation, terminated, truncated),
                              strict=True):
            rows[key].append(value)
        observation = env.reset()[0] if terminated or truncated else next_observation
    dtypes = {"terminated": bool, "truncated": bool}
    return {key: np.asarray(values, dtype=dtypes.get(key, np.float32)) for key, values in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000, help="logged real steps (random pump commands)")
    parser.add_argument("--episodes", type=int, default=20, help="real evaluation episodes")
    parser.add_argument("--seed", type=int, default=0, help="seeds logging and evaluation")
    parser.add_argument("--quick", action="store_true", help="a small budget: 500 steps, small model and policy")
    args = parser.parse_args()
    recipe = recipes.workflow("default")
    model_config, train = recipe.world_model, recipe.train
    if args.quick:
        args.steps, args.episodes, model_config, train = 500, 5, QUICK_MODEL, QUICK_TRAIN

    water_tank.register()
    env = gym.make(water_tank.ENV_ID)
    spec = common_pb2.EnvSpec(env_id=water_tank.ENV_ID, observation_space=box(env.observation_space),
                              action_space=box(env.action_space))
    arrays = log_random_steps(env, args.steps, args.seed)
    print(f"logged {args.steps} steps of {water_tank.ENV_ID} under random commands: "
          f"{int(arrays['terminated'].sum())} spills")

    with tempfile.TemporaryDirectory(prefix="plasma-example-") as root, LocalStack(Path(root)) as stack, \
            PlasmaClient(stack.endpoints) as client:
        dataset = client.upload(spec, arrays, name="water-tank")
        model = client.fit_world_model(dataset.dataset_id, model_config)
        print(f"uploaded {dataset.dataset_id} ({dataset.num_episodes} episodes); world model {model.model_id}: "
              f"held-out MSE {model.metrics.holdout_obs_mse:.2e} (naive {model.metrics.holdout_naive_obs_mse:.2e})")
        run = client.train(model.model_id, train, task=TASK)
        packet = client.compile(run.run_id, name="water-tank")
        served = client.deploy(client.download_packet(packet.packet_id))
        print(f"run {run.run_id}: imagined return {run.metrics.imagined_return:.1f}; packet {packet.packet_id} "
              f"({packet.size_bytes:,} bytes, {served.precision}) served by the edge runtime")

        # Evaluation on the tank itself, the edge runtime choosing every command; returns are the env's rewards.
        seed = args.seed + EVAL_SEED_OFFSET
        positions: list[float] = []

        def choose(observation: np.ndarray) -> np.ndarray:
            positions.append(float(observation[0]))
            return client.act(observation)

        policy = run_episodes(water_tank.ENV_ID, args.episodes, seed, choose)
    random = random_baseline(water_tank.ENV_ID, args.episodes, seed)
    # A fixed command that holds the set point once reached: flow = drain at the target level.
    hold = math.sqrt(water_tank.TARGET_LEVEL) * water_tank.DRAIN / water_tank.INFLOW
    fixed = run_episodes(water_tank.ENV_ID, args.episodes, seed, lambda _: np.array([hold], np.float32))
    print(f"mean real return over {args.episodes} episodes of {water_tank.MAX_STEPS} steps: packet "
          f"{policy.mean_return:.1f} ± {policy.std_return:.1f} (level {np.mean(positions):.3f} ± "
          f"{np.std(positions):.3f}), fixed command {hold:.3f}: {fixed.mean_return:.1f}, random commands: "
          f"{random.mean_return:.1f}")


if __name__ == "__main__":
    main()
