"""Changed CartPoles as registered Gymnasium ids: the "real" systems of docs/feedback-loop.md, which differ from the
CartPole-v1 a policy learned on. Registered when this module is imported, which Gymnasium does itself for an id
written `plasma.sdk.variants:plasma/CartPoleHeavy-v0`, so `run_episodes`, `plasma evaluate --env` and any
`gym.make` take them as they are. Only a device (a test or bench driving the env) and evaluation ever step them:
the simulator sees them only through the transitions the edge recorded.
"""

from __future__ import annotations

from typing import Any

from gymnasium.envs.classic_control.cartpole import CartPoleEnv
from gymnasium.envs.registration import register, registry

# id -> physics set on CartPoleEnv (CartPole-v1: masscart 1.0, masspole 0.1, length 0.5 (half the pole), force_mag 10).
# A balancing policy shrugs off moderate changes (docs/feedback-loop.md has the figures); these are the ones that hurt.
VARIANTS: dict[str, dict[str, float]] = {
    # The actuator pushes the other way (a motor wired with its polarity reversed): every learned action is wrong.
    "plasma/CartPoleReversed-v0": {"force_mag": -10.0},
    # A cart 50 times heavier, and a motor 33 times weaker: the cart drifts off the track under any policy we tried.
    "plasma/CartPoleHeavy-v0": {"masscart": 50.0},
    "plasma/CartPoleWeak-v0": {"force_mag": 0.3},
}
# How to name them so that Gymnasium imports this module first.
PREFIX = f"{__name__}:"


def cartpole(render_mode: str | None = None, **physics: float) -> CartPoleEnv:
    """CartPoleEnv with `physics` set, and the quantities CartPoleEnv derives from them in __init__ updated."""
    env = CartPoleEnv(render_mode=render_mode)
    for name, value in physics.items():
        if not hasattr(env, name):
            raise ValueError(f"CartPoleEnv has no physical parameter {name!r}")
        setattr(env, name, float(value))
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length
    return env


def _register() -> None:
    for env_id, physics in VARIANTS.items():
        if env_id not in registry:
            kwargs: dict[str, Any] = dict(physics)
            # CartPole-v1's episode limit and solved threshold, so returns compare one to one.
            register(id=env_id, entry_point=f"{__name__}:cartpole", kwargs=kwargs, max_episode_steps=500,
                     reward_threshold=475.0)


_register()
