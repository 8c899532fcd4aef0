"""Dispatch suggestions: the nearest free units of the right duty for a case, by road travel time where the district
has a road network, else by a straight-line estimate.

`suggest` ranks the free units (not assigned to an open case) whose unit type is on duty for the case's category by
their estimated time of arrival [s]: the road travel time from `road_travel` when it finds a path, else the
straight-line distance times `DETOUR_FACTOR` at the unit type's speed (`UNIT_SPEED_KMH`). Busy units are never
suggested. Positions are CGCS2000 lon/lat [deg]; distances are in the twin's projected CRS [m].
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import networkx as nx
import numpy as np
from scipy.spatial import cKDTree

from twin.cases.model import CasePlace
from twin.district.geo import to_projected

UNIT_SPEED_KMH = {"police": 20.0, "fire": 30.0, "medical": 30.0}
"""Mean speed of a unit type through the district for a straight-line ETA [km/h] [design: emergency vehicles in
central Shanghai traffic; a police patrol often on foot or bicycle in pedestrian areas]."""
DEFAULT_SPEED_KMH = 15.0
"""Speed of any other unit type [km/h] [design]."""
DETOUR_FACTOR = 1.3
"""Road distance over straight-line distance for a straight-line ETA [design: the usual circuity of a dense city
grid is 1.2-1.4]."""
ACCESS_SPEED_KMH = DEFAULT_SPEED_KMH
"""Speed from a point to the nearest network node and from the last node to the target [km/h] [design]."""
MAX_SNAP_M = 500.0
"""A point farther than this from every network node is off the network: no road travel time [m] [design]."""

Travel = Callable[[float, float, float, float], float | None]
"""travel(lon0, lat0, lon1, lat1) -> seconds from the first point to the second, or None (no path)."""


@dataclass(frozen=True)
class UnitView:
    """A field unit as dispatch sees it: its registry type, last position [deg, CGCS2000], and whether it is
    assigned to an open case."""

    id: str
    unit_type: str
    lon: float
    lat: float
    busy: bool = False


@dataclass(frozen=True)
class Suggestion:
    """One suggested unit: ETA [s], straight-line distance [m], and how the ETA was made (``road`` or
    ``straight``)."""

    unit: str
    unit_type: str
    eta_s: float
    distance_m: float
    by: str

    def as_dict(self) -> dict:
        """Plain values."""
        return {"unit": self.unit, "unit_type": self.unit_type, "eta_s": self.eta_s, "distance_m": self.distance_m,
                "by": self.by}


def straight_eta_s(distance_m: float, unit_type: str) -> float:
    """Straight-line ETA [s]: `DETOUR_FACTOR` times ``distance_m`` [m] at the unit type's speed."""
    return DETOUR_FACTOR * distance_m / (UNIT_SPEED_KMH.get(unit_type, DEFAULT_SPEED_KMH) / 3.6)


def suggest(place: CasePlace, duty: tuple[str, ...], units: list[UnitView], travel: Travel | None = None,
            limit: int = 3) -> list[Suggestion]:
    """Up to ``limit`` free units whose type is in ``duty``, soonest first (ties: nearer, then by id)."""
    free = [u for u in units if u.unit_type in duty and not u.busy and math.isfinite(u.lon) and math.isfinite(u.lat)]
    if not free:
        return []
    x, y = to_projected(np.array([place.lon, *(u.lon for u in free)]), np.array([place.lat, *(u.lat for u in free)]))
    dist = np.hypot(np.asarray(x[1:]) - x[0], np.asarray(y[1:]) - y[0])
    out = []
    for u, d in zip(free, dist.tolist(), strict=True):
        road = travel(u.lon, u.lat, place.lon, place.lat) if travel is not None else None
        if road is not None and math.isfinite(road):
            out.append(Suggestion(u.id, u.unit_type, float(road), d, "road"))
        else:
            out.append(Suggestion(u.id, u.unit_type, straight_eta_s(d, u.unit_type), d, "straight"))
    out.sort(key=lambda s: (s.eta_s, s.distance_m, s.unit))
    return out[: max(int(limit), 0)]


def road_travel(network) -> Travel:
    """Road travel time over a `twin.district.roads.RoadNetwork`: the shortest path by free-flow time
    (``length_m`` / ``free_flow_kmh`` of each link) between the network nodes nearest the two points, plus the
    straight legs to and from them at `ACCESS_SPEED_KMH`; None when there is no path or a point is more than
    `MAX_SNAP_M` from every node."""
    graph = network.graph()
    speed = dict(zip(network.links["link_id"].astype(int), network.links["free_flow_kmh"].astype(float),
                     strict=True))
    for _u, _v, key, attrs in graph.edges(keys=True, data=True):
        attrs["time_s"] = attrs["length_m"] / (max(speed.get(int(key), DEFAULT_SPEED_KMH), 1.0) / 3.6)
    ids = network.nodes["node_id"].to_numpy()
    xy = np.column_stack([network.nodes.geometry.x.to_numpy(), network.nodes.geometry.y.to_numpy()])
    if not len(ids):
        return lambda lon0, lat0, lon1, lat1: None
    tree, crs, reverse = cKDTree(xy), network.crs.to_string(), graph.reverse(copy=False)

    @functools.lru_cache(maxsize=256)
    def times_to(target: int) -> dict:
        return nx.single_source_dijkstra_path_length(reverse, target, weight="time_s")

    def snap(lon: float, lat: float) -> tuple[int, float] | None:
        px, py = to_projected(lon, lat, crs)
        d, k = tree.query([px, py])
        return (int(ids[k]), float(d)) if d <= MAX_SNAP_M else None

    def travel(lon0: float, lat0: float, lon1: float, lat1: float) -> float | None:
        start, end = snap(lon0, lat0), snap(lon1, lat1)
        if start is None or end is None:
            return None
        seconds = times_to(end[0]).get(start[0])
        if seconds is None:
            return None
        return float(seconds) + (start[1] + end[1]) / (ACCESS_SPEED_KMH / 3.6)

    return travel
