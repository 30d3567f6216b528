"""Torch thread settings: several services on a 2-core machine must not oversubscribe it."""

from __future__ import annotations

import torch


def configure_torch(num_threads: int) -> None:
    torch.set_num_threads(num_threads)
    # Inter-op threads can only be set before any parallel work starts in the process.
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
