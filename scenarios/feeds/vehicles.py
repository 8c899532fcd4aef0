"""Probe vehicles driving the road graph and reporting Beidou positions.

Each vehicle drives edge after edge (at a node it takes a random other edge; at a dead end where the district's
roads are cut at its edge it leaves and another vehicle enters at the start of a random edge; at an inner dead end
it turns round) at the class speed of the edge times the congestion factor of the road's English name, with +-10 %
driver noise, and reports every ``report_s`` seconds. A share ``gcj_share`` of the fleet sends JSON positions in
GCJ-02 as Chinese map SDKs do; the rest send NMEA RMC+GGA with a ``GB``, ``BD`` or ``GN`` talker (BDS-only talkers
are tagged CGCS2000 by the decoder, which agrees with WGS84 to centimetres).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ingest.batch import Batch
from ingest.decoders.nmea import encode_nmea
from ingest.decoders.position import encode_position
from scenarios.feeds.roads import RoadGraph
from twin.district.geo import to_lonlat, wgs84_to_gcj02

TALKERS = ("GB", "BD", "GN")


@dataclass
class Vehicle:
    """State of one vehicle on the graph."""

    id: str
    edge: int
    forward: bool
    s: float
    noise: float
    talker: str
    gcj: bool
    next_report: float
    speed_kmh: float = 0.0


EXIT_MARGIN_M = 60.0
"""A dead end this close to the edge of the road graph's extent is where the district's roads are cut (the road goes
on outside): a vehicle reaching it leaves the district. [m]"""


def district_exits(graph: RoadGraph, margin_m: float = EXIT_MARGIN_M) -> set[int]:
    """Dead-end nodes within ``margin_m`` [m] of the edge of the graph's extent."""
    xy = np.asarray(graph.node_xy, float)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    near = ((xy - lo) <= margin_m).any(axis=1) | ((hi - xy) <= margin_m).any(axis=1)
    return {n for n in range(len(xy)) if near[n] and len(graph.adjacent[n]) == 1}


class Fleet:
    """Vehicles ``ids`` on ``graph``; ``congestion`` maps a road's English name to a speed factor (0, 1]."""

    def __init__(self, graph: RoadGraph, ids: list[str], rng: np.random.Generator, t0: float, *,
                 gcj_share: float = 0.2, report_s: float = 5.0,
                 congestion: dict[str, float] | None = None) -> None:
        self.graph, self.rng, self.report_s = graph, rng, report_s
        self.congestion = congestion if congestion is not None else {}
        lengths = np.array([e.length for e in graph.edges])
        self._lengths = lengths
        self._exits = district_exits(graph)
        p = lengths / lengths.sum()
        n_gcj = round(gcj_share * len(ids))
        self.vehicles = []
        for i, vid in enumerate(ids):
            edge = int(rng.choice(len(graph.edges), p=p))
            self.vehicles.append(Vehicle(
                vid, edge, bool(rng.integers(2)), float(rng.uniform(0, graph.edges[edge].length)),
                float(rng.uniform(0.9, 1.1)), TALKERS[i % 3], i < n_gcj,
                t0 + float(rng.uniform(0, report_s))))

    def speed_of(self, edge: int, noise: float = 1.0) -> float:
        """Current speed on an edge [km h-1]: class speed x congestion factor x noise."""
        e = self.graph.edges[edge]
        return e.speed_kmh * self.congestion.get(e.name, 1.0) * noise

    def _advance(self, v: Vehicle, dt: float) -> None:
        g = self.graph
        remaining = dt
        for _ in range(1000):  # bounded: many tiny edges in one step
            v.speed_kmh = self.speed_of(v.edge, v.noise)
            mps = max(v.speed_kmh / 3.6, 0.01)
            e = g.edges[v.edge]
            left = e.length - v.s
            if left >= mps * remaining:
                v.s += mps * remaining
                return
            remaining -= left / mps
            node = e.v if v.forward else e.u
            options = [k for k in g.adjacent[node] if k != v.edge]
            if not options and node in self._exits:  # where the district's roads are cut: it leaves, another enters
                self._enter(v)
                continue
            options = options or [v.edge]  # an inner dead end: it turns round
            nxt = options[int(self.rng.integers(len(options)))]
            ne = g.edges[nxt]
            v.edge, v.forward, v.s = nxt, ne.u == node, 0.0
            if ne.u == ne.v:
                v.forward = True

    def _enter(self, v: Vehicle) -> None:
        """Put ``v`` at the start of a random edge (by length), in a random direction: a vehicle that reached the
        district's edge has left, and one enters elsewhere."""
        p = self._lengths / self._lengths.sum()
        v.edge = int(self.rng.choice(len(self.graph.edges), p=p))
        v.forward, v.s = bool(self.rng.integers(2)), 0.0

    def position(self, v: Vehicle) -> tuple[float, float, float]:
        """(lon, lat) in WGS84 [degree] and course from true north [degree] of a vehicle.

        The grid heading plus the Gauss-Krueger meridian convergence (lon - 120) sin(lat) (under 1 degree)."""
        x, y, heading = self.graph.edges[v.edge].point(v.s, v.forward)
        lon, lat = to_lonlat(x, y)
        course = (heading + (float(lon) - 120.0) * math.sin(math.radians(float(lat)))) % 360.0
        return float(lon), float(lat), course

    def step(self, t: float, dt: float, prefix: str) -> list[tuple[str, bytes]]:
        """Move every vehicle by ``dt`` seconds to time ``t`` and return the reports due."""
        out = []
        for v in self.vehicles:
            self._advance(v, dt)
            if t + 1e-9 < v.next_report:
                continue
            v.next_report += self.report_s * max(1, int((t - v.next_report) // self.report_s) + 1)
            out.append((f"{prefix}beidou/{v.id}", self.encode(v, t)))
        return out

    def encode(self, v: Vehicle, t: float) -> bytes:
        """The vehicle's report at ``t``: GCJ-02 JSON or NMEA RMC+GGA."""
        lon, lat, heading = self.position(v)
        t = round(t, 2)
        if v.gcj:
            glon, glat = wgs84_to_gcj02(lon, lat)
            b = Batch.build(1, device=v.id, t=t, quantity="position", lon=round(float(glon), 7),
                            lat=round(float(glat), 7), speed_kmh=round(v.speed_kmh, 2),
                            course_deg=round(heading, 1), datum="GCJ02")
            return encode_position(b)
        b = Batch.build(1, device=v.id, t=t, quantity="position", lon=lon, lat=lat, speed_kmh=v.speed_kmh,
                        course_deg=heading, hdop=round(float(self.rng.uniform(0.6, 1.6)), 2), fix=1)
        return encode_nmea(b, talker=v.talker, types=("RMC", "GGA"))
