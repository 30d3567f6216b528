"""Torch thread settings: several services on a 2-core machine must not oversubscribe it."""

from __future__ import annotations

import contextlib

import torch


def configure_torch(num_threads: int) -> None:
    torch.set_num_threads(num_threads)
    # Inter-op threads can only be set before any parallel work starts in the process.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
