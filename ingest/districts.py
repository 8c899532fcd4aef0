"""``DistrictRaster``: which district a position lies in, in constant time per point.

The city is covered by a regular lon/lat raster of cells (about 100 m; docs/city-deployment.md section 5). Each
cell holds the index of its district in ``codes`` (-1 outside the city). Looking a fix up is two subtractions,
two divisions and one array read, vectorised over a whole batch; the polygon work is done once, when the raster
is built from the district boundaries (``twin/city/locate.py``).

Cell ``(row, col)`` covers ``west + col*dlon <= lon < west + (col+1)*dlon`` and
``south + row*dlat <= lat < south + (row+1)*dlat``: row 0 is the **south** edge, column 0 the west edge.

A raster is stored as ``.npz`` (``save`` / ``load``) with the arrays ``codes`` (unicode), ``index`` (int16) and
``bounds`` (``west, south, dlon, dlat``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

OUTSIDE = -1
"""The index of a cell, or of a located point, that lies in no district (or a point with a NaN coordinate)."""


@dataclass(frozen=True)
class DistrictRaster:
    """A raster of district indexes over the city.

    Parameters
    ----------
    codes
        District codes (e.g. ``"310101"``); ``index`` values point into it.
    index
        District index per cell, int16, shape ``(rows, cols)``, ``-1`` outside every district. Row 0 is the south
        edge.
    west, south
        Longitude of the west edge and latitude of the south edge of the raster. [degree]
    dlon, dlat
        Cell width and height. [degree]
    """

    codes: tuple[str, ...]
    index: np.ndarray
    west: float
    south: float
    dlon: float
    dlat: float

    def __post_init__(self) -> None:
        problems = _problems(self.codes, self.index, self.dlon, self.dlat)
        if not (np.isfinite(self.west) and np.isfinite(self.south)):
            problems.append(f"west and south must be finite, got {self.west}, {self.south}")
        if problems:
            raise ValueError("bad district raster: " + "; ".join(problems))
        index = np.array(self.index, dtype=np.int16)  # own copy: the raster is immutable
        index.flags.writeable = False
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "codes", tuple(str(c) for c in self.codes))

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the raster."""
        return self.index.shape  # type: ignore[return-value]

    def locate(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """District index of each point, ``-1`` outside the raster, outside every district, or NaN.

        Parameters
        ----------
        lon, lat
            Positions. [degree] Same length; any float dtype.

        Returns
        -------
        numpy.ndarray
            int16 indexes into ``codes``, one per point.
        """
        lon = np.asarray(lon, dtype=np.float64)
        lat = np.asarray(lat, dtype=np.float64)
        rows, cols = self.index.shape
        with np.errstate(invalid="ignore"):
            fc = np.floor((lon - self.west) / self.dlon)
            fr = np.floor((lat - self.south) / self.dlat)
            inside = (fc >= 0) & (fc < cols) & (fr >= 0) & (fr < rows)  # False for NaN
        out = np.full(lon.shape, OUTSIDE, dtype=np.int16)
        out[inside] = self.index[fr[inside].astype(np.intp), fc[inside].astype(np.intp)]
        return out

    def codes_of(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """District code of each point ("" outside), as an object array."""
        table = np.array([*self.codes, ""], dtype=object)  # index -1 reads the last entry, ""
        return table[self.locate(lon, lat)]

    def save(self, path: str | Path) -> None:
        """Write the raster as ``.npz`` (see the module docstring)."""
        np.savez_compressed(path, codes=np.array(self.codes, dtype=str), index=self.index,
                            bounds=np.array([self.west, self.south, self.dlon, self.dlat], dtype=np.float64))

    @classmethod
    def load(cls, path: str | Path) -> DistrictRaster:
        """Read a raster written by `save`; a malformed file raises ValueError naming what is wrong."""
        try:
            with np.load(path, allow_pickle=False) as npz:
                codes, index, bounds = npz["codes"], npz["index"], npz["bounds"]
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a district raster ({exc})") from exc
        if bounds.shape != (4,):
            raise ValueError(f"{path}: bounds must be 4 numbers (west, south, dlon, dlat), got shape {bounds.shape}")
        west, south, dlon, dlat = (float(b) for b in bounds)
        return cls(tuple(str(c) for c in codes.tolist()), index, west, south, dlon, dlat)


def _problems(codes: tuple[str, ...], index: np.ndarray, dlon: float, dlat: float) -> list[str]:
    """Everything wrong with a raster's arrays (empty when it is sound)."""
    problems = []
    index = np.asarray(index)
    if index.ndim != 2:
        problems.append(f"index must be 2-D, got {index.ndim}-D")
    if not np.issubdtype(index.dtype, np.integer):
        problems.append(f"index must be integer, got {index.dtype}")
    elif index.size and (index.min() < OUTSIDE or index.max() >= len(codes)):
        problems.append(f"index values must be in [-1, {len(codes) - 1}], got [{index.min()}, {index.max()}]")
    if len(codes) > np.iinfo(np.int16).max:
        problems.append(f"too many districts for int16: {len(codes)}")
    if len(set(codes)) != len(codes):
        problems.append("codes are not unique")
    if not (np.isfinite(dlon) and dlon > 0 and np.isfinite(dlat) and dlat > 0):
        problems.append(f"cell size must be positive, got dlon={dlon}, dlat={dlat}")
    return problems


# -- routing records to districts (ingest workers, docs/city-deployment.md sections 2 and 5) -------------------

UNKNOWN, MOVER = -1, -2
"""Codes of ``DistrictRouter``'s device table: a device not in it, a moving device without a home district."""


@dataclass(frozen=True)
class Split:
    """Rows of a batch by district (``DistrictRouter.split``); every row is in exactly one field."""

    parts: dict[str, np.ndarray]
    """District code -> the row indexes that go there, in batch order (int64)."""
    outside: np.ndarray
    """Rows routed by a position that lies in no district (outside the city)."""
    unplaced: np.ndarray
    """Rows without a position whose device has no district (not in the device -> district map)."""


class DistrictRouter:
    """Which district each record of a ``Batch`` goes to.

    * a record of a **static device** (a key of ``static`` that is not a mover) goes to that device's district,
      whatever position it carries;
    * a record with a position (finite ``lon`` and ``lat``) of a **mover** (``movers``: vehicles, field units),
      or of a device not in ``static`` (a citizen report's source), goes to the district its position lies in
      (``raster``); ``GCJ02`` positions are converted first with ``to_wgs84`` when given;
    * a mover's record without a position (an acknowledgement, a task answer) goes to its home district in
      ``static`` if it has one.

    The rest is refused: a position in no district (``Split.outside``), or no position and no district
    (``Split.unplaced``). Cost: a dictionary lookup per run of equal device ids (a SenML pack is one device) and
    one raster lookup per positioned record.

    Parameters
    ----------
    raster : DistrictRaster
    static : mapping of str to str
        Device id -> district code (need not be a code of the raster: a district may be a set of tiles).
    movers : iterable of str
        Device ids routed by their position.
    to_wgs84 : callable or None
        ``(lon, lat) -> (lon, lat)`` for GCJ02 positions [degree]; None looks them up as sent.
    """

    def __init__(self, raster: DistrictRaster, static: dict[str, str], movers: tuple[str, ...] | frozenset[str] = (),
                 to_wgs84=None) -> None:
        codes = list(raster.codes)
        index = {c: i for i, c in enumerate(codes)}
        for code in dict.fromkeys(static.values()):
            if code not in index:
                index[code] = len(codes)
                codes.append(code)
        movers = frozenset(movers)
        table: dict[str, int] = {d: index[c] for d, c in static.items() if d not in movers}
        for d in movers:  # a mover's home district h is coded -3 - h (below MOVER)
            table[d] = -3 - index[static[d]] if d in static else MOVER
        self.raster = raster
        self.codes = tuple(codes)
        self.to_wgs84 = to_wgs84
        self._table = table

    def place(self, device_id: str, code: str | None, mover: bool) -> None:
        """Set where a device's records go (a registry change at run time): a static device to ``code`` (None: no
        entry, its records are unplaced), a mover by its position with ``code`` as its home (None: no home).
        ``code`` must be one of ``codes``."""
        index = self.codes.index(code) if code is not None else None
        if mover:
            self._table[device_id] = MOVER if index is None else -3 - index
        elif index is None:
            self._table.pop(device_id, None)
        else:
            self._table[device_id] = index

    def split(self, batch) -> Split:
        """The rows of ``batch`` (an ``ingest.batch.Batch``) by district; see the class docstring."""
        n = len(batch)
        info = self._device_info(batch.device)
        home = np.where(info >= 0, info, np.where(info <= -3, -3 - info, -1))
        has_pos = np.isfinite(batch.lon) & np.isfinite(batch.lat)
        by_pos = np.flatnonzero(has_pos & (info < 0))
        target = home.astype(np.int64)
        if by_pos.size:
            lon, lat = self._wgs84(batch, by_pos)
            target[by_pos] = self.raster.locate(lon, lat)
        outside_mask = np.zeros(n, dtype=bool)
        outside_mask[by_pos] = target[by_pos] < 0
        rows = np.arange(n)
        outside = rows[outside_mask]
        unplaced = rows[(target < 0) & ~outside_mask]
        placed = np.flatnonzero(target >= 0)
        order = placed[np.argsort(target[placed], kind="stable")]
        groups, starts = np.unique(target[order], return_index=True)
        ends = [*starts[1:].tolist(), len(order)] if len(groups) else []
        parts = {self.codes[g]: order[s:e] for g, s, e in zip(groups.tolist(), starts.tolist(), ends, strict=True)}
        return Split(parts, outside, unplaced)

    def _device_info(self, device: np.ndarray) -> np.ndarray:
        """The table's code of every row's device, one lookup per run of equal ids."""
        n = len(device)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        starts = np.flatnonzero(np.concatenate(([True], device[1:] != device[:-1])))
        get = self._table.get
        codes = np.fromiter((get(d, UNKNOWN) for d in device[starts].tolist()), dtype=np.int64, count=len(starts))
        return np.repeat(codes, np.diff(np.append(starts, n)))

    def _wgs84(self, batch, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lon, lat = batch.lon[rows], batch.lat[rows]
        if self.to_wgs84 is None:
            return lon, lat
        gcj = batch.datum[rows] == "GCJ02"
        if gcj.any():
            lon, lat = lon.copy(), lat.copy()
            lon[gcj], lat[gcj] = self.to_wgs84(lon[gcj], lat[gcj])
        return lon, lat
