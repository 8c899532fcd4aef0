"""HMM map matching of Beidou probe fixes to directed road links, link traversals and space-mean link speeds.

docs/science/traffic.md 3.7. Works on plain arrays in a projected CRS (metres), independent of how the road
network is built:

* nodes: ``node_xy`` (n_nodes, 2) [m];
* directed links: ``link_u``, ``link_v`` (node ids), ``link_length`` [m], polyline vertices ``vert_xy`` (m, 2)
  [m] with offsets ``link_vert_start`` (n_links + 1): link k runs along ``vert_xy[link_vert_start[k]:
  link_vert_start[k + 1]]`` in its direction of travel.

:class:`RoadGraph` holds them, a grid index of the link segments and shortest route distances (scipy's
Dijkstra, bounded, cached per source node). :class:`MapMatcher` is the hidden Markov model of Newson & Krumm
(2009), online per vehicle with a fixed lag (:meth:`MapMatcher.push`) or over a whole trace
(:meth:`MapMatcher.match_trace`); it also cuts each vehicle's matched path into per-link *pieces* (link, entry and
exit time, distance covered). :class:`LinkSpeeds` turns pieces into each link's space-mean speed over a sliding
window: total distance over total time, never a mean of spot speeds.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np
import xarray as xr
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from models._component import Component, Reference, Var
from models.kernels import mapmatch as km
from models.kernels import traffic as tk

NEWSON_KRUMM = Reference("Newson, P., Krumm, J. (2009). Hidden Markov map matching through noise and sparseness. "
                         "Proc. 17th ACM SIGSPATIAL GIS, 336-343.", "10.1145/1653771.1653818")
WARDROP = Reference("Wardrop, J. G. (1952). Some theoretical aspects of road traffic research. Proc. Inst. "
                    "Civ. Eng. 1(3), 325-362 (time- and space-mean speed).", "10.1680/ipeds.1952.11259")

LINK_DIMS = ("link",)
PIECE_DIMS = ("piece",)


@dataclass(frozen=True, kw_only=True)
class MapMatchConfig:
    """Parameters of the map matcher and of the link speeds (evidence tags of docs/science/README.md).

    HMM (Newson & Krumm 2009): ``sigma_z`` [m] standard deviation of the fix noise in the Gaussian emission, 5 m
    (Newson & Krumm estimate 4.07 m for their GPS [src: Valhalla Meili's defaults 4.07 and 3, taken from the
    paper]; Beidou single-frequency fixes in streets 2-10 m [mem]). ``radius`` 50 m candidate search and
    ``max_candidates`` 8 per fix [design; Newson & Krumm use 200 m]. Transition exp(-|route - straight| / beta),
    ``beta = beta0 + beta_rate * dt``: beta0 3 m (Newson & Krumm's value at short intervals [src: Meili default])
    plus beta_rate 2 m per second of interval [design: the paper shows beta growing with the sampling period,
    which corner cutting at 5-30 s needs]. Heading: a von Mises-like term ``kappa (cos(course - heading) - 1)``
    with ``heading_kappa`` 2 [design], only above ``heading_min_speed`` 2 m s-1 (below it a receiver's course is
    noise [mem]). ``uturn_penalty`` 30 m added to a U-turn's route [design]; ``backtrack`` 20 m: a fix this far
    behind the previous one on the same link is noise, not a route around the block [design]; it is held at the
    previous position, and when the fix reports the vehicle moving (faster than 2 x ``stand_speed``) the interval
    gives no piece: a moving vehicle matched in place is a matching error, not a stop [design]. Standing still: a
    fix slower than ``stand_speed`` 1 m s-1 and within 6 sigma_z of the last step's mean position (with no speed:
    within 2 sigma_z, Newson & Krumm's rule) joins the previous step: the same matched position, no travel
    [design]; a slow fix far from the last one is a moving vehicle sampled while stopped and is matched.
    Routes: at most ``route_factor`` 3 x the straight distance + ``route_extra`` 300 m, and never more than
    ``max_route`` 10 km [design]; when both fixes report their speed, a route is also at most ``speed_factor`` 1.5 x
    the faster of the two + ``speed_slack`` 5 m s-1, times the interval, + 4 sigma_z [design: a detour around a
    divided road or a block that would need a speed the vehicle never reported is not its route]; a silence longer
    than ``max_gap`` 300 s starts a new chain [design]. A silence longer than ``max_speed_gap`` 60 s is bridged for
    the matching but gives no pieces unless at least half of the route across it is in tunnels (links below the
    ground) [design: twice the longest reporting interval issue 15 names (30 s); a longer silence in the open is
    an outage, and how the vehicle split that time along its route is unknown: spread evenly over the route it put
    a vehicle's minutes of standing onto links it crossed at speed (found on SUMO's teleported vehicles)].
    ``lag`` 2: a fix is decided once this many later fixes of its vehicle have been seen [design].
    Altitude (elevated roads and tunnels over or under surface roads, issue 15): when a fix has an altitude ``alt``
    [m above the geoid, NMEA GGA] and the ground altitude is known, the emission gets a Gaussian term
    ``-0.5 ((alt - ground - link_height) / sigma_alt)^2`` with each link's height above the ground (`RoadGraph`
    ``link_height``). ``sigma_alt`` 10 m [mem: single-frequency GNSS vertical errors are about 1.5-2 x the
    horizontal ones; Beidou in streets 5-10 m horizontal -- design value, with the urban canyon's multipath].
    The ground altitude is ``ground_alt`` [m above the geoid] when given (the twin's ground level), else one for the
    whole district, estimated as the median of the altitude minus the matched link's height over the last
    ``ground_samples`` 500 decided fixes with an altitude, once there are ``ground_min`` 30 [design: one value,
    not one per vehicle: the district is a few km across, flat to a metre or two in Shanghai, and a per-vehicle
    estimate would learn a wrong match as its own offset; a median, so that a minority of wrong matches and
    altitude outliers do not move it; a receiver biased by metres, e.g. one sending ellipsoidal heights, is
    within sigma_alt]. No altitude, or no ground yet: no term (heading and route only, as before).

    Link speeds: ``window`` 300 s sliding (issue 15: 5 min); a link-window is estimated with at least
    ``min_vehicles`` 2 distinct vehicles and ``min_pieces`` 1 piece [design: one vehicle's pieces are not
    independent -- one driver, one signal wait; a single car queuing at a stop line must not set the link's
    speed]; ``ewma_alpha`` 0.5 per window length (with a tick of dt the weight is 1 - (1 - alpha)^(dt/window), so
    the smoothing does not depend on the tick) [design, as TrafficConfig.ewma_alpha].
    Stop-line waits (issue 15: stopping at a signal is normal): a vehicle's time on a link in pieces slower than
    ``stop_speed`` 1 m s-1 is its stopped time there. When its stops on the link span at most ``signal_cycle`` 120 s
    (first start to last end) and it then drove on, it waited at a signal that cleared within one cycle, and that
    wait is left out of ``link_speed_congestion`` (the speed the congestion levels use), never out of ``link_speed``.
    Its running speed between the stops must be at least ``run_speed`` 20 km/h (slow *only* at the stop line) [design:
    the GB/T 33171 moderate bound of an arterial; a vehicle crawling between stops is in a queue, not at a red
    light]. Stops spread over more than a cycle, or a wait still going at the window's end, are queueing and count
    [design: Shanghai's arterial signal cycles are 90-180 s [mem]; the pieces carry no position on the link, so such
    a single short stop anywhere on the link counts as the stop line's].
    """

    sigma_z: float = 5.0
    radius: float = 50.0
    max_candidates: int = 8
    beta0: float = 3.0
    beta_rate: float = 2.0
    heading_kappa: float = 2.0
    heading_min_speed: float = 2.0
    uturn_penalty: float = 30.0
    backtrack: float = 20.0
    stand_speed: float = 1.0
    route_factor: float = 3.0
    route_extra: float = 300.0
    speed_factor: float = 1.5
    speed_slack: float = 5.0
    max_route: float = 10_000.0
    max_gap: float = 300.0
    max_speed_gap: float = 60.0
    lag: int = 2
    window: float = 300.0
    signal_cycle: float = 120.0
    stop_speed: float = 1.0
    run_speed: float = 20.0 / 3.6
    min_vehicles: int = 2
    min_pieces: int = 1
    ewma_alpha: float = 0.5
    sigma_alt: float = 10.0
    ground_alt: float = math.nan
    ground_samples: int = 500
    ground_min: int = 30


# ===================================================================================================== graph
class RoadGraph:
    """Directed road links as arrays, a grid index of their segments and bounded shortest routes.

    ``kernels`` is the module of the geometric kernels: :mod:`models.kernels.mapmatch` (numba, default) or its
    numpy reference :mod:`models.reference.mapmatch` (tests, benchmark baseline). ``link_height`` is each link's
    height above the ground [m] (elevated roads up, tunnels down; default 0: all at ground level).
    """

    def __init__(self, node_xy, link_u, link_v, link_length, vert_xy, link_vert_start, *, link_height=None,
                 cell_size: float = 100.0, cache_mb: float = 64.0, kernels: Any = km):
        self.node_xy = np.ascontiguousarray(node_xy, float).reshape(-1, 2)
        self.link_u = np.ascontiguousarray(link_u, np.int64)
        self.link_v = np.ascontiguousarray(link_v, np.int64)
        self.link_length = np.ascontiguousarray(link_length, float)
        self.vert_xy = np.ascontiguousarray(vert_xy, float).reshape(-1, 2)
        self.link_vert_start = np.ascontiguousarray(link_vert_start, np.int64)
        self.kernels = kernels
        n, nn = self.link_u.size, self.node_xy.shape[0]
        if not (self.link_v.size == self.link_length.size == n and self.link_vert_start.size == n + 1):
            raise ValueError("road graph: link_u, link_v, link_length and link_vert_start (n + 1) disagree")
        if n and (min(self.link_u.min(), self.link_v.min()) < 0 or max(self.link_u.max(), self.link_v.max()) >= nn):
            raise ValueError("road graph: a link names a node that does not exist")
        if np.any(np.diff(self.link_vert_start) < 2) or self.link_vert_start[-1] != self.vert_xy.shape[0]:
            raise ValueError("road graph: every link needs >= 2 vertices and link_vert_start must end at len(vert_xy)")
        if np.any(~(self.link_length > 0)):
            raise ValueError("road graph: link lengths must be > 0")
        self.link_height = np.zeros(n) if link_height is None else np.ascontiguousarray(link_height, float)
        if self.link_height.shape != (n,) or not np.isfinite(self.link_height).all():
            raise ValueError("road graph: link_height needs one finite height per link")
        self.link_tunnel = self.link_height < 0.0
        """Links below the ground: tunnels, where a receiver is expected to have no fix."""
        d = np.diff(self.vert_xy, axis=0)
        seg = np.hypot(d[:, 0], d[:, 1])
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        geom = cum[self.link_vert_start[1:] - 1] - cum[self.link_vert_start[:-1]]
        self.scale = np.where(geom > 0, self.link_length / np.where(geom > 0, geom, 1.0), 1.0)
        """Metres of ``link_length`` per metre of polyline (offsets are reported in ``link_length`` metres)."""
        # grid index
        lo, hi = self.vert_xy.min(axis=0), self.vert_xy.max(axis=0)
        self.cell_size = float(cell_size)
        self.x0, self.y0 = float(lo[0]), float(lo[1])
        self.nx = max(1, math.ceil((hi[0] - lo[0]) / cell_size) + 1)
        self.ny = max(1, math.ceil((hi[1] - lo[1]) / cell_size) + 1)
        self.cell_start, self.cell_link = kernels.grid_index(self.vert_xy, self.link_vert_start, self.x0, self.y0,
                                                             self.cell_size, self.nx, self.ny)
        # graph: the shortest link of each (u, v) pair
        order = np.lexsort((self.link_length, self.link_v, self.link_u))
        first = np.ones(n, bool)
        first[1:] = (np.diff(self.link_u[order]) != 0) | (np.diff(self.link_v[order]) != 0)
        best = order[first]
        self.csgraph = csr_matrix((self.link_length[best], (self.link_u[best], self.link_v[best])), shape=(nn, nn))
        self.pair_link = {(int(u), int(v)): int(k) for u, v, k in zip(self.link_u[best], self.link_v[best], best,
                                                                       strict=True)}
        self.reverse = np.array([self.pair_link.get((int(v), int(u)), -1) for u, v in zip(self.link_u, self.link_v,
                                                                                            strict=True)], np.int64)
        """The opposite link of each link (v -> u), -1 where the street is one-way: where U-turns are possible."""
        self._cache: OrderedDict[int, tuple[float, np.ndarray, np.ndarray]] = OrderedDict()
        self._cache_max = max(64, int(cache_mb * 1e6 // max(12 * nn, 1)))
        self.dijkstra_calls = 0
        self.min_limit = 1500.0
        """Shortest routes are searched at least this far [m], so one search serves most later requests."""

    @property
    def n_links(self) -> int:
        return int(self.link_u.size)

    # ------------------------------------------------------------------ geometry
    def candidates(self, x, y, radius: float, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(link, distance [m], offset [m along link_length], heading [rad]) arrays (n, k) of the links within
        ``radius`` [m] of each point, nearest first, -1 / inf / NaN padded."""
        x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
        link = np.empty((x.size, k), np.int64)
        dist, off, head = np.empty((x.size, k)), np.empty((x.size, k)), np.empty((x.size, k))
        self.kernels.link_candidates(x, y, float(radius), self.vert_xy, self.link_vert_start, self.x0, self.y0,
                                     self.cell_size, self.nx, self.ny, self.cell_start, self.cell_link, link, dist,
                                     off, head)
        return link, dist, off * self.scale[np.maximum(link, 0)], head

    def project(self, x, y, link) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distance [m], offset [m along link_length], heading [rad]) of points onto the given links."""
        x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
        link = np.atleast_1d(np.asarray(link, np.int64))
        d, off, h = np.empty(x.size), np.empty(x.size), np.empty(x.size)
        self.kernels.project_points(x, y, link, self.vert_xy, self.link_vert_start, d, off, h)
        return d, off * self.scale[np.maximum(link, 0)], h

    def point_at(self, link: int, offset: float) -> tuple[float, float, float]:
        """(x, y, heading) at ``offset`` [m along link_length] on ``link``."""
        a, b = self.link_vert_start[link], self.link_vert_start[link + 1]
        p = self.vert_xy[a:b]
        d = np.diff(p, axis=0)
        cum = np.concatenate([[0.0], np.cumsum(np.hypot(d[:, 0], d[:, 1]))])
        s = min(max(offset / self.scale[link], 0.0), cum[-1])
        i = int(min(np.searchsorted(cum, s, "right") - 1, d.shape[0] - 1))
        f = (s - cum[i]) / (cum[i + 1] - cum[i]) if cum[i + 1] > cum[i] else 0.0
        return float(p[i, 0] + f * d[i, 0]), float(p[i, 1] + f * d[i, 1]), float(math.atan2(d[i, 1], d[i, 0]))

    # ------------------------------------------------------------------ routes
    def _sssp(self, nodes: np.ndarray, limit: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """(distance, predecessor) arrays from each node, exact up to ``limit`` [m] (inf beyond), cached."""
        need = sorted({int(s) for s in nodes if int(s) not in self._cache or self._cache[int(s)][0] < limit})
        if need:
            self.dijkstra_calls += 1
            limit = max(limit, self.min_limit)
            dist, pred = dijkstra(self.csgraph, indices=need, limit=limit, return_predecessors=True)
            for i, s in enumerate(need):
                self._cache[s] = (limit, dist[i], pred[i])
        out = []
        for s in nodes:
            self._cache.move_to_end(int(s))
            out.append(self._cache[int(s)][1:])
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return out

    def route_matrix(self, la, oa, lb, ob, limit: float, backtrack: float, uturn_penalty: float) -> np.ndarray:
        """Route distance [m] from each position (la, oa) to each (lb, ob) along the directed links, (m, n).

        Forward on the same link: ob - oa; up to ``backtrack`` [m] behind on the same link: 0 (fix noise: the
        vehicle held its position; not a route around the block); onto the opposite link: |ob - (L - oa)| +
        ``uturn_penalty`` (a U-turn where the vehicle is: never longer than one at the next node or around the
        block); otherwise the rest of link a, the shortest path between the links' nodes and ob. inf beyond
        ``limit`` [m] or with no route.
        """
        la, lb = np.asarray(la, np.int64), np.asarray(lb, np.int64)
        oa, ob = np.asarray(oa, float), np.asarray(ob, float)
        rows = self._sssp(self.link_v[la], limit)
        node = np.array([r[0] for r in rows]).reshape(la.size, -1)
        route = (self.link_length[la] - oa)[:, None] + node[:, self.link_u[lb]] + ob[None, :]
        same = la[:, None] == lb[None, :]
        step = ob[None, :] - oa[:, None]
        route = np.where(same & (step >= -backtrack), np.maximum(step, 0.0), route)  # behind: held, no travel
        uturn = np.abs(ob[None, :] - (self.link_length[la] - oa)[:, None]) + uturn_penalty  # never longer
        route = np.where(self.reverse[la][:, None] == lb[None, :], uturn, route)
        return np.where(route <= limit, route, np.inf)

    def path_pieces(self, la: int, oa: float, lb: int, ob: float, limit: float, backtrack: float,
                    uturn_penalty: float) -> list[tuple[int, float, float]] | None:
        """The links driven from (la, oa) to (lb, ob) as (link, from offset, to offset) [m], by the route
        :meth:`route_matrix` prices; None when there is none within ``limit`` [m]."""
        length = self.link_length
        if la == lb and ob >= oa - backtrack:
            return [(la, oa, max(oa, ob))]  # backwards on one link is noise: the vehicle holds its position
        if self.reverse[la] == lb:  # a U-turn where the vehicle turned: never longer than one at the node
            p = max(oa, length[la] - ob)  # turn at offset p of link a
            return [(la, oa, p), (lb, length[la] - p, ob)]
        cached = self._cache.get(int(self.link_v[la]))
        if cached is not None and np.isfinite(cached[1][self.link_u[lb]]):
            via = cached[1:]  # exact: the target lies within the limit it was computed to
        else:
            via = self._sssp(np.array([self.link_v[la]]), limit)[0]
        d_node = via[0][self.link_u[lb]]
        general = (length[la] - oa) + d_node + ob
        if not general <= limit:
            return None
        nodes = [int(self.link_u[lb])]
        src = int(self.link_v[la])
        while nodes[-1] != src:
            nodes.append(int(via[1][nodes[-1]]))
        nodes.reverse()
        mid = [(self.pair_link[(u, v)], 0.0, float(length[self.pair_link[(u, v)]]))
               for u, v in pairwise(nodes)]
        return [(la, oa, float(length[la])), *mid, (lb, 0.0, ob)]


# ===================================================================================================== matcher
class Match(NamedTuple):
    """One decided fix: its vehicle and time [s], matched link (-1: no candidate within the radius), offset along
    the link [m], the matched point [m] and the chain it belongs to (a break starts a new chain)."""

    vehicle: Any
    t: float
    link: int
    offset: float
    x: float
    y: float
    chain: int


@dataclass
class _Step:
    """One HMM time step: a fix (and the standing fixes merged into it) with its candidates."""

    t: list[float]
    x: float
    y: float
    link: np.ndarray
    offset: np.ndarray
    emit: np.ndarray
    score: np.ndarray
    back: np.ndarray
    trans: np.ndarray | None = None  # log transition from the previous step's candidates (m_prev, m)
    speed: float = math.nan  # speed over ground of the fix [m s-1], NaN unknown
    alt: float = math.nan  # altitude of the fix [m above the geoid] (mean over the standing fixes), NaN unknown
    n_alt: int = 0  # fixes with an altitude in it


@dataclass
class _Track:
    steps: list[_Step] = field(default_factory=list)  # steps[0] may be the anchor: decided, one candidate
    anchored: bool = False
    chain: int = 0
    last: tuple[int, float, float, int] | None = None  # last emitted (link, held offset, t, chain)
    last_t: float = -math.inf


class MapMatcher:
    """HMM map matching after Newson & Krumm (2009), online per vehicle with a fixed lag.

    Emission: exp(-0.5 (d / sigma_z)^2) for a fix d metres from a candidate link, times exp(kappa (cos(course -
    heading) - 1)) when the fix moves faster than ``heading_min_speed``, times exp(-0.5 ((alt - ground - link
    height) / sigma_alt)^2) when the fix has an altitude and the ground altitude is known (`MapMatchConfig`; the
    estimated ground is shared by all vehicles, so a trace's matches may depend on the fixes decided before it).
    Transition: exp(-|route - straight| / beta) with the route distance along the directed links and the straight
    distance between the two fixes. Viterbi in log space (:func:`models.kernels.mapmatch.viterbi_step`).

    :meth:`push` adds one fix of a vehicle and returns the matches decided by it (each fix ``lag`` fixes late);
    :meth:`flush` decides the rest. Every decided pair of consecutive matches of a chain is cut into per-link
    pieces (:meth:`pop_pieces`): the route between them, with entry and exit times interpolated by distance, so a
    gap (a tunnel without fix) is bridged along the shortest route. ``counts`` has the fixes, matched fixes,
    unmatched fixes (no link within the radius), standing fixes merged, and the chain breaks (``break_route``: no
    route within the limit; ``break_gap``: silence longer than ``max_gap``).
    """

    def __init__(self, graph: RoadGraph, config: MapMatchConfig | None = None):
        self.graph = graph
        self.config = config or MapMatchConfig()
        self.tracks: dict[Any, _Track] = {}
        self.vehicle_code: dict[Any, int] = {}
        self._pieces: list[tuple[int, int, float, float, float]] = []
        self._chains = 0
        self.counts = dict.fromkeys(("fixes", "matched", "unmatched", "standing", "break_route", "break_gap",
                                     "held_moving", "gap_no_speed"), 0)
        self._ground: deque[float] = deque(maxlen=max(1, self.config.ground_samples))
        """Altitude minus matched link height of the last decided fixes with an altitude [m]."""
        self._ground_est, self._ground_new = math.nan, 0

    # ------------------------------------------------------------------ public
    def ground(self) -> float:
        """The ground altitude the emission uses [m above the geoid]: ``ground_alt`` when given, else the median of
        the decided fixes' altitude minus their link's height (NaN until ``ground_min`` of them)."""
        cfg = self.config
        if math.isfinite(cfg.ground_alt):
            return cfg.ground_alt
        if len(self._ground) < cfg.ground_min:
            return math.nan
        if self._ground_new >= 10 or math.isnan(self._ground_est):  # refreshed every 10 new samples
            self._ground_est, self._ground_new = float(np.median(np.fromiter(self._ground, float))), 0
        return self._ground_est

    def _alt_term(self, alt: float, link: np.ndarray) -> np.ndarray | float:
        """Log emission of the altitude on each candidate link (0 without altitude or ground)."""
        if not math.isfinite(alt):
            return 0.0
        ground = self.ground()
        if math.isnan(ground):
            return 0.0
        return -0.5 * ((alt - ground - self.graph.link_height[link]) / self.config.sigma_alt) ** 2

    def push(self, vehicle, t: float, x: float, y: float, speed: float = math.nan,
             course: float = math.nan, alt: float = math.nan) -> list[Match]:
        """Add a fix: time [s], position [m], speed over ground [m s-1], course [degrees clockwise from north,
        as NMEA] and altitude [m above the geoid, as NMEA GGA] (NaN: unknown). Fixes of one vehicle must come in
        time order. Returns the matches it decided."""
        cfg, out = self.config, []
        self.counts["fixes"] += 1
        tr = self.tracks.get(vehicle)
        if tr is None:
            tr = self.tracks[vehicle] = _Track(chain=self._new_chain())
            self.vehicle_code.setdefault(vehicle, len(self.vehicle_code))
        if t - tr.last_t > cfg.max_gap and tr.steps:
            out += self._decide(vehicle, tr, len(tr.steps))
            self.counts["break_gap"] += 1
            tr.steps, tr.anchored, tr.chain = [], False, self._new_chain()
        tr.last_t = t
        prev = tr.steps[-1] if tr.steps else None
        moved = math.hypot(x - prev.x, y - prev.y) if prev is not None else math.inf
        standing = moved <= 6 * cfg.sigma_z and speed < cfg.stand_speed if np.isfinite(speed) else \
            moved < 2 * cfg.sigma_z
        if prev is not None and standing:
            d, _o, _h = self.graph.project(np.full(prev.link.size, x), np.full(prev.link.size, y), prev.link)
            n = len(prev.t)
            prev.x, prev.y = (prev.x * n + x) / (n + 1), (prev.y * n + y) / (n + 1)  # the mean position
            prev.t.append(t)
            add = -0.5 * (d / cfg.sigma_z) ** 2 + self._alt_term(alt, prev.link)
            prev.emit, prev.score = prev.emit + add, prev.score + add
            if math.isfinite(alt):
                prev.n_alt += 1
                prev.alt = alt if prev.n_alt == 1 else prev.alt + (alt - prev.alt) / prev.n_alt
            self.counts["standing"] += 1
            return out
        link, dist, off, head = self.graph.candidates(x, y, cfg.radius, cfg.max_candidates)
        ok = link[0] >= 0
        if not ok.any():
            self.counts["unmatched"] += 1
            return [*out, Match(vehicle, t, -1, math.nan, math.nan, math.nan, tr.chain)]
        emit = -0.5 * (dist[0, ok] / cfg.sigma_z) ** 2
        if np.isfinite(speed) and speed > cfg.heading_min_speed and np.isfinite(course):
            emit = emit + cfg.heading_kappa * (np.cos(math.radians(90.0 - course) - head[0, ok]) - 1.0)
        emit = emit + self._alt_term(alt, link[0, ok])
        has_alt = math.isfinite(alt)
        step = _Step([t], x, y, link[0, ok], off[0, ok], emit, emit.copy(), np.full(ok.sum(), -1, np.int64),
                     speed=float(speed), alt=float(alt) if has_alt else math.nan, n_alt=int(has_alt))
        if prev is not None:
            straight = math.hypot(x - prev.x, y - prev.y)
            dt = max(t - prev.t[-1], 0.0)
            limit = min(cfg.max_route, cfg.route_factor * straight + cfg.route_extra)
            if np.isfinite(speed) and np.isfinite(prev.speed):
                fastest = cfg.speed_factor * max(speed, prev.speed) + cfg.speed_slack
                limit = min(limit, fastest * (t - prev.t[0]) + 4.0 * cfg.sigma_z)
            route = self.graph.route_matrix(prev.link, prev.offset, step.link, step.offset, limit, cfg.backtrack,
                                            cfg.uturn_penalty)
            step.trans = -np.abs(route - straight) / (cfg.beta0 + cfg.beta_rate * dt)
            self.graph.kernels.viterbi_step(prev.score, step.trans, step.emit, step.score, step.back)
            if not np.isfinite(step.score).any():  # no route from any candidate: decide all, new chain
                out += self._decide(vehicle, tr, len(tr.steps))
                self.counts["break_route"] += 1
                tr.steps, tr.anchored, tr.chain = [], False, self._new_chain()
                step.score, step.back, step.trans = emit.copy(), np.full(emit.size, -1, np.int64), None
            else:
                step.score -= step.score.max()
        tr.steps.append(step)
        pending = len(tr.steps) - (1 if tr.anchored else 0)
        if pending > cfg.lag:
            out += self._decide(vehicle, tr, 1)
        return out

    def flush(self, vehicle=None) -> list[Match]:
        """Decide every pending fix (of one vehicle, or of all) and forget the vehicle(s)."""
        out = []
        for v in [vehicle] if vehicle is not None else list(self.tracks):
            tr = self.tracks.pop(v, None)
            if tr is not None:
                out += self._decide(v, tr, len(tr.steps))
        return out

    def expire(self, now: float) -> list[Match]:
        """Flush the vehicles silent for longer than ``max_gap`` [s] before ``now`` [s]."""
        old = [v for v, tr in self.tracks.items() if now - tr.last_t > self.config.max_gap]
        return [m for v in old for m in self.flush(v)]

    def pop_pieces(self) -> dict[str, np.ndarray]:
        """The traversal pieces decided since the last call: ``vehicle`` (int code, see ``vehicle_code``), ``link``,
        ``t_enter``, ``t_exit`` [s] and ``length`` [m] (distance covered on the link)."""
        p = np.array(self._pieces, float).reshape(-1, 5)
        self._pieces = []
        return {"vehicle": p[:, 0].astype(np.int64), "link": p[:, 1].astype(np.int64), "t_enter": p[:, 2],
                "t_exit": p[:, 3], "length": p[:, 4]}

    def match_trace(self, t, x, y, speed=None, course=None, alt=None
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Match one vehicle's whole trace (in time order); returns (matches, pieces) as dicts of arrays.

        ``matches`` has per fix ``link`` (-1 unmatched), ``offset`` [m], ``x``, ``y`` [m] (the matched point) and
        ``chain``; ``pieces`` as :meth:`pop_pieces`. Other vehicles' state and pieces are left as they are.
        """
        t, x, y = (np.asarray(a, float) for a in (t, x, y))
        speed = np.full(t.size, np.nan) if speed is None else np.asarray(speed, float)
        course = np.full(t.size, np.nan) if course is None else np.asarray(course, float)
        alt = np.full(t.size, np.nan) if alt is None else np.asarray(alt, float)
        key, saved = object(), self._pieces
        self._pieces = []
        ms = []
        for i in range(t.size):
            ms += self.push(key, t[i], x[i], y[i], speed[i], course[i], alt[i])
        ms += self.flush(key)
        pieces = self.pop_pieces()
        self._pieces = saved
        self.vehicle_code.pop(key, None)
        matches = {"link": np.array([m.link for m in ms], np.int64), "offset": np.array([m.offset for m in ms]),
                   "x": np.array([m.x for m in ms]), "y": np.array([m.y for m in ms]),
                   "chain": np.array([m.chain for m in ms], np.int64)}
        return matches, pieces

    # ------------------------------------------------------------------ snapshots
    def save_state(self) -> dict[str, Any]:
        """Every vehicle's pending window and the vehicle codes, packed into flat arrays (a few dozen arrays
        whatever the fleet): restored with :meth:`restore_state`, the next fixes continue their chains."""
        ids = list(self.tracks)
        tracks = [self.tracks[v] for v in ids]
        steps = [s for tr in tracks for s in tr.steps]
        last = [tr.last if tr.last is not None else (-1, math.nan, math.nan, -1) for tr in tracks]
        trans = [s.trans if s.trans is not None else np.zeros((0, 0)) for s in steps]

        def cat(name: str, dtype) -> np.ndarray:
            parts = [np.asarray(getattr(s, name), dtype) for s in steps]
            return np.concatenate(parts) if parts else np.zeros(0, dtype)

        return {"vehicles": np.array([str(v) for v in ids], dtype=str),
                "anchored": np.array([tr.anchored for tr in tracks], bool),
                "chain": np.array([tr.chain for tr in tracks], np.int64),
                "last_t": np.array([tr.last_t for tr in tracks], float),
                "last": np.array(last, float).reshape(-1, 4), "n_steps": np.array([len(tr.steps) for tr in tracks],
                                                                                  np.int64),
                "step_nt": np.array([len(s.t) for s in steps], np.int64), "step_t": cat("t", float),
                "step_xy": np.array([(s.x, s.y, s.speed, s.alt, s.n_alt) for s in steps], float).reshape(-1, 5),
                "ground": np.fromiter(self._ground, float), "ground_est": np.array([self._ground_est]),
                "ground_new": int(self._ground_new),
                "step_m": np.array([s.link.size for s in steps], np.int64),
                "link": cat("link", np.int64), "offset": cat("offset", float), "emit": cat("emit", float),
                "score": cat("score", float), "back": cat("back", np.int64),
                "trans_shape": np.array([t.shape if s.trans is not None else (-1, -1)
                                         for s, t in zip(steps, trans, strict=True)], np.int64).reshape(-1, 2),
                "trans": np.concatenate([t.ravel() for t in trans]) if trans else np.zeros(0),
                "codes": {"vehicles": np.array([str(v) for v in self.vehicle_code], dtype=str),
                          "code": np.array(list(self.vehicle_code.values()), np.int64)},
                "chains": int(self._chains), "counts": dict(self.counts)}

    def restore_state(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`save_state` gave (vehicle ids come back as strings)."""
        st = {k: (np.asarray(v) if not isinstance(v, dict | int) else v) for k, v in state.items()}
        self.vehicle_code = {str(v): int(c) for v, c in zip(st["codes"]["vehicles"], st["codes"]["code"],
                                                            strict=True)}
        self._chains, self.counts = int(st["chains"]), {k: int(v) for k, v in st["counts"].items()}
        t_at = np.concatenate([[0], np.cumsum(st["step_nt"])])
        m_at = np.concatenate([[0], np.cumsum(st["step_m"])])
        shapes = st["trans_shape"].reshape(-1, 2)
        tr_at = np.concatenate([[0], np.cumsum(np.where(shapes[:, 0] >= 0, shapes.prod(axis=1), 0))])
        xy = np.asarray(st["step_xy"], float)
        n_steps = int(np.asarray(st["step_nt"]).size)
        xy = xy.reshape(n_steps, xy.size // n_steps if n_steps else 5)
        if xy.shape[1] == 3:  # a snapshot from before fixes had an altitude
            xy = np.column_stack([xy, np.full(len(xy), np.nan), np.zeros(len(xy))])
        self._ground.clear()
        self._ground.extend(np.asarray(st.get("ground", np.zeros(0)), float).tolist())
        self._ground_est = float(np.asarray(st.get("ground_est", math.nan), float).ravel()[0])
        self._ground_new = int(np.asarray(st.get("ground_new", 0)).ravel()[0])
        self.tracks, k = {}, 0
        for i, vid in enumerate(st["vehicles"]):
            link, offset, t, chain = st["last"].reshape(-1, 4)[i]
            tr = _Track(anchored=bool(st["anchored"][i]), chain=int(st["chain"][i]), last_t=float(st["last_t"][i]),
                        last=None if link < 0 else (int(link), float(offset), float(t), int(chain)))
            for _ in range(int(st["n_steps"][i])):
                a, b = m_at[k], m_at[k + 1]
                x, y, speed, alt, n_alt = xy[k]
                trans = None if shapes[k, 0] < 0 else st["trans"][tr_at[k]:tr_at[k + 1]].reshape(shapes[k])
                tr.steps.append(_Step([float(v) for v in st["step_t"][t_at[k]:t_at[k + 1]]], float(x), float(y),
                                      st["link"][a:b].astype(np.int64), st["offset"][a:b].astype(float),
                                      st["emit"][a:b].astype(float), st["score"][a:b].astype(float),
                                      st["back"][a:b].astype(np.int64), trans, float(speed), float(alt), int(n_alt)))
                k += 1
            self.tracks[str(vid)] = tr

    # ------------------------------------------------------------------ internals
    def _new_chain(self) -> int:
        self._chains += 1
        return self._chains

    def _decide(self, vehicle, tr: _Track, n: int) -> list[Match]:
        """Decide the first ``n`` steps of the track (after its anchor) by backtracking from the best last state;
        the last decided step becomes the anchor and the later steps are re-scored from it."""
        if not tr.steps:
            return []
        j = int(np.argmax(tr.steps[-1].score))
        path = [j]
        for s in reversed(tr.steps[1:]):
            j = int(s.back[j])
            path.append(j)
        path.reverse()
        start = 1 if tr.anchored else 0
        stop = min(start + n, len(tr.steps))
        out = []
        for i in range(start, stop):
            s, k = tr.steps[i], path[i]
            out += self._emit(vehicle, tr, s, int(s.link[k]), float(s.offset[k]))
        anchor = tr.steps[stop - 1]
        k = path[stop - 1]
        self._reduce(anchor, k)
        rest = tr.steps[stop:]
        tr.steps, tr.anchored = [anchor, *rest], True
        prev = anchor
        for s in rest:  # re-score from the decided state
            s.trans = s.trans[[k]] if prev is anchor else s.trans
            self.graph.kernels.viterbi_step(prev.score, s.trans, s.emit, s.score, s.back)
            s.score -= s.score.max()
            prev, k = s, 0
        return out

    @staticmethod
    def _reduce(step: _Step, k: int) -> None:
        step.link, step.offset, step.emit = step.link[[k]], step.offset[[k]], step.emit[[k]]
        step.score, step.back = np.zeros(1), np.full(1, -1, np.int64)

    def _emit(self, vehicle, tr: _Track, s: _Step, link: int, offset: float) -> list[Match]:
        """Matches of a decided step (one per fix in it) and the pieces from the previous match of the chain."""
        cfg, g = self.config, self.graph
        code = self.vehicle_code[vehicle]
        if tr.last is not None and tr.last[3] == tr.chain:
            la, oa, ta, _c = tr.last
            pieces = g.path_pieces(la, oa, link, offset, cfg.max_route, cfg.backtrack, cfg.uturn_penalty)
            if pieces is not None:
                held = la == link and oa - cfg.backtrack <= offset < oa
                if held:
                    offset = oa  # held, not moved back
                if held and s.speed > 2.0 * cfg.stand_speed:  # a moving vehicle held in place: no piece
                    self.counts["held_moving"] += 1
                elif self._unexplained_gap(pieces, s.t[0] - ta):
                    self.counts["gap_no_speed"] += 1
                else:
                    self._add_pieces(code, pieces, ta, s.t[0])
        x, y, _h = g.point_at(link, offset)
        if s.n_alt:
            self._ground.append(s.alt - float(g.link_height[link]))
            self._ground_new += 1
        self.counts["matched"] += len(s.t)
        for a, b in zip(s.t[:-1], s.t[1:], strict=True):  # standing fixes: time on the link, no distance
            self._pieces.append((code, link, a, b, 0.0))
        tr.last = (link, offset, s.t[-1], tr.chain)
        return [Match(vehicle, ti, link, offset, x, y, tr.chain) for ti in s.t]

    def _unexplained_gap(self, pieces: list[tuple[int, float, float]], gap_s: float) -> bool:
        """A silence longer than ``max_speed_gap`` [s] not spent mostly in a tunnel: the route bridges it, but
        how the vehicle split the time along it is unknown, so it gives no pieces."""
        if gap_s <= self.config.max_speed_gap:
            return False
        d = np.array([max(b - a, 0.0) for _l, a, b in pieces])
        tunnel = self.graph.link_tunnel[[link for link, _a, _b in pieces]]
        return not d.sum() > 0.0 or d[tunnel].sum() < 0.5 * d.sum()

    def _add_pieces(self, code: int, pieces: list[tuple[int, float, float]], ta: float, tb: float) -> None:
        """Pieces with entry and exit times interpolated by distance along the route between two fixes."""
        d = np.array([max(b - a, 0.0) for _l, a, b in pieces])
        total = d.sum()
        if total <= 0.0:
            self._pieces.append((code, pieces[-1][0], ta, tb, 0.0))
            return
        cum = np.concatenate([[0.0], np.cumsum(d)]) / total
        for i, (link, _a, _b) in enumerate(pieces):
            if d[i] > 0.0:
                self._pieces.append((code, link, ta + (tb - ta) * cum[i], ta + (tb - ta) * cum[i + 1], float(d[i])))


def traversals(pieces: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Merge each vehicle's consecutive pieces on one link into traversals: ``vehicle``, ``link``, ``t_enter``,
    ``t_exit`` [s] (the times it entered and left the link) and ``length`` [m] (distance covered on it)."""
    order = np.lexsort((pieces["t_enter"], pieces["vehicle"]))
    p = {k: np.asarray(v)[order] for k, v in pieces.items()}
    n = p["link"].size
    new = np.ones(n, bool)
    if n > 1:
        new[1:] = (np.diff(p["vehicle"]) != 0) | (np.diff(p["link"]) != 0) | (p["t_enter"][1:] > p["t_exit"][:-1]
                                                                              + 1e-9)
    grp = np.cumsum(new) - 1
    last = np.r_[np.flatnonzero(new)[1:] - 1, n - 1] if n else np.zeros(0, np.int64)
    return {"vehicle": p["vehicle"][new], "link": p["link"][new], "t_enter": p["t_enter"][new],
            "t_exit": p["t_exit"][last], "length": np.bincount(grp, p["length"], minlength=int(new.sum()))}


# ===================================================================================================== speeds
def window_link_speeds(pieces: dict[str, np.ndarray], n_links: int, t0: float, t1: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distance [m], time [s], pieces and distinct vehicles per link of the pieces in the window [t0, t1] [s].

    A piece overlapping the window counts with the part inside it (distance in proportion: the speed is taken
    constant within a piece, which spans one fix interval at most). Zero-duration pieces do not count.
    """
    dist, time, n, nveh, _ = window_link_times(pieces, n_links, t0, t1)
    return dist, time, n, nveh


def _signal_waits(link: np.ndarray, veh: np.ndarray, t_enter: np.ndarray, dur: np.ndarray, inside: np.ndarray,
                  length: np.ndarray, n_links: int, stop_speed: float, signal_cycle: float,
                  run_speed: float = 20.0 / 3.6) -> np.ndarray:
    """Per link, the stop-line waits [s] of its vehicles in the window: a vehicle's stopped time on the link (its
    pieces slower than ``stop_speed`` [m s-1], their parts inside the window ``inside`` [s]) when its stops there
    span at most ``signal_cycle`` [s] from the first one's start to the last one's end (a queue at a signal moving
    up and clearing within one cycle), it then drove on (its last piece on the link in the window is not slow) and it
    drove at ``run_speed`` [m s-1] or faster when it was not stopped (slow only at the stop line). Stops spread over
    more than a cycle, a wait still going at the window's end, or crawling between stops are queueing, never
    excused."""
    if link.size == 0:
        return np.zeros(n_links)
    order = np.lexsort((t_enter, veh, link))
    lk, vh, t0 = link[order], veh[order], t_enter[order]
    t1 = t0 + dur[order]
    slow = length[order] < stop_speed * dur[order]
    new = np.ones(lk.size, bool)
    new[1:] = (lk[1:] != lk[:-1]) | (vh[1:] != vh[:-1])
    group = np.cumsum(new) - 1
    n = int(group[-1]) + 1
    first = np.full(n, np.inf)
    np.minimum.at(first, group[slow], t0[slow])
    end = np.full(n, -np.inf)
    np.maximum.at(end, group[slow], t1[slow])
    stopped = np.bincount(group, np.where(slow, inside[order], 0.0), minlength=n)
    moving_s = np.bincount(group, np.where(slow, 0.0, inside[order]), minlength=n)
    moving_m = np.bincount(group, np.where(slow, 0.0, length[order] * inside[order] / dur[order]), minlength=n)
    last = np.r_[np.flatnonzero(new)[1:] - 1, lk.size - 1]
    runs = moving_m >= run_speed * moving_s
    excused = (end - first <= signal_cycle) & ~slow[last] & runs
    return np.bincount(lk[new], np.where(excused, stopped, 0.0), minlength=n_links)


def window_link_times(pieces: dict[str, np.ndarray], n_links: int, t0: float, t1: float, stop_speed: float = 1.0,
                      signal_cycle: float = 120.0, run_speed: float = 20.0 / 3.6) -> tuple[np.ndarray, ...]:
    """As `window_link_speeds`, plus per link the stop-line waits [s] of its vehicles (`_signal_waits`)."""
    a, b = np.asarray(pieces["t_enter"], float), np.asarray(pieces["t_exit"], float)
    dur = b - a
    inside = np.minimum(b, t1) - np.maximum(a, t0)
    use = (dur > 0) & (inside > 0)
    link, veh = np.asarray(pieces["link"], np.int64)[use], np.asarray(pieces["vehicle"], np.int64)[use]
    frac = inside[use] / dur[use]
    dist = np.bincount(link, np.asarray(pieces["length"], float)[use] * frac, minlength=n_links)
    time = np.bincount(link, inside[use], minlength=n_links)
    n = np.bincount(link, minlength=n_links).astype(float)
    pairs = np.unique(np.column_stack([link, veh]), axis=0) if link.size else np.zeros((0, 2), np.int64)
    nveh = np.bincount(pairs[:, 0], minlength=n_links).astype(float)
    waits = _signal_waits(link, veh, a[use], dur[use], inside[use], np.asarray(pieces["length"], float)[use],
                          n_links, stop_speed, signal_cycle, run_speed)
    return dist, time, n, nveh, waits


class LinkSpeeds(Component):
    """Space-mean speed per road link over a sliding window, from map-matched traversal pieces, EWMA-smoothed.

    Each update takes the pieces decided since the last one (:meth:`MapMatcher.pop_pieces`), keeps those that
    overlap the window ``(now - window, now]`` and gives per link Σ distance / Σ time of the pieces inside it
    (Wardrop 1952: the space-mean speed; stops count as time on the link; never a mean of spot speeds). ``now`` is
    ``ds.attrs["time"]`` [s] when given, else the previous ``now`` + ``dt`` (first update: the latest exit time).
    A link-window with fewer than ``min_vehicles`` distinct vehicles (or ``min_pieces`` pieces) is no data (NaN)
    and keeps its smoothing state, unless the link has had no piece for a whole window: then the smoothing starts
    afresh with its next data. Confidence [0, 1]: vehicles / (vehicles + 2) x min(1, distance / link length)
    [design]: it grows with independent vehicles and with the share of the link they covered. Link travel time =
    link length / smoothed speed.
    """

    name = "link_speeds"
    inputs = (
        Var("piece_link", "1", PIECE_DIMS, "int64", "road link of each traversal piece", valid_range=(0, 4)),
        Var("piece_vehicle", "1", PIECE_DIMS, "int64", "vehicle of each traversal piece", valid_range=(0, 3)),
        Var("piece_t_enter", "s", PIECE_DIMS, "float64", "time the piece entered its part of the link",
            valid_range=(0, 25)),
        Var("piece_t_exit", "s", PIECE_DIMS, "float64", "time the piece left its part of the link",
            valid_range=(30, 60)),
        Var("piece_length", "m", PIECE_DIMS, "float64", "distance the piece covered on the link",
            valid_range=(0, 300)),
        Var("link_length", "m", LINK_DIMS, "float64", "length of each road link", valid_range=(50, 300)),
    )
    outputs = (
        Var("link_speed", "km h-1", LINK_DIMS, "float64", "space-mean speed on the link, smoothed"),
        Var("link_speed_window", "km h-1", LINK_DIMS, "float64", "space-mean speed on the link in the window"),
        Var("link_speed_congestion", "km h-1", LINK_DIMS, "float64",
            "space-mean speed in the window without stop-line waits shorter than a signal cycle (for congestion "
            "levels; not smoothed: the level machine has its own delays)"),
        Var("link_samples", "1", LINK_DIMS, "float64", "traversal pieces in the window"),
        Var("link_vehicles", "1", LINK_DIMS, "float64", "distinct probe vehicles in the window"),
        Var("link_confidence", "1", LINK_DIMS, "float64", "confidence of the link speed, 0 to 1"),
        Var("link_travel_time", "s", LINK_DIMS, "float64", "travel time of the link at the smoothed speed"),
    )
    references = (WARDROP, NEWSON_KRUMM)
    state_vars = ("pieces", "ewma", "pieces_until", "now")

    def __init__(self, ds: xr.Dataset, config: MapMatchConfig | None = None, n_links: int | None = None):
        self.config = config or MapMatchConfig()
        if n_links is None:
            self.check_inputs(ds, ("link_length",))
            n_links = ds["link_length"].size
        self.n_links = int(n_links)
        self.ewma = np.full(self.n_links, np.nan)
        self.pieces_until = np.full(self.n_links, -np.inf)
        """Per link, the exit time of its newest piece so far [s]: a link without one in a whole window starts its
        smoothing afresh (a speed from before a silence is not carried into new data)."""
        self.now = math.nan
        self.pieces = {k: np.zeros(0, np.int64 if k in ("link", "vehicle") else float)
                       for k in ("link", "vehicle", "t_enter", "t_exit", "length")}

    def save_state(self) -> dict[str, Any]:
        state = super().save_state()
        state["pieces"] = {k: v.copy() for k, v in state["pieces"].items()}
        return state

    def restore_state(self, state: dict[str, Any]) -> None:
        if "pieces_until" not in state:
            state = {**state, "pieces_until": np.full(self.n_links, -np.inf)}
        super().restore_state(state)
        self.pieces = {k: np.array(v, np.int64 if k in ("link", "vehicle") else float)
                       for k, v in self.pieces.items()}

    def update(self, ds: xr.Dataset, dt: float = 0.0) -> xr.Dataset:
        """Add the pieces in ``ds`` and give the link speeds of the window ending now; ``dt`` [s] since the last."""
        self.check_inputs(ds)
        cfg = self.config
        new = {"link": self.read(ds, "piece_link"), "vehicle": self.read(ds, "piece_vehicle"),
               "t_enter": self.read(ds, "piece_t_enter"), "t_exit": self.read(ds, "piece_t_exit"),
               "length": self.read(ds, "piece_length")}
        length = self.read(ds, "link_length")
        if length.size != self.n_links:
            raise ValueError("link_speeds: the number of links changed")
        if new["link"].size and (new["link"].min() < 0 or new["link"].max() >= self.n_links):
            raise ValueError("link_speeds: piece_link outside the links")
        if "time" in ds.attrs:
            now = float(ds.attrs["time"])
        elif math.isfinite(self.now):
            now = self.now + dt
        else:
            ends = np.concatenate([self.pieces["t_exit"], new["t_exit"]])
            now = float(ends.max()) if ends.size else 0.0
        step = now - self.now if math.isfinite(self.now) else 0.0
        self.now = now
        t0 = now - cfg.window
        merged = {k: np.concatenate([self.pieces[k], new[k]]) for k in new}
        keep = merged["t_exit"] > t0
        self.pieces = {k: v[keep] for k, v in merged.items()}
        dist, time, n, nveh, waits = window_link_times(self.pieces, self.n_links, t0, now, cfg.stop_speed,
                                                       cfg.signal_cycle, cfg.run_speed)
        ok = (nveh >= cfg.min_vehicles) & (n >= cfg.min_pieces) & (time > 0)
        moving = time - waits
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(ok, dist / np.where(time > 0, time, 1.0), np.nan)
            v_cong = np.where(ok & (moving > 0), dist / np.where(moving > 0, moving, 1.0), np.where(ok, v, np.nan))
            conf = np.where(ok, nveh / (nveh + 2.0) * np.minimum(1.0, dist / length), 0.0)
        alpha = 1.0 - (1.0 - cfg.ewma_alpha) ** (max(step, 0.0) / cfg.window)
        stale = ~ok & (self.pieces_until < t0)  # no piece for a whole window: the smoothing starts afresh
        self.ewma[stale] = np.nan
        has = np.bincount(self.pieces["link"], minlength=self.n_links) > 0
        if has.any():
            last = np.full(self.n_links, -np.inf)
            np.maximum.at(last, self.pieces["link"], self.pieces["t_exit"])
            self.pieces_until = np.where(has, last, self.pieces_until)
        smooth = np.empty(self.n_links)
        tk.ewma_update(v, self.ewma, alpha, smooth)
        with np.errstate(divide="ignore", invalid="ignore"):
            travel = np.where(smooth > 0, length / smooth, np.where(smooth == 0, np.inf, np.nan))
        return self.outputs_from_si({"link_speed": smooth, "link_speed_window": v,
                                     "link_speed_congestion": v_cong, "link_samples": n,
                                     "link_vehicles": nveh, "link_confidence": conf, "link_travel_time": travel},
                                    {"link": np.arange(self.n_links)})


# ============================================================================================ test support
def synthetic_grid(nx: int, ny: int, spacing: float = 100.0, two_way: bool = True, bend: float = 0.0
                   ) -> dict[str, np.ndarray]:
    """A street grid of nx x ny intersections ``spacing`` [m] apart as the arrays of :class:`RoadGraph` (tests and
    benchmarks). Each street block is a link (two opposite links where ``two_way``); with ``bend`` [m] every
    link's midpoint is pushed sideways by that much (a polyline of three vertices)."""
    node_xy = np.array([(i * spacing, j * spacing) for j in range(ny) for i in range(nx)], float)
    pairs = [(j * nx + i, j * nx + i + 1) for j in range(ny) for i in range(nx - 1)]
    pairs += [(j * nx + i, (j + 1) * nx + i) for j in range(ny - 1) for i in range(nx)]
    if two_way:
        pairs += [(v, u) for u, v in pairs]
    verts, start = [], [0]
    for u, v in pairs:
        a, b = node_xy[u], node_xy[v]
        mid = (a + b) / 2 + bend * np.array([-(b - a)[1], (b - a)[0]]) / spacing * (1 if u < v else -1)
        verts += [a, mid, b]
        start.append(len(verts))
    vert_xy = np.array(verts)
    seg = np.hypot(*np.diff(vert_xy, axis=0).T)
    length = np.array([seg[start[k]:start[k + 1] - 1].sum() for k in range(len(pairs))])
    return {"node_xy": node_xy, "link_u": np.array([p[0] for p in pairs], np.int64),
            "link_v": np.array([p[1] for p in pairs], np.int64), "link_length": length, "vert_xy": vert_xy,
            "link_vert_start": np.array(start, np.int64)}


def route_positions(graph: RoadGraph, route, s) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, y [m], link, heading [rad]) at distances ``s`` [m] along a route of consecutive links, from the start of
    its first link (tests and benchmarks: the truth a simulated probe drives)."""
    route = np.asarray(route, np.int64)
    ends = np.cumsum(graph.link_length[route])
    s = np.clip(np.asarray(s, float), 0.0, ends[-1])
    i = np.minimum(np.searchsorted(ends, s, "right"), route.size - 1)
    off = s - (ends[i] - graph.link_length[route[i]])
    pts = [graph.point_at(int(route[k]), float(o)) for k, o in zip(i, off, strict=True)]
    x, y, h = (np.array(c) for c in zip(*pts, strict=True)) if pts else (np.zeros(0),) * 3
    return x, y, route[i], h
