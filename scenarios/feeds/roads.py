"""Drivable road graph of a district from its OSM/Nextzen road lines (``data/bund/roads.geojson``).

Nodes are line end points and vertices shared by several lines (snapped to ``SNAP_M`` in EPSG:4549, which
also joins lines cut at tile edges); edges are the polylines between them, with length [m], OSM class
(``kind_detail``), English name and a free speed by class. One-way tags are ignored (vehicles drive both
ways); only the largest connected component is kept so no vehicle gets stuck.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from twin.district.cim import FREE_FLOW_KMH, ROAD_CLASS_OF
from twin.district.geo import to_lonlat, to_projected

DRIVABLE = frozenset({"major_road", "minor_road"})
SPEED_KMH = {kind: FREE_FLOW_KMH[road_class] for kind, road_class in ROAD_CLASS_OF.items()}
"""Free speed by OSM class [km h-1]: the twin's own free-flow speed of the class (`twin.district.cim`), so the
simulated traffic and the twin's congestion levels agree on what free flow is."""
DEFAULT_SPEED_KMH = FREE_FLOW_KMH["branch"]
EXCLUDED_DETAIL = frozenset({"pedestrian", "footway", "path", "cycleway", "steps", "track", "busway"})
SNAP_M = 1.0
"""Vertices closer than this are one node [m]."""


@dataclass
class Edge:
    """One road between two nodes; ``x, y`` its vertices in EPSG:4549 [m], ``cum`` cumulative length [m]."""

    u: int
    v: int
    x: np.ndarray
    y: np.ndarray
    cum: np.ndarray
    kind_detail: str
    name: str
    tunnel: bool

    @property
    def length(self) -> float:
        """Length along the line. [m]"""
        return float(self.cum[-1])

    @property
    def speed_kmh(self) -> float:
        """Free speed by class. [km h-1]"""
        return SPEED_KMH.get(self.kind_detail, DEFAULT_SPEED_KMH)

    def point(self, s: float, forward: bool = True) -> tuple[float, float, float]:
        """(x, y, heading) at distance ``s`` from the start (from ``v`` if not ``forward``); heading is
        the grid bearing, clockwise from grid north [degree]."""
        s = min(max(s, 0.0), self.length)
        if not forward:
            s = self.length - s
        i = int(np.searchsorted(self.cum, s, side="right")) - 1
        i = min(max(i, 0), len(self.x) - 2)
        seg = self.cum[i + 1] - self.cum[i]
        f = 0.0 if seg <= 0 else (s - self.cum[i]) / seg
        x = self.x[i] + f * (self.x[i + 1] - self.x[i])
        y = self.y[i] + f * (self.y[i + 1] - self.y[i])
        dx, dy = self.x[i + 1] - self.x[i], self.y[i + 1] - self.y[i]
        if not forward:
            dx, dy = -dx, -dy
        return float(x), float(y), math.degrees(math.atan2(dx, dy)) % 360.0


@dataclass
class RoadGraph:
    """Nodes (``node_xy`` [m]) and edges; ``adjacent[n]`` lists the edge indices at node ``n``."""

    node_xy: np.ndarray
    edges: list[Edge]
    adjacent: list[list[int]] = field(default_factory=list)

    def names(self) -> set[str]:
        """English road names present."""
        return {e.name for e in self.edges if e.name}

    def lines_lonlat(self) -> list[list[tuple[float, float]]]:
        """Edge polylines in WGS84 lon/lat (for tests and maps)."""
        out = []
        for e in self.edges:
            lon, lat = to_lonlat(e.x, e.y)
            out.append(list(zip(np.atleast_1d(lon).tolist(), np.atleast_1d(lat).tolist(), strict=True)))
        return out


def _lines(doc: dict) -> list[tuple[list, dict]]:
    out = []
    for feat in doc.get("features", []):
        props, geom = feat.get("properties") or {}, feat.get("geometry") or {}
        if props.get("kind") not in DRIVABLE or props.get("kind_detail") in EXCLUDED_DETAIL:
            continue
        if geom.get("type") == "LineString":
            out.append((geom["coordinates"], props))
        elif geom.get("type") == "MultiLineString":
            out += [(part, props) for part in geom["coordinates"]]
    return [(c, p) for c, p in out if len(c) >= 2]


def road_graph_from_geojson(doc: dict) -> RoadGraph:
    """Build the graph from a parsed GeoJSON FeatureCollection of road lines (WGS84 lon/lat)."""
    lines = _lines(doc)
    if not lines:
        raise ValueError("no drivable road lines (kind major_road/minor_road) in the road layer")
    keys: dict[tuple[int, int], int] = {}
    xy: list[tuple[float, float]] = []
    vertex_ids = []
    for coords, _ in lines:
        arr = np.asarray(coords, dtype=float)[:, :2]
        x, y = to_projected(arr[:, 0], arr[:, 1])
        ids = []
        for xi, yi in zip(np.atleast_1d(x), np.atleast_1d(y), strict=True):
            k = (round(xi / SNAP_M), round(yi / SNAP_M))
            if k not in keys:
                keys[k] = len(xy)
                xy.append((float(xi), float(yi)))
            if not ids or ids[-1] != keys[k]:
                ids.append(keys[k])
        vertex_ids.append(ids)
    uses = np.zeros(len(xy), dtype=int)
    for ids in vertex_ids:
        uses[ids] += 1
        uses[ids[0]] += 1
        uses[ids[-1]] += 1
    pts = np.asarray(xy)
    raw: list[tuple[list[int], dict]] = []
    for ids, (_, props) in zip(vertex_ids, lines, strict=True):
        start = 0
        for i in range(1, len(ids)):
            if uses[ids[i]] > 1 or i == len(ids) - 1:
                if i > start:
                    raw.append((ids[start : i + 1], props))
                start = i
    return _component(pts, raw)


def _component(pts: np.ndarray, raw: list[tuple[list[int], dict]]) -> RoadGraph:
    """Keep the largest connected component and renumber its nodes."""
    parent = list(range(len(pts)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for ids, _ in raw:
        parent[find(ids[0])] = find(ids[-1])
    roots = [find(ids[0]) for ids, _ in raw]
    counts: dict[int, int] = {}
    for r in roots:
        counts[r] = counts.get(r, 0) + 1
    best = max(sorted(counts), key=lambda r: counts[r])
    renum: dict[int, int] = {}
    edges = []
    for (ids, props), r in zip(raw, roots, strict=True):
        if r != best or (ids[0] == ids[-1] and len(ids) < 3):
            continue
        for n in (ids[0], ids[-1]):
            renum.setdefault(n, len(renum))
        x, y = pts[ids, 0], pts[ids, 1]
        cum = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
        if cum[-1] < 0.5:
            continue
        edges.append(Edge(renum[ids[0]], renum[ids[-1]], x, y, cum, str(props.get("kind_detail") or ""),
                          str(props.get("name:en") or props.get("name") or ""), bool(props.get("is_tunnel"))))
    node_xy = np.zeros((len(renum), 2))
    for old, new in renum.items():
        node_xy[new] = pts[old]
    adjacent: list[list[int]] = [[] for _ in range(len(renum))]
    for i, e in enumerate(edges):
        adjacent[e.u].append(i)
        if e.v != e.u:
            adjacent[e.v].append(i)
    return RoadGraph(node_xy, edges, adjacent)


def load_road_graph(path: str | Path) -> RoadGraph:
    """Read a road GeoJSON file and build its graph."""
    return road_graph_from_geojson(json.loads(Path(path).read_text(encoding="utf-8")))
