"""What a run did at each named place: the numbers a planner asks for, per place and over time.

Places (`scenario_places`) are named, never coordinates:

- *water gauges* at the tunnel portals (the district's known waterlogging points, the flood alerts' points), the
  cells within `twin.alerting.units.FLOOD_POINT_RADIUS_M` of each;
- *crowd areas*: each crowd counter's area of the device registry (the squares and promenade strips);
- *metro exits* (`twin.alerting.units.METRO_EXIT_RADIUS_M` around each);
- *underpasses*: each connected group of underpass cells, named after the nearest water gauge;
- *parks and viewpoints* of the district's points of interest (`POI_RADIUS_M` around each);
- *roads*: the district's named main roads (`MAIN_ROAD_CLASSES`), their road cells;
- *scenario places*: every area the scenario names in its interventions and crowd forcing (the failed pump's
  area, the closed exit, the closed road, the gathering place), keyed by the field that names it;
- *flood-wall sections* (with ``forcing.river``): each section of the Huangpu flood wall (防汛墙,
  `twin.district.river`), the land cells right behind it, where water coming over it lands;
- *grid units*: the 500 m management grid named after its roads (`twin.alerting.units`), so nothing is missed.

Metrics per place (`place_metrics`), from the recorded layers: peak water depth [m] and when; peak crowd density
[person m-2] and when; lowest traffic speed [km h-1] and when; minutes at or above yellow, orange and red per hazard
(the place's highest level of ``level_flood``, ``level_crowd``, ``level_traffic``: the thresholds the alerts use);
the most people in the place at once; people exposed: the most people at once in the place's cells where water or
the crowd is orange or red (`exposed_level` >= 3; traffic and the rain signal endanger nobody standing there).
Flood-wall sections add (`wall_row`, from the run's `scenarios.runner.WallLog`, every step): the crest [m, Wusong]
(and the data file's when the scenario changes it), the peak discharge over the wall [m3 s-1] (mean over a step) and
when, the water that came over [m3], when it first came over, the minutes it comes over, and the river's peak level
[m, Wusong] and when.
Times are minutes from the start and, when the scenario has a start time, the local clock time.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
import xarray as xr
from scipy import ndimage
from shapely.geometry import shape

from scenarios.metrics import COLOURS
from twin.alerting.units import district_units, read_features
from twin.district import geo
from twin.district.dataset import grid_of
from twin.district.grid import GridSpec

MAIN_ROAD_CLASSES = frozenset({"motorway", "trunk", "primary", "secondary", "tertiary", "pedestrian"})
"""OSM classes of the named roads measured as places (``kind_detail`` of ``roads.geojson``)."""
POI_KINDS = frozenset({"park", "viewpoint", "square", "plaza"})
"""Points of interest measured as places."""
POI_RADIUS_M = 30.0
"""Cells within this distance of a park's or viewpoint's point belong to it [design]. [m]"""
UNDERPASS_GAUGE_REACH_M = 300.0
"""An underpass takes the name of the nearest water gauge within this distance (the gauges stand at the portals)
[design]. [m]"""
EXPOSED_LEVEL = 3
"""People in cells at this level (orange) or worse of water or crowd are exposed (`exposed_level`)."""
EXPOSED_HAZARDS = ("flood", "crowd")
"""The hazards that put the people standing in a cell at risk: water and the crowd itself. Traffic congestion and
the district-wide rain signal do not (a red rain signal over the whole district would count everyone)."""
LEVEL_HAZARDS = ("flood", "crowd", "traffic")
KIND_ORDER = ("scenario place", "flood wall", "water gauge", "underpass", "crowd area", "metro exit",
              "park or viewpoint", "road", "grid unit")


@dataclass(frozen=True)
class ScenarioPlace:
    """A named place of a run: ``key`` unique (``gauge:water-03``, ``scenario:interventions.drainage[0]``),
    ``kind`` (`KIND_ORDER`), English and Chinese names, a label point (lon, lat) and its cells (ny, nx)."""

    key: str
    kind: str
    name: str
    name_zh: str
    lon: float
    lat: float
    mask: np.ndarray = field(repr=False)


# ---------------------------------------------------------------- the places
def label_point(grid: GridSpec, mask: np.ndarray) -> tuple[float, float]:
    """(lon, lat) of a cell of the place to label it at: its middle cell in row-major order. [deg]"""
    rows, cols = np.nonzero(mask)
    k = len(rows) // 2
    order = np.lexsort((cols, rows))
    lon, lat = geo.to_lonlat(float(grid.x[cols[order[k]]]), float(grid.y[rows[order[k]]]), grid.crs)
    return round(float(lon), 6), round(float(lat), 6)


def _place(grid: GridSpec, key: str, kind: str, name: str, name_zh: str, mask: np.ndarray) -> ScenarioPlace | None:
    if not mask.any():
        return None
    lon, lat = label_point(grid, mask)
    return ScenarioPlace(key, kind, name or name_zh or key, name_zh or "", lon, lat, mask)


def _unit_places(grid: GridSpec, folder: Path) -> list[ScenarioPlace]:
    """Water gauges, crowd areas, metro exits and grid units of the district's operational units."""
    units = district_units(folder, grid)
    kinds = {("flood", "point"): ("gauge", "water gauge"), ("crowd", "area"): ("area", "crowd area"),
             ("crowd", "point"): ("metro", "metro exit"), ("flood", "grid"): ("grid", "grid unit")}
    out = []
    for (hazard, unit_kind), (prefix, kind) in kinds.items():
        for u in units[hazard].units:
            if u.kind == unit_kind:
                mask = np.zeros(grid.size, bool)
                mask[u.cells] = True
                out.append(_place(grid, f"{prefix}:{u.id}", kind, u.name_en, u.name_zh, mask.reshape(grid.shape)))
    return out


def _nearest_road(roads: list[tuple[str, str, shapely.Geometry]], x: float, y: float) -> tuple[str, str] | None:
    """(English, Chinese) name of the road line nearest (x, y) [m, grid CRS]."""
    if not roads:
        return None
    point = shapely.Point(x, y)
    en, zh, _ = min(roads, key=lambda r: r[2].distance(point))
    return en, zh


def _road_lines(folder: Path, crs: str) -> list[tuple[str, str, shapely.Geometry]]:
    """(English, Chinese, projected line) of the named roads of the district."""
    out = []
    for feat in read_features(folder / "roads.geojson"):
        en, zh = _names(feat["properties"])
        if en and feat["properties"].get("kind") not in ("rail", "ferry"):
            out.append((en, zh, shapely.transform(shape(feat["geometry"]), lambda xy: np.column_stack(
                geo.to_projected(xy[:, 0], xy[:, 1], crs)))))
    return out


def _underpasses(grid: GridSpec, static: xr.Dataset, gauges: list[ScenarioPlace], folder: Path) -> list[ScenarioPlace]:
    """Each connected group of underpass cells, named after the nearest water gauge (a tunnel portal) or else the
    nearest named road; groups of one name are one place."""
    if "underpass" not in static:
        return []
    roads = _road_lines(folder, grid.crs)
    labels, n = ndimage.label(static["underpass"].values > 0)
    named: dict[tuple[str, str], np.ndarray] = {}
    for k in range(1, n + 1):
        mask = labels == k
        lon, lat = label_point(grid, mask)
        near = min(gauges, key=lambda g: math.hypot((g.lon - lon) * math.cos(math.radians(lat)), g.lat - lat),
                   default=None)
        if near is None or math.hypot((near.lon - lon) * math.cos(math.radians(lat)), near.lat - lat) * 111e3 > \
                UNDERPASS_GAUGE_REACH_M:
            road = _nearest_road(roads, *geo.to_projected(lon, lat, grid.crs))
            name = (f"underpass on {road[0]}", f"{road[1]}下穿通道") if road else (f"underpass {k}", f"下穿通道{k}")
        else:
            name = (f"underpass at {near.name}", f"{near.name_zh}下穿通道" if near.name_zh else "")
        named[name] = named.get(name, np.zeros(grid.shape, bool)) | mask
    return [_place(grid, f"underpass:{en}", "underpass", en, zh, mask) for (en, zh), mask in named.items()]


def _names(props: dict) -> tuple[str, str]:
    return str(props.get("name:en") or props.get("name") or ""), str(props.get("name:zh") or props.get("name") or "")


def _pois(grid: GridSpec, folder: Path) -> list[ScenarioPlace]:
    """Named parks and viewpoints, `POI_RADIUS_M` around their points (one place per name)."""
    xx, yy = np.meshgrid(grid.x, grid.y)
    masks: dict[str, tuple[str, np.ndarray]] = {}
    for feat in read_features(folder / "pois.geojson"):
        props = feat["properties"]
        en, zh = _names(props)
        if props.get("kind") not in POI_KINDS or not en or feat["geometry"]["type"] != "Point":
            continue
        x, y = geo.to_projected(*feat["geometry"]["coordinates"][:2], grid.crs)
        near = np.hypot(xx - x, yy - y) <= max(POI_RADIUS_M, grid.cell_size / 2)
        old = masks.get(en, (zh, np.zeros(grid.shape, bool)))
        masks[en] = (old[0], old[1] | near)
    return [_place(grid, f"poi:{en}", "park or viewpoint", en, zh, m) for en, (zh, m) in sorted(masks.items())]


def _roads(grid: GridSpec, static: xr.Dataset, folder: Path) -> list[ScenarioPlace]:
    """The named main roads: the road cells their lines cross."""
    from scenarios.places import gazetteer

    if "road_class" not in static:
        return []
    road_cells = static["road_class"].values > 0
    names: dict[str, str] = {}
    for feat in read_features(folder / "roads.geojson"):
        props = feat["properties"]
        en, zh = _names(props)
        if en and str(props.get("kind_detail") or "") in MAIN_ROAD_CLASSES and props.get("is_tunnel") not in (
                True, "yes", 1):
            names.setdefault(en, zh)
    places = gazetteer(folder)
    out = []
    for en, zh in sorted(names.items()):
        try:
            mask = places.lookup(en, ("road",)).mask(grid) & road_cells
        except KeyError:
            continue
        out.append(_place(grid, f"road:{en}", "road", en, zh if zh != en else "", mask))
    return out


def _scenario_entries(spec) -> list[tuple[str, object]]:
    """(field, place) of every place the scenario names in its interventions and forcing (crowd, traffic, inflows)."""
    from scenarios.water_sections import line_place

    iv, fc = spec.interventions, spec.forcing
    out = [(d.field, d.area) for d in iv.drainage] + [(c.field, c.place) for c in iv.close_exit]
    out += [(c.field, c.place) for c in iv.close_road] + [(o.field, o.area) for o in iv.one_way]
    out += [(g.field, g.at) for g in fc.gatherings] + [(d.field, d.place) for d in fc.traffic]
    out += [(f.field, f.place if f.place is not None else line_place(f)) for f in fc.inflow]
    return out


def wall_places(grid: GridSpec, wall: xr.Dataset | None) -> list[ScenarioPlace]:
    """The flood-wall sections of a run (`scenarios.runner.WallLog.dataset`): key ``wall:<id>``, their land cells."""
    if wall is None:
        return []
    out = []
    for i, sid in enumerate(wall["section"].values.tolist()):
        out.append(_place(grid, f"wall:{sid}", "flood wall", str(wall["name"].values[i]),
                          str(wall["name_zh"].values[i]), wall["cells"].values[i] > 0))
    return out


def _scenario_places(grid: GridSpec, static: xr.Dataset, spec) -> list[ScenarioPlace]:
    underpass = static["underpass"].values if "underpass" in static else None
    out = []
    for path, place in _scenario_entries(spec):
        out.append(_place(grid, f"scenario:{path}", "scenario place", place.label, "", place.mask(grid, underpass)))
    return out


def scenario_places(static: xr.Dataset, folder: Path, spec=None, wall: xr.Dataset | None = None) -> list[ScenarioPlace]:
    """The named places of a run on the twin ``static`` of the district ``folder`` (see the module docstring),
    with the places of ``spec`` (a `scenarios.model.Scenario`) first and the flood-wall sections of ``wall`` (the
    run's `scenarios.runner.WallLog.dataset`) next."""
    grid = grid_of(static)
    units = [p for p in _unit_places(grid, folder) if p is not None]
    gauges = [p for p in units if p.kind == "water gauge"]
    found = (_scenario_places(grid, static, spec) if spec is not None else []) + wall_places(grid, wall) + units
    found += _underpasses(grid, static, gauges, folder) + _pois(grid, folder) + _roads(grid, static, folder)
    places = [p for p in found if p is not None]
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    return sorted(places, key=lambda p: rank[p.kind])


# ---------------------------------------------------------------- the metrics
@dataclass
class PlaceMetrics:
    """``rows``: one JSON-ready dict per place (see `place_row`); ``series``: per place and recorded time
    (dims ``place``, ``time``) the deepest water [m], the densest crowd [person m-2], the people [person], the
    people exposed [person], the lowest traffic speed [km h-1] and the highest level of each hazard [0-4]."""

    rows: list[dict[str, object]]
    series: xr.Dataset


def _masked_max(values: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Per time, the largest finite value over the flat ``cells`` (NaN where none)."""
    v = values[:, cells]
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(v).any(axis=1), np.nanmax(np.where(np.isfinite(v), v, -np.inf), axis=1), np.nan)


SERIES_LAYERS = ("water_depth", "crowd_density", "crowd_count", "traffic_speed", "level_flood", "level_crowd",
                 "level_traffic")


def exposed_level(layers) -> np.ndarray:
    """The level that exposes people, per cell: the higher of ``level_flood`` and ``level_crowd`` (`EXPOSED_HAZARDS`)
    of a mapping of layers (arrays or xarray variables)."""
    return np.maximum(*(np.asarray(getattr(layers[f"level_{h}"], "values", layers[f"level_{h}"]))
                        for h in EXPOSED_HAZARDS))


def flat_layers(frames: xr.Dataset) -> dict[str, np.ndarray]:
    """The recorded layers a place's series need, read once as (time, cell) float arrays."""
    n = frames.sizes["time"]
    return {name: np.asarray(frames[name].values, float).reshape(n, -1) for name in SERIES_LAYERS}


def _series(flat: dict[str, np.ndarray], cells: np.ndarray) -> dict[str, np.ndarray]:
    """One place's time series (see `PlaceMetrics`) from `flat_layers`."""
    count = np.nan_to_num(flat["crowd_count"][:, cells])
    level = exposed_level(flat)[:, cells]
    speed = flat["traffic_speed"][:, cells]
    with np.errstate(invalid="ignore"):
        slowest = np.where(np.isfinite(speed).any(axis=1), np.nanmin(np.where(np.isfinite(speed), speed, np.inf),
                                                                            axis=1), np.nan)
    out = {"depth": np.nan_to_num(_masked_max(flat["water_depth"], cells)),
           "density": np.nan_to_num(_masked_max(flat["crowd_density"], cells)),
           "people": count.sum(axis=1), "exposed": (count * (level >= EXPOSED_LEVEL)).sum(axis=1),
           "traffic_speed": slowest}
    for hazard in LEVEL_HAZARDS:
        out[f"level_{hazard}"] = np.nan_to_num(_masked_max(flat[f"level_{hazard}"], cells)).astype(np.int8)
    return out


class Clock:
    """Minutes from the start as text, with the local clock time when the run has a start time."""

    def __init__(self, start_time: float | None, utc_offset_s: float | None) -> None:
        self.zone = dt.timezone(dt.timedelta(seconds=utc_offset_s or 0.0))
        self.start_time = start_time

    def at(self, seconds: float) -> str:
        """``"23:42"`` (local time), or ``"+72 min"`` without a start time."""
        if self.start_time is None:
            return f"+{seconds / 60:.0f} min"
        return dt.datetime.fromtimestamp(self.start_time + seconds, self.zone).strftime("%H:%M")


def _peak(values: np.ndarray, times: np.ndarray, clock: Clock, lowest: bool = False) -> tuple[float | None, ...]:
    """(value, minute, clock time) of a series' peak (or its lowest finite value)."""
    finite = np.isfinite(values)
    if not finite.any():
        return None, None, None
    k = int(np.nanargmin(np.where(finite, values, np.inf)) if lowest else np.nanargmax(np.where(finite, values,
                                                                                               -np.inf)))
    return float(values[k]), round(float(times[k]) / 60.0, 1), clock.at(float(times[k]))


def _minutes_at_or_above(level: np.ndarray, widths: np.ndarray) -> dict[str, float]:
    return {COLOURS[k]: round(float(widths[level >= k].sum()), 1) for k in (2, 3, 4)}


def place_row(place: ScenarioPlace, s: dict[str, np.ndarray], times: np.ndarray, cell_area_m2: float,
              clock: Clock) -> dict[str, object]:
    """One place's metrics (JSON-ready; counts of people as integers)."""
    widths = np.diff(np.concatenate([[0.0], times])) / 60.0
    depth, depth_min, depth_at = _peak(s["depth"], times, clock)
    dens, dens_min, dens_at = _peak(s["density"], times, clock)
    speed, speed_min, speed_at = _peak(s["traffic_speed"], times, clock, lowest=True)
    return {
        "key": place.key, "kind": place.kind, "name": place.name, "name_zh": place.name_zh,
        "lon": place.lon, "lat": place.lat, "area_m2": round(float(place.mask.sum()) * cell_area_m2),
        "peak_depth_m": round(depth or 0.0, 3), "peak_depth_min": depth_min if depth else None,
        "peak_depth_at": depth_at if depth else None,
        "peak_density": round(dens or 0.0, 2), "peak_density_min": dens_min if dens else None,
        "peak_density_at": dens_at if dens else None,
        "min_traffic_speed_kmh": None if speed is None else round(speed, 1), "min_traffic_speed_min": speed_min,
        "min_traffic_speed_at": speed_at,
        "minutes_at_or_above": {h: _minutes_at_or_above(s[f"level_{h}"], widths) for h in LEVEL_HAZARDS},
        "top_level": {h: COLOURS[int(s[f"level_{h}"].max(initial=0))] for h in LEVEL_HAZARDS},
        "people_peak": round(float(s["people"].max(initial=0.0))),
        "people_exposed": round(float(s["exposed"].max(initial=0.0))),
    }


OVER_M3S = 1e-4
"""Water comes over a wall section when more than this crosses it (mean over a step) [design: 0.1 L/s, far below
anything a planner would act on, above the round-off of the volumes]. [m3 s-1]"""


def wall_row(wall: xr.Dataset, section: str, clock: Clock) -> dict[str, object]:
    """A flood-wall section's numbers (see the module docstring) from the run's wall log."""
    i = wall["section"].values.tolist().index(section)
    times = wall["time"].values.astype(float)
    q = np.asarray(wall["discharge"].values[i], float)
    level = np.asarray(wall["river_level"].values, float)
    dts = np.diff(np.concatenate([[0.0], times]))
    over = q > OVER_M3S
    k = int(np.argmax(q)) if q.size else 0
    first = int(np.argmax(over)) if over.any() else None
    top = int(np.argmax(level)) if level.size else None
    crest, was = float(wall["crest_m"].values[i]), float(wall["crest_was_m"].values[i])
    row = {"crest_m": round(crest, 2), "crest_source": str(wall["source"].values[i]),
           "overtopping_peak_m3s": round(float(q[k]), 3) if over.any() else 0.0,
           "overtopping_peak_at": clock.at(times[k]) if over.any() else None,
           "overtopping_volume_m3": round(float(wall["volume"].values[i, -1]) if times.size else 0.0, 1),
           "overtopping_first_min": None if first is None else round((times[first] - dts[first]) / 60.0, 1),
           "overtopping_first_at": None if first is None else clock.at(times[first] - dts[first]),
           "overtopping_minutes": round(float(dts[over].sum()) / 60.0, 1),
           "river_peak_m": None if top is None else round(float(level[top]), 2),
           "river_peak_at": None if top is None else clock.at(times[top])}
    if abs(crest - was) > 1e-9:
        row["crest_was_m"] = round(was, 2)
        row["crest_changed_by"] = str(wall["changed_by"].values[i])
    return row


def _wall_series(wall: xr.Dataset | None, key: str, frame_times: np.ndarray) -> np.ndarray:
    """A wall section's mean discharge [m3 s-1] over each recording interval (exact: from the volumes), 0 for
    any other place."""
    if wall is None or not key.startswith("wall:"):
        return np.zeros(frame_times.size)
    i = wall["section"].values.tolist().index(key[len("wall:"):])
    t = np.concatenate([[0.0], wall["time"].values.astype(float)])
    v = np.interp(np.concatenate([[0.0], frame_times]), t, np.concatenate([[0.0], wall["volume"].values[i]]))
    dt_ = np.diff(np.concatenate([[0.0], frame_times]))
    return np.diff(v) / np.where(dt_ > 0, dt_, 1.0)


def place_metrics(frames: xr.Dataset, static: xr.Dataset, places: list[ScenarioPlace],
                  start_time: float | None = None, utc_offset_s: float | None = None,
                  wall: xr.Dataset | None = None) -> PlaceMetrics:
    """Every place's metrics and series from a run's recorded layers (`scenarios.record`) and, with a river, its
    wall log (``wall``, `scenarios.runner.WallLog.dataset`): the flood-wall sections' numbers (`wall_row`), their
    discharge over time (``overtopping`` [m3 s-1]) and the river level (``river_level`` [m, Wusong])."""
    grid = grid_of(static)
    times = frames["time"].values.astype(float)
    clock = Clock(start_time, utc_offset_s)
    rows, series = [], []
    flat = flat_layers(frames)
    for place in places:
        s = _series(flat, np.flatnonzero(place.mask.ravel()))
        row = place_row(place, s, times, grid.cell_size ** 2, clock)
        if wall is not None:
            s["overtopping"] = _wall_series(wall, place.key, times)
            if place.kind == "flood wall":
                row.update(wall_row(wall, place.key[len("wall:"):], clock))
        rows.append(row)
        series.append(s)
    names = list(series[0]) if series else []
    data = {name: (("place", "time"), np.stack([s[name] for s in series]) if series else
                   np.zeros((0, times.size))) for name in names}
    ds = xr.Dataset(data, coords={"place": [p.key for p in places], "time": ("time", times, {"units": "s"})})
    units = {"depth": "m", "density": "person m-2", "people": "person", "exposed": "person", "traffic_speed": "km h-1",
             "overtopping": "m3 s-1"}
    for name, unit in units.items():
        if name in ds:
            ds[name].attrs["units"] = unit
    if wall is not None:
        level = np.interp(times, wall["time"].values.astype(float), wall["river_level"].values.astype(float)) \
            if wall.sizes["time"] else np.full(times.size, np.nan)
        ds["river_level"] = ("time", level, {"units": "m", "datum": "Wusong", "long_name": "the Huangpu's level"})
    ds["name"] = ("place", [p.name for p in places])
    ds["name_zh"] = ("place", [p.name_zh for p in places])
    ds["kind"] = ("place", [p.kind for p in places])
    return PlaceMetrics(rows, ds)


def severity(row: dict[str, object]) -> tuple:
    """Sort key of a place row, worst first: water over the flood wall (most first), then the highest level of any
    hazard, people exposed, depth, density."""
    top = max(COLOURS.index(c) for c in row["top_level"].values())
    return (-float(row.get("overtopping_volume_m3") or 0.0), -top, -int(row["people_exposed"]),
            -float(row["peak_depth_m"]), -float(row["peak_density"]))


def place_masks(places: list[ScenarioPlace], static: xr.Dataset) -> xr.Dataset:
    """The places' cells as a (place, y, x) uint8 dataset (written beside the metrics, for `compare`)."""
    cells = np.stack([p.mask for p in places]).astype(np.uint8) if places else np.zeros((0, *static["elevation"].shape),
                                                                                        np.uint8)
    return xr.Dataset({"cells": (("place", "y", "x"), cells)},
                      coords={"place": [p.key for p in places], "y": static["y"], "x": static["x"]})



def peak_place(rows: list[dict[str, object]], field: str) -> dict[str, object] | None:
    """The most specific place holding the run's peak of ``field`` (``peak_depth_m``, ``peak_density``): among the
    rows with the largest value, the first by `KIND_ORDER` after scenario places (a gauge before its grid unit)."""
    best = max((float(r[field]) for r in rows), default=0.0)
    if best <= 0.0:
        return None
    rank = {k: i for i, k in enumerate(KIND_ORDER[1:] + KIND_ORDER[:1])}
    holding = [r for r in rows if float(r[field]) >= best - 1e-9]
    return min(holding, key=lambda r: rank.get(str(r["kind"]), len(rank)))
