"""Operational units: the places flood and crowd alerts are about, one alert per unit instead of one per region.

A partition of the grid's cells, built once per twin from plain values (the callers read the registry and the
district's data; this module imports neither):

- *named points* (`NamedPoint`): a water gauge at a tunnel or underpass portal (a known waterlogging point,
  积水点), a metro exit; the cells within its radius;
- *named areas* (`NamedArea`): a crowd counter's area (a square, a section of the promenade); every cell it
  overlaps (a counter's count spreads over every cell its polygon covers a piece of);
- *zones* (`NamedArea`, optional): drainage zones or management grid (网格) units of a polygon file, for every cell
  no point or area holds: the cells whose centre is inside (and the cell of its representative point);
- *grid units*: a regular management grid of `GRID_UNIT_M` squares for every cell left, coded by column letter
  (west to east) and row number (north to south), e.g. ``C4``, named after the most prominent named road or place
  inside (`Landmark`): "Grid C4 (Sichuan Middle Road)" / "网格C4（四川中路）".

Points win over areas, areas over zones, zones over grid units. `OperationalUnits.places` groups a hazard's level
grid into alert places (`twin.alerting.segments.Place`): one per unit holding warning cells (level >= 1), its key
``{hazard}:{kind}:{id}`` (``flood:point:water-03``, ``crowd:area:crowd-bund-05``, ``flood:grid:C4``), its names,
its warning cells, their worst level and a bilingual ``areaDesc``.

Street ponding (`UnitRules`): a flood place of a zone or grid unit at blue whose warning area is under
``min_area_m2`` or whose deepest water is under ``max_depth_m`` is not alerted (it is still drawn on the map
layers). Points and areas are always alerted, from blue. docs/science/alerts.md, "Grouping at operational units".

A place's ``rings`` are left empty: its CAP area is then the outline of the alert's cells
(`twin.alerting.regions.outline`), drawn by `twin.alerting.compose` only when a message is composed, not at every
tick for every unit.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import shape

from models.hazards import hazard as hazard_spec
from twin.alerting.segments import Place
from twin.district import geo
from twin.district.admin import GRID_UNIT_M, grid_code, grid_square_of
from twin.district.grid import GridSpec

FLOOD_POINT_RADIUS_M = 60.0
"""Cells within this distance of a water gauge at a portal belong to its waterlogging point [design: a tunnel
portal's ramp and the carriageway before it; the storm scenario's failed pump drains 60 m around the portal]. [m]"""
METRO_EXIT_RADIUS_M = 20.0
"""Cells within this distance of a metro exit belong to it [design: the exit and the pavement in front of it]. [m]"""
STATION_REACH_M = 300.0
"""A metro exit takes the name of the nearest station within this distance (as `scenarios.places`). [m]"""
PONDING_MIN_AREA_M2 = 200.0
"""A grid unit's blue flood area under this is street ponding, drawn but not alerted [design, issue 16]. [m2]"""
PONDING_MAX_DEPTH_M = 0.15
"""A grid unit's blue flood area whose deepest water is under this is street ponding too [mem: GB 50014 / GB 51222
count a road "not waterlogged" while the water in one lane is at most 15 cm; it is the yellow raise depth of
`models.config.FloodConfig`]. With it, a grid unit is alerted from yellow; 0 leaves only the area rule. [m]"""
ROAD_WEIGHT = {"motorway": 6.0, "trunk": 5.0, "primary": 4.0, "secondary": 3.0, "tertiary": 2.0,
               "pedestrian": 2.0, "residential": 1.0, "unclassified": 1.0, "living_street": 1.0,
               "trunk_link": 1.0, "primary_link": 1.0, "secondary_link": 0.8, "tertiary_link": 0.6,
               "footway": 0.3, "path": 0.3, "cycleway": 0.3, "steps": 0.2, "pier": 0.3, "service": 0.2}
"""Prominence of a road by OSM class, per metre inside a unit, when naming grid units [design]."""
SKIPPED_ROADS = frozenset({"rail", "ferry"})
POI_SCORE = 1.0
"""A named point of interest counts as this many weighted metres of road: it names a unit only without roads."""
_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")


@dataclass(frozen=True)
class NamedPoint:
    """A known place at a point: ``x``, ``y`` in the grid CRS [m], its cells within ``radius_m`` [m]."""

    id: str
    name_en: str
    name_zh: str
    x: float
    y: float
    radius_m: float


@dataclass(frozen=True)
class NamedArea:
    """A known place that is an area: ``polygon`` in the grid CRS."""

    id: str
    name_en: str
    name_zh: str
    polygon: shapely.Geometry


@dataclass(frozen=True)
class Landmark:
    """A named road or place that can name a grid unit: ``geometry`` in the grid CRS, ``weight`` its prominence per
    metre of line inside the unit (a point or polygon counts as `POI_SCORE` metres)."""

    name_en: str
    name_zh: str
    geometry: shapely.Geometry
    weight: float = 1.0


@dataclass(frozen=True)
class Unit:
    """One operational unit: ``kind`` point / area / zone / grid, its ``id`` within the kind, names and cells."""

    kind: str
    id: str
    name_en: str
    name_zh: str
    cells: np.ndarray = field(repr=False)

    def key(self, hazard: str) -> str:
        """The stable key of the unit's alerts of a hazard, e.g. ``flood:point:water-03``."""
        return f"{hazard}:{self.kind}:{self.id}"


@dataclass(frozen=True)
class UnitRules:
    """Which places of a unit are alerted: street ponding (see the module docstring) in ``hazards`` is not."""

    min_area_m2: float = PONDING_MIN_AREA_M2
    max_depth_m: float = PONDING_MAX_DEPTH_M
    hazards: tuple[str, ...] = ("flood",)

    def __post_init__(self) -> None:
        if not (self.min_area_m2 >= 0 and self.max_depth_m >= 0):
            raise ValueError(f"UnitRules: min_area_m2 ({self.min_area_m2}) and max_depth_m ({self.max_depth_m}) "
                             "must be >= 0")


# ---------------------------------------------------------------- names
def split_name(name: str) -> tuple[str, str]:
    """(English, Chinese) halves of a bilingual name ``'外滩隧道南口 Bund Tunnel south portal'``; a name in one
    language is both halves."""
    name = " ".join(str(name or "").split())
    words = name.split(" ")
    zh = [w for w in words if _CJK.search(w)]
    if not zh or len(zh) == len(words):
        return name, name
    cut = max(i for i, w in enumerate(words) if _CJK.search(w)) + 1
    return " ".join(words[cut:]) or name, " ".join(words[:cut])


# ---------------------------------------------------------------- inputs from plain values
def _projected(geometry: dict | shapely.Geometry, crs: str) -> shapely.Geometry:
    geom = geometry if isinstance(geometry, shapely.Geometry) else shape(geometry)
    return shapely.transform(geom, lambda xy: np.column_stack(geo.to_projected(xy[:, 0], xy[:, 1], crs)))


def named_points(items: Iterable[tuple[str, str, dict]], crs: str, radius_m: float) -> list[NamedPoint]:
    """Named points from (id, bilingual name, GeoJSON Point in lon/lat) triples, e.g. a registry's water gauges;
    items without a point geometry are left out."""
    out = []
    for ident, name, geometry in items:
        if not geometry or geometry.get("type") != "Point":
            continue
        p = _projected(geometry, crs)
        en, zh = split_name(name or ident)
        out.append(NamedPoint(str(ident), en, zh, float(p.x), float(p.y), float(radius_m)))
    return out


def named_areas(items: Iterable[tuple[str, str, dict]], crs: str) -> list[NamedArea]:
    """Named areas from (id, bilingual name, GeoJSON Polygon / MultiPolygon in lon/lat) triples, e.g. a
    registry's crowd counters; items without an areal geometry are left out."""
    out = []
    for ident, name, geometry in items:
        if not geometry or geometry.get("type") not in ("Polygon", "MultiPolygon"):
            continue
        en, zh = split_name(name or ident)
        out.append(NamedArea(str(ident), en, zh, _projected(geometry, crs)))
    return out


def _names(props: dict) -> tuple[str, str]:
    """(English, Chinese) of an OSM-style feature: ``name:en`` / ``name:zh``, ``name`` for the missing half."""
    name = str(props.get("name") or "")
    en = str(props.get("name:en") or "") or name
    zh = str(props.get("name:zh") or "") or (name if _CJK.search(name) else "") or en
    return en, zh


def road_landmarks(features: Iterable[dict], crs: str) -> list[Landmark]:
    """Named roads of a GeoJSON road layer (lon/lat; ``name``, ``name:en``, ``name:zh``, ``kind``,
    ``kind_detail``), one landmark per name weighted by class (`ROAD_WEIGHT`); tunnels, rail and ferries left out."""
    lines: dict[tuple[str, str], list] = {}
    weight: dict[tuple[str, str], float] = {}
    for feat in features:
        props, geometry = feat.get("properties") or {}, feat.get("geometry")
        en, zh = _names(props)
        if not en or not geometry or props.get("kind") in SKIPPED_ROADS or props.get("is_tunnel") in (True, "yes"):
            continue
        w = ROAD_WEIGHT.get(str(props.get("kind_detail") or ""), 0.5)
        lines.setdefault((en, zh), []).append(_projected(geometry, crs))
        weight[(en, zh)] = max(weight.get((en, zh), 0.0), w)
    return [Landmark(en, zh, shapely.union_all(parts), weight[(en, zh)]) for (en, zh), parts in lines.items()]


def poi_landmarks(features: Iterable[dict], crs: str) -> list[Landmark]:
    """Named points of interest and station polygons (lon/lat GeoJSON), for units without a named road."""
    out = []
    for feat in features:
        props, geometry = feat.get("properties") or {}, feat.get("geometry")
        en, zh = _names(props)
        if en and geometry and geometry.get("type") in ("Point", "Polygon", "MultiPolygon") \
                and props.get("kind") != "subway_entrance":
            out.append(Landmark(en, zh, _projected(geometry, crs), 1.0))
    return out


def metro_exits(pois: Sequence[dict], stations: Sequence[dict], crs: str,
                radius_m: float = METRO_EXIT_RADIUS_M) -> list[NamedPoint]:
    """Metro exits (POIs of kind ``subway_entrance``) named after the nearest station (features of kind ``station``)
    within `STATION_REACH_M` and their ``ref``: "Lujiazui exit 1" / "陆家嘴1号口"; ids ``metro-<station>-<ref>``."""
    named = [(_names(f["properties"]), _projected(f["geometry"], crs).centroid) for f in stations
             if f.get("geometry") and (f.get("properties") or {}).get("kind") == "station"
             and _names(f["properties"])[0]]
    out = []
    for feat in pois:
        props = feat.get("properties") or {}
        if props.get("kind") != "subway_entrance" or not feat.get("geometry") or not named:
            continue
        p = _projected(feat["geometry"], crs)
        dist, (en, zh) = min((p.distance(c), n) for n, c in named)
        if dist > STATION_REACH_M:
            continue
        ref = str(props.get("ref") or props.get("name") or "").strip()
        slug = re.sub(r"[^a-z0-9]+", "-", en.lower()).strip("-")
        out.append(NamedPoint(f"metro-{slug}-{ref or props.get('id', '')}", f"{en} exit {ref}".strip(),
                              f"{zh}{ref}号口" if ref else f"{zh}出入口", float(p.x), float(p.y), float(radius_m)))
    return list({q.id: q for q in out}.values())


# ---------------------------------------------------------------- the partition
class OperationalUnits:
    """A partition of a grid's cells into operational units (see the module docstring).

    ``owner`` holds, per flat cell, the index of its unit in ``units``.
    """

    def __init__(self, grid: GridSpec, units: list[Unit], owner: np.ndarray) -> None:
        if owner.shape != (grid.size,) or (owner < 0).any() or (owner >= len(units)).any():
            raise ValueError("OperationalUnits: every cell needs exactly one unit")
        self.grid, self.units, self.owner = grid, units, owner
        self.by_key = {(u.kind, u.id): u for u in units}

    @classmethod
    def build(cls, grid: GridSpec, points: Sequence[NamedPoint] = (), areas: Sequence[NamedArea] = (),
              zones: Sequence[NamedArea] = (), landmarks: Sequence[Landmark] = (),
              grid_unit_m: float = GRID_UNIT_M) -> OperationalUnits:
        """The partition of ``grid`` (points over areas over zones over grid units of ``grid_unit_m`` [m])."""
        if not grid_unit_m > 0:
            raise ValueError(f"OperationalUnits: grid_unit_m must be > 0 m, got {grid_unit_m}")
        xx, yy = np.meshgrid(grid.x, grid.y)
        x, y = xx.ravel(), yy.ravel()
        row, col = grid_square_of(grid, x, y, grid_unit_m)
        n_cols = int(col.max()) + 1
        codes, owner = np.unique(row * n_cols + col, return_inverse=True)  # grid units first, then the others
        owner = owner.ravel().astype(np.int64)
        candidates: list[tuple[str, str, str, str, np.ndarray]] = []
        for k in codes:
            r, c = divmod(int(k), n_cols)
            candidates.append(("grid", grid_code(r, c), "", "", np.zeros(0, np.int64)))
        layers = [("zone", zones, _zone_cells), ("area", areas, _area_cells), ("point", points, _point_cells)]
        for kind, items, cells_of in layers:
            for item in reversed(items):  # the first of two overlapping items wins
                cells = cells_of(grid, item, x, y)
                if cells.size:
                    owner[cells] = len(candidates)
                    candidates.append((kind, item.id, item.name_en, item.name_zh, cells))
        return cls._compact(grid, candidates, owner, landmarks, grid_unit_m)

    @classmethod
    def _compact(cls, grid: GridSpec, candidates, owner: np.ndarray, landmarks: Sequence[Landmark],
                 grid_unit_m: float) -> OperationalUnits:
        """Units that kept cells, in order (points, areas, zones, grid units), with grid units named."""
        used = np.unique(owner)
        rank = {"point": 0, "area": 1, "zone": 2, "grid": 3}
        # grid units in code order; the others were added last first (so that the first wins): back in input order
        order = sorted(used.tolist(), key=lambda i: (rank[candidates[i][0]], i if candidates[i][0] == "grid" else -i))
        remap = np.zeros(len(candidates), np.int64)
        remap[order] = np.arange(len(order))
        owner = remap[owner]
        units = []
        for new, old in enumerate(order):
            kind, ident, en, zh, _ = candidates[old]
            cells = np.flatnonzero(owner == new)
            if kind == "grid":
                en, zh = _grid_names(ident, _unit_box(grid, ident, grid_unit_m), landmarks)
            units.append(Unit(kind, ident, en, zh, cells))
        return cls(grid, units, owner)

    def unit(self, kind: str, ident: str) -> Unit:
        """The unit of that kind and id; KeyError otherwise."""
        return self.by_key[(kind, ident)]

    def unit_of_cell(self, cell: int) -> Unit:
        """The unit holding a flat cell."""
        return self.units[int(self.owner[cell])]

    def places(self, hazard: str, level: np.ndarray, metric: np.ndarray | None = None,
               rules: UnitRules | None = None) -> list[Place]:
        """One alert place per unit holding cells at level >= 1 (blue), in unit order; street ponding left out.

        ``level``: the hazard's level grid (int, -1 no data, counted as none here: hold the last known levels
        before); ``metric``: its metric layer (water depth [m], density [person m-2]; NaN no data) for the ponding
        rule and nothing else.
        """
        rules = rules or UnitRules()
        flat = np.asarray(level).ravel()
        if flat.size != self.grid.size:
            raise ValueError(f"places: a level grid of {flat.size} cells for a grid of {self.grid.size}")
        hot = np.flatnonzero(flat >= 1)
        values = None if metric is None else np.asarray(metric, float).ravel()
        out = []
        for index in np.unique(self.owner[hot]):
            unit = self.units[int(index)]
            cells = hot[self.owner[hot] == index]
            top = int(flat[cells].max())
            if hazard in rules.hazards and self._ponding(unit, cells, top, values, rules):
                continue
            out.append(Place(np.zeros(0, np.int64), cells, top, f"{unit.name_en}; {unit.name_zh}", [], {},
                             unit.key(hazard), unit.name_en, unit.name_zh))
        return out

    def _ponding(self, unit: Unit, cells: np.ndarray, top: int, values: np.ndarray | None, rules: UnitRules) -> bool:
        """Street ponding: a small or shallow blue area of a zone or grid unit (no metric: the area decides)."""
        if unit.kind not in ("zone", "grid") or top != 1:
            return False
        if cells.size * self.grid.cell_area < rules.min_area_m2:
            return True
        v = values[cells] if values is not None else np.zeros(0)
        v = v[np.isfinite(v)]
        return v.size > 0 and float(v.max()) < rules.max_depth_m


def _unit_box(grid: GridSpec, code: str, size: float) -> shapely.Geometry:
    """The square of grid unit ``code`` (`grid_code`) in the grid CRS, clipped to the grid."""
    letters = code.rstrip(string.digits)
    col = 0
    for ch in letters:
        col = col * 26 + string.ascii_uppercase.index(ch) + 1
    col, row = col - 1, int(code[len(letters):]) - 1
    x0, y1 = grid.x0 + col * size, grid.y0 - row * size
    return shapely.intersection(shapely.box(x0, y1 - size, x0 + size, y1), shapely.box(*grid.bounds))


def _point_cells(grid: GridSpec, p: NamedPoint, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cells whose centre is within the point's radius, and the cell holding it (none if outside the grid)."""
    r, c = grid.cell_of(np.array([p.x]), np.array([p.y]))
    if r[0] < 0:
        return np.zeros(0, np.int64)
    near = np.flatnonzero((x - p.x) ** 2 + (y - p.y) ** 2 <= p.radius_m ** 2)
    return np.union1d(near, [int(r[0]) * grid.nx + int(c[0])])


def _area_cells(grid: GridSpec, a: NamedArea, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cells the area overlaps (more than touches): a crowd counter's count spreads over every cell its polygon
    covers a piece of, so every such cell is the place's."""
    xmin, ymin, xmax, ymax = a.polygon.bounds
    near = np.flatnonzero((x >= xmin - grid.cell_size) & (x <= xmax + grid.cell_size)
                          & (y >= ymin - grid.cell_size) & (y <= ymax + grid.cell_size))
    half = grid.cell_size / 2.0
    boxes = shapely.box(x[near] - half, y[near] - half, x[near] + half, y[near] + half)
    shapely.prepare(a.polygon)
    hit = shapely.intersects(a.polygon, boxes) & ~shapely.touches(a.polygon, boxes)
    return near[hit]


def _zone_cells(grid: GridSpec, a: NamedArea, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Cells whose centre is inside the zone (zones tile the district: each cell in one), and the cell of its
    representative point if it is on the grid."""
    inside = np.flatnonzero(shapely.contains_xy(a.polygon, x, y))
    rep = a.polygon.representative_point()
    r, c = grid.cell_of(np.array([rep.x]), np.array([rep.y]))
    return np.union1d(inside, [int(r[0]) * grid.nx + int(c[0])]) if r[0] >= 0 else inside


def _grid_names(code: str, cover: shapely.Geometry, landmarks: Sequence[Landmark]) -> tuple[str, str]:
    """``Grid C4 (Sichuan Middle Road)`` / ``网格C4（四川中路）``: the most prominent landmark in the unit's cells."""
    best, score = None, 0.0
    if landmarks:
        geoms = np.array([lm.geometry for lm in landmarks], dtype=object)
        shapely.prepare(cover)
        hits = np.flatnonzero(shapely.intersects(cover, geoms))
        for i in hits:
            lm = landmarks[int(i)]
            part = shapely.intersection(lm.geometry, cover)
            s = lm.weight * (shapely.length(part) if part.geom_type in ("LineString", "MultiLineString")
                             else POI_SCORE)
            if s > score:
                best, score = lm, s
    if best is None:
        return f"Grid {code}", f"网格{code}"
    return f"Grid {code} ({best.name_en})", f"网格{code}（{best.name_zh}）"


def metric_of(hazard: str, layers: dict[str, np.ndarray] | object) -> np.ndarray | None:
    """The hazard's metric layer (`models.hazards`) from a mapping or dataset of layers, None if absent."""
    name = hazard_spec(hazard).metric
    if name not in layers:
        return None
    value = layers[name]
    return np.asarray(getattr(value, "values", value))



# ---------------------------------------------------------------- a district's units
def read_features(path) -> list[dict]:
    """The features with a geometry of a GeoJSON file; [] if there is no such file. Raises ValueError naming the file
    when it is not GeoJSON."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable GeoJSON file ({exc})") from None
    return [feat for feat in doc.get("features", []) if isinstance(feat, dict) and feat.get("geometry")]


def district_places(folder, crs: str) -> tuple[list[Landmark], list[NamedPoint]]:
    """(landmarks, metro exits) of a district folder's ``roads.geojson``, ``pois.geojson`` and ``transit.geojson``
    (any may be missing)."""
    folder = Path(folder)
    pois, transit = read_features(folder / "pois.geojson"), read_features(folder / "transit.geojson")
    landmarks = road_landmarks(read_features(folder / "roads.geojson"), crs) + poi_landmarks(pois + transit, crs)
    return landmarks, metro_exits(pois, pois + transit, crs)


def registry_items(features: Iterable[dict], kind: str) -> list[tuple[str, str, dict]]:
    """(id, name, geometry) of the registry features (GeoJSON, ``data/<district>/registry.geojson``) of a kind."""
    return [(str(f["properties"].get("id", "")), str(f["properties"].get("name") or ""), f["geometry"])
            for f in features if (f.get("properties") or {}).get("kind") == kind and f.get("geometry")]


def district_units(folder, grid: GridSpec, grid_unit_m: float = GRID_UNIT_M) -> dict[str, OperationalUnits]:
    """The units of each grouped hazard (`hazard_units`) of a district folder: its ``registry.geojson`` (water
    gauges: waterlogging points; crowd counters: named areas), its metro exits and its roads and POIs (names of the
    grid units). A missing folder or file leaves those units out (grid units remain)."""
    devices = read_features(Path(folder) / "registry.geojson")
    landmarks, metro = district_places(folder, grid.crs)
    return hazard_units(grid, named_points(registry_items(devices, "water"), grid.crs, FLOOD_POINT_RADIUS_M),
                        named_areas(registry_items(devices, "crowd"), grid.crs), metro, landmarks,
                        grid_unit_m=grid_unit_m)


def hazard_units(grid: GridSpec, water_points: Sequence[NamedPoint] = (), crowd_areas: Sequence[NamedArea] = (),
                 crowd_points: Sequence[NamedPoint] = (), landmarks: Sequence[Landmark] = (),
                 zones: Sequence[NamedArea] = (), grid_unit_m: float = GRID_UNIT_M) -> dict[str, OperationalUnits]:
    """The units of each grouped hazard: ``flood`` (waterlogging points, zones, grid units), ``crowd`` and
    ``crowd_forecast`` (the same partition: metro exits and other points, named areas, zones, grid units)."""
    base = OperationalUnits.build(grid, (), (), zones, landmarks, grid_unit_m)
    named = {(u.kind, u.id): (u.name_en, u.name_zh) for u in base.units if u.kind == "grid"}
    flood = OperationalUnits.build(grid, water_points, (), zones, (), grid_unit_m)
    crowd = OperationalUnits.build(grid, crowd_points, crowd_areas, zones, (), grid_unit_m)
    for units in (flood, crowd):  # name the grid units once, after all their cells (the names do not move)
        units.units = [Unit(u.kind, u.id, *named[(u.kind, u.id)], u.cells) if (u.kind, u.id) in named else u
                       for u in units.units]
        units.by_key = {(u.kind, u.id): u for u in units.units}
    return {"flood": flood, "crowd": crowd, "crowd_forecast": crowd}


def group_places(units: dict[str, OperationalUnits], levels: dict[str, np.ndarray], layers,
                 rules: UnitRules | None = None) -> dict[str, list[Place]]:
    """The places of every hazard that has units and a level grid, from the tick's ``levels`` (-1 counted as none:
    hold the last known levels first) and its metric ``layers`` (a mapping or dataset)."""
    return {h: u.places(h, levels[h], metric_of(h, layers), rules) for h, u in units.items() if h in levels}


__all__ = ["FLOOD_POINT_RADIUS_M", "GRID_UNIT_M", "METRO_EXIT_RADIUS_M", "PONDING_MAX_DEPTH_M",
           "PONDING_MIN_AREA_M2", "Landmark", "NamedArea", "NamedPoint", "OperationalUnits", "Unit", "UnitRules",
           "district_places", "district_units", "grid_code", "group_places", "hazard_units", "metric_of",
           "metro_exits", "named_areas", "named_points", "poi_landmarks", "read_features", "registry_items",
           "road_landmarks", "split_name"]
