"""WaterTank-v0: a pump fills a tank that drains through an orifice; keep the level at the set point.

A stand-in for a user's own system, in plain Gymnasium and NumPy (nothing from Plasma):

    observation  [level, pump flow], both in [0, 1] (share of the tank's height, of the pump's full flow)
    action       [pump command] in [0, 1]
    dynamics     the pump's flow follows its command with a lag (it spins up and down); the level rises with the
                 flow and drains with sqrt(level) (Torricelli), plus a small random demand; one step is 1 s
    reward       1 - 4 (level - 0.5)^2 - 0.05 command^2 per step (staying in business, near half full, cheaply)
    termination  the tank spills (level above 0.98); episodes are cut at 200 steps

The reward is a quadratic tracking objective, so Plasma can compute it exactly on imagined states from a TaskSpec
(see train_tank.py) without running this code. Random commands average 0.5, about 40 % more than holding the level
at the set point needs, so a random pump spills the tank within a few dozen steps.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "WaterTank-v0"
MAX_STEPS = 200
TARGET_LEVEL = 0.5
LEVEL_WEIGHT = 4.0
COMMAND_WEIGHT = 0.05
SPILL_LEVEL = 0.98

PUMP_LAG = 0.3  # share of the gap between command and flow closed per step
INFLOW = 0.08  # level gained per step at full flow
DRAIN = 0.04  # level lost per step at sqrt(level) = 1
DEMAND_STD = 0.003


class WaterTankEnv(gym.Env[np.ndarray, np.ndarray]):
    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self._level, self._flow = 0.0, 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._level, self._flow = float(self.np_random.uniform(0.1, 0.9)), 0.0
        return self._observation(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        command = float(np.clip(np.asarray(action).reshape(-1)[0], 0.0, 1.0))
        self._flow += PUMP_LAG * (command - self._flow)
        demand = self.np_random.normal(0.0, DEMAND_STD)
        self._level = float(np.clip(self._level + INFLOW * self._flow - DRAIN * np.sqrt(self._level) + demand,
                                    0.0, 1.0))
        reward = 1.0 - LEVEL_WEIGHT * (self._level - TARGET_LEVEL) ** 2 - COMMAND_WEIGHT * command**2
        return self._observation(), reward, self._level > SPILL_LEVEL, False, {}

    def _observation(self) -> np.ndarray:
        return np.array([self._level, self._flow], dtype=np.float32)


def register() -> None:
    """Makes `gymnasium.make("WaterTank-v0")` work in this process (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=WaterTankEnv, max_episode_steps=MAX_STEPS)
