"""Durable raw log: every received MQTT message, appended before it is acknowledged.

Layout: a directory of segment files ``0000000000.seg``, ``0000000001.seg``... Each record is::

    crc32 (u32 LE) | body length (u32 LE) | body
    body = received_at (f64 LE, [s since epoch]) | topic length (u16 LE) | topic (UTF-8) | payload

``crc32`` covers the body. Appends are grouped: ``append_many`` writes many records with one ``write``
and one ``fsync`` (group commit; the caller bounds the latency by how long it gathers, e.g. 50 ms).
A segment is closed when it reaches ``segment_bytes`` and the next one is created (and the directory
fsynced). On opening, the last segment is scanned and a torn or corrupt tail (a crash mid-write) is
truncated, so it is never read as data. ``read_log`` replays from a ``LogPosition`` (segment, offset).
"""

from __future__ import annotations

import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

_HEAD = struct.Struct("<II")
_BODY = struct.Struct("<dH")
MIN_BODY = _BODY.size
MAX_BODY = 256 * 1024 * 1024
SUFFIX = ".seg"


class LogPosition(NamedTuple):
    """Where a record starts (or the next one will): segment number and byte offset in it."""

    segment: int
    offset: int


LOG_START = LogPosition(0, 0)
"""The start of a log."""


class LogRecord(NamedTuple):
    """One logged message."""

    position: LogPosition
    received_at: float
    topic: str
    payload: bytes


class CorruptLogError(RuntimeError):
    """A record inside a closed (non-last) segment failed its checksum."""


def encode_record(received_at: float, topic: str, payload: bytes) -> bytes:
    """Bytes of one record (header + body)."""
    t = topic.encode("utf-8")
    body = _BODY.pack(received_at, len(t)) + t + payload
    return _HEAD.pack(zlib.crc32(body), len(body)) + body


def _segments(directory: Path) -> list[int]:
    return sorted(int(p.stem) for p in directory.glob(f"*{SUFFIX}") if p.stem.isdigit())


def _seg_path(directory: Path, n: int) -> Path:
    return directory / f"{n:010d}{SUFFIX}"


def _scan(data: bytes, offset: int) -> Iterator[tuple[int, int, bytes]]:
    """Yield (start, end, body) of valid records from ``offset``; stops at the first invalid one."""
    size = len(data)
    while offset + _HEAD.size <= size:
        crc, length = _HEAD.unpack_from(data, offset)
        end = offset + _HEAD.size + length
        if length < MIN_BODY or length > MAX_BODY or end > size:
            return
        body = data[offset + _HEAD.size : end]
        if zlib.crc32(body) != crc:
            return
        _, tlen = _BODY.unpack_from(body)
        if MIN_BODY + tlen > length:
            return
        yield offset, end, body
        offset = end


def _decode_body(position: LogPosition, body: bytes) -> LogRecord:
    received_at, tlen = _BODY.unpack_from(body)
    topic = body[MIN_BODY : MIN_BODY + tlen].decode("utf-8", errors="replace")
    return LogRecord(position, received_at, topic, body[MIN_BODY + tlen :])


def valid_length(path: Path) -> int:
    """Length of the valid prefix of a segment file [byte]."""
    data = path.read_bytes()
    end = 0
    for _, stop, _ in _scan(data, 0):
        end = stop
    return end


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class FsyncStats:
    """Latency of the group commits (write + fsync) [s]."""

    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0
    last_s: float = 0.0

    def add(self, seconds: float) -> None:
        """Record one commit."""
        self.count += 1
        self.total_s += seconds
        self.last_s = seconds
        self.max_s = max(self.max_s, seconds)

    @property
    def mean_s(self) -> float:
        """Mean commit latency [s]."""
        return self.total_s / self.count if self.count else 0.0


class RawLog:
    """Append-only segmented log with group commit. Not thread-safe: one writer thread.

    Parameters
    ----------
    directory : str or Path
        Created if missing.
    segment_bytes : int
        Size at which a segment is closed and a new one started [byte].
    fsync : bool
        ``os.fsync`` after each group (turn off only in tests of other things).
    """

    def __init__(
        self, directory: str | os.PathLike, *, segment_bytes: int = 64 * 1024 * 1024, fsync: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self.stats = FsyncStats()
        self.truncated_bytes = 0
        segs = _segments(self.directory)
        self._segment = segs[-1] if segs else 0
        path = _seg_path(self.directory, self._segment)
        self._recover(path)
        self._file = open(path, "ab")  # noqa: SIM115 -- held open for the writer's life
        self._offset = self._file.tell()
        if not segs:
            _fsync_dir(self.directory)

    def _recover(self, path: Path) -> None:
        if not path.exists():
            return
        size = path.stat().st_size
        good = valid_length(path)
        if good < size:
            self.truncated_bytes = size - good
            log.warning("raw log %s: torn tail of %d bytes truncated at %d", path, size - good, good)
            with open(path, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())

    @property
    def position(self) -> LogPosition:
        """Where the next record will be written."""
        return LogPosition(self._segment, self._offset)

    @property
    def closed(self) -> bool:
        """True after ``close``."""
        return self._file.closed

    def append_many(self, items: Sequence[tuple[float, str, bytes]]) -> list[LogPosition]:
        """Append ``(received_at, topic, payload)`` items durably (one write, one fsync).

        Returns the position of each record. Raises ``OSError`` if the disk fails: the caller must then
        not acknowledge the messages.
        """
        if not items:
            return []
        if self._offset >= self.segment_bytes:
            self._rotate()
        t0 = time.perf_counter()
        blobs = [encode_record(r, t, p) for r, t, p in items]
        positions = []
        off = self._offset
        for b in blobs:
            positions.append(LogPosition(self._segment, off))
            off += len(b)
        self._file.write(b"".join(blobs))
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())
        self._offset = off
        self.stats.add(time.perf_counter() - t0)
        return positions

    def append(self, received_at: float, topic: str, payload: bytes) -> LogPosition:
        """Append one record durably (see ``append_many``)."""
        return self.append_many([(received_at, topic, payload)])[0]

    def _rotate(self) -> None:
        self._file.close()
        self._segment += 1
        self._file = open(_seg_path(self.directory, self._segment), "ab")  # noqa: SIM115
        self._offset = 0
        _fsync_dir(self.directory)

    def close(self) -> None:
        """Flush and close the current segment."""
        if not self._file.closed:
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> RawLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_log(directory: str | os.PathLike, start: LogPosition = LOG_START) -> Iterator[LogRecord]:
    """Replay records from ``start`` in order.

    A torn or corrupt tail of the last segment ends the replay (it is not data); the same in an earlier
    segment raises ``CorruptLogError``.
    """
    directory = Path(directory)
    segs = [s for s in _segments(directory) if s >= start.segment]
    for i, seg in enumerate(segs):
        data = _seg_path(directory, seg).read_bytes()
        offset = start.offset if seg == start.segment else 0
        end = offset
        for begin, stop, body in _scan(data, offset):
            end = stop
            yield _decode_body(LogPosition(seg, begin), body)
        if end < len(data) and i < len(segs) - 1:
            raise CorruptLogError(f"segment {seg} is corrupt at offset {end}")
