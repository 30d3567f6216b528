"""Chunked byte streams, the one way Plasma moves anything large (packets, policy bundles, world models,
datasets): a BlobHeader (sha256, size, media type) first, then chunks, verified on arrival. Every such
message has a oneof `part` of `header` and `chunk`; `send` writes one, `receive` reads and checks one."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

from plasma.common.v1 import common_pb2
from plasma.quoting import quote

CHUNK_BYTES = 64 * 1024
# Nothing Plasma ships comes close; the bound stops a bad header from filling a disk.
MAX_BLOB_BYTES = 64 * 1024 * 1024


class BlobError(ValueError):
    """A chunked stream that does not add up to what its header promised (servers answer DATA_LOSS)."""


class BadHeader(BlobError):
    """A stream whose header (or order of messages) is malformed, before any byte is compared: the sender's bad
    request (servers answer INVALID_ARGUMENT)."""


class Part(Protocol):
    """A message with `oneof part { BlobHeader header; bytes chunk; }`."""

    @property
    def header(self) -> common_pb2.BlobHeader: ...

    @property
    def chunk(self) -> bytes: ...

    def WhichOneof(self, oneof_group: str) -> str | None: ...


M = TypeVar("M")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def header_for(data: bytes, media_type: str) -> common_pb2.BlobHeader:
    return common_pb2.BlobHeader(sha256=sha256_hex(data), size_bytes=len(data), media_type=media_type)


def chunks(data: bytes, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    for start in range(0, len(data), chunk_bytes):
        yield data[start : start + chunk_bytes]


def send(data: bytes, media_type: str, message: Callable[..., M], chunk_bytes: int = CHUNK_BYTES) -> Iterator[M]:
    """`data` as messages: message(header=...), then message(chunk=...) per chunk."""
    yield message(header=header_for(data, media_type))
    for chunk in chunks(data, chunk_bytes):
        yield message(chunk=chunk)


def receive(messages: Iterable[Part], what: str, media_types: tuple[str, ...] = (), *,
            from_client: bool = False) -> bytes:
    """The bytes of a header-then-chunks stream, checked against its header; `what` names the stream in errors.
    With `media_types`, the header's media type must be one of them (or empty). A malformed header is BadHeader
    when the stream comes `from_client` (a server's caller sent a bad request), else BlobError like any other
    defect (a service called for the bytes sent broken ones)."""
    try:
        return _receive(iter(messages), what, media_types)
    except BadHeader as exc:
        if from_client:
            raise
        raise BlobError(str(exc)) from exc


def _receive(stream: Iterator[Part], what: str, media_types: tuple[str, ...]) -> bytes:
    first = next(stream, None)
    if first is None or first.WhichOneof("part") != "header":
        raise BadHeader(f"{what} must start with a header message (sha256, size_bytes, media_type)")
    if media_types and first.header.media_type not in ("", *media_types):
        raise BadHeader(f"{what} takes {' or '.join(media_types)}, got {quote(first.header.media_type)}")

    def parts() -> Iterator[bytes]:
        for message in stream:
            if message.WhichOneof("part") != "chunk":
                raise BadHeader(f"{what}: only the first message may be a header; the rest must be chunks")
            yield message.chunk

    return assemble(first.header, parts())


def assemble(header: common_pb2.BlobHeader, parts: Iterable[bytes]) -> bytes:
    """Joins chunks and checks them against the header's size and sha256."""
    if header.size_bytes <= 0 or header.size_bytes > MAX_BLOB_BYTES:
        raise BadHeader(f"header size_bytes={header.size_bytes} must be in 1..{MAX_BLOB_BYTES}")
    if len(header.sha256) != 64 or any(c not in "0123456789abcdefABCDEF" for c in header.sha256):
        raise BadHeader(f"header sha256 must be 64 hex digits, got {len(header.sha256)} characters")
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
