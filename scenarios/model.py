"""The scenario model: a validated scenario file as frozen dataclasses of plain numbers.

Times are seconds from the scenario start, durations seconds, rates SI (person s-1; rain mm h-1 as in
the twin's layers), places `scenarios.places.Place` in lon/lat. Every forcing and intervention keeps
``field``, the path of the entry in the file, so later errors (a place outside the grid) can name it.
`scenarios.spec` reads files into these; `scenarios.forcing` puts them on a grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from scenarios.places import Place

if TYPE_CHECKING:  # scenarios.water_sections imports scenarios.checks, which imports this module
    from scenarios.water_sections import InflowSpec, RiverSpec, WallChange

DEFAULT_STEP_S = 10.0
DEFAULT_OUTPUT_EVERY_S = 60.0
DEFAULT_CELL_M = 10.0
OUTPUT_ALIASES = {
    "depth": ("water_depth",), "speed": ("water_speed",), "flow_hazard": ("flow_hazard",),
    "density": ("crowd_density",), "count": ("crowd_count",), "rain": ("rain_rate",),
    "traffic": ("traffic_speed",), "risk": ("risk_crowd", "risk_flood", "risk_traffic"),
    "levels": ("level_crowd", "level_flood", "level_traffic", "level"),
}
"""Short output names and the twin layers (`twin.district.layers`) each stands for; layer names work too."""
DEFAULT_OUTPUTS = ("depth", "density", "levels")


@dataclass(frozen=True)
class Window:
    """When something holds: [start_s, end_s) in seconds from the scenario start."""

    start_s: float
    end_s: float

    def __contains__(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


@dataclass(frozen=True)
class Steps:
    """A step function of time: ``values[i]`` from ``times[i]`` until ``times[i + 1]``; 0 before the
    first time, the last value after the last (times in s from the start, strictly increasing)."""

    times: tuple[float, ...]
    values: tuple[float, ...]

    def at(self, t: float) -> float:
        """The value at ``t``."""
        i = _index(self.times, t)
        return 0.0 if i < 0 else self.values[i]

    def integral(self, t0: float, t1: float) -> float:
        """Exact integral over [t0, t1] (value x seconds)."""
        return self._cumulative(t1) - self._cumulative(t0) if t1 > t0 else 0.0

    def _cumulative(self, t: float) -> float:
        total = 0.0
        for i, start in enumerate(self.times):
            if t <= start:
                break
            end = min(t, self.times[i + 1]) if i + 1 < len(self.times) else t
            total += self.values[i] * (end - start)
        return total


def _index(times: tuple[float, ...], t: float) -> int:
    i = -1
    for k, start in enumerate(times):
        if t >= start:
            i = k
    return i


@dataclass(frozen=True)
class DesignStorm:
    """Chicago design storm on the Shanghai formula: return period [yr], duration [min], peak position
    as a share of the duration [1], start [s from the scenario start]."""

    return_period_yr: float
    duration_min: float
    peak_ratio: float
    start_s: float


@dataclass(frozen=True)
class Rain:
    """One rain forcing: a design storm or a series of intensities [mm h-1]; over ``area`` (None: everywhere)."""

    field: str
    storm: DesignStorm | None
    series: Steps | None
    area: Place | None


@dataclass(frozen=True)
class Arrival:
    """People arriving at ``at`` at ``rate`` [person s-1] within ``window``, heading for ``to``."""

    field: str
    at: Place
    rate: Steps
    window: Window
    to: Place


@dataclass(frozen=True)
class Gathering:
    """People wanting to be at ``at``: 0 until ``rise_s`` before ``peak_time_s``, ``peak`` [person] for
    ``hold_s``, back to 0 over ``fall_s`` (raised-cosine ramps)."""

    field: str
    at: Place
    peak: float
    peak_time_s: float
    rise_s: float
    hold_s: float
    fall_s: float


@dataclass(frozen=True)
class DemandChange:
    """Traffic demand on a named road multiplied by ``factor`` within ``window``."""

    field: str
    road: str
    place: Place
    factor: float
    window: Window


@dataclass(frozen=True)
class DrainageChange:
    """Drainage capacity set to ``capacity_mm_h`` [mm h-1] or scaled by ``factor`` inside ``area``."""

    field: str
    area: Place
    capacity_mm_h: float | None
    factor: float | None


@dataclass(frozen=True)
class Closure:
    """A road (``road`` set) or an exit, stair or metro entrance closed within ``window``."""

    field: str
    place: Place
    window: Window
    road: str | None = None


@dataclass(frozen=True)
class OneWay:
    """Crowd flow in ``area`` only toward ``bearing_deg`` (clockwise from true north) within ``window``."""

    field: str
    area: Place
    bearing_deg: float
    window: Window


@dataclass(frozen=True)
class Forcings:
    """The ``forcing`` section: rain, crowds and traffic; ``inflow``, discharges onto the ground [m3 s-1], and
    ``river``, the Huangpu's level [m, Wusong datum] (None: not given) (`scenarios.water_sections`)."""

    rain: tuple[Rain, ...] = ()
    arrivals: tuple[Arrival, ...] = ()
    gatherings: tuple[Gathering, ...] = ()
    traffic: tuple[DemandChange, ...] = ()
    inflow: tuple[InflowSpec, ...] = ()
    river: RiverSpec | None = None


@dataclass(frozen=True)
class Interventions:
    """The ``interventions`` section; ``flood_wall``, flood-wall sections with a crest [m, Wusong datum] of the run's
    own (`scenarios.water_sections.WallChange`; only in a run with ``forcing.river``)."""

    drainage: tuple[DrainageChange, ...] = ()
    tide_locked: tuple[Window, ...] = ()
    close_road: tuple[Closure, ...] = ()
    close_exit: tuple[Closure, ...] = ()
    one_way: tuple[OneWay, ...] = ()
    flood_wall: tuple[WallChange, ...] = ()


@dataclass(frozen=True)
class GridChoice:
    """The grid: a saved twin (``path``), or the bundled ``district`` built at ``cell_m`` [m]; ``walkable``: a
    walkable-area override file applied to it (`twin.district.walkable`), as the live twin applies it;
    ``crowd_bands``: a file of places with crowd density bands of their own (stairs, ramps, bridges;
    `twin.district.thresholds`), as the live twin's ``--crowd-bands`` applies it."""

    district: str = "bund"
    cell_m: float = DEFAULT_CELL_M
    path: Path | None = None
    walkable: Path | None = None
    crowd_bands: Path | None = None


@dataclass(frozen=True)
class Outputs:
    every_s: float = DEFAULT_OUTPUT_EVERY_S
    layers: tuple[str, ...] = DEFAULT_OUTPUTS

    @property
    def variables(self) -> tuple[str, ...]:
        """The twin layer names the outputs stand for (`OUTPUT_ALIASES` expanded)."""
        names = [v for name in self.layers for v in OUTPUT_ALIASES.get(name, (name,))]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Scenario:
    """A validated scenario. Times in seconds from the start; ``start_time`` in unix seconds (None:
    not given, e.g. a fork that starts at its snapshot's time)."""

    name: str
    description: str
    seed: int
    snapshot: Path | None
    grid: GridChoice
    start_time: float | None
    duration_s: float
    step_s: float
    status: str
    utc_offset_s: float | None = None
    """Zone of ``start_time`` as written (seconds east of UTC), for showing times in local time."""
    forcing: Forcings = field(default_factory=Forcings)
    interventions: Interventions = field(default_factory=Interventions)
    outputs: Outputs = field(default_factory=Outputs)
    source: Path | None = None
    question: str = ""
    """What the planner asks of the run (the report's first line)."""
    warnings: tuple[str, ...] = ()
    """Things that run but that a planner should know, each ``field: message`` (the report lists them)."""

    @property
    def start(self) -> str:
        """``baseline`` (the district twin as built) or ``snapshot`` (a fork of a live twin)."""
        return "baseline" if self.snapshot is None else "snapshot"


