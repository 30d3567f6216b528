"""Plain-array types that cross module boundaries inside the services (the protos carry them on the wire)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Transitions:
    """Real transitions, one row per environment step.

    obs [N, obs_dim] float32; actions [N] int64 (discrete) or [N, act_dim] float32 (box);
    rewards [N] float32; next_obs [N, obs_dim] float32; terminated [N] bool; truncated [N] bool;
    episode_ids [N] int64 (rows of one episode are contiguous and in order).
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.obs.shape[0])


@dataclass
class MlpWeights:
    """A feed-forward policy by its weights: x = (obs - obs_mean) / obs_std, then Linear/activation layers.

    weights[i] is [out, in]; biases[i] is [out]; the activation ("tanh", "relu", "silu") sits between
    layers, not after the last. Output: logits (discrete; action = argmax) or pre-squash values (box;
    action = low + (tanh(y) + 1) / 2 * (high - low)).
    """

    weights: list[np.ndarray]
    biases: list[np.ndarray]
    activation: str
    obs_mean: np.ndarray
    obs_std: np.ndarray


@dataclass(frozen=True)
class AuditFinding:
    """The first step at which one audit reason fired: "ensemble_disagreement", "out_of_support",
    "impossible_reward" or "impossible_jump"; value and threshold in that reason's units."""

    reason: str
    step: int
    value: float
    threshold: float
    detail: str


@dataclass
class PathAuditResult:
    """The audit's verdict on a phantom path: "pass", "truncate" (trust the first valid_steps steps) or
    "reject"; penalized_rewards [T] float32 = rewards - coefficient * disagreement (MOPO)."""

    verdict: str
    valid_steps: int
    findings: list[AuditFinding]
    penalized_rewards: np.ndarray
    penalized_return: float


@dataclass
class PhantomPath:
    """One imagined trajectory of T steps.

    observations [T + 1, obs_dim] float32; actions [T] int64 or [T, act_dim] float32; rewards [T] float32;
    dones [T] bool (only the last can be true); uncertainty [T] float32;
    expert_actions like actions, or None when the path was not labelled by the planner;
    audit: the simulator's verdict, None when the path was not audited; members [T] int64: the ensemble
    member each step followed, None when not recorded.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    uncertainty: np.ndarray
    expert_actions: np.ndarray | None = None
    audit: PathAuditResult | None = None
    members: np.ndarray | None = None

    @property
    def length(self) -> int:
        return int(self.rewards.shape[0])


@dataclass(frozen=True)
class TrackingSpec:
    """Quadratic tracking around a target state (the proto's TrackingObjective; see task.proto).

    reward = alive_bonus - sum_i state_weights[i] * (next_obs[i] - target_observation[i])^2
                         - sum_j action_weights[j] * (action[j] - target_action[j])^2;
    a path terminates once next_obs leaves [terminate_below, terminate_above]. Empty tuples: no action
    cost, zero target action, no bound on that side.
    """

    target_observation: tuple[float, ...]
    state_weights: tuple[float, ...]
    action_weights: tuple[float, ...] = ()
    target_action: tuple[float, ...] = ()
    alive_bonus: float = 0.0
    terminate_below: tuple[float, ...] = ()
    terminate_above: tuple[float, ...] = ()


@dataclass(frozen=True)
class TaskSpecData:
    """What a policy should achieve (the proto's TaskSpec): objective "environment" (the env's own reward
    and termination), "learned" (the world model's heads) or "tracking" (with `tracking` set)."""

    objective: str
    name: str = ""
    tracking: TrackingSpec | None = None

    @property
    def label(self) -> str:
        """The name, or the objective's kind when the spec has none."""
        return self.name or self.objective
