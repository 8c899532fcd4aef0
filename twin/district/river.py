"""The Huangpu's works on the twin grid: the flood wall (防汛墙), the river cells, the storm-drain outfalls.

Data (a district folder, e.g. ``data/bund``; data/bund/PROVENANCE.md and docs/science/river.md):

- ``flood-wall.geojson``: LineStrings of the wall's sections with ``id``, ``name``, ``name_zh``, ``crest_m``
  (metres above the Wusong datum), ``crest_source`` (a citation, or ``assumed: <why>``) and optionally ``kind``
  (``wall`` or ``gate``: a tide gate drawn across a creek mouth, closed at high tide);
- ``outfalls.geojson``: Points of storm-drain outfalls and pump stations with ``id``, ``name``, ``name_zh``,
  ``invert_m`` (Wusong), ``pumped`` (bool), ``source``;
- ``river.yaml``: the reference tide gauge (黄浦公园 Huangpu Park), its warning level (警戒水位) and other levels with
  their sources, and ``river_point``, a point in mid-river.

How the works go onto the grid (`load_river_works`):

- **wall faces**: a cell face is a wall face when the segment joining its two cell centres meets a wall line
  (touching counts). Any 4-connected path of cells from one side of a line to the other joins cell centres by such
  segments, so it crosses a wall face: the wall has no gap a 4-connected flow can slip through. A face crossed by
  two sections (where they meet) takes the lower crest (water finds the lower one).
- **river cells**: the cells connected to ``river_point`` without crossing a wall face (building cells left out).
  Where the mapped water stops short of the grid's edge (the data's clip line, not a bank) the wall lines run on to
  the edge, so the river reaches it too; a free end of a line within `EDGE_SNAP_M` of the grid's edge is run on to
  it by the loader (a grid of another cell size has its edge up to a cell away). With no wall file: the open-water
  cells (``water_mask``) connected to ``river_point`` (or the largest body of open water when the grid has no such
  point).
- **cells behind a section**: the non-river, non-building cells on the land side of its wall faces.
- **outfall service**: each land cell (neither river nor open water) drains to the nearest outfall on the same land
  (a 4-connected area of land cells; buildings count as land, open water divides), [design]: a stand-in for the
  real drainage catchments (排水系统), which the bundled data does not have. Land without an outfall: -1.

Heights: the grid's elevations are metres above the Wusong datum (吴淞高程; `twin.district.cim.GROUND_M`), the datum
Shanghai's tide gauges publish. A grid on another datum says so in its attributes ``vertical_datum`` (a name of
`DATUM_OFFSETS_M`) or ``vertical_datum_offset_m`` (the height of its datum's zero above the Wusong zero [m]);
`wusong_to_grid` converts. Crests and inverts in `RiverWorks` are on the grid's datum; the sections keep their
Wusong crest too.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
import xarray as xr
import yaml
from pyproj import Transformer
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from twin.district.grid import GridSpec
from twin.district.sources import data_dir, read_layer

WALL_FILE = "flood-wall.geojson"
OUTFALL_FILE = "outfalls.geojson"
RIVER_FILE = "river.yaml"
EDGE_SNAP_M = 100.0
"""A wall line's end within this distance of the grid's edge is run on straight to (one cell past) the edge [m]
[design]: the bundled lines end on the 10 m grid's edge, and a grid of another cell size has its edge up to a cell
away; a wall that stopped short of the edge would let the river round its end along the edge cells."""
JUNCTION_M = 1.0
"""A line's end within this distance of another wall line is a junction, never run on to the grid's edge. [m]"""
BUILDING_SHARE = 0.5
"""A cell is a building (a wall in the flood model) at this footprint share (as `twin.district.cim`). [1]"""

DATUM_OFFSETS_M = {"wusong": 0.0, "nhd1985": 1.6}
"""Height of a datum's zero above the Wusong zero [m]: Wusong 0; the 1985 national height datum (1985国家高程基准)
about 1.6 m [mem] (the offset varies by about a decimetre across Shanghai; a grid on that datum should state
``vertical_datum_offset_m`` exactly)."""
DATUM_NOTE = ("heights in metres above the Wusong datum (吴淞高程), as Shanghai's tide gauges publish them; the 1985 "
              "national height datum's zero is about 1.6 m above the Wusong zero [mem]: a level of 4.80 m Wusong is "
              "about 3.2 m on the 1985 datum")
"""One line on the datum, for reports and CAP notes."""


class RiverWorksError(ValueError):
    """A flood-wall, outfall or river file cannot be used on this grid."""


def wusong_to_grid(level_m, offset_m: float = 0.0):
    """A height above the Wusong datum [m] on a grid whose datum's zero is ``offset_m`` [m] above the Wusong zero.

    ``level_m`` a number or an array (returned alike): grid height = Wusong height - offset (0 for the bundled
    grids, which are on the Wusong datum; about 1.6 for the 1985 national datum, `DATUM_OFFSETS_M`).
    """
    if isinstance(level_m, int | float):
        return float(level_m) - float(offset_m)
    return np.asarray(level_m, dtype=float) - float(offset_m)


def grid_to_wusong(level_m, offset_m: float = 0.0):
    """The inverse of `wusong_to_grid`: a grid height [m] as a height above the Wusong datum [m]."""
    if isinstance(level_m, int | float):
        return float(level_m) + float(offset_m)
    return np.asarray(level_m, dtype=float) + float(offset_m)


def datum_offset(static: xr.Dataset) -> float:
    """The height of the grid's datum zero above the Wusong zero [m], from its attributes (0 when it names none).

    ``vertical_datum_offset_m`` wins; else ``vertical_datum`` must be a name of `DATUM_OFFSETS_M`.
    """
    attrs = static.attrs
    if "vertical_datum_offset_m" in attrs:
        value = float(attrs["vertical_datum_offset_m"])
        if not math.isfinite(value):
            raise RiverWorksError(f"grid attribute vertical_datum_offset_m must be a finite number, got {value}")
        return value
    name = str(attrs.get("vertical_datum", "wusong")).strip().lower()
    if name not in DATUM_OFFSETS_M:
        raise RiverWorksError(f"grid attribute vertical_datum {name!r} is not one of {', '.join(DATUM_OFFSETS_M)}; "
                              "give vertical_datum_offset_m (its zero above the Wusong zero, m)")
    return DATUM_OFFSETS_M[name]


# ------------------------------------------------------------------ the gauge file
@dataclass(frozen=True)
class RiverLevel:
    """A named level of the gauge: ``value_m`` [m, Wusong], ``source`` its citation with its evidence tag."""

    key: str
    value_m: float
    name_zh: str
    source: str


@dataclass(frozen=True)
class RiverGauge:
    """The reference tide gauge and its levels (``river.yaml``); heights in metres above the Wusong datum."""

    id: str
    name: str
    name_zh: str
    lon: float
    lat: float
    position_source: str
    levels: dict[str, RiverLevel]
    river_point: tuple[float, float] | None = None

    @property
    def warning_m(self) -> float:
        """The warning level 警戒水位 [m, Wusong]."""
        return self.levels["warning_m"].value_m

    def level(self, key: str) -> RiverLevel:
        """A level by key (``warning_m``, ``design_high_water_m``, ``record_m``); KeyError names the known ones."""
        try:
            return self.levels[key]
        except KeyError:
            raise KeyError(f"no river level {key!r}; known: {', '.join(self.levels)}") from None


def load_gauge(path: str | Path | None = None) -> RiverGauge:
    """The gauge file (default: the bundled Bund's ``river.yaml``). One-line RiverWorksError on a bad file."""
    path = Path(path) if path is not None else data_dir() / "bund" / RIVER_FILE
    if not path.is_file():
        raise RiverWorksError(f"no river file at {path}")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        g = doc["gauge"]
        levels = {}
        for key, entry in (doc.get("levels") or {}).items():
            value = float(entry["value"])
            if not math.isfinite(value) or not str(entry.get("source", "")).strip():
                raise ValueError(f"level {key}: a finite value and a source are needed")
            levels[key] = RiverLevel(key, value, str(entry.get("name_zh", "")), str(entry["source"]))
        if "warning_m" not in levels:
            raise ValueError("levels.warning_m (the warning level 警戒水位) is required")
        rp = doc.get("river_point")
        point = (float(rp["lon"]), float(rp["lat"])) if rp else None
        return RiverGauge(str(g["id"]), str(g["name"]), str(g.get("name_zh", "")), float(g["lon"]), float(g["lat"]),
                          str(g.get("position_source", "")), levels, point)
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise RiverWorksError(f"{path}: not a usable river file ({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------ the works
@dataclass
class WallSection:
    """One section of the flood wall on the grid.

    ``crest_m`` [m, Wusong] as in the file, ``crest_grid_m`` [m, grid datum]; ``source`` the citation or
    assumption; ``cells`` flat indices of the land cells right behind it (int64); ``n_faces`` its wall faces on the
    grid (faces it shares with a lower section at a junction count for that one).
    """

    id: str
    name: str
    name_zh: str
    kind: str
    crest_m: float
    crest_grid_m: float
    source: str
    cells: np.ndarray
    n_faces: int = 0


@dataclass
class RiverWorks:
    """The Huangpu's works on one grid (see the module docstring for how each part is made).

    ``river`` bool (ny, nx): cells that take the river level. ``crest_x`` (ny, nx + 1) / ``crest_y`` (ny + 1, nx):
    wall crest on x / y faces [m, grid datum], NaN no wall (x face j is west of cell j, y face i north of row i, as
    `models.flood.FloodModel`); ``section_x`` / ``section_y`` the section index of each face (-1 none).
    ``outfall_service`` int32 (ny, nx): the outfall each cell drains to (-1 none); ``outfall_invert`` (n,) [m, grid
    datum]; ``outfall_pumped`` (n,) bool; ``outfall_names``, ``outfall_ids``; ``outfall_cells`` the cell of each.
    ``offset_m``: the grid datum's zero above the Wusong zero [m] (`wusong_to_grid`). ``gauge``: the reference gauge,
    None without a river file.
    """

    river: np.ndarray
    crest_x: np.ndarray
    crest_y: np.ndarray
    section_x: np.ndarray
    section_y: np.ndarray
    sections: list[WallSection]
    outfall_service: np.ndarray
    outfall_invert: np.ndarray
    outfall_pumped: np.ndarray
    outfall_names: list[str]
    outfall_ids: list[str] = field(default_factory=list)
    outfall_cells: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    offset_m: float = 0.0
    gauge: RiverGauge | None = None

    # ---------------------------------------------------------------- the model
    def level_function(self, level) -> Callable[[float], float] | None:
        """The river level as the flood model takes it: t [s] -> level [m, grid datum].

        ``level``: None (the river cells are plain outlets), a number or a callable t [s] -> level, in metres above
        the **Wusong datum** (a gauge's reading), converted with `offset_m`.
        """
        if level is None:
            return None
        off = self.offset_m
        if callable(level):
            return lambda t: float(level(t)) - off
        value = float(level)
        if not math.isfinite(value):
            raise ValueError(f"river level must be a finite number of metres (Wusong), got {level!r}")
        return lambda _t: value - off

    def apply(self, flood, level) -> None:
        """Put the works into a flood model: barriers, outfalls and the river with its ``level`` (see
        `level_function`: Wusong metres, a number, a callable of model time [s], or None)."""
        flood.set_barriers(self.crest_x, self.crest_y)
        flood.set_outfalls(self.outfall_service, self.outfall_invert, self.outfall_pumped)
        self.set_level(flood, level)

    def set_level(self, flood, level) -> None:
        """Only the river and its level (each tick, after `apply` once)."""
        flood.set_river(self.river, self.level_function(level))

    # ---------------------------------------------------------------- reports
    @property
    def has_wall(self) -> bool:
        """Whether any face of the grid has a wall."""
        return bool(np.isfinite(self.crest_x).any() or np.isfinite(self.crest_y).any())

    def section_names(self) -> list[str]:
        """``name (name_zh)`` of every section on the grid, in file order."""
        return [f"{s.name} ({s.name_zh})" if s.name_zh else s.name for s in self.sections]

    def lowest_crest(self) -> tuple[float, list[WallSection]]:
        """The lowest crest on the grid [m, Wusong] and the sections that have it (NaN, [] without a wall)."""
        on_grid = [s for s in self.sections if s.n_faces > 0]
        if not on_grid:
            return math.nan, []
        low = min(s.crest_m for s in on_grid)
        return low, [s for s in on_grid if s.crest_m == low]

    def by_section(self, per_cell: np.ndarray) -> dict[str, float]:
        """The sum of a per-cell quantity (e.g. the flood model's overtopping volume [m3]) over the cells behind each
        section, by section id (a cell behind two sections counts for both)."""
        flat = np.asarray(per_cell, dtype=float).ravel()
        if flat.size != self.river.size:
            raise ValueError(f"by_section: {flat.size} values for a grid of {self.river.size} cells")
        return {s.id: float(np.nansum(flat[s.cells])) for s in self.sections}

    def leak_faces(self, building: np.ndarray | None = None) -> int:
        """Faces between a river cell and a land cell (neither river nor building) without a wall; 0 when the wall
        closes the river off. ``building`` bool (ny, nx), the model's wall cells (none if None)."""
        river = self.river
        land = ~river if building is None else ~river & ~np.asarray(building, bool)
        fx = (river[:, :-1] & land[:, 1:]) | (land[:, :-1] & river[:, 1:])
        fy = (river[:-1, :] & land[1:, :]) | (land[:-1, :] & river[1:, :])
        return int((fx & np.isnan(self.crest_x[:, 1:-1])).sum() + (fy & np.isnan(self.crest_y[1:-1, :])).sum())

    def summary(self) -> str:
        """A few lines for reports: sections with crests, the lowest, the outfalls."""
        lines = [f"flood wall: {len(self.sections)} section(s), {DATUM_NOTE}"]
        for s in self.sections:
            lines.append(f"  {s.id}: {s.name} {s.name_zh} crest {s.crest_m:g} m ({s.n_faces} faces, "
                         f"{s.cells.size} cells behind) - {s.source}")
        low, secs = self.lowest_crest()
        if secs:
            lines.append(f"  lowest crest {low:g} m: {', '.join(s.name for s in secs)}")
        pumped = int(self.outfall_pumped.sum())
        lines.append(f"outfalls: {len(self.outfall_names)} ({pumped} pumped, {len(self.outfall_names) - pumped} "
                     f"gravity); river cells: {int(self.river.sum())}")
        return "\n".join(lines)


# ------------------------------------------------------------------ the warning levels
ORANGE_BELOW_RED_M = 0.20
"""Orange is this far below red (the lowest crest) [m] [design: about half an hour of a spring tide's rise near its
peak] (`models.config.RiverConfig`)."""


def river_config(works: RiverWorks, base=None):
    """The river level warning's thresholds (`models.config.RiverConfig`) for these works, on the grid's datum.

    Blue: the gauge's warning level (警戒水位); red: the lowest wall crest on the grid (water starts to come over the
    wall); orange `ORANGE_BELOW_RED_M` below red; yellow halfway from blue to orange (docs/science/river.md 4). A
    part the works lack (no gauge file, no wall) keeps ``base``'s value (default ``RiverConfig()``); thresholds are
    kept non-decreasing (a crest below the warning level makes every colour from there on the crest).
    """
    from dataclasses import replace

    from models.config import RiverConfig

    base = base or RiverConfig()
    blue, yellow, orange, red = base.level_raise
    changed = False
    if works.gauge is not None:
        blue, changed = wusong_to_grid(works.gauge.warning_m, works.offset_m), True
    low, _ = works.lowest_crest()
    if math.isfinite(low):
        red, changed = wusong_to_grid(low, works.offset_m), True
    if not changed:
        return base
    red = max(red, blue)
    orange = min(max(red - ORANGE_BELOW_RED_M, blue), red)
    yellow = (blue + orange) / 2.0
    return replace(base, level_raise=tuple(round(v, 6) for v in (blue, yellow, orange, red)))


# ------------------------------------------------------------------ building the works
def _district_file(static: xr.Dataset, name: str) -> Path | None:
    district = static.attrs.get("district")
    if not district:
        return None
    path = data_dir() / str(district) / name
    return path if path.is_file() else None


def wall_faces(grid: GridSpec, lines: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Which interior faces each polyline crosses: the segment joining the face's two cell centres meets the line
    (touching counts).

    ``lines``: (k, 2) vertex arrays in the grid CRS [m]. Returns two lists with, per line, the sorted flat indices
    of its x faces (into (ny, nx + 1)) and of its y faces (into (ny + 1, nx)).
    """
    ny, nx = grid.ny, grid.nx
    s = grid.cell_size
    cx, cy = grid.x, grid.y  # cy falls with the row
    out_x, out_y = [], []
    for pts in lines:
        fx, fy = [], []
        for (px, py), (qx, qy) in itertools.pairwise(pts):
            # x faces: horizontal dual segments at row centre y between centres of columns j-1 and j (j = 1..nx-1)
            r0 = max(0, math.floor((grid.y0 - max(py, qy)) / s - 0.5) - 1)
            r1 = min(ny - 1, math.ceil((grid.y0 - min(py, qy)) / s - 0.5) + 1)
            c0 = max(0, math.floor((min(px, qx) - grid.x0) / s - 0.5) - 1)
            c1 = min(nx - 1, math.ceil((max(px, qx) - grid.x0) / s - 0.5) + 1)
            if r0 > r1 or c0 > c1:
                continue
            rows = np.arange(r0, r1 + 1)
            yr = cy[rows]
            if py != qy:
                t = (yr - py) / (qy - py)
                ok = (t >= 0) & (t <= 1)
                xr_ = px + t * (qx - px)
                for r, xv in zip(rows[ok], xr_[ok], strict=True):
                    # dual segment [cx[j-1], cx[j]] contains xv: j-1 = floor((xv - cx0)/s) (and j when on a centre)
                    k = (xv - cx[0]) / s
                    lo, hi = math.floor(k), math.ceil(k)
                    for j in {lo + 1, hi}:
                        if 1 <= j <= nx - 1 and cx[j - 1] <= xv <= cx[j]:
                            fx.append(r * (nx + 1) + j)
            else:
                for r in rows[yr == py]:
                    js = np.arange(1, nx)
                    hit = (cx[js] >= min(px, qx)) & (cx[js - 1] <= max(px, qx))
                    fx.extend((r * (nx + 1) + js[hit]).tolist())
            # y faces: vertical dual segments at column centre x between centres of rows i-1 and i (i = 1..ny-1)
            cols = np.arange(c0, c1 + 1)
            xc = cx[cols]
            if px != qx:
                t = (xc - px) / (qx - px)
                ok = (t >= 0) & (t <= 1)
                yv_ = py + t * (qy - py)
                for c, yv in zip(cols[ok], yv_[ok], strict=True):
                    k = (cy[0] - yv) / s  # rows count down from the top centre
                    lo, hi = math.floor(k), math.ceil(k)
                    for i in {lo + 1, hi}:
                        if 1 <= i <= ny - 1 and cy[i] <= yv <= cy[i - 1]:
                            fy.append(i * nx + c)
            else:
                for c in cols[xc == px]:
                    iis = np.arange(1, ny)
                    hit = (cy[iis - 1] >= min(py, qy)) & (cy[iis] <= max(py, qy))
                    fy.extend((iis[hit] * nx + c).tolist())
        out_x.append(np.unique(np.asarray(fx, np.int64)))
        out_y.append(np.unique(np.asarray(fy, np.int64)))
    return out_x, out_y


def _components(ny: int, nx: int, open_x: np.ndarray, open_y: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Labels of the 4-connected components of ``cells`` (bool (ny, nx)) joined across open interior faces
    (``open_x`` (ny, nx - 1), ``open_y`` (ny - 1, nx)); -1 outside ``cells``."""
    idx = np.arange(ny * nx).reshape(ny, nx)
    ex = open_x & cells[:, :-1] & cells[:, 1:]
    ey = open_y & cells[:-1, :] & cells[1:, :]
    a = np.concatenate([idx[:, :-1][ex], idx[:-1, :][ey]])
    b = np.concatenate([idx[:, 1:][ex], idx[1:, :][ey]])
    graph = coo_matrix((np.ones(a.size, np.int8), (a, b)), shape=(ny * nx, ny * nx))
    _, labels = connected_components(graph, directed=False)
    return np.where(cells.ravel(), labels, -1).reshape(ny, nx)


def _to_edge(pts: np.ndarray, grid: GridSpec, others) -> np.ndarray:
    """The line with each free end (not on another wall line: ``others``, a shapely geometry or None) inside the grid
    and within `EDGE_SNAP_M` of its edge run on to one cell past it."""
    xmin, ymin, xmax, ymax = grid.bounds
    out = [pts]
    for k, (x, y) in ((0, pts[0]), (-1, pts[-1])):
        if not (xmin <= x <= xmax and ymin <= y <= ymax):
            continue
        if others is not None and shapely.distance(shapely.Point(x, y), others) <= JUNCTION_M:
            continue  # a junction with another section, not an end of the wall
        gaps = {(xmin - grid.cell_size, y): x - xmin, (xmax + grid.cell_size, y): xmax - x,
                (x, ymin - grid.cell_size): y - ymin, (x, ymax + grid.cell_size): ymax - y}
        target, gap = min(gaps.items(), key=lambda kv: kv[1])
        if gap <= EDGE_SNAP_M:
            out.insert(0 if k == 0 else len(out), np.array([target]))
    return np.vstack(out)


def _read_lines(path: Path, grid: GridSpec) -> list[dict]:
    df = read_layer(path)
    need = ("id", "name", "crest_m", "crest_source")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise RiverWorksError(f"{path}: flood-wall features need properties {', '.join(need)}; missing "
                              f"{', '.join(missing)}")
    df = df.to_crs(grid.crs)
    out = []
    for _, row in df.iterrows():
        geom = row.geometry
        if geom is None or geom.geom_type not in ("LineString", "MultiLineString"):
            raise RiverWorksError(f"{path}: section {row['id']!r} is not a LineString")
        crest = float(row["crest_m"]) if row["crest_m"] is not None else math.nan
        source = str(row["crest_source"] or "").strip()
        if not math.isfinite(crest) or not source:
            raise RiverWorksError(f"{path}: section {row['id']!r} needs a finite crest_m and a crest_source "
                                  "(a citation or 'assumed: <why>')")
        parts = list(geom.geoms) if geom.geom_type == "MultiLineString" else [geom]
        parts = [np.asarray(p.coords, float)[:, :2] for p in parts]
        kind = str(row.get("kind") or "wall")
        out.append({"id": str(row["id"]), "name": str(row["name"]), "name_zh": str(row.get("name_zh") or ""),
                    "kind": kind, "crest_m": crest, "source": source,
                    "parts": parts})
    lines = [shapely.LineString(p) for spec in out for p in spec["parts"]]
    k = 0
    for spec in out:
        for i, p in enumerate(spec["parts"]):
            others = shapely.union_all(lines[:k] + lines[k + 1:]) if len(lines) > 1 else None
            spec["parts"][i] = _to_edge(p, grid, others)
            k += 1
    return out


def _read_outfalls(path: Path, grid: GridSpec) -> list[dict]:
    df = read_layer(path)
    need = ("id", "name", "invert_m", "pumped", "source")
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise RiverWorksError(f"{path}: outfall features need properties {', '.join(need)}; missing "
                              f"{', '.join(missing)}")
    df = df.to_crs(grid.crs)
    out = []
    for _, row in df.iterrows():
        if row.geometry is None or row.geometry.geom_type != "Point":
            raise RiverWorksError(f"{path}: outfall {row['id']!r} is not a Point")
        invert = float(row["invert_m"]) if row["invert_m"] is not None else math.nan
        if not math.isfinite(invert) or not isinstance(row["pumped"], bool | np.bool_):
            raise RiverWorksError(f"{path}: outfall {row['id']!r} needs a finite invert_m and pumped true/false")
        out.append({"id": str(row["id"]), "name": str(row["name"]), "invert_m": invert,
                    "pumped": bool(row["pumped"]), "x": row.geometry.x, "y": row.geometry.y})
    return out


def _river_seed(grid: GridSpec, gauge: RiverGauge | None) -> int | None:
    if gauge is None or gauge.river_point is None:
        return None
    x, y = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(*gauge.river_point)
    r, c = grid.cell_of(np.array([x]), np.array([y]))
    r, c = int(np.asarray(r)[0]), int(np.asarray(c)[0])
    if not (0 <= r < grid.ny and 0 <= c < grid.nx):
        return None
    return r * grid.nx + c


def load_river_works(static: xr.Dataset, wall_path: str | Path | None = None,
                     outfalls_path: str | Path | None = None, river_path: str | Path | None = None) -> RiverWorks:
    """The river, flood wall and outfalls of ``static`` (a twin dataset with ``water_mask`` and
    ``building_fraction``) on its grid.

    Paths default to the files of the grid's district (attribute ``district``, e.g. ``bund``: ``data/bund/``); a
    grid with no wall file gets no barriers, with no outfall file no outfalls, with no river file no gauge (and
    the largest body of open water is the river). A given path that does not exist, or a file that cannot be used,
    raises RiverWorksError with one line; so does a wall that does not close the river off from the land (the
    cells reached from ``river_point`` are mostly not open water).
    """
    from twin.district.dataset import grid_of

    grid = grid_of(static)
    ny, nx = grid.ny, grid.nx
    offset = datum_offset(static)
    paths = {}
    for key, given, name in (("wall", wall_path, WALL_FILE), ("outfalls", outfalls_path, OUTFALL_FILE),
                             ("river", river_path, RIVER_FILE)):
        if given is not None:
            p = Path(given)
            if not p.is_file():
                raise RiverWorksError(f"no {key} file at {p}")
            paths[key] = p
        else:
            paths[key] = _district_file(static, name)
    gauge = load_gauge(paths["river"]) if paths["river"] else None
    water = np.asarray(static["water_mask"].values).astype(bool)
    building = np.asarray(static["building_fraction"].values) >= BUILDING_SHARE

    # wall faces
    crest_x = np.full((ny, nx + 1), np.nan)
    crest_y = np.full((ny + 1, nx), np.nan)
    sec_x = np.full((ny, nx + 1), -1, np.int16)
    sec_y = np.full((ny + 1, nx), -1, np.int16)
    specs = _read_lines(paths["wall"], grid) if paths["wall"] else []
    for k, spec in enumerate(specs):
        crest = wusong_to_grid(spec["crest_m"], offset)
        fxs, fys = wall_faces(grid, spec["parts"])
        fx = np.unique(np.concatenate(fxs)) if fxs else np.zeros(0, np.int64)
        fy = np.unique(np.concatenate(fys)) if fys else np.zeros(0, np.int64)
        for crest_arr, sec_arr, faces in ((crest_x, sec_x, fx), (crest_y, sec_y, fy)):
            flat_c, flat_s = crest_arr.reshape(-1), sec_arr.reshape(-1)
            lower = np.isnan(flat_c[faces]) | (crest < flat_c[faces])
            flat_c[faces[lower]] = crest
            flat_s[faces[lower]] = k

    # river cells
    seed = _river_seed(grid, gauge)
    if specs:
        open_x = np.isnan(crest_x[:, 1:-1])
        open_y = np.isnan(crest_y[1:-1, :])
        labels = _components(ny, nx, open_x, open_y, np.ones((ny, nx), bool))
        if seed is None:
            wl = labels[water]
            if wl.size == 0:
                raise RiverWorksError("the grid has a flood wall but no open water to be the river")
            seed_label = int(np.bincount(wl).argmax())
        else:
            seed_label = int(labels.ravel()[seed])
        region = labels == seed_label
        n_water, n_other = int((region & water).sum()), int((region & ~water).sum())
        if n_other > n_water:
            raise RiverWorksError(f"the flood wall does not close the river off from the land: {n_other} land cells "
                                  f"but only {n_water} open-water cells are on the river's side")
        river = region & ~building
    else:
        labels = _components(ny, nx, np.ones((ny, nx - 1), bool), np.ones((ny - 1, nx), bool), water)
        if not water.any():
            river = np.zeros((ny, nx), bool)
        elif seed is not None and water.ravel()[seed]:
            river = labels == labels.ravel()[seed]
        else:
            river = labels == int(np.bincount(labels[water]).argmax())
        river &= ~building

    # sections: faces and the land cells behind them
    land_behind = ~river & ~building
    sections = []
    idx = np.arange(ny * nx).reshape(ny, nx)
    for k, spec in enumerate(specs):
        behind = []
        n_faces = 0
        # x faces j = 1..nx-1 between (r, j-1) and (r, j)
        on = sec_x[:, 1:-1] == k
        n_faces += int(on.sum())
        west, east = idx[:, :-1], idx[:, 1:]
        rw, re = river[:, :-1], river[:, 1:]
        behind.append(east[on & rw & land_behind[:, 1:]])
        behind.append(west[on & re & land_behind[:, :-1]])
        on = sec_y[1:-1, :] == k
        n_faces += int(on.sum())
        north, south = idx[:-1, :], idx[1:, :]
        rn, rs = river[:-1, :], river[1:, :]
        behind.append(south[on & rn & land_behind[1:, :]])
        behind.append(north[on & rs & land_behind[:-1, :]])
        cells = np.unique(np.concatenate(behind)).astype(np.int64)
        sections.append(WallSection(spec["id"], spec["name"], spec["name_zh"], spec["kind"], spec["crest_m"],
                                    wusong_to_grid(spec["crest_m"], offset), spec["source"], cells, n_faces))

    # outfalls
    outs = _read_outfalls(paths["outfalls"], grid) if paths["outfalls"] else []
    service = np.full((ny, nx), -1, np.int32)
    out_cells = np.zeros(len(outs), np.int64)
    land = ~river & ~water
    if outs and land.any():
        land_lab, _ = ndimage.label(land)
        open_land = np.flatnonzero((land & ~building).ravel())
        gx, gy = np.meshgrid(grid.x, grid.y)
        tree = cKDTree(np.c_[gx.ravel()[open_land], gy.ravel()[open_land]])
        _, near = tree.query(np.array([[o["x"], o["y"]] for o in outs]))
        out_cells = open_land[near].astype(np.int64)
        out_lab = land_lab.ravel()[out_cells]
        flat = service.reshape(-1)
        for lab in np.unique(out_lab):
            mine = np.flatnonzero(out_lab == lab)
            cells = np.flatnonzero(land_lab.ravel() == lab)
            t = cKDTree(np.c_[gx.ravel()[out_cells[mine]], gy.ravel()[out_cells[mine]]])
            _, j = t.query(np.c_[gx.ravel()[cells], gy.ravel()[cells]])
            flat[cells] = mine[j]
    return RiverWorks(
        river=river, crest_x=crest_x, crest_y=crest_y, section_x=sec_x, section_y=sec_y, sections=sections,
        outfall_service=service,
        outfall_invert=np.array([wusong_to_grid(o["invert_m"], offset) for o in outs], float),
        outfall_pumped=np.array([o["pumped"] for o in outs], bool),
        outfall_names=[o["name"] for o in outs], outfall_ids=[o["id"] for o in outs], outfall_cells=out_cells,
        offset_m=offset, gauge=gauge)


__all__ = ["DATUM_NOTE", "DATUM_OFFSETS_M", "RiverGauge", "RiverLevel", "RiverWorks", "RiverWorksError",
           "WallSection", "datum_offset", "grid_to_wusong", "load_gauge", "load_river_works", "river_config",
           "wall_faces", "wusong_to_grid"]
