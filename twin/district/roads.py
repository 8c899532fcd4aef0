"""The directed road-link network of a district (issue 15): links between intersections, one per direction.

Built from the district's road centre lines when the twin is built and saved beside the twin file as
GeoParquet (``<twin>.links.parquet``, ``<twin>.nodes.parquet``, ``<twin>.link_cells.parquet``). The rules
(nodes, direction, simplification, tunnels and elevated roads, classes, lanes and free-flow speeds) are in
docs/science/roads.md.

Two readers feed one builder, `build_road_network`:

* `ways_from_features`: Nextzen/Tilezen tile features of OSM (``data/bund/roads.geojson``);
* `ways_from_osm`: an OSM XML file (`links_from_osm` builds the network from it).

Both give a table of *ways* (one row per OSM way or tile piece, in a projected CRS) with the columns of
`WAY_COLUMNS`; the builder snaps, splits, simplifies and directs them.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import shapely
import xarray as xr
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from twin.district.cim import FREE_FLOW_KMH, ROAD_CLASS_OF
from twin.district.grid import GridSpec

SNAP_M = 0.5
"""Vertices of different ways closer than this are one point (tile quantisation, rounding). [m]"""
DEFAULT_LANES = {"expressway": 3, "arterial": 3, "secondary": 2, "branch": 1}
"""Lanes per direction when OSM gives none: the scenario traffic model's lanes per class
(docs/science/traffic.md 3.2) [design]; ramps (``*_link``) get `RAMP_LANES`."""
RAMP_LANES = 1
"""Lanes per direction of an untagged ramp (OSM ``*_link``) [design]."""
EXCLUDED_SERVICE = {"parking_aisle", "parking", "driveway", "drive-through", "emergency_access", "private"}
"""OSM ``service`` values that are not through roads for traffic (osmnx's drive filter drops them too)."""
NO_ACCESS = {"no", "private"}
"""OSM ``access`` / ``motor_vehicle`` values that close a way to general motor traffic."""
ROAD_CLASS_NAMES = ("expressway", "arterial", "secondary", "branch")
ELEVATED_HEIGHT_M = 12.0
"""Height of an elevated road's deck above the ground below it [m] [mem: Shanghai's Yan'an, North-South and Inner
Ring elevated roads run about 10-15 m up, with interchange levels higher]."""
RAMP_HEIGHT_M = 6.0
"""Mean height of an elevated ramp (``*_link``) link: it climbs from the ground to the deck [design: half
`ELEVATED_HEIGHT_M`; one value per link]."""
BRIDGE_HEIGHT_M = 4.0
"""Height of a bridge that is not an elevated road (a street over a creek or a railway) [design]."""
TUNNEL_DEPTH_M = 10.0
"""Depth of a tunnel link below the ground [m] [mem: cut-and-cover city tunnels 8-15 m; the river crossings deeper,
where no fix comes through anyway]."""

WAY_COLUMNS = ("osm_id", "highway", "name", "name_en", "oneway", "tunnel", "bridge", "layer", "lanes",
               "lanes_forward", "lanes_backward", "maxspeed", "geometry")
"""What a way table holds: ``oneway`` is 1 (forward), -1 (against the drawing) or 0 (two-way); ``lanes``
the OSM total, ``lanes_forward`` / ``lanes_backward`` and ``maxspeed`` (km/h) NaN when untagged."""

LINK_COLUMNS = ("link_id", "u", "v", "name", "name_en", "road_class", "highway", "lanes", "length_m",
                "free_flow_kmh", "tunnel", "bridge", "elevated", "osm_id", "geometry")


@dataclass(frozen=True, eq=False)
class RoadNetwork:
    """Directed road links between intersections and dead ends, and the cells each link crosses.

    Attributes
    ----------
    links : GeoDataFrame
        One row per directed link (`LINK_COLUMNS`), geometry a LineString in the direction of travel, in
        the grid CRS. ``lanes`` are lanes in the link's direction.
    nodes : GeoDataFrame
        ``node_id`` and a Point geometry.
    cell_link, cell_index, cell_length_m : ndarray
        The link → cell table: link id, flat (row-major) grid cell, length of the link inside that cell [m].
        Empty when the network was built without a grid.
    """

    links: gpd.GeoDataFrame
    nodes: gpd.GeoDataFrame
    cell_link: np.ndarray
    cell_index: np.ndarray
    cell_length_m: np.ndarray

    @property
    def crs(self):
        return self.links.crs

    @property
    def cell_table(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The link → cell table as (link, flat cell, length inside the cell [m]) arrays."""
        return np.asarray(self.cell_link), np.asarray(self.cell_index), np.asarray(self.cell_length_m)

    def graph(self) -> nx.MultiDiGraph:
        """The network as a networkx MultiDiGraph (edge key = ``link_id``, attribute ``length_m``)."""
        g = nx.MultiDiGraph()
        g.add_nodes_from(self.nodes["node_id"].to_numpy().tolist())
        for lid, u, v, length in zip(self.links["link_id"], self.links["u"], self.links["v"],
                                     self.links["length_m"], strict=True):
            g.add_edge(int(u), int(v), key=int(lid), length_m=float(length))
        return g

    def graph_arrays(self) -> dict[str, np.ndarray]:
        """The network as the plain arrays of `models.mapmatch.RoadGraph` (grid CRS, metres): ``node_xy``, ``link_u``,
        ``link_v``, ``link_length``, the links' vertices ``vert_xy`` with offsets ``link_vert_start`` (link k's
        vertices, in the direction of travel, are ``vert_xy[link_vert_start[k]:link_vert_start[k + 1]]``) and each
        link's height above the ground ``link_height`` [m] (`link_heights`)."""
        coords = [shapely.get_coordinates(g) for g in self.links.geometry]
        counts = np.array([len(c) for c in coords], dtype=np.int64)
        node_xy = shapely.get_coordinates(self.nodes.geometry.to_numpy()) if len(self.nodes) else np.zeros((0, 2))
        return {"node_xy": node_xy, "link_u": self.links["u"].to_numpy(np.int64),
                "link_v": self.links["v"].to_numpy(np.int64), "link_length": self.links["length_m"].to_numpy(float),
                "vert_xy": np.concatenate(coords) if coords else np.zeros((0, 2)),
                "link_vert_start": np.r_[0, np.cumsum(counts)].astype(np.int64),
                "link_height": link_heights(self.links)}

    def summary(self) -> dict:
        """Counts and lengths: links, nodes, km per class, tunnel / elevated / bridge links."""
        length = self.links.groupby("road_class")["length_m"].sum()
        return {"links": len(self.links), "nodes": len(self.nodes),
                "km_by_class": {c: round(float(length.get(c, 0.0)) / 1000.0, 2) for c in ROAD_CLASS_NAMES},
                "tunnel_links": int(self.links["tunnel"].sum()),
                "elevated_links": int(self.links["elevated"].sum()),
                "bridge_links": int(self.links["bridge"].sum())}


def link_heights(links: pd.DataFrame) -> np.ndarray:
    """Height of each link above the ground [m], from its flags: an elevated road `ELEVATED_HEIGHT_M` (its ramps,
    highway ``*_link``, `RAMP_HEIGHT_M`), another bridge `BRIDGE_HEIGHT_M`, a tunnel -`TUNNEL_DEPTH_M`, else 0.

    What the map matcher compares with a fix's altitude (`models.mapmatch.MapMatchConfig.sigma_alt`): the OSM
    ``layer`` is not kept on the links, and is a level order, not a height."""
    n = len(links)
    if n == 0:
        return np.zeros(0)
    elevated = links["elevated"].to_numpy(bool)
    ramp = links["highway"].astype(str).str.endswith("_link").to_numpy(bool)
    height = np.where(elevated, np.where(ramp, RAMP_HEIGHT_M, ELEVATED_HEIGHT_M),
                      np.where(links["bridge"].to_numpy(bool), BRIDGE_HEIGHT_M, 0.0))
    return np.where(links["tunnel"].to_numpy(bool), -TUNNEL_DEPTH_M, height).astype(float)


# ---------------------------------------------------------------- readers
def _truthy(values) -> np.ndarray:
    s = pd.Series(values, dtype=object)
    return s.map(lambda x: str(x).strip().lower() in {"1", "1.0", "yes", "true"}).to_numpy(dtype=bool)


def _oneway(values) -> np.ndarray:
    def one(x) -> int:
        t = str(x).strip().lower()
        if t in {"yes", "1", "1.0", "true"}:
            return 1
        if t in {"-1", "-1.0", "reverse"}:
            return -1
        return 0
    return np.array([one(x) for x in values], dtype=np.int8)


def _number(values) -> np.ndarray:
    """The leading number of each tag value (``"60"``, ``"60 km/h"``), NaN when there is none; mph converted."""
    out = np.full(len(values), np.nan)
    for i, x in enumerate(values):
        if x is None or (isinstance(x, float) and np.isnan(x)):
            continue
        m = re.match(r"\s*(\d+(?:\.\d+)?)\s*(mph)?", str(x))
        if m:
            out[i] = float(m.group(1)) * (1.609344 if m.group(2) else 1.0)
    return out


def _layer(values) -> np.ndarray:
    v = _number([str(x).replace("+", "") if x is not None else None for x in values])
    neg = np.array([str(x).strip().startswith("-") for x in values])
    v = np.where(neg, -v, v)
    return np.nan_to_num(v, nan=0.0).astype(np.int16)


def _get(df: pd.DataFrame, name: str, default=None) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(default, index=df.index, dtype=object)


def _way_table(highway, osm_id, name, name_en, oneway, tunnel, bridge, layer, lanes, lanes_fw, lanes_bw,
               maxspeed, geometry, crs) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({
        "osm_id": np.asarray(osm_id, dtype=np.int64), "highway": np.asarray(highway, dtype=object),
        "name": pd.Series(name, dtype=object).fillna("").astype(str).to_numpy(),
        "name_en": pd.Series(name_en, dtype=object).fillna("").astype(str).to_numpy(),
        "oneway": _oneway(oneway), "tunnel": _truthy(tunnel), "bridge": _truthy(bridge), "layer": _layer(layer),
        "lanes": _number(lanes), "lanes_forward": _number(lanes_fw), "lanes_backward": _number(lanes_bw),
        "maxspeed": _number(maxspeed)}, geometry=np.asarray(geometry, dtype=object), crs=crs)


def _motor(highway: pd.Series, service: pd.Series, access: pd.Series, motor: pd.Series) -> np.ndarray:
    return (highway.isin(list(ROAD_CLASS_OF)).to_numpy()
            & ~service.astype(str).isin(EXCLUDED_SERVICE).to_numpy()
            & ~access.astype(str).isin(NO_ACCESS).to_numpy() & ~motor.astype(str).isin(NO_ACCESS).to_numpy())


def ways_from_features(roads: gpd.GeoDataFrame, crs: str) -> gpd.GeoDataFrame:
    """Motor-road ways of Nextzen/Tilezen road features (``kind_detail`` = OSM highway), in ``crs``.

    The features may repeat and be cut at tile edges; `build_road_network` dedupes and snaps them.
    Tags the tiles lack (``layer``, ``lanes``, ``maxspeed``) are read when present.
    """
    df = roads if roads.crs is not None else roads.set_crs("EPSG:4326")
    df = df[df.geometry.notna() & df.geometry.geom_type.isin(["LineString", "MultiLineString"])].to_crs(crs)
    highway = _get(df, "kind_detail").fillna(_get(df, "highway")).astype(str)
    keep = _motor(highway, _get(df, "service", ""), _get(df, "access", ""), _get(df, "motor_vehicle", ""))
    df, highway = df[keep], highway[keep]
    name = _get(df, "name").fillna(_get(df, "name:zh"))
    tunnel = _truthy(_get(df, "is_tunnel")) | _truthy(_get(df, "tunnel"))
    bridge = _truthy(_get(df, "is_bridge")) | _truthy(_get(df, "bridge"))
    osm_id = pd.to_numeric(_get(df, "id", -1), errors="coerce").fillna(-1)
    return _way_table(highway, osm_id, name, _get(df, "name:en"), _get(df, "oneway"), tunnel, bridge,
                      _get(df, "layer"), _get(df, "lanes"), _get(df, "lanes:forward"), _get(df, "lanes:backward"),
                      _get(df, "maxspeed"), df.geometry.to_numpy(), crs)


def ways_from_osm(path: str | Path, crs: str, bbox: tuple[float, float, float, float] | None = None,
                  ) -> gpd.GeoDataFrame:
    """Motor-road ways of an OSM XML file in ``crs`` (``bbox`` = lon/lat W, S, E, N clips them)."""
    from twin.district.geo import to_projected

    root = ET.parse(path).getroot()
    nodes = {n.get("id"): (float(n.get("lon")), float(n.get("lat"))) for n in root.iter("node")}
    rows = []
    for way in root.iter("way"):
        tags = {t.get("k"): t.get("v") for t in way.findall("tag")}
        refs = [r.get("ref") for r in way.findall("nd")]
        if tags.get("highway") not in ROAD_CLASS_OF or len(refs) < 2 or tags.get("area") == "yes":
            continue
        if tags.get("service") in EXCLUDED_SERVICE or tags.get("access") in NO_ACCESS \
                or tags.get("motor_vehicle") in NO_ACCESS:
            continue
        pts = [nodes[r] for r in refs if r in nodes]
        if len(pts) >= 2:
            rows.append((int(way.get("id")), tags, np.array(pts)))
    if not rows:
        return _way_table([], [], [], [], [], [], [], [], [], [], [], [], [], crs)
    geoms = []
    for _, _, lonlat in rows:
        x, y = to_projected(lonlat[:, 0], lonlat[:, 1], crs)
        geoms.append(shapely.linestrings(np.column_stack([x, y])))
    tag = [r[1] for r in rows]

    def col(k):
        return [t.get(k) for t in tag]

    ways = _way_table(col("highway"), [r[0] for r in rows], col("name"), col("name:en"), col("oneway"),
                      [t.get("tunnel") not in (None, "no") for t in tag],
                      [t.get("bridge") not in (None, "no") for t in tag], col("layer"), col("lanes"),
                      col("lanes:forward"), col("lanes:backward"), col("maxspeed"), geoms, crs)
    if bbox is not None:
        w, s, e, n = bbox
        x0, y0 = to_projected(np.array([w, e, w, e]), np.array([s, s, n, n]), crs)
        ways = _clip(ways, (x0.min(), y0.min(), x0.max(), y0.max()))
    return ways


def _clip(ways: gpd.GeoDataFrame, rect: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
    out = ways.copy()
    out["geometry"] = shapely.clip_by_rect(ways.geometry.to_numpy(), *rect)
    return out[~out.geometry.is_empty]


# ---------------------------------------------------------------- the builder
@dataclass
class Segment:
    """A piece of road between two nodes: ``coords`` run from node ``u`` to node ``v``.

    ``key`` holds what must agree for two segments to merge (name, class, flags, lanes, speed);
    ``oneway`` segments run in the direction of travel.
    """

    u: int
    v: int
    coords: np.ndarray
    key: tuple
    oneway: bool
    osm_id: int = -1

    @property
    def length(self) -> float:
        d = np.diff(self.coords, axis=0)
        return float(np.hypot(d[:, 0], d[:, 1]).sum())


def _interior(ends: list[tuple[int, int]], segs: list[Segment]) -> bool:
    """Whether a node with these segment ends (segment, 0 = start / 1 = end) is inside a chain."""
    if len(ends) != 2 or ends[0][0] == ends[1][0]:
        return False
    (a, ea), (b, eb) = ends
    sa, sb = segs[a], segs[b]
    if sa.key != sb.key or sa.oneway != sb.oneway:
        return False
    return not sa.oneway or ea != eb  # one-way: one segment arrives, the other leaves


def simplify_segments(segs: list[Segment]) -> list[Segment]:
    """Merge chains of segments through degree-2 nodes whose segments agree (osmnx-style simplification).

    A node stays when it has other than two segment ends, when its two segments differ in ``key`` or
    direction, or when two one-way segments both arrive or both leave. A closed ring of mergeable
    segments becomes one loop at its first node. Total length and the remaining nodes are preserved.
    """
    ends: dict[int, list[tuple[int, int]]] = {}
    for i, s in enumerate(segs):
        ends.setdefault(s.u, []).append((i, 0))
        ends.setdefault(s.v, []).append((i, 1))
    interior = {n for n, e in ends.items() if _interior(e, segs)}
    joins = nx.Graph()
    joins.add_nodes_from(range(len(segs)))
    joins.add_edges_from((ends[n][0][0], ends[n][1][0]) for n in interior)
    out = []
    for comp in sorted(nx.connected_components(joins), key=min):
        if len(comp) == 1:
            out.append(segs[next(iter(comp))])
            continue
        start = None  # (segment, reversed): a segment end at a node that stays
        for i in sorted(comp):
            s = segs[i]
            if s.u not in interior:
                start = (i, False)
                break
            if s.v not in interior and not s.oneway:
                start = (i, True)
                break
        if start is None:  # a ring: start anywhere, in the drawn direction
            start = (min(comp), False)
        out.append(_walk(start, segs, ends, interior))
    return out


def _walk(start: tuple[int, bool], segs, ends, interior) -> Segment:
    i, rev = start
    first = segs[i]
    parts, seen = [], set()
    while True:
        s = segs[i]
        seen.add(i)
        parts.append(s.coords[::-1] if rev else s.coords)
        head = s.u if rev else s.v
        if head not in interior:
            break
        (a, ea), (b, eb) = ends[head]
        nxt, end = (b, eb) if a == i else (a, ea)
        if nxt in seen:  # back round a ring
            break
        i, rev = nxt, end == 1
    coords = np.concatenate([parts[0]] + [p[1:] for p in parts[1:]])
    u = first.v if start[1] else first.u
    osm = max((segs[k] for k in seen), key=lambda s: s.length).osm_id
    return Segment(u, head, coords, first.key, first.oneway, osm)


def _dedupe(ways: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """One row per way piece: explode MultiLineStrings, orient one-way pieces, drop repeats."""
    ways = ways[ways.geometry.notna() & ~ways.geometry.is_empty].explode(index_parts=False, ignore_index=True)
    ways = ways[ways.geometry.geom_type == "LineString"]
    geoms = ways.geometry.to_numpy()
    rev = ways["oneway"].to_numpy() == -1
    geoms = np.where(rev, shapely.reverse(geoms), geoms)
    ways = ways.assign(geometry=geoms, oneway=np.where(ways["oneway"].to_numpy() != 0, 1, 0).astype(np.int8))
    keys = []
    for g, one in zip(geoms, ways["oneway"].to_numpy(), strict=True):
        c = np.round(shapely.get_coordinates(g), 2)
        if not one and tuple(c[-1]) < tuple(c[0]):
            c = c[::-1]
        keys.append(c.tobytes())
    ways = ways.assign(_key=keys, _first=[k[:16] for k in keys])
    ways = ways.drop_duplicates(["osm_id", "oneway", "_key"]).sort_values(["osm_id", "_first"], kind="stable")
    ways = ways.drop(columns=["_key", "_first"]).reset_index(drop=True)
    return ways[shapely.length(ways.geometry.to_numpy()) > 1e-6]


def _level(ways: pd.DataFrame) -> np.ndarray:
    """Vertical level of each way: OSM ``layer`` when tagged, else -1 for tunnels, +1 for bridges, 0."""
    layer = ways["layer"].to_numpy().astype(int)
    default = np.where(ways["tunnel"].to_numpy(), -1, np.where(ways["bridge"].to_numpy(), 1, 0))
    return np.where(layer != 0, layer, default)


def _segments(ways: gpd.GeoDataFrame) -> tuple[list[Segment], np.ndarray]:
    """Split the ways at their nodes. Returns the segments and the coordinates of every node id."""
    coords, piece = shapely.get_coordinates(ways.geometry.to_numpy(), return_index=True)
    n = len(coords)
    # snap vertices closer than SNAP_M into one location
    pairs = cKDTree(coords).query_pairs(SNAP_M, output_type="ndarray")
    adj = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)) if len(pairs) else \
        coo_matrix((n, n))
    _, loc = connected_components(adj, directed=False)
    first = np.full(loc.max() + 1, n)
    np.minimum.at(first, loc, np.arange(n))
    loc_xy = coords[first]
    start = np.r_[0, np.flatnonzero(np.diff(piece)) + 1]
    stop = np.r_[start[1:], n]
    is_end = np.zeros(n, dtype=bool)
    is_end[start] = is_end[stop - 1] = True
    level = _level(ways)[piece]
    # which (piece, level) touch each location
    touch = pd.DataFrame({"loc": loc, "piece": piece, "level": level, "end": is_end})
    per = touch.drop_duplicates(["loc", "piece"])
    pieces_at = per.groupby(["loc", "level"])["piece"].nunique()
    # a junction end: a way's end at a location no other way of its level touches (a portal, a ramp's foot,
    # a dead end); it joins whatever other levels are there. Ends where a way of the same level continues
    # (tile cuts, ordinary splits) stay on their level.
    same = pieces_at.reindex(pd.MultiIndex.from_arrays([loc, level])).to_numpy()
    junction = is_end & (same == 1)
    levels_at = per.groupby("loc")["level"].nunique().reindex(loc).to_numpy()
    junction_locs = set(loc[junction & (levels_at > 1)])
    split = is_end | (same > 1) | np.isin(loc, list(junction_locs))
    # node identity: (location, level), with junction ends merged across levels
    ident = nx.Graph()
    keys = list(zip(loc.tolist(), level.tolist(), strict=True))
    ident.add_nodes_from(k for k, s in zip(keys, split, strict=True) if s)
    lv_at = per.groupby("loc")["level"].unique()
    for j in np.flatnonzero(junction & (levels_at > 1)):
        for lv in lv_at[loc[j]]:
            ident.add_edge(keys[j], (int(loc[j]), int(lv)))
    comps = sorted(nx.connected_components(ident), key=min)
    node_of = {k: nid for nid, comp in enumerate(comps) for k in comp}
    node_xy = np.array([loc_xy[min(comp)[0]] for comp in comps]).reshape(-1, 2)
    w = ways.reset_index(drop=True)
    segs = []
    for p in range(len(w)):
        row = w.iloc[p]
        key = _way_key(row)
        idx = np.arange(start[p], stop[p])
        cut = idx[split[idx]]
        for a, b in itertools.pairwise(cut):
            xy = loc_xy[loc[a:b + 1]]
            xy = xy[np.r_[True, np.any(np.diff(xy, axis=0) != 0, axis=1)]]
            if len(xy) < 2:
                continue
            segs.append(Segment(node_of[keys[a]], node_of[keys[b]], xy, key, bool(row["oneway"]),
                                int(row["osm_id"])))
    return segs, node_xy


def _way_key(row) -> tuple:
    def num(x):
        return None if pd.isna(x) else float(x)
    return (row["name"], row["name_en"], row["highway"], bool(row["tunnel"]), bool(row["bridge"]), int(row["layer"]),
            num(row["lanes"]), num(row["lanes_forward"]), num(row["lanes_backward"]), num(row["maxspeed"]))


def _lanes(highway: str, road_class: str, oneway: bool, lanes, forward: bool, fw, bw) -> int:
    own = fw if forward else bw
    if own is not None and own > 0:
        return int(own)
    if lanes is not None and lanes > 0:
        return int(lanes) if oneway else max(1, int(np.ceil(lanes / 2)))  # half of both ways, rounded up
    return RAMP_LANES if highway.endswith("_link") else DEFAULT_LANES[road_class]


def build_road_network(ways: gpd.GeoDataFrame, grid: GridSpec | None = None) -> RoadNetwork:
    """The directed, simplified road network of a way table (`ways_from_features`, `ways_from_osm`).

    With a grid, the ways are clipped to the grid's extent and the link → cell table is filled.
    """
    crs = grid.crs if grid is not None else ways.crs
    ways = ways.to_crs(crs) if ways.crs is not None and grid is not None else ways
    if grid is not None:
        ways = _clip(ways, grid.bounds)
    ways = _dedupe(ways)
    segs, node_xy = _segments(ways) if len(ways) else ([], np.zeros((0, 2)))
    segs = simplify_segments(segs)
    rows = []
    for s in segs:
        name, name_en, highway, tunnel, bridge, layer, lanes, fw, bw, maxspeed = s.key
        cls = ROAD_CLASS_OF[highway]
        speed = maxspeed if maxspeed is not None and maxspeed > 0 else FREE_FLOW_KMH[cls]
        elevated = layer > 0 or (bridge and cls == "expressway" and not tunnel)
        for forward in ((True,) if s.oneway else (True, False)):
            u, v, xy = (s.u, s.v, s.coords) if forward else (s.v, s.u, s.coords[::-1])
            rows.append((u, v, name, name_en, cls, highway, _lanes(highway, cls, s.oneway, lanes, forward, fw, bw),
                         s.length, float(speed), tunnel, bridge, bool(elevated), s.osm_id, shapely.linestrings(xy)))
    cols = [c for c in LINK_COLUMNS if c != "link_id"]
    links = gpd.GeoDataFrame(pd.DataFrame(rows, columns=cols), geometry="geometry", crs=crs) if rows else \
        gpd.GeoDataFrame({c: [] for c in cols}, geometry="geometry", crs=crs)
    used = np.unique(np.r_[links["u"].to_numpy(dtype=np.int64), links["v"].to_numpy(dtype=np.int64)])
    renumber = np.full(len(node_xy), -1, dtype=np.int64)
    renumber[used] = np.arange(len(used))
    links["u"] = renumber[links["u"].to_numpy(dtype=np.int64)]
    links["v"] = renumber[links["v"].to_numpy(dtype=np.int64)]
    links.insert(0, "link_id", np.arange(len(links), dtype=np.int64))
    links = _typed(links)
    nodes = gpd.GeoDataFrame({"node_id": np.arange(len(used), dtype=np.int64)},
                             geometry=shapely.points(node_xy[used]) if len(used) else [], crs=crs)
    cl, ci, cm = link_cells(links, grid) if grid is not None else (np.zeros(0, np.int64),) * 2 + (np.zeros(0),)
    return RoadNetwork(links, nodes, cl, ci, cm)


def _typed(links: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    types = {"link_id": np.int64, "u": np.int64, "v": np.int64, "lanes": np.int64, "length_m": np.float64,
             "free_flow_kmh": np.float64, "tunnel": bool, "bridge": bool, "elevated": bool, "osm_id": np.int64}
    links = links.astype(types)
    for c in ("name", "name_en", "road_class", "highway"):
        links[c] = links[c].astype(object)
    return links[list(LINK_COLUMNS)]


def link_cells(links: gpd.GeoDataFrame, grid: GridSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact length of every link inside every grid cell it crosses: (link id, flat cell, length [m]).

    Each straight piece of a link is cut where it crosses a cell edge; the piece between two cuts lies in
    the cell of its midpoint. Parts outside the grid are dropped.
    """
    coords, which = shapely.get_coordinates(links.geometry.to_numpy(), return_index=True)
    same = which[1:] == which[:-1]
    p0, p1, lid = coords[:-1][same], coords[1:][same], links["link_id"].to_numpy()[which[:-1][same]]
    s = grid.cell_size
    t_all, seg_all = [np.zeros(len(p0)), np.ones(len(p0))], [np.arange(len(p0))] * 2
    for axis, origin, sign in ((0, grid.x0, 1.0), (1, grid.y0, -1.0)):
        a, b = sign * (p0[:, axis] - origin) / s, sign * (p1[:, axis] - origin) / s
        lo, hi = np.floor(np.minimum(a, b)) + 1, np.ceil(np.maximum(a, b)) - 1
        count = np.maximum(hi - lo + 1, 0).astype(np.int64)
        seg = np.repeat(np.arange(len(p0)), count)
        k = lo[seg] + (np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (k - a[seg]) / (b[seg] - a[seg])
        ok = np.isfinite(t) & (t > 0) & (t < 1)
        t_all.append(t[ok])
        seg_all.append(seg[ok])
    t, seg = np.concatenate(t_all), np.concatenate(seg_all)
    order = np.lexsort((t, seg))
    t, seg = t[order], seg[order]
    nxt = np.r_[seg[1:] == seg[:-1], False]
    t0, t1, sg = t[:-1][nxt[:-1]], t[1:][nxt[:-1]], seg[:-1][nxt[:-1]]
    seg_len = np.hypot(*(p1 - p0).T)
    mid = p0[sg] + ((t0 + t1) / 2)[:, None] * (p1[sg] - p0[sg])
    flat = grid.flat_index(*grid.cell_of(mid[:, 0], mid[:, 1]))
    length = (t1 - t0) * seg_len[sg]
    keep = (flat >= 0) & (length > 0)
    table = pd.DataFrame({"link": lid[sg][keep], "cell": flat[keep], "length": length[keep]})
    table = table.groupby(["link", "cell"], sort=True, as_index=False)["length"].sum()
    return (table["link"].to_numpy(np.int64), table["cell"].to_numpy(np.int64), table["length"].to_numpy(np.float64))


def road_network_from_sources(sources, grid: GridSpec) -> RoadNetwork:
    """The road network of a district's sources (`twin.district.sources.DistrictSources`) on a grid."""
    return build_road_network(ways_from_features(sources.layer("roads"), grid.crs), grid)


def links_from_osm(path: str | Path, crs: str, bbox: tuple[float, float, float, float] | None = None,
                   grid: GridSpec | None = None) -> RoadNetwork:
    """The road network of an OSM XML file (ways with a motor ``highway``) in ``crs``, clipped to ``bbox``
    (lon/lat W, S, E, N) when given; with a grid (in ``crs``) its link → cell table too."""
    return build_road_network(ways_from_osm(path, crs, bbox), grid)


# ---------------------------------------------------------------- files
def network_paths(twin_path: str | Path) -> tuple[Path, Path, Path]:
    """The three files of a twin's road network: links, nodes and the link → cell table."""
    stem = Path(twin_path).with_suffix("")
    return tuple(stem.with_name(stem.name + s) for s in (".links.parquet", ".nodes.parquet",
                                                         ".link_cells.parquet"))


def save_road_network(twin_path: str | Path, network: RoadNetwork, grid: GridSpec | None = None) -> Path:
    """Write a network beside a twin file (GeoParquet links and nodes, a Parquet link → cell table).

    The cell table carries the grid it was cut on (``citytwin.grid`` in the Parquet metadata), so it is
    never read against another grid. Returns the links file.
    """
    links_p, nodes_p, cells_p = network_paths(twin_path)
    links_p.parent.mkdir(parents=True, exist_ok=True)
    meta = {b"citytwin.grid": json.dumps(grid.to_attrs() if grid is not None else None, default=str).encode()}
    table = pa.table({"link_id": network.cell_link, "cell_index": network.cell_index,
                      "cell_length_m": network.cell_length_m}).replace_schema_metadata(meta)
    for target, write in ((nodes_p, network.nodes.to_parquet), (cells_p, lambda p: pq.write_table(table, p)),
                          (links_p, network.links.to_parquet)):  # links last: their presence means complete
        tmp = target.with_name(target.name + ".tmp")
        write(tmp)
        tmp.replace(target)
    return links_p


def remove_road_network(twin_path: str | Path) -> None:
    """Delete a twin's road network files (a new twin must not be paired with an older network)."""
    for p in network_paths(twin_path):
        p.unlink(missing_ok=True)


def load_road_network(twin_path: str | Path, grid: GridSpec | None = None) -> RoadNetwork:
    """Read a network written by `save_road_network`; with ``grid``, check it was cut on that grid."""
    links_p, nodes_p, cells_p = network_paths(twin_path)
    if not (links_p.is_file() and nodes_p.is_file() and cells_p.is_file()):
        raise FileNotFoundError(f"no road network beside {twin_path} ({links_p.name} missing)")
    table = pq.read_table(cells_p)
    saved = json.loads((table.schema.metadata or {}).get(b"citytwin.grid", b"null"))
    if grid is not None and saved is not None and saved != json.loads(json.dumps(grid.to_attrs(), default=str)):
        raise ValueError(f"the road network beside {twin_path} was built on another grid; rebuild it")
    links = _typed(gpd.read_parquet(links_p))
    nodes = gpd.read_parquet(nodes_p)
    return RoadNetwork(links, nodes, table["link_id"].to_numpy(), table["cell_index"].to_numpy(),
                       table["cell_length_m"].to_numpy())


def road_names(links: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(English, Chinese, key) name of each link of a link table, "" where unnamed; the key, which names a road
    in alerts and indices, is the English name, else the Chinese one."""
    en = links["name_en"].fillna("").astype(str).to_numpy(dtype=object)
    zh = links["name"].fillna("").astype(str).to_numpy(dtype=object)
    return en, zh, np.where(en != "", en, zh)


def road_network_for(twin_path: str | Path, sources=None, write: bool = True) -> RoadNetwork:
    """The road network of a twin file: read from beside it, or built when missing and, with ``write``, written
    there (``write=False`` for a twin file that is not the caller's own).

    ``sources`` (a `DistrictSources` or a district folder) default to the bundled district the twin
    names in its ``district`` attribute.
    """
    from twin.district.sources import DistrictSources, bundled_district, read_district

    with xr.open_dataset(twin_path, engine="netcdf4") as ds:
        attrs = dict(ds.attrs)
    grid = GridSpec.from_attrs(attrs)
    try:
        return load_road_network(twin_path, grid)
    except (FileNotFoundError, ValueError):  # none yet, or cut on another grid: build it again
        pass
    if not isinstance(sources, DistrictSources):
        sources = read_district(Path(sources) if sources is not None else bundled_district(attrs["district"]))
    network = road_network_from_sources(sources, grid)
    if write:
        save_road_network(twin_path, network, grid)
    return network


def timed_build(sources, grid: GridSpec) -> tuple[RoadNetwork, float]:
    """`road_network_from_sources` and its wall time [s] (for the figures in docs/science/roads.md)."""
    t0 = time.perf_counter()
    net = road_network_from_sources(sources, grid)
    return net, time.perf_counter() - t0
