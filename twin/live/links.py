"""The live twin's road links (issue 15): map-matched probes, loops fused on their links, congestion, segments.

`ProbeLinks` matches the vehicles' pings to links and gives the links' space-mean speeds (`models.LinkSpeeds`).
`LinkTraffic` adds the loop detectors on their links (`models.links.fuse_loops`), the links' congestion levels,
index, incidents and warning levels (`models.links.LinkCongestion`), the cell speeds painted from the links for the
map and the composite risk (`models.links.paint_cells`), and the road segments that are the traffic alerts' places
(`twin.alerting.segments.RoadSegments`). docs/science/traffic.md section 3.8.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely
import xarray as xr

import models
from models.links import LinkCongestion, LinkTrafficConfig, fuse_loops, link_static, paint_cells, road_index
from twin.alerting.segments import Place, RoadSegments
from twin.district import geo
from twin.district.roads import road_names
from twin.live.state import TwinState

LOOP_SNAP_M = 30.0
"""A loop detector is on the links of its road (registry property ``road``) within this distance of it. [m]"""
LOOP_BOTH_M = 12.0
"""Links of its road up to this much farther than the nearest are its too (a detector across both
carriageways). [m]"""


LATE_S = 60.0
"""How late a vehicle's ping may arrive and still be matched (after the other vehicles' newer pings). [s]"""


class ProbeLinks:
    """Map matching of the vehicles' pings to road links and the links' space-mean speeds, run every tick.

    Every ping newer than its vehicle's last matched fix goes to `models.MapMatcher` (the fixes of one vehicle in
    time order: a fix older than its vehicle's last matched one is not matched), the traversal pieces it decides go to
    `models.LinkSpeeds` with the tick's time, and vehicles silent longer than the matcher's ``max_gap`` are flushed.
    The matcher's per-vehicle windows are in snapshots (`save_state`): after a restore a vehicle's next fix
    continues its chain.
    """

    def __init__(self, network: Any) -> None:
        self.network = network
        self.graph = models.RoadGraph(**network.graph_arrays())
        self.matcher = models.MapMatcher(self.graph)
        self.length = network.links["length_m"].to_numpy(float)
        self.speeds = models.LinkSpeeds(xr.Dataset({"link_length": ("link", self.length, {"units": "m"})}))
        self.upto = -np.inf
        """The newest ping time matched so far [unix s]: pings up to ``LATE_S`` older are looked at again."""
        self.last_t: dict[object, float] = {}
        """Per vehicle, the time of its last ping pushed to the matcher [unix s] (kept when the matcher lets a silent
        vehicle go, so its old pings are never pushed twice)."""
        self.layers = xr.Dataset()

    def step(self, pings: np.ndarray, t: float, dt: float) -> xr.Dataset:
        """Match the pings not yet seen (pings: `twin.live.state.PING_DTYPE`), then the links' speeds at ``t``."""
        pings = pings[pings["t"] > self.upto - LATE_S]
        for p in pings[np.argsort(pings["t"], kind="stable")]:
            if p["t"] <= self.last_t.get(p["device"], -np.inf):
                continue
            self.last_t[p["device"]] = float(p["t"])
            self.upto = max(self.upto, float(p["t"]))
            self.matcher.push(p["device"], float(p["t"]), float(p["x"]), float(p["y"]), float(p["speed"]) / 3.6,
                              float(p["course"]), float(p["alt"]))
        self.matcher.expire(t)
        pieces = self.matcher.pop_pieces()
        ds = xr.Dataset({f"piece_{k}": ("piece", v, {"units": "s" if k.startswith("t_") else "m"}
                                        if k in ("t_enter", "t_exit", "length") else {"units": "1"})
                         for k, v in pieces.items()} | {"link_length": ("link", self.length, {"units": "m"})},
                        attrs={"time": float(t)})
        self.layers = self.speeds.update(ds, dt)
        return self.layers

    def save_state(self) -> dict:
        """The matcher's pending windows and what was pushed (`MapMatcher.save_state`, ``last_t``, ``upto``)."""
        return {"matcher": self.matcher.save_state(), "upto": float(self.upto),
                "last_t": {"vehicles": np.array([str(v) for v in self.last_t], dtype=str),
                           "t": np.array(list(self.last_t.values()), float)}}

    def restore_state(self, state: dict) -> None:
        """Take back `save_state`: every vehicle's chain goes on with its next fix."""
        self.matcher.restore_state(state["matcher"])
        self.upto = float(state["upto"])
        self.last_t = {str(v): float(t) for v, t in zip(state["last_t"]["vehicles"], state["last_t"]["t"],
                                                        strict=True)}

    def resume(self, pings: np.ndarray, now: float) -> None:
        """After a snapshot restore at tick time ``now``: the pings up to ``now`` were matched before it."""
        done = pings[pings["t"] <= now]
        for device, t in zip(done["device"], done["t"], strict=True):
            self.last_t[device] = max(self.last_t.get(device, -np.inf), float(t))
        self.upto = max(self.upto, float(now))


def loop_links(state: TwinState, network: Any, snap_m: float = LOOP_SNAP_M) -> tuple[np.ndarray, np.ndarray]:
    """(detector index, link) pairs: each loop detector on the links of its road near it (see `LOOP_SNAP_M`).

    A detector whose registry entry names its ``road`` goes on that road's links (English or Chinese name) only; one
    that names none, on the nearest links of any road. A detector with no link in reach is on none (its cell's
    speed still shows it)."""
    links = network.links
    en, zh, _ = road_names(links)
    ids = state.readings["traffic"].ids
    det, lnk = [], []
    for i, dev_id in enumerate(ids):
        dev = state.registry.get(dev_id)
        g = dev.geometry if dev is not None else None
        if not g or g.get("type") != "Point":
            continue
        x, y = geo.to_projected(*g["coordinates"][:2], state.grid.crs)
        dist = shapely.distance(links.geometry.values, shapely.Point(float(x), float(y)))
        road = str(dev.properties.get("road", "") or "")
        ok = dist <= snap_m
        if road:
            ok &= (en == road) | (zh == road)
        if not ok.any():
            continue
        near = np.flatnonzero(ok & (dist <= dist[ok].min() + LOOP_BOTH_M))
        det += [i] * near.size
        lnk += near.tolist()
    return np.array(det, np.int64), np.array(lnk, np.int64)


class LinkTraffic:
    """Everything the live twin does on road links each tick (see the module docstring)."""

    def __init__(self, state: TwinState, network: Any, risk: models.RiskConfig,
                 config: LinkTrafficConfig | None = None) -> None:
        self.state, self.network = state, network
        self.probes = ProbeLinks(network)
        links = network.links
        self.length = links["length_m"].to_numpy(float)
        self.names = road_names(links)[2]
        self.config = config or LinkTrafficConfig()
        static = link_static(links)
        self.static = static
        self.congestion = LinkCongestion(static, risk, self.config)
        self.segments = RoadSegments(network, state.grid)
        self.loop_det, self.loop_link = loop_links(state, network)
        self.table = network.cell_table
        self.layers = xr.Dataset()

    def components(self) -> dict[str, models.Component]:
        """The stateful components, by their snapshot names."""
        return {"link_speeds": self.probes.speeds, "link_congestion": self.congestion}

    def step(self, pings: np.ndarray, loop_speed: np.ndarray, t: float, dt: float) -> xr.Dataset:
        """One tick: match ``pings``, fuse the detectors' fresh speeds ``loop_speed`` [km h-1, NaN stale] on their
        links, classify. Returns the link layers (also in `layers`)."""
        speeds = self.probes.step(pings, t, dt)
        vehicles = speeds["link_vehicles"].values
        trusted = speeds["link_confidence"].values >= self.config.min_confidence
        loops = loop_speed[self.loop_det] if self.loop_det.size else np.zeros(0)
        w = self.config.loop_weight
        congestion = np.where(trusted, speeds["link_speed_congestion"].values, np.nan)
        fused = fuse_loops(congestion, vehicles, self.loop_link, loops, w)
        plain = fuse_loops(speeds["link_speed"].values, vehicles, self.loop_link, loops, w)
        ds = self.static.assign(link_speed=("link", fused, {"units": "km h-1"}))
        cong = self.congestion.update(ds, dt)
        loop_count = np.bincount(self.loop_link[np.isfinite(loops)], minlength=self.length.size) \
            if self.loop_link.size else np.zeros(self.length.size, np.int64)
        self.layers = xr.merge([speeds.drop_vars("link_speed"), cong]).assign(
            link_speed=("link", plain, {"units": "km h-1"}),
            link_speed_congestion=("link", fused, {"units": "km h-1"}),
            link_loops=("link", loop_count.astype(float), {"units": "1"}))
        return self.layers

    def cell_fields(self, n_cells: int) -> dict[str, np.ndarray]:
        """The congestion speed [km h-1] and the probe vehicles painted on the cells (NaN where no link has one)."""
        if "link_speed_congestion" not in self.layers:
            return {"speed": np.full(n_cells, np.nan), "samples": np.full(n_cells, np.nan)}
        return {"speed": paint_cells(self.table, self.layers["link_speed_congestion"].values, n_cells),
                "samples": paint_cells(self.table, self.layers["link_vehicles"].values, n_cells)}

    def places(self) -> list[Place]:
        """The road segments at a warning level now, as alert places."""
        if "link_warning" not in self.layers:
            return []
        lay = self.layers
        return self.segments.places(lay["link_warning"].values, lay["link_speed"].values,
                                    lay["link_samples"].values, lay["link_vehicles"].values)

    def index(self) -> tuple[dict[str, float], float]:
        """The TPI-like index per named road and for the district (`models.links.road_index`)."""
        if "link_tpi" not in self.layers:
            return {}, float("nan")
        return road_index(self.names, self.length, self.layers["link_tpi"].values)

    def save_state(self) -> dict:
        """The probe matcher's state (the components' are saved with the other components)."""
        return self.probes.save_state()

    def restore_state(self, state: dict | None, now: float) -> None:
        """After a snapshot restore at tick time ``now``: the matcher's windows from ``state``; a snapshot from
        before they were kept (None) starts every vehicle's next fixes on a new chain."""
        if state is not None:
            self.probes.restore_state(state)
        else:
            self.probes.resume(self.state.pings, now)
