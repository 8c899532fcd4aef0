"""Two partitions of the stream read as one, in stream-sequence order (docs/city-deployment.md sections 4 and 5).

A district twin reads its own partition (batches and the city clock's ticks) and the ``handover`` partition that
all district twins share. Both live in one stream, whose sequence numbers increase across all partitions, so the
stream itself says in which order the two were written. `OrderedFeed` hands the records of both over in that
order, whatever the timing of the reads: a twin restarted from a snapshot applies exactly the records, and in
exactly the order, of a twin that never stopped.

How it knows a record may go. It keeps, per partition, a *watermark*: every record of that partition with a
sequence up to it has been read. The records up to the lower of the two watermarks are released, merged by
sequence; the rest wait in a bounded buffer. Watermarks rise by two facts of a stream with one sequence:

- a record's sequence is given when it is stored, so a record with a sequence not above one already seen was
  stored before that one was seen;
- a read returns the records stored when it ran (the first of them on ``Stream.read``), up to ``max_n``: a *full*
  read (``max_n`` records) covers the partition up to its last record; a *short* one covers it up to every
  sequence seen before the read began.

The own partition is read with a wait (the twin has nothing else to do); the handover partition is first asked
for its last sequence (``Stream.last_seq``: one round trip, no wait) and read only when it holds something new.
On an idle stream a record therefore waits at most one poll (the read's wait) for the other watermark to pass it.

A record of the own partition that turns up below a sequence already released (it cannot, on a stream that
answers as ``Stream`` promises; a JetStream read cut short by an overloaded client could) is still handed over,
never dropped, and counted in ``out_of_order``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from ingest.stream.base import Record, Stream, check_partition

SIDE_READ_S = 2.0
"""Longest wait of a read of the handover partition, which is read only when it holds records [s]."""


class OrderedFeed:
    """Reads ``main`` and ``side`` of ``stream`` and releases their records in sequence order (module docstring).

    Parameters
    ----------
    stream : Stream
    main, side : str
        The twin's own partition (read with a wait) and the shared one (read when it has records).
    after : mapping of str to int
        Per partition, the sequence of the last record already applied (0: from the start of the stream).
    max_n : int
        Records per read [1]; also the bound of each partition's buffer.
    """

    def __init__(self, stream: Stream, main: str, side: str, after: Mapping[str, int], max_n: int = 256) -> None:
        if main == side:
            raise ValueError(f"the twin's partition and the handover partition must differ, both are {main!r}")
        if max_n < 1:
            raise ValueError(f"max_n must be at least 1, got {max_n}")
        self.stream, self.main, self.side, self.max_n = stream, check_partition(main), check_partition(side), max_n
        self.read_at = {p: int(after.get(p, 0)) for p in (main, side)}
        """Per partition, the sequence of the last record read."""
        self.watermark = dict(self.read_at)
        """Per partition: every record with a sequence up to this one has been read."""
        self.seen = max(self.read_at.values())
        """The highest sequence seen in any read (or given as a start)."""
        self.released = self.seen
        """The sequence of the last record released."""
        self.out_of_order = 0
        """Records of the own partition that came below a sequence already released (see the module docstring)."""
        self._buffer: dict[str, deque[Record]] = {main: deque(), side: deque()}

    def poll(self, wait_s: float) -> list[tuple[str, Record]]:
        """Read both partitions (waiting up to ``wait_s`` [s] for the own one) and return ``(partition, record)`` of
        every record that may go now, in sequence order. Raises ``StreamError`` as the stream does (what was read
        before the error stays buffered)."""
        self._read_main(wait_s)
        self._read_side()
        return self._release()

    @property
    def buffered(self) -> int:
        """Records read and not yet released [1]."""
        return sum(len(b) for b in self._buffer.values())

    def _read_main(self, wait_s: float) -> None:
        if len(self._buffer[self.main]) >= self.max_n:  # waiting for the handover watermark: read no more
            return
        seen_before = self.seen
        got = self.stream.read(self.main, self.read_at[self.main], self.max_n, wait_s)
        self._took(self.main, got, seen_before, covers_all=len(got) < self.max_n)

    def _read_side(self) -> None:
        if len(self._buffer[self.side]) >= self.max_n:
            return
        seen_before = self.seen
        last = self.stream.last_seq(self.side)
        if last <= self.read_at[self.side]:  # nothing new: the partition is read up to all that was seen before
            self.watermark[self.side] = max(self.watermark[self.side], seen_before)
            return
        got = self.stream.read(self.side, self.read_at[self.side], self.max_n, SIDE_READ_S)
        self._took(self.side, got, seen_before, covers_all=bool(got) and got[-1].seq >= last)

    def _took(self, partition: str, got: list[Record], seen_before: int, covers_all: bool) -> None:
        """Buffer a read's records and raise the partition's watermark (``covers_all``: the read returned every record
        stored when it ran, so it covers every sequence seen before it began)."""
        if got:
            if partition == self.main and got[0].seq <= self.released:
                self.out_of_order += sum(1 for r in got if r.seq <= self.released)
            self._buffer[partition].extend(got)
            self.read_at[partition] = got[-1].seq
            self.seen = max(self.seen, got[-1].seq)
        mark = self.read_at[partition]
        if covers_all:
            mark = max(mark, seen_before)
        self.watermark[partition] = max(self.watermark[partition], mark)

    def _release(self) -> list[tuple[str, Record]]:
        limit = min(self.watermark.values())
        main, side = self._buffer[self.main], self._buffer[self.side]
        out: list[tuple[str, Record]] = []
        while True:
            m = main[0].seq if main and main[0].seq <= limit else None
            s = side[0].seq if side and side[0].seq <= limit else None
            if m is None and s is None:
                break
            if s is None or (m is not None and m < s):
                out.append((self.main, main.popleft()))
            else:
                out.append((self.side, side.popleft()))
            self.released = max(self.released, out[-1][1].seq)
        # an out-of-order record of the own partition (module docstring) lies below the limit already: it goes too
        return out


__all__ = ["SIDE_READ_S", "OrderedFeed"]
