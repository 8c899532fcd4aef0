"""One tick of the twin, the same for the live twin and a what-if scenario.

Per tick of ``dt`` seconds ending at ``t`` (docs/models-in-the-tick.md has the table of every component):

1. crowd: the provider's density (observed counters fused over their coverage live; the crowd-flow
   simulation in a scenario), then trend, hazard, projection and pressure (`models.CrowdState`);
2. flood: the shallow-water model (`models.FloodModel`) runs ``dt`` with the provider's rain (the provider first
   sets its river level, flood-wall barriers, outfalls and discharges in ``before_flood``); the tick gets
   ``wall_overtopping`` [m3 s-1] and ``river_level`` [m] (NaN off river cells) besides the depths, and the river
   cells held at the river level show no water depth, speed or flow hazard (the river is not waterlogging: its level
   is the ``river`` hazard); where the provider observes the depth
   (a fresh water gauge), that depth replaces the modelled one in the output only (the model's own water
   is not touched: writing observations into it would add water that never fell);
3. rain: rolling 1 h / 6 h totals and the Shanghai rainstorm signal (`models.RainAccumulation`), kept per
   rain source (a gauge live, a group of cells rained on alike in a scenario) and spread to the cells;
4. traffic: the provider's speed field (probes and loop detectors live; road queues in a scenario), then the
   GB/T 33171 congestion level and TPI-like index (`models.Congestion`); an incident the provider declares
   (California algorithm on loop pairs) joins the congestion's own;
5. risk and levels: the fused risk tick and the alert-level state machine (`models.AlertLevels`). Flood levels
   come from water on the ground only (the rainstorm signal is a hazard of its own, `models.hazards`), and
   the flood is no data while the rain that drives it is (no fresh rain source).

Live and scenario differ only in the `FieldProvider`: where the fields come from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import xarray as xr

from models._component import Component
from models.config import FloodConfig, RiskConfig
from models.crowd import CrowdState
from models.flood import FloodModel
from models.rain import RainAccumulation
from models.risk import AlertLevels, RiverSignal
from models.traffic import Congestion

GRID = ("y", "x")


@dataclass
class CrowdFields:
    """A tick's crowd: ``density`` [person m-2] per cell (NaN: no data); ``time`` [s] of the reading behind each cell's
    density (the density trend takes one sample per reading), None if every tick is a new reading (a simulation);
    ``nodata`` cells whose crowd level must be held (a covered cell whose counters are silent), None if NaN says it
    all; ``layers`` more layers to show."""

    density: np.ndarray
    time: np.ndarray | None = None
    nodata: np.ndarray | None = None
    layers: dict[str, xr.Variable] = field(default_factory=dict)


@dataclass
class RainFields:
    """A tick's rain: ``rate`` [mm h-1] per rain source (n_sources,), ``source`` the source of each cell (flat, int),
    ``stale`` True while no source is fresh (the flood model's forcing is then unknown)."""

    rate: np.ndarray
    source: np.ndarray
    stale: bool = False


@dataclass
class TrafficFields:
    """A tick's traffic: ``speed`` [km h-1] per cell (NaN: no data), ``incident`` an incident flag per cell the
    provider declares (1 declared, 0 tested and none, -1 not tested) or None, ``layers`` more layers to show."""

    speed: np.ndarray
    incident: np.ndarray | None = None
    layers: dict[str, xr.Variable] = field(default_factory=dict)


class FieldProvider(Protocol):
    """Where a tick's fields come from: observations (live) or a simulation (scenario). Times ``t`` are the
    provider's own clock [s] at the end of the tick, ``dt`` [s] its length."""

    n_rain_sources: int

    def crowd(self, t: float, dt: float) -> CrowdFields: ...

    def rain(self, t: float, dt: float) -> RainFields: ...

    def before_flood(self, t: float, dt: float, flood: FloodModel) -> None: ...

    def observed_depth(self, t: float) -> tuple[np.ndarray, np.ndarray] | None: ...

    def traffic(self, t: float, dt: float) -> TrafficFields: ...


class TickPipeline:
    """The models of a tick and their state across ticks (see the module docstring).

    Parameters
    ----------
    static : xr.Dataset
        The static twin (elevation, walkable area, roads, vulnerability, drainage ...).
    provider : FieldProvider
        Where the fields come from.
    risk : RiskConfig, optional
        Thresholds and delays of every hazard.
    flood : FloodConfig, optional
        The shallow-water scheme's parameters.
    cell_size : float
        Grid spacing. [m]
    """

    def __init__(self, static: xr.Dataset, provider: FieldProvider, *, cell_size: float,
                 risk: RiskConfig | None = None, flood: FloodConfig | None = None) -> None:
        self.static, self.provider = static, provider
        self.shape = static["elevation"].shape
        zero = xr.zeros_like(static["elevation"], dtype=float)
        self.seed = static.assign(rain_rate=zero.assign_attrs(units="mm h-1"),
                                  crowd_density=zero.assign_attrs(units="person m-2"))
        self.risk_config = risk or RiskConfig()
        self.crowd = CrowdState(self.seed, self.risk_config.crowd)
        self.rain = RainAccumulation(xr.Dataset(
            {"rain_rate": (GRID, np.zeros((1, max(1, provider.n_rain_sources))), {"units": "mm h-1"})}))
        self.flood = FloodModel(self.seed, flood or FloodConfig(), cell_size=cell_size)
        self.congestion = Congestion(static, self.risk_config.traffic)
        self.levels = AlertLevels(static, self.risk_config)
        self.river_signal = RiverSignal(config=self.risk_config.river)
        self.rain_stale = True

    def components(self) -> dict[str, Component]:
        """The pipeline's stateful components, by their snapshot names."""
        return {"crowd": self.crowd, "rain": self.rain, "flood": self.flood, "congestion": self.congestion,
                "levels": self.levels, "river_signal": self.river_signal}

    def step(self, t: float, dt: float) -> xr.Dataset:
        """Advance by ``dt`` [s] to ``t``; returns the static twin with every layer of the tick."""
        ds = self.static.copy()
        live: dict[str, object] = {}  # gathered and merged once: each Dataset merge costs ms on a tick
        crowd_nodata = self._crowd(t, dt, ds, live)
        rain, stale_rain = self._rain(t, dt, live)
        live.update(self._flood(t, dt, rain))
        live["river_signal"] = self.river_signal.update(
            xr.Dataset({"river_level": live["river_level"]}), dt)["river_signal"].variable
        live.update(self._traffic(t, dt))
        ds.update(live)
        stale = {"flood": np.broadcast_to(stale_rain, self.shape)}
        if crowd_nodata is not None:
            stale["crowd"] = crowd_nodata
        # waterlogging levels come from water on the ground only; the rainstorm signal is its own hazard
        ds.update(self.levels.update(ds.drop_vars(["rain_1h", "rain_6h"]), dt, stale=stale))
        self.rain_stale = stale_rain
        return ds

    def _crowd(self, t: float, dt: float, ds: xr.Dataset, live: dict) -> np.ndarray | None:
        fields = self.provider.crowd(t, dt)
        ds["crowd_density"] = (GRID, fields.density, {"units": "person m-2"})
        crowd = ds[["crowd_density"]]
        if fields.time is not None:
            crowd["crowd_time"] = (GRID, fields.time, {"units": "s"})
        state = self.crowd.update(crowd, dt)
        for name in ("crowd_trend", "crowd_pressure", "crowd_projected"):
            live[name] = state[name].variable
        live.update(fields.layers)
        return fields.nodata

    def _rain(self, t: float, dt: float, live: dict) -> tuple[np.ndarray, bool]:
        """Rain rate per cell, and its rolling totals and signal per source spread to the cells (into ``live``)."""
        fields = self.provider.rain(t, dt)
        rate = np.asarray(fields.rate, float) if np.size(fields.rate) else np.zeros(1)
        totals = self.rain.update(xr.Dataset({"rain_rate": (GRID, rate[None, :], {"units": "mm h-1"})}), dt)
        for name in ("rain_1h", "rain_6h", "rain_signal"):
            var = totals[name]
            live[name] = xr.Variable(GRID, var.values[0][fields.source].reshape(self.shape), var.attrs)
        rain = rate[fields.source].reshape(self.shape)
        live["rain_rate"] = xr.Variable(GRID, rain, {"units": "mm h-1"})
        return rain, fields.stale

    def _flood(self, t: float, dt: float, rain: np.ndarray) -> dict[str, xr.Variable]:
        self.provider.before_flood(t, dt, self.flood)
        self.flood.set_rain(rain)
        self.flood.run_one_step(dt)
        out = self.flood.fields()
        names = ("water_depth", "water_speed", "flow_hazard", "wall_overtopping")
        layers = {name: out[name].variable for name in names}
        river = self.flood.river_mask  # all False without a river level
        if river.any():  # the river is not waterlogging: its cells' water is the river level, a hazard of its own
            for name in ("water_depth", "water_speed", "flow_hazard"):
                layers[name].values[river] = 0.0
        layers["river_level"] = xr.Variable(GRID, np.where(river, self.flood.river_level, np.nan),
                                            {"units": "m", "long_name": "river water level on river cells"})
        observed = self.provider.observed_depth(t)
        if observed is not None and observed[0].size:  # the gauge is the truth at its cell (no mass added)
            cells, depth = observed
            layers["water_depth"].values.ravel()[cells] = depth
        return layers

    def _traffic(self, t: float, dt: float) -> dict[str, xr.Variable]:
        fields = self.provider.traffic(t, dt)
        speed = xr.Variable(GRID, fields.speed, {"units": "km h-1"})
        static = self.static.variables  # variables, not arrays with coordinates: no alignment on the hot path
        cong = self.congestion.update(xr.Dataset({"traffic_speed": speed, "road_class": static["road_class"],
                                                  "free_flow_speed": static["free_flow_speed"]})).variables
        incident = cong["traffic_incident"].values
        if fields.incident is not None:
            incident = np.maximum(fields.incident, incident)
        return {**fields.layers, "traffic_speed": speed, "congestion_level": cong["congestion_level"],
                "tpi_like": cong["tpi_like"], "traffic_incident": xr.Variable(GRID, incident)}


__all__ = ["CrowdFields", "FieldProvider", "RainFields", "TickPipeline", "TrafficFields"]
