"""Which district alerts touch across a district border: the city groups (docs/guides/city-tier.md).

Two district alerts are *linked* when they have the same hazard, come from different districts (partitions) and
their areas lie within ``tolerance_m`` of each other (`DEFAULT_TOLERANCE_M`, one 10 m grid cell; areas projected
to metres, `twin.city.capgeometry`). A city group is a connected component of the links, so every active district
alert is in exactly one group; a lone alert is a group of one. Alerts of one district are never linked directly:
their twin has already decided to keep them apart; they join only through an alert of another district that
links both.

Pure: candidate pairs come from an STR-tree query per hazard (``dwithin``), the components from a union-find.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
import shapely

from twin.city.districtalert import DistrictAlert

DEFAULT_TOLERANCE_M = 10.0
"""Two areas closer than this are linked: one grid cell. [m]"""


def group_alerts(alerts: Iterable[DistrictAlert],
                 tolerance_m: float = DEFAULT_TOLERANCE_M) -> list[list[DistrictAlert]]:
    """The city groups of a set of district alerts: connected components of the links (same hazard, different
    districts, areas within ``tolerance_m`` [m]). Each group is sorted by `DistrictAlert.order`, the groups by
    their first member."""
    alerts = sorted(alerts, key=lambda a: a.order)
    parent = list(range(len(alerts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    by_hazard: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(alerts):
        if not a.area.is_empty:
            by_hazard[a.hazard].append(i)
    for idx in by_hazard.values():
        geoms = np.array([alerts[i].area for i in idx], dtype=object)
        tree = shapely.STRtree(geoms)
        left, right = tree.query(geoms, predicate="dwithin", distance=tolerance_m)
        for a, b in zip(left.tolist(), right.tolist(), strict=True):
            i, j = idx[a], idx[b]
            if i < j and alerts[i].district != alerts[j].district:
                parent[root(j)] = root(i)
    groups: dict[int, list[DistrictAlert]] = defaultdict(list)
    for i, a in enumerate(alerts):
        groups[root(i)].append(a)
    return sorted(groups.values(), key=lambda g: g[0].order)
