"""The twin side of the SUMO traffic truth case (issue 15): a bare People's Square twin, the probe feed through
ingest into it, and the join of the twin's road links to SUMO's edges.

* `static_twin` builds the smallest valid static twin over the SUMO network: a grid of ``cell`` m cells over the
  edges' extent (plus a margin) in EPSG:4549, the road network from the same OSM file the generator gave SUMO
  (`twin.district.roads.links_from_osm`, clipped to the grid), and neutral CIM layers (no buildings, no water,
  flat ground at 4 m, walkable everywhere, drainage at the district default) with the road class and free-flow
  speed of the highest link class in each cell. No district folder has this area, so nothing here needs
  buildings; a ``bare_twin(grid, network)`` builder like this one belongs in `twin.district.build`.
* `feed` replays a run's MQTT payloads (`case.payloads`) through `ingest.admission.Admission` into
  `twin.live.core.TwinCore` in time order, ticking every ``tick_s`` seconds of SUMO time, and keeps the link
  layers at the end of each edgeData interval.
* `join_links_to_edges` decides which SUMO edges a twin link stands for (the matching rule is in its docstring).
* `compare` puts the twin's window speeds beside edgeData's speeds over the evaluated link-windows.
"""

from __future__ import annotations

import gzip
import math
import time
from dataclasses import dataclass, field

import numpy as np
import shapely
import xarray as xr

from ingest.admission import Admission
from ingest.batch import Batch
from ingest.registry import Registry, registry_from_geojson
from ingest.rejection import Rejection
from models.config import TrafficConfig
from models.kernels import traffic as tk
from models.links import evaluated_class
from tests.truth.traffic import case
from twin.alerting.store import Store
from twin.district import geo
from twin.district.bare import bare_twin
from twin.district.grid import DEFAULT_CRS, GridSpec
from twin.district.roads import RoadNetwork, links_from_osm
from twin.live.core import CoreConfig, TwinCore
from twin.live.models import LiveConfig

OSM = case.HERE / "peoples_square_drive.osm.gz"
"""The network SUMO ran on (identical to data/peoples_square/drive.osm, sha256 ce6f2f49…75fdb9)."""
CELL_M = 50.0
"""Cell size of the test twin: the grid only carries the layers the tick needs; the links are what is tested. [m]"""
MARGIN_DEG = 0.002
"""Margin around the SUMO edges' extent (about 200 m), so that no probe fix near the edge falls outside. [deg]"""
TICK_S = 5.0
"""Tick of the replay, in SUMO seconds. [s]"""

# ----------------------------------------------------------------------------------------- the join's tolerances
JOIN_DIST_M = 6.0
"""A SUMO edge belongs to a twin link when its geometry lies within this distance of the link's (SUMO's
junction joining and geometry-node removal move lines by a few metres). [m]"""
JOIN_HEADING_DEG = 45.0
"""... and runs the same way: the mean heading of the edge within this angle of the link's heading at the same
place. [degree]"""
JOIN_MIN_SHARE = 0.8
"""... for at least this share of the edge's length (the rest may hang over into the next link). [1]"""
JOIN_SPLIT_SHARE = 0.2
"""An edge no single link holds is split among the links holding at least this share of it. [1]"""
JOIN_MIN_COVER = 0.5
"""A link is joined when its SUMO edges cover at least this share of its length (else it is left out). [1]"""


def edges_bbox(edges: dict[str, dict] | None = None) -> tuple[float, float, float, float]:
    """Lon/lat W, S, E, N of the SUMO edges."""
    xy = np.concatenate([np.asarray(f["geometry"]["coordinates"], float)
                         for f in (edges or case.edges()).values()])
    return float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())


def road_network(grid: GridSpec) -> RoadNetwork:
    """The twin's road links from the OSM file SUMO ran on, on ``grid`` (its link → cell table too)."""
    with gzip.open(OSM) as f:
        return links_from_osm(f, grid.crs, grid=grid)


def static_twin(cell: float = CELL_M) -> tuple[xr.Dataset, RoadNetwork]:
    """The bare People's Square twin (dataset) and its road network."""
    w, s, e, n = edges_bbox()
    grid = GridSpec.from_bbox(w - MARGIN_DEG, s - MARGIN_DEG, e + MARGIN_DEG, n + MARGIN_DEG, cell, DEFAULT_CRS)
    network = road_network(grid)
    ds = bare_twin(grid, network, source="tests/truth/traffic (SUMO truth case, bare twin)",
                   district="peoples_square", credit="© OpenStreetMap contributors", license="ODbL-1.0")
    return ds, network


def registry(run: str) -> Registry:
    """The run's probes as ``vehicle`` devices."""
    return registry_from_geojson({"type": "FeatureCollection", "features": case.registry_features(run)})


# ----------------------------------------------------------------------------------------- the replay
@dataclass
class Fed:
    """What one run's replay gave: the link layers at each interval end (by ``end_s``), counts and timings."""

    run: str
    layers: dict[int, xr.Dataset] = field(default_factory=dict)
    messages: int = 0
    records: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    outside_grid: int = 0
    matcher_counts: dict = field(default_factory=dict)
    wall_s: float = 0.0
    tick_s: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    """SUMO second of every tick in the measured period (``WARMUP_S`` < t <= ``WARMUP_S + MEASURE_S``). [s]"""
    warning: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int8))
    """``link_warning`` at each of those ticks, (tick, link): 0 none .. 4 red, -1 no data."""
    level: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int8))
    """``link_level`` (GB/T 33171, 0 smooth .. 4 severe, -1 no data) at each of those ticks, (tick, link)."""


def feed(run: str, static: xr.Dataset, network: RoadNetwork, tick_s: float = TICK_S) -> Fed:
    """Replay the run's probe payloads through admission into a `TwinCore` with the road network, ticking every
    ``tick_s`` SUMO seconds (the payloads stamped t go in, as one batch, before the tick at t); keep the link
    layers at every edgeData interval end."""
    start = time.perf_counter()
    reg = registry(run)
    admission = Admission(reg)
    core = TwinCore(static, reg, Store.open(":memory:"), CoreConfig(
        tick_s=tick_s, district="peoples_square", sender="twin.peoples_square@citytwin",
        live=LiveConfig(road_network=network)))
    ends = {case.T0 + case.WARMUP_S + k * case.INTERVAL_S
            for k in range(1, case.MEASURE_S // case.INTERVAL_S + 1)}
    out = Fed(run)
    next_tick = float(case.T0)
    measured = (case.T0 + case.WARMUP_S, case.T0 + case.WARMUP_S + case.MEASURE_S)
    ticks, warnings, levels = [], [], []
    try:
        def tick_until(t: float) -> None:
            nonlocal next_tick
            while next_tick < t:
                core.on_tick(next_tick)
                if measured[0] < next_tick <= measured[1]:
                    lay = core.models.link_layers
                    ticks.append(int(next_tick) - case.T0)
                    warnings.append(lay["link_warning"].values.astype(np.int8))
                    levels.append(lay["link_level"].values.astype(np.int8))
                if int(next_tick) in ends:
                    out.layers[int(next_tick) - case.T0] = core.models.link_layers.copy(deep=True)
                next_tick += tick_s

        def apply(batches: list[Batch]) -> None:
            if batches:
                out.outside_grid += len(core.on_batch(Batch.concat(batches)))
                batches.clear()

        second, pending = None, []
        for t, topic, payload in case.payloads(run):
            if t != second:  # the messages of one second go in as one batch, as the ingest loop gathers them
                apply(pending)
                tick_until(t)
                second = t
            out.messages += 1
            batch = admission.admit(topic, payload, received_at=float(t))
            if isinstance(batch, Rejection):
                reason = str(getattr(batch.reason, "value", batch.reason))
                out.rejected[reason] = out.rejected.get(reason, 0) + 1
                continue
            out.records += len(batch)
            pending.append(batch)
        apply(pending)
        tick_until(case.T0 + case.WARMUP_S + case.MEASURE_S + tick_s)
        out.matcher_counts = dict(core.models.links.probes.matcher.counts)
    finally:
        core.store.close()
    out.tick_s = np.array(ticks, np.int64)
    out.warning = np.array(warnings, np.int8).reshape(len(ticks), -1)
    out.level = np.array(levels, np.int8).reshape(len(ticks), -1)
    out.wall_s = time.perf_counter() - start
    return out


# ----------------------------------------------------------------------------------------- the join
def _heading(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return np.arctan2(dy, dx)


def _samples(line: shapely.LineString, step: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points every ``step`` m along a line (midpoints of equal pieces), their heading [rad] and weight [m]."""
    n = max(1, math.ceil(line.length / step))
    d = (np.arange(n) + 0.5) * line.length / n
    p = shapely.line_interpolate_point(line, d)
    a = shapely.line_interpolate_point(line, np.maximum(d - 0.5, 0.0))
    b = shapely.line_interpolate_point(line, np.minimum(d + 0.5, line.length))
    pa, pb = shapely.get_coordinates(a), shapely.get_coordinates(b)
    return shapely.get_coordinates(p), _heading(pb[:, 0] - pa[:, 0], pb[:, 1] - pa[:, 1]), np.full(n, line.length / n)


@dataclass
class Join:
    """Twin link → SUMO edges. ``edges[link]`` = {edge id: share of the edge's length on that link} of the joined
    links; ``cover[link]`` the share of each link's length its edges cover (joined or not); ``edge_link`` the
    reverse map {edge id: {link: share}}."""

    edges: dict[int, dict[str, float]]
    cover: dict[int, float]
    edge_link: dict[str, dict[int, float]]


def join_links_to_edges(network: RoadNetwork, edges: dict[str, dict] | None = None) -> Join:
    """Which SUMO edges each twin link stands for.

    Rule (both networks come from the same OSM ways, but SUMO splits them at its own junctions, joins junction
    clusters and drops internal junction lanes, while the twin splits at intersections and merges chains):

    1. candidates share an OSM way id (the link's ``osm_id`` in the edge's ``osm_way_ids``) -- or, since a merged
       twin link keeps one way id only, any edge near the link (the geometric test decides);
    2. a SUMO edge belongs to the twin link when at least `JOIN_MIN_SHARE` of its length (sampled every 2 m) lies
       within `JOIN_DIST_M` of the link *and* runs within `JOIN_HEADING_DEG` of the link's direction at the nearest
       point (so the opposite carriageway of a two-way road, and crossing streets, never join); an edge meeting
       this for several links goes to the one it is closest to on average; an edge no single link holds (SUMO
       merged ways the twin keeps apart) but which lies `JOIN_MIN_SHARE` within reach of several is split among
       those holding at least `JOIN_SPLIT_SHARE` of it, each 2 m piece to the nearest link;
    3. the link is joined when its edges cover at least `JOIN_MIN_COVER` of its length (the share of the link's
       samples within `JOIN_DIST_M` of a joined edge, same direction).

    A link thus stands for one SUMO edge, part of one (split as above), or several consecutive edges. Tunnel
    edges join tunnel links by the same rule.
    """
    edges = edges or case.edges()
    crs = network.crs
    links = network.links
    link_geoms = links.geometry.to_numpy()
    tree = shapely.STRtree(link_geoms)

    def link_dir_at(k: int, pts: np.ndarray) -> np.ndarray:
        line = link_geoms[k]
        d = shapely.line_locate_point(line, shapely.points(pts))
        a = shapely.get_coordinates(shapely.line_interpolate_point(line, np.maximum(d - 1.0, 0.0)))
        b = shapely.get_coordinates(shapely.line_interpolate_point(line, np.minimum(d + 1.0, line.length)))
        return _heading(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1])

    edge_parts: dict[str, dict[int, float]] = {}
    edge_lines: dict[str, shapely.LineString] = {}
    for eid, f in edges.items():
        ll = np.asarray(f["geometry"]["coordinates"], float)
        x, y = geo.to_projected(ll[:, 0], ll[:, 1], crs)
        line = shapely.linestrings(np.column_stack([x, y]))
        if line.length <= 0:
            continue
        edge_lines[eid] = line
        pts, hdg, w = _samples(line)
        near = [int(k) for k in tree.query(line, predicate="dwithin", distance=JOIN_DIST_M)]
        if not near:
            continue
        dist = np.full((len(near), len(pts)), np.inf)
        for i, k in enumerate(near):
            d = shapely.distance(link_geoms[k], shapely.points(pts))
            diff = np.abs(np.angle(np.exp(1j * (hdg - link_dir_at(k, pts)))))
            dist[i] = np.where((d <= JOIN_DIST_M) & (diff <= math.radians(JOIN_HEADING_DEG)), d, np.inf)
        held = np.array([np.sum(w[np.isfinite(row)]) for row in dist]) / line.length
        mean_d = np.array([np.mean(row[np.isfinite(row)]) if np.isfinite(row).any() else np.inf for row in dist])
        whole = np.flatnonzero(held >= JOIN_MIN_SHARE)
        if whole.size:  # one link holds the edge: the closest of those that do
            edge_parts[eid] = {near[int(whole[np.argmin(mean_d[whole])])]: 1.0}
            continue
        nearest = np.argmin(dist, axis=0)  # the edge spans several links: each sample to its nearest link
        ok = np.isfinite(dist.min(axis=0))
        if np.sum(w[ok]) < JOIN_MIN_SHARE * line.length:
            continue
        share = np.bincount(nearest[ok], w[ok], minlength=len(near)) / np.sum(w[ok])
        edge_parts[eid] = {near[i]: float(share[i]) for i in np.flatnonzero(share >= JOIN_SPLIT_SHARE)}
    by_link: dict[int, dict[str, float]] = {}
    for eid, parts in edge_parts.items():
        total = sum(parts.values())
        for k, share in parts.items():
            by_link.setdefault(k, {})[eid] = share / total
    joined, cover = {}, {}
    for k, eids in by_link.items():
        line = link_geoms[k]
        pts, hdg, w = _samples(line)
        covered = np.zeros(len(pts), bool)
        for eid in eids:
            e = edge_lines[eid]
            dist = shapely.distance(e, shapely.points(pts))
            d = shapely.line_locate_point(e, shapely.points(pts))
            a = shapely.get_coordinates(shapely.line_interpolate_point(e, np.maximum(d - 1.0, 0.0)))
            b = shapely.get_coordinates(shapely.line_interpolate_point(e, np.minimum(d + 1.0, e.length)))
            diff = np.abs(np.angle(np.exp(1j * (hdg - _heading(b[:, 0] - a[:, 0], b[:, 1] - a[:, 1])))))
            covered |= (dist <= JOIN_DIST_M) & (diff <= math.radians(JOIN_HEADING_DEG))
        share = float(np.sum(w[covered]) / line.length)
        cover[k] = share
        if share >= JOIN_MIN_COVER:
            joined[k] = dict(sorted(eids.items()))
    edge_link: dict[str, dict[int, float]] = {}
    for k, eids in joined.items():
        for eid, share in eids.items():
            edge_link.setdefault(eid, {})[k] = share
    return Join(joined, cover, edge_link)


# ----------------------------------------------------------------------------------------- the comparison
@dataclass
class Comparison:
    """Per evaluated link-window: link, interval start, SUMO speed, perfect-probe speed, twin speed [km/h]."""

    run: str
    link: np.ndarray
    begin_s: np.ndarray
    sumo_kmh: np.ndarray
    probe_kmh: np.ndarray
    twin_kmh: np.ndarray

    @property
    def n(self) -> int:
        return int(self.link.size)

    @property
    def estimated(self) -> np.ndarray:
        return np.isfinite(self.twin_kmh)

    @property
    def share_estimated(self) -> float:
        return float(self.estimated.mean()) if self.n else math.nan

    def _err(self, est: np.ndarray) -> np.ndarray:
        ok = np.isfinite(est)
        return est[ok] - self.sumo_kmh[ok]

    @property
    def mae(self) -> float:
        return float(np.mean(np.abs(self._err(self.twin_kmh))))

    @property
    def bias(self) -> float:
        return float(np.mean(self._err(self.twin_kmh)))

    @property
    def floor_mae(self) -> float:
        return float(np.mean(np.abs(self._err(self.probe_kmh))))

    @property
    def floor_bias(self) -> float:
        return float(np.mean(self._err(self.probe_kmh)))

    def line(self) -> str:
        return (f"{self.run}: {self.n} link-windows, estimated {self.share_estimated:.1%}, twin MAE {self.mae:.2f} "
                f"km/h bias {self.bias:+.2f} km/h; perfect probes on the same link-windows MAE {self.floor_mae:.2f} "
                f"bias {self.floor_bias:+.2f}")


def probe_speed_kmh(ws: list[tuple[case.EdgeWindow, float]], edges: dict[str, dict]) -> float:
    """The probes' exact traversals over a link's joined edge-windows ``(window, share)``: Σ traversals x length /
    Σ (traversals x length / probe speed) [km/h]; NaN without any."""
    p = [(w, share) for w, share in ws if w.probe_traversals > 0 and math.isfinite(w.probe_speed_m_s)]
    dist = np.array([w.probe_traversals * edges[w.edge]["properties"]["length_m"] * share for w, share in p])
    tt = dist / np.array([w.probe_speed_m_s for w, _ in p]) if p else np.zeros(0)
    return float(dist.sum() / tt.sum()) * 3.6 if tt.sum() > 0 else math.nan


def compare(run: str, fed: Fed, join: Join, min_traversals: int = case.MIN_TRAVERSALS) -> Comparison:
    """The twin's ``link_speed_window`` at each interval's end against edgeData over the joined edges.

    SUMO side of a link-window: the joined edges' space-mean speed, total distance over total time, i.e.
    Σ sampledSeconds x speed / Σ sampledSeconds (each edge's distance travelled = speed x sampledSeconds), the
    same definition as the twin's Σ distance / Σ time; a split edge counts with its share of sampled seconds.
    The perfect-probe speed likewise: Σ probe traversals x length / Σ (probe traversals x length / probe speed)
    over the joined edges with probe traversals. A
    link-window is evaluated when its joined edges have at least ``min_traversals`` probe traversals in the
    interval (the largest count among its edges: a vehicle crossing the link crosses each of its edges, so the
    maximum counts vehicles, the sum would count them several times) and SUMO gives a speed there.
    """
    edges = case.edges()
    rows: dict[tuple[int, int], list[tuple[case.EdgeWindow, float]]] = {}
    for w in case.edgedata(run):
        for k, share in join.edge_link.get(w.edge, {}).items():
            rows.setdefault((k, w.begin_s), []).append((w, share))
    link, begin, sumo, probe, twin = [], [], [], [], []
    for (k, b), ws in sorted(rows.items()):
        if max(w.probe_traversals for w, _ in ws) < min_traversals:
            continue
        s = [(w, share) for w, share in ws if math.isfinite(w.speed_m_s) and w.sampled_seconds > 0]
        if not s:
            continue
        secs = np.array([w.sampled_seconds * share for w, share in s])
        v = float(np.sum(secs * [w.speed_m_s for w, _ in s]) / secs.sum()) * 3.6
        layers = fed.layers.get(b + case.INTERVAL_S)
        est = float(layers["link_speed_window"].values[k]) if layers is not None else math.nan
        link.append(k)
        begin.append(b)
        sumo.append(v)
        probe.append(probe_speed_kmh(ws, edges))
        twin.append(est)
    return Comparison(run, np.array(link, np.int64), np.array(begin, np.int64), np.array(sumo), np.array(probe),
                      np.array(twin))


# ----------------------------------------------------------------------------------------- the levels
FREE_LEVEL = 1
"""SUMO shows free flow on a link-window when its GB/T 33171 level is at most this: 0 smooth, 1 basically smooth."""
SEVERE_LEVEL = 4
"""GB/T 33171 level 4, severe: the twin should flag it orange or red."""
YELLOW_LEVEL = 3
"""GB/T 33171 level 3, moderate, is the twin's yellow (light 2 -> blue, moderate 3 -> yellow, severe 4 -> orange):
a flagged link-window is "truly at least yellow" when SUMO's level there is at least this."""
ORANGE = 3
"""``link_warning`` of orange (red is 4)."""


def sumo_levels(speed_kmh: np.ndarray, road_class: np.ndarray) -> np.ndarray:
    """GB/T 33171 level (0 smooth .. 4 severe, -1 no speed or class 0) of SUMO speeds [km/h] by the links' class
    code, with the twin's own bounds and kernel (`models.config.TrafficConfig.gbt_edges_ms`,
    `models.kernels.traffic.congestion_level`)."""
    speed = np.asarray(speed_kmh, float) / 3.6
    out = np.empty(speed.size, np.int8)
    tk.congestion_level(speed, np.asarray(road_class, np.int8), TrafficConfig().gbt_edges_ms(), out)
    return out


@dataclass
class LevelComparison:
    """Per link-window of a joined, evaluated link (GB/T class 1-4): the link, interval start, class, SUMO's speed
    [km/h] and GB/T level (NaN and -1 where SUMO had no vehicle with a speed on the link's edges: no traffic, so
    not congested), the largest probe-traversal count of its edges, and the twin's
    ``link_warning``: ``warn_max`` the highest over the window's ticks (``begin_s`` < t <= ``end_s``), ``warn_end`` at
    the window's end tick. ``probe_level`` is the GB/T level of the probes' exact traversals (`probe_speed_kmh`; -1
    without any): what a perfect probe estimator would see."""

    run: str
    link: np.ndarray
    begin_s: np.ndarray
    road_class: np.ndarray
    sumo_kmh: np.ndarray
    sumo_level: np.ndarray
    traversals: np.ndarray
    warn_max: np.ndarray
    warn_end: np.ndarray
    probe_level: np.ndarray

    @property
    def sumo_level_before(self) -> np.ndarray:
        """SUMO's level on the same link in the interval before (-1 for the first): the twin's speed at a tick is
        over the 5 minutes before it, so a flag early in an interval speaks of the interval before too."""
        prev = {(int(k), int(b)): int(v) for k, b, v in zip(self.link, self.begin_s, self.sumo_level, strict=True)}
        return np.array([prev.get((int(k), int(b) - case.INTERVAL_S), -1) for k, b in zip(self.link, self.begin_s,
                                                                                            strict=True)], np.int8)

    def figures(self, rule: str = "max", min_traversals: int = case.MIN_TRAVERSALS) -> dict:
        """The three level targets' counts under ``rule`` ("max" over the window's ticks, or "end")."""
        warn = self.warn_max if rule == "max" else self.warn_end
        flagged = warn >= ORANGE
        free = (self.sumo_level >= 0) & (self.sumo_level <= FREE_LEVEL)
        sampled = self.traversals >= min_traversals
        severe = (self.sumo_level == SEVERE_LEVEL) & sampled
        floor = severe & (self.probe_level == SEVERE_LEVEL)
        return {
            "severe_floor": int(floor.sum()), "severe_floor_flagged": int((floor & flagged).sum()),
            "free": int(free.sum()), "free_flagged": int((free & flagged).sum()),
            "free_sampled": int((free & sampled).sum()), "free_sampled_flagged": int((free & sampled & flagged).sum()),
            "severe": int(severe.sum()), "severe_flagged": int((severe & flagged).sum()),
            "flagged": int(flagged.sum()), "flagged_true": int((flagged & (self.sumo_level >= YELLOW_LEVEL)).sum()),
            "flagged_true_or_before": int((flagged & (np.maximum(self.sumo_level, self.sumo_level_before)
                                                      >= YELLOW_LEVEL)).sum()),
            "flagged_sampled": int((flagged & sampled).sum()),
            "flagged_sampled_true": int((flagged & sampled & (self.sumo_level >= YELLOW_LEVEL)).sum()),
        }

    def line(self, rule: str = "max") -> str:
        f = self.figures(rule)

        def pct(a: int, b: int) -> str:
            return f"{a}/{b} ({a / b:.1%})" if b else f"{a}/0"

        return (f"{self.run} [{rule}]: free-flow link-windows flagged orange/red {pct(f['free_flagged'], f['free'])} "
                f"(>= {case.MIN_TRAVERSALS} traversals {pct(f['free_sampled_flagged'], f['free_sampled'])}); "
                f"severe flagged {pct(f['severe_flagged'], f['severe'])} (of those severe for exact probe traversals "
                f"{pct(f['severe_floor_flagged'], f['severe_floor'])}); flagged truly >= yellow "
                f"{pct(f['flagged_true'], f['flagged'])} (in the interval or the one before "
                f"{pct(f['flagged_true_or_before'], f['flagged'])})")


def compare_levels(run: str, fed: Fed, join: Join, network: RoadNetwork) -> LevelComparison:
    """The twin's warning levels on every joined link in every interval beside SUMO's GB/T level (the SUMO speed of a
    link-window as in `compare`: its joined edges' Σ sampledSeconds x speed / Σ sampledSeconds; its class that
    of the twin's link, `twin.live.links.evaluated_class`, service ways left out)."""
    klass = evaluated_class(network.links)
    edges = case.edges()
    rows: dict[tuple[int, int], list[tuple[case.EdgeWindow, float]]] = {}
    for w in case.edgedata(run):
        for k, share in join.edge_link.get(w.edge, {}).items():
            rows.setdefault((k, w.begin_s), []).append((w, share))
    link, begin, sumo, trav, probe = [], [], [], [], []
    starts = range(case.WARMUP_S, case.WARMUP_S + case.MEASURE_S, case.INTERVAL_S)
    for k in sorted(join.edges):
        if klass[k] <= 0:
            continue
        for b in starts:
            ws = rows.get((k, b), [])
            s = [(w, share) for w, share in ws if math.isfinite(w.speed_m_s) and w.sampled_seconds > 0]
            secs = np.array([w.sampled_seconds * share for w, share in s])
            link.append(k)
            begin.append(b)
            sumo.append(float(np.sum(secs * [w.speed_m_s for w, _ in s]) / secs.sum()) * 3.6 if s else math.nan)
            trav.append(max((w.probe_traversals for w, _ in ws), default=0))
            probe.append(probe_speed_kmh(ws, edges))
    link_a, begin_a = np.array(link, np.int64), np.array(begin, np.int64)
    sumo_a = np.array(sumo)
    cls = klass[link_a]
    warn_max = np.full(link_a.size, -1, np.int8)
    warn_end = np.full(link_a.size, -1, np.int8)
    for b in np.unique(begin_a):
        at = begin_a == b
        ticks = (fed.tick_s > b) & (fed.tick_s <= b + case.INTERVAL_S)
        if not ticks.any():
            continue
        warn_max[at] = fed.warning[ticks][:, link_a[at]].max(axis=0)
        end = np.flatnonzero(ticks)[-1]
        warn_end[at] = fed.warning[end, link_a[at]]
    return LevelComparison(run, link_a, begin_a, cls, sumo_a, sumo_levels(sumo_a, cls), np.array(trav, np.int64),
                           warn_max, warn_end, sumo_levels(np.array(probe), cls))


def flagged_elsewhere(fed: Fed, join: Join, network: RoadNetwork) -> int:
    """Link-windows flagged orange or red (max over the window's ticks) on evaluated links with no SUMO edge joined
    (junction-short links, links the join could not hold): the level comparison cannot judge them."""
    klass = evaluated_class(network.links)
    other = np.ones(klass.size, bool)
    other[list(join.edges)] = False
    other &= klass > 0
    n = 0
    for b in range(case.WARMUP_S, case.WARMUP_S + case.MEASURE_S, case.INTERVAL_S):
        ticks = (fed.tick_s > b) & (fed.tick_s <= b + case.INTERVAL_S)
        if ticks.any():
            n += int(((fed.warning[ticks].max(axis=0) >= ORANGE) & other).sum())
    return n
