"""Recognise redelivered records by their key ``(device, t, quantity, ref)`` (see ``Batch.keys``)."""

from __future__ import annotations

from collections import deque

import numpy as np

from ingest.batch import Batch, Key


class Deduper:
    """Remembers the keys of the last ``max_keys`` accepted records (oldest batches forgotten first).

    Parameters
    ----------
    max_keys : int
        Memory bound [record]; a redelivery older than this many records is not recognised.
    """

    def __init__(self, max_keys: int = 2_000_000) -> None:
        self.max_keys = max_keys
        self._seen: set[Key] = set()
        self._order: deque[list[Key]] = deque()
        self._size = 0

    def __len__(self) -> int:
        return len(self._seen)

    def filter(self, batch: Batch) -> tuple[Batch, int]:
        """Rows of ``batch`` not seen before (also within the batch), and the number of duplicates."""
        if len(batch) == 0:
            return batch, 0
        keys = batch.keys()
        kset = set(keys)
        if len(kset) == len(keys) and self._seen.isdisjoint(kset):
            self._remember(keys)
            return batch, 0
        mask = np.zeros(len(keys), dtype=bool)
        fresh: list[Key] = []
        local: set[Key] = set()
        for i, k in enumerate(keys):
            if k not in self._seen and k not in local:
                local.add(k)
                fresh.append(k)
                mask[i] = True
        self._remember(fresh)
        return batch.take(mask), len(keys) - len(fresh)

    def _remember(self, keys: list[Key]) -> None:
        if not keys:
            return
        self._seen.update(keys)
        self._order.append(keys)
        self._size += len(keys)
        while self._size > self.max_keys and len(self._order) > 1:
            old = self._order.popleft()
            self._size -= len(old)
            self._seen.difference_update(old)
