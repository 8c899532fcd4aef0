"""A bare twin around a road network: the grid's neutral CIM layers, road classes and speeds from the links.

For a district known only by its roads (an OSM drive network, `twin.district.roads.links_from_osm`), e.g. a traffic
study or a truth case: no buildings and no water, flat ground at `twin.district.cim.GROUND_M`, every cell walkable,
default drainage, and per cell the road class and free-flow speed of the highest class of link crossing it and the
share of the cell its carriageways cover (lanes x 3.5 m). The flood and crowd models run on it, neutrally; the
traffic is on the links.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from twin.district.cim import DEFAULT_DRAINAGE_MM_H, FREE_FLOW_KMH, GROUND_M
from twin.district.dataset import make_dataset
from twin.district.grid import GridSpec
from twin.district.layers import ROAD_CLASSES

LANE_WIDTH_M = 3.5
"""Width of a lane for the carriageway share of a cell [m] (CJJ 37-2012 [mem]; as `twin.alerting.segments`)."""
RUNOFF_SEALED = 0.9
"""Runoff coefficient of the bare twin's ground: sealed urban ground [1]."""


def bare_layers(grid: GridSpec, network) -> dict[str, np.ndarray]:
    """The static CIM layers (`twin.district.cim.build_layers`' names) of a bare twin on ``grid`` around the links of
    ``network`` (`twin.district.roads.RoadNetwork` cut on that grid): see the module docstring."""
    n = grid.size
    codes = {c: i for i, c in enumerate(ROAD_CLASSES)}
    link_code = network.links["road_class"].map(codes).fillna(0).to_numpy(np.int64)
    rank = np.where(link_code > 0, 10 - link_code, 0)  # expressway (1) outranks branch (4)
    best = np.zeros(n, np.int64)
    np.maximum.at(best, network.cell_index, rank[network.cell_link])
    road_class = np.where(best > 0, 10 - best, 0).astype(np.int8)
    area = np.zeros(n)
    lanes = network.links["lanes"].to_numpy(float)
    np.add.at(area, network.cell_index, network.cell_length_m * lanes[network.cell_link] * LANE_WIDTH_M)
    shape = grid.shape
    zeros = np.zeros(shape)
    return {
        "elevation": np.full(shape, GROUND_M),
        "building_fraction": zeros,
        "building_height": zeros,
        "floor_area": zeros,
        "walkable_area": np.full(shape, grid.cell_area),
        "road_fraction": np.minimum(area / grid.cell_area, 1.0).reshape(shape),
        "road_class": road_class.reshape(shape),
        "free_flow_speed": np.array([FREE_FLOW_KMH[c] for c in ROAD_CLASSES])[road_class].reshape(shape),
        "water_mask": np.zeros(shape, np.int8),
        "water_fraction": zeros,
        "drainage_capacity": np.full(shape, DEFAULT_DRAINAGE_MM_H),
        "runoff_coefficient": np.full(shape, RUNOFF_SEALED),
        "vulnerability": zeros,
        "underpass": np.zeros(shape, np.int8),
    }


def bare_twin(grid: GridSpec, network, *, source: str, district: str, credit: str, license: str) -> xr.Dataset:
    """The bare twin's dataset (`twin.district.dataset.make_dataset` with `bare_layers`), with its provenance."""
    return make_dataset(grid, bare_layers(grid, network), source=source, district=district, credit=credit,
                        license=license)


__all__ = ["bare_layers", "bare_twin"]
