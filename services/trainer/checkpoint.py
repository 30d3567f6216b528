"""A run's training state as one safetensors file, so that a restarted trainer resumes where it stopped.

Tensors: base/<name> (base network), adapter/<name> (LoRA weights), labels/obs, labels/actions,
rng/generator (the run's shuffling generator). Metadata: the progress event of the checkpoint, the
policy spec and the phantom paths/steps used so far. safetensors loads no code, unlike a pickle.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from plasma.mbrl.algorithms.base import Progress
from plasma.mbrl.algorithms.distill import TrainState
from plasma.mbrl.policy_net import PolicySpec

FORMAT = "plasma-train-state-1"


def pack(state: TrainState) -> bytes:
    tensors = {
        **{f"base/{k}": v for k, v in state.base_state.items()},
        **{f"adapter/{k}": v for k, v in state.adapter_state.items()},
        "labels/obs": torch.from_numpy(np.ascontiguousarray(state.label_obs)),
        "labels/actions": torch.from_numpy(np.ascontiguousarray(state.label_actions)),
        "rng/generator": state.generator_rng,
    }
    metadata = {
        "format": FORMAT,
        "progress": json.dumps(dataclasses.asdict(state.progress)),
        "spec": state.spec.to_json(),
        "paths_used": str(state.paths_used),
        "steps_used": str(state.steps_used),
    }
    return save_safetensors({k: v.detach().contiguous() for k, v in tensors.items()}, metadata=metadata)


def unpack(data: bytes) -> TrainState:
    """Reads a checkpoint; raises ValueError when it is not one this trainer wrote."""
    try:
        tensors = load_safetensors(data)
        metadata = _metadata(data)
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise ValueError(f"the checkpoint is not a readable safetensors file: {exc}") from exc
    if metadata.get("format") != FORMAT:
        raise ValueError(f"the checkpoint has format {metadata.get('format')!r}, expected {FORMAT!r}")

    def group(prefix: str) -> dict[str, torch.Tensor]:
        return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}

    return TrainState(
        progress=_progress(json.loads(metadata["progress"])),
        spec=PolicySpec.from_json(metadata["spec"]),
        base_state=group("base/"),
        adapter_state=group("adapter/"),
        label_obs=tensors["labels/obs"].numpy(),
        label_actions=tensors["labels/actions"].numpy(),
        paths_used=int(metadata["paths_used"]),
        steps_used=int(metadata["steps_used"]),
        generator_rng=tensors["rng/generator"],
    )


def _progress(raw: dict) -> Progress:
    """A checkpoint's progress event; those written before Progress had `figures` name loss and agreement."""
    figures = raw.pop("figures", {})
    for name in ("loss", "planner_agreement"):
        if name in raw:
            figures[name] = raw.pop(name)
    return Progress(**raw, figures=figures)


def _metadata(data: bytes) -> dict[str, str]:
    # safetensors layout: 8-byte little-endian header length, then the JSON header with "__metadata__".
    length = int.from_bytes(data[:8], "little")
    return dict(json.loads(data[8 : 8 + length]).get("__metadata__", {}))
