"""Device profiles: the named sets of choices a packet is compiled with. Which precisions the ladder tries, the
graph's format, whether weights are pruned, and how hard the archive is compressed (docs/packet-format.md)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from services.compiler import precision

ONNX = "onnx"
ORT = "ort"
# What zipfile (and so every packet before profiles) writes when given no level.
DEFAULT_COMPRESSION_LEVEL = 6


@dataclass(frozen=True)
class Profile:
    name: str
    rungs: tuple[str, ...]  # precisions tried, smallest first; the first that passes the gate is kept
    graph_format: str  # ONNX or ORT
    prune: bool  # after the ladder: the largest sparsity that still passes the gate
    compression_level: int | None  # DEFLATE level of the archive; None: zlib's default (6)


# No profile named: exactly what the compiler did before profiles (the same request, the same packet bytes).
DEFAULT = Profile("default", precision.LADDER, ONNX, prune=False, compression_level=None)
EDGE = Profile("edge", precision.LADDER, ONNX, prune=True, compression_level=9)
# Minimal onnxruntime builds (mobile) load only the ORT format and carry only the operators a config names.
MOBILE = Profile("mobile", precision.LADDER, ORT, prune=True, compression_level=9)
# Float only: batched server inference gains nothing from int8's rounding on a large CPU, and fp16 halves the size.
SERVER = Profile("server", (precision.FP16, precision.FP32), ONNX, prune=False, compression_level=None)
BY_NAME = {p.name: p for p in (EDGE, MOBILE, SERVER)}


def level(compression_level: int | None) -> int:
    """The DEFLATE level an archive written with `compression_level` uses."""
    return DEFAULT_COMPRESSION_LEVEL if compression_level is None else compression_level


def deflated_size(data: bytes, compression_level: int | None) -> int:
    """Bytes `data` takes as a DEFLATE entry of a packet archive at this level."""
    compressor = zlib.compressobj(level(compression_level), zlib.DEFLATED, -15)  # raw deflate, as zip stores it
    return len(compressor.compress(data) + compressor.flush())
