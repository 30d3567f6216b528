"""A saved world model as one archive: what ExportWorldModel streams and what the trainer loads.

The archive is a zip of the model directory's files (config.json, weights.safetensors), stored without
compression (the weights are float32 and barely compress), with a fixed timestamp so that the same
model always gives the same bytes and hence the same sha256.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from plasma.mbrl.models.ensemble import EnsembleWorldModel

MEDIA_TYPE = "application/vnd.plasma.world-model+zip"
# The files EnsembleWorldModel.save writes; nothing else is packed or unpacked.
_FILES = ("config.json", "weights.safetensors")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def pack(directory: Path) -> bytes:
    """The model saved in `directory` as archive bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name in _FILES:
            archive.writestr(zipfile.ZipInfo(name, _FIXED_TIME), (directory / name).read_bytes())
    return buffer.getvalue()


def load(data: bytes, scratch: Path) -> EnsembleWorldModel:
    """The model in archive `data`, unpacked under the existing empty directory `scratch` and loaded.

    Raises ValueError when the archive is not a world model archive."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            if names != set(_FILES):
                raise ValueError(f"a world model archive holds exactly {sorted(_FILES)}, got {sorted(names)}")
            for name in _FILES:
                (scratch / name).write_bytes(archive.read(name))
    except zipfile.BadZipFile as exc:
        raise ValueError(f"not a world model archive: {exc}") from exc
    return EnsembleWorldModel.load(scratch)
