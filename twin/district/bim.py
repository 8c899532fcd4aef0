"""BIM entities: one row per building, traceable to the cells it covers and back.

A building is the union of its OpenStreetMap pieces (the same id clipped at tile
edges) and its ``building_part`` volumes. Floor area counts each point of the
footprint once, with the storeys of the tallest volume above it, so a tower standing
on a podium is not counted twice (a part's footprint overlaps its parent's).

Assumptions (stated, not measured):

- Storey height 3.2 m for the first 50 m of a building and 4.5 m above (office towers have
  taller floors; the Shanghai Tower, 632 m, has 128 storeys, i.e. 4.9 m). [mem] Storeys given
  in the data (``floors``, ``Floor``, ``building:levels``) win over heights.
- Buildings with neither height nor storeys: 4 storeys (12.8 m), the median storey
  count of the Bund buildings that carry a height.
- Observation and communication towers (``tower``, ``communications_tower``) have at most
  10 usable storeys whatever their height.
- Occupancy = floor area / floor area per person by use, after the occupant-load factors
  of the International Building Code (2021, Table 1004.5: business 14 m², mercantile
  5.6 m², residential 18.6 m², educational 1.9 m² net classroom) and, for homes, the
  Shanghai mean living space of about 37 m² per resident. [mem] It is a design-load
  style estimate of how many people a building can hold, not a live count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from twin.district.coverage import overlap_areas
from twin.district.grid import GridSpec

log = logging.getLogger(__name__)

STOREY_HEIGHT_M = 3.2
TALL_STOREY_HEIGHT_M = 4.5
TALL_BUILDING_M = 50.0
DEFAULT_STOREYS = 4
TOWER_KINDS = ("tower", "communications_tower")
TOWER_MAX_STOREYS = 10

FLOOR_AREA_PER_PERSON_M2 = {
    "office": 14.0, "commercial": 14.0, "bank": 14.0, "embassy": 14.0, "government": 14.0,
    "retail": 5.6, "shop": 5.6, "mall": 5.6, "supermarket": 5.6,
    "residential": 37.0, "apartments": 37.0, "house": 37.0,
    "hotel": 18.6,
    "school": 10.0, "university": 10.0, "kindergarten": 10.0,
    "hospital": 22.0,
    "attraction": 10.0, "arts_centre": 10.0, "place_of_worship": 5.0, "museum": 10.0,
    "transportation": 10.0,
}
"""Gross floor area per occupant by use. [m2 person-1] Default for other uses: 20."""
DEFAULT_AREA_PER_PERSON_M2 = 20.0

HEIGHT_KEYS = ("height",)
FLOORS_KEYS = ("floors", "Floor", "building:levels", "levels")
USE_KEYS = ("kind_detail", "use", "building", "landuse_kind")


def storeys_from_height(height_m) -> np.ndarray:
    """Storey count for a height [m]: 3.2 m storeys up to 50 m, 4.5 m storeys above (continuous)."""
    h = np.maximum(np.asarray(height_m, dtype=float), 0.0)
    low = np.minimum(h, TALL_BUILDING_M) / STOREY_HEIGHT_M
    high = np.maximum(h - TALL_BUILDING_M, 0.0) / TALL_STOREY_HEIGHT_M
    return np.maximum(1, np.round(low + high)).astype(np.int64)


def height_from_storeys(storeys) -> np.ndarray:
    """Height [m] of a building with the given number of storeys (inverse of `storeys_from_height`)."""
    n = np.asarray(storeys, dtype=float)
    n_low = TALL_BUILDING_M / STOREY_HEIGHT_M
    return np.where(n <= n_low, n * STOREY_HEIGHT_M, TALL_BUILDING_M + (n - n_low) * TALL_STOREY_HEIGHT_M)


def _first_column(df: pd.DataFrame, keys: tuple[str, ...]) -> pd.Series:
    out = pd.Series(np.nan, index=df.index, dtype=object)
    for key in keys:
        if key in df.columns:
            out = out.where(out.notna(), df[key])
    return out


def _numeric(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def _normalise(features: gpd.GeoDataFrame, crs: str) -> gpd.GeoDataFrame:
    """Polygon features in the grid CRS with id, root, kind, name, use, height, min_height."""
    df = features[features.geometry.notna()].to_crs(crs) if features.crs else features.set_crs(
        "EPSG:4326").to_crs(crs)
    df = df[df.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if "kind" in df.columns:
        df = df[df["kind"].isin(["building", "building_part"]) | df["kind"].isna()]
    ids = _first_column(df, ("id", "Id", "osm_id"))
    ids = ids.where(ids.notna(), pd.Series(-(np.arange(len(df)) + 1), index=df.index))
    numeric = pd.to_numeric(ids, errors="coerce")
    if numeric.isna().any():  # text ids such as "way/123": number them, keep the text as source_id
        codes, _ = pd.factorize(ids.astype(str))
        df = df.assign(source_id=ids.astype(str))
        ids = pd.Series(codes + 1, index=df.index)
    if "root_id" in df.columns and "source_id" in df.columns:
        lookup = dict(zip(df["source_id"], ids, strict=True))
        df = df.assign(root_id=df["root_id"].map(lambda r: lookup.get(str(r), np.nan) if pd.notna(r) else np.nan))
    kind = df["kind"].fillna("building") if "kind" in df.columns else pd.Series("building", index=df.index)
    root = _numeric(df["root_id"]) if "root_id" in df.columns else np.full(len(df), np.nan)
    height = _numeric(_first_column(df, HEIGHT_KEYS))
    floors = _numeric(_first_column(df, FLOORS_KEYS))
    use = _first_column(df, USE_KEYS).fillna("unknown").astype(str)
    height = np.where(np.isnan(height) & ~np.isnan(floors), height_from_storeys(floors), height)
    name = _first_column(df, ("name:en", "name")).fillna("").astype(str)
    out = gpd.GeoDataFrame({
        "id": pd.to_numeric(ids, errors="coerce").astype("int64").to_numpy(),
        "kind": kind.to_numpy(),
        "root": np.where(kind.to_numpy() == "building_part", root, np.nan),
        "name": name.to_numpy(), "use": use.to_numpy(),
        "height": height, "floors": floors,
        "min_height": _numeric(df["min_height"]) if "min_height" in df.columns else 0.0,
        "tile": _numeric(df["_tile_index"]) if "_tile_index" in df.columns else np.nan,
    }, geometry=shapely.make_valid(df.geometry.to_numpy()), crs=crs)
    out["min_height"] = out["min_height"].fillna(0.0)
    return out


def _dedupe(df: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """One row per building: pieces of one feature clipped at tile edges are unioned.

    In a tiled source (features carry ``_tile_index``, as the Nextzen tiles do) pieces with
    the same (id, kind) are one building where they touch (within 5 cm). Anywhere else a
    feature is a building as given: repeated ids (some sources give every feature the
    same id) and same-id pieces standing apart get new, negative ids.
    """
    dup = df.duplicated(["id", "kind"], keep=False).to_numpy()
    if not dup.any():
        return df.reset_index(drop=True)
    next_id = int(min(df["id"].min(), 0)) - 1
    if df["tile"].isna().all():
        again = df.duplicated(["id", "kind"], keep="first").to_numpy()
        df = df.copy()
        df.loc[again, "id"] = np.arange(next_id, next_id - again.sum(), -1)
        return df.reset_index(drop=True)
    rows = [df[~dup]]
    for _key, group in df[dup].groupby(["id", "kind"], sort=False):
        geoms = group.geometry.to_numpy()
        clusters = shapely.get_parts(shapely.union_all(shapely.buffer(geoms, 0.05)))
        member = shapely.intersects(clusters[:, None], shapely.point_on_surface(geoms)[None, :])
        for k in range(len(clusters)):
            pieces = np.flatnonzero(member[k])
            if pieces.size == 0:
                continue
            row = group.iloc[[pieces[0]]].copy()
            row["geometry"] = [shapely.union_all(geoms[pieces])]
            if k > 0:
                row["id"], next_id = next_id, next_id - 1
            rows.append(row)
    merged = pd.concat(rows, ignore_index=True)
    return gpd.GeoDataFrame(merged, geometry="geometry", crs=df.crs)


def _tallest_first_pieces(geoms: np.ndarray, heights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split overlapping volumes into non-overlapping pieces; returns the pieces and, for each,
    the index of the (tallest) volume it belongs to."""
    order = np.argsort(-heights, kind="stable")
    pieces, owner, covered = [], [], None
    for i in order:
        g = geoms[i] if covered is None else shapely.difference(geoms[i], covered)
        covered = geoms[i] if covered is None else shapely.union(covered, geoms[i])
        if not shapely.is_empty(g):
            pieces.append(g)
            owner.append(i)
    return np.array(pieces, dtype=object), np.array(owner, dtype=np.int64)


def _occupancy(floor_area: np.ndarray, use: np.ndarray) -> np.ndarray:
    per_person = np.array([FLOOR_AREA_PER_PERSON_M2.get(u, DEFAULT_AREA_PER_PERSON_M2) for u in use])
    return np.round(floor_area / per_person)


@dataclass
class Buildings:
    """The building table and its mapping to grid cells.

    Attributes
    ----------
    table : GeoDataFrame
        One row per building: ``id, name, use, height [m], floors, footprint_area [m2],
        floor_area [m2], occupancy [person]`` and the footprint polygon (grid CRS).
    volumes : GeoDataFrame
        Non-overlapping footprint pieces with the height of the tallest volume above
        each (``building_id, height [m]``); used for per-cell heights.
    cells : DataFrame
        ``building_id, cell, row, col, area [m2]``: where each building stands.
    """

    table: gpd.GeoDataFrame
    volumes: gpd.GeoDataFrame
    cells: pd.DataFrame

    def cells_of(self, building_id: int) -> pd.DataFrame:
        """Cells a building covers, with the covered area [m2]."""
        return self.cells[self.cells["building_id"] == building_id]

    def buildings_in(self, row: int, col: int) -> gpd.GeoDataFrame:
        """Buildings standing (partly) in a cell."""
        ids = self.cells.loc[(self.cells["row"] == row) & (self.cells["col"] == col), "building_id"]
        return self.table[self.table["id"].isin(ids)]


def _group_volumes(df: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, pd.Series]:
    """Group each part with its root building (parts of a root without geometry form its footprint)."""
    part_of = df["kind"].eq("building_part") & df["root"].notna()
    group = np.where(part_of, df["root"], df["id"])
    return df, pd.Series(group.astype(np.int64), index=df.index)


def _fill_heights(df: gpd.GeoDataFrame) -> None:
    missing = np.isnan(df["height"].to_numpy(dtype=float))
    if missing.any():
        df.loc[missing, "height"] = height_from_storeys(DEFAULT_STOREYS)


def _volume_storeys(members: gpd.GeoDataFrame) -> np.ndarray:
    """Storeys of each volume: as given, else from its height above its base (``min_height``)."""
    given = members["floors"].to_numpy(dtype=float)
    top = storeys_from_height(members["height"].to_numpy(dtype=float))
    base = members["min_height"].to_numpy(dtype=float)
    below = np.where(base > 0, storeys_from_height(base), 0)
    return np.where(np.isnan(given), np.maximum(top - below, 1), np.maximum(given, 1)).astype(np.int64)


def _group_floor_area(members: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Volume pieces, their heights, the floor area [m2] and the top storey count of one building.

    Volumes standing on the ground are split tallest-first so each footprint point counts once,
    with the storeys of the tallest volume above it. Floating volumes (``min_height`` > 0, e.g.
    a tower's upper sections) add only the storeys above the ground volumes they stand on.
    """
    storeys = _volume_storeys(members)
    heights = members["height"].to_numpy(dtype=float)
    geoms = members.geometry.to_numpy()
    ground = members["min_height"].to_numpy(dtype=float) <= 0
    g_geoms, g_h, g_st = geoms[ground], heights[ground], storeys[ground]
    if g_geoms.size > 1:
        pieces, owner = _tallest_first_pieces(g_geoms, g_h)
        piece_h, piece_st = g_h[owner], g_st[owner]
    else:
        pieces, piece_h, piece_st = g_geoms, g_h, g_st
    area = float((shapely.area(pieces) * piece_st).sum()) if pieces.size else 0.0
    for geom, h, st in zip(geoms[~ground], heights[~ground], storeys[~ground], strict=True):
        under = g_h[shapely.intersects(g_geoms, geom)] if g_geoms.size else np.zeros(0)
        covered = storeys_from_height(under.max()) if under.size else 0
        area += shapely.area(geom) * max(0, storeys_from_height(h) - covered if covered else st)
    tops = np.concatenate([piece_st, storeys[~ground]]) if (~ground).any() else piece_st
    floating = geoms[~ground]
    return (np.concatenate([pieces, floating]), np.concatenate([piece_h, heights[~ground]]), area,
            int(tops.max()) if tops.size else 1)


def buildings_from_features(features: gpd.GeoDataFrame, grid: GridSpec) -> Buildings:
    """Build the building table from footprint features (OSM/Nextzen or plain polygons).

    Buildings whose footprint lies wholly outside the grid are left out.

    Parameters
    ----------
    features : GeoDataFrame
        Building polygons in any CRS, optionally with ``kind`` (building / building_part),
        ``root_id``, ``height`` [m], ``min_height`` [m], ``floors``/``Floor``, names and use.
    grid : GridSpec
        Grid whose CRS the table is built in and whose cells it maps to.
    """
    df = _dedupe(_normalise(features, grid.crs))
    _fill_heights(df)
    df, group = _group_volumes(df)
    rows, volume_geoms, volume_h, volume_b = [], [], [], []
    for gid, idx in group.groupby(group).groups.items():
        members = df.loc[idx]
        pieces, piece_h, floor_area, floors = _group_floor_area(members)
        root = members[members["id"] == gid].iloc[0] if (members["id"] == gid).any() else members.iloc[0]
        footprint = shapely.union_all(members.geometry.to_numpy())
        if root["use"] in TOWER_KINDS:
            floors = min(floors, TOWER_MAX_STOREYS)
            floor_area = min(floor_area, footprint.area * TOWER_MAX_STOREYS)
        rows.append({"id": int(gid), "name": root["name"], "use": root["use"],
                     "height": float(members["height"].max()), "floors": int(floors),
                     "footprint_area": float(footprint.area), "floor_area": float(floor_area),
                     "geometry": footprint})
        volume_geoms.extend(pieces)
        volume_h.extend(piece_h)
        volume_b.extend([int(gid)] * len(pieces))
    table = gpd.GeoDataFrame(rows, geometry="geometry", crs=grid.crs)
    table = table[shapely.intersects(table.geometry.to_numpy(), shapely.box(*grid.bounds))].reset_index(drop=True)
    table["occupancy"] = _occupancy(table["floor_area"].to_numpy(), table["use"].to_numpy())
    volumes = gpd.GeoDataFrame({"building_id": volume_b, "height": volume_h}, geometry=volume_geoms,
                               crs=grid.crs)
    volumes = volumes[volumes["building_id"].isin(table["id"])].reset_index(drop=True)
    return Buildings(table, volumes, _cell_mapping(table, grid))


def _cell_mapping(table: gpd.GeoDataFrame, grid: GridSpec) -> pd.DataFrame:
    gi, cell, area = overlap_areas(grid, table.geometry.to_numpy())
    row, col = np.divmod(cell, grid.nx)
    return pd.DataFrame({"building_id": table["id"].to_numpy()[gi], "cell": cell, "row": row, "col": col,
                         "area": area})


def floor_area_per_cell(b: Buildings, grid: GridSpec) -> np.ndarray:
    """Floor area of each cell [m2]: each building's floor area shared by footprint overlap."""
    fa = b.table.set_index("id")["floor_area"]
    fp = b.table.set_index("id")["footprint_area"]
    ids = b.cells["building_id"].to_numpy()
    share = b.cells["area"].to_numpy() / np.maximum(fp.reindex(ids).to_numpy(), 1e-9)
    w = share * fa.reindex(ids).to_numpy()
    return np.bincount(b.cells["cell"].to_numpy(), weights=w, minlength=grid.size).reshape(grid.shape)


def max_height_per_cell(b: Buildings, grid: GridSpec, min_share: float = 0.0) -> np.ndarray:
    """Height of the tallest building volume covering at least ``min_share`` of each cell [m]; 0 where none."""
    gi, cell, area = overlap_areas(grid, b.volumes.geometry.to_numpy())
    keep = area >= min_share * grid.cell_area
    gi, cell = gi[keep], cell[keep]
    out = np.zeros(grid.size)
    np.maximum.at(out, cell, b.volumes["height"].to_numpy(dtype=float)[gi])
    return out.reshape(grid.shape)
