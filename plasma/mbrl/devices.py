"""Which torch device the world model and the policy compute on (PLASMA_SIMULATOR_DEVICE, PLASMA_TRAINER_DEVICE;
docs/gpu.md), and the seeded generators that keep results repeatable on it.

Models are always built and initialised on the CPU, then moved: the same seed gives the same initial weights on
every device. What leaves the process (protos, checkpoints, bundles, saved models) is on the CPU.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from plasma import log as plog

log = plog.get(__name__)

CPU = torch.device("cpu")
CHOICES = ("cpu", "cuda", "auto")


def resolve(choice: str) -> torch.device:
    """The device for a setting: "cpu"; "cuda" (ValueError without a CUDA GPU: a GPU asked for is never
    silently replaced by the CPU); "auto", the GPU where torch sees one, else the CPU."""
    choice = choice.strip().lower()
    if choice not in CHOICES:
        raise ValueError(f"expected one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "cpu":
        return CPU
    if torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    elif choice == "cuda":
        raise ValueError(
            f"cuda was asked for, but torch sees no CUDA GPU (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda or 'none'}; CUDA_VISIBLE_DEVICES and the driver decide what it sees); "
            "use cpu, or auto to use a GPU only where there is one"
        )
    else:
        device = CPU
    if choice == "auto":
        log.info("device auto resolved to %s (%s)", device, describe(device))
    return device


def describe(device: torch.device) -> str:
    """The device's hardware name, for logs and benchmark tables."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A generator on `device` seeded with `seed`: sampling on a device needs one of its own (a CUDA generator
    draws other numbers than a CPU one for the same seed, so results repeat per device, not across devices)."""
    return torch.Generator(device=device).manual_seed(seed)
