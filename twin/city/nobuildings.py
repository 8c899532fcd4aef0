"""The twin of a district area that holds no building, e.g. Yangpu's 0.18 km2 sliver of the bundled Bund.

`twin.district.build.twin_from_sources` refuses sources without buildings (its check against a wrong ``--bbox``),
and `twin.district.bim.buildings_from_features` cannot make an empty building table. Until both accept an area
without buildings, this module builds the same layers as `twin.district.cim.build_layers` with every building term
zero, from cim's own public steps (roads, water, green land, underpasses, vulnerability, derived elevation,
drainage), and an empty building table. Nothing here differs from `build_layers` but the absent buildings (and a
DEM, which is not read: no district folder cut from a bundled one has one).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr

from twin.district import cim
from twin.district.bim import Buildings
from twin.district.coverage import coverage_area, union_parts
from twin.district.dataset import make_dataset
from twin.district.grid import GridSpec
from twin.district.layers import ROAD_CLASSES
from twin.district.sources import DistrictSources

TABLE_COLUMNS = ("id", "name", "use", "height", "floors", "footprint_area", "floor_area", "occupancy")


def empty_buildings(grid: GridSpec) -> Buildings:
    """A building table with no rows (the columns of `twin.district.bim.Buildings`)."""
    table = gpd.GeoDataFrame({c: pd.Series(dtype="int64" if c in ("id", "floors") else "float64")
                              for c in TABLE_COLUMNS}, geometry=[], crs=grid.crs)
    table["name"] = table["name"].astype(object)
    table["use"] = table["use"].astype(object)
    volumes = gpd.GeoDataFrame({"building_id": pd.Series(dtype="int64"), "height": pd.Series(dtype="float64")},
                               geometry=[], crs=grid.crs)
    cells = pd.DataFrame({c: pd.Series(dtype="int64") for c in ("building_id", "cell", "row", "col")}
                         | {"area": pd.Series(dtype="float64")})
    return Buildings(table, volumes, cells)


def layers_without_buildings(sources: DistrictSources, grid: GridSpec) -> dict[str, np.ndarray]:
    """`twin.district.cim.build_layers`' layers with no building (no DEM, default drainage unless given)."""
    A = grid.cell_area
    roads = cim.motor_roads(sources.layer("roads"), grid)
    carriageway = cim.road_features(roads, grid)
    road_parts = union_parts(grid, carriageway.geometry.to_numpy())
    road_f = coverage_area(grid, road_parts) / A
    road_class = cim.road_class_layer(carriageway, grid)
    water_parts = union_parts(grid, cim.water_polygons(sources.layer("water"), grid))
    water_f = coverage_area(grid, water_parts) / A
    obstacles = union_parts(grid, np.concatenate([road_parts, water_parts]))
    obstacle_f = coverage_area(grid, obstacles) / A
    green = union_parts(grid, cim.green_polygons(sources.layer("landuse"), grid))
    green_open = shapely.difference(shapely.union_all(green), shapely.union_all(obstacles)) if green.size else None
    green_open_f = coverage_area(grid, [green_open]) / A if green_open is not None else np.zeros(grid.shape)
    ramps, portals = cim.underpass_ramps(cim.tunnel_lines(roads), grid, cim.surface_roads(roads))
    depth = np.where(water_f < 0.5, cim.ramp_depth(grid, ramps, portals), 0.0)
    underpass = (depth > 0).astype(np.int8)
    vgeoms, vscores = cim.vulnerable_features(sources, grid)
    zeros = np.zeros(grid.shape)
    return {
        "elevation": cim.elevation_from_features(road_f, depth, zeros, water_f),
        "building_fraction": zeros, "building_height": zeros, "floor_area": zeros,
        "walkable_area": np.clip(1.0 - obstacle_f, 0.0, 1.0) * A,
        "road_fraction": road_f, "road_class": road_class,
        "free_flow_speed": np.array([cim.FREE_FLOW_KMH[c] for c in ROAD_CLASSES])[road_class],
        "water_mask": (water_f >= 0.5).astype(np.int8), "water_fraction": water_f,
        "drainage_capacity": cim.drainage_layer(grid, sources.drainage),
        "runoff_coefficient": cim.runoff_coefficient(water_f, obstacle_f, green_open_f),
        "vulnerability": cim.vulnerability_layer(grid, vgeoms, vscores, water_f, underpass),
        "underpass": underpass,
    }


def twin_without_buildings(sources: DistrictSources, grid: GridSpec, name: str) -> tuple[xr.Dataset, Buildings]:
    """The twin dataset and its (empty) building table, attributes as `twin_from_sources` gives them."""
    credit = sources.credit()
    ds = make_dataset(grid, layers_without_buildings(sources, grid),
                      {"building_fraction": "no building in the district's area"},
                      source=f"district folder {sources.folder.name}", district=name,
                      **({"credit": credit} if credit else {}), **({"license": "ODbL-1.0"} if "ODbL" in credit else {}))
    return ds, empty_buildings(grid)
