"""Run a what-if scenario: the twin's own kernels forward in time under a scenario's forcing.

Every step of ``dt`` seconds (the scenario's ``step``):

- flood: the shallow-water model (`models.FloodModel`) with the scenario's rain, the intervened
  drainage, the river outfalls closed while tide-locked, the discharges of ``forcing.inflow`` (each step their
  hydrograph's exact mean over the step) and, with ``forcing.river``, the Huangpu's works (`twin.district.river`:
  the flood wall's crests, with the scenario's changes, the storm-drain outfalls that close while the river is above
  their invert, and the river cells holding the scenario's level); the flood wall and the river are logged every
  step (`WallLog`: the water over each section, the river level);
- crowd: the macroscopic crowd-flow kernel (`models.CrowdFlow`): arrivals at entrances, people
  heading for the gathering places while their target grows and for the exits after, closed exits
  impassable; then density trend and pressure (`models.CrowdState`) as the live twin has them;
- traffic: with the twin's road network (`twin.district.roads.RoadNetwork`), its directed links as capacity and
  queues (`scenarios.traffic.LinkQueues`: closures detoured, demand changes sampled on the links), their congestion
  levels, index and warning levels (`models.links.LinkCongestion`, as the live twin's links), the grid's traffic
  speed painted from the links (`models.links.paint_cells`), and traffic alerts on road segments named by road and
  cross streets (`twin.alerting.segments.RoadSegments`); without one, road cells as capacity and queues
  (`scenarios.traffic.RoadQueues`) and traffic alerts on regions of the level grid;
- flood and crowd alerts (and the crowd forecast) on operational units (`twin.alerting.units`), as in the live
  twin: the district's water gauges at the tunnel portals, its crowd counters' areas and metro exits, and a
  500 m management grid named after its roads;
- rain totals and the Shanghai rainstorm signal (`models.RainAccumulation`);
- the fused risk tick and the alert-level state machine (`models.AlertLevels`) and the alert
  lifecycle (`twin.alerting.lifecycle.AlertBook`, CAP ``status`` ``Exercise``): the alerts the live twin would
  have raised.

The layers that matter are recorded every ``every`` seconds (`scenarios.record.Recorder`). A run is
deterministic: the same scenario and seed give the same numbers.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import xarray as xr
from scipy import ndimage

import models
from models.hazards import alert_grids, density_bands_text
from models.hazards import hazard as hazard_spec
from models.links import LinkCongestion, link_static, paint_cells
from models.tick import CrowdFields, RainFields, TickPipeline, TrafficFields
from scenarios.record import Recorder
from scenarios.traffic import LinkQueues, RoadQueues
from twin.alerting.compose import ComposeContext, issue, peak_evidence
from twin.alerting.lifecycle import AlertBook, AlertEvent
from twin.alerting.segments import RoadSegments
from twin.alerting.units import district_units, group_places
from twin.district.dataset import grid_of
from twin.district.river import river_config
from twin.district.sources import data_dir

FULL_SHARE = 0.98
"""A gathering place holds its target when it has this share of its target people [1] [design: 2 % keeps a place
that is growing from switching on and off every step; 2 % of 3 person/m2 is 0.06 person/m2, below any band]."""

Progress = Callable[[float, float, float], None]
"""progress(simulated seconds done, simulated seconds in all, wall seconds so far)."""


@dataclass
class RunResult:
    """What a scenario run produced."""

    frames: xr.Dataset
    events: list[tuple[float, AlertEvent]] = field(default_factory=list)
    balance: dict[str, float] = field(default_factory=dict)
    """Relative mass-balance errors of water and people [1]."""
    wall_s: float = 0.0
    simulated_s: float = 0.0
    start_time: float = 0.0
    wall: xr.Dataset | None = None
    """With ``forcing.river``: the flood wall and the river at every step (`WallLog.dataset`), else None."""


class WallLog:
    """The flood wall and the river at the end of every step of a run with ``forcing.river``: per section the
    water that has come over it so far [m3] (the flood model's ``overtopping_volume`` summed over the land cells
    behind it) and the mean discharge over it in the step [m3 s-1] (that volume's change over the step, so its
    integral is the volume exactly); the river level [m, Wusong]."""

    def __init__(self, river, shape: tuple[int, int]) -> None:
        self.river, self.shape = river, shape
        self.times: list[float] = []
        self.volumes: list[np.ndarray] = []
        self.levels: list[float] = []
        self.inflow: list[float] = []

    def record(self, t: float, flood: models.FloodModel) -> None:
        per_cell = flood.overtopping_volume.ravel()
        self.times.append(t)
        self.volumes.append(np.array([per_cell[s.cells].sum() for s in self.river.sections]))
        self.levels.append(self.river.level(t))
        self.inflow.append(float(flood.inflow_volume))

    def dataset(self, static: xr.Dataset) -> xr.Dataset:
        """(section, time) volume [m3] and discharge [m3 s-1], (time) river level [m, Wusong], the sections' crests
        [m, Wusong], names, sources and cells (section, y, x)."""
        sections = self.river.sections
        times = np.asarray(self.times, float)
        volume = np.stack(self.volumes, axis=1) if self.volumes else np.zeros((len(sections), 0))
        dts = np.diff(np.concatenate([[0.0], times]))
        discharge = np.diff(np.concatenate([np.zeros((len(sections), 1)), volume], axis=1), axis=1) / \
            np.where(dts > 0, dts, 1.0)
        cells = np.zeros((len(sections), *self.shape), np.uint8)
        for i, sec in enumerate(sections):
            cells[i].ravel()[sec.cells] = 1
        return xr.Dataset(
            {"volume": (("section", "time"), volume, {"units": "m3", "long_name": "water over the wall so far"}),
             "discharge": (("section", "time"), discharge, {"units": "m3 s-1",
                                                             "long_name": "mean discharge over the wall in the step"}),
             "river_level": ("time", np.asarray(self.levels, float), {"units": "m", "datum": "Wusong"}),
             "inflow_volume": ("time", np.asarray(self.inflow, float), {"units": "m3"}),
             "crest_m": ("section", [s.crest_m for s in sections], {"units": "m", "datum": "Wusong"}),
             "crest_was_m": ("section", [s.crest_was_m for s in sections], {"units": "m", "datum": "Wusong"}),
             "name": ("section", [s.name for s in sections]), "name_zh": ("section", [s.name_zh for s in sections]),
             "source": ("section", [s.source for s in sections]),
             "changed_by": ("section", [s.changed_by for s in sections]),
             "cells": (("section", "y", "x"), cells)},
            coords={"section": [s.id for s in sections], "time": ("time", times, {"units": "s"}),
                    "y": static["y"], "x": static["x"]})


class SimulatedFields:
    """A scenario's field provider (`models.tick.FieldProvider`): the crowd-flow simulation, the scenario's rain and
    outfalls, and road queues (on the links of ``road_network`` when given, congestion classified with ``risk``), on
    the scenario's clock (seconds from its start)."""

    def __init__(self, forcing, grid, road_network=None, risk: models.RiskConfig | None = None) -> None:
        self.forcing, self.grid = forcing, grid
        static = forcing.static
        zero = xr.zeros_like(static["elevation"], dtype=float)
        seed = static.assign(rain_rate=zero.assign_attrs(units="mm h-1"),
                             crowd_density=zero.assign_attrs(units="person m-2"))
        self.crowd_flow = models.CrowdFlow(seed, cell_size=grid.cell_size)
        self._reach = self._reachable()
        self.roads = RoadQueues(static["free_flow_speed"].values, static["road_class"].values, grid.cell_size)
        self.network = road_network
        self.links: LinkQueues | None = None
        self.link_layers = xr.Dataset()
        if road_network is not None:
            self._init_links(road_network, risk)
        self._rain_first, self._rain_group = self._rain_groups()
        self.n_rain_sources = int(self._rain_first.size)
        self.water_outlets: np.ndarray | None = None
        self._closed = np.zeros(grid.shape, bool)
        self._one_way: tuple = ()
        self._filling: tuple | None = None
        self._arriving = False
        self._river_applied = False

    # ------------------------------------------------------------ the provider
    def crowd(self, t: float, dt: float) -> CrowdFields:
        """The crowd-flow model run over the step: density [person m-2], 0 where nobody can stand (a simulation
        knows its empty cells), and the head count."""
        fields = self._run_crowd(t - dt, t, dt)
        density = fields["crowd_density"].fillna(0.0).values
        return CrowdFields(density, layers={"crowd_count": fields["crowd_count"].variable})

    def rain(self, t: float, dt: float) -> RainFields:
        """The scenario's mean rain over the step [mm h-1] per rain group (cells rained on alike)."""
        rain = np.broadcast_to(np.asarray(self.forcing.rain_at(t - dt, t), float), self.grid.shape)
        return RainFields(rain.ravel()[self._rain_first], self._rain_group)

    def before_flood(self, t: float, dt: float, flood: models.FloodModel) -> None:
        """The river (``forcing.river``: its works once, the flood wall's crests, the outfalls and the river cells
        with their level, `twin.district.river.RiverWorks.apply`), the discharges of the step (each inflow's exact
        mean over the step, so the water added is its hydrograph's integral) and the open-water outlets, closed
        while tide-locked."""
        river = self.forcing.river
        if river is not None and not self._river_applied:
            river.works.apply(flood, river.level)  # Wusong metres: apply converts
            self._river_applied = True
        inflows = self.forcing.inflows
        if inflows:
            flood.set_inflows([models.Inflow(f.name, f.cells, f.weights,
                                             models.Hydrograph.constant(f.mean_discharge(t - dt, t)))
                               for f in inflows])
        if self.water_outlets is None:
            self.water_outlets = flood.outlet.copy()
        flood.outlet[...] = self.water_outlets if self.forcing.outlets_open(t - dt) else 0

    def observed_depth(self, t: float) -> None:
        """Nothing is observed in a scenario."""
        return None

    def traffic(self, t: float, dt: float) -> TrafficFields:
        """Speeds of the queue model under the demand and closures in force: with road links, the links' speeds
        painted on the cells (NaN where no link crosses); else the road cells' own."""
        if self.links is None:
            return TrafficFields(self.roads.step(dt, self.forcing.demand_factor(t), self.forcing.road_closed(t)))
        speed = self.links.step(dt, self.forcing.demand_factor(t), self.forcing.road_closed(t))
        cong = self.congestion.update(self.link_static.assign(link_speed=("link", speed, {"units": "km h-1"})), dt)
        self.link_layers = cong.assign(
            link_speed=("link", speed, {"units": "km h-1"}),
            link_vc=("link", self.links.vc, {"units": "1"}),
            link_queue=("link", self.links.queue.copy(), {"units": "1"}),
            link_closed=("link", self.links.closed.astype(np.int8), {"units": "1"}))
        return TrafficFields(paint_cells(self.link_table, speed, self.grid.size).reshape(self.grid.shape))

    def traffic_places(self) -> list:
        """The road segments at a warning level now, as alert places (`twin.alerting.segments.Place`)."""
        if self.links is None or "link_warning" not in self.link_layers:
            return []
        lay = self.link_layers
        return self.segments.places(lay["link_warning"].values, lay["link_speed"].values)

    def _init_links(self, network, risk: models.RiskConfig | None) -> None:
        """Queues, congestion and segments on the network's links (the live twin's `LinkTraffic` wiring, without
        probes: service ways get speeds but no level, as live)."""
        links = network.links
        self.links = LinkQueues.from_network(network)
        self.link_static = link_static(links)
        self.congestion = LinkCongestion(self.link_static, risk)
        self.segments = RoadSegments(network, self.grid)
        self.link_table = network.cell_table

    # ------------------------------------------------------------ the simulation
    def _rain_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """Cells rained on alike (the same weight in every rain field) share their rolling totals: (one cell
        of each group, each cell's group). A uniform storm is one group instead of every cell."""
        n = self.grid.size
        rains = list(self.forcing.rains)
        weights = np.stack([np.asarray(r.weights, float).ravel() for r in rains], axis=1) if rains else np.zeros((n, 1))
        _, first, group = np.unique(weights, axis=0, return_index=True, return_inverse=True)
        return first, group.ravel()

    def _run_crowd(self, t0: float, t1: float, dt: float) -> xr.Dataset:
        self._apply_closures(t0)
        self._arrivals(t0, t1, dt)
        self._gatherings(t1)
        self.crowd_flow.run_one_step(dt)
        return self.crowd_flow.fields()

    def _entry_weight(self) -> np.ndarray:
        """Share of a stream's arrivals each entrance cell gets, flat: the people its walkable area can still take
        on Weidmann's free branch, rho_c x area - count, + 1 % of that so a congested entrance still gets some
        (at most what it may hold: a gathering's cells take no more than its hold) [person]. People coming along a
        street walk on where it is free rather than into the part already past the critical density (a diverge of
        the cell transmission model splits a flow by the receiving cells' room, Daganzo 1995); with all cells free
        this is the walkable area x rho_c."""
        cf = self.crowd_flow
        free = np.minimum(cf.rho_c * cf.area, cf.cap_admit).ravel()
        return np.maximum(free - cf.count.ravel(), 0.0) + 0.01 * free

    def _reachable(self) -> np.ndarray:
        """Walkable cells from which some exit or gathering place can be walked to (4-neighbour steps between walkable
        cells), flat: pockets of open ground the crowd model's grid walls in take no arrivals."""
        cf = self.crowd_flow
        goals = np.asarray(self.forcing.exits, bool).copy()
        for g in self.forcing.gatherings:
            goals |= g.mask
        label, n = ndimage.label(cf.walkable)
        linked = np.zeros(n + 1, bool)
        linked[label[goals & cf.walkable]] = True
        linked[0] = False
        return linked[label].ravel()

    def _arrivals(self, t0: float, t1: float, dt: float) -> None:
        """Each stream's people of the step as a rate over it, spread over its entrance cells by their free room
        (`_entry_weight`): they enter as the cells can receive them (`models.kernels.crowdflow.admit`), the rest wait
        outside. Walls, water and walled-in pockets (`_reachable`) take nobody."""
        walkable, area = self._reach, self._entry_weight()
        rate = np.zeros(self.grid.size)
        for cells, people, _destination in self.forcing.arrivals(t0, t1):
            cells = np.asarray(cells, np.int64)
            cells = cells[walkable[cells]]  # an entrance's walls, water and walled-in pockets take nobody
            if cells.size == 0:
                raise ValueError("a crowd entrance has no walkable cell on this grid")
            share = area[cells] if area[cells].sum() > 0 else np.ones(cells.size)  # all closed: they wait
            rate[cells] += people / dt * share / share.sum()  # [person s-1]
        if rate.any() or self._arriving:
            self._arriving = bool(rate.any())
            self.crowd_flow.src_rate[:] = 0.0
            if rate.any():
                self.crowd_flow.add_arrivals(np.flatnonzero(rate), rate[rate > 0])

    def _gatherings(self, t: float) -> None:
        """Gathering places attract while they fill, each up to its target: attractor cells hold the target spread
        over the place's walkable area (`GatheringTarget.hold_density`, at most the jam density), and a place that
        holds its target (within `FULL_SHARE`) takes nobody more (`CrowdFlow.set_hold`), so the people still coming
        head for the other places or the exits instead of piling up at its edge; after the hold everyone heads out."""
        cf = self.crowd_flow
        flags = tuple(g.filling(t) for g in self.forcing.gatherings)
        on = [g for g, f in zip(self.forcing.gatherings, flags, strict=True) if f]
        hold = np.full(self.grid.shape, np.nan)
        full, wanting = np.zeros(self.grid.shape, bool), np.zeros(self.grid.shape, bool)
        for g in on:
            mask = g.mask & cf.walkable
            hold[mask] = np.fmax(hold[mask], g.hold_density(t, cf.area))
            target = min(g.target_people(t), cf.config.rho_max * float(cf.area[mask].sum()))  # what it can hold
            if target <= 0.0 or cf.count[mask].sum() >= FULL_SHARE * target:
                full |= mask
            else:
                wanting |= mask  # a cell shared with a place that still fills stays open
        attractors = np.any([g.mask for g in on], axis=0) if on else np.zeros(self.grid.shape, bool)
        if flags != self._filling:  # gathering places attract while they fill; then everyone heads out
            exits = np.asarray(self.forcing.exits, bool) & ~attractors
            cf.set_destinations(sinks=exits & cf.walkable, attractors=attractors & cf.walkable)
            self._filling = flags
        cf.set_hold(np.where(attractors, hold, np.nan), full & ~wanting & attractors)

    def _apply_closures(self, t: float) -> None:
        """Exits and stairs closed at ``t``, and the one-way zones in force."""
        closed = np.asarray(self.forcing.closed_cells_at(t), bool)
        if not np.array_equal(closed, self._closed):
            self.crowd_flow.set_closed(self._closed & ~closed, closed=False)
            self.crowd_flow.set_closed(closed & ~self._closed, closed=True)
            self._closed = closed
        zones = tuple(self.forcing.one_way_at(t))
        if zones != self._one_way:
            for z in self._one_way:
                self.crowd_flow.set_one_way(z.mask, None)
            for z in zones:
                self.crowd_flow.set_one_way(z.mask, z.grid_bearing_deg)
            self._one_way = zones


class ScenarioModels:
    """The tick pipeline of one scenario run (`models.tick.TickPipeline` fed by `SimulatedFields`), its alert book
    and its state. With ``road_network`` (`twin.district.roads.RoadNetwork` of the twin) traffic runs on its links and
    traffic alerts are road segments, as in the live twin; without, on the road cells."""

    def __init__(self, forcing, start_time: float, seed: int = 0, status: str = "Exercise",
                 road_network=None) -> None:
        self.forcing = forcing
        static = forcing.static
        self.static, self.grid = static, grid_of(static)
        # the scenario's crowd bands (grid.crowd_bands): its places' bands for the static twin's crowd_band layer
        risk = models.RiskConfig(place_bands=tuple(getattr(forcing, "place_bands", ())))
        river = forcing.river
        if river is not None:  # the river warning's red is the lowest crest of this run's wall (crest changes in)
            risk = dataclasses.replace(risk, river=river_config(river.works, risk.river))
        self.fields = SimulatedFields(forcing, self.grid, road_network, risk)
        self.pipeline = TickPipeline(static, self.fields, cell_size=self.grid.cell_size, risk=risk)
        self.flood, self.crowd = self.pipeline.flood, self.fields.crowd_flow
        district = static.attrs.get("district", "district")
        self.book = AlertBook(district)
        self.units = district_units(data_dir() / forcing.spec.grid.district, self.grid)
        """Flood and crowd alerts are about these operational units (`twin.alerting.units`)."""
        self.cap_context = ComposeContext(self.grid, "scenario@citytwin", district, status, self._evidence,
                                          forecast_horizon_s=self.pipeline.risk_config.crowd.trend_horizon)
        self.start_time, self.seed = start_time, seed
        self.layers: xr.Dataset = xr.Dataset()
        self.wall_log = WallLog(river, self.grid.shape) if river is not None else None

    def start_from(self, state: dict[str, np.ndarray]) -> None:
        """Start from a live twin's water depth [m] and crowd density [person m-2] (a fork)."""
        if "water_depth" in state:
            self.flood.h[...] = np.where(self.flood.wall, 0.0, np.maximum(state["water_depth"], 0.0))
            self.flood.volume0 = self.flood.stored_volume
        if "crowd_density" in state:
            people = np.where(self.crowd.walkable, state["crowd_density"] * self.crowd.area, 0.0)
            if people.any():
                self.crowd.add_people(people > 0, people[people > 0])

    # ------------------------------------------------------------ one step
    def step(self, t0: float, t1: float) -> list[AlertEvent]:
        """Advance from ``t0`` to ``t1`` [s from the start]; returns the alert events of the step."""
        ds = self.pipeline.step(t1, t1 - t0)
        if self.wall_log is not None:
            self.wall_log.record(t1, self.flood)
        self.layers = ds[[name for name in ds.data_vars if name not in self.static.data_vars]]
        levels = alert_grids({name: var.values for name, var in self.layers.data_vars.items()})
        places = group_places(self.units, levels, self.layers)
        if self.fields.links is not None:
            places["traffic"] = self.fields.traffic_places()
        return issue(self.book.tick(self.start_time + t1, levels, places), self.cap_context)

    @property
    def link_layers(self) -> xr.Dataset:
        """The road links' speeds, V/C, queues, closures, levels, index and warning levels of the last step (dims
        ``link``; empty without a road network)."""
        return self.fields.link_layers

    def _evidence(self, hazard: str, cells: np.ndarray) -> dict[str, object]:
        """The worst value of the hazard's metric in the alert and, for crowd alerts, the density bands that applied
        (``densityBands``), as the live twin gives them."""
        out = peak_evidence(self.layers, hazard, cells)
        if hazard_spec(hazard).sensor_kind == "crowd":  # crowd and crowd_forecast
            band = self.static["crowd_band"].values.ravel()[cells] if "crowd_band" in self.static else \
                np.zeros(0, np.int8)
            out["densityBands"] = density_bands_text(self.pipeline.risk_config, band)
        return out

    # ------------------------------------------------------------ bookkeeping
    def balance(self) -> dict[str, float]:
        """Relative mass-balance errors: water and people [1]."""
        return {"water": float(self.flood.mass_balance_error()), "people": float(self.crowd.balance_error())}


def run_models(sm: ScenarioModels, *, duration_s: float, step_s: float, every_s: float = 60.0,
               progress: Progress | None = None) -> RunResult:
    """Run prepared models for ``duration_s`` simulated seconds in steps of ``step_s``."""
    if not (duration_s > 0 and step_s > 0):
        raise ValueError(f"duration {duration_s} s and step {step_s} s must be > 0")
    recorder = Recorder(every_s, sm.start_time)
    events: list[tuple[float, AlertEvent]] = []
    wall0 = time.monotonic()
    n = int(np.ceil(duration_s / step_s - 1e-9))
    for k in range(n):
        t0, t1 = k * step_s, min((k + 1) * step_s, duration_s)
        events += [(t1, e) for e in sm.step(t0, t1)]
        recorder.offer(t1, sm.layers, force=k == n - 1)
        if progress is not None:
            progress(t1, duration_s, time.monotonic() - wall0)
    wall = sm.wall_log.dataset(sm.static) if sm.wall_log is not None else None
    return RunResult(recorder.dataset(sm.static), events, sm.balance(), time.monotonic() - wall0, duration_s,
                     sm.start_time, wall)
