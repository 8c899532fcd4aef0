"""One tick of the live twin: live layers from the latest observations, then the models.

Per tick of ``dt`` seconds at time ``t`` (docs/models-in-the-tick.md has the table of every component):

1. crowd: fresh counter readings are fused over their coverage cells (`models.CrowdFusion`),
   then density trend and pressure (`models.CrowdState`); cells no fresh counter covers have
   no data;
2. rain: each cell takes the rate of its nearest fresh gauge (Thiessen polygons); rolling
   1 h / 6 h totals and rainstorm signals (`models.RainAccumulation`);
3. flood: the shallow-water model runs ``dt`` with that rain (`models.FloodModel`); a fresh
   water-depth gauge replaces the modelled depth in its cell in the output (the model's own water
   is not touched: writing observations into it would add water that never fell);
4. traffic: probe pings of the last window give space-mean speeds (`models.ProbeSpeeds`); the
   fresh loop-detector readings go on the grid (`models.LoopDetectors`: speed, flow, occupancy,
   California incidents) and a cell's loop speed replaces its probe speed; then the GB/T 33171
   congestion level and TPI-like index of the fused speed (`models.Congestion`);
5. then the fused risk tick and the alert-level state machine (`models.AlertLevels`); flood
   levels there come from water on the ground, and the Shanghai rainstorm signal is a hazard
   of its own (``rain``), so a district-wide signal does not swallow the underpass alerts.

A source older than its staleness limit is no data (`models.stale_mask` through
`SensorReadings.fresh`): it neither raises nor clears.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

import models
from twin.district.dataset import layer_variable
from twin.live.state import TwinState

HAZARDS = ("crowd", "flood", "traffic")


@dataclass(frozen=True)
class LiveConfig:
    """Tick and staleness settings of the live twin.

    Attributes
    ----------
    stale_s : dict
        Age after which a source's readings are no data, by sensor kind. [s]
    probe_window_s : float
        Vehicle pings used for the probe speeds. [s]
    count_rel_error : float
        Relative standard error of a crowd counter whose registry entry states none (``count_rel_error``
        property; camera counts: 10-20 %, docs/science/crowd.md 1.4). [1]
    walkable_override : str or None
        GeoJSON file of polygons that override the walkable area (railings, flood walls, temporary barriers;
        `twin.district.walkable`), applied to the twin's ``walkable_area`` layer when the models are built.
    """

    stale_s: dict[str, float] = field(default_factory=lambda: {
        "crowd": 180.0, "rain": 600.0, "water": 300.0, "traffic": 300.0, "probe": 300.0})
    probe_window_s: float = 300.0
    count_rel_error: float = 0.15
    walkable_override: str | None = None
    risk: models.RiskConfig = field(default_factory=models.RiskConfig)
    flood: models.FloodConfig = field(default_factory=models.FloodConfig)


class LiveModels:
    """The models of one live twin and their state across ticks."""

    def __init__(self, state: TwinState, config: LiveConfig | None = None) -> None:
        self.state, self.config = state, config or LiveConfig()
        if self.config.walkable_override is not None:
            state.override_walkable(self.config.walkable_override)
        static = state.static
        self.shape = state.grid.shape
        zero = xr.zeros_like(static["elevation"])
        seed = static.assign(rain_rate=zero.assign_attrs(units="mm h-1"),
                             crowd_density=zero.assign_attrs(units="person m-2"))
        self.fusion = models.CrowdFusion(seed)
        self.count_rel_error = np.where(np.isnan(state.crowd_rel_error), self.config.count_rel_error,
                                        state.crowd_rel_error)
        """Relative standard error of each crowd counter's count: its registry value, else the config's. [1]"""
        covered = np.zeros(state.grid.size, bool)
        covered[state.cover[1]] = True
        self.crowd_covered = covered.reshape(self.shape)
        """Cells some crowd counter covers: without a fresh reading they are no data."""
        self.crowd = models.CrowdState(seed)
        # rain totals are kept per gauge (a 1 x n "grid") and spread to cells by nearest gauge
        n_gauges = max(1, len(state.readings["rain"].ids))
        self.rain = models.RainAccumulation(xr.Dataset(
            {"rain_rate": (("y", "x"), np.zeros((1, n_gauges)), {"units": "mm h-1"})}))
        self._nearest: dict[bytes, np.ndarray] = {}
        self.flood = models.FloodModel(seed, self.config.flood, cell_size=state.grid.cell_size)
        self.probes = models.ProbeSpeeds(seed, shape=self.shape)
        self._add_traffic_components()
        self.levels = models.AlertLevels(static, self.config.risk)
        self.layers = xr.Dataset(coords=static.coords)
        self.rain_stale = True
        self.t = float("nan")

    def _add_traffic_components(self) -> None:
        """Loop detectors and congestion levels."""
        traffic = self.config.risk.traffic
        self.loops = models.LoopDetectors(self._loop_readings(float("nan")), traffic, shape=self.shape)
        self.congestion = models.Congestion(self.state.static, traffic)

    # ------------------------------------------------------------ snapshots (twin.live.snapshot)
    def components(self) -> dict[str, models.Component]:
        """The model components of the tick, by name."""
        return {"fusion": self.fusion, "crowd": self.crowd, "rain": self.rain, "flood": self.flood,
                "probes": self.probes, "loops": self.loops, "congestion": self.congestion, "levels": self.levels}

    def save_state(self) -> dict:
        """What evolves: each component's state, the last tick's layers, its time and whether rain was stale."""
        return {"components": {name: c.save_state() for name, c in self.components().items()},
                "layers": {name: var.values.copy() for name, var in self.layers.data_vars.items()},
                "t": float(self.t), "rain_stale": bool(self.rain_stale)}

    def restore_state(self, state: dict) -> None:
        """Take back what `save_state` gave (on models built from the same static twin, registry and config)."""
        for name, component in self.components().items():
            component.restore_state(state["components"][name])
        self.layers = xr.Dataset({name: layer_variable(name, np.asarray(values))
                                  for name, values in state["layers"].items()}, coords=self.state.static.coords)
        self.t, self.rain_stale = float(state["t"]), bool(state["rain_stale"])

    # ------------------------------------------------------------ one tick
    def step(self, t: float, dt: float) -> xr.Dataset:
        """Advance the models to time ``t`` [unix s] by ``dt`` [s]; returns the live and risk layers."""
        ds = self.state.static.copy()
        stale = {}
        density, stale["crowd"] = self._crowd(t)
        ds["crowd_density"] = (("y", "x"), density, {"units": "person m-2"})
        crowd = self.crowd.update(ds, dt)
        live: dict[str, object] = {}  # gathered and merged once: each Dataset merge costs ms on a tick
        rain, stale_rain = self._rain(t, dt, live)
        live.update(self._flood(t, dt, rain).data_vars)
        stale["flood"] = np.broadcast_to(stale_rain, self.shape)
        live.update(self._traffic(t).data_vars)
        live["crowd_trend"], live["crowd_pressure"] = crowd["crowd_trend"], crowd["crowd_pressure"]
        ds.update(live)
        # waterlogging levels come from water on the ground only; the rainstorm signal is its own alert
        ds.update(self.levels.update(ds.drop_vars(["rain_1h", "rain_6h"]), dt, stale=stale))
        self.rain_stale = stale_rain
        self.t = t
        self.layers = self._live_layers(ds)
        return self.layers

    def _crowd(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Crowd density from the fresh counters (`models.CrowdFusion`, docs/science/crowd.md 1.4) and the covered
        cells that have no data."""
        r, cover = self.state.readings["crowd"], self.state.crowd_coverage
        count, _ = r.latest("count")
        fresh = r.fresh("count", t, self.config.stale_s["crowd"]) & np.isfinite(count)
        use = fresh[cover.owner_feature]
        ds = xr.Dataset({
            "sensor_count": ("sensor", np.where(fresh, count, np.nan), {"units": "person"}),
            "sensor_rel_error": ("sensor", self.count_rel_error, {"units": "1"}),
            "sensor_walkable_area": ("sensor", self.state.crowd_walkable_m2, {"units": "m2"}),
            "piece_cell": ("piece", cover.piece_cell),
            "piece_fraction": ("piece", cover.piece_area / self.state.grid.cell_area),
            "cover_piece": ("cover", cover.owner_piece[use]), "cover_sensor": ("cover", cover.owner_feature[use]),
            "walkable_area": self.state.static["walkable_area"]})
        density = self.fusion.update(ds)["crowd_density"].values
        return density, self.crowd_covered & np.isnan(density)

    def _rain(self, t: float, dt: float, ds: dict) -> tuple[np.ndarray, bool]:
        """Rain rate, rolling totals and signals per cell from the gauges (nearest fresh gauge), put in ``ds``."""
        r, cells = self.state.readings["rain"], self.state.sensor_cells["rain"]
        rate, _ = r.latest("rain")
        fresh = r.fresh("rain", t, self.config.stale_s["rain"]) & (cells >= 0) & np.isfinite(rate)
        gauge_rate = np.where(fresh, rate, 0.0) if rate.size else np.zeros(1)
        totals = self.rain.update(xr.Dataset({"rain_rate": (("y", "x"), gauge_rate[None, :],
                                                            {"units": "mm h-1"})}), dt)
        if not fresh.any():
            nearest, stale = np.zeros(self.state.grid.size, np.int64), True
        else:
            nearest, stale = self._nearest_gauge(fresh), False
        for name in ("rain_1h", "rain_6h", "rain_signal"):
            var = totals[name]
            ds[name] = (("y", "x"), var.values[0][nearest].reshape(self.shape), var.attrs)
        rain = gauge_rate[nearest].reshape(self.shape)
        ds["rain_rate"] = (("y", "x"), rain, {"units": "mm h-1"})
        return rain, stale

    def _nearest_gauge(self, fresh: np.ndarray) -> np.ndarray:
        """Index of the nearest fresh gauge for every cell (Thiessen polygons), cached per fresh set."""
        key = fresh.tobytes()
        if key not in self._nearest:
            g = self.state.grid
            cells = self.state.sensor_cells["rain"]
            idx = np.flatnonzero(fresh)
            gy, gx = np.divmod(cells[idx], g.nx)
            yy, xx = np.divmod(np.arange(g.size), g.nx)
            d2 = (yy[:, None] - gy[None, :]) ** 2 + (xx[:, None] - gx[None, :]) ** 2
            self._nearest[key] = idx[np.argmin(d2, axis=1)]
        return self._nearest[key]

    def _flood(self, t: float, dt: float, rain: np.ndarray) -> xr.Dataset:
        self.flood.set_rain(rain)
        self.flood.run_one_step(dt)
        r, cells = self.state.readings["water"], self.state.sensor_cells["water"]
        depth, _ = r.latest("depth")
        fresh = r.fresh("depth", t, self.config.stale_s["water"]) & (cells >= 0) & np.isfinite(depth)
        out = self.flood.fields()[["water_depth", "water_speed", "flow_hazard"]]
        if fresh.any():  # the gauge is the truth at its cell; the model's water is left alone (no mass added)
            out["water_depth"].values.ravel()[cells[fresh]] = depth[fresh]
        return out

    def _traffic(self, t: float) -> xr.Dataset:
        cfg = self.config
        pings = self.state.recent_pings(t, cfg.probe_window_s)
        interval = np.full(pings.size, 10.0)
        if pings.size:  # each ping stands for the time to the same vehicle's next ping, at most 30 s
            order = np.lexsort((pings["t"], pings["device"].astype(str)))
            p = pings[order]
            same = p["device"][1:] == p["device"][:-1]
            gap = np.where(same, np.diff(p["t"]), 10.0)
            interval[order[:-1]] = np.clip(gap, 1.0, 30.0)
        pds = xr.Dataset({"ping_cell": ("ping", pings["cell"].astype(np.int64)),
                          "ping_speed": ("ping", pings["speed"], {"units": "km h-1"}),
                          "ping_interval": ("ping", interval, {"units": "s"})})
        probes = self.probes.update(pds).variables
        loops = self.loops.update(self._loop_readings(t)).variables
        loop = loops["loop_speed"].values
        speed = xr.Variable(("y", "x"), np.where(np.isnan(loop), probes["traffic_speed"].values, loop),
                            {"units": "km h-1"})  # a fresh loop is the truth at its cell
        static = self.state.static.variables  # variables, not arrays with coordinates: no alignment on the hot path
        cong = self.congestion.update(xr.Dataset({"traffic_speed": speed, "road_class": static["road_class"],
                                                  "free_flow_speed": static["free_flow_speed"]})).variables
        incident = np.maximum(loops["traffic_incident"].values, cong["traffic_incident"].values)
        return xr.Dataset({"traffic_speed": speed, "traffic_samples": probes["traffic_samples"],
                           "traffic_flow": loops["traffic_flow"], "traffic_occupancy": loops["traffic_occupancy"],
                           "congestion_level": cong["congestion_level"], "tpi_like": cong["tpi_like"],
                           "traffic_incident": (("y", "x"), incident)})

    def _loop_readings(self, t: float) -> xr.Dataset:
        """The loop detectors' fresh speed, flow and occupancy at ``t`` (NaN where stale), their cells and pairs."""
        r, max_age = self.state.readings["traffic"], self.config.stale_s["traffic"]

        def fresh(quantity: str) -> np.ndarray:
            value, _ = r.latest(quantity)
            return np.where(r.fresh(quantity, t, max_age), value, np.nan)

        _, t_occ = r.latest("occ")
        return xr.Dataset({
            "detector_cell": ("detector", self.state.sensor_cells["traffic"]),
            "detector_speed": ("detector", fresh("speed"), {"units": "km h-1"}),
            "detector_flow": ("detector", fresh("flow"), {"units": "h-1"}),
            "detector_occupancy": ("detector", fresh("occ"), {"units": "%"}),
            "detector_downstream": ("detector", self.state.loop_downstream),
            "detector_time": ("detector", t_occ, {"units": "s"})})

    def _updated(self) -> dict[str, np.ndarray]:
        """Per cell and source, the time of the latest reading that applies to the cell [unix s]."""
        st, n = self.state, self.state.grid.size
        out = {}
        _, t = st.readings["crowd"].latest("count")
        sensor, cell, _ = st.cover
        crowd = np.full(n, -np.inf)
        np.maximum.at(crowd, cell, t[sensor])
        out["updated_crowd"] = crowd
        _, t = st.readings["rain"].latest("rain")
        cells = st.sensor_cells["rain"]
        have = np.isfinite(t) & (cells >= 0)
        out["updated_rain"] = t[self._nearest_gauge(have)] if have.any() else np.full(n, -np.inf)
        for kind, quantity in (("water", "depth"), ("traffic", "speed")):
            _, t = st.readings[kind].latest(quantity)
            cells = st.sensor_cells[kind]
            arr = np.full(n, -np.inf)
            np.maximum.at(arr, cells[cells >= 0], t[cells >= 0])
            out[f"updated_{kind}"] = arr
        p = st.pings
        if p.size:
            np.maximum.at(out["updated_traffic"], p["cell"], p["t"])
        return {k: np.where(np.isfinite(v), v, np.nan).reshape(self.shape) for k, v in out.items()}

    def _live_layers(self, ds: xr.Dataset) -> xr.Dataset:
        names = ("crowd_density", "crowd_trend", "crowd_pressure", "rain_rate", "rain_1h", "rain_6h", "rain_signal",
                 "water_depth", "water_speed", "flow_hazard", "traffic_speed", "traffic_samples", "traffic_flow",
                 "traffic_occupancy", "congestion_level", "tpi_like", "traffic_incident",
                 "risk_crowd", "risk_flood", "risk_traffic", "level_crowd", "level_flood", "level_traffic",
                 "level", "level_changed", "level_nodata", "level_crowd_forecast")
        layers = {name: layer_variable(name, values) for name, values in self._updated().items()}
        layers.update({name: layer_variable(name, ds[name].values) for name in names})
        return xr.Dataset(layers, coords=self.state.static.coords)

    def hazard_levels(self) -> dict[str, np.ndarray]:
        """The current level grid of each hazard (int8, -1 no data); ``rain`` is the Shanghai
        rainstorm signal (no data while no rain gauge is fresh)."""
        out = {h: self.layers[f"level_{h}"].values for h in HAZARDS}
        signal = self.layers["rain_signal"].values
        out["rain"] = np.full_like(signal, -1) if self.rain_stale else signal
        return out
