"""Places in scenario files: polygons, points with a radius, and named places of the district's data.

A `Place` is one or more lon/lat geometries (WGS84 = CGCS2000 here), each with a buffer in metres that
is applied after projection to the grid's CRS (a point's radius, half a road's width). On a grid it
becomes a per-cell covered fraction (exact area overlap, `twin.district.coverage`) or a mask.

Named places (`Gazetteer`) come from the district folder (``data/bund``):

``registry``
    every device of ``registry.geojson`` by id (``crowd-bund-05``), by its full name, and by its
    Chinese and English halves (``陈毅广场``, ``Chen Yi Square``). Crowd counters are their coverage
    polygons; gauges and detectors are points (water gauges stand at the tunnel portals).
``metro``
    metro entrances (POIs of kind ``subway_entrance``), named after the nearest station within
    `STATION_REACH_M` and their exit number: ``Lujiazui exit 1`` (also ``陆家嘴 1号口``).
``poi``
    named points of interest (``pois.geojson``; ``name``, ``name:en``, ``name:zh``) and station
    polygons of ``transit.geojson``. Several features of one name are one place (all of them).
``road``
    named road, path and tunnel centre lines of ``roads.geojson``, buffered by half their width; a
    name covers every segment. Tunnel segments are underground: on a grid they count only on underpass
    cells (their portals).

A bare name is looked up in that order (the first source holding it wins); ``metro:Lujiazui exit 1``,
``poi:The Bund``, ``road:East Zhongshan No. 1 Road``, ``registry:crowd-bund-05`` name the source.
Matching ignores case, spaces and punctuation.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
import shapely.affinity
from shapely.geometry import shape

from twin.district.cim import POINT_RADIUS_M, ROAD_WIDTH_M
from twin.district.coverage import coverage_fraction
from twin.district.geo import to_projected
from twin.district.grid import GridSpec

SOURCES = ("registry", "metro", "poi", "road")
"""Sources of named places, in lookup order."""
STATION_REACH_M = 300.0
"""A metro entrance takes the name of the nearest station within this distance. [m]"""
PATH_WIDTH_M = {"footway": 3.0, "path": 3.0, "steps": 3.0, "cycleway": 2.5, "pedestrian": 10.0, "pier": 5.0}
"""Width of paths by OSM class when they are named roads of a scenario. [m]"""
DEFAULT_ROAD_WIDTH_M = 6.0
"""Width of a named line of an unknown class. [m]"""
SKIPPED_ROAD_KINDS = frozenset({"rail", "ferry"})
MASK_MIN_SHARE = 0.2
"""A cell belongs to a place's mask when the place covers at least this share of it (and always the
cell holding the place's representative point, so a small place is never empty)."""


@dataclass(frozen=True)
class Part:
    """One geometry of a place: lon/lat, buffered by ``buffer_m`` [m] once projected."""

    geometry: shapely.Geometry
    buffer_m: float = 0.0
    underground: bool = False


@dataclass(frozen=True)
class Place:
    """A named or drawn place: its label (for messages and reports) and its parts."""

    label: str
    parts: tuple[Part, ...]

    def projected(self, grid: GridSpec, underground: bool = False) -> np.ndarray:
        """The parts (above or under ground) as polygons in the grid's CRS."""
        out = []
        for part in self.parts:
            if part.underground != underground:
                continue
            geom = shapely.transform(part.geometry, lambda xy: np.column_stack(to_projected(
                xy[:, 0], xy[:, 1], grid.crs)))
            out.append(shapely.buffer(geom, part.buffer_m) if part.buffer_m > 0 else geom)
        return np.array(out, dtype=object)

    def fraction(self, grid: GridSpec, underpass: np.ndarray | None = None) -> np.ndarray:
        """Share of each cell the place covers, shape (ny, nx). [1]

        Underground parts (tunnels) count only on cells where ``underpass`` is set.
        """
        out = coverage_fraction(grid, self.projected(grid)) if self._has(False) else np.zeros(grid.shape)
        if self._has(True) and underpass is not None:
            below = coverage_fraction(grid, self.projected(grid, underground=True))
            out = np.maximum(out, np.where(underpass > 0, below, 0.0))
        return out

    def mask(self, grid: GridSpec, underpass: np.ndarray | None = None,
             min_share: float = MASK_MIN_SHARE) -> np.ndarray:
        """Cells of the place (covered share >= ``min_share``, or holding a part's point), shape (ny, nx)."""
        out = self.fraction(grid, underpass) >= min_share
        points = [p.geometry.representative_point() for p in self.parts if not p.underground]
        if points:
            xy = shapely.get_coordinates(points)
            row, col = grid.cell_of_lonlat(xy[:, 0], xy[:, 1])
            out[row[row >= 0], col[row >= 0]] = True
        return out

    def _has(self, underground: bool) -> bool:
        return any(p.underground == underground for p in self.parts)


def union(label: str, places: list[Place]) -> Place:
    """Several places as one."""
    return Place(label, tuple(p for place in places for p in place.parts))


def normalise(name: str) -> str:
    """A name as it is matched: case-folded, without spaces or punctuation."""
    return re.sub(r"[\W_]+", "", name.casefold())


def split_bilingual(name: str) -> list[str]:
    """``'陈毅广场 Chen Yi Square'`` -> the whole name and its Chinese and English halves."""
    match = re.match(r"^([^\x00-\x7f]+(?:\s+[^\x00-\x7f]+)*)\s+([\x00-\x7f]*[A-Za-z][\x00-\x7f]*)$", name.strip())
    return [name] if match is None else [name, match.group(1), match.group(2)]


class Gazetteer:
    """Named places of one district folder, by source and normalised name."""

    def __init__(self, entries: dict[str, dict[str, Place]]) -> None:
        self.entries = entries

    def lookup(self, name: str, sources: tuple[str, ...] = SOURCES) -> Place:
        """The place of that name (``source:name`` picks a source); ``KeyError`` with suggestions otherwise."""
        source, _, rest = name.partition(":")
        if rest and source in SOURCES:
            sources, name = (source,), rest
        key = normalise(name)
        for src in sources:
            if key in self.entries.get(src, {}):
                return self.entries[src][key]
        raise KeyError(self._unknown(name, sources))

    def _unknown(self, name: str, sources: tuple[str, ...]) -> str:
        labels = {normalise(p.label): p.label for src in sources for p in self.entries.get(src, {}).values()}
        close = difflib.get_close_matches(normalise(name), list(labels), n=3, cutoff=0.6)
        what = "road" if sources == ("road",) else "place"
        hint = f"; did you mean {', '.join(repr(labels[c]) for c in close)}?" if close else ""
        return f"unknown {what} {name!r} in the {'/'.join(sources)} data{hint}"

    def names(self, source: str) -> list[str]:
        """Labels of the places of one source, sorted."""
        return sorted({p.label for p in self.entries.get(source, {}).values()})

    def nearest(self, geometry: shapely.Geometry, sources: tuple[str, ...] = ("registry", "poi")) -> str | None:
        """The label of the named place of ``sources`` nearest to a lon/lat geometry (one that holds it first),
        to name a place given by coordinates (``near Chen Yi Square``); None without named places. Distances in
        degrees, east-west scaled by the cosine of the latitude."""
        scale = math.cos(math.radians(geometry.centroid.y))

        def squeezed(g: shapely.Geometry) -> shapely.Geometry:
            return shapely.affinity.scale(g, xfact=scale, yfact=1.0, origin=(0, 0))

        here = squeezed(geometry)
        found = [(here.distance(squeezed(part.geometry)), place.label) for src in sources
                 for place in self.entries.get(src, {}).values() for part in place.parts]
        return min(found)[1] if found else None

    def metro_entrances(self) -> list[Place]:
        """Every metro entrance of the district."""
        return list(dict.fromkeys(self.entries.get("metro", {}).values()))


def _features(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as f:
        return [feat for feat in json.load(f).get("features", []) if feat.get("geometry")]


def _add(index: dict[str, list[tuple[str, Part]]], names: list[str], label: str, part: Part) -> None:
    for name in dict.fromkeys(n for n in names if n and normalise(n)):
        index.setdefault(normalise(name), []).append((label, part))


def _places(index: dict[str, list[tuple[str, Part]]]) -> dict[str, Place]:
    return {key: Place(items[0][0], tuple(dict.fromkeys(part for _, part in items))) for key, items in index.items()}


def _point_part(geometry: shapely.Geometry) -> Part:
    return Part(geometry, POINT_RADIUS_M if geometry.geom_type in ("Point", "MultiPoint") else 0.0)


def _registry(folder: Path) -> dict[str, Place]:
    index: dict[str, list[tuple[str, Part]]] = {}
    for feat in _features(folder / "registry.geojson"):
        props = feat["properties"]
        halves = split_bilingual(str(props.get("name") or ""))
        label = halves[-1] or str(props.get("id", ""))
        names = [str(props.get("id", "")), *halves]
        _add(index, names, label, _point_part(shape(feat["geometry"])))
    return _places(index)


def _names(props: dict) -> list[str]:
    return [str(props[k]) for k in ("name:en", "name", "name:zh") if props.get(k)]


def _stations(pois: list[dict], transit: list[dict]) -> list[tuple[list[str], np.ndarray]]:
    out = []
    for feat in pois + transit:
        if feat["properties"].get("kind") == "station" and _names(feat["properties"]):
            centre = shape(feat["geometry"]).centroid
            out.append((_names(feat["properties"]), np.array(to_projected(centre.x, centre.y))))
    return out


def _metro(pois: list[dict], transit: list[dict]) -> dict[str, Place]:
    index: dict[str, list[tuple[str, Part]]] = {}
    stations = _stations(pois, transit)
    for feat in pois:
        props = feat["properties"]
        if props.get("kind") != "subway_entrance" or not stations:
            continue
        point = shape(feat["geometry"])
        xy = np.array(to_projected(point.x, point.y))
        dist, names = min((float(np.hypot(*(s - xy))), n) for n, s in stations)
        if dist > STATION_REACH_M:
            continue
        ref = str(props.get("ref") or props.get("name") or "").strip()
        label = f"{names[0]} exit {ref}".strip()
        aliases = [label, f"{names[0]} entrance {ref}"] + [f"{n} {ref}号口" for n in names]
        _add(index, aliases, label, Part(point, POINT_RADIUS_M))
    return _places(index)


def _pois(pois: list[dict], transit: list[dict]) -> dict[str, Place]:
    index: dict[str, list[tuple[str, Part]]] = {}
    for feat in pois + transit:
        props = feat["properties"]
        geometry = shape(feat["geometry"])
        if props.get("kind") == "subway_entrance" or geometry.geom_type not in ("Point", "Polygon", "MultiPolygon"):
            continue
        names = _names(props)
        if names:
            _add(index, names, names[0], _point_part(geometry))
    return _places(index)


def _road_width(props: dict) -> float:
    detail = str(props.get("kind_detail") or "")
    return ROAD_WIDTH_M.get(detail) or PATH_WIDTH_M.get(detail) or DEFAULT_ROAD_WIDTH_M


def _roads(folder: Path) -> dict[str, Place]:
    index: dict[str, list[tuple[str, Part]]] = {}
    for feat in _features(folder / "roads.geojson"):
        props = feat["properties"]
        names = _names(props)
        if not names or props.get("kind") in SKIPPED_ROAD_KINDS:
            continue
        tunnel = props.get("is_tunnel") in (True, "yes", 1)
        _add(index, names, names[0], Part(shape(feat["geometry"]), _road_width(props) / 2.0, tunnel))
    return _places(index)


@functools.lru_cache(maxsize=8)
def gazetteer(folder: Path) -> Gazetteer:
    """The named places of a district folder (read once per process)."""
    pois, transit = _features(folder / "pois.geojson"), _features(folder / "transit.geojson")
    return Gazetteer({"registry": _registry(folder), "metro": _metro(pois, transit),
                      "poi": _pois(pois, transit), "road": _roads(folder)})
