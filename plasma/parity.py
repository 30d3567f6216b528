"""Decision agreement of a packet's graph with its fp32 reference: what the compiler's parity gate and the edge
runtime's self-test both measure, so that both judge a graph the same way. numpy only (devices import it).

A discrete policy's state is *decisive* when fp32's two best logits are at least NEAR_TIE_MARGIN apart; closer
than that, fp32 itself is undecided (a softmax split under 55/45), any rounding may flip the argmax and neither
choice is wrong, so such near-ties are counted apart and never as failures. A box action agrees when every
element is within BOX_TOLERANCE of its range of fp32's; box states are all decisive.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Logit units: exp(0.2) / (1 + exp(0.2)) = 0.55, so fp32's top action is chosen with less than 55 % probability.
NEAR_TIE_MARGIN = 0.2
# A share of each element's range: 0.2 N m of Pendulum-v1's [-2, 2] torque.
BOX_TOLERANCE = 0.05
# A device's raw outputs may be off fp32's by up to this many times the error the compiler measured for the same
# graph on the same observations (different kernels round differently), plus OUTPUT_ERROR_FLOOR of the outputs'
# scale (for float graphs, whose error on the compiler is ~0). Beyond it the device's arithmetic is not what the
# compiler checked: int8 sums that saturate on x86 without VNNI were 10-20x off.
OUTPUT_ERROR_FACTOR = 2.0
OUTPUT_ERROR_FLOOR = 1e-3


@dataclass(frozen=True)
class Agreement:
    states: int
    near_ties: int
    agreeing: int  # decisive states where the candidate gives fp32's action
    max_abs_diff: float  # over the raw outputs of all states

    @property
    def decisive(self) -> int:
        return self.states - self.near_ties

    @property
    def share(self) -> float:
        """Share of decisive states that agree; 1.0 when no state is decisive (nothing could disagree)."""
        return self.agreeing / self.decisive if self.decisive else 1.0

    def describe(self) -> str:
        return (f"{self.share:.1%} of {self.decisive} decisive states ({self.near_ties} near-ties apart), "
                f"max |diff| {self.max_abs_diff:.4f}")


def allowed_output_error(reference_output: np.ndarray, compiler_output: np.ndarray) -> float:
    """The largest |device - fp32| over raw outputs that still computes what the compiler checked."""
    compiler_error = float(np.abs(np.asarray(compiler_output, np.float64) - reference_output).max(initial=0.0))
    scale = max(1.0, float(np.abs(reference_output).max(initial=0.0)))
    return OUTPUT_ERROR_FACTOR * compiler_error + OUTPUT_ERROR_FLOOR * scale


def decisive(reference_output: np.ndarray, discrete: bool) -> np.ndarray:
    """[n] bool: the states whose fp32 decision is not a near-tie (raw outputs [n, width])."""
    if not discrete or reference_output.shape[1] < 2:
        return np.ones(reference_output.shape[0], dtype=bool)
    top_two = np.sort(reference_output, axis=1)[:, -2:]
    clear: np.ndarray = (top_two[:, 1] - top_two[:, 0]) >= NEAR_TIE_MARGIN
    return clear


def agreement(
    reference_output: np.ndarray,
    reference_action: np.ndarray,
    output: np.ndarray,
    action: np.ndarray,
    *,
    discrete: bool,
    action_span: np.ndarray | None = None,
) -> Agreement:
    """A candidate's (output [n, width], action [n] or [n, act_dim]) against fp32's on the same n states.

    `action_span` [act_dim] is high - low of a box action space (unused for discrete actions)."""
    mask = decisive(reference_output, discrete)
    if discrete:
        same = np.asarray(action) == np.asarray(reference_action)
    else:
        if action_span is None:
            raise ValueError("a box action needs its span (high - low) to compare actions")
        limit = BOX_TOLERANCE * np.asarray(action_span, dtype=np.float64)
        gap = np.abs(np.asarray(action, np.float64) - np.asarray(reference_action, np.float64))
        same = np.all(gap <= limit, axis=1)
    diff = float(np.abs(np.asarray(output, np.float64) - np.asarray(reference_output, np.float64)).max(initial=0.0))
    return Agreement(states=int(mask.size), near_ties=int((~mask).sum()), agreeing=int((same & mask).sum()),
                     max_abs_diff=diff)


def hardest_decisive(reference_output: np.ndarray, discrete: bool, count: int) -> np.ndarray:
    """Indices of up to `count` decisive states whose fp32 decision is closest to a tie: where kernels that
    compute differently flip decisions first. Box actions have no margin: the first `count` states."""
    mask = decisive(reference_output, discrete)
    indices = np.flatnonzero(mask)
    if not discrete or reference_output.shape[1] < 2:
        return indices[:count]
    top_two = np.sort(reference_output[indices], axis=1)[:, -2:]
    return indices[np.argsort(top_two[:, 1] - top_two[:, 0], kind="stable")[:count]]
