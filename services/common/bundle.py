"""The policy bundle the trainer exports and the compiler consumes.

A zip archive holding:
  spec.json                         PolicySpec of the base network
  base.safetensors                  base network weights (state_dict)
  adapter/adapter_config.json       peft LoRA adapter, as `save_pretrained` writes it
  adapter/adapter_model.safetensors
  parity_observations.npy           [n, obs_dim] float32 phantom states held out from training,
                                    for the compiler's int8-vs-fp32 parity check
  run.json                          provenance: run id, model id, library versions
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from plasma.mbrl.policy_net import PolicyNet, PolicySpec

MEDIA_TYPE = "application/vnd.plasma.policy-bundle+zip"
# Fixed timestamps make the archive's bytes (and so its sha256) depend only on its content.
_ZIP_EPOCH = (2020, 1, 1, 0, 0, 0)


@dataclass
class PolicyBundle:
    spec: PolicySpec
    base_state: dict[str, torch.Tensor]
    adapter_files: dict[str, bytes]  # file name inside adapter/ -> bytes
    parity_observations: np.ndarray  # [n, obs_dim] float32
    provenance: dict[str, str]

    def base_network(self) -> PolicyNet:
        net = PolicyNet(self.spec)
        net.load_state_dict(self.base_state)
        return net

    def adapted_network(self) -> PeftModel:
        """The base network with the LoRA adapter attached (not merged)."""
        with tempfile.TemporaryDirectory(prefix="plasma-adapter-") as tmp:
            for name, data in self.adapter_files.items():
                (Path(tmp) / name).write_bytes(data)
            return PeftModel.from_pretrained(self.base_network(), tmp)


def _write(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def pack(bundle: PolicyBundle) -> bytes:
    buffer = io.BytesIO()
    parity = io.BytesIO()
    np.save(parity, bundle.parity_observations.astype(np.float32), allow_pickle=False)
    with zipfile.ZipFile(buffer, "w") as archive:
        _write(archive, "spec.json", bundle.spec.to_json().encode())
        base = save_safetensors({k: v.contiguous() for k, v in bundle.base_state.items()})
        _write(archive, "base.safetensors", base)
        for name, data in sorted(bundle.adapter_files.items()):
            _write(archive, f"adapter/{name}", data)
        _write(archive, "parity_observations.npy", parity.getvalue())
        _write(archive, "run.json", json.dumps(bundle.provenance, sort_keys=True).encode())
    return buffer.getvalue()


def adapter_files_of(model: PeftModel) -> dict[str, bytes]:
    with tempfile.TemporaryDirectory(prefix="plasma-adapter-") as tmp:
        model.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).glob("adapter_*") if p.is_file()}


def unpack(data: bytes) -> PolicyBundle:
    """Reads a bundle; raises ValueError naming what is missing or malformed."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"policy bundle is not a zip archive: {exc}") from exc
    with archive:
        names = set(archive.namelist())
        required = {"spec.json", "base.safetensors", "parity_observations.npy", "run.json",
                    "adapter/adapter_config.json", "adapter/adapter_model.safetensors"}
        missing = sorted(required - names)
        if missing:
            raise ValueError(f"policy bundle lacks {', '.join(missing)}")
        spec = PolicySpec.from_json(archive.read("spec.json").decode())
        base_state = load_safetensors(archive.read("base.safetensors"))
        adapter_files = {
            n.removeprefix("adapter/"): archive.read(n) for n in names if n.startswith("adapter/")
        }
        parity = np.load(io.BytesIO(archive.read("parity_observations.npy")), allow_pickle=False)
        provenance = json.loads(archive.read("run.json"))
    if parity.ndim != 2 or parity.shape[1] != spec.obs_dim:
        raise ValueError(f"parity observations have shape {parity.shape}, expected [n, {spec.obs_dim}]")
    return PolicyBundle(spec, base_state, adapter_files, parity, provenance)
