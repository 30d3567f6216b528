"""The machine a benchmark ran on, as docs/benchmarks.md records it: the command, CPU flags and load."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

# The flags that decide torch's and onnxruntime's kernels, as `grep -o -w -E '...' /proc/cpuinfo | sort -u` lists them.
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile")


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """FLAGS present on this CPU, sorted as `sort -u` sorts them."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    present = {word for line in cpuinfo.splitlines() if line.startswith("flags") for word in line.split()}
    return sorted(flag for flag in FLAGS if flag in present)


def load() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def describe(module: str) -> str:
    """One block: the command as typed, the CPU's flags, its cores and the load now."""
    return (f"command: {shlex.join([Path(sys.executable).name, '-m', module, *sys.argv[1:]])}\n"
            f"CPU flags: {' '.join(cpu_flags()) or 'none of ' + ' '.join(FLAGS)}; {os.cpu_count()} cores\n"
            f"load average: {load()}")
