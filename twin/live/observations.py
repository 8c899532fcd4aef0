"""Latest readings of fixed sensors: one row per device of a kind, one column per quantity.

Readings only move forward in time: a record older than the one held (a late or
redelivered message) does not replace it. Each reading keeps its observation time, so the
twin knows per sensor, and through the sensors per cell, how stale its inputs are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models import stale_mask


@dataclass
class SensorReadings:
    """Latest value [canonical unit of the quantity] and time [unix s] per (device, quantity)."""

    kind: str
    ids: tuple[str, ...]
    quantities: tuple[str, ...]
    value: np.ndarray = field(init=False)
    t: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.index = {d: i for i, d in enumerate(self.ids)}
        self.column = {q: j for j, q in enumerate(self.quantities)}
        self.value = np.full((len(self.ids), len(self.quantities)), np.nan)
        self.t = np.full((len(self.ids), len(self.quantities)), -np.inf)

    def apply(self, device: np.ndarray, t: np.ndarray, quantity: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Take the records that belong to this kind; returns a mask of the records taken.

        Per (device, quantity) the newest record wins if it is not older than the reading held (ties: the later
        record of the batch), as if the records were applied one by one, oldest first; without a Python loop over
        the records.
        """
        mine = np.isin(quantity, self.quantities) & np.isfinite(value) & np.isfinite(t)
        cand = np.flatnonzero(mine)  # look devices up only for this kind's quantities
        if cand.size == 0:
            return mine
        index, column = self.index, self.column
        row = np.fromiter((index.get(d, -1) for d in device[cand].tolist()), dtype=np.int64, count=cand.size)
        col = np.fromiter((column[q] for q in quantity[cand].tolist()), dtype=np.int64, count=cand.size)
        known = row >= 0
        mine[cand[~known]] = False
        idx, row, col = cand[known], row[known], col[known]
        order = np.argsort(t[idx], kind="stable")  # oldest first; a later record wins a tie
        idx, row, col = idx[order], row[order], col[order]
        cell = row * len(self.quantities) + col
        last = cell.size - 1 - np.unique(cell[::-1], return_index=True)[1]  # the newest record of each cell
        r, c, k = row[last], col[last], idx[last]
        newer = t[k] >= self.t[r, c]
        self.t[r[newer], c[newer]] = t[k[newer]]
        self.value[r[newer], c[newer]] = value[k[newer]]
        return mine

    def latest(self, quantity: str) -> tuple[np.ndarray, np.ndarray]:
        """(value, time) of one quantity for every device, NaN / -inf where never seen."""
        j = self.column[quantity]
        return self.value[:, j], self.t[:, j]

    def fresh(self, quantity: str, now: float, max_age_s: float) -> np.ndarray:
        """Devices whose reading of ``quantity`` is at most ``max_age_s`` old at ``now`` (`models.stale_mask`
        with the age limit as one period; never seen is stale)."""
        _, t = self.latest(quantity)
        return ~stale_mask(t, now, max_age_s, n_periods=1.0)

    def fresh_any(self, now: float, max_age_s: float) -> np.ndarray:
        """Devices with at least one quantity at most ``max_age_s`` old at ``now`` (`fresh` of any quantity)."""
        out = np.zeros(len(self.ids), dtype=bool)
        for quantity in self.quantities:
            out |= self.fresh(quantity, now, max_age_s)
        return out

    def save_state(self) -> dict[str, object]:
        """The readings by device id and quantity (for snapshots)."""
        return {"ids": np.array(self.ids, dtype=str), "quantities": list(self.quantities), "value": self.value.copy(),
                "t": self.t.copy()}

    def restore_state(self, state: dict) -> None:
        """Take back what `save_state` gave; rows are matched by device id, so devices added to the registry since
        start empty and devices no longer in it are dropped."""
        if list(state["quantities"]) != list(self.quantities):
            raise ValueError(f"{self.kind} readings: the snapshot has quantities {list(state['quantities'])}, "
                             f"the twin {list(self.quantities)}")
        for row, dev in enumerate(np.asarray(state["ids"]).tolist()):
            i = self.index.get(dev)
            if i is not None:
                self.value[i], self.t[i] = state["value"][row], state["t"][row]
