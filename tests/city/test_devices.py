"""Which district twin holds each device: sensors by position, movers everywhere."""

from __future__ import annotations

import shapely

from twin.city.areas import square
from twin.city.devices import NEAR_M, assign

WEST = square((121.40, 31.20), (1000.0, 1000.0))
EAST = square((121.40 + 1000.0 / 95_000, 31.20), (1000.0, 1000.0))
"""Two 1 km squares side by side (about 95 km per degree of longitude at 31.2 N: they touch or nearly)."""
DEG_PER_M = 1.0 / 95_000


def _point(dev: str, kind: str, lon: float, lat: float) -> dict:
    return {"type": "Feature", "properties": {"id": dev, "kind": kind},
            "geometry": {"type": "Point", "coordinates": [lon, lat]}}


def test_sensors_by_position_movers_everywhere():
    west_edge = WEST.bounds[0]
    crowd = shapely.box(121.40 + 300 * DEG_PER_M, 31.1999, 121.40 + 900 * DEG_PER_M, 31.2001)  # mostly in EAST
    features = [
        _point("rain-1", "rain", 121.40, 31.20),
        _point("loop-1", "traffic", west_edge - 0.5 * NEAR_M * DEG_PER_M, 31.20),  # just outside: nearest
        _point("water-1", "water", west_edge - 5 * NEAR_M * DEG_PER_M, 31.20),     # far outside: no twin
        {"type": "Feature", "properties": {"id": "crowd-1", "kind": "crowd"},
         "geometry": shapely.geometry.mapping(crowd)},
        _point("unit-1", "unit", 121.40 + 1000 * DEG_PER_M, 31.20),
        {"type": "Feature", "properties": {"id": "veh-1", "kind": "vehicle"}, "geometry": None},
    ]
    out = assign(features, {"A": WEST, "B": EAST})
    assert out.home == {"rain-1": "A", "loop-1": "A", "crowd-1": "B", "unit-1": "B"}
    assert out.unplaced == {"water-1": f"more than {NEAR_M:g} m from every district twin of the city"}
    assert out.movers == ["unit-1", "veh-1"]
    assert out.sensors_of("A") == ["rain-1", "loop-1"] and out.sensors_of("B") == ["crowd-1"]
