"""An append-only log of records with dense sequence numbers from 0: the durable part of a simulation.

Layout under the log's directory:
  <first_sequence:020d>.seg   segment files; each holds consecutive records, the next segment starts where
                              the previous one ends (so only the last segment is ever appended to)
  OWNER                       token of the writer that opened the log last (fencing, see below)
  LOCK                        flock'ed while a writer recovers or appends a batch

A record is `length (u32 LE) | crc32 of payload (u32 LE) | payload`.

Durability: `append` writes a batch, flushes it and fsyncs the segment before it returns, so a record a reader
was told about is on disk (fsync per batch, not per record: a batch is what one rollout step of the simulator
produces, and one fsync per batch keeps the disk out of the hot path). A crash can leave a torn tail (a
partial header or payload, or a payload whose checksum does not match) in the last segment; opening the log
for writing detects it and truncates the segment to its last complete record.

Fencing: opening a log for writing takes it over. Every batch is appended under the LOCK flock and only if
OWNER still holds the writer's token, so a writer left over from a stopped server (its thread finishing a
rollout batch) can never write after a new writer has recovered the log.

Readers read the files directly, each at its own position, and never past a count the writer published
(`LogReader.read(stop)`), so they never see a record being written.
"""

from __future__ import annotations

import fcntl
import os
import struct
import uuid
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from plasma import files

_HEADER = struct.Struct("<II")  # payload length, crc32 of the payload
_SUFFIX = ".seg"
# A new segment starts once the current one is this large (checked between batches).
SEGMENT_BYTES = 64 * 1024 * 1024
# One record is one serialized phantom path; anything near this is a corrupt length field.
MAX_RECORD_BYTES = 64 * 1024 * 1024


class LogTakenOver(Exception):
    """Another writer opened this log after this one; this writer must stop."""


class CorruptLog(Exception):
    """A record before the writable tail does not check out; the log cannot be read past it."""


def _segment_name(first: int) -> str:
    return f"{first:020d}{_SUFFIX}"


def _segments(directory: Path) -> list[int]:
    """First sequence numbers of the segments, ascending."""
    return sorted(int(p.name[: -len(_SUFFIX)]) for p in directory.glob(f"*{_SUFFIX}") if p.name[0] != ".")


def _read_record(handle: BinaryIO) -> bytes | None:
    """The next complete, intact record, or None at a clean end or a torn/corrupt tail."""
    header = handle.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    length, crc = _HEADER.unpack(header)
    if length > MAX_RECORD_BYTES:
        return None
    payload = handle.read(length)
    if len(payload) < length or zlib.crc32(payload) != crc:
        return None
    return payload


class PathLog:
    """The writer. Opening recovers the log (truncating a torn tail) and takes it over from earlier writers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._token = uuid.uuid4().hex
        self._lock_path = directory / "LOCK"
        with self._locked():
            files.write_bytes_atomic(directory / "OWNER", self._token.encode())
            self.count = self._recover()
        self._handle: BinaryIO | None = None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _recover(self) -> int:
        """Truncates a torn tail of the last segment and returns the number of records in the log."""
        firsts = _segments(self.directory)
        if not firsts:
            return 0
        last = self.directory / _segment_name(firsts[-1])
        records = 0
        with open(last, "rb") as handle:
            good_end = 0
            while _read_record(handle) is not None:
                records += 1
                good_end = handle.tell()
        if good_end < last.stat().st_size:
            with open(last, "r+b") as handle:
                handle.truncate(good_end)
                os.fsync(handle.fileno())
        return firsts[-1] + records

    def append(self, payloads: Sequence[bytes]) -> int:
        """Appends the records durably (one fsync for the batch) and returns the new count."""
        if not payloads:
            return self.count
        data = b"".join(_HEADER.pack(len(p), zlib.crc32(p)) + p for p in payloads)
        with self._locked():
            self.check_owner()
            handle = self._writable()
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        self.count += len(payloads)
        return self.count

    def check_owner(self) -> None:
        """Raises LogTakenOver when another writer has opened the log since this one."""
        if (self.directory / "OWNER").read_bytes().decode() != self._token:
            raise LogTakenOver(f"{self.directory} was opened by another writer")

    def _writable(self) -> BinaryIO:
        """The last segment, or a new one starting at `count` once the current one is full."""
        if self._handle is not None and self._handle.tell() < SEGMENT_BYTES:
            return self._handle
        firsts = _segments(self.directory)
        if self._handle is None and firsts:
            handle = open(self.directory / _segment_name(firsts[-1]), "ab")  # noqa: SIM115 (kept open)
            if handle.tell() < SEGMENT_BYTES:
                self._handle = handle
                return handle
            handle.close()
        if self._handle is not None:
            self._handle.close()
        self._handle = open(self.directory / _segment_name(self.count), "ab")  # noqa: SIM115 (kept open)
        files.fsync_dir(self.directory)
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class LogReader:
    """Reads records in order from `position`, opening segments as it reaches them."""

    def __init__(self, directory: Path, position: int) -> None:
        self.directory = directory
        self.position = position
        self._handle: BinaryIO | None = None
        self._segment_end: int | None = None  # first sequence of the next segment, when known

    def read(self, stop: int) -> Iterator[bytes]:
        """Yields the records position..stop - 1; `stop` must not exceed the count the writer published."""
        while self.position < stop:
            handle = self._handle_for_position()
            payload = _read_record(handle)
            if payload is None:
                raise CorruptLog(
                    f"record {self.position} in {self.directory} is missing or damaged although the log "
                    "reported it written"
                )
            self.position += 1
            yield payload

    def _handle_for_position(self) -> BinaryIO:
        handle = self._handle
        if handle is not None:
            if self._segment_end is not None and self.position < self._segment_end:
                return handle
            # The segment was the last one when opened: past its end, the writer has started the next.
            if self._segment_end is None and handle.tell() < os.fstat(handle.fileno()).st_size:
                return handle
        self.close()
        firsts = _segments(self.directory)
        first = max((f for f in firsts if f <= self.position), default=None)
        if first is None:
            raise CorruptLog(f"no segment in {self.directory} holds record {self.position}")
        later = [f for f in firsts if f > first]
        self._segment_end = later[0] if later else None
        handle = open(self.directory / _segment_name(first), "rb")  # noqa: SIM115 (kept open)
        for _ in range(self.position - first):
            header = handle.read(_HEADER.size)
            if len(header) < _HEADER.size:
                handle.close()
                raise CorruptLog(f"segment {first} in {self.directory} ends before record {self.position}")
            handle.seek(_HEADER.unpack(header)[0], os.SEEK_CUR)
        self._handle = handle
        return handle

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
