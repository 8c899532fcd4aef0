"""``MemoryStream``: the stream interface (``ingest.stream.base``) in one process, for unit tests.

Same semantics as ``JetStream``: one sequence across all partitions, publishes deduplicated by message id within
``duplicate_window_s`` (a duplicate's ``Ack`` carries the first record's sequence), records older than
``max_age_s`` or beyond ``max_records`` dropped from the head, ``read`` waits on a condition (no polling).
Thread-safe. Failures can be injected for tests of the callers: ``fail_next_flush`` makes the next ``flush``
raise ``StreamTimeoutError`` without storing anything.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping

from ingest.stream.base import Ack, Record, StreamError, StreamTimeoutError, check_msg_id, check_partition

MAX_UNFLUSHED = 100_000
"""Records that may be published and not yet flushed [1]; more raise ``StreamError`` (flush first)."""


class MemoryStream:
    """An in-process stream; see the module docstring.

    Parameters
    ----------
    duplicate_window_s : float
        How long a message id is remembered [s].
    max_age_s : float
        Records older than this are dropped [s].
    max_records : int
        Most records kept [1]; the oldest are dropped first.
    clock : callable
        Time source [s] (tests pass a fake one to step through the windows).
    max_bytes : int
        Largest record [byte] (data and headers), as a NATS server's ``max_payload`` (1 MiB by default there).
    """

    def __init__(self, duplicate_window_s: float = 600.0, max_age_s: float = 86400.0, max_records: int = 1_000_000,
                 clock: Callable[[], float] = time.monotonic, max_bytes: int = 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self.duplicate_window_s = duplicate_window_s
        self.max_age_s = max_age_s
        self.max_records = max_records
        self.clock = clock
        self.fail_next_flush = False
        self.closed = False
        self._cond = threading.Condition()
        self._seq = 0
        self._parts: dict[str, tuple[list[int], list[Record], list[float]]] = {}
        self._order: deque[tuple[float, str]] = deque()  # (stored at, partition) of every record, oldest first
        self._ids: OrderedDict[str, tuple[float, str, int]] = OrderedDict()  # msg id -> (time, partition, seq)
        self._unflushed: list[tuple[str, bytes, str, dict[str, str]]] = []

    def ensure(self, partitions: Iterable[str]) -> None:
        """Check the partition names (nothing to create)."""
        for p in partitions:
            check_partition(p)

    def publish(self, partition: str, data: bytes, msg_id: str, headers: Mapping[str, str] | None = None) -> None:
        """Queue a record (stored at ``flush``)."""
        self._check_open()
        check_partition(partition)
        check_msg_id(msg_id)
        size = len(data) + sum(len(k) + len(v) for k, v in (headers or {}).items())
        if size > self.max_bytes:
            raise StreamError(f"a record of {size} bytes is larger than the stream takes ({self.max_bytes})")
        if len(self._unflushed) >= MAX_UNFLUSHED:
            raise StreamError(f"{MAX_UNFLUSHED} records published and not flushed: flush first")
        self._unflushed.append((partition, bytes(data), msg_id, dict(headers or {})))

    def flush(self, timeout_s: float) -> list[Ack]:
        """Store what was published since the last flush (dedupe by message id) and return the acks."""
        self._check_open()
        pending, self._unflushed = self._unflushed, []
        if self.fail_next_flush:
            self.fail_next_flush = False
            raise StreamTimeoutError(f"injected: no acknowledgement within {timeout_s:g} s for {len(pending)} records")
        with self._cond:
            now = self.clock()
            self._expire(now)
            acks = [self._store(now, *item) for item in pending]
            self._cond.notify_all()
        return acks

    def _store(self, now: float, partition: str, data: bytes, msg_id: str, headers: dict[str, str]) -> Ack:
        seen = self._ids.get(msg_id)
        if seen is not None:
            return Ack(partition, seen[2], True)
        self._seq += 1
        seqs, records, times = self._parts.setdefault(partition, ([], [], []))
        seqs.append(self._seq)
        records.append(Record(self._seq, data, headers))
        times.append(now)
        self._order.append((now, partition))
        self._ids[msg_id] = (now, partition, self._seq)
        if len(self._order) > self.max_records:
            self._drop_oldest()
        return Ack(partition, self._seq, False)

    def _expire(self, now: float) -> None:
        while self._ids:
            first = next(iter(self._ids.values()))
            if now - first[0] <= self.duplicate_window_s:
                break
            self._ids.popitem(last=False)
        while self._order and now - self._order[0][0] > self.max_age_s:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, partition = self._order.popleft()
        seqs, records, times = self._parts[partition]
        del seqs[0], records[0], times[0]

    def read(self, partition: str, after_seq: int, max_n: int, timeout_s: float) -> list[Record]:
        """Up to ``max_n`` records with ``seq > after_seq``; waits up to ``timeout_s`` [s] for the first."""
        self._check_open()
        check_partition(partition)
        with self._cond:
            self._cond.wait_for(lambda: self._after(partition, after_seq) is not None or self.closed,
                                max(timeout_s, 0.0))
            start = self._after(partition, after_seq)
            if start is None:
                return []
            return self._parts[partition][1][start:start + max(max_n, 0)]

    def _after(self, partition: str, after_seq: int) -> int | None:
        part = self._parts.get(partition)
        if part is None:
            return None
        i = bisect.bisect_right(part[0], after_seq)
        return i if i < len(part[0]) else None

    def last_seq(self, partition: str) -> int:
        """Sequence of the last record of ``partition`` (0 when none)."""
        check_partition(partition)
        with self._cond:
            part = self._parts.get(partition)
            return part[0][-1] if part and part[0] else 0

    def records(self, partition: str) -> list[Record]:
        """Every record of ``partition`` held now, in order (for tests)."""
        with self._cond:
            part = self._parts.get(partition)
            return list(part[1]) if part else []

    @property
    def partitions(self) -> list[str]:
        """Partitions that hold or held records."""
        with self._cond:
            return sorted(self._parts)

    def close(self) -> None:
        """Refuse further use and wake readers."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _check_open(self) -> None:
        if self.closed:
            raise StreamError("the stream is closed")
