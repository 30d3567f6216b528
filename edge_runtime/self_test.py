"""A packet's self-test on this device: its observations through the graph with this CPU's kernels, judged
against fp32's reference answers as the compiler judged it (plasma.parity), before the packet may serve.

int8 kernels differ between CPUs (x86 with and without VNNI, ARM with and without dot-product instructions);
the compiler's parity check ran on the compiler's CPU, and this is where the device's own arithmetic answers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plasma import packet, parity
from plasma.spaces import Space

# numpy's names for the CPU features int8 and float kernels dispatch on (x86, then Arm).
_RELEVANT = ("SSE41", "AVX", "AVX2", "FMA3", "AVX512F", "AVX512BW", "AVX512VNNI", "AVX512_SPR",
             "ASIMD", "ASIMDHP", "ASIMDDP", "SVE")


@dataclass(frozen=True)
class Report:
    agreement: parity.Agreement  # its max_abs_diff: the largest |this CPU's output - fp32's|
    min_agreement: float
    allowed_output_error: float  # parity.allowed_output_error for the compiler's own outputs
    max_abs_diff_from_compiler: float

    @property
    def passed(self) -> bool:
        return (self.agreement.share >= self.min_agreement
                and self.agreement.max_abs_diff <= self.allowed_output_error)

    def describe(self) -> str:
        return (f"decides like fp32 on {self.agreement.describe()} (the packet's gate: {self.min_agreement:.1%}; "
                f"outputs may be off fp32's by {self.allowed_output_error:.4f}); max |diff| from the compiler's own "
                f"outputs {self.max_abs_diff_from_compiler:.4f}")


Answer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]  # observations -> (action, output)


def run(test: packet.SelfTest, answer: Answer, discrete: bool, action_space: Space) -> Report:
    """`answer` runs the graph under test, here on one observation at a time as a control loop sends them (the
    answers of a graph with dynamic int8 activations depend on the batch; the compiler judges them this way too)."""
    rows = [answer(test.observations[i : i + 1]) for i in range(len(test.observations))]
    action, output = np.concatenate([a for a, _ in rows]), np.concatenate([o for _, o in rows])
    span = None if discrete else np.subtract(action_space.high, action_space.low)
    result = parity.agreement(test.reference_output, test.reference_action, output, action, discrete=discrete,
                              action_span=span)
    drift = float(np.abs(np.asarray(output, np.float64) - test.expected_output).max(initial=0.0))
    allowed = parity.allowed_output_error(test.reference_output, test.expected_output)
    return Report(result, test.min_agreement, allowed, drift)


@functools.cache
def cpu_features() -> tuple[str, ...]:
    """The relevant features numpy detected at run time (it asks the CPU itself, so an emulated CPU reports its
    own), plus AVX_VNNI from /proc/cpuinfo, which numpy does not detect."""
    from numpy._core._multiarray_umath import __cpu_features__  # numpy's run-time dispatch table

    found = [name for name in _RELEVANT if __cpu_features__.get(name)]
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")),
                     "")
    except OSError:
        flags = ""
    if " avx_vnni" in flags:
        found.append("AVX_VNNI")
    return tuple(found)
