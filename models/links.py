"""Congestion on road links (issue 15): GB/T 33171 levels, the TPI-like index, incidents and warning levels per link.

The link speeds come from `models.mapmatch.LinkSpeeds` (map-matched probes), fused with loop detectors on their
links (`fuse_loops`). `LinkCongestion` classifies each directed link by the GB/T 33171 bounds of its road class,
gives the 0-10 TPI-like index per link, per named road and for the district (`road_index`), declares incidents as
a sustained drop against the link's own recent baseline, and runs the twin's alert-level state machine
(`models.risk.AlertLevels`, the same rules and kernel as the grid's cells) on the links, with delays of its own
(`LinkTrafficConfig.timing`, at least a signal cycle). `paint_cells` spreads link values onto the grid (the map
and the composite risk). docs/science/traffic.md section 3.8 has the rules and their sources.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from models._component import Component, Reference, Var
from models.config import AlertTiming, RiskConfig
from models.kernels import traffic as tk
from models.risk import AlertLevels
from models.traffic import GBT33171, cell_speeds_from_segments

LINK_DIMS = ("link",)
WARNING_DOC = "warning level of the link's traffic, 0 none to 4 red, -1 never had data"
LINK_LEVEL_DOC = "GB/T 33171 congestion level of the link, 0 smooth to 4 severe, -1 no data"
INCIDENT_DOC = "incident on the link: 1 declared, 0 tested and none, -1 not tested (no speed or no baseline)"
TPI_DOC = "TPI-like congestion index of the link, 0 to 10 (not the official TPI)"
HE_2016 = Reference("He, F., Yan, X., Liu, Y., Ma, L. (2016). A traffic congestion assessment method for urban road "
                    "networks based on speed performance index. Procedia Engineering 137, 425-433.",
                    "10.1016/j.proeng.2016.01.277")


@dataclass(frozen=True, kw_only=True)
class LinkTrafficConfig:
    """Parameters of link congestion (evidence tags of docs/science/README.md).

    ``timing``: the level machine's delays on links: blue and yellow (light, moderate) are raised after 120 s at the
    level [design: one signal cycle, so a queue that clears within a cycle never raises; Shanghai's arterial cycles
    are 90-180 s [mem]], orange and red (severe) after 30 s [design: the speed is already a 5-minute space-mean of
    at least two vehicles with single signal waits left out (`models.mapmatch.MapMatchConfig`), which a normal red
    light does not bring below the severe bound; measured on the SUMO truth case, docs/science/traffic.md Test 8:
    120 s flagged 60 % of the severe link-windows, 30 s 74 % with no free-flowing one more]; every level steps down
    after 120 s below its clear bound; flap window 300 s [design: one speed window]. Incidents: the window speed
    below ``drop_ratio`` 0.5 x the link's baseline [src: docs/science/alerts.md 5, speed drop on 0.5] for
    ``drop_persist_s`` 300 s [design: one speed window, never a single slow probe]; the baseline is an exponential
    mean of the link's speed with time constant ``baseline_tau_s`` 1800 s [design], frozen while the link is in a
    drop, and a link needs ``baseline_min_s`` 600 s of data behind its baseline before it is tested [design].
    ``loop_weight`` 2: a fresh loop detector counts as two probe vehicles on its link [design: a 1-min aggregate of
    every vehicle over one point, against the space-mean of the few probes that crossed the whole link].
    ``hold_s`` 600 s: a link's warning level is held through silence (as a cell's) for at most this long, then it
    is no data (-1) until the link has a speed again [design: two speed windows; probes are sparse, and a warning
    nobody has confirmed for ten minutes is not one to keep on an operator's wall].
    ``min_confidence`` 0.25: a probe speed with a lower confidence (`models.mapmatch.LinkSpeeds`: two vehicles that
    drove half the link together have 0.25) is not used for levels [design: a few metres of a link seen by a
    vehicle that turned off are no measure of it].
    """

    timing: AlertTiming = field(
        default_factory=lambda: AlertTiming(for_s=(120.0, 120.0, 30.0, 30.0), keep_s=120.0, flap_window_s=300.0))
    drop_ratio: float = 0.5
    drop_persist_s: float = 300.0
    baseline_tau_s: float = 1800.0
    baseline_min_s: float = 600.0
    loop_weight: float = 2.0
    hold_s: float = 600.0
    min_confidence: float = 0.25


ROAD_CLASS_CODE = {"expressway": 1, "arterial": 2, "secondary": 3, "branch": 4}
"""GB/T 33171 road class code of a road network's ``road_class`` name (`twin.district.roads`)."""
NOT_EVALUATED = {"service"}
"""OSM ``highway`` values whose links get speeds but no congestion level or warning: GB/T 33171 evaluates city
roads (expressways, arterials, secondary roads and branches), not the service ways of compounds, car parks and
alleys, where a probe turning round or parking is not congestion."""


MIN_EVALUATED_M = 20.0
"""Links shorter than this get speeds but no congestion level or warning [design: a junction's internal links of a
few metres lie within one fix's noise (5 m) and one fix interval (40-140 m at 30-50 km/h); their speed is no
measure of congestion, and a segment bridges them]. [m]"""


def evaluated_class(links) -> np.ndarray:
    """GB/T road class code of each link of a link table (columns ``road_class``, ``highway``, ``length_m``):
    1 expressway .. 4 branch, 0 where it is not evaluated (`NOT_EVALUATED`, shorter than `MIN_EVALUATED_M`)."""
    code = np.array([ROAD_CLASS_CODE.get(str(c), 4) for c in links["road_class"]], np.int8)
    skip = links["highway"].astype(str).isin(NOT_EVALUATED).to_numpy().copy()
    skip |= links["length_m"].to_numpy(float) < MIN_EVALUATED_M
    return np.where(skip, 0, code).astype(np.int8)


def link_static(links) -> xr.Dataset:
    """The static inputs of `LinkCongestion` from a road network's link table (`twin.district.roads.RoadNetwork`
    ``links``): ``link_class`` (`evaluated_class`), ``link_free_flow`` [km h-1] and ``link_length`` [m]."""
    return xr.Dataset({
        "link_class": ("link", evaluated_class(links), {"units": "1"}),
        "link_free_flow": ("link", links["free_flow_kmh"].to_numpy(float), {"units": "km h-1"}),
        "link_length": ("link", links["length_m"].to_numpy(float), {"units": "m"})})


def fuse_loops(speed: np.ndarray, vehicles: np.ndarray, loop_link: np.ndarray, loop_speed: np.ndarray,
               loop_weight: float = 2.0) -> np.ndarray:
    """Link speeds [km h-1] with fresh loop detectors fused on their links.

    ``loop_link[i]`` is the link of loop reading ``i`` (a detector on a two-way road appears once per direction),
    ``loop_speed[i]`` its fresh speed (NaN: stale). Where a link has probes the result is their speed and the
    loops' weighted by vehicles and ``loop_weight`` per loop; where it has none, the loops' mean. [km h-1]
    """
    speed = np.asarray(speed, float)
    ok = np.isfinite(loop_speed) & (loop_link >= 0)
    if not ok.any():
        return speed.copy()
    n = speed.size
    w_loop = np.bincount(loop_link[ok], minlength=n) * float(loop_weight)
    sum_loop = np.bincount(loop_link[ok], loop_speed[ok], minlength=n) * float(loop_weight)
    have = np.isfinite(speed)
    w_probe = np.where(have, np.maximum(np.nan_to_num(vehicles), 1.0), 0.0)
    total = w_probe + w_loop
    with np.errstate(invalid="ignore", divide="ignore"):
        fused = (np.where(have, speed, 0.0) * w_probe + sum_loop) / total
    return np.where(total > 0, fused, np.nan)


def paint_cells(network_table: tuple[np.ndarray, np.ndarray, np.ndarray], link_values: np.ndarray,
                n_cells: int) -> np.ndarray:
    """Per cell, the length-weighted mean of the values of the links crossing it (NaN where none has a value).

    ``network_table`` is the link -> cell table (link, flat cell, length inside the cell [m]) of
    `twin.district.roads.RoadNetwork`.
    """
    link, cell, length = network_table
    return cell_speeds_from_segments(link, cell, length, np.asarray(link_values, float), n_cells)


def road_index(names: np.ndarray, length_m: np.ndarray, tpi: np.ndarray) -> tuple[dict[str, float], float]:
    """The TPI-like index per named road and for the district: length-weighted means of the links' indices over
    the links with data. Returns ({road name: index}, district index); NaN where no link has data."""
    ok = np.isfinite(tpi)
    district = float(np.average(tpi[ok], weights=length_m[ok])) if ok.any() and length_m[ok].sum() > 0 else math.nan
    roads: dict[str, float] = {}
    names = np.asarray(names, dtype=object)
    for name in np.unique(names[ok & (names != "")].astype(str)):
        use = ok & (names == name)
        roads[str(name)] = float(np.average(tpi[use], weights=length_m[use]))
    return roads, district


class LinkCongestion(Component):
    """GB/T 33171 level, TPI-like index, incidents and the warning level of every directed road link.

    Levels use ``link_speed`` (the speed without stop-line waits shorter than a signal cycle,
    `models.mapmatch.LinkSpeeds.link_speed_congestion`, fused with loops): GB/T 33171-2016 bounds by road class.
    The warning level is the twin's level machine (`models.risk.AlertLevels`) run on the links as on cells, with
    ``config.timing``: light -> blue, moderate -> yellow, severe -> orange, red where severe and v / v_free <= the
    red ratio; no data freezes a link's level for at most ``config.hold_s``, then the link's machine starts afresh
    (-1). Incidents: see `LinkTrafficConfig`.
    """

    name = "link_congestion"
    inputs = (
        Var("link_speed", "km h-1", LINK_DIMS, "float64", "speed of the link for congestion, NaN no data",
            valid_range=(0, 80)),
        Var("link_free_flow", "km h-1", LINK_DIMS, "float64", "free-flow speed of the link", valid_range=(30, 80)),
        Var("link_class", "1", LINK_DIMS, "int8", "GB/T road class: 1 expressway, 2 arterial, 3 secondary, 4 branch",
            valid_range=(1, 4)),
        Var("link_length", "m", LINK_DIMS, "float64", "length of the link", valid_range=(50, 300)),
    )
    outputs = (
        Var("link_level", "1", LINK_DIMS, "int8", LINK_LEVEL_DOC),
        Var("link_tpi", "1", LINK_DIMS, "float64", TPI_DOC),
        Var("link_baseline", "km h-1", LINK_DIMS, "float64", "the link's recent usual speed (incident baseline)"),
        Var("link_incident", "1", LINK_DIMS, "int8", INCIDENT_DOC),
        Var("link_warning", "1", LINK_DIMS, "int8", WARNING_DOC),
    )
    references = (GBT33171, HE_2016)
    state_vars = ("baseline", "baseline_s", "drop_s", "in_drop", "silent_s", "level_state", "district_tpi")

    def __init__(self, ds: xr.Dataset, risk: RiskConfig | None = None, config: LinkTrafficConfig | None = None):
        self.check_inputs(ds, ("link_class", "link_free_flow", "link_length"))
        self.config = config or LinkTrafficConfig()
        risk = risk or RiskConfig()
        self.risk = dataclasses.replace(risk, traffic=dataclasses.replace(risk.traffic, timing=self.config.timing))
        self.link_class = self.read(ds, "link_class").astype(np.int8)
        self.n = self.link_class.size
        static = xr.Dataset({"road_class": (("y", "x"), self.link_class[None, :], {"units": "1"}),
                             "vulnerability": (("y", "x"), np.ones((1, self.n)), {"units": "1"})})
        self.levels = AlertLevels(static, self.risk)
        self.static = static
        self.baseline = np.full(self.n, np.nan)
        self.baseline_s = np.zeros(self.n)
        self.drop_s = np.zeros(self.n)
        self.in_drop = np.zeros(self.n, bool)
        self.silent_s = np.full(self.n, np.inf)
        """Seconds since each link last had a speed (inf: never)."""
        self.district_tpi = math.nan

    @property
    def level_state(self):
        """The level machine's state (`models.risk.AlertState`)."""
        return self.levels.state

    @level_state.setter
    def level_state(self, value) -> None:
        self.levels.state = value

    def update(self, ds: xr.Dataset, dt: float = 0.0) -> xr.Dataset:
        """Classify the links' speeds in ``ds``, ``dt`` [s] of twin time after the previous update."""
        self.check_inputs(ds)
        v = self.read(ds, "link_speed")  # m s-1
        vff = self.read(ds, "link_free_flow")
        length = self.read(ds, "link_length")
        level = np.empty(self.n, np.int8)
        tk.congestion_level(v, self.link_class, self.risk.traffic.gbt_edges_ms(), level)
        tpi = np.empty(self.n)
        self.district_tpi = float(tk.tpi_like(v, vff, length, np.asarray(self.risk.traffic.tpi_breaks), tpi))
        incident = self._incidents(v, float(dt))
        self.silent_s = np.where(np.isfinite(v), 0.0, self.silent_s + float(dt))
        self._forget(self.silent_s > self.config.hold_s)
        warning = self._warning(v * 3.6, vff * 3.6, float(dt))
        return self.outputs_from_si({"link_level": level, "link_tpi": tpi, "link_baseline": self.baseline.copy(),
                                     "link_incident": incident, "link_warning": warning},
                                    {"link": np.arange(self.n)})

    def _incidents(self, v: np.ndarray, dt: float) -> np.ndarray:
        """Sustained drop against the baseline; updates the baseline where the link is not in a drop. [m s-1]"""
        cfg = self.config
        have = np.isfinite(v)
        tested = have & (self.baseline > 0) & (self.baseline_s >= cfg.baseline_min_s)
        drop = tested & (v < cfg.drop_ratio * self.baseline)
        # counted from the first slow sample (0 there), as the warning delays are: one slow sample is never enough
        self.drop_s = np.where(drop, np.where(self.in_drop, self.drop_s + dt, 0.0), np.where(have, 0.0, self.drop_s))
        self.in_drop = np.where(have, drop, self.in_drop)
        learn = have & ~drop
        w = 1.0 - math.exp(-dt / cfg.baseline_tau_s) if dt > 0 else 0.0
        first = learn & ~np.isfinite(self.baseline)
        self.baseline = np.where(first, v, np.where(learn, self.baseline + w * (v - self.baseline), self.baseline))
        self.baseline_s = np.where(learn, self.baseline_s + dt, self.baseline_s)
        return np.where(tested, (self.drop_s >= cfg.drop_persist_s).astype(np.int8), -1).astype(np.int8)

    def _forget(self, links: np.ndarray) -> None:
        """Links silent beyond ``hold_s``: their level machine starts afresh (no data, nothing pending)."""
        if not links.any():
            return
        st = self.levels.state
        st.level[links], st.overall[links] = -1, -1
        for arr in (st.raw, st.history, st.flapping, st.pending, st.timers):
            arr[links] = 0

    def _warning(self, v_kmh: np.ndarray, vff_kmh: np.ndarray, dt: float) -> np.ndarray:
        """The level machine on the links (a 1 x n grid); -1 where a link never had data."""
        nan = np.full((1, self.n), np.nan)
        ds = self.static.assign(
            traffic_speed=(("y", "x"), v_kmh[None, :], {"units": "km h-1"}),
            free_flow_speed=(("y", "x"), vff_kmh[None, :], {"units": "km h-1"}),
            crowd_density=(("y", "x"), nan, {"units": "person m-2"}),
            water_depth=(("y", "x"), nan, {"units": "m"}))
        out = self.levels.update(ds, dt)
        return out["level_traffic"].values.ravel().astype(np.int8)


__all__ = ["NOT_EVALUATED", "ROAD_CLASS_CODE", "LinkCongestion", "LinkTrafficConfig", "evaluated_class", "fuse_loops",
           "link_static", "paint_cells", "road_index"]
