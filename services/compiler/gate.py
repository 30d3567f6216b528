"""The parity gate: does a candidate graph act like the fp32 policy where it matters?

A candidate passes when, in closed loop in the run's world model (closed_loop.py):
1. on the decisive states that fp32's and the candidate's own paths visit (and the trainer's held-out phantom
   states), it takes fp32's decision on at least `min_agreement` of them (plasma.parity: near-ties apart);
2. its paths earn a mean return no more than RETURN_TOLERANCE below fp32's, relative to the size of fp32's
   returns (the mean over paths of the summed |reward|, which does not cancel when rewards change sign);
3. on the packet's self-test observations it also reaches `min_agreement` on this CPU, as a device will be
   asked to.

The self-test observations (SELF_TEST_HARDEST + SELF_TEST_RANDOM of them) are, first, the decisive states closest
to a tie among those where the candidate decides like fp32 here: a device whose kernels compute what this CPU's
do agrees on all of them, and one whose kernels compute differently (int8 sums that saturate, say) flips them
first; then states drawn at random from everything visited, which measure agreement where the policy goes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plasma import parity
from services.compiler.closed_loop import Rollouts, Scenario, rollout
from services.compiler.export import Graph

# A candidate may lose up to 5 % of fp32's closed-loop return (e.g. 25 of CartPole's 500).
RETURN_TOLERANCE = 0.05
# Self-test observations (see above).
SELF_TEST_HARDEST = 24
SELF_TEST_RANDOM = 24


@dataclass(frozen=True)
class Reference:
    """The fp32 policy's behaviour that every candidate is held to."""

    graph: Graph
    rollouts: Rollouts
    held_out: np.ndarray  # [n, obs_dim] the trainer's held-out phantom states of the final policy
    discrete: bool
    action_span: np.ndarray | None  # [act_dim] high - low of a box action
    seed: int

    @classmethod
    def measure(cls, graph: Graph, scenario: Scenario, held_out: np.ndarray, discrete: bool,
                action_span: np.ndarray | None, seed: int) -> Reference:
        return cls(graph, rollout(scenario, graph.act), held_out, discrete, action_span, seed)

    @property
    def return_scale(self) -> float:
        return float(self.rollouts.magnitudes.mean())

    def compare(self, candidate: Graph, states: np.ndarray,
                per_row: bool = False) -> tuple[parity.Agreement, np.ndarray]:
        """The candidate's agreement with fp32 on `states`, and its raw outputs there."""
        reference_action, reference_output = self.graph.run(states)
        action, output = candidate.run(states, per_row)
        result = parity.agreement(reference_output, reference_action, output, action, discrete=self.discrete,
                                  action_span=self.action_span)
        return result, output


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str  # "" when passed
    agreement: parity.Agreement  # on the visited states
    closed_loop_return: float
    self_test: parity.Agreement
    self_test_observations: np.ndarray  # [m, obs_dim]
    self_test_output: np.ndarray  # [m, width] the candidate's raw outputs on them

    def describe(self) -> str:
        return (f"agreement {self.agreement.describe()}; closed-loop return {self.closed_loop_return:.1f}; "
                f"self-test {self.self_test.share:.1%}")


def judge(candidate: Graph, reference: Reference, scenario: Scenario, min_agreement: float) -> Verdict:
    rollouts = rollout(scenario, candidate.act)
    visited = np.concatenate([reference.rollouts.states, rollouts.states, reference.held_out])
    agreement, _ = reference.compare(candidate, visited)
    observations = _self_test_observations(candidate, reference, visited)
    # One observation per call, as the edge runs a self-test.
    self_test, self_test_output = reference.compare(candidate, observations, per_row=True)
    loss = reference.rollouts.mean_return - rollouts.mean_return
    allowed = RETURN_TOLERANCE * reference.return_scale
    problems = []
    if agreement.share < min_agreement:
        problems.append(f"decision agreement {agreement.share:.1%} < {min_agreement:.1%} on "
                        f"{agreement.decisive} decisive visited states")
    if loss > allowed:
        problems.append(f"closed-loop return {rollouts.mean_return:.2f} is {loss:.2f} below fp32's "
                        f"{reference.rollouts.mean_return:.2f} (allowed {allowed:.2f})")
    if self_test.share < min_agreement:
        problems.append(f"self-test agreement {self_test.share:.1%} < {min_agreement:.1%}")
    return Verdict(not problems, "; ".join(problems), agreement, rollouts.mean_return, self_test, observations,
                   self_test_output)


def _self_test_observations(candidate: Graph, reference: Reference, visited: np.ndarray) -> np.ndarray:
    reference_action, reference_output = reference.graph.run(visited)
    action, _ = candidate.run(visited)
    if reference.discrete:
        agrees = action == reference_action
    else:
        assert reference.action_span is not None  # set for every box action space
        gap = np.abs(action - reference_action) <= parity.BOX_TOLERANCE * reference.action_span
        agrees = gap.all(axis=1)
    hardest = np.flatnonzero(agrees)[parity.hardest_decisive(reference_output[agrees], reference.discrete,
                                                             SELF_TEST_HARDEST)]
    rest = np.setdiff1d(np.arange(len(visited)), hardest)
    drawn = np.random.default_rng(reference.seed).permutation(rest)[:SELF_TEST_RANDOM]
    return visited[np.sort(np.concatenate([hardest, drawn]))]
