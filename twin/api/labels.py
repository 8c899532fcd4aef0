"""Map labels (``GET /api/basemap/labels``): road, water, place and point names from the twin's own district folder.

The names come from the district's GeoJSON layers (``data/<district>/``: ``roads``, ``water``, ``pois``, ``transit``,
``landuse``, and ``places`` and ``districts`` where the folder has them; OpenStreetMap data, ODbL), never from a
third-party service. Each label is a point in the grid's projected CRS [m] with a text angle and a rank; the page
declutters them (``labels.js``). Built once per app (well under a second for the Bund).

- Roads: the pieces of one name are merged (`shapely.line_merge`) and each merged line of at least
  `MIN_ROAD_M` gets one label per about `ROAD_SPACING_M` of its length, at the middle of each equal share, turned
  along the road there (the direction over ±`ANGLE_BASE_M`), kept readable (−90..90°). A label closer than
  `SAME_NAME_M` to one of the same name is dropped (the two carriageways of a divided road).
- Water: the same along named river and canal lines (`WATER_SPACING_M`); a named water area without a line gets
  one label inside it.
- Points of interest of note (`POI_KINDS`), metro stations (``kind`` ``station`` in ``pois`` and ``transit``),
  named squares and parks of ``landuse``; places (``places``) and districts (``districts``, clipped to the grid).

Ranks (smaller is more important) [design]: districts and places 1, major roads and rivers 2, metro stations and
points of interest 3, minor roads 4, paths 5.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import shapely

from twin.district import geo
from twin.district.grid import GridSpec
from twin.district.sources import data_dir

ROAD_SPACING_M = 400.0
"""One road label per this much road. [m] [design: about one per screen width at the zoom where roads are named]"""
MIN_ROAD_M = 60.0
"""Named road pieces shorter than this get no label (a lane of a junction, a stub cut by the grid edge). [m] [design]"""
WATER_SPACING_M = 1000.0
"""One river label per this much river line. [m] [design]"""
MIN_WATER_M = 200.0
"""River lines shorter than this get no label. [m] [design]"""
ANGLE_BASE_M = 25.0
"""A road label's angle is that of the chord from this far before it to this far after it. [m] [design: smooths the
bends of a 10 m digitisation without leaving the road]"""
SAME_NAME_M = 150.0
"""A label nearer than this to one of the same name (and kind) is dropped. [m] [design: a divided road's
carriageways are 20-60 m apart; the repeated points of one park or landmark in OpenStreetMap lie within it]"""
MIN_DISTRICT_SHARE = 0.05
"""A district is labelled only if at least this share of the grid lies in it. [1] [design]"""
MAX_LABELS = 2500
"""At most this many labels, the most important kept. [design: the page declutters 2,000 in under 8 ms]"""

RANK = {"district": 1, "place": 1, "major_road": 2, "water": 2, "metro": 3, "poi": 3, "minor_road": 4, "path": 5}
"""Rank by kind of feature (smaller is more important). [design]"""
ROAD_KINDS = {"highway": "major_road", "major_road": "major_road", "minor_road": "minor_road", "path": "path"}
"""``kind`` of a roads feature (OpenStreetMap vector tiles) -> its rank class; other kinds (rail, ferry) get none."""
WATER_LINE_KINDS = ("river", "canal", "stream")
POI_KINDS = frozenset({
    "attraction", "museum", "ferry_terminal", "park", "monument", "viewpoint", "hospital", "police", "fire_station",
    "place_of_worship", "mall", "government", "embassy", "library", "arts_centre", "garden", "memorial", "marina",
    "tram_stop", "bus_station", "cinema", "school", "theatre", "university", "stadium", "zoo",
})
"""Points of interest worth a name on an operations map (landmarks, public services, transport) [design]; shops,
restaurants, banks and bus stops are left out."""
LANDUSE_KINDS = frozenset({"pedestrian", "park", "garden", "attraction", "plaza"})
"""Named ``landuse`` areas labelled as points of interest (squares, parks). [design]"""
DISTRICT_NAME_KEYS = ("name", "name_zh", "name:zh")
DISTRICT_NAME_EN_KEYS = ("name_en", "name:en")


def district_folder(static) -> Path | None:
    """The district folder of a twin (``data/<district>``, from the dataset's ``district`` attribute), or None."""
    name = str(static.attrs.get("district", "") or "")
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    folder = data_dir() / name
    return folder if folder.is_dir() else None


def _features(folder: Path, stem: str) -> list[dict]:
    path = folder / f"{stem}.geojson"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    return [f for f in doc.get("features", []) if f.get("geometry")]


def _text(props: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = props.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _project(geoms: list, crs: str) -> np.ndarray:
    """Shapely geometries in lon/lat to the grid CRS [m]."""
    def to_grid(xy: np.ndarray) -> np.ndarray:
        x, y = geo.to_projected(xy[:, 0], xy[:, 1], crs)
        return np.column_stack([np.asarray(x, float), np.asarray(y, float)])

    return shapely.transform(np.asarray(geoms, dtype=object), to_grid)


def readable_angle(dx: float, dy: float) -> float:
    """The text angle of a direction (dx east, dy north): degrees counter-clockwise from east, folded into
    (−90, 90] so the text never reads upside down."""
    angle = round(math.degrees(math.atan2(dy, dx)), 1)
    if angle > 90.0:
        angle -= 180.0
    elif angle <= -90.0:
        angle += 180.0
    return round(angle, 1)


def line_angle(line: shapely.LineString, s: float, base: float = ANGLE_BASE_M) -> float:
    """`readable_angle` of a line at ``s`` metres along it (the chord over ±``base``)."""
    a = line.interpolate(max(0.0, s - base))
    b = line.interpolate(min(line.length, s + base))
    return readable_angle(b.x - a.x, b.y - a.y)


class _Labels:
    """The labels being built, with the same-name check."""

    def __init__(self, box: shapely.Polygon) -> None:
        self.box = box
        self.items: list[dict] = []
        self.placed: dict[tuple[str, str], list[tuple[float, float]]] = {}

    def add(self, kind: str, name: str, name_en: str | None, x: float, y: float, rank: int, angle: float = 0.0,
            length: float | None = None, near: float = SAME_NAME_M) -> bool:
        if not self.box.contains(shapely.Point(x, y)):
            return False
        key = (kind, name)
        others = self.placed.setdefault(key, [])
        if any(math.hypot(x - ox, y - oy) < near for ox, oy in others):
            return False
        others.append((x, y))
        self.items.append({"kind": kind, "name": name, "name_en": name_en, "x": round(x, 1), "y": round(y, 1),
                           "angle_deg": angle, "rank": rank, "length_m": None if length is None else round(length)})
        return True

    def along(self, kind: str, name: str, name_en: str | None, lines, rank: int, spacing: float,
              min_length: float) -> None:
        """Labels along merged lines (longest first), one per ``spacing`` of each."""
        parts = sorted(shapely.get_parts(lines), key=lambda g: -g.length)
        for line in parts:
            length = line.length
            if line.geom_type != "LineString" or length < min_length:
                continue
            k = max(1, round(length / spacing))
            for i in range(k):
                s = (i + 0.5) * length / k
                p = line.interpolate(s)
                self.add(kind, name, name_en, p.x, p.y, rank, line_angle(line, s), length)


def _merged_lines(geoms: list, box: shapely.Polygon):
    """The lines of ``geoms`` (grid CRS) inside ``box``, merged where they meet end to end."""
    clipped = shapely.intersection(np.asarray(geoms, dtype=object), box)
    lines = [g for g in shapely.get_parts(clipped) if g.geom_type == "LineString" and not g.is_empty]
    if not lines:
        return shapely.GeometryCollection()
    return shapely.line_merge(shapely.union_all(lines))


def _roads(out: _Labels, folder: Path, crs: str) -> None:
    by_name: dict[str, tuple[str | None, str, list]] = {}
    feats = [f for f in _features(folder, "roads") if ROAD_KINDS.get(f["properties"].get("kind", ""))]
    named = [(f, _text(f["properties"], ("name", "name:zh", "name:en"))) for f in feats]
    named = [(f, n) for f, n in named if n]
    if not named:
        return
    geoms = _project([shapely.geometry.shape(f["geometry"]) for f, _ in named], crs)
    for (f, name), g in zip(named, geoms, strict=True):
        props = f["properties"]
        cls = ROAD_KINDS[props["kind"]]
        en, best, parts = by_name.get(name, (None, cls, []))
        parts.append(g)
        best = min(best, cls, key=RANK.__getitem__)
        by_name[name] = (en or _text(props, ("name:en",)), best, parts)
    for name, (en, cls, parts) in by_name.items():
        out.along("road", name, en, _merged_lines(parts, out.box), RANK[cls], ROAD_SPACING_M, MIN_ROAD_M)


def _water(out: _Labels, folder: Path, crs: str) -> None:
    feats = [(f, _text(f["properties"], ("name", "name:zh", "name:en"))) for f in _features(folder, "water")]
    feats = [(f, n) for f, n in feats if n]
    if not feats:
        return
    geoms = _project([shapely.geometry.shape(f["geometry"]) for f, _ in feats], crs)
    lines: dict[str, list] = {}
    areas: dict[str, list] = {}
    english: dict[str, str | None] = {}
    for (f, name), g in zip(feats, geoms, strict=True):
        props = f["properties"]
        english[name] = english.get(name) or _text(props, ("name:en",))
        if g.geom_type in ("LineString", "MultiLineString") and props.get("kind") in WATER_LINE_KINDS:
            lines.setdefault(name, []).append(g)
        elif g.geom_type in ("Polygon", "MultiPolygon"):
            areas.setdefault(name, []).append(g)
    for name, parts in lines.items():
        out.along("water", name, english[name], _merged_lines(parts, out.box), RANK["water"], WATER_SPACING_M,
                  MIN_WATER_M)
    for name, parts in areas.items():
        if name in lines:
            continue
        inside = shapely.intersection(shapely.union_all(parts), out.box)
        if inside.is_empty or inside.area < 10_000.0:  # smaller than a 100 m square: a pond, no label [design]
            continue
        p = shapely.point_on_surface(inside)
        out.add("water", name, english[name], p.x, p.y, RANK["water"])


def _points(out: _Labels, folder: Path, crs: str) -> None:
    picked: list[tuple[str, str, str | None, object]] = []  # kind, name, name_en, lon/lat geometry
    for f in _features(folder, "pois"):
        props = f["properties"]
        name = _text(props, ("name", "name:zh", "name:en"))
        kind = props.get("kind")
        if not name or (kind != "station" and kind not in POI_KINDS):
            continue
        picked.append(("metro" if kind == "station" else "poi", name, _text(props, ("name:en",)), f["geometry"]))
    for f in _features(folder, "transit"):
        props = f["properties"]
        name = _text(props, ("name", "name:zh", "name:en"))
        if name and props.get("kind") == "station" and f["geometry"]["type"] != "LineString":
            picked.append(("metro", name, _text(props, ("name:en",)), f["geometry"]))
    for f in _features(folder, "landuse"):
        props = f["properties"]
        name = _text(props, ("name", "name:zh", "name:en"))
        if name and props.get("kind") in LANDUSE_KINDS and f["geometry"]["type"] in ("Point", "Polygon",
                                                                                     "MultiPolygon"):
            picked.append(("poi", name, _text(props, ("name:en",)), f["geometry"]))
    if not picked:
        return
    geoms = _project([shapely.geometry.shape(g) for *_, g in picked], crs)
    for (kind, name, en, _), g in zip(picked, geoms, strict=True):
        p = g if g.geom_type == "Point" else shapely.point_on_surface(g)
        out.add(kind, name, en, p.x, p.y, RANK[kind], near=2 * SAME_NAME_M if kind == "metro" else SAME_NAME_M)


def _places(out: _Labels, folder: Path, crs: str, grid_area: float) -> None:
    places = [f for f in _features(folder, "places") if _text(f["properties"], ("name", "name:zh", "name:en"))]
    if places:
        geoms = _project([shapely.geometry.shape(f["geometry"]) for f in places], crs)
        for f, g in zip(places, geoms, strict=True):
            props = f["properties"]
            p = g if g.geom_type == "Point" else shapely.point_on_surface(shapely.intersection(g, out.box))
            if p.is_empty:
                continue
            out.add("place", _text(props, ("name", "name:zh", "name:en")), _text(props, ("name:en", "name_en")),
                    p.x, p.y, RANK["place"])
    districts = [f for f in _features(folder, "districts") if _text(f["properties"], DISTRICT_NAME_KEYS)]
    if districts:
        geoms = _project([shapely.geometry.shape(f["geometry"]) for f in districts], crs)
        for f, g in zip(districts, geoms, strict=True):
            inside = shapely.intersection(shapely.make_valid(g), out.box)
            if inside.is_empty or inside.area < MIN_DISTRICT_SHARE * grid_area:
                continue
            p = shapely.point_on_surface(inside)
            props = f["properties"]
            out.add("district", _text(props, DISTRICT_NAME_KEYS), _text(props, DISTRICT_NAME_EN_KEYS), p.x, p.y,
                    RANK["district"])


def map_labels(folder: Path | None, grid: GridSpec) -> dict:
    """``{"crs", "labels": [...]}`` of a district folder over a grid (none without a folder); see the module
    docstring. Labels are sorted most important first (rank, then the longer line) and numbered in that order
    (``id`` ``"<kind>:<n>"``); at most `MAX_LABELS`."""
    box = shapely.box(*grid.bounds)
    out = _Labels(box)
    if folder is not None:
        _places(out, folder, grid.crs, box.area)
        _roads(out, folder, grid.crs)
        _water(out, folder, grid.crs)
        _points(out, folder, grid.crs)
    items = sorted(out.items, key=lambda d: (d["rank"], -(d["length_m"] or 0), d["kind"], d["name"], d["x"]))
    labels = [{"id": f"{d['kind']}:{n}", **d} for n, d in enumerate(items[:MAX_LABELS])]
    return {"crs": grid.crs, "labels": labels}
