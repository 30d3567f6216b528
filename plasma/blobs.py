"""Chunked byte streams: a BlobHeader (sha256, size) first, then chunks, verified on arrival."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from plasma.common.v1 import common_pb2

CHUNK_BYTES = 64 * 1024
# Nothing Plasma ships comes close; the bound stops a bad header from filling a disk.
MAX_BLOB_BYTES = 64 * 1024 * 1024


class BlobError(ValueError):
    """A chunked stream that does not add up to what its header promised."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def header_for(data: bytes, media_type: str) -> common_pb2.BlobHeader:
    return common_pb2.BlobHeader(sha256=sha256_hex(data), size_bytes=len(data), media_type=media_type)


def chunks(data: bytes, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    for start in range(0, len(data), chunk_bytes):
        yield data[start : start + chunk_bytes]


def assemble(header: common_pb2.BlobHeader, parts: Iterable[bytes]) -> bytes:
    """Joins chunks and checks them against the header's size and sha256."""
    if header.size_bytes <= 0 or header.size_bytes > MAX_BLOB_BYTES:
        raise BlobError(f"header size_bytes={header.size_bytes} must be in 1..{MAX_BLOB_BYTES}")
    if len(header.sha256) != 64:
        raise BlobError(f"header sha256 must be 64 hex characters, got {len(header.sha256)}")
    buffer = bytearray()
    for part in parts:
        buffer.extend(part)
        if len(buffer) > header.size_bytes:
            raise BlobError(f"received more than the {header.size_bytes} bytes the header declared")
    if len(buffer) != header.size_bytes:
        raise BlobError(f"stream ended after {len(buffer)} of {header.size_bytes} bytes")
    actual = sha256_hex(bytes(buffer))
    if actual != header.sha256.lower():
        raise BlobError(f"sha256 mismatch: header says {header.sha256}, received bytes hash to {actual}")
    return bytes(buffer)
