"""Composite risk and alert levels: the fused risk tick with its level state machine, its state, staleness."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from models._component import GRID_DIMS, LEVEL_FLAGS, Component, Reference, Var
from models.config import AlertTiming, RiskConfig, RiverConfig
from models.hazards import LEVEL_HAZARDS
from models.kernels import risk as rk

UNDRR = Reference("UNDRR (2017). Terminology: disaster risk = f(hazard, exposure, vulnerability, capacity). "
                  "https://www.undrr.org/terminology/disaster-risk")
PROMETHEUS = Reference("Prometheus alerting rules: for and keep_firing_for. "
                       "https://prometheus.io/docs/prometheus/latest/configuration/alerting_rules/")
HUANGPU_WARNING = Reference("Huangpu Park (黄浦公园) tide gauge warning level (警戒水位) 4.80 m Wusong datum, as "
                            "quoted in the Shanghai flood-control office's tide reports [mem]; colours above it and "
                            "the wall crest as docs/science/river.md 4")
NAGIOS = Reference("Nagios Core / Naemon flap detection: 21 states, weights 0.75 to 1.25 (flapping.c). "
                   "https://naemon.io/documentation/usersguide/flapping")

HAZARDS = LEVEL_HAZARDS
"""The hazards with a level machine, in the kernel's order (`models.hazards`)."""
CROWD_BAND_DOC = "crowd density bands of the cell: 0 the district's, j the j-th place's own (stair, ramp, bridge)"
"""Long name of the ``crowd_band`` layer (as ``twin.district.layers``)."""
LEVEL_NODATA = -1
"""Level code of a cell that never had data (same as ``twin.district.layers.LEVEL_NODATA``); a cell whose
source falls silent keeps its held level, flagged in ``level_nodata``."""


def stale_mask(last_update: np.ndarray, now: float, period: float, n_periods: float = 3.0) -> np.ndarray:
    """True where a source has been silent for more than ``n_periods`` update periods.

    Parameters
    ----------
    last_update : ndarray of float
        Time of the last update of each cell, NaN if never. [s]
    now : float
        Current time. [s]
    period : float
        Expected update period of the source. [s]
    n_periods : float
        Silence tolerated before a cell is no-data (docs/science/alerts.md 5 test 4: 3 periods). [1]
    """
    age = now - np.asarray(last_update, dtype=float)
    return ~(age <= n_periods * period)


@dataclass
class AlertState:
    """State of the level state machine: plain arrays, cell-major (n_cells, n_hazards[, 5]).

    ``level`` held level (-1: the cell never had data; int8), ``raw`` raw raise level at the last flap-history
    sample (int8), ``history`` the last 20 transitions of ``raw`` as bits (bit 0 newest; uint32), ``flapping``
    flag (int8), ``pending`` bits of the running timers (bit L - 1 the raise run of level L, bit 4 the clear timer;
    int8), ``timers`` the raise runs of blue, yellow, orange, red and the clear timer [s] (float32, 0 where its
    ``pending`` bit is clear), then the history clock [s] (time since the last flap-history sample);
    ``overall`` the composite level (n_cells,) (int8).
    """

    level: np.ndarray
    raw: np.ndarray
    history: np.ndarray
    flapping: np.ndarray
    pending: np.ndarray
    timers: np.ndarray
    overall: np.ndarray

    @classmethod
    def zeros(cls, n_hazards: int, n_cells: int) -> AlertState:
        """A fresh state: no cell has had data yet (level -1), no history, nothing pending."""
        shp = (n_cells, n_hazards)
        return cls(np.full(shp, LEVEL_NODATA, np.int8), np.zeros(shp, np.int8), np.zeros(shp, np.uint32),
                   np.zeros(shp, np.int8), np.zeros(shp, np.int8), np.zeros((*shp, rk.N_TIMERS), np.float32),
                   np.full(n_cells, LEVEL_NODATA, np.int8))

    @classmethod
    def upgraded(cls, saved: dict) -> dict:
        """A state saved before the timers were in seconds (``reported``, ``n_up``, ``n_down``) in today's form.

        Levels, flap histories and the overall level carry over; the old tick counters do not (they
        counted ticks, not seconds), so every pending raise or clear starts again, as after a gap.
        """
        level = np.asarray(saved["level"])
        return {"level": level, "raw": saved["raw"], "history": saved["history"], "flapping": saved["flapping"],
                "pending": np.zeros(level.shape, np.int8),
                "timers": np.zeros((*level.shape, rk.N_TIMERS), np.float32), "overall": saved["overall"]}

    @classmethod
    def with_history_clock(cls, saved: dict) -> dict:
        """A state saved before the flap history was sampled in seconds (five timers) in today's form: the history
        clock starts at 0, so the next sample of a running history comes one sample period after the restore."""
        timers = np.asarray(saved["timers"], np.float32)
        clock = np.zeros((*timers.shape[:-1], 1), np.float32)
        return {**saved, "timers": np.concatenate([timers, clock], axis=-1)}

    def args(self) -> tuple[np.ndarray, ...]:
        """Arrays in kernel argument order (level, raw, history, flapping, pending, timers, overall)."""
        return self.level, self.raw, self.history, self.flapping, self.pending, self.timers, self.overall


def tick_params(cfg: RiskConfig) -> dict[str, np.ndarray]:
    """Kernel parameter arrays (``p``, ``thr``, ``tthr``, ``road_exp``, ``timing``) from a config, SI units.

    ``thr`` has 5 + len(``cfg.place_bands``) rows: the district's crowd, depth, h v, rain 1 h and 6 h bands, then
    the crowd density bands of each place with bands of its own (row 5 + j for ``cfg.place_bands[j]``).
    """
    c, f, r, t = cfg.crowd, cfg.flood, cfg.rain, cfg.traffic
    p = np.zeros(rk.N_PARAMS)
    p[rk.P_HORIZON], p[rk.P_RHO_LO], p[rk.P_RHO_HI] = c.trend_horizon, c.hazard_low, c.hazard_high
    p[rk.P_P_CRIT], p[rk.P_RHO_P] = c.pressure_crit, c.pressure_min_density
    p[rk.P_H_LO], p[rk.P_H_HI] = f.hazard_depth_low, f.hazard_depth_high
    p[rk.P_HV_LO], p[rk.P_HV_HI] = f.hazard_hv_low, f.hazard_hv_high
    p[rk.P_R1_LO], p[rk.P_R1_HI] = r.hazard_1h_low * 1e-3, r.hazard_1h_high * 1e-3
    p[rk.P_RATIO_LO], p[rk.P_RATIO_HI] = t.hazard_ratio_low, t.hazard_ratio_high
    p[rk.P_RHO_REF], p[rk.P_COMPOUND] = cfg.exposure_density_ref, cfg.compound_min_level
    for inv, lo, hi in ((rk.P_INV_RHO, rk.P_RHO_LO, rk.P_RHO_HI), (rk.P_INV_H, rk.P_H_LO, rk.P_H_HI),
                        (rk.P_INV_HV, rk.P_HV_LO, rk.P_HV_HI), (rk.P_INV_R1, rk.P_R1_LO, rk.P_R1_HI),
                        (rk.P_INV_RATIO, rk.P_RATIO_LO, rk.P_RATIO_HI)):
        p[inv] = 1.0 / (p[hi] - p[lo])
    p[rk.P_INV_REF] = 1.0 / p[rk.P_RHO_REF]
    inf = np.inf
    sh1 = np.array(r.shanghai_1h) * 1e-3
    sh6 = np.array(r.shanghai_6h) * 1e-3
    m = r.clear_margin * 1e-3
    thr = np.array([
        list(c.density_raise) + list(c.density_clear),
        list(f.depth_raise) + list(f.depth_clear),
        list(f.hv_raise) + list(f.hv_clear),
        list(sh1) + list(sh1 - m),
        list(sh6) + list(sh6 - m),
        *(list(b.density_raise) + list(b.density_clear) for b in cfg.place_bands),  # row 5 + j: place j's bands
    ], dtype=float)
    # an unused lower colour (inf) takes the next used threshold: rows become non-decreasing, which
    # the kernel's branch-free count needs and which leaves "highest colour met" unchanged
    thr[:, 0:4] = np.minimum.accumulate(thr[:, 0:4][:, ::-1], axis=1)[:, ::-1]
    thr[:, 4:8] = np.minimum.accumulate(thr[:, 4:8][:, ::-1], axis=1)[:, ::-1]
    tthr = np.full((5, 8), -inf)
    on, off = t.gbt_edges_ms(), t.gbt_edges_ms(t.clear_margin_kmh)
    tthr[1:, 0:3] = on[1:, 1:4]   # light -> blue, moderate -> yellow, severe -> orange
    tthr[1:, 4:7] = off[1:, 1:4]
    tthr[1:, 3], tthr[1:, 7] = t.red_ratio, t.red_ratio_clear
    return {"p": p, "thr": thr, "tthr": tthr, "road_exp": np.array(cfg.road_exposure, float),
            "timing": np.array([timing_row(x.timing) for x in (c, f, t)], dtype=float)}


def timing_row(timing: AlertTiming) -> list[float]:
    """One hazard's row of the kernel's ``timing`` table (columns ``T_*`` of :mod:`models.kernels.risk`)."""
    row = [0.0] * rk.N_TIMING
    row[rk.T_FOR:rk.T_FOR + 4] = timing.raise_delays()
    row[rk.T_KEEP], row[rk.T_FLAP_WINDOW] = timing.keep_s, timing.flap_window_s
    row[rk.T_FLAP_HI], row[rk.T_FLAP_LO] = timing.flap_high, timing.flap_low
    row[rk.T_FLAP_SAMPLE] = timing.flap_sample_s
    return row


class AlertLevels(Component):
    """The risk tick: hazard, risk = H x E x V and warning levels per cell with a state machine.

    Per hazard (crowd, flood, traffic): hazard H in [0, 1] (piecewise linear between the yellow
    and red metrics, docs/science/risk.md 4), exposure E (crowd density / reference, or road class;
    unknown off the roads where the density is no data), risk R = H E V. Levels come from each
    hazard's own metrics only, with raise/clear thresholds (hysteresis): crowd, the observed density
    (+1 with pressure at density >= 4); flood, depth, depth x velocity, Shanghai rain signal; traffic,
    GB/T 33171 by road class, red by speed ratio. E and V never change a level. The state machine
    (rules in :mod:`models.kernels.risk`; delays in seconds of twin time, ``dt`` of :meth:`update`):
    per-level raise delay counted on each level's own run, one step down per clear delay, no data
    freezes the level and resets pending timers, flap hold at most one step and one flap window.
    A silent hazard keeps its held level (``level_nodata`` flags it); -1 only where a cell never had
    data. Overall level = max over hazards (held levels included), +1 where two hazards are at
    ``compound_min_level`` or above. ``level_crowd_forecast`` is the level of the trend-projected
    density, a forecast kept apart from the observed level. ``level_changed`` bits: 1 crowd,
    2 flood, 4 traffic, 8 overall; ``level_nodata`` bits: 1 crowd, 2 flood, 4 traffic.
    Crowd levels use the density bands of the cell's ``crowd_band`` (optional, int8): 0 (and without the layer)
    the district's ``config.crowd``, j >= 1 the j-th of ``config.place_bands`` (stricter bands of a stair, ramp
    or bridge; kernel row 4 + j); another value is a ValueError.
    Optional inputs default to "not available" (NaN); NaN, +-inf and negative values are no data.
    Stale inputs: pass ``stale={"crowd": mask, ...}`` to :meth:`update` (or NaN values).
    The state is :attr:`state` (:class:`AlertState`), plain arrays that can be snapshotted.
    """

    name = "alert_levels"
    inputs = (
        Var("crowd_density", "person m-2", GRID_DIMS, "float64", "people per square metre of walkable area",
            valid_range=(0, 6)),
        Var("crowd_trend", "person m-2 s-1", GRID_DIMS, "float64", "smoothed rate of change of crowd density",
            optional=True, valid_range=(-0.01, 0.01)),
        Var("crowd_pressure", "s-2", GRID_DIMS, "float64", "Helbing crowd pressure, density x velocity variance",
            optional=True, valid_range=(0, 0.05)),
        Var("water_depth", "m", GRID_DIMS, "float64", "water depth over ground", valid_range=(0, 0.6)),
        Var("flow_hazard", "m2 s-1", GRID_DIMS, "float64", "water depth times speed", optional=True,
            valid_range=(0, 0.6)),
        Var("rain_1h", "mm", GRID_DIMS, "float64", "rain accumulated over the last hour", optional=True,
            valid_range=(0, 90)),
        Var("rain_6h", "mm", GRID_DIMS, "float64", "rain accumulated over the last six hours", optional=True,
            valid_range=(0, 120)),
        Var("traffic_speed", "km h-1", GRID_DIMS, "float64", "space-mean traffic speed", valid_range=(0, 80)),
        Var("free_flow_speed", "km h-1", GRID_DIMS, "float64", "free-flow speed of the highest road class in the cell",
            valid_range=(30, 80)),
        Var("road_class", "1", GRID_DIMS, "int8", "highest road class in the cell", valid_range=(0, 4)),
        Var("vulnerability", "1", GRID_DIMS, "float64",
            "vulnerability of what is in the cell, 0 (none) to 1 (highest)"),
        Var("crowd_band", "1", GRID_DIMS, "int8", CROWD_BAND_DOC, optional=True, valid_range=(0, 0)),
    )
    outputs = (
        Var("risk_crowd", "1", GRID_DIMS, "float64", "crowd risk, hazard x exposure x vulnerability"),
        Var("risk_flood", "1", GRID_DIMS, "float64", "flood risk, hazard x exposure x vulnerability"),
        Var("risk_traffic", "1", GRID_DIMS, "float64", "traffic risk, hazard x exposure x vulnerability"),
        Var("level_crowd", "1", GRID_DIMS, "int8", "crowd warning level", flags=LEVEL_FLAGS),
        Var("level_flood", "1", GRID_DIMS, "int8", "flood warning level", flags=LEVEL_FLAGS),
        Var("level_traffic", "1", GRID_DIMS, "int8", "traffic warning level", flags=LEVEL_FLAGS),
        Var("level", "1", GRID_DIMS, "int8", "overall warning level (max over hazards, compound escalation)",
            flags=LEVEL_FLAGS),
        Var("level_changed", "1", GRID_DIMS, "int8",
            "bitmask of levels changed this tick: 1 crowd, 2 flood, 4 traffic, 8 overall"),
        Var("level_nodata", "1", GRID_DIMS, "int8",
            "bitmask of hazards without data this tick, their level held: 1 crowd, 2 flood, 4 traffic"),
        Var("level_crowd_forecast", "1", GRID_DIMS, "int8",
            "crowd level the trend-projected density would have (forecast, not observed)", flags=LEVEL_FLAGS),
    )
    references = (UNDRR, PROMETHEUS, NAGIOS)
    state_vars = ("state",)

    def __init__(self, ds: xr.Dataset, config: RiskConfig | None = None):
        self.check_inputs(ds, ("road_class", "vulnerability"))
        self.config = config or RiskConfig()
        self.params = tick_params(self.config)
        self.shape = ds["road_class"].shape
        self.state = AlertState.zeros(3, int(np.prod(self.shape)))
        self.crowd_rows = np.zeros(self.state.overall.size, np.int8)
        """Per cell, the row of the kernel's ``thr`` with its crowd density bands (0: the district's)."""
        if "crowd_band" in ds:
            self.check_inputs(ds, ("crowd_band",))
            self.crowd_rows = self.band_rows(ds)
        self.kernel = rk.risk_tick  # prange over cells: numba.set_num_threads decides the threads

    def band_rows(self, ds: xr.Dataset) -> np.ndarray:
        """The kernel's crowd row of every cell (flat int8) from the ``crowd_band`` layer: band 0 (the district's)
        is row 0, band j >= 1 (``config.place_bands[j - 1]``) is row 4 + j; all 0 without the layer.

        Raises ValueError naming the bad values when a band is outside 0 .. len(place_bands).
        """
        n = self.state.overall.size
        if "crowd_band" not in ds:
            return np.zeros(n, np.int8)
        n_places = len(self.config.place_bands)
        raw = np.asarray(ds["crowd_band"].values)
        plain = raw.dtype.kind in "iu" and ds["crowd_band"].attrs.get("units", "1") == "1" and raw.size
        if plain and raw.min() >= 0 and raw.max() <= n_places:  # the usual case, fast
            band = raw.ravel()
            return np.ascontiguousarray(np.where(band > 0, band + 4, 0).astype(np.int8)) if raw.max() else \
                np.zeros(n, np.int8)
        band = self.read(ds, "crowd_band", dtype="float64").ravel()
        bad = ~((band >= 0) & (band <= n_places) & (band == np.round(band)))  # NaN is bad too
        if bad.any():
            values = sorted({float(v) for v in band[bad][:1000]}, key=lambda v: (np.isnan(v), v))
            values = [str(int(v)) if v.is_integer() else str(v) for v in values]
            raise ValueError(f"{type(self).__name__}: crowd_band must be 0 (the district's bands) to {n_places} "
                             f"(the places of RiskConfig.place_bands); {int(bad.sum())} cell(s) have "
                             f"{', '.join(map(str, values[:10]))}")
        return np.ascontiguousarray(np.where(band > 0, band + 4, 0).astype(np.int8))

    def _get(self, ds: xr.Dataset, name: str, stale: dict | None, hazard: str) -> np.ndarray:
        n = self.state.overall.size
        if name in ds:
            arr = self.read(ds, name).ravel()
        else:
            self.input_var(name)
            arr = np.full(n, np.nan)
        if stale and hazard in stale and name in ("crowd_density", "water_depth", "traffic_speed"):
            arr = np.where(np.asarray(stale[hazard]).ravel(), np.nan, arr)
        return np.ascontiguousarray(arr)

    def flap_percent(self) -> np.ndarray:
        """Nagios percent state change per cell and hazard (0-100), shape (n_cells, 3). [1]"""
        out = np.empty(self.state.history.size)
        rk.flap_percent(self.state.history.ravel(), out)
        return out.reshape(self.state.history.shape)

    def restore_state(self, state: dict) -> None:
        """As :meth:`Component.restore_state`; a state saved with tick counters is upgraded first."""
        saved = state.get("state")
        if isinstance(saved, dict) and "timers" not in saved and "n_up" in saved:
            state = {**state, "state": AlertState.upgraded(saved)}
        elif isinstance(saved, dict) and np.shape(saved.get("timers"))[-1:] == (rk.N_TIMERS - 1,):
            state = {**state, "state": AlertState.with_history_clock(saved)}
        super().restore_state(state)

    def update(self, ds: xr.Dataset, dt: float, stale: dict | None = None) -> xr.Dataset:
        """One tick with the layers in ``ds``, ``dt`` [s] of twin time after the previous tick.

        Raises ValueError for a ``dt`` that is negative or not finite (the delays are in seconds).
        """
        if not (0.0 <= dt < np.inf):
            raise ValueError(f"AlertLevels.update: dt must be a finite number of seconds >= 0, got {dt}")
        self.check_inputs(ds)
        self.crowd_rows = self.band_rows(ds)
        g = self._get
        arrays = (g(ds, "crowd_density", stale, "crowd"), g(ds, "crowd_trend", stale, "crowd"),
                  g(ds, "crowd_pressure", stale, "crowd"), g(ds, "water_depth", stale, "flood"),
                  g(ds, "flow_hazard", stale, "flood"), g(ds, "rain_1h", stale, "flood"),
                  g(ds, "rain_6h", stale, "flood"), g(ds, "traffic_speed", stale, "traffic"),
                  g(ds, "free_flow_speed", stale, "traffic"), self.read(ds, "road_class").ravel(),
                  self.crowd_rows, g(ds, "vulnerability", stale, ""))
        n = arrays[0].size
        risk = np.empty((3, n))
        changed, nodata, forecast = np.empty(n, np.int8), np.empty(n, np.int8), np.empty(n, np.int8)
        pp = self.params
        self.kernel(*arrays, pp["p"], pp["thr"], pp["tthr"], pp["road_exp"], pp["timing"], float(dt), risk,
                    *self.state.args(), changed, nodata, forecast)
        out = {f"risk_{h}": risk[k].reshape(self.shape) for k, h in enumerate(HAZARDS)}
        out.update({f"level_{h}": self.state.level[:, k].reshape(self.shape).copy() for k, h in enumerate(HAZARDS)})
        out["level"] = self.state.overall.reshape(self.shape).copy()
        out["level_changed"] = changed.reshape(self.shape)
        out["level_nodata"] = nodata.reshape(self.shape)
        out["level_crowd_forecast"] = forecast.reshape(self.shape)
        coords = {d: ds.coords[d] for d in GRID_DIMS if d in ds.coords}
        return self.outputs_from_si(out, coords)


class RiverSignal(Component):
    """The river level warning: the river's level at the reference gauge against its warning level (警戒水位) and the
    flood wall's lowest crest (`models.config.RiverConfig`), with hysteresis.

    The river is one water level (the flood model holds every river cell at it), so this is one level for the whole
    river, as the rainstorm signal is one per rain source: the level of the highest colour whose raise threshold the
    river level has reached, held until the level falls below that colour's clear threshold (raise minus
    ``clear_margin``), then stepped down to the highest colour whose clear threshold it is still at or above. No
    delays: a tide gauge reading is already a minute's mean, and a tide does not flicker (docs/science/river.md 4).
    Output on the river cells (finite ``river_level``) and 0 on the other cells; -1 everywhere while there is no
    river level (no gauge and no tide series: no data, the held level kept for when a level comes back).
    It is a single district-wide value, not a per-cell state machine: `AlertLevels` stays the one per-cell machine.
    State: ``level`` (int, -1 before the first level) and ``value`` (the last river level [m], NaN before).
    """

    name = "river_signal"
    inputs = (Var("river_level", "m", GRID_DIMS, "float64", "river water level on river cells",
                  valid_range=(4.0, 6.0)),)
    outputs = (Var("river_signal", "1", GRID_DIMS, "int8", "river level warning level on river cells, 0 none to 4 red",
                   flags=LEVEL_FLAGS),)
    references = (HUANGPU_WARNING,)
    state_vars = ("level", "value")

    def __init__(self, ds: xr.Dataset | None = None, config: RiverConfig | None = None):
        self.config = config or RiverConfig()
        self.raise_at = np.array(self.config.level_raise, float)
        self.clear_at = np.array(self.config.level_clear, float)
        self.level = LEVEL_NODATA
        self.value = float("nan")

    def level_for(self, value: float) -> int:
        """The level after a river level ``value`` [m] from the held one (NaN: the held level, unchanged)."""
        if not np.isfinite(value):
            return self.level
        raised = int(np.count_nonzero(value >= self.raise_at))
        kept = min(max(self.level, 0), int(np.count_nonzero(value >= self.clear_at)))
        return max(raised, kept)

    def update(self, ds: xr.Dataset, dt: float) -> xr.Dataset:
        """The level after this tick's ``river_level`` [m]; ``dt`` is not used (no delays)."""
        self.check_inputs(ds)
        level = self.read(ds, "river_level")
        finite = np.isfinite(level)
        coords = {d: ds.coords[d] for d in GRID_DIMS if d in ds.coords}
        if not finite.any():
            return self.outputs_from_si({"river_signal": np.full(level.shape, LEVEL_NODATA, np.int8)}, coords)
        self.value = float(level[finite].max())
        self.level = self.level_for(self.value)
        return self.outputs_from_si({"river_signal": np.where(finite, self.level, 0).astype(np.int8)}, coords)
