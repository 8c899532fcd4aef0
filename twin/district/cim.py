"""CIM layers: the static model of the district on the grid, built from real vector data.

Every coverage is an exact area-weighted intersection (`twin.district.coverage`). The choices
that are assumptions rather than data are constants here, each with its source:

- Carriageway width by OSM road class when a feature carries no ``width`` or ``lanes``
  (3.5 m per lane, CJJ 37-2012 urban lane width [mem]).
- Road classes after GB/T 33171-2016 (expressway, arterial, secondary, branch) and free-flow
  speeds at the middle of the CJJ 37-2012 design-speed ranges (expressway 60-100,
  arterial 40-60, secondary 30-50, branch 20-40 km/h) [mem].
- Runoff coefficients: open water 1.0, sealed surfaces (roofs, carriageway) 0.9, other
  paved ground 0.85, green 0.2 (docs/science/flood.md 2.1: 0.85-0.9 impervious, 0.15-0.3 green [mem]).
- Drainage capacity: the Shanghai 1-year, 60-minute design storm, 36.5 mm/h, which is the
  capacity quoted for the older central-city pipes (docs/science/flood.md 2.2; storm formula of
  DB31/T 1043-2017 [mem]); a polygon file overrides it where pumps or newer 3-5 year
  networks (GB 50014) exist.
- Derived elevation (no fine DEM of Shanghai is available): see `elevation_from_features`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.ops import substring

from models.design_storm import shanghai_storm_intensity
from twin.district.bim import Buildings, buildings_from_features, floor_area_per_cell, max_height_per_cell
from twin.district.coverage import coverage_area, overlap_areas, union_parts
from twin.district.grid import GridSpec
from twin.district.layers import ROAD_CLASSES
from twin.district.sources import DistrictSources

log = logging.getLogger(__name__)

LANE_WIDTH_M = 3.5
ROAD_WIDTH_M = {
    "motorway": 25.0, "trunk": 25.0, "primary": 21.0, "secondary": 14.0, "tertiary": 10.0,
    "residential": 7.0, "unclassified": 6.0, "living_street": 5.0, "service": 4.0,
    "motorway_link": 7.0, "trunk_link": 7.0, "primary_link": 7.0, "secondary_link": 7.0, "tertiary_link": 7.0,
}
"""Carriageway width by OSM highway class when no width or lane count is given. [m]"""

ROAD_CLASS_OF = {
    "motorway": "expressway", "trunk": "expressway", "motorway_link": "expressway", "trunk_link": "expressway",
    "primary": "arterial", "primary_link": "arterial",
    "secondary": "secondary", "secondary_link": "secondary",
    "tertiary": "branch", "tertiary_link": "branch", "residential": "branch", "unclassified": "branch",
    "service": "branch", "living_street": "branch",
}
FREE_FLOW_KMH = {"none": 0.0, "expressway": 80.0, "arterial": 50.0, "secondary": 40.0, "branch": 30.0}
ROAD_CLASS_MIN_SHARE = 0.02
"""A road class marks a cell when its carriageway covers at least this share of the cell."""

RUNOFF_WATER, RUNOFF_SEALED, RUNOFF_PAVED, RUNOFF_GREEN = 1.0, 0.9, 0.85, 0.2
GREEN_KINDS = ("park", "grass", "forest", "garden", "natural_wood", "wood", "meadow", "scrub", "pitch",
               "recreation_ground", "golf_course", "cemetery", "village_green", "nature_reserve")
WATER_KINDS = ("water", "riverbank", "river", "canal", "dock", "basin", "reservoir", "lake", "stream")


DEFAULT_DRAINAGE_MM_H = round(shanghai_storm_intensity(1.0, 60.0), 1)
"""Drainage capacity where no polygon says otherwise: the Shanghai 1-year, 60-minute design storm. [mm h-1]"""

GROUND_M = 4.0
"""Ground level of central Shanghai above the Wusong datum: the city is flat, about 3-5 m [mem]. [m]"""
KERB_M = 0.15
"""Carriageway below the kerb (GB 50014's 15 cm waterlogging limit is the kerb height). [m]"""
RIVER_M = 2.0
"""Water level of the Huangpu at normal tide, the outlet for surface water. [m]"""
WALL_M = 10.0
"""Buildings (footprint share >= 0.5) raised this much so water flows around them. [m]"""
RAMP_LENGTH_M = 80.0
RAMP_SLOPE = 0.06
"""Tunnel and underpass ramps: the first 80 m from a portal, falling 6 % (urban ramp gradients 5-7 %)."""
MAX_RAMP_DEPTH_M = 5.0

VULNERABILITY_BASE = 0.2
VULNERABILITY_OF = {
    "hospital": 1.0, "clinic": 0.9, "school": 0.9, "kindergarten": 1.0, "university": 0.7,
    "subway_entrance": 0.9, "station": 0.8, "ferry_terminal": 0.6, "pedestrian": 0.5, "viewpoint": 0.6,
    "attraction": 0.5, "nursing_home": 1.0, "social_facility": 0.9,
}
"""Vulnerability of what a feature holds, 0-1 (underpasses 1.0; other land 0.2). An operational
scale after the UNDRR/IPCC risk framing (docs/science/risk.md 4): who cannot get out quickly (patients,
children, people underground or in crowds) scores high. [assumption]"""
HEIGHT_MIN_SHARE = 0.05
"""A building volume sets a cell's height when it covers at least this share of the cell."""
POINT_RADIUS_M = 15.0
"""Radius a point feature (POI, metro entrance) is given on the grid. [m]"""


# ---------------------------------------------------------------- helpers
def _projected(df: gpd.GeoDataFrame, grid: GridSpec) -> gpd.GeoDataFrame:
    if df.empty:
        return gpd.GeoDataFrame(df.drop(columns=df.geometry.name), geometry=[], crs=grid.crs)
    return df[df.geometry.notna()].to_crs(grid.crs)


def _col(df: pd.DataFrame, name: str, default=None) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(default, index=df.index, dtype=object)


def _truthy(series: pd.Series) -> np.ndarray:
    return series.map(lambda v: v in (True, 1, "yes", "true", "True", "1")).to_numpy(dtype=bool)


def _polygons(df: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    return df[df.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]


# ---------------------------------------------------------------- roads
def motor_roads(roads: gpd.GeoDataFrame, grid: GridSpec) -> gpd.GeoDataFrame:
    """Centre lines of roads for motor traffic in the grid CRS, with ``highway`` and ``tunnel``.

    Paths, rail and ferries are left out.
    """
    df = _projected(roads, grid)
    df = df[df.geometry.geom_type.isin(["LineString", "MultiLineString"])]
    highway = _col(df, "kind_detail").fillna(_col(df, "highway")).astype(str)
    keep = highway.isin(list(ROAD_CLASS_OF)).to_numpy()
    tunnel = _truthy(_col(df, "is_tunnel", False)) | _truthy(_col(df, "tunnel", False))
    return df[keep].assign(highway=highway[keep].to_numpy(), tunnel=tunnel[keep])


def road_features(roads: gpd.GeoDataFrame, grid: GridSpec) -> gpd.GeoDataFrame:
    """Surface carriageway polygons with their class: ``highway, road_class, width, geometry``.

    ``roads`` comes from `motor_roads`. Tunnels are underground and left out (their portals
    become underpasses, see `underpass_ramps`).
    """
    df = roads[~roads["tunnel"].to_numpy(dtype=bool)]
    highway = df["highway"]
    width = pd.to_numeric(_col(df, "width"), errors="coerce")
    lanes = pd.to_numeric(_col(df, "lanes"), errors="coerce")
    width = width.fillna(lanes * LANE_WIDTH_M).fillna(highway.map(ROAD_WIDTH_M)).to_numpy(dtype=float)
    polys = shapely.buffer(df.geometry.to_numpy(), width / 2.0, cap_style="flat")
    return gpd.GeoDataFrame({"highway": highway.to_numpy(), "road_class": highway.map(ROAD_CLASS_OF).to_numpy(),
                             "width": width}, geometry=polys, crs=grid.crs)


def road_class_layer(carriageway: gpd.GeoDataFrame, grid: GridSpec) -> np.ndarray:
    """Highest road class with a real share of each cell, as `ROAD_CLASSES` codes (int8)."""
    out = np.zeros(grid.size, dtype=np.int8)
    code = carriageway["road_class"].map({c: i for i, c in enumerate(ROAD_CLASSES)}).to_numpy()
    for c in sorted(set(code), reverse=True):  # branch first, expressway last wins
        area = coverage_area(grid, carriageway.geometry.to_numpy()[code == c]).ravel()
        out[area >= ROAD_CLASS_MIN_SHARE * grid.cell_area] = c
    return out.reshape(grid.shape)


# ---------------------------------------------------------------- water, land use
def water_polygons(water: gpd.GeoDataFrame, grid: GridSpec) -> np.ndarray:
    """Open-water polygons (river, canal, basin; not pools or fountains) in the grid CRS."""
    df = _polygons(_projected(water, grid))
    kind = _col(df, "kind").fillna(_col(df, "natural")).fillna("water").astype(str)
    return df.geometry.to_numpy()[kind.isin(WATER_KINDS).to_numpy()]


def green_polygons(landuse: gpd.GeoDataFrame, grid: GridSpec) -> np.ndarray:
    """Pervious green land-use polygons in the grid CRS."""
    df = _polygons(_projected(landuse, grid))
    kind = _col(df, "kind").fillna(_col(df, "landuse")).fillna("").astype(str)
    return df.geometry.to_numpy()[kind.isin(GREEN_KINDS).to_numpy()]


def runoff_coefficient(water_f, obstacle_f, green_open_f) -> np.ndarray:
    """Area-weighted runoff coefficient of each cell. [1]

    ``obstacle_f`` is the share under water, buildings or carriageway; ``green_open_f`` the
    share of green land outside them; the rest is paved open ground.
    """
    sealed = np.clip(obstacle_f - water_f, 0.0, 1.0)
    paved = np.clip(1.0 - obstacle_f - green_open_f, 0.0, 1.0)
    return water_f * RUNOFF_WATER + sealed * RUNOFF_SEALED + green_open_f * RUNOFF_GREEN + paved * RUNOFF_PAVED


# ---------------------------------------------------------------- underpasses
def tunnel_lines(roads: gpd.GeoDataFrame) -> np.ndarray:
    """Road tunnels of `motor_roads` merged into continuous lines."""
    lines = roads.geometry.to_numpy()[roads["tunnel"].to_numpy(dtype=bool)]
    if lines.size == 0:
        return lines
    return shapely.get_parts(shapely.line_merge(shapely.union_all(lines)))


PORTAL_SNAP_M = 3.0
"""A tunnel end within this distance of a surface road is a portal. [m]"""


def surface_roads(roads: gpd.GeoDataFrame) -> shapely.Geometry:
    """All surface (non-tunnel) centre lines of `motor_roads` as one geometry."""
    return shapely.union_all(roads.geometry.to_numpy()[~roads["tunnel"].to_numpy(dtype=bool)])


def underpass_ramps(tunnels: np.ndarray, grid: GridSpec, surface: shapely.Geometry | None = None,
                    width_m: float = 12.0) -> tuple[np.ndarray, list]:
    """Ramp polygons at each tunnel portal inside the grid, and the portal point of each.

    A portal is a tunnel end where the tunnel meets a surface road (within `PORTAL_SNAP_M`);
    ends under the river or at the edge of the data are not portals.
    """
    xmin, ymin, xmax, ymax = grid.bounds
    inner = shapely.box(xmin + 1, ymin + 1, xmax - 1, ymax - 1)
    if surface is not None:
        shapely.prepare(surface)
    ramps, portals = [], []
    for line in tunnels:
        length = line.length
        for start, portal in ((0.0, line.coords[0]), (length, line.coords[-1])):
            point = shapely.Point(portal)
            if not inner.contains(point):
                continue  # the tunnel leaves the district here: not a portal we can see
            if surface is not None and not shapely.dwithin(surface, point, PORTAL_SNAP_M):
                continue
            a, b = (0.0, min(RAMP_LENGTH_M, length)) if start == 0 else (max(0.0, length - RAMP_LENGTH_M), length)
            ramps.append(shapely.buffer(substring(line, a, b), width_m / 2, cap_style="flat"))
            portals.append(point)
    return np.array(ramps, dtype=object), portals


def ramp_depth(grid: GridSpec, ramps: np.ndarray, portals: list) -> np.ndarray:
    """Depth below ground of each cell's ramp floor [m]; 0 outside ramps.

    Depth grows with the distance of the cell centre from its portal (``RAMP_SLOPE``),
    so water running into an underpass collects at its lowest point.
    """
    out = np.zeros(grid.size)
    if len(ramps) == 0:
        return out.reshape(grid.shape)
    gi, cell, area = overlap_areas(grid, ramps)
    keep = area >= 0.2 * grid.cell_area
    gi, cell = gi[keep], cell[keep]
    row, col = np.divmod(cell, grid.nx)
    centres = shapely.points(grid.x[col], grid.y[row])
    px = np.array([p.x for p in portals])[gi]
    py = np.array([p.y for p in portals])[gi]
    dist = np.hypot(shapely.get_x(centres) - px, shapely.get_y(centres) - py)
    depth = np.minimum(np.maximum(0.5, RAMP_SLOPE * dist), MAX_RAMP_DEPTH_M)
    np.maximum.at(out, cell, depth)
    return out.reshape(grid.shape)


# ---------------------------------------------------------------- vulnerability
def vulnerable_features(sources: DistrictSources, grid: GridSpec) -> tuple[np.ndarray, np.ndarray]:
    """Polygons (points buffered by `POINT_RADIUS_M`) of vulnerable places and their scores."""
    geoms, scores = [], []
    for name in ("pois", "transit", "landuse"):
        df = _projected(sources.layer(name), grid)
        if df.empty:
            continue
        df = df.explode(index_parts=False)
        kind = _col(df, "kind").fillna(_col(df, "amenity")).fillna("").astype(str)
        score = kind.map(VULNERABILITY_OF).to_numpy(dtype=float)
        keep = ~np.isnan(score) & df.geometry.geom_type.isin(["Point", "Polygon", "MultiPolygon"]).to_numpy()
        g = df.geometry.to_numpy()[keep]
        g = np.where(shapely.get_type_id(g) == 0, shapely.buffer(g, POINT_RADIUS_M), g)
        geoms.append(g)
        scores.append(score[keep])
    if not geoms:
        return np.zeros(0, dtype=object), np.zeros(0)
    return np.concatenate(geoms), np.concatenate(scores)


def vulnerability_layer(grid: GridSpec, geoms, scores, water_f, underpass) -> np.ndarray:
    """Per-cell vulnerability in [0, 1]: the most vulnerable thing in the cell. [1]"""
    out = np.full(grid.size, VULNERABILITY_BASE)
    if len(geoms):
        gi, cell, _ = overlap_areas(grid, np.asarray(geoms, dtype=object))
        np.maximum.at(out, cell, np.asarray(scores)[gi])
    out = out.reshape(grid.shape)
    out[underpass > 0] = 1.0
    out[(water_f >= 0.5) & (underpass == 0)] = 0.0
    return out


# ---------------------------------------------------------------- elevation
def elevation_from_features(road_f, ramp_depth_m, building_f, water_f) -> np.ndarray:
    """Ground elevation derived from the features, for a district without a DEM. [m]

    Flat ground at `GROUND_M`; carriageway `KERB_M` lower (area-weighted by its share of the
    cell); underpass and tunnel ramps down to their floor; open water (share >= 0.5) at
    `RIVER_M`, the outlet; buildings (share >= 0.5) raised `WALL_M` as walls. The Bund flood
    wall is not modelled: the river takes surface water freely.
    """
    z = GROUND_M - KERB_M * road_f - ramp_depth_m
    z = np.where(building_f >= 0.5, GROUND_M + WALL_M, z)
    return np.where(water_f >= 0.5, RIVER_M, z)


def drainage_layer(grid: GridSpec, drainage: gpd.GeoDataFrame | None) -> np.ndarray:
    """Drainage capacity [mm h-1]: the default, area-weighted with any override polygons.

    Where override polygons overlap, the later one in the file wins (no capacities are added).
    """
    out = np.full(grid.size, DEFAULT_DRAINAGE_MM_H)
    if drainage is None or drainage.empty:
        return out.reshape(grid.shape)
    df = _polygons(_projected(drainage, grid))
    cap = pd.to_numeric(df["drainage_capacity"], errors="coerce").to_numpy(dtype=float)
    if np.isnan(cap).any() or (cap < 0).any():
        raise ValueError("drainage_capacity must be a non-negative number (mm/h) on every polygon")
    geoms = shapely.make_valid(df.geometry.to_numpy())
    exclusive, later = [], None
    for g in geoms[::-1]:  # the last polygon keeps all of itself, earlier ones what is left
        exclusive.append(g if later is None else shapely.difference(g, later))
        later = g if later is None else shapely.union(later, g)
    exclusive = np.array(exclusive[::-1], dtype=object)
    gi, cell, area = overlap_areas(grid, exclusive)
    share = np.minimum(np.bincount(cell, weights=area, minlength=grid.size) / grid.cell_area, 1.0)
    weighted = np.bincount(cell, weights=area * cap[gi], minlength=grid.size) / grid.cell_area
    return (out * (1.0 - share) + weighted).reshape(grid.shape)


# ---------------------------------------------------------------- the whole set
Progress = Callable[[str], None]


def build_layers(sources: DistrictSources, grid: GridSpec, progress: Progress | None = None,
                 ) -> tuple[dict[str, np.ndarray], Buildings, dict[str, str]]:
    """All static CIM layers of a district on a grid.

    Returns the layer arrays by name (shape (ny, nx)), the building table, and notes on
    how derived layers were made (for their attrs).
    """
    step = progress or (lambda _msg: None)
    A = grid.cell_area
    step("buildings")
    bld = buildings_from_features(sources.buildings, grid)
    bld_parts = union_parts(grid, bld.table.geometry.to_numpy())
    building_f = coverage_area(grid, bld_parts) / A
    step("roads")
    roads = motor_roads(sources.layer("roads"), grid)
    carriageway = road_features(roads, grid)
    road_parts = union_parts(grid, carriageway.geometry.to_numpy())
    road_f = coverage_area(grid, road_parts) / A
    road_class = road_class_layer(carriageway, grid)
    step("water and land use")
    water_parts = union_parts(grid, water_polygons(sources.layer("water"), grid))
    water_f = coverage_area(grid, water_parts) / A
    obstacles = union_parts(grid, np.concatenate([bld_parts, road_parts, water_parts]))
    obstacle_f = coverage_area(grid, obstacles) / A
    green = union_parts(grid, green_polygons(sources.layer("landuse"), grid))
    green_open = shapely.difference(shapely.union_all(green), shapely.union_all(obstacles)) if green.size else None
    green_open_f = coverage_area(grid, [green_open]) / A if green_open is not None else np.zeros(grid.shape)
    step("underpasses and vulnerability")
    ramps, portals = underpass_ramps(tunnel_lines(roads), grid, surface_roads(roads))
    depth = ramp_depth(grid, ramps, portals)
    depth = np.where((building_f < 0.5) & (water_f < 0.5), depth, 0.0)
    underpass = (depth > 0).astype(np.int8)
    vgeoms, vscores = vulnerable_features(sources, grid)
    step("elevation and drainage")
    notes = {}
    if sources.dem is not None:
        from twin.district.dem import sample_dem
        ground = sample_dem(sources.dem, grid, sources.dem_crs)
        elevation = np.where(building_f >= 0.5, ground + WALL_M, ground)
        elevation = np.where(water_f >= 0.5, np.minimum(ground, RIVER_M), elevation)
        notes["elevation"] = f"DEM {sources.dem.name} sampled bilinearly at cell centres; buildings raised " \
                             f"{WALL_M} m as walls; open water capped at {RIVER_M} m"
    else:
        elevation = elevation_from_features(road_f, depth, building_f, water_f)
        notes["elevation"] = (f"derived from features, no DEM: ground {GROUND_M} m, carriageway {KERB_M} m below "
                              f"kerb, underpass ramps falling {RAMP_SLOPE:.0%} from portals to at most "
                              f"{MAX_RAMP_DEPTH_M} m, open water at {RIVER_M} m (outlet), buildings raised "
                              f"{WALL_M} m as walls")
    layers = {
        "elevation": elevation,
        "building_fraction": building_f,
        "building_height": max_height_per_cell(bld, grid, HEIGHT_MIN_SHARE),
        "floor_area": floor_area_per_cell(bld, grid),
        "walkable_area": np.clip(1.0 - obstacle_f, 0.0, 1.0) * A,
        "road_fraction": road_f,
        "road_class": road_class,
        "free_flow_speed": np.array([FREE_FLOW_KMH[c] for c in ROAD_CLASSES])[road_class],
        "water_mask": (water_f >= 0.5).astype(np.int8),
        "water_fraction": water_f,
        "drainage_capacity": drainage_layer(grid, sources.drainage),
        "runoff_coefficient": runoff_coefficient(water_f, obstacle_f, green_open_f),
        "vulnerability": vulnerability_layer(grid, vgeoms, vscores, water_f, underpass),
        "underpass": underpass,
    }
    notes["drainage_capacity"] = (f"default {DEFAULT_DRAINAGE_MM_H} mm/h (Shanghai 1-yr 60-min design storm)"
                                  + ("; overridden by polygons" if sources.drainage is not None else ""))
    notes["building_height"] = ("height of the tallest building volume covering at least "
                                f"{HEIGHT_MIN_SHARE:.0%} of the cell")
    notes["floor_area"] = "each building's floor area shared among cells by footprint overlap"
    return layers, bld, notes
