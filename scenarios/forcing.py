"""A validated scenario on a grid: forcing and interventions as plain numpy data, no model code.

`prepare` (spec, static twin) -> `Forcing`. Times are seconds from the scenario start; masks are
boolean arrays of shape (ny, nx); cell lists are flat row-major indices (``row * nx + col``).

Rain
    A Chicago design storm (Keifer & Chu 1957) on the Shanghai intensity formula (docs/science/flood.md 2.2,
    `models.design_storm.shanghai_storm_intensity`; the peak at ``peak_ratio`` of the duration, 0.4 in Shanghai
    practice), or a step series of intensities. `Forcing.rain_at` is the mean over an interval from the
    exact cumulative depth, so the rain volume of a run does not depend on its step.
Crowd
    Arrivals at entrance cells at a rate [person s-1] (integrated exactly over each interval), each with
    a destination; gatherings as attractor masks with the number of people wanting to be there over
    time (raised-cosine rise and fall); exits (sinks) are the metro entrances and the walkable cells on
    the edge of the grid. Crowd places keep only walkable cells (``walkable_area`` > 0).
Walkable area
    The twin's ``walkable_area`` layer, with the scenario's override file (``grid.walkable``,
    `twin.district.walkable`: railings, flood walls, temporary barriers) applied first, the same file and
    formula the live twin applies (`twin.live.models.LiveConfig.walkable_override`): the crowd model's
    density and the live twin's fused density divide by the same walkable area (docs/science/crowd.md 1.4).
Crowd bands
    The scenario's file of places with crowd density bands of their own (``grid.crowd_bands``,
    `twin.district.thresholds`: stairs, ramps, bridges), applied after the walkable override as the live twin
    applies it (`twin.live.models.LiveConfig.place_bands_file`): the twin gets its ``crowd_band`` layer and
    `Forcing.place_bands` holds the places' bands for the run's `models.config.RiskConfig`.
Inflows (``forcing.inflow``)
    Discharges onto the ground [m3 s-1] (a pump station's outfall, a burst main): a place's usable cells share it
    equally, a line's cells by the length of line in each; usable cells are neither buildings (walls of the flood
    model) nor open water. `InflowSource.mean_discharge` is the exact mean of the hydrograph over an interval, so the
    water a run adds is the hydrograph's integral whatever its step.
The river (``forcing.river``)
    The Huangpu's level [m, Wusong datum] over time (a series or a tide with a surge), put on the grid's heights
    (`twin.district.river.wusong_to_grid`), and the district's river works (`twin.district.river.load_river_works`:
    the river cells, the flood wall's sections and crests, the outfalls) with the scenario's crest changes
    (``interventions.flood_wall``) applied. Without ``forcing.river`` the river is an outlet as before.
Interventions
    Drainage capacity set or scaled inside a polygon, area-weighted by the share of each cell the
    polygon covers (as `twin.district.cim.drainage_layer` does), applied to a copy of the twin; tide-locked
    outfalls (open water stops taking surface water); closed roads; closed exits, stairs and metro
    entrances (cells people can neither enter nor leave by); one-way crowd flow.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field

import numpy as np
import shapely
import xarray as xr

from models.config import CrowdFlowConfig, FloodConfig, PlaceBands
from models.design_storm import chicago_depth_mm
from scenarios.model import (
    Arrival,
    Closure,
    DesignStorm,
    DrainageChange,
    Gathering,
    OneWay,
    Rain,
    Scenario,
    Steps,
    Window,
)
from scenarios.places import Place, gazetteer
from scenarios.spec import ScenarioError
from scenarios.timeline import timeline
from scenarios.water_sections import InflowSpec, Linear, RiverSpec, WallChange
from twin.district.dataset import grid_of
from twin.district.geo import to_projected
from twin.district.grid import GridSpec
from twin.district.sources import data_dir
from twin.district.thresholds import apply_place_bands
from twin.district.walkable import with_walkable_file

REQUIRED_LAYERS = ("walkable_area", "drainage_capacity", "water_mask", "road_class", "underpass")


# ---------------------------------------------------------------- rain
@dataclass(frozen=True)
class RainField:
    """Rain over ``weights`` (share of each cell rained on [1]): a design storm or a step series [mm h-1]."""

    field: str
    weights: np.ndarray
    storm: DesignStorm | None
    series: Steps | None

    def depth_mm(self, t: float) -> float:
        """Depth fallen from the start until ``t`` where the weight is 1. [mm]"""
        if self.storm is not None:
            s = self.storm
            return chicago_depth_mm((t - s.start_s) / 60.0, s.return_period_yr, s.duration_min, s.peak_ratio)
        return self.series.integral(0.0, t) / 3600.0


# ---------------------------------------------------------------- crowd
@dataclass(frozen=True)
class ArrivalStream:
    """People arriving on ``cells`` (flat indices) and heading for ``destination`` (mask)."""

    field: str
    label: str
    cells: np.ndarray
    destination: np.ndarray
    rate: Steps
    window: Window

    def people(self, t0: float, t1: float) -> float:
        """People arriving within [t0, t1] (exact integral of the rate). [person]"""
        a, b = max(t0, self.window.start_s), min(t1, self.window.end_s)
        return self.rate.integral(a, b) if b > a else 0.0


def _ramp(x: float) -> float:
    """Raised cosine from 0 (x = 0) to 1 (x = 1)."""
    return 0.5 - 0.5 * math.cos(math.pi * min(max(x, 0.0), 1.0))


@dataclass(frozen=True)
class GatheringTarget:
    """An attractor: ``mask`` and the people wanting to be there over time."""

    field: str
    label: str
    mask: np.ndarray
    spec: Gathering

    def filling(self, t: float) -> bool:
        """Whether the gathering draws people at ``t``: from the start of its rise to the end of its hold
        (while it falls, people leave it)."""
        g = self.spec
        return g.peak_time_s - g.rise_s <= t <= g.peak_time_s + g.hold_s

    def hold_density(self, t: float, area: np.ndarray) -> float:
        """The density the place holds at ``t``: its target people spread evenly over its walkable area ``area``
        [m2 per cell, the crowd model's]; the crowd model caps it at the jam density. [person m-2]"""
        ground = float(area[self.mask].sum())
        return self.target_people(t) / ground if ground > 0 else 0.0

    def target_people(self, t: float) -> float:
        """People wanting to be in the mask at ``t``. [person]"""
        g = self.spec
        up, down = g.peak_time_s - g.rise_s, g.peak_time_s + g.hold_s
        if t < up or t >= down + g.fall_s:
            return 0.0
        if t < g.peak_time_s:
            return g.peak * _ramp((t - up) / g.rise_s)
        if t <= down:
            return g.peak
        return g.peak * _ramp(1.0 - (t - down) / g.fall_s)


# ---------------------------------------------------------------- masks in time
@dataclass(frozen=True)
class TimedMask:
    """A mask that holds within ``window``; ``factor`` for demand changes (1 otherwise)."""

    field: str
    label: str
    mask: np.ndarray
    window: Window
    factor: float = 1.0


@dataclass(frozen=True)
class OneWayZone:
    """Crowd flow in ``mask`` only toward ``grid_bearing_deg``: clockwise from grid north (the -row
    direction), converted from the file's true bearing ``bearing_deg``."""

    field: str
    label: str
    mask: np.ndarray
    bearing_deg: float
    grid_bearing_deg: float
    window: Window

    @property
    def direction(self) -> tuple[float, float]:
        """Unit vector of the allowed direction in the grid: (east, north) components. [1]"""
        b = math.radians(self.grid_bearing_deg)
        return math.sin(b), math.cos(b)


def _union(masks: list[TimedMask], t: float | None, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for m in masks:
        if t is None or t in m.window:
            out |= m.mask
    return out


# ---------------------------------------------------------------- water
@dataclass(frozen=True)
class InflowSource:
    """A discharge onto ``cells`` (flat indices), each taking its share ``weights`` (sum 1), over time
    ``hydrograph`` [m3 s-1]."""

    field: str
    name: str
    cells: np.ndarray
    weights: np.ndarray
    hydrograph: Linear

    def volume(self, t0: float, t1: float) -> float:
        """Water discharged within [t0, t1] (exact integral of the hydrograph). [m3]"""
        return self.hydrograph.integral(t0, t1)

    def mean_discharge(self, t0: float, t1: float) -> float:
        """Mean discharge over [t0, t1]. [m3 s-1]"""
        return self.volume(t0, t1) / (t1 - t0) if t1 > t0 else self.hydrograph.at(t0)


@dataclass(frozen=True)
class WallSection:
    """A flood-wall section of the run: ``id``, names, ``crest_m`` [m, Wusong] (the scenario's when it changes it,
    ``crest_was_m`` the data file's), where the crest comes from, and ``cells`` (flat) the land cells right behind
    it, where water coming over it lands."""

    id: str
    name: str
    name_zh: str
    crest_m: float
    crest_was_m: float
    source: str
    cells: np.ndarray
    changed_by: str = ""


@dataclass
class RiverSetup:
    """The river of a run: its level (`scenarios.water_sections.RiverSpec`, Wusong metres), the grid datum's zero
    above the Wusong zero [m] (grid height = Wusong level - offset, `twin.district.river.wusong_to_grid`), the
    district's river works with the crest changes applied (`twin.district.river.RiverWorks`; its ``apply`` takes the
    level in Wusong metres) and its flood-wall sections."""

    spec: RiverSpec
    offset_m: float
    works: object
    sections: list[WallSection]

    def level(self, t: float) -> float:
        """The river level at ``t`` [s from the start] in Wusong metres."""
        return self.spec.level(t)


# ---------------------------------------------------------------- the forcing
@dataclass
class Forcing:
    """A scenario's forcing and interventions on one grid (see the module docstring)."""

    spec: Scenario
    static: xr.Dataset
    grid: GridSpec
    rains: list[RainField]
    arrival_streams: list[ArrivalStream]
    gatherings: list[GatheringTarget]
    exits: np.ndarray
    exit_closures: list[TimedMask]
    road_closures: list[TimedMask]
    demand_changes: list[TimedMask]
    tide_locks: tuple[Window, ...]
    one_way: list[OneWayZone]
    place_bands: tuple[PlaceBands, ...] = ()
    """Crowd density bands of the places of ``grid.crowd_bands`` (band j of ``static["crowd_band"]`` is
    ``place_bands[j - 1]``), for the run's ``RiskConfig.place_bands``."""
    warnings: list[str] = field(default_factory=list)
    """The scenario's warnings (`Scenario.warnings`) and those only the grid can tell (a gathering that asks for
    more people than its place holds), each ``field: message``."""
    inflows: list[InflowSource] = field(default_factory=list)
    """Discharges onto the ground (``forcing.inflow``)."""
    river: RiverSetup | None = None
    """The river level and works (``forcing.river``); None: open water is an outlet, as without it."""

    def rain_at(self, t0: float, t1: float) -> np.ndarray:
        """Mean rain intensity over [t0, t1], shape (ny, nx). [mm h-1]"""
        if not t1 > t0:
            raise ValueError(f"rain_at needs t1 > t0 (got {t0}, {t1})")
        out = np.zeros(self.grid.shape)
        for rain in self.rains:
            out += rain.weights * ((rain.depth_mm(t1) - rain.depth_mm(t0)) / (t1 - t0) * 3600.0)
        return out

    def arrivals(self, t0: float, t1: float) -> list[tuple[np.ndarray, float, np.ndarray]]:
        """(entrance cells, people arriving within [t0, t1], destination mask) of each stream with arrivals."""
        out = []
        for stream in self.arrival_streams:
            people = stream.people(t0, t1)
            if people > 0:
                out.append((stream.cells, people, stream.destination))
        return out

    @property
    def closed_cells(self) -> np.ndarray:
        """Cells of every exit, stair or entrance closed at some time of the run."""
        return _union(self.exit_closures, None, self.grid.shape)

    def closed_cells_at(self, t: float) -> np.ndarray:
        """Cells of the exits, stairs and entrances closed at ``t``."""
        return _union(self.exit_closures, t, self.grid.shape)

    def exits_at(self, t: float) -> np.ndarray:
        """Sink cells open at ``t``."""
        return self.exits & ~self.closed_cells_at(t)

    def road_closed(self, t: float) -> np.ndarray:
        """Road cells closed to traffic at ``t``."""
        return _union(self.road_closures, t, self.grid.shape)

    def outlets_open(self, t: float) -> bool:
        """Whether open water (``water_mask``) takes surface water at ``t`` (False while tide-locked)."""
        return not any(t in w for w in self.tide_locks)

    def one_way_at(self, t: float) -> list[OneWayZone]:
        """The one-way zones in force at ``t``."""
        return [z for z in self.one_way if t in z.window]

    def demand_factor(self, t: float) -> np.ndarray:
        """Traffic demand multiplier of each cell at ``t`` (1 where nothing changes), shape (ny, nx). [1]"""
        out = np.ones(self.grid.shape)
        for change in self.demand_changes:
            if t in change.window:
                out[change.mask] *= change.factor
        return out

    def timeline(self) -> list[tuple[float, str]]:
        """What happens when, in order: (seconds from the start, text)."""
        return timeline(self.spec)


# ---------------------------------------------------------------- prepare
class _Problems(list):
    def cells(self, mask: np.ndarray, field: str, what: str) -> np.ndarray:
        if not mask.any():
            self.append(f"{field}: {what}")
        return mask


def prepare(spec: Scenario, static: xr.Dataset) -> Forcing:
    """The scenario on the twin's grid. ``static`` (the twin's CIM layers) is never modified.

    Raises `ScenarioError` when a place of the scenario has no usable cell on this grid, naming the field.
    """
    missing = [name for name in REQUIRED_LAYERS if name not in static]
    if missing:
        raise ValueError(f"the twin has no layer {', '.join(missing)}: build it with `twin grid build`")
    static = with_walkable_file(static, spec.grid.walkable)
    static, place_bands = apply_place_bands(static, spec.grid.crowd_bands)
    grid = grid_of(static)
    problems = _Problems()
    if spec.grid.path is None and not math.isclose(grid.cell_size, spec.grid.cell_m):
        problems.append(f"grid.cell: the scenario asks for {spec.grid.cell_m:g} m cells, the twin has "
                        f"{grid.cell_size:g} m")
    layers = _Layers(static, grid)
    forcing = Forcing(
        spec=spec, static=with_drainage(static, spec.interventions.drainage, layers),
        grid=grid, rains=[RainField(r.field, layers.rain_weights(r, problems), r.storm, r.series)
                          for r in spec.forcing.rain],
        arrival_streams=[_stream(a, layers, problems) for a in spec.forcing.arrivals],
        gatherings=[GatheringTarget(g.field, g.at.label, problems.cells(
            layers.walkable_mask(g.at), f"{g.field}.at", "no walkable cell of this grid"), g)
            for g in spec.forcing.gatherings],
        exits=layers.exits(spec.grid.district),
        exit_closures=[_closure(c, layers.mask(c.place), problems, "no cell of this grid")
                       for c in spec.interventions.close_exit],
        road_closures=[_closure(c, layers.road_mask(c.place), problems, "no road cell of this grid")
                       for c in spec.interventions.close_road],
        demand_changes=[TimedMask(d.field, d.road, problems.cells(layers.road_mask(d.place), f"{d.field}.road",
                                                                  "no road cell of this grid"), d.window, d.factor)
                        for d in spec.forcing.traffic],
        tide_locks=spec.interventions.tide_locked,
        one_way=[_one_way(o, layers, problems) for o in spec.interventions.one_way],
        place_bands=place_bands, warnings=list(spec.warnings))
    river = spec.forcing.river
    forcing.river = river_setup(river, static, spec.interventions.flood_wall, problems) \
        if river is not None else None
    unusable = _no_inflow(static, forcing.river)
    forcing.inflows = [_inflow(f, layers, unusable, problems) for f in spec.forcing.inflow]
    if problems:
        raise ScenarioError(problems, str(spec.source or spec.name))
    forcing.warnings += [w for g in forcing.gatherings if (w := gathering_capacity_warning(g, static))]
    return forcing


def gathering_capacity_warning(g: GatheringTarget, static: xr.Dataset, jam: float | None = None) -> str | None:
    """``field: message`` when a gathering asks for more people than its place holds at the jam density ``jam``
    [person m-2] (CrowdFlowConfig.rho_max, 5.4: Weidmann 1993, where walking stops), else None.

    The place's ground is its cells' ``walkable_area`` [m2] (the scenario's override applied). Above the jam
    density the crowd model cannot put more people (it holds at most rho_max x area), so the rest stand around
    it: the planner should know the run shows fewer people there than the file asks for.
    """
    jam = CrowdFlowConfig().rho_max if jam is None else jam
    ground = float(static["walkable_area"].values[g.mask].sum())
    peak = g.spec.peak
    if ground <= 0 or peak <= jam * ground:
        return None
    return (f"{g.field}: {g.label} is asked for {peak:,.0f} people on {ground:,.0f} m² of walkable ground "
            f"({peak / ground:.1f} person/m²); it holds at most {jam * ground:,.0f} at {jam:g} person/m² (Weidmann's "
            "jam density): the rest stand around it")


class _Layers:
    """The twin's layers that place masks need."""

    def __init__(self, static: xr.Dataset, grid: GridSpec) -> None:
        self.grid = grid
        self.walkable = (static["walkable_area"].values > 0) & (static["water_mask"].values == 0)
        self.roads = static["road_class"].values > 0
        self.underpass = static["underpass"].values
        self.drainage = static["drainage_capacity"].values.astype(float)

    def fraction(self, place: Place) -> np.ndarray:
        return place.fraction(self.grid, self.underpass)

    def mask(self, place: Place) -> np.ndarray:
        return place.mask(self.grid, self.underpass)

    def walkable_mask(self, place: Place) -> np.ndarray:
        return self.mask(place) & self.walkable

    def road_mask(self, place: Place) -> np.ndarray:
        return self.mask(place) & (self.roads | (self.underpass > 0))

    def rain_weights(self, rain: Rain, problems: _Problems) -> np.ndarray:
        if rain.area is None:
            return np.ones(self.grid.shape)
        weights = self.fraction(rain.area)
        problems.cells(weights > 0, f"{rain.field}.area", "covers no cell of this grid")
        return weights

    def exits(self, district: str) -> np.ndarray:
        """Metro entrances and the walkable cells on the grid's edge."""
        edge = np.zeros(self.grid.shape, dtype=bool)
        edge[[0, -1], :] = True
        edge[:, [0, -1]] = True
        out = edge & self.walkable
        for entrance in gazetteer(data_dir() / district).metro_entrances():
            out |= self.walkable_mask(entrance)
        return out


def with_drainage(static: xr.Dataset, changes: tuple[DrainageChange, ...], layers: _Layers) -> xr.Dataset:
    """A deep copy of the twin with the drainage changes applied in order (area-weighted per cell)."""
    out = static.copy(deep=True)
    values = layers.drainage.copy()
    notes = []
    for change in changes:
        share = layers.fraction(change.area)
        target = values * change.factor if change.factor is not None else change.capacity_mm_h
        values = values * (1.0 - share) + target * share
        what = f"x{change.factor:g}" if change.factor is not None else f"{change.capacity_mm_h:g} mm/h"
        notes.append(f"{what} in {change.area.label}")
    if notes:
        cap = out["drainage_capacity"]
        comment = "; ".join([cap.attrs.get("comment", ""), "scenario: " + ", ".join(notes)]).lstrip("; ")
        out["drainage_capacity"] = cap.copy(data=values.astype(cap.dtype)).assign_attrs(comment=comment)
    return out


def _stream(arrival: Arrival, layers: _Layers, problems: _Problems) -> ArrivalStream:
    cells = problems.cells(layers.walkable_mask(arrival.at), f"{arrival.field}.at", "no walkable cell of this grid")
    to = problems.cells(layers.walkable_mask(arrival.to), f"{arrival.field}.to", "no walkable cell of this grid")
    return ArrivalStream(arrival.field, arrival.at.label, np.flatnonzero(cells), to, arrival.rate, arrival.window)


def _closure(closure: Closure, mask: np.ndarray, problems: _Problems, what: str) -> TimedMask:
    field = f"{closure.field}.road" if closure.road else f"{closure.field}.at"
    return TimedMask(closure.field, closure.road or closure.place.label, problems.cells(mask, field, what),
                     closure.window)


def _one_way(zone: OneWay, layers: _Layers, problems: _Problems) -> OneWayZone:
    mask = problems.cells(layers.walkable_mask(zone.area), f"{zone.field}.area", "no walkable cell of this grid")
    lon, lat = _centre(zone.area)
    x0, y0 = to_projected(lon, lat, layers.grid.crs)
    x1, y1 = to_projected(lon, lat + 1e-3, layers.grid.crs)
    convergence = math.degrees(math.atan2(x1 - x0, y1 - y0))  # grid bearing of true north
    return OneWayZone(zone.field, zone.area.label, mask, zone.bearing_deg,
                      (zone.bearing_deg + convergence) % 360.0, zone.window)


def _centre(place: Place) -> tuple[float, float]:
    centre = shapely.union_all([p.geometry for p in place.parts]).centroid
    return float(centre.x), float(centre.y)


# ---------------------------------------------------------------- inflows and the river on the grid
def _no_inflow(static: xr.Dataset, river: RiverSetup | None) -> np.ndarray:
    """Cells that take no inflow: walls of the flood model (``building_fraction`` >= `FloodConfig.wall_fraction`),
    open water and the river's cells."""
    out = (static["building_fraction"].values >= FloodConfig().wall_fraction) | (static["water_mask"].values > 0)
    if river is not None:
        out |= np.asarray(river.works.river, bool)
    return out


def line_cells(grid: GridSpec, line: tuple[tuple[float, float], ...]) -> tuple[np.ndarray, np.ndarray]:
    """(flat cells, share of the line's length in each [1]) of a [lon, lat] polyline, from points every eighth of a
    cell along it (each point stands for the length around it)."""
    lon, lat = np.array(line, float).T
    x, y = to_projected(lon, lat, grid.crs)
    xs, ys, ws = [], [], []
    for k in range(len(x) - 1):
        length = math.hypot(x[k + 1] - x[k], y[k + 1] - y[k])
        n = max(1, math.ceil(8.0 * length / grid.cell_size))
        f = (np.arange(n) + 0.5) / n
        xs.append(x[k] + f * (x[k + 1] - x[k]))
        ys.append(y[k] + f * (y[k + 1] - y[k]))
        ws.append(np.full(n, length / n))
    row, col = grid.cell_of(np.concatenate(xs), np.concatenate(ys))
    inside = row >= 0
    flat = grid.flat_index(row[inside], col[inside])
    cells, inverse = np.unique(flat, return_inverse=True)
    share = np.bincount(inverse, weights=np.concatenate(ws)[inside], minlength=cells.size)
    return cells.astype(np.int64), share


def _inflow(spec: InflowSpec, layers: _Layers, unusable: np.ndarray, problems: _Problems) -> InflowSource:
    grid = layers.grid
    if spec.line is not None:
        cells, share = line_cells(grid, spec.line)
        where = f"{spec.field}.line"
    else:
        cells = np.flatnonzero(layers.mask(spec.place))
        share = np.ones(cells.size)
        where = f"{spec.field}.at" if spec.place is not None else spec.field
    keep = ~unusable.ravel()[cells]
    cells, share = cells[keep], share[keep]
    if cells.size == 0 or share.sum() <= 0:
        problems.append(f"{where}: no usable cell of this grid for the inflow {spec.name!r} (its cells are "
                        "buildings, open water or off the grid)")
        return InflowSource(spec.field, spec.name, np.zeros(0, np.int64), np.zeros(0), spec.hydrograph)
    return InflowSource(spec.field, spec.name, cells.astype(np.int64), share / share.sum(), spec.hydrograph)


def _key(text: str) -> str:
    return re.sub(r"[\W_]+", "", str(text)).casefold()


def river_setup(spec: RiverSpec, static: xr.Dataset, changes: tuple[WallChange, ...],
                problems: list[str]) -> RiverSetup:
    """The river works of the grid's district (`twin.district.river.load_river_works`) with the crest changes
    applied, as a `RiverSetup`; an unknown section is a problem naming its field."""
    from twin.district.river import load_river_works

    works = load_river_works(static)
    offset = float(works.offset_m)
    sections = [WallSection(s.id, s.name, s.name_zh, s.crest_m, s.crest_m, s.source, np.asarray(s.cells, np.int64))
                for s in works.sections]
    crest_x, crest_y = np.array(works.crest_x, float), np.array(works.crest_y, float)
    for change in changes:
        k = _key(change.section)
        found = [i for i, s in enumerate(sections) if k in (_key(s.id), _key(s.name), _key(s.name_zh))]
        if not found:
            known = ", ".join(f"{s.id} ({s.name})" for s in sections) or "none on this grid"
            problems.append(f"{change.field}.section: no flood-wall section {change.section!r}; sections: {known}")
            continue
        i = found[0]
        crest_x[np.asarray(works.section_x) == i] = change.crest_m - offset
        crest_y[np.asarray(works.section_y) == i] = change.crest_m - offset
        sections[i] = dataclasses.replace(sections[i], crest_m=change.crest_m, changed_by=change.field)
    works = _with_crests(works, crest_x, crest_y, sections)
    return RiverSetup(spec, offset, works, sections)


def _with_crests(works, crest_x: np.ndarray, crest_y: np.ndarray, sections: list[WallSection]):
    """A copy of ``works`` (`twin.district.river.RiverWorks`) with the crests and the sections' crests changed."""
    new_sections = [dataclasses.replace(old, crest_m=s.crest_m, crest_grid_m=s.crest_m - works.offset_m)
                    for old, s in zip(works.sections, sections, strict=True)]
    return dataclasses.replace(works, crest_x=crest_x, crest_y=crest_y, sections=new_sections)
