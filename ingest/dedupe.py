"""Recognise redelivered records by their key ``(device, t, quantity, ref)`` (see ``Batch.keys``).

Keys are kept per stream ``(device, quantity, ref)``: times of small batches in a set, times of large
batches (SenML packs) as sorted numpy chunks. A batch whose times all follow the stream's latest time --
the normal case -- is checked with a few vectorised operations, whatever its size; redeliveries and
out-of-order records are checked exactly against the remembered times.

``seen_one`` and ``all_seen`` look without remembering: the admission step asks them first, so a
redelivered message is known as a duplicate before it is charged to the rate limit.

The dedupe memory also carries the admission step's per-device rate state (``rates``, an
``ingest.validation.RateLimiter``): both are what the admission step remembers of the messages so far, and
a snapshot of the one (``save_state``, key ``rates``) restores both, so a replay after a restart decides
exactly as the live loop did.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ingest.batch import Batch

if TYPE_CHECKING:
    from ingest.validation import RateLimiter

Stream = tuple[str, str, str]
SMALL = 8
"""Batches of at most this many records of a stream are remembered in a set, larger ones as arrays."""


@dataclass
class _StreamKeys:
    small: set[float] = field(default_factory=set)
    chunks: deque[np.ndarray] = field(default_factory=deque)
    tmax: float = -np.inf

    def contains(self, t: float) -> bool:
        """Whether one time is remembered."""
        if t > self.tmax:
            return False
        if t in self.small:
            return True
        for chunk in self.chunks:
            if chunk[0] <= t <= chunk[-1]:
                i = int(np.searchsorted(chunk, t))
                if chunk[i] == t:
                    return True
        return False

    def seen(self, ts: np.ndarray) -> np.ndarray:
        """Mask of the times already remembered."""
        out = np.zeros(len(ts), dtype=bool)
        if len(ts) == 0 or ts.min() > self.tmax:
            return out
        if self.small:
            out |= np.fromiter((t in self.small for t in ts.tolist()), dtype=bool, count=len(ts))
        lo, hi = ts.min(), ts.max()
        for chunk in self.chunks:
            if chunk[0] <= hi and chunk[-1] >= lo:
                out |= np.isin(ts, chunk)
        return out


class Deduper:
    """Remembers the keys of the last ``max_keys`` accepted records (oldest first forgotten).

    Parameters
    ----------
    max_keys : int
        Memory bound [record]; a redelivery older than this many records is not recognised.
    rates : RateLimiter or None
        The admission step's rate state, saved and restored with the keys (see the module docstring).
    """

    def __init__(self, max_keys: int = 2_000_000, rates: RateLimiter | None = None) -> None:
        self.max_keys = max_keys
        self.rates = rates
        self._streams: dict[Stream, _StreamKeys] = {}
        self._order: deque[tuple[Stream, list[float] | np.ndarray]] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def filter(self, batch: Batch) -> tuple[Batch, int]:
        """Rows of ``batch`` not seen before (also within the batch), and the number of duplicates."""
        n = len(batch)
        if n == 0:
            return batch, 0
        if n == 1:
            return self._filter_one(batch)
        keep = None
        for stream, rows in _streams(batch):
            ts = batch.t if rows is None else batch.t[rows]
            fresh = _first_occurrence(ts)
            keys = self._streams.setdefault(stream, _StreamKeys())
            fresh &= ~keys.seen(ts)
            if not fresh.all():
                keep = np.ones(n, dtype=bool) if keep is None else keep
                keep[slice(None) if rows is None else rows] &= fresh
                ts = ts[fresh]
            self._remember(stream, keys, ts)
        if keep is None:
            return batch, 0
        return batch.take(keep), int(n - keep.sum())

    def seen_one(self, device: str, t: float, quantity: str, ref: str = "") -> bool:
        """Whether one record's key is remembered (remembers nothing)."""
        keys = self._streams.get((device, quantity, ref))
        return keys is not None and keys.contains(t)

    def all_seen(self, batch: Batch) -> bool:
        """Whether every record of a non-empty ``batch`` is remembered: the message is a redelivery
        (remembers nothing)."""
        if len(batch) == 0:
            return False
        if len(batch) == 1:
            return self.seen_one(batch.device[0], float(batch.t[0]), batch.quantity[0], batch.ref[0])
        for stream, rows in _streams(batch):
            keys = self._streams.get(stream)
            if keys is None or not keys.seen(batch.t if rows is None else batch.t[rows]).all():
                return False
        return True

    def _filter_one(self, batch: Batch) -> tuple[Batch, int]:
        if self.admit_one(batch.device[0], float(batch.t[0]), batch.quantity[0], batch.ref[0]):
            return batch, 0
        return batch.take(np.zeros(1, dtype=bool)), 1

    def admit_one(self, device: str, t: float, quantity: str, ref: str = "") -> bool:
        """Remember one record's key; False if it was already remembered (a duplicate)."""
        stream = (device, quantity, ref)
        keys = self._streams.get(stream)
        if keys is None:
            keys = self._streams[stream] = _StreamKeys()
        elif keys.contains(t):
            return False
        self._add_one(stream, keys, t)
        return True

    def remember_one(self, device: str, t: float, quantity: str, ref: str = "") -> None:
        """Remember one record's key that ``seen_one`` has just said is new (no second look-up)."""
        stream = (device, quantity, ref)
        keys = self._streams.get(stream)
        if keys is None:
            keys = self._streams[stream] = _StreamKeys()
        self._add_one(stream, keys, t)

    def _add_one(self, stream: Stream, keys: _StreamKeys, t: float) -> None:
        keys.small.add(t)
        if t > keys.tmax:
            keys.tmax = t
        self._order.append((stream, [t]))
        self._size += 1
        while self._size > self.max_keys and len(self._order) > 1:
            self._forget()

    # ------------------------------------------------------------ snapshots
    def save_state(self) -> dict:
        """The remembered keys as plain columns, oldest first: the streams (device, quantity, ref), then per
        remembered entry its stream, its number of times and whether it is a chunk; all times concatenated."""
        index: dict[Stream, int] = {}
        entry_stream, entry_len, entry_chunk, times = [], [], [], []
        for stream, ts in self._order:
            entry_stream.append(index.setdefault(stream, len(index)))
            entry_len.append(len(ts))
            entry_chunk.append(not isinstance(ts, list))
            times.append(np.asarray(ts, dtype=float))
        streams = list(index)
        rates = {} if self.rates is None else {"rates": self.rates.save_state()}
        return rates | {"max_keys": int(self.max_keys),
                "device": np.array([s[0] for s in streams], dtype=str),
                "quantity": np.array([s[1] for s in streams], dtype=str),
                "ref": np.array([s[2] for s in streams], dtype=str),
                "entry_stream": np.array(entry_stream, dtype=np.int64),
                "entry_len": np.array(entry_len, dtype=np.int64),
                "entry_chunk": np.array(entry_chunk, dtype=bool),
                "times": np.concatenate(times) if times else np.zeros(0)}

    def restore_state(self, state: dict) -> None:
        """Take back what `save_state` gave (on an empty deduper). The rate state is restored into ``rates``
        when both have one (a snapshot from before issue 13 has none: the buckets start full)."""
        if self.rates is not None and "rates" in state:
            self.rates.restore_state(state["rates"])
        self.max_keys = int(state["max_keys"])
        streams = list(zip(state["device"].tolist(), state["quantity"].tolist(), state["ref"].tolist(), strict=True))
        ends = np.cumsum(state["entry_len"])
        starts = ends - state["entry_len"]
        times = state["times"]
        for k, chunk, a, b in zip(state["entry_stream"].tolist(), state["entry_chunk"].tolist(), starts.tolist(),
                                  ends.tolist(), strict=True):
            stream = streams[k]
            keys = self._streams.setdefault(stream, _StreamKeys())
            ts = times[a:b]
            if chunk:
                keys.chunks.append(np.sort(ts))
                self._order.append((stream, ts.copy()))
            else:
                small = ts.tolist()
                keys.small.update(small)
                self._order.append((stream, small))
            keys.tmax = max(keys.tmax, float(ts.max())) if len(ts) else keys.tmax
            self._size += len(ts)

    def _remember(self, stream: Stream, keys: _StreamKeys, ts: np.ndarray) -> None:
        if len(ts) == 0:
            return
        if len(ts) <= SMALL:
            small = ts.tolist()
            keys.small.update(small)
            self._order.append((stream, small))
        else:
            keys.chunks.append(np.sort(ts))
            self._order.append((stream, ts))
        keys.tmax = max(keys.tmax, float(ts.max()))
        self._size += len(ts)
        while self._size > self.max_keys and len(self._order) > 1:
            self._forget()

    def _forget(self) -> None:
        stream, ts = self._order.popleft()
        self._size -= len(ts)
        keys = self._streams[stream]
        if isinstance(ts, list):
            keys.small.difference_update(ts)
        else:
            keys.chunks.popleft()
        if not keys.small and not keys.chunks:
            del self._streams[stream]


def _first_occurrence(ts: np.ndarray) -> np.ndarray:
    """Mask of the first occurrence of each time (all True when strictly increasing)."""
    if len(ts) < 2 or (np.diff(ts) > 0).all():
        return np.ones(len(ts), dtype=bool)
    mask = np.zeros(len(ts), dtype=bool)
    mask[np.unique(ts, return_index=True)[1]] = True
    return mask


def _streams(batch: Batch) -> list[tuple[Stream, np.ndarray | None]]:
    """``(stream, row indices or None for all rows)`` of a batch."""
    dev, q, ref = batch.device, batch.quantity, batch.ref
    first = (dev[0], q[0], ref[0])
    if len(batch) == 1 or ((dev == dev[0]).all() and (q == q[0]).all() and (ref == ref[0]).all()):
        return [(first, None)]
    groups: dict[Stream, list[int]] = {}
    for i, key in enumerate(zip(dev.tolist(), q.tolist(), ref.tolist(), strict=True)):
        groups.setdefault(key, []).append(i)
    return [(k, np.asarray(v)) for k, v in groups.items()]
