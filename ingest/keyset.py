"""``KeySet``: a bounded set of 62-bit key hashes that forgets the oldest first, in two numpy arrays.

- a hash table with open addressing and linear probing (Knuth, TAOCP vol. 3, 6.4, algorithm L), at most
  half full, with deletion by backward shift (algorithm R), so no tombstones pile up;
- a ring of the same hashes in arrival order: when ``max_keys`` are held, the oldest is deleted from the
  table as the new one comes in.

Memory is fixed when it is made: 8 bytes a table slot (the power of two at or above twice ``max_keys``)
plus 8 bytes a ring slot, so about 24-40 bytes a key (2,000,000 keys: 32 MB + 16 MB), whatever the
keys are. Pages are touched only as keys arrive. The loops are compiled with numba (cached on disk) and
keep the GIL: each call is short, and releasing the GIL would make the ingest thread wait to get it back
from the transport's network thread (up to the 5 ms switch interval a call).

Hash value 0 marks an empty slot, so a hash is in 1 .. 2^62 - 1 (``ingest.dedupe.key_hash`` makes them).
"""

from __future__ import annotations

import numba
import numpy as np

EMPTY = 0


@numba.njit(cache=True)
def _find(table: np.ndarray, h: int) -> int:
    """Slot of ``h`` in ``table``, or of the empty slot where it would go."""
    mask = len(table) - 1
    i = h & mask
    while table[i] != EMPTY and table[i] != h:
        i = (i + 1) & mask
    return i


@numba.njit(cache=True)
def _delete(table: np.ndarray, h: int) -> None:
    """Remove ``h`` (if held), shifting back the entries of its probe run (Knuth's algorithm R)."""
    mask = len(table) - 1
    i = _find(table, h)
    if table[i] == EMPTY:
        return
    j = i
    while True:
        j = (j + 1) & mask
        v = table[j]
        if v == EMPTY:
            break
        home = v & mask
        # v may move to the hole at i unless its home lies cyclically in (i, j]
        if (i <= j and (home <= i or home > j)) or (i > j and home <= i and home > j):
            table[i] = v
            i = j
    table[i] = EMPTY


@numba.njit(cache=True)
def _admit(table: np.ndarray, ring: np.ndarray, cursor: np.ndarray, hashes: np.ndarray, remember: bool) -> np.ndarray:
    """For each hash in order: whether it was new (not held at the start, nor earlier in ``hashes`` when
    remembering). With ``remember`` the new ones are held, and as many of the oldest are forgotten *after*
    the pass, so every look-up sees the set as it was at the start plus this call's own keys; this needs
    ``len(hashes) <= len(ring)`` (the table, over twice the ring, then always has an empty slot).
    ``cursor`` is [next ring slot, number held]."""
    out = np.zeros(len(hashes), dtype=np.bool_)
    n_ring = len(ring)
    evict = np.empty(len(hashes) if remember else 0, dtype=np.int64)
    n_evict = 0
    for k in range(len(hashes)):
        h = hashes[k]
        i = _find(table, h)
        if table[i] == h:
            continue
        out[k] = True
        if not remember:
            continue
        slot = cursor[0]
        if cursor[1] == n_ring:
            evict[n_evict] = ring[slot]
            n_evict += 1
        else:
            cursor[1] += 1
        table[i] = h
        ring[slot] = h
        cursor[0] = (slot + 1) % n_ring
    for e in range(n_evict):
        _delete(table, evict[e])
    return out


@numba.njit(cache=True)
def _admit_one(table: np.ndarray, ring: np.ndarray, cursor: np.ndarray, h: int) -> bool:
    """`_admit` of one hash, remembering it: whether it was new."""
    i = _find(table, h)
    if table[i] == h:
        return False
    slot = cursor[0]
    if cursor[1] == len(ring):
        _delete(table, ring[slot])
        i = _find(table, h)
    else:
        cursor[1] += 1
    table[i] = h
    ring[slot] = h
    cursor[0] = (slot + 1) % len(ring)
    return True


@numba.njit(cache=True)
def _holds(table: np.ndarray, h: int) -> bool:
    return table[_find(table, h)] == h


@numba.njit(cache=True)
def _holds_all(table: np.ndarray, hashes: np.ndarray) -> bool:
    """Whether every hash is held; stops at the first that is not (a fresh batch costs one look-up)."""
    for k in range(len(hashes)):  # noqa: SIM110 -- a plain loop: numba compiles it
        if not _holds(table, hashes[k]):
            return False
    return True


class KeySet:
    """The newest ``max_keys`` distinct hashes (see the module docstring).

    Parameters
    ----------
    max_keys : int
        How many hashes are held at most [key].
    """

    def __init__(self, max_keys: int) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, got {max_keys}")
        self.max_keys = int(max_keys)
        slots = 1 << max(4, (2 * self.max_keys).bit_length())  # over twice max_keys (see _admit)
        self._table = np.zeros(slots, dtype=np.int64)
        self._ring = np.zeros(self.max_keys, dtype=np.int64)
        self._cursor = np.zeros(2, dtype=np.int64)  # next ring slot, number held

    def __len__(self) -> int:
        return int(self._cursor[1])

    @property
    def nbytes(self) -> int:
        """Bytes of the two arrays (all of the set's memory but a few objects)."""
        return self._table.nbytes + self._ring.nbytes

    def add(self, hashes: np.ndarray) -> np.ndarray:
        """Hold the new hashes, in order; returns the mask of those that were new as of the call (held neither
        before it nor earlier in ``hashes``). At most ``max_keys`` at once (see `add_new` for more)."""
        if len(hashes) > self.max_keys:
            raise ValueError(f"{len(hashes)} hashes at once, over max_keys ({self.max_keys}): use add_new")
        return _admit(self._table, self._ring, self._cursor, np.asarray(hashes, dtype=np.int64), True)

    def add_new(self, hashes: np.ndarray) -> None:
        """Hold distinct hashes that are not held, however many (the newest ``max_keys`` stay)."""
        hashes = np.asarray(hashes, dtype=np.int64)[-self.max_keys:]
        _admit(self._table, self._ring, self._cursor, hashes, True)

    def held(self, hashes: np.ndarray) -> np.ndarray:
        """Mask of the hashes held now (holds nothing new)."""
        return ~_admit(self._table, self._ring, self._cursor, np.asarray(hashes, dtype=np.int64), False)

    def holds_all(self, hashes: np.ndarray) -> bool:
        """Whether every hash is held (``held(hashes).all()``, stopping at the first that is not)."""
        return bool(_holds_all(self._table, np.asarray(hashes, dtype=np.int64)))

    def add_one(self, h: int) -> bool:
        """Hold one hash; False if it was held already."""
        return _admit_one(self._table, self._ring, self._cursor, h)

    def holds(self, h: int) -> bool:
        """Whether one hash is held."""
        return _holds(self._table, h)

    def oldest_first(self) -> np.ndarray:
        """The held hashes, oldest first."""
        nxt, size = int(self._cursor[0]), int(self._cursor[1])
        if size < self.max_keys:
            return self._ring[:size].copy()
        return np.concatenate([self._ring[nxt:], self._ring[:nxt]])
