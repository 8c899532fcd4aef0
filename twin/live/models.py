"""The live twin's tick: the shared tick pipeline (`models.tick`) fed with the latest observations.

`ObservedFields` is the live twin's field provider; the pipeline is the same one the scenario runner drives
with simulated fields (`scenarios.runner`). Per tick of ``dt`` seconds at time ``t``
(docs/models-in-the-tick.md has the table of every component):

1. crowd: fresh counter readings are fused over their coverage cells (`models.CrowdFusion`); cells no
   fresh counter covers have no data, and a covered cell whose counters are silent holds its level;
2. rain: each cell takes the rate of its nearest fresh gauge (Thiessen polygons); the rolling totals are kept
   per gauge;
3. flood: the Huangpu's works (`twin.district.river`: the flood wall's crests, the storm-drain outfalls and the
   river cells) are put into the flood model at the first tick; every tick the river cells take the river level of
   the freshest river-level gauge (a gauge silent past its staleness limit is held for `LiveConfig.river_hold_s`,
   then the river falls back to `LiveConfig.river_fallback_m`), and every fresh pump station's discharge is put
   into the model at its outfall (docs/contract/mqtt.md): `twin.live.river.LiveRiver`;
   a fresh water-depth gauge replaces the modelled depth in its cell in the output;
4. traffic: probe pings of the last window give space-mean speeds (`models.ProbeSpeeds`); the fresh
   loop-detector readings go on the grid (`models.LoopDetectors`: speed, flow, occupancy, California
   incidents) and a cell's loop speed replaces its probe speed;
5. then the pipeline's congestion, risk and levels.

Flood, crowd and crowd-forecast alerts are about operational units (`twin.alerting.units`), built once from the
registry (water gauges at the tunnel portals: waterlogging points; crowd counters' areas: named places) and the
district folder (metro exits; roads and POIs naming the 500 m management grid units): `LiveModels.hazard_places`.
Cells without data keep their last known level there too: silence neither raises nor clears.

A source older than its staleness limit is no data (`models.stale_mask` through
`SensorReadings.fresh`): it neither raises nor clears.

Cells outside the district (a district grid's ``in_district`` layer, `TwinState.outside_cells`) are no data for the
twin: the models run on the whole rectangle as built, and every layer of the tick is then blanked there
(`blank_outside`: NaN, level -1, `OUTSIDE_FILL`), so an outside cell has no level, holds none (`LiveModels._hold`),
is in no alert (levels, operational units and road segments alike) and is not counted in the vital signs, whatever
reading lands there. Its owner is the neighbouring district's twin (`twin.city.districts.owned_cells`). A grid
without the layer blanks nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import models
from models.hazards import LEVEL_HAZARDS, LEVEL_NODATA, alert_grids
from models.tick import CrowdFields, RainFields, TickPipeline, TrafficFields
from twin.alerting import units as op_units
from twin.district.cim import RIVER_M
from twin.district.dataset import layer_variable
from twin.district.layers import layer as layer_spec
from twin.district.sources import data_dir
from twin.district.thresholds import load_place_bands, with_place_bands
from twin.live.links import LATE_S, LinkTraffic, ProbeLinks  # noqa: F401 (ProbeLinks, LATE_S: their old home)
from twin.live.river import LiveRiver, RiverNow
from twin.live.state import TwinState


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
    place_bands_file : str or None
        GeoJSON file of places with crowd density bands of their own (stairs, ramps, bridges;
        `twin.district.thresholds`), applied when the models are built (after ``walkable_override``): the twin
        gets its ``crowd_band`` layer and the models run with ``risk`` replaced by
        ``dataclasses.replace(risk, place_bands=...)`` (the file's places, in file order).
    river_works : bool
        Put the district's river works (`twin.district.river.load_river_works`: the flood wall, the storm-drain
        outfalls, the river cells) into the flood model and drive the river by the ``level`` gauges; False: the
        river is a plain outlet, as before the river had a level.
    river_hold_s : float
        How long the river holds the last river-level reading after it went stale (past ``stale_s["level"]``)
        before it falls back to ``river_fallback_m``. [s]
    river_fallback_m : float
        The river level while no gauge has reported for ``stale_s["level"] + river_hold_s``, and before the first
        reading [m above the Wusong datum]: by default `twin.district.cim.RIVER_M`, the level the grid's open water
        was built at, so a twin without a gauge has the river of its grid.
    """

    stale_s: dict[str, float] = field(default_factory=lambda: {
        "crowd": 180.0, "rain": 600.0, "water": 300.0, "traffic": 300.0, "probe": 300.0,
        "level": 600.0, "pump": 300.0})
    """``level``: 600 s, two missed reports of a tide gauge reporting every 5 minutes [design; Shanghai's tide
    stations publish 5-minute levels, mem]; ``pump``: 300 s, a pump station's SCADA reports each minute or faster
    [design], so five missed reports."""
    river_works: bool = True
    river_hold_s: float = 1200.0
    """[design] 20 minutes: at the Huangpu's fastest rise (about 1 m h-1 on a flood tide, mem) a held level is at
    most some 0.3 m behind the river; longer silences fall back to the normal level and say so in the log."""
    river_fallback_m: float = RIVER_M
    probe_window_s: float = 300.0
    count_rel_error: float = 0.15
    walkable_override: str | None = None
    road_network: Any = None
    """The district's directed road links (`twin.district.roads.RoadNetwork`), or None: with one, the probe pings
    are map-matched to links every tick (`models.MapMatcher`) and the links get space-mean speeds
    (`models.LinkSpeeds`, ``LiveModels.link_layers``)."""
    place_bands_file: str | None = None
    risk: models.RiskConfig = field(default_factory=models.RiskConfig)
    flood: models.FloodConfig = field(default_factory=models.FloodConfig)


OUTSIDE_FILL = {"level_changed": 0, "level_nodata": (1 << len(LEVEL_HAZARDS)) - 1, "traffic_samples": 0.0}
"""What a tick's layer holds in a cell outside the district where it is not the layer's no-data value (NaN for a
float layer, `LEVEL_NODATA` for an integer one): nothing changed, every hazard without data (bits 1 crowd, 2 flood,
4 traffic), no probe sample. ``crowd_band`` (a setting, not data) is left as it is."""
KEPT_OUTSIDE = frozenset({"crowd_band"})


def outside_value(name: str) -> float:
    """The value of layer ``name`` in a cell outside the district (`OUTSIDE_FILL`, else NaN or `LEVEL_NODATA` by the
    layer's dtype)."""
    if name in OUTSIDE_FILL:
        return OUTSIDE_FILL[name]
    return LEVEL_NODATA if np.dtype(layer_spec(name).dtype).kind in "iu" else np.nan


def blank_outside(layers: dict[str, xr.Variable], outside: np.ndarray) -> None:
    """Set every layer (variables on (y, x), changed in place) to `outside_value` at the flat cells ``outside``."""
    if outside.size == 0:
        return
    for name, var in layers.items():
        if name not in KEPT_OUTSIDE:
            np.put(var.values, outside, outside_value(name))  # flat (row-major) indices, in place, any layout


class ObservedFields:
    """The live twin's field provider (`models.tick.FieldProvider`): the latest fresh observations as fields."""

    def __init__(self, state: TwinState, config: LiveConfig) -> None:
        self.state, self.config = state, config
        static = state.static
        self.shape = state.grid.shape
        zero = xr.zeros_like(static["elevation"])
        self.fusion = models.CrowdFusion(static.assign(crowd_density=zero.assign_attrs(units="person m-2")))
        self.count_rel_error = np.where(np.isnan(state.crowd_rel_error), config.count_rel_error,
                                        state.crowd_rel_error)
        """Relative standard error of each crowd counter's count: its registry value, else the config's. [1]"""
        covered = np.zeros(state.grid.size, bool)
        covered[state.cover[1]] = True
        self.crowd_covered = covered.reshape(self.shape)
        """Cells some crowd counter covers: without a fresh reading they are no data."""
        self.n_rain_sources = max(1, len(state.readings["rain"].ids))
        self._nearest: dict[bytes, np.ndarray] = {}
        self.probes = models.ProbeSpeeds(static, shape=self.shape)
        self.loops = models.LoopDetectors(self._loop_readings(float("nan")), config.risk.traffic, shape=self.shape)
        self.links: Any = None
        """The twin's `twin.live.links.LinkTraffic` when it has a road network (set by `LiveModels`): the traffic
        field is then painted from the links."""
        self.river = LiveRiver(state, config)
        """The river works, the river level and the pump stations (`twin.live.river.LiveRiver`)."""

    def crowd(self, t: float, dt: float) -> CrowdFields:
        """Crowd density from the fresh counters (`models.CrowdFusion`, docs/science/crowd.md 1.4); the covered
        cells without one are no data."""
        r, cover = self.state.readings["crowd"], self.state.crowd_coverage
        count, t_read = r.latest("count")
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
        return CrowdFields(density, self._reading_time(t_read, fresh), self.crowd_covered & np.isnan(density))

    def _reading_time(self, t_read: np.ndarray, fresh: np.ndarray) -> np.ndarray:
        """Per cell, the time of the newest fresh counter reading that covers it (NaN: none) [s]."""
        sensor, cell, _ = self.state.cover
        out = np.full(self.state.grid.size, -np.inf)
        use = fresh[sensor]
        np.maximum.at(out, cell[use], t_read[sensor[use]])
        return np.where(np.isfinite(out), out, np.nan).reshape(self.shape)

    def rain(self, t: float, dt: float) -> RainFields:
        """Each gauge's rate (0 where stale) and each cell's nearest fresh gauge (Thiessen polygons)."""
        r, cells = self.state.readings["rain"], self.state.sensor_cells["rain"]
        rate, _ = r.latest("rain")
        fresh = r.fresh("rain", t, self.config.stale_s["rain"]) & (cells >= 0) & np.isfinite(rate)
        gauge_rate = np.where(fresh, rate, 0.0) if rate.size else np.zeros(1)
        if not fresh.any():
            return RainFields(gauge_rate, np.zeros(self.state.grid.size, np.int64), stale=True)
        return RainFields(gauge_rate, self._nearest_gauge(fresh))

    def before_flood(self, t: float, dt: float, flood: models.FloodModel) -> None:
        """The river works, the river level and the pump stations' discharges (`twin.live.river.LiveRiver`)."""
        self.river.before_flood(t, flood)

    # the river's old names here (tests/live/test_river_live.py): their home is `twin.live.river.LiveRiver`
    def observed_depth(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Cells and depths [m] of the fresh water-depth gauges."""
        r, cells = self.state.readings["water"], self.state.sensor_cells["water"]
        depth, _ = r.latest("depth")
        fresh = r.fresh("depth", t, self.config.stale_s["water"]) & (cells >= 0) & np.isfinite(depth)
        return cells[fresh], depth[fresh]

    def loop_speeds(self, t: float) -> np.ndarray:
        """Each loop detector's fresh speed at ``t`` [km h-1] (NaN where stale)."""
        r = self.state.readings["traffic"]
        value, _ = r.latest("speed")
        return np.where(r.fresh("speed", t, self.config.stale_s["traffic"]), value, np.nan)

    def traffic(self, t: float, dt: float) -> TrafficFields:
        """With road links: their congestion speeds painted on the cells (loops fused on their links). Without:
        probe speeds per cell of the last window, a fresh loop detector's speed replacing them in its cell."""
        if self.links is not None:
            return self._traffic_from_links(t)
        pings = self.state.recent_pings(t, self.config.probe_window_s)
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
        speed = np.where(np.isnan(loop), probes["traffic_speed"].values, loop)  # a fresh loop is the truth
        return TrafficFields(speed, loops["traffic_incident"].values, {
            "traffic_samples": probes["traffic_samples"], "traffic_flow": loops["traffic_flow"],
            "traffic_occupancy": loops["traffic_occupancy"]})

    def _traffic_from_links(self, t: float) -> TrafficFields:
        painted = self.links.cell_fields(self.state.grid.size)
        loops = self.loops.update(self._loop_readings(t)).variables
        speed = painted["speed"].reshape(self.shape)
        samples = layer_variable("traffic_samples", painted["samples"].reshape(self.shape))
        return TrafficFields(speed, loops["traffic_incident"].values, {
            "traffic_samples": samples, "traffic_flow": loops["traffic_flow"],
            "traffic_occupancy": loops["traffic_occupancy"]})

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

    def updated(self) -> dict[str, np.ndarray]:
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


RIVER_LAYERS = ("river_level", "wall_overtopping", "river_signal")
"""Layers of the river the live twin shows (`models.tick.TickPipeline`): the river level on the river cells, the
water coming over the flood wall, and the river level warning (`models.risk.RiverSignal`, the ``river`` hazard)."""


def _layer(name: str, var: xr.DataArray | np.ndarray) -> xr.Variable:
    """``layer_variable`` of a layer of the registry (`twin.district.layers`); a layer not (yet) in it is a float
    copy with the pipeline's own attributes (none from a snapshot)."""
    try:
        return layer_variable(name, np.asarray(var))
    except KeyError:
        return xr.Variable(("y", "x"), np.array(var, dtype=float), dict(getattr(var, "attrs", {})))


def with_place_bands_file(state: TwinState, config: LiveConfig) -> LiveConfig:
    """Apply ``config.place_bands_file`` (`twin.district.thresholds`) to ``state.static`` (its ``crowd_band`` layer,
    replacing any) and return the config whose ``risk.place_bands`` are the file's places.

    Raises `twin.district.thresholds.PlaceBandsError` (a ValueError naming the file and every problem) or OSError.
    """
    places = load_place_bands(config.place_bands_file)
    state.static, bands = with_place_bands(state.static, places, Path(config.place_bands_file).name)
    return dataclasses.replace(config, risk=dataclasses.replace(config.risk, place_bands=bands))


class LiveModels:
    """The models of one live twin and their state across ticks: `ObservedFields` feeding `models.TickPipeline`."""

    def __init__(self, state: TwinState, config: LiveConfig | None = None) -> None:
        self.state, self.config = state, config or LiveConfig()
        if self.config.walkable_override is not None:
            state.override_walkable(self.config.walkable_override)  # rebuilds state.static: bands go on after it
        if self.config.place_bands_file is not None:
            self.config = with_place_bands_file(state, self.config)
        self.observed = ObservedFields(state, self.config)
        # the river warning's thresholds from the gauge file and the wall (none without river works)
        self.config = dataclasses.replace(self.config, risk=self.observed.river.risk_config(self.config.risk))
        self.pipeline = TickPipeline(state.static, self.observed, cell_size=state.grid.cell_size,
                                     risk=self.config.risk, flood=self.config.flood)
        self.layers = xr.Dataset(coords=state.static.coords)
        self.links = LinkTraffic(state, self.config.road_network, self.config.risk) \
            if self.config.road_network is not None else None
        self.observed.links = self.links
        self.t = float("nan")
        self._units: dict[str, op_units.OperationalUnits] | None = None
        self.held_levels: dict[str, np.ndarray] = {}
        """Per grouped hazard, each cell's last known level (no data holds it), for `hazard_places`."""

    @property
    def link_layers(self) -> xr.Dataset:
        """The road links' speeds, levels and index of the last tick (dims ``link``; empty without a road
        network)."""
        return self.links.layers if self.links is not None else xr.Dataset()

    def hazard_places(self) -> dict[str, list]:
        """The hazards whose alerts are places rather than grid regions: ``traffic`` on road segments when the
        twin has a road network (`twin.alerting.segments`); ``flood``, ``crowd`` and ``crowd_forecast`` on the
        operational units (`units`), from the last tick's levels (a cell without data keeps its last known level)."""
        out = {"traffic": self._own_places(self.links.places())} if self.links is not None else {}
        if "level_flood" not in self.layers:  # before the first tick
            return out
        levels = self.hazard_levels()
        held = {h: self._hold(h, levels[h]) for h in self.units if h in levels}
        return {**op_units.group_places(self.units, held, self.layers), **out}

    def _own_places(self, places: list) -> list:
        """The places with their cells outside the district left out, and those with no cell left dropped (a road
        segment that runs into the neighbouring district alerts on this twin's cells only)."""
        outside = self.state.outside_cells
        if outside.size == 0:
            return places
        out = []
        for place in places:
            cells = np.asarray(place.cells)
            mine = cells[~np.isin(cells, outside)]
            if mine.size:
                out.append(place if mine.size == cells.size else dataclasses.replace(place, cells=mine))
        return out

    @property
    def units(self) -> dict[str, op_units.OperationalUnits]:
        """The operational units of each grouped hazard (`twin.alerting.units.hazard_units`), built at first use from
        the registry's water gauges and crowd counters and the district folder's metro exits, roads and POIs."""
        if self._units is None:
            grid, registry = self.state.grid, self.state.registry
            water = [(d.id, d.name, d.geometry) for d in registry.of_kind("water")]
            crowd = [(d.id, d.name, d.geometry) for d in registry.of_kind("crowd")]
            district = str(self.state.static.attrs.get("district", "")).strip()
            landmarks, metro = op_units.district_places(data_dir() / district, grid.crs) if district else ([], [])
            self._units = op_units.hazard_units(
                grid, op_units.named_points(water, grid.crs, op_units.FLOOD_POINT_RADIUS_M),
                op_units.named_areas(crowd, grid.crs), metro, landmarks)
        return self._units

    def _hold(self, hazard: str, level: np.ndarray) -> np.ndarray:
        """The level grid with no-data cells (-1) at their last known level (0 at first); the cells outside the
        district (`TwinState.outside_cells`) are -1, none, whatever was held there."""
        level = np.asarray(level)
        known = self.held_levels.get(hazard)
        if known is None or known.shape != level.shape:
            known = self.held_levels[hazard] = np.zeros(level.shape, np.int8)
        fresh = level >= 0
        known[fresh] = level[fresh]
        held = known.copy()
        np.put(held, self.state.outside_cells, LEVEL_NODATA)
        return held

    @property
    def river(self) -> RiverNow:
        """The river level of the last tick and its source (`twin.live.river.LiveRiver.level`)."""
        return self.observed.river.now

    @property
    def rain_stale(self) -> bool:
        """True while no rain gauge is fresh (the rainstorm signal and the modelled flood are then no data)."""
        return self.pipeline.rain_stale

    # ------------------------------------------------------------ snapshots (twin.live.snapshot)
    def components(self) -> dict[str, models.Component]:
        """The model components of the tick, by name (the names snapshots keep)."""
        o = self.observed
        links = self.links.components() if self.links is not None else {}
        return {"fusion": o.fusion, **self.pipeline.components(), "probes": o.probes, "loops": o.loops, **links}

    def save_state(self) -> dict:
        """What evolves: each component's state, the last tick's layers, its time and whether rain was stale."""
        return {"components": {name: c.save_state() for name, c in self.components().items()},
                "layers": {name: var.values.copy() for name, var in self.layers.data_vars.items()},
                "t": float(self.t), "rain_stale": bool(self.rain_stale),
                "held_levels": {h: v.copy() for h, v in self.held_levels.items()},
                **({"probe_matcher": self.links.save_state()} if self.links is not None else {})}

    def restore_state(self, state: dict) -> None:
        """Take back what `save_state` gave (on models built from the same static twin, registry and config)."""
        for name, component in self.components().items():
            if name.startswith("link_") and name not in state["components"]:
                continue  # a snapshot from a twin without its road network (or before link levels): start empty
            component.restore_state(state["components"][name])
        self.layers = xr.Dataset({name: _layer(name, np.asarray(values)) for name, values in state["layers"].items()},
                                 coords=self.state.static.coords)
        self.t, self.pipeline.rain_stale = float(state["t"]), bool(state["rain_stale"])
        self.held_levels = {h: np.asarray(v, np.int8).copy() for h, v in state.get("held_levels", {}).items()}
        if self.links is not None and np.isfinite(self.t):
            self.links.restore_state(state.get("probe_matcher"), self.t)

    # ------------------------------------------------------------ one tick
    def step(self, t: float, dt: float) -> xr.Dataset:
        """Advance the models to time ``t`` [unix s] by ``dt`` [s]; returns the live and risk layers."""
        if self.links is not None:  # first: the tick's traffic field is painted from the links
            p = self.state.pings
            self.links.step(p[(p["t"] <= t) & np.isfinite(p["x"])], self.observed.loop_speeds(t), t, dt)
        ds = self.pipeline.step(t, dt)
        self.t = t
        self.layers = self._live_layers(ds)
        return self.layers

    def _live_layers(self, ds: xr.Dataset) -> xr.Dataset:
        names = ("crowd_density", "crowd_trend", "crowd_pressure", "crowd_projected",
                 "rain_rate", "rain_1h", "rain_6h", "rain_signal",
                 "water_depth", "water_speed", "flow_hazard", "traffic_speed", "traffic_samples", "traffic_flow",
                 "traffic_occupancy", "congestion_level", "tpi_like", "traffic_incident",
                 "risk_crowd", "risk_flood", "risk_traffic", "level_crowd", "level_flood", "level_traffic",
                 "level", "level_changed", "level_nodata", "level_crowd_forecast")
        layers = {name: layer_variable(name, values) for name, values in self.observed.updated().items()}
        layers.update({name: layer_variable(name, ds[name].values) for name in names})
        for name in RIVER_LAYERS:  # the river level and the overtopping (models.tick), when the pipeline has them
            if name in ds:
                layers[name] = _layer(name, ds[name].variable)
        # the crowd bands of each cell (0: the district's), for the alerts' densityBands evidence
        band = ds["crowd_band"].values if "crowd_band" in ds else np.zeros(self.observed.shape, np.int8)
        layers["crowd_band"] = layer_variable("crowd_band", band)
        blank_outside(layers, self.state.outside_cells)  # layer_variable copied every array: the models' are intact
        return xr.Dataset(layers, coords=self.state.static.coords)

    def hazard_levels(self) -> dict[str, np.ndarray]:
        """The level grid of every alerting hazard (`models.hazards.alert_grids`; int8, -1 no data)."""
        return alert_grids({name: var.values for name, var in self.layers.data_vars.items()}, self.rain_stale)
