"""The city's vital signs (城市运行体征, issue 18): a few indicators at every node of the management tree, every tick.

The tree is `twin.district.admin.AdminTree` (city → district → street → grid unit). `TwinCore.on_tick` gathers the
tick's inputs (`TickInputs`) under the core's lock and hands them to `Vitals.tick`, which computes every indicator
at every node, keeps a one-hour trend memory, and writes one row per node and the tick's level frames to the store
(`twin.alerting.store.Store.record_vitals`). docs/guides/vital-signs.md lists the indicators, units and level rules.

Each indicator is ``{"value", "unit", "level", "trend", "trend_arrow", "detail"}``: ``level`` 0 none/green, 1 blue,
2 yellow, 3 orange, 4 red, -1 no data; ``trend`` the value now minus the value about an hour before (None without
that history); ``trend_arrow`` ↑ ↓ → ("" without a trend).

The maths is in small pure functions over numpy arrays (`grid_parts`, `link_parts`, `alert_parts`, `tally`,
`sensor_parts`, `lift`, `finish`), so a test can hand-compute them on a 3 x 3 grid: cells are first summed into
*groups* (the tree's atoms, `AdminTree.cell_atom`: one pass over the grid a tick), the groups then lifted to each
level with small index arrays (`AdminTree.atom_nodes`).

A district twin of a city counts only the cells it owns (``district_cells``, its grid's ``in_district`` layer,
`twin.city.districts`): the cells outside its district belong to no group, so their people, water, waterlogged
area, alerts, cases, field units and road links are counted by the neighbouring twin, not by this one. Its own
sensors count wherever they lie. Without a mask (the single-process Bund twin) every cell counts.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from scipy import ndimage

from twin.district.admin import ADMIN_LEVELS, AdminTree, check_level
from twin.district.grid import GridSpec

log = logging.getLogger(__name__)

INDICATORS = ("people", "water", "traffic", "alerts", "cases", "sensors", "units")
"""The indicators, in the page's order."""
INDICATOR_UNITS = {"people": "person", "water": "m", "traffic": "1", "alerts": "1", "cases": "1", "sensors": "%",
                   "units": "1"}
SENSOR_KINDS = ("crowd", "rain", "water", "traffic")
"""The registry kinds that are sensors (vehicles and field units report positions only)."""
FRAME_NAMES = ("level", "level_crowd", "level_flood", "level_traffic")
"""The level layers stored every tick for the timeline (int8 grids, -1 no data)."""
WATERLOGGED_DEPTH_M = 0.15
"""Water at least this deep is waterlogging (积水) [mem: GB 50014 / GB 51222 count a road "not waterlogged" while the
water in one lane is at most 15 cm; the flood model's yellow depth, docs/science/flood.md]. [m]"""
SLOW_ROAD_LEVEL = 3
"""A link at this GB/T 33171-2016 level or worse (3 moderate, 4 severe congestion) is a slow road [src: GB/T 33171
中度拥堵 / 严重拥堵]."""
TPI_BANDS = (2.0, 4.0, 6.0, 8.0)
"""Upper bounds of the traffic performance index bands 畅通 smooth / 基本畅通 basically smooth / 轻度拥堵 light /
中度拥堵 moderate / (8-10) 严重拥堵 severe [src: Beijing DB11/T 785-2011, docs/science/traffic.md 3.3]; levels 0-4 in
that order (0 none ... 4 red). The twin's index is TPI-like, not the official TPI. [1]"""
SENSOR_SHARE_BANDS = (25.0, 50.0, 75.0, 90.0)
"""Share of sensors reporting [%]: >= 90 level 0, >= 75 blue, >= 50 yellow, >= 25 orange, below red [design: a
few silent devices are routine; below half, the picture the twin gives is mostly guesswork]."""
CASES_OVERDUE_LEVEL = 2
"""Level of the cases indicator when an open case in the node has an overdue step (else 0) [design]."""
TREND_HORIZON_S = 3600.0
"""The trend compares with the value this long ago. [s]"""
TREND_TOLERANCE_S = 300.0
"""The sample used for the trend may be this far from `TREND_HORIZON_S` ago; none that close: no trend [design]. [s]"""
SAMPLE_S = 60.0
"""The trend memory keeps one sample per this much twin time (the first tick of each minute). [s]"""
HISTORY_SAMPLES = 70
"""Samples kept in memory per node (70 min: the hour and the tolerance) [design]."""
STEADY = {"people": 10.0, "water": 0.02, "traffic": 0.2, "alerts": 0.5, "cases": 0.5, "sensors": 1.0, "units": 0.5}
"""A trend smaller than this (and than `STEADY_REL` of the value an hour ago) is steady, →
[design: about one step of the value's rounding for counts; 10 people, 2 cm of water, 0.2 index, 1 %]."""
STEADY_REL = 0.05
"""A trend within this share of the value an hour ago is steady too [design]. [1]"""
DECIMALS = {"people": 0, "water": 3, "traffic": 2, "alerts": 0, "cases": 0, "sensors": 1, "units": 0}
"""Rounding of each indicator's value and trend (people to one person, water to 1 mm, ...)."""
INTEGER = frozenset({"people", "alerts", "cases", "units"})
STORE_WARN_S = 60.0
"""While the store fails, the vital signs log one warning per this much wall-clock time, not one a tick [design:
an outage of a minute is one line, of an hour sixty]. [s]"""


# ---------------------------------------------------------------- grouping cells
class Grouping:
    """Cells (or any items) sorted by group once, so that sums and maxima per group are one ``reduceat`` a tick.

    ``group``: the group of each item (-1 or >= ``n``: none); ``n``: the number of groups.
    """

    def __init__(self, group: np.ndarray, n: int) -> None:
        g = np.asarray(group, np.int64).ravel()
        self.group, self.n = g, int(n)
        valid = np.flatnonzero((g >= 0) & (g < n))
        self.order = valid[np.argsort(g[valid], kind="stable")]
        counts = np.bincount(g[valid], minlength=n)
        self.filled = np.flatnonzero(counts > 0)
        self.starts = (np.cumsum(counts) - counts)[self.filled]

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Sum of ``values`` (one per item) per group; 0 for an empty group."""
        out = np.zeros(self.n)
        if self.filled.size:
            out[self.filled] = np.add.reduceat(np.asarray(values, float).ravel()[self.order], self.starts)
        return out

    def max(self, values: np.ndarray, empty: float) -> np.ndarray:
        """Largest of ``values`` per group, NaN ignored (`numpy.fmax`); ``empty`` for an empty or all-NaN group."""
        out = np.full(self.n, float(empty))
        if self.filled.size:
            top = np.fmax.reduceat(np.asarray(values, float).ravel()[self.order], self.starts)
            out[self.filled] = np.where(np.isnan(top), empty, top)
        return out


# ---------------------------------------------------------------- parts: what sums (or maxes) up the tree
@dataclass
class Parts:
    """What each group holds, in quantities that add up (or take maxima) from groups to nodes."""

    n: int
    people: np.ndarray
    """Σ crowd density × walkable area over the cells with data. [person]"""
    people_cells: np.ndarray
    """Cells with a crowd density. [1]"""
    crowd_level: np.ndarray
    """Worst crowd level (-1 no data). [int]"""
    water_max: np.ndarray
    """Deepest water (NaN no data). [m]"""
    flood_level: np.ndarray
    """Worst flood level (-1 no data). [int]"""
    wet_m2: np.ndarray
    """Area of the cells with water at least `WATERLOGGED_DEPTH_M` deep. [m2]"""
    patches: np.ndarray
    """Distinct (group, patch label) pairs of waterlogged cells, shape (k, 2) (a patch over two groups is in both)."""
    tpi_len: np.ndarray
    """Σ link TPI-like index × link length over the links with an index. [m]"""
    length: np.ndarray
    """Σ length of those links. [m]"""
    links: np.ndarray
    """Links with an index. [1]"""
    slow: np.ndarray
    """Links at GB/T 33171 level >= `SLOW_ROAD_LEVEL`. [1]"""
    alerts: np.ndarray
    """Distinct (group, alert, level) rows of the active observed alerts, shape (k, 3)."""
    forecasts: np.ndarray
    """Distinct (group, alert, level) rows of the active forecast alerts (CAP certainty not Observed, e.g. the
    ``crowd_forecast`` alerts, certainty Likely), shape (k, 3)."""
    cases: np.ndarray
    overdue: np.ndarray
    expected: np.ndarray
    """Sensors placed in the group. [1]"""
    reporting: np.ndarray
    """Of those, the ones with a fresh reading. [1]"""
    stale: np.ndarray
    """Silent sensors by kind, shape (n, len(kinds)). [1]"""
    units: np.ndarray
    """Field units located in the group. [1]"""
    busy: np.ndarray
    """Of those, the ones assigned to an open case. [1]"""


def grid_parts(grouping: Grouping, density: np.ndarray, walkable: np.ndarray, level_crowd: np.ndarray,
               depth: np.ndarray, level_flood: np.ndarray, cell_area: float,
               shape: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """The grid's parts per group: people (Σ density [person m-2] × walkable area [m2] where the density is known),
    cells with data, worst crowd and flood levels, deepest water [m], waterlogged area [m2] (cells at least
    `WATERLOGGED_DEPTH_M` deep × ``cell_area`` [m2]) and the (group, patch) pairs of the 4-connected waterlogged
    patches (``shape`` (ny, nx) of the flat arrays: the patches are found on the grid)."""
    density = np.asarray(density, float).ravel()
    known = np.isfinite(density)
    walk = np.nan_to_num(np.asarray(walkable, float).ravel())
    people = grouping.sum(np.where(known, density * walk, 0.0))
    cells = grouping.sum(known.astype(float))
    crowd = grouping.max(np.asarray(level_crowd, float), -1.0)
    depth = np.asarray(depth, float)
    water = grouping.max(depth, np.nan)
    flood = grouping.max(np.asarray(level_flood, float), -1.0)
    with np.errstate(invalid="ignore"):
        wet = depth >= WATERLOGGED_DEPTH_M  # NaN: not wet
    wet_m2 = grouping.sum(wet.ravel().astype(float)) * cell_area
    patches = np.zeros((0, 2), np.int64)
    if wet.any():
        labels, _ = ndimage.label(wet.reshape(shape) if shape is not None else wet)
        labels = labels.ravel()
        hit = np.flatnonzero(labels)
        g = grouping.group[hit]
        ok = (g >= 0) & (g < grouping.n)
        patches = np.unique(np.column_stack([g[ok], labels[hit][ok]]), axis=0)
    return {"people": people, "people_cells": cells, "crowd_level": crowd, "water_max": water, "flood_level": flood,
            "wet_m2": wet_m2, "patches": patches}


def link_parts(group: np.ndarray, n: int, tpi: np.ndarray, length: np.ndarray, level: np.ndarray
               ) -> dict[str, np.ndarray]:
    """The road links' parts per group (a link's group: that of its midpoint's cell): Σ TPI-like index × length [m]
    and Σ length [m] over the links with an index, how many links have one, and slow links (GB/T 33171 level >=
    `SLOW_ROAD_LEVEL`)."""
    group, tpi = np.asarray(group, np.int64), np.asarray(tpi, float)
    length, level = np.asarray(length, float), np.asarray(level)
    ok = (group >= 0) & (group < n)
    known = ok & np.isfinite(tpi)
    return {"tpi_len": np.bincount(group[known], weights=tpi[known] * length[known], minlength=n),
            "length": np.bincount(group[known], weights=length[known], minlength=n),
            "links": np.bincount(group[known], minlength=n).astype(float),
            "slow": np.bincount(group[ok & (level >= SLOW_ROAD_LEVEL)], minlength=n).astype(float)}


def alert_parts(groups: list[np.ndarray], levels: list[int]) -> np.ndarray:
    """(group, alert index, level) rows, one per group an active alert touches (``groups[k]``: the groups of alert
    k's cells), shape (k, 3)."""
    rows = []
    for k, (g, lv) in enumerate(zip(groups, levels, strict=True)):
        g = np.unique(np.asarray(g, np.int64))
        g = g[g >= 0]
        if g.size:
            rows.append(np.column_stack([g, np.full(g.size, k), np.full(g.size, lv)]))
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 3), np.int64)


def tally(group: np.ndarray, n: int, flag: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(items, flagged items) per group: open cases and the overdue ones, units and the busy ones."""
    group = np.asarray(group, np.int64)
    ok = (group >= 0) & (group < n)
    flag = np.zeros(group.size, bool) if flag is None else np.asarray(flag, bool)
    return (np.bincount(group[ok], minlength=n).astype(float),
            np.bincount(group[ok & flag], minlength=n).astype(float))


def sensor_parts(group: np.ndarray, n: int, kind: np.ndarray, reporting: np.ndarray, n_kinds: int
                 ) -> dict[str, np.ndarray]:
    """Sensors expected, reporting and silent by kind (``kind``: an index into the kinds) per group."""
    expected, fresh = tally(group, n, reporting)
    group, kind, reporting = np.asarray(group, np.int64), np.asarray(kind, np.int64), np.asarray(reporting, bool)
    ok = (group >= 0) & (group < n) & ~reporting
    stale = np.zeros((n, n_kinds))
    np.add.at(stale, (group[ok], kind[ok]), 1.0)
    return {"expected": expected, "reporting": fresh, "stale": stale}


def empty_parts(n: int, n_kinds: int) -> dict[str, np.ndarray]:
    """Parts of groups that hold nothing (no data)."""
    z = np.zeros(n)
    return {"people": z, "people_cells": z, "crowd_level": np.full(n, -1.0), "water_max": np.full(n, np.nan),
            "flood_level": np.full(n, -1.0), "wet_m2": z, "patches": np.zeros((0, 2), np.int64), "tpi_len": z,
            "length": z, "links": z, "slow": z, "alerts": np.zeros((0, 3), np.int64),
            "forecasts": np.zeros((0, 3), np.int64), "cases": z, "overdue": z,
            "expected": z, "reporting": z, "stale": np.zeros((n, n_kinds)), "units": z, "busy": z}


def parts_of(n: int, n_kinds: int, **given: np.ndarray) -> Parts:
    """`Parts` from the pieces given (the others empty)."""
    pieces = empty_parts(n, n_kinds)
    pieces.update(given)
    return Parts(n=n, **pieces)


_SUMS = ("people", "people_cells", "wet_m2", "tpi_len", "length", "links", "slow", "cases", "overdue", "expected",
         "reporting", "units", "busy")
_MAXES = ("crowd_level", "flood_level")


def lift(parts: Parts, mapping: np.ndarray, n: int) -> Parts:
    """The parts of ``n`` nodes from those of the groups, ``mapping[g]`` the node of group g (-1: none)."""
    mapping = np.asarray(mapping, np.int64)
    ok = mapping >= 0
    m = mapping[ok]
    out: dict[str, Any] = {}
    for name in _SUMS:
        out[name] = np.bincount(m, weights=getattr(parts, name)[ok], minlength=n)
    for name in _MAXES:
        top = np.full(n, -1.0)
        np.maximum.at(top, m, getattr(parts, name)[ok])
        out[name] = top
    water = np.full(n, np.nan)
    np.fmax.at(water, m, parts.water_max[ok])
    out["water_max"] = water
    stale = np.zeros((n, parts.stale.shape[1]))
    np.add.at(stale, m, parts.stale[ok])
    out["stale"] = stale
    for name, width in (("patches", 2), ("alerts", 3), ("forecasts", 3)):
        rows = getattr(parts, name)
        node = np.where(rows[:, 0] >= 0, mapping[np.maximum(rows[:, 0], 0)], -1) if rows.size else np.zeros(0, np.int64)
        keep = rows[node >= 0]
        keep = np.column_stack([node[node >= 0], keep[:, 1:]]) if keep.size else np.zeros((0, width), np.int64)
        out[name] = np.unique(keep, axis=0) if keep.size else keep
    return Parts(n=n, **out)


# ---------------------------------------------------------------- levels
def traffic_level(index: np.ndarray) -> np.ndarray:
    """Level of a TPI-like index by `TPI_BANDS` (0 smooth ... 4 severe; -1 for NaN)."""
    index = np.asarray(index, float)
    return np.where(np.isfinite(index), np.searchsorted(TPI_BANDS, np.nan_to_num(index), side="right"), -1)


def sensor_level(share: np.ndarray) -> np.ndarray:
    """Level of the share of sensors reporting [%] by `SENSOR_SHARE_BANDS` (-1 for NaN: no sensor)."""
    share = np.asarray(share, float)
    return np.where(np.isfinite(share), 4 - np.searchsorted(SENSOR_SHARE_BANDS, np.nan_to_num(share), side="right"),
                    -1)


def _num(name: str, value: float) -> float | int | None:
    """The value rounded for its indicator (`DECIMALS`), None for NaN."""
    if value is None or not math.isfinite(value):
        return None
    v = round(float(value), DECIMALS[name])
    return int(v) if name in INTEGER else v


def _nums(name: str, values: np.ndarray) -> list:
    """`_num` of every value of an array."""
    rounded = np.round(np.asarray(values, float), DECIMALS[name]).tolist()
    if name in INTEGER:
        return [None if v != v else int(v) for v in rounded]
    return [None if v != v else v for v in rounded]


def _ints(values: np.ndarray) -> list[int]:
    return np.asarray(values).astype(np.int64).tolist()


def finish(parts: Parts, kinds: tuple[str, ...] = SENSOR_KINDS, has_links: bool = True,
           has_cases: bool = True) -> list[dict[str, dict]]:
    """Every node's indicators (without trends: `Vitals` adds them): {name: {"value", "unit", "level", "detail"}}.

    ``has_links``: the twin has road links (else traffic is no data); ``has_cases``: it runs its case loop (else
    cases are no data). An indicator whose level is -1 (its inputs are no data: e.g. the flood levels with the rain
    gauges silent) has no value either (None), not a modelled number next to a grey "no data". The alerts indicator
    counts the observed alerts (value, level, ``by_level``); the forecast alerts are only in its detail
    (``forecast``, ``forecast_by_level``)."""
    n = parts.n
    nan = np.full(n, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        index = np.where(parts.length > 0, parts.tpi_len / parts.length, np.nan) if has_links else nan
        share = np.where(parts.expected > 0, 100.0 * parts.reporting / parts.expected, np.nan)
    patches = np.bincount(parts.patches[:, 0], minlength=n) if parts.patches.size else np.zeros(n, np.int64)
    by_level, forecast = _by_level(parts.alerts, n), _by_level(parts.forecasts, n)
    worst = np.where(by_level.any(axis=1), 4 - np.argmax(by_level[:, ::-1] > 0, axis=1), 0)
    overdue = parts.overdue.astype(np.int64)
    values = {"people": _nums("people", np.where(parts.people_cells > 0, parts.people, np.nan)),
              "water": _nums("water", parts.water_max), "traffic": _nums("traffic", index),
              "alerts": _ints(by_level.sum(axis=1)), "cases": _nums("cases", parts.cases if has_cases else nan),
              "sensors": _nums("sensors", share), "units": _ints(parts.units)}
    levels = {"people": _ints(parts.crowd_level), "water": _ints(parts.flood_level),
              "traffic": _ints(traffic_level(index)), "alerts": _ints(worst),
              "cases": _ints(np.where(overdue > 0, CASES_OVERDUE_LEVEL, 0) if has_cases else np.full(n, -1)),
              "sensors": _ints(sensor_level(share)), "units": [0] * n}
    for name, lv in levels.items():  # no data: no value
        values[name] = [None if level < 0 else v for v, level in zip(values[name], lv, strict=True)]
    cells, wet = _ints(parts.people_cells), np.round(parts.wet_m2, 1).tolist()
    slow, links, by, fc = _ints(parts.slow), _ints(parts.links), by_level.tolist(), forecast.tolist()
    expected, reporting, stale = _ints(parts.expected), _ints(parts.reporting), parts.stale.astype(np.int64).tolist()
    busy, located, late, points = _ints(parts.busy), _ints(parts.units), overdue.tolist(), patches.tolist()
    details = {
        "people": [{"cells_with_data": c} for c in cells],
        "water": [{"waterlogged_points": p, "waterlogged_m2": w} for p, w in zip(points, wet, strict=True)],
        "traffic": [{"slow_roads": s, "links_with_data": k} for s, k in zip(slow, links, strict=True)],
        "alerts": [{"by_level": {"1": b[0], "2": b[1], "3": b[2], "4": b[3]}, "forecast": sum(f),
                    "forecast_by_level": {"1": f[0], "2": f[1], "3": f[2], "4": f[3]}}
                   for b, f in zip(by, fc, strict=True)],
        "cases": [{"overdue": o} for o in late],
        "sensors": [{"expected": e, "reporting": r, "stale_by_kind": {k: m for k, m in zip(kinds, row, strict=True)
                                                                      if m}}
                    for e, r, row in zip(expected, reporting, stale, strict=True)],
        "units": [{"busy": b, "free": u - b} for b, u in zip(busy, located, strict=True)],
    }
    return [{name: {"value": values[name][i], "unit": INDICATOR_UNITS[name], "level": levels[name][i],
                    "detail": details[name][i]} for name in INDICATORS} for i in range(n)]


def _by_level(rows: np.ndarray, n: int) -> np.ndarray:
    """Alerts per node and level 1-4 from (node, alert, level) rows, shape (n, 4)."""
    return np.stack([np.bincount(rows[rows[:, 2] == lv, 0], minlength=n) if rows.size else np.zeros(n, np.int64)
                     for lv in (1, 2, 3, 4)], axis=1)


def trend_of(name: str, now: float | None, then: float | None) -> tuple[float | None, str]:
    """(value now − value then, rounded; arrow ↑ ↓ →), (None, "") when either is missing. Steady (→) within
    `STEADY` or `STEADY_REL` of the value then."""
    if now is None or then is None or not (math.isfinite(now) and math.isfinite(then)):
        return None, ""
    diff = float(now) - float(then)
    steady = abs(diff) < max(STEADY[name], STEADY_REL * abs(float(then)))
    arrow = "→" if steady else ("↑" if diff > 0 else "↓")
    return _num(name, diff), arrow


# ---------------------------------------------------------------- frames
def encode_frame(level: np.ndarray) -> bytes:
    """An int8 level grid as zlib-compressed bytes (row-major)."""
    return zlib.compress(np.ascontiguousarray(level, np.int8).tobytes(), 1)


def decode_frame(body: bytes, shape: tuple[int, int]) -> np.ndarray:
    """The int8 grid of `encode_frame` (shape (ny, nx)); ValueError if it does not fit the shape."""
    raw = zlib.decompress(bytes(body))
    if len(raw) != shape[0] * shape[1]:
        raise ValueError(f"a stored frame of {len(raw)} cells for a grid of {shape[0]} x {shape[1]}")
    return np.frombuffer(raw, np.int8).reshape(shape).copy()


# ---------------------------------------------------------------- the live computation
@dataclass
class TickInputs:
    """What one tick gives the vital signs (flat per-cell arrays, row-major; NaN / -1 no data)."""

    t: float
    density: np.ndarray
    """Crowd density [person m-2]."""
    walkable: np.ndarray
    """Walkable area of each cell [m2]."""
    level_crowd: np.ndarray
    depth: np.ndarray
    """Water depth [m]."""
    level_flood: np.ndarray
    link_tpi: np.ndarray | None = None
    """TPI-like index of each road link [1] (None: the twin has no road links)."""
    link_level: np.ndarray | None = None
    """GB/T 33171 level of each link (-1 no speed)."""
    alerts: list[tuple[np.ndarray, int]] = field(default_factory=list)
    """(flat cells, level) of each active alert."""
    cases: list[tuple[str, float, float, bool]] | None = None
    """(id, lon, lat [degree], overdue) of each open case; None: the twin runs no case loop."""
    reporting: dict[str, np.ndarray] = field(default_factory=dict)
    """Per sensor kind, whether each device (registry order of the kind) reported within its staleness limit."""
    units: list[tuple[int, bool]] = field(default_factory=list)
    """(flat cell, busy) of each located field unit."""
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    """The level layers to store (`FRAME_NAMES`), int8 (ny, nx)."""
    forecasts: list[tuple[np.ndarray, int]] = field(default_factory=list)
    """(flat cells, level) of each active forecast alert (CAP certainty not Observed: counted apart)."""


class Vitals:
    """The vital signs of one live twin: the tree (built at first use), the last tick's indicators, the one-hour trend
    memory, and the reads of the stored series (thread-safe: the tick replaces the last values whole; the store has
    its own lock)."""

    def __init__(self, grid: GridSpec, store, folder: str | Path | None = None, units_file: str | Path | None = None,
                 district_name: str = "", sensors: list[tuple[str, str, dict | None]] = (), links=None,
                 district_cells: np.ndarray | None = None) -> None:
        self.grid, self.store = grid, store
        self.district_cells = None if district_cells is None else np.asarray(district_cells, bool).reshape(-1)
        """The cells the twin owns (flat bool; None: every cell): the others are counted nowhere (module docstring).
        Set it before the tree is built (the first tick)."""
        self._folder, self._units_file, self._district = folder, units_file, district_name
        self._sensors = list(sensors)
        self._links = links
        self._lock = threading.Lock()
        self._tree: AdminTree | None = None
        self.last: tuple[float, dict[str, str]] | None = None
        """(time of the last tick [unix s], {node id: JSON of its indicators without units})."""
        self._times: deque[float] = deque(maxlen=HISTORY_SAMPLES)
        self._samples: deque[np.ndarray] = deque(maxlen=HISTORY_SAMPLES)
        self._last_minute: float | None = None
        self._stored_minute: float | None = None
        """The last minute (floor(t / `SAMPLE_S`)) whose minute row was written."""
        self._written: dict[str, dict] = {}
        """Per node, what its last written row held (values, levels, details: not the trends)."""
        self._failures = 0
        """Ticks not stored since the store last accepted one."""
        self._last_warning = -math.inf
        self.clock = time.monotonic
        """Wall clock of the store-failure warnings [s] (a test may set its own)."""
        self._last_prune = -math.inf
        self._refilled = False
        self._case_cells: dict[str, int] = {}
        self._last_frames: dict[str, tuple[np.ndarray, bytes]] = {}
        """Per frame name, the last frame written (its grid and bytes)."""

    # ------------------------------------------------------------ static, built once
    @property
    def tree(self) -> AdminTree:
        """The management tree (`twin.district.admin.AdminTree`), built at first use."""
        with self._lock:
            if self._tree is None:
                self._build()
            return self._tree

    def _build(self) -> None:
        tree = AdminTree.build(self.grid, self._folder, self._units_file, self._district)
        own = self.district_cells
        self.grouping = Grouping(tree.cell_atom if own is None else np.where(own, tree.cell_atom, -1),
                                 tree.n_atoms + 1)
        self.node_ids = [n.id for level in ADMIN_LEVELS for n in tree.nodes[level]]
        kinds, cells = [], []
        for kind, _device, geometry in self._sensors:
            kinds.append(SENSOR_KINDS.index(kind))
            cells.append(self._cell_of(geometry))
        self.sensor_kind = np.array(kinds, np.int64)
        self.sensor_atom = tree.atoms_of_cells(np.array(cells, np.int64))
        self.link_atom, self.link_length = None, None
        if self._links is not None and len(self._links):
            mid = shapely.line_interpolate_point(np.asarray(self._links.geometry.values), 0.5, normalized=True)
            r, c = self.grid.cell_of(shapely.get_x(mid), shapely.get_y(mid))
            self.link_atom = self._atoms(tree, self.grid.flat_index(r, c))
            self.link_length = self._links["length_m"].to_numpy(float)
        self._tree = tree

    def _cell_of(self, geometry: dict | None) -> int:
        """The flat cell of a registry geometry (a polygon: the mean of its ring, as `twin.live.state`); -1 none."""
        if not geometry:
            return -1
        if geometry.get("type") == "Point":
            lon, lat = geometry["coordinates"][:2]
        else:
            ring = np.asarray(geometry["coordinates"][0], float)
            lon, lat = ring[:, 0].mean(), ring[:, 1].mean()
        r, c = self.grid.cell_of_lonlat(np.array([lon]), np.array([lat]))
        return int(self.grid.flat_index(r, c)[0])

    # ------------------------------------------------------------ one tick
    def compute(self, inputs: TickInputs) -> dict[str, dict[str, dict]]:
        """Every node's indicators at ``inputs.t`` (without trends), by node id."""
        tree = self.tree
        n_groups, n_kinds = tree.n_atoms + 1, len(SENSOR_KINDS)
        pieces = grid_parts(self.grouping, inputs.density, inputs.walkable, inputs.level_crowd, inputs.depth,
                            inputs.level_flood, self.grid.cell_area, self.grid.shape)
        has_links = self.link_atom is not None and inputs.link_tpi is not None
        if has_links:
            pieces.update(link_parts(self.link_atom, n_groups, inputs.link_tpi, self.link_length, inputs.link_level))
        for name, alerts in (("alerts", inputs.alerts), ("forecasts", inputs.forecasts)):
            pieces[name] = alert_parts([self._atoms(tree, cells) for cells, _ in alerts],
                                       [int(lv) for _, lv in alerts])
        if inputs.cases is not None:
            cells = {c[0]: self._case_cell(c) for c in inputs.cases}
            self._case_cells = cells  # only the open cases' are kept
            atoms = self._atoms(tree, np.array([cells[c[0]] for c in inputs.cases], np.int64))
            pieces["cases"], pieces["overdue"] = tally(atoms, n_groups, np.array([c[3] for c in inputs.cases], bool))
        reporting = np.concatenate([np.asarray(inputs.reporting.get(k, np.zeros(0, bool)), bool)
                                    for k in SENSOR_KINDS]) if inputs.reporting else np.zeros(0, bool)
        if reporting.size == self.sensor_atom.size:
            pieces.update(sensor_parts(self.sensor_atom, n_groups, self.sensor_kind, reporting, n_kinds))
        if inputs.units:
            atoms = self._atoms(tree, np.array([u[0] for u in inputs.units], np.int64))
            pieces["units"], pieces["busy"] = tally(atoms, n_groups, np.array([u[1] for u in inputs.units], bool))
        parts = parts_of(n_groups, n_kinds, **pieces)
        out = {}
        for level in ADMIN_LEVELS:
            nodes = tree.nodes[level]
            values = finish(lift(parts, tree.atom_nodes[level], len(nodes)), SENSOR_KINDS, has_links,
                            inputs.cases is not None)
            out.update({n.id: v for n, v in zip(nodes, values, strict=True)})
        return out

    def _atoms(self, tree: AdminTree, cells: np.ndarray) -> np.ndarray:
        """The atom of each flat cell (`AdminTree.atoms_of_cells`), -1 (no group) for a cell the twin does not own."""
        atoms = tree.atoms_of_cells(cells)
        own = self.district_cells
        if own is None:
            return atoms
        cells = np.asarray(cells, np.int64).reshape(-1)
        ok = (cells >= 0) & (cells < own.size)
        foreign = ok & ~own[np.where(ok, cells, 0)]
        return np.where(foreign, -1, atoms).astype(np.int32)

    def _case_cell(self, case: tuple[str, float, float, bool]) -> int:
        """The flat cell of a case's place (remembered by case id while it is open; -1 outside the grid)."""
        ident, lon, lat, _ = case
        cell = self._case_cells.get(ident)
        if cell is None:
            r, c = self.grid.cell_of_lonlat(np.array([lon]), np.array([lat]))
            cell = self._case_cells[ident] = int(self.grid.flat_index(r, c)[0])
        return cell

    def tick(self, inputs: TickInputs) -> None:
        """Compute, add the trends, remember, and store the indicators and frames of a tick.

        The tick's values become the last ones (`last`: the tiles and /metrics) before anything is written, so they
        follow the twin while the store fails. Written (`twin.alerting.store.Store.record_vitals`): at the first tick
        of each minute a minute row (``res`` ``m``) for every node; at the other ticks a tick row (``res`` ``t``) only
        for the nodes whose values, levels or details differ from their last written row (a trend alone does not
        count: between two rows the stored trend may be up to a minute old); a level frame only when it differs
        from the last one written of its name. A store failure is logged at most once per `STORE_WARN_S`, its end
        once; what was not written is compared against the last rows that were."""
        t = float(inputs.t)
        values = self.compute(inputs)
        if not self._refilled:
            self._refill(t)
        matrix = np.array([[_value(values[node][name]) for name in INDICATORS] for node in self.node_ids], float)
        then = self._sample_near(t - TREND_HORIZON_S)
        if then is not None:
            self._add_trends(values, matrix, then)
        else:
            for node in self.node_ids:
                for ind in values[node].values():
                    ind["trend"], ind["trend_arrow"] = None, ""
        minute = math.floor(t / SAMPLE_S)
        is_minute = self._last_minute is None or minute > self._last_minute
        if is_minute:
            self._last_minute = minute
            self._times.append(t)
            self._samples.append(matrix)
        encode = _ENCODER.encode
        bodies = {node: encode({name: [i["value"], i["level"], i["trend"], i["trend_arrow"], i["detail"]]
                                for name, i in values[node].items()}) for node in self.node_ids}  # `STORED`
        self.last = (t, bodies)
        keys = {node: {name: (i["value"], i["level"], i["detail"]) for name, i in values[node].items()}
                for node in self.node_ids}
        whole = self._stored_minute is None or minute > self._stored_minute
        rows = bodies if whole else {n: b for n, b in bodies.items() if keys[n] != self._written.get(n)}
        frames = self._frames(inputs.frames)
        try:
            self.store.record_vitals(t, "m" if whole else "t", rows, {name: f[1] for name, f in frames.items()})
        except Exception as exc:  # the twin goes on; the stored series has a gap
            self._store_failed(exc)
            return
        self._written.update((n, keys[n]) for n in rows)
        self._last_frames.update(frames)
        if whole:
            self._stored_minute = minute
        if t - self._last_prune >= SAMPLE_S:
            try:
                self.store.prune_vitals(t)
            except Exception as exc:
                self._store_failed(exc)
                return
            self._last_prune = t
        if self._failures:
            log.warning("vital signs: the store works again (%d ticks were not stored)", self._failures)
            self._failures, self._last_warning = 0, -math.inf

    def _store_failed(self, exc: Exception) -> None:
        """Count a tick the store refused; a one-line warning at most once per `STORE_WARN_S` of wall clock."""
        self._failures += 1
        now = self.clock()
        if now - self._last_warning >= STORE_WARN_S:
            self._last_warning = now
            log.warning("vital signs: the store failed, the tiles go on without history (%d ticks not stored): "
                        "%s: %s", self._failures, type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc)
                        else "")

    def _add_trends(self, values: dict[str, dict], now: np.ndarray, then: np.ndarray) -> None:
        """Each indicator's trend (value now − value then) and arrow (`trend_of`, vectorised)."""
        diff = now - then
        steady = np.abs(diff) < np.maximum(np.array([STEADY[name] for name in INDICATORS]),
                                           STEADY_REL * np.abs(np.nan_to_num(then)))
        arrows = np.where(np.isnan(diff), "", np.where(steady, "→", np.where(diff > 0, "↑", "↓"))).tolist()
        columns = [_nums(name, diff[:, j]) for j, name in enumerate(INDICATORS)]
        for k, node in enumerate(self.node_ids):
            for j, name in enumerate(INDICATORS):
                ind = values[node][name]
                ind["trend"], ind["trend_arrow"] = columns[j][k], arrows[k][j]

    def _frames(self, frames: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, bytes]]:
        """The tick's level frames that differ from the last one written of their name: (grid, compressed)."""
        out = {}
        for name in FRAME_NAMES:
            level = frames.get(name)
            if level is None:
                continue
            last = self._last_frames.get(name)
            if last is None or last[0].shape != level.shape or not np.array_equal(last[0], level):
                out[name] = (np.array(level, np.int8), encode_frame(level))
        return out

    def _sample_near(self, target: float) -> np.ndarray | None:
        """The memory's sample closest to ``target`` [unix s] within `TREND_TOLERANCE_S`, or None."""
        if not self._times:
            return None
        times = np.fromiter(self._times, float)
        k = int(np.argmin(np.abs(times - target)))
        return self._samples[k] if abs(times[k] - target) <= TREND_TOLERANCE_S else None

    def _refill(self, t: float) -> None:
        """After a restart: the trend memory from the store's minute rows of the last `HISTORY_SAMPLES` minutes."""
        self._refilled = True
        try:
            rows = self.store.indicator_samples(t - HISTORY_SAMPLES * SAMPLE_S, t)
        except Exception:  # an unreadable history only costs the trend
            log.exception("vital signs: the trend memory could not be read back from the store")
            return
        index = {node: k for k, node in enumerate(self.node_ids)}
        by_t: dict[float, np.ndarray] = {}
        for ts, node, body in rows:
            k = index.get(node)
            if k is None:
                continue
            matrix = by_t.setdefault(float(ts), np.full((len(self.node_ids), len(INDICATORS)), np.nan))
            doc = json.loads(body)
            matrix[k] = [_value(_unpack(name, doc.get(name))) for name in INDICATORS]
        for ts in sorted(by_t):
            self._times.append(ts)
            self._samples.append(by_t[ts])
        if by_t:
            self._last_minute = self._stored_minute = math.floor(max(by_t) / SAMPLE_S)

    # ------------------------------------------------------------ reads
    def nodes_at(self, level: str, at: float | None = None, parent: str | None = None) -> dict:
        """`twin.live.query.LiveQuery.indicators`: the indicators of the nodes of ``level`` (children of ``parent``
        only, when given) at the last tick, or as stored at or before ``at`` [unix s]."""
        check_level(level)
        tree = self.tree
        if at is None:
            t, bodies = self.last if self.last is not None else (None, {})
        else:
            t, bodies = self.store.indicators_at(float(at))
        nodes = []
        for n in tree.nodes[level]:
            if parent is not None and n.parent != parent:
                continue
            body = bodies.get(n.id)
            nodes.append({**n.properties(), "indicators": _with_units(json.loads(body)) if body else {}})
        return {"t": t, "level": level, "nodes": nodes}

    def history(self, node: str, indicator: str | None, since: float | None, until: float | None,
                last_tick: float | None) -> dict:
        """`twin.live.query.LiveQuery.indicator_history`: the node's stored rows with ``since`` <= t <= ``until``, a
        point whenever anything of the node changed (values, levels, details) and one a minute (the minute rows);
        older than an hour, one a minute only. KeyError for an unknown node, ValueError for an unknown indicator."""
        self.tree.node(node)
        if indicator is not None and indicator not in INDICATORS:
            raise ValueError(f"unknown indicator {str(indicator)[:40]!r}; indicators: {', '.join(INDICATORS)}")
        until = float(until) if until is not None else (last_tick if last_tick is not None else math.inf)
        since = float(since) if since is not None else until - TREND_HORIZON_S
        names = (indicator,) if indicator else INDICATORS
        series = {name: {"unit": INDICATOR_UNITS[name], "points": []} for name in names}
        for t, body in self.store.indicator_rows(node, since, until):
            doc = json.loads(body)
            for name in names:
                if name in doc:
                    ind = _unpack(name, doc[name])
                    series[name]["points"].append([t, ind["value"], ind["level"]])
        return {"node": node, "since": since if math.isfinite(since) else None,
                "until": until if math.isfinite(until) else None, "series": series}

    def frame_times(self, last_tick: float | None) -> dict:
        """`twin.live.query.LiveQuery.layer_frames`: the times of the last hour the page can scrub to, oldest first:
        every time at which a level frame (of any name) or a node's indicators were stored, that is whenever a frame
        or an indicator changed, and once a minute (the minute rows). Between two of them nothing stored changed:
        the reads at or before any time show the state of the time listed before it."""
        since = (last_tick if last_tick is not None else math.inf) - TREND_HORIZON_S
        times = self.store.vital_times(since if math.isfinite(since) else -math.inf)
        return {"names": list(FRAME_NAMES), "times": times}

    def frame(self, name: str, at: float) -> tuple[np.ndarray, float] | None:
        """`twin.live.query.LiveQuery.layer_frame`: the stored frame at or before ``at`` and its time, or None.
        ValueError for a name not in `FRAME_NAMES`."""
        if name not in FRAME_NAMES:
            raise ValueError(f"unknown frame {str(name)[:40]!r}; frames: {', '.join(FRAME_NAMES)}")
        row = self.store.frame_at(name, float(at))
        if row is None:
            return None
        t, body = row
        return decode_frame(body, self.grid.shape), float(t)


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _value(ind: dict) -> float:
    v = ind.get("value")
    return float(v) if v is not None else math.nan


STORED = ("value", "level", "trend", "trend_arrow", "detail")
"""An indicator as stored in a row's body: a list of these fields, about 40 % shorter than the dict (its unit comes
from `INDICATOR_UNITS`)."""


def _unpack(name: str, stored: list | dict | None) -> dict:
    """An indicator from its stored list (or dict), with its unit."""
    if isinstance(stored, list):
        stored = dict(zip(STORED, stored, strict=False))
    stored = stored or {}
    return {"value": stored.get("value"), "unit": INDICATOR_UNITS.get(name, ""), "level": stored.get("level", -1),
            "trend": stored.get("trend"), "trend_arrow": stored.get("trend_arrow") or "",
            "detail": stored.get("detail") or {}}


def _with_units(doc: dict) -> dict:
    return {name: _unpack(name, stored) for name, stored in doc.items()}


def registry_sensors(registry) -> list[tuple[str, str, dict | None]]:
    """(kind, id, geometry) of the registry's sensors, kind by kind in `SENSOR_KINDS` order and registry order within
    a kind (the order of `twin.live.observations.SensorReadings`): `ingest.registry.Registry.known`, so a retired
    sensor is there, with no geometry (it keeps its row in the live state's tables and is nowhere)."""
    return [(kind, d.id, d.geometry if d.active else None) for kind in SENSOR_KINDS for d in registry.known(kind)]


__all__ = ["FRAME_NAMES", "INDICATORS", "INDICATOR_UNITS", "SENSOR_KINDS", "Grouping", "Parts", "TickInputs",
           "Vitals", "alert_parts", "decode_frame", "encode_frame", "finish", "grid_parts", "lift", "link_parts",
           "parts_of", "registry_sensors", "sensor_level", "sensor_parts", "tally", "traffic_level", "trend_of"]
