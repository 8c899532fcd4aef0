"""The live twin state: checked observations applied to the district's grid.

`TwinState.apply` takes an ingest `Batch` (already deduplicated by ingest) and

- turns positions into CGCS2000 (GCJ-02 feeds are converted by iterative inversion,
  `twin.district.geo`) and grid cells; a position outside the grid is rejected as ``outside_grid``;
- keeps the latest reading of each fixed sensor (crowd counters, rain and water gauges,
  loop detectors: speed, flow and occupancy; river-level gauges and pump stations' discharges) with its time,
  so every cell knows how fresh its inputs are; the registry's ``downstream`` property pairs loop detectors for
  incident detection;
- moves vehicles and field units in the entity table, and keeps recent vehicle pings for
  the probe speeds;
- hands unit acknowledgements back to the caller (the core checks them against the deliveries
  and records them), and so the units' task answers (quantity ``task_{status}``) and the citizen reports
  (quantity ``report``): the core's case desk (`twin.live.case_desk`) decides on them.

Per registry: the sensors' cells, the crowd counters' coverage, cut into pieces each covered by one fixed set of
counters (`twin.district.coverage.shared_coverage`), and the counters' registry properties ``walkable_area_m2`` and
``count_rel_error``; a walkable-area override file (`twin.district.walkable`) replaces the twin's
``walkable_area`` layer (docs/science/crowd.md 1.4). The registry changes at run time (docs/guides/devices.md):
`TwinState.apply_devices` follows it table by table without rebuilding them. Each kind's tables have one row per
sensor ever registered, in the order they were registered (`ingest.registry.Registry.known`): a retired sensor
keeps its row, inert, so the rows of a twin built from the same registry version are the same, live or restarted
(snapshots keep per-row model state). `TwinState.reporting_devices` names the sensors an
alert on some cells may cite: those that reported within the staleness window.

A district grid of a city (`twin.city.districts`) marks the cells the twin owns in its ``in_district`` layer:
`TwinState.in_district` and `TwinState.outside_cells` carry it to the models, which make every other cell no data
(docs/guides/district-twins.md). Readings and positions there are still taken (a sensor near the border, a unit
handed over), they only never give such a cell a level. A grid without the layer (the single-process Bund twin)
owns every cell.

The fields the models need each tick are derived from this in `twin.live.models`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import shapely
import xarray as xr

from ingest.batch import Batch
from ingest.decoders.units import TASK_STATUSES
from ingest.registry import Device, Registry
from twin.district import geo
from twin.district.coverage import SharedCoverage, shared_coverage
from twin.district.dataset import grid_of
from twin.district.grid import GridSpec
from twin.district.walkable import with_walkable_file
from twin.live.entities import EntityTable
from twin.live.observations import SensorReadings

log = logging.getLogger(__name__)

SENSOR_QUANTITIES = {"crowd": ("count",), "rain": ("rain",), "water": ("depth",), "traffic": ("speed", "flow", "occ"),
                     "level": ("level",), "pump": ("discharge",)}
POINT_SENSORS = ("rain", "water", "traffic", "level", "pump")
"""The sensors the twin places in one cell each (`TwinState.sensor_cells`); crowd counters cover an area. A pump
station's cell is its outfall's (the middle of a spread outfall's line; the live flood model spreads its discharge
along the whole line, `twin.live.river.LiveRiver.pump_place`)."""
RIVER_WIDE = ("level",)
"""Sensor kinds whose reading holds for a whole river, not for their cell: a river-level gauge gives the level of
the river cells of the grid (`twin.live.river.LiveRiver.level`), so it is the evidence of a river alert
on any of them."""
ACK_QUANTITIES = ("ack", "on_scene", "resolved")
ACK_REFUSALS = ("unknown_alert", "not_sent")
"""The twin's reasons to refuse a unit's acknowledgement (`Rejected`)."""
TASK_PREFIX = "task_"
"""A unit's task answer has the quantity ``task_{status}`` (`ingest.decoders.task`)."""
TASK_QUANTITIES = tuple(TASK_PREFIX + s for s in TASK_STATUSES)
REPORT_QUANTITY = "report"
"""A citizen report's quantity (`ingest.decoders.report`)."""
TASK_REFUSALS = ("unknown_case", "not_assigned", "bad_transition")
"""The twin's reasons to refuse a unit's task answer (`Rejected`); each is answered on ``units/{id}/tasks/errors``."""
REPORT_REFUSALS = ("unknown_source", "unknown_category", "bad_report")
"""The twin's reasons to refuse a citizen report (`Rejected`)."""
IN_DISTRICT = "in_district"
"""The layer of a district grid that marks the cells the twin owns (`twin.city.districts`)."""
PING_MEMORY_S = 900.0
"""How long vehicle pings are kept for the probe speeds. [s]"""
PING_DTYPE = np.dtype([("t", "f8"), ("cell", "i8"), ("speed", "f8"), ("x", "f8"), ("y", "f8"), ("course", "f8"),
                       ("alt", "f8"), ("device", "O")])
"""A vehicle ping: time [unix s], flat cell, speed [km h-1], position in the grid CRS [m], course [degree], altitude
above the geoid as the receiver sent it [m] (NaN unknown), device."""
PING_NUMBERS = ("t", "cell", "speed", "x", "y", "course", "alt")


@dataclass
class Rejected:
    """A record the twin refused, for the dead-letter topic (`twin.live.service` sends it there, counted).

    ``reason`` is the twin's own: ``outside_grid`` (a position outside the grid; ``lon``, ``lat``), or, for a
    unit's acknowledgement (``alert``, ``status``), ``unknown_alert`` (no such alert) or ``not_sent`` (the
    alert was never sent to that unit); the refused acknowledgements also get a reply on the unit's
    ``units/{id}/ack/errors`` topic. For a unit's task answer (``case``, ``status``): `TASK_REFUSALS`, answered
    on ``units/{id}/tasks/errors``; for a citizen report (``device`` its source, ``case`` its id):
    `REPORT_REFUSALS`. ``message`` is the case desk's own one-line explanation of those.
    """

    device: str
    t: float
    lon: float = float("nan")
    lat: float = float("nan")
    reason: str = "outside_grid"
    alert: str = ""
    status: str = ""
    row: int = -1
    """Index of the refused record in the batch it came in (-1: not known), so the ingest loop can find its
    message (`ingest.pipeline.Ingestor.refuse_records`)."""
    case: str = ""
    """The case of a refused task answer, the source's report id of a refused report."""
    message: str = ""
    """Why a task answer or a report was refused (the case desk's words)."""

    @property
    def is_ack(self) -> bool:
        """A refused acknowledgement (else a refused position, task answer or report)."""
        return self.reason in ACK_REFUSALS

    @property
    def is_task(self) -> bool:
        """A refused task answer of a unit."""
        return self.reason in TASK_REFUSALS

    @property
    def detail(self) -> str:
        """One-line reason."""
        if self.message:
            return self.message
        if self.reason == "unknown_alert":
            return (f"{self.status} of {self.device} for unknown alert {self.alert[:120]!r} (acknowledge with the "
                    f"alert's identifier, the identifier of its first CAP message)")
        if self.reason == "not_sent":
            return f"{self.status} of {self.device} for alert {self.alert[:120]!r}, which was never sent to it"
        return f"position {self.lon:.6f},{self.lat:.6f} of {self.device} is outside the twin's grid"

    @property
    def field(self) -> str:
        """The offending field of the payload."""
        if self.is_ack:
            return "alert"
        return {"unknown_case": "case", "not_assigned": "case", "bad_transition": "status", "unknown_source": "topic",
                "unknown_category": "category", "bad_report": "payload"}.get(self.reason, "lon,lat")


@dataclass(frozen=True)
class TaskAnswer:
    """A unit's answer to its task (`ingest.decoders.task`): ``status`` accepted, en_route, on_scene, disposed or
    declined; ``t`` [unix s]; ``row`` its index in the batch."""

    unit: str
    case: str
    status: str
    t: float
    note: str
    row: int


@dataclass(frozen=True)
class ReportRow:
    """A citizen report as ingest gives it (`ingest.decoders.report`): ``source``, the source's own ``ref``, ``t``
    [unix s], ``lon``/``lat`` [degree] in ``datum``, ``note`` the compact JSON of its text fields; ``row`` its
    index in the batch."""

    source: str
    ref: str
    t: float
    lon: float
    lat: float
    datum: str
    note: str
    row: int


@dataclass
class Applied:
    """What one batch did: counts, the units that moved, acknowledgements, rejections."""

    readings: int = 0
    positions: int = 0
    moved_units: list[str] = field(default_factory=list)
    acks: list[tuple[str, str, str, float, int]] = field(default_factory=list)
    """(unit, alert, status, t [unix s], row of the record in the batch)."""
    tasks: list[TaskAnswer] = field(default_factory=list)
    """The units' task answers, in batch order."""
    reports: list[ReportRow] = field(default_factory=list)
    """The citizen reports, in batch order."""
    rejected: list[Rejected] = field(default_factory=list)


def _geometry_lonlat(geometry: dict | None) -> tuple[float, float] | None:
    if not geometry:
        return None
    if geometry["type"] == "Point":
        lon, lat = geometry["coordinates"][:2]
        return float(lon), float(lat)
    if geometry["type"] == "LineString":  # a pump station's spread outfall: its middle
        line = shapely.LineString(np.asarray(geometry["coordinates"], dtype=float)[:, :2])
        mid = line.interpolate(0.5, normalized=True)
        return float(mid.x), float(mid.y)
    ring = np.asarray(geometry["coordinates"][0], dtype=float)
    return float(ring[:, 0].mean()), float(ring[:, 1].mean())


def _grown(a: np.ndarray, n: int, fill: float) -> np.ndarray:
    """A copy of ``a`` with room for ``n`` rows (new ones ``fill``)."""
    out = np.full(max(n, a.size), fill, dtype=a.dtype)
    out[:a.size] = a
    return out


def splice_coverage(grid: GridSpec, cover: SharedCoverage, polys: np.ndarray, changed: np.ndarray,
                    before: list) -> SharedCoverage:
    """``cover`` after the features ``changed`` of ``polys`` changed (their former polygons ``before``): only the
    features that overlap them, directly or through others, now or before, are cut again
    (`twin.district.coverage.shared_coverage`), and their pieces replace the old ones; the other pieces stay. The
    pieces of a group of overlapping features depend on that group only, so the result covers the same areas as
    ``shared_coverage(grid, polys)`` (the pieces in another order)."""
    tree = shapely.STRtree(polys)
    group = {int(i) for i in changed}
    probes = np.array([p for p in before if p is not None and not shapely.is_empty(p)], dtype=object)
    if probes.size:
        group |= set(tree.query(probes, predicate="intersects")[1].tolist())
    frontier = sorted(group)
    while frontier:
        hits = set(tree.query(polys[frontier], predicate="intersects")[1].tolist()) - group
        group |= hits
        frontier = sorted(hits)
    members = np.array(sorted(group), dtype=np.int64)
    drop = np.zeros(cover.piece_cell.size, dtype=bool)
    drop[cover.owner_piece[np.isin(cover.owner_feature, members)]] = True
    keep = ~drop
    renumber = np.cumsum(keep) - 1
    kept_owner = keep[cover.owner_piece]
    sub = shared_coverage(grid, polys[members])
    offset = int(keep.sum())
    return SharedCoverage(np.concatenate([cover.piece_cell[keep], sub.piece_cell]).astype(np.int64),
                          np.concatenate([cover.piece_area[keep], sub.piece_area]),
                          np.concatenate([renumber[cover.owner_piece[kept_owner]], sub.owner_piece + offset]
                                         ).astype(np.int64),
                          np.concatenate([cover.owner_feature[kept_owner], members[sub.owner_feature]]
                                         ).astype(np.int64))


def district_cells(static: xr.Dataset) -> tuple[np.ndarray | None, np.ndarray]:
    """The cells a twin owns, from its grid's ``in_district`` layer (`twin.city.districts`): (bool mask of shape
    (ny, nx), or None without the layer; flat indices of the cells it does not own, empty without the layer or when
    it owns every cell)."""
    if IN_DISTRICT not in static:
        return None, np.zeros(0, np.int64)
    inside = np.asarray(static[IN_DISTRICT].values) != 0
    inside.flags.writeable = False
    return inside, np.flatnonzero(~inside.ravel()).astype(np.int64)


def _task_answers(batch: Batch) -> list[TaskAnswer]:
    """The task answers of a batch (quantity ``task_{status}``), in batch order."""
    q = batch.quantity
    rows = np.flatnonzero(np.isin(q, TASK_QUANTITIES))
    return [TaskAnswer(str(batch.device[i]), str(batch.ref[i]), str(q[i])[len(TASK_PREFIX):], float(batch.t[i]),
                       str(batch.note[i] or ""), int(i)) for i in rows]


def _reports(batch: Batch) -> list[ReportRow]:
    """The citizen reports of a batch (quantity ``report``), in batch order."""
    rows = np.flatnonzero(batch.quantity == REPORT_QUANTITY)
    return [ReportRow(str(batch.device[i]), str(batch.ref[i]), float(batch.t[i]), float(batch.lon[i]),
                      float(batch.lat[i]), str(batch.datum[i] or ""), str(batch.note[i] or ""), int(i))
            for i in rows]


class TwinState:
    """Observations of a district on its grid (see the module docstring)."""

    def __init__(self, static: xr.Dataset, registry: Registry,
                 walkable_override: str | os.PathLike | None = None) -> None:
        self.static = static
        self.grid = grid_of(static)
        self.in_district, self.outside_cells = district_cells(static)
        """The cells this twin owns (bool, shape (ny, nx); None: every cell, a grid without ``in_district``) and the
        flat indices of the others (empty when it owns every cell): no data for the twin (`twin.live.models`)."""
        self.registry = registry
        self.readings = {kind: SensorReadings(kind, tuple(d.id for d in registry.known(kind)), q)
                         for kind, q in SENSOR_QUANTITIES.items()}
        self.sensor_rows = {kind: dict(r.index) for kind, r in self.readings.items()}
        """Row of every sensor of a kind in the per-sensor tables, retired ones included: a retired sensor keeps its
        row, inert (no readings taken, no cell, no coverage), so rows never move (`apply_devices`)."""
        self.retired_rows = {kind: {d for d in r.ids if registry.get(d) is None} for kind, r in self.readings.items()}
        for kind, r in self.readings.items():
            for dev_id in self.retired_rows[kind]:
                del r.index[dev_id]  # a retired sensor's readings are not taken
        self.entities = EntityTable(self.grid)
        for d in registry.devices.values():
            if d.kind in ("vehicle", "unit"):
                self.entities.register(d.id, d.kind, d.unit_type)
        self.sensor_cells = {kind: self._point_cells(kind) for kind in POINT_SENSORS}
        self.loop_downstream = self._downstream()
        self.crowd_polygons = self._crowd_polygons()
        """Coverage polygon of each crowd counter row in the grid CRS (an empty polygon for a retired one)."""
        self.crowd_coverage = self._crowd_coverage()
        self.cover = self._crowd_cover()
        self.crowd_walkable_m2 = self._crowd_property("walkable_area_m2")
        """Walkable area each crowd counter counts over, from the registry (NaN: the layer under it). [m2]"""
        self.crowd_rel_error = self._crowd_property("count_rel_error")
        """Relative standard error of each crowd counter's count, from the registry (NaN: not stated). [1]"""
        self._static_as_built = static
        if walkable_override is not None:
            self.override_walkable(walkable_override)
        self.pings = np.zeros(0, dtype=PING_DTYPE)

    # ------------------------------------------------------------ snapshots (twin.live.snapshot)
    def save_state(self) -> dict:
        """What evolves: the latest readings, the entities and the recent vehicle pings (as columns)."""
        p = self.pings
        return {"readings": {kind: r.save_state() for kind, r in self.readings.items()},
                "entities": self.entities.save_state(),
                "pings": {**{k: p[k].copy() for k in PING_NUMBERS}, "device": p["device"].astype(str)}}

    def restore_state(self, state: dict) -> None:
        """Take back what `save_state` gave (on a state built from the same static twin and registry)."""
        for kind, r in self.readings.items():
            if kind in state["readings"]:  # a snapshot from before a kind existed (level, pump): none yet
                r.restore_state(state["readings"][kind])
        self.entities.restore_state(state["entities"])
        p = state["pings"]
        pings = np.zeros(len(p["t"]), dtype=self.pings.dtype)
        for k in PING_NUMBERS:  # a snapshot from before pings kept x, y, course or alt has NaN there
            pings[k] = p.get(k, np.nan)
        pings["device"] = np.asarray(p["device"]).astype(object)
        self.pings = pings

    # ------------------------------------------------------------ static geometry of the sensors
    def cell_of(self, device: Device | None) -> int:
        """Flat cell of a sensor (-1: retired, no position, or outside the grid)."""
        pos = _geometry_lonlat(device.geometry) if device is not None else None
        row, col = self.grid.cell_of_lonlat(*pos) if pos else (-1, -1)
        return int(self.grid.flat_index(row, col))

    def _point_cells(self, kind: str) -> np.ndarray:
        """Flat cell of each sensor of a kind (-1 where the sensor is retired or outside the grid)."""
        return np.array([self.cell_of(self.registry.get(d)) for d in self.readings[kind].ids], dtype=np.int64)

    def _downstream(self) -> np.ndarray:
        """Index of the loop detector downstream of each one (registry property ``downstream``, a
        device id), -1 where none is given (or either is retired): the pairs the California algorithm tests."""
        ids = self.readings["traffic"].index
        out = []
        for d in self.readings["traffic"].ids:
            device = self.registry.get(d)
            out.append(ids.get(str(device.properties.get("downstream", "")), -1) if device is not None else -1)
        return np.array(out, dtype=np.int64)

    def _polygon_of(self, device: Device | None) -> shapely.Geometry:
        """Coverage polygon of a crowd counter in the grid CRS (a point counter: a square of one cell's size
        centred on it; a retired one: empty)."""
        if device is None:
            return shapely.Polygon()
        g = device.geometry
        ring = np.asarray(g["coordinates"][0], dtype=float) if g and g["type"] == "Polygon" else None
        if ring is None:
            lon, lat = _geometry_lonlat(g) or (np.nan, np.nan)
            x, y = geo.to_projected(lon, lat, self.grid.crs)
            return shapely.Point(x, y).buffer(self.grid.cell_size / 2, cap_style="square")
        x, y = geo.to_projected(ring[:, 0], ring[:, 1], self.grid.crs)
        return shapely.Polygon(np.column_stack([x, y]))

    def _crowd_polygons(self) -> np.ndarray:
        """Coverage polygon of each crowd counter row in the grid CRS (`_polygon_of`)."""
        polys = np.empty(len(self.readings["crowd"].ids), dtype=object)
        for i, dev_id in enumerate(self.readings["crowd"].ids):
            polys[i] = self._polygon_of(self.registry.get(dev_id))
        return polys

    def _crowd_coverage(self) -> SharedCoverage:
        """The crowd counters' coverage in pieces (`twin.district.coverage.shared_coverage`): each piece is the
        part of one cell covered by one fixed set of counters, so overlapping counters share a piece instead of
        each claiming a fraction of the cell (docs/science/crowd.md 1.4)."""
        return shared_coverage(self.grid, self.crowd_polygons)

    def _crowd_cover(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sparse coverage table of the crowd counters: (sensor, cell, fraction of the cell), one entry per
        counter and piece (a counter may have several pieces in one cell, where another counter overlaps it)."""
        c = self.crowd_coverage
        return (c.owner_feature, c.piece_cell[c.owner_piece],
                c.piece_area[c.owner_piece] / self.grid.cell_area)

    @staticmethod
    def _number(device: Device | None, name: str) -> float:
        value = device.properties.get(name) if device is not None else None
        return np.nan if value is None else float(value)

    def _crowd_property(self, name: str) -> np.ndarray:
        """A numeric registry property of each crowd counter (NaN where not given or retired; `ingest.registry`
        checks it)."""
        return np.array([self._number(self.registry.get(d), name) for d in self.readings["crowd"].ids], dtype=float)

    # ------------------------------------------------------------ the registry changes (docs/guides/devices.md)
    def apply_devices(self, changes: list[tuple[Device | None, Device]]) -> set[str]:
        """Follow registry changes (``(before, after)`` pairs of `ingest.registry.Registry.apply`, the registry
        already changed) in the per-sensor tables and the entity table, without rebuilding them: a new sensor gets
        a row at the end of its kind's tables; a moved sensor gets its new cell; a retired sensor keeps its row,
        inert (no readings taken, last reading dropped, no cell, no coverage); one registered again takes its row
        back. Only the crowd coverage of the counters that overlap a changed counter (before or after) is cut
        again (`splice_coverage`). Vehicles and units are added to or dropped from the entity table. A device's
        kind never changes (the registry refuses it). Returns the kinds that changed."""
        latest: dict[str, tuple[Device | None, Device]] = {}
        for old, new in changes:
            first = latest.get(new.id)
            latest[new.id] = (first[0] if first is not None else old, new)
        by_kind: dict[str, list[tuple[Device | None, Device]]] = {}
        for old, new in latest.values():
            by_kind.setdefault(new.kind, []).append((old, new))
        for kind, pairs in by_kind.items():
            if kind in SENSOR_QUANTITIES:
                self._sensors_changed(kind, pairs)
            else:
                self._movers_changed(pairs)
        return set(by_kind)

    def _movers_changed(self, pairs: list[tuple[Device | None, Device]]) -> None:
        for _, new in pairs:
            if new.active:
                self.entities.register(new.id, new.kind, new.unit_type)
                self.entities.entities[new.id].unit_type = new.unit_type
            else:
                self.entities.entities.pop(new.id, None)

    def _sensors_changed(self, kind: str, pairs: list[tuple[Device | None, Device]]) -> None:
        rows, retired = self.sensor_rows[kind], self.retired_rows[kind]
        added = [new.id for _, new in pairs if new.id not in rows]
        was_retired = {new.id for _, new in pairs if new.id in retired}
        for dev_id in added:
            rows[dev_id] = len(rows)  # appended after the last row
        now_retired = {new.id for _, new in pairs if not new.active}
        membership = bool(added) or was_retired != now_retired
        retired.difference_update(new.id for _, new in pairs)
        retired.update(now_retired)
        if membership:
            self._relayout(kind, added)
        changed = np.array([rows[new.id] for _, new in pairs], dtype=np.int64)
        n = len(rows)
        if kind in POINT_SENSORS:
            cells = _grown(self.sensor_cells[kind], n, -1)
            cells[changed] = [self.cell_of(new if new.active else None) for _, new in pairs]
            self.sensor_cells[kind] = cells
        if kind == "traffic":
            self.loop_downstream = self._downstream()
        if kind == "crowd":
            self._counters_changed(pairs, changed, n)

    def _relayout(self, kind: str, added: list[str]) -> None:
        """The readings of a kind with the new sensors' rows appended and only the active sensors taking readings;
        the readings kept, a retired sensor's dropped."""
        old = self.readings[kind]
        r = SensorReadings(kind, old.ids + tuple(added), old.quantities)
        n = len(old.ids)
        r.value[:n], r.t[:n] = old.value, old.t
        for dev_id in self.retired_rows[kind]:
            i = r.index.pop(dev_id)
            r.value[i], r.t[i] = np.nan, -np.inf
        self.readings[kind] = r

    def _counters_changed(self, pairs: list[tuple[Device | None, Device]], changed: np.ndarray, n: int) -> None:
        before = self.crowd_polygons
        polys = np.empty(n, dtype=object)
        polys[:before.size] = before
        polys[before.size:] = shapely.Polygon()
        old = [before[i] for i in changed if i < before.size]
        for i, (_, new) in zip(changed, pairs, strict=True):
            polys[i] = self._polygon_of(new if new.active else None)
        self.crowd_polygons = polys
        self.crowd_coverage = splice_coverage(self.grid, self.crowd_coverage, polys, changed, old)
        self.cover = self._crowd_cover()
        for name, attr in (("walkable_area_m2", "crowd_walkable_m2"), ("count_rel_error", "crowd_rel_error")):
            values = _grown(getattr(self, attr), n, np.nan)
            values[changed] = [self._number(new if new.active else None, name) for _, new in pairs]
            setattr(self, attr, values)

    def override_walkable(self, path: str | os.PathLike | None) -> None:
        """Apply a walkable-area override file (`twin.district.walkable`) to the twin as it was built; None puts
        the built layer back. The coverage is geometric and does not change."""
        self.static = with_walkable_file(self._static_as_built, path)

    # ------------------------------------------------------------ devices behind an alert
    def reporting_devices(self, kind: str, cells: np.ndarray, now: float, max_age_s: float) -> list[str]:
        """Sensors of ``kind`` whose coverage (crowd counters) or cell (other sensors) meets ``cells`` (flat
        indices) and that reported within ``max_age_s`` [s] before ``now`` [unix s]: the devices an alert on
        those cells can name as its evidence. A silent or stale sensor is not evidence."""
        if kind == "crowd":
            sensor, cell, _ = self.cover
            near = np.unique(sensor[np.isin(cell, cells)])
        elif kind in RIVER_WIDE:  # one river level for the whole river: every gauge is evidence, wherever it stands
            near = np.arange(len(self.readings[kind].ids))
        else:
            near = np.flatnonzero(np.isin(self.sensor_cells[kind], cells))
        reporting = self.readings[kind].fresh_any(now, max_age_s)
        ids = self.readings[kind].ids
        return [ids[i] for i in near if reporting[i]]

    # ------------------------------------------------------------ applying a batch
    def apply(self, batch: Batch) -> Applied:
        """Apply the records of one batch (see the module docstring)."""
        out = Applied()
        if len(batch) == 0:
            return out
        q = batch.quantity
        for reading in self.readings.values():
            out.readings += int(reading.apply(batch.device, batch.t, q, batch.value).sum())
        is_ack = np.isin(q, ACK_QUANTITIES)
        rows = np.flatnonzero(is_ack)
        out.acks = [(str(d), str(r), str(s), float(t), int(i)) for d, r, s, t, i in
                    zip(batch.device[rows], batch.ref[rows], q[rows], batch.t[rows], rows, strict=True)]
        out.tasks, out.reports = _task_answers(batch), _reports(batch)
        out.rejected += self._unplaced_pumps(batch)
        pos = np.flatnonzero(q == "position")
        if pos.size:
            self._apply_positions(batch, pos, out)
        return out

    def _unplaced_pumps(self, batch: Batch) -> list[Rejected]:
        """The discharges of pump stations whose outfall is outside the grid (``outside_grid``): they cannot put
        water into the flood model. (An outfall on a building is the flood model's to refuse: it is logged by
        `twin.live.river.LiveRiver.pump_place`.)"""
        rows = np.flatnonzero(batch.quantity == "discharge")
        if rows.size == 0:
            return []
        index, cells, out = self.sensor_rows["pump"], self.sensor_cells["pump"], []
        for k in rows:
            dev = str(batch.device[k])
            i = index.get(dev)
            device = self.registry.get(dev)
            if i is None or device is None or cells[i] >= 0:
                continue
            where = _geometry_lonlat(device.geometry) or (np.nan, np.nan)
            out.append(Rejected(dev, float(batch.t[k]), where[0], where[1], row=int(k),
                                message=f"pump station {dev[:80]}'s outfall at {where[0]:.6f},{where[1]:.6f} is "
                                        "outside the twin's grid: its discharge cannot be modelled"))
        return out

    def _apply_positions(self, batch: Batch, idx: np.ndarray, out: Applied) -> None:
        lon, lat = geo.to_cgcs2000(batch.lon[idx], batch.lat[idx], batch.datum[idx])
        lon, lat = np.atleast_1d(lon), np.atleast_1d(lat)
        x, y = geo.to_projected(lon, lat, self.grid.crs)
        x, y = np.atleast_1d(x), np.atleast_1d(y)
        row, col = self.grid.cell_of(x, y)
        inside = row >= 0
        for i in np.flatnonzero(~inside):
            k = int(idx[i])  # the record's row in the batch
            out.rejected.append(Rejected(str(batch.device[k]), float(batch.t[k]), float(batch.lon[k]),
                                         float(batch.lat[k]), row=k))
        keep = idx[inside]
        out.positions += int(inside.sum())
        moved = self.entities.update(batch.device[keep], batch.t[keep], lon[inside], lat[inside], x[inside],
                                     y[inside], row[inside], col[inside], batch.speed_kmh[keep],
                                     batch.course_deg[keep])
        out.moved_units = [m for m in moved if self.entities.entities[m].kind == "unit"]
        vehicles = np.array([self.entities.entities.get(str(d)) is not None
                             and self.entities.entities[str(d)].kind == "vehicle" for d in batch.device[keep]],
                            dtype=bool)
        if vehicles.any():
            new = np.zeros(int(vehicles.sum()), dtype=PING_DTYPE)
            new["t"], new["speed"] = batch.t[keep][vehicles], batch.speed_kmh[keep][vehicles]
            new["cell"] = self.grid.flat_index(row[inside][vehicles], col[inside][vehicles])
            new["x"], new["y"] = x[inside][vehicles], y[inside][vehicles]
            new["course"], new["device"] = batch.course_deg[keep][vehicles], batch.device[keep][vehicles]
            new["alt"] = batch.alt_m[keep][vehicles]
            self._add_pings(new)

    def _add_pings(self, new: np.ndarray) -> None:
        pings = np.concatenate([self.pings, new])
        self.pings = pings[pings["t"] >= pings["t"].max() - PING_MEMORY_S]

    # ------------------------------------------------------------ views for the tick
    def recent_pings(self, now: float, window_s: float) -> np.ndarray:
        """Vehicle pings with speeds observed in the last ``window_s`` seconds before ``now``."""
        p = self.pings
        return p[(p["t"] > now - window_s) & (p["t"] <= now) & np.isfinite(p["speed"])]
