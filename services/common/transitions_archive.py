"""Transitions as one NumPy .npz archive: how the simulator stores a dataset and what ExportDataset streams."""

from __future__ import annotations

import dataclasses
import io
import zipfile

import numpy as np

from plasma.mbrl.types import Transitions

MEDIA_TYPE = "application/vnd.plasma.transitions+npz"
FIELDS = tuple(f.name for f in dataclasses.fields(Transitions))


def pack(transitions: Transitions) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{name: getattr(transitions, name) for name in FIELDS})
    return buffer.getvalue()


def load(data: bytes) -> Transitions:
    """Raises ValueError when `data` is not such an archive (no pickled objects are ever loaded)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            missing = sorted(set(FIELDS) - set(arrays.files))
            if missing:
                raise ValueError(f"a transitions archive needs arrays {list(FIELDS)}; missing {missing}")
            return Transitions(**{name: arrays[name] for name in FIELDS})
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"not a transitions archive: {exc}") from exc
