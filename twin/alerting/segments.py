"""Road-segment alert areas (issue 15): consecutive warning links of one named road, one direction, as one place.

A traffic alert is about a stretch of road, not a blob of cells. `RoadSegments` joins the directed links at a
warning level (blue or above) into segments: a link and the next link of the same road in the same direction
(head to tail, never its own reverse nor a turn sharper than `MAX_TURN_DEG`) belong together. Each segment is a `Place`:

- its links and the grid cells they cross (for routing to field units, Beidou codes and the map);
- its CAP area: the carriageway, the link centre lines buffered by their lanes x `LANE_WIDTH_M` (on the right of
  a two-way road's centre line, China drives on the right; both sides of a one-way road's);
- its ``areaDesc``, in English and Chinese: the road's name, direction and the cross streets at its ends, e.g.
  ``East Zhongshan No. 1 Road (中山东一路) northbound, Yan'an East Road to Nanjing East Road``;
- its evidence: the segment's space-mean speed and free-flow speed (total length over total travel time),
  probe samples and vehicles, its links and length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from models.links import ROAD_CLASS_CODE
from twin.district import geo
from twin.district.roads import road_names

LANE_WIDTH_M = 3.5
"""Width of a traffic lane [m] (CJJ 37-2012 Code for design of urban road engineering: 3.5 m for lanes of
vehicles at 60 km/h or less [mem])."""
MIN_SEGMENT_M = 100.0
"""A segment raises an alert only if its links at the warning level are this long together [design: congestion is
of a road section (GB/T 33171 evaluates sections), and a few metres of link between two fixes 5-10 s apart, with
5 m of position noise, are no measure of one: at 30-50 km/h a vehicle covers 40-140 m between fixes]. [m]"""
ALERT_MIN_LEVEL = 2
"""Road segments raise alerts from yellow (GB/T 33171 moderate congestion) up [design: light congestion is a city
centre's daily traffic; it is coloured on the map (blue), and an operator is alerted from moderate up]."""
MAX_TURN_DEG = 120.0
"""Two links of one road join a segment only if the turn between them is at most this much: a divided road's
two carriageways meeting at its end (a U-turn) are two segments, one per direction. [deg]"""
GAP_CLOSE_M = 1.0
"""The union of a segment's carriageways is grown by this much, closing the wedges between links at bends. [m]"""
CROSS_SEARCH_HOPS = 4
"""Links walked along the road beyond a segment's end to find a cross street when none meets at the end."""
BOUNDS = (("northbound", "北向"), ("eastbound", "东向"), ("southbound", "南向"), ("westbound", "西向"))


@dataclass
class Place:
    """An alert area that is a place, not a region of the level grid: a road segment, or an operational unit's
    warning cells (`twin.alerting.units`).

    ``links`` (sorted link ids) decide which alert carries it to the next tick; ``cells`` (flat, sorted) are its
    grid cells; ``rings`` the outer rings of its CAP polygons (lon/lat arrays); ``evidence`` CAP parameters.
    """

    links: np.ndarray
    cells: np.ndarray
    level: int
    description: str
    rings: list[np.ndarray] = field(default_factory=list)
    evidence: dict[str, object] = field(default_factory=dict)
    key: str = ""
    """Stable identity of an operational unit (`twin.alerting.units`), e.g. ``flood:point:water-03``: an alert keeps
    a place of the same key from tick to tick. Empty for road segments, which are carried by shared links."""
    name_en: str = ""
    """Short English place name for headlines, e.g. ``Bund Tunnel north portal``."""
    name_zh: str = ""
    """Short Chinese place name for headlines, e.g. ``外滩隧道北口``."""

    def to_state(self) -> dict:
        """Plain values for a snapshot."""
        return {"links": np.asarray(self.links, np.int64), "cells": np.asarray(self.cells, np.int64),
                "level": int(self.level), "description": self.description,
                "rings": [np.asarray(r, float).tolist() for r in self.rings], "evidence": dict(self.evidence),
                "key": self.key, "name_en": self.name_en, "name_zh": self.name_zh}

    @classmethod
    def from_state(cls, s: dict) -> Place:
        """Take back `to_state` (a state saved before places had keys and names restores with empty ones)."""
        return cls(np.asarray(s["links"], np.int64), np.asarray(s["cells"], np.int64), int(s["level"]),
                   str(s["description"]), [np.asarray(r, float) for r in s["rings"]], dict(s["evidence"]),
                   str(s.get("key", "")), str(s.get("name_en", "")), str(s.get("name_zh", "")))


class RoadSegments:
    """The segments of a road network (`twin.district.roads.RoadNetwork`) on its grid (`GridSpec`)."""

    def __init__(self, network, grid) -> None:
        links = network.links
        self.grid = grid
        self.u = links["u"].to_numpy(np.int64)
        self.v = links["v"].to_numpy(np.int64)
        self.en, self.zh, self.key = road_names(links)
        self.length = links["length_m"].to_numpy(float)
        self.free = links["free_flow_kmh"].to_numpy(float)
        self.road_class = np.array([ROAD_CLASS_CODE.get(str(c), 4) for c in links["road_class"]], np.int8)
        self.node_xy = {int(n): (p.x, p.y) for n, p in zip(network.nodes["node_id"], network.nodes.geometry,
                                                           strict=True)}
        self.carriageway = self._carriageways(links)
        self.head_in, self.head_out = self._headings(links.geometry.values)
        order = np.argsort(network.cell_link, kind="stable")
        self.cell_start = np.searchsorted(network.cell_link[order], np.arange(len(links) + 1))
        self.cell_of = np.asarray(network.cell_index)[order]
        self.touching: dict[int, list[int]] = {}
        for k, (a, b) in enumerate(zip(self.u, self.v, strict=True)):
            self.touching.setdefault(int(a), []).append(k)
            self.touching.setdefault(int(b), []).append(k)

    # ------------------------------------------------------------ static geometry
    def _carriageways(self, links) -> np.ndarray:
        """Per link, its carriageway polygon in the grid CRS (see the module docstring)."""
        pairs = set(zip(self.u.tolist(), self.v.tolist(), strict=True))
        two_way = np.array([(b, a) in pairs for a, b in zip(self.u.tolist(), self.v.tolist(), strict=True)])
        width = links["lanes"].fillna(1).to_numpy(float).clip(1, None) * LANE_WIDTH_M
        geoms = links.geometry.values
        right = shapely.buffer(geoms, -width, single_sided=True, cap_style="flat")
        both = shapely.buffer(geoms, width / 2.0, cap_style="flat")
        return np.where(two_way, right, both)

    @staticmethod
    def _headings(geoms) -> tuple[np.ndarray, np.ndarray]:
        """Per link, the bearing [deg] of its first and of its last piece (x east, y north)."""
        first, last = np.zeros(len(geoms)), np.zeros(len(geoms))
        for k, g in enumerate(geoms):
            xy = np.asarray(g.coords)
            (x0, y0), (x1, y1) = xy[0], xy[1]
            first[k] = math.degrees(math.atan2(x1 - x0, y1 - y0))
            (x0, y0), (x1, y1) = xy[-2], xy[-1]
            last[k] = math.degrees(math.atan2(x1 - x0, y1 - y0))
        return first, last

    def _turn(self, a: int, b: int) -> float:
        """Absolute turn from the end of link ``a`` into link ``b`` [deg]."""
        return abs((self.head_in[b] - self.head_out[a] + 180.0) % 360.0 - 180.0)

    def cells(self, link_ids: np.ndarray) -> np.ndarray:
        """Sorted flat cells crossed by the links."""
        parts = [self.cell_of[self.cell_start[k]:self.cell_start[k + 1]] for k in link_ids]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    # ------------------------------------------------------------ segments
    def places(self, warning: np.ndarray, speed: np.ndarray | None = None, samples: np.ndarray | None = None,
               vehicles: np.ndarray | None = None, min_level: int = ALERT_MIN_LEVEL,
               min_length_m: float = MIN_SEGMENT_M) -> list[Place]:
        """The segments of links at warning level >= ``min_level`` that are at least ``min_length_m`` [m] long
        together, as places, ordered by their first link.

        A link without data (warning -1) between two such links of its road joins them (`bridged`). ``speed``
        [km h-1], ``samples`` and ``vehicles`` per link are the evidence (NaN / 0: no data).
        """
        warning = np.asarray(warning)
        hot = np.flatnonzero(warning >= min_level)
        if hot.size == 0:
            return []
        hot = np.union1d(hot, self.bridged(hot, warning))
        out = []
        for comp in self._components(hot):
            hot_m = self.length[comp][warning[comp] >= min_level].sum()  # bridged links do not count
            if hot_m >= min_length_m:
                out.append(self._place(comp, warning, speed, samples, vehicles))
        return sorted(out, key=lambda p: int(p.links[0]))

    def bridged(self, hot: np.ndarray, warning: np.ndarray) -> np.ndarray:
        """Links without data (warning -1) that a hot link of the same road leads into and that lead into one."""
        is_hot = np.zeros(warning.size, bool)
        is_hot[hot] = True
        out = []
        for k in np.flatnonzero(warning < 0):
            before = [j for j in self.touching.get(int(self.u[k]), []) if self.v[j] == self.u[k] and is_hot[j]
                      and self.key[j] == self.key[k] and self._turn(j, int(k)) <= MAX_TURN_DEG]
            after = [j for j in self.touching.get(int(self.v[k]), []) if self.u[j] == self.v[k] and is_hot[j]
                     and self.key[j] == self.key[k] and self._turn(int(k), j) <= MAX_TURN_DEG]
            if before and after:
                out.append(int(k))
        return np.array(out, np.int64)

    def _components(self, hot: np.ndarray) -> list[np.ndarray]:
        """Hot links joined head to tail along one road (same name key, not the reverse link)."""
        index = {int(k): i for i, k in enumerate(hot)}
        by_start: dict[tuple[int, str], list[int]] = {}
        for k in hot:
            by_start.setdefault((int(self.u[k]), self.key[k]), []).append(int(k))
        rows, cols = [], []
        for k in hot:
            for nxt in by_start.get((int(self.v[k]), self.key[k]), []):
                reverse = self.v[nxt] == self.u[k] and self.u[nxt] == self.v[k]
                if nxt != k and not reverse and self._turn(int(k), nxt) <= MAX_TURN_DEG:
                    rows.append(index[int(k)])
                    cols.append(index[nxt])
        graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(hot.size, hot.size))
        n, label = connected_components(graph, directed=True, connection="weak")
        return [np.sort(hot[label == i]) for i in range(n)]

    def _ends(self, comp: np.ndarray) -> tuple[int, int]:
        """The segment's first link's start node and last link's end node (in the direction of travel)."""
        heads, tails = set(self.v[comp].tolist()), set(self.u[comp].tolist())
        starts = [int(k) for k in comp if int(self.u[k]) not in heads] or [int(comp[0])]
        ends = [int(k) for k in comp if int(self.v[k]) not in tails] or [int(comp[-1])]
        first = max(starts, key=lambda k: self.length[k])
        last = max(ends, key=lambda k: self.length[k])
        return int(self.u[first]), int(self.v[last])

    def cross_street(self, node: int, key: str, forward: bool, avoid: frozenset = frozenset()) -> tuple[str, str]:
        """(English, Chinese) name of the most important other named road at ``node``; when none meets there, at
        the nearest node along the road ``key`` (walking forward or backward, never onto the nodes ``avoid``: the
        segment's own), up to `CROSS_SEARCH_HOPS` links."""
        seen = set(avoid)
        for _ in range(CROSS_SEARCH_HOPS + 1):
            seen.add(node)
            others = [k for k in self.touching.get(node, []) if self.key[k] not in ("", key)]
            if others:
                best = min(others, key=lambda k: (self.road_class[k], -self.length[k]))
                return str(self.en[best] or self.zh[best]), str(self.zh[best] or self.en[best])
            along = [k for k in self.touching.get(node, []) if self.key[k] == key
                     and (self.u[k] == node if forward else self.v[k] == node)]
            nxt = [int(self.v[k] if forward else self.u[k]) for k in along]
            nxt = [n for n in nxt if n not in seen]
            if not nxt:
                break
            node = nxt[0]
        return "", ""

    def bound(self, a: int, b: int) -> tuple[str, str]:
        """(English, Chinese) direction of travel from node ``a`` to node ``b``."""
        (xa, ya), (xb, yb) = self.node_xy[a], self.node_xy[b]
        bearing = math.degrees(math.atan2(xb - xa, yb - ya)) % 360.0  # 0 north, 90 east (grid y is north)
        return BOUNDS[int(((bearing + 45.0) % 360.0) // 90.0)]

    def describe(self, comp: np.ndarray) -> str:
        """``areaDesc`` of a segment, English (the road's Chinese name in brackets) then Chinese (see the module
        docstring)."""
        return self._texts(comp)[0]

    def names(self, comp: np.ndarray) -> tuple[str, str]:
        """(English, Chinese) short name of a segment for headlines: ``East Zhongshan No. 1 Road southbound, Hankou
        Road to Fuzhou Road`` / ``中山东一路南向（汉口路至福州路）``."""
        return self._texts(comp)[1:]

    def _texts(self, comp: np.ndarray) -> tuple[str, str, str]:
        """(areaDesc, English name, Chinese name) of a segment."""
        k0 = int(comp[0])
        key = self.key[k0]
        en = self.en[k0] or self.zh[k0] or "Unnamed road"
        zh = self.zh[k0] or self.en[k0] or "无名道路"
        a, b = self._ends(comp)
        bound_en, bound_zh = self.bound(a, b) if a != b else ("", "")
        own = frozenset(self.u[comp].tolist()) | frozenset(self.v[comp].tolist())
        # outwards first (the street before the segment starts, after it ends); at a dead end, the nearest inside
        from_en, from_zh = self.cross_street(a, key, forward=False, avoid=own - {a})
        if not from_en:
            from_en, from_zh = self.cross_street(a, key, forward=True)
        to_en, to_zh = self.cross_street(b, key, forward=True, avoid=own - {b})
        if not to_en:
            to_en, to_zh = self.cross_street(b, key, forward=False)
        name = f"{en} ({zh})" if zh != en else en
        if from_en and to_en and from_en != to_en:
            span_en, span_zh = f"{from_en} to {to_en}", f"{from_zh}至{to_zh}"
        elif from_en or to_en:
            span_en, span_zh = f"at {from_en or to_en}", f"{from_zh or to_zh}附近"
        else:
            span_en, span_zh = "", ""
        span = f", {span_en}" if span_en else ""
        chinese = f"{zh}{bound_zh}" + (f"（{span_zh}）" if span_zh else "")
        return f"{f'{name} {bound_en}'.strip()}{span}; {chinese}", f"{en} {bound_en}".strip() + span, chinese

    def rings(self, comp: np.ndarray) -> list[np.ndarray]:
        """Outer rings (lon/lat) of the union of the segment's carriageways."""
        union = shapely.buffer(shapely.union_all(self.carriageway[comp]), GAP_CLOSE_M, join_style="mitre")
        out = []
        for part in shapely.get_parts(union):
            if part.is_empty or part.geom_type != "Polygon":
                continue
            xy = np.asarray(part.exterior.coords)
            lon, lat = geo.to_lonlat(xy[:, 0], xy[:, 1], self.grid.crs)
            out.append(np.column_stack([lon, lat]))
        return out

    def evidence(self, comp: np.ndarray, speed, samples, vehicles) -> dict[str, object]:
        """The segment's speed and free-flow speed (length over travel time), samples, vehicles, links, length."""
        length = self.length[comp]
        out: dict[str, object] = {"roadName": self.en[comp[0]] or self.zh[comp[0]] or "unnamed",
                                  "links": int(comp.size), "lengthM": f"{length.sum():.0f}",
                                  "freeFlowSpeed": f"{length.sum() / (length / self.free[comp]).sum():.1f} km/h"}
        if speed is not None:
            v = np.asarray(speed, float)[comp]
            ok = np.isfinite(v) & (v > 0)
            if ok.any():
                out["segmentSpeed"] = f"{length[ok].sum() / (length[ok] / v[ok]).sum():.1f} km/h"
                out["minSpeed"] = f"{float(v[ok].min()):.2f} km/h"
        if samples is not None:
            out["samples"] = int(np.nansum(np.asarray(samples, float)[comp]))
        if vehicles is not None:
            out["vehicles"] = int(np.nanmax(np.r_[0.0, np.asarray(vehicles, float)[comp]]))
        return out

    def _place(self, comp: np.ndarray, warning, speed, samples, vehicles) -> Place:
        description, english, chinese = self._texts(comp)
        return Place(comp, self.cells(comp), int(warning[comp].max()), description, self.rings(comp),
                     self.evidence(comp, speed, samples, vehicles), name_en=english, name_zh=chinese)


__all__ = ["ALERT_MIN_LEVEL", "LANE_WIDTH_M", "MIN_SEGMENT_M", "Place", "RoadSegments"]
