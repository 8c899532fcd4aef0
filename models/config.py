"""Thresholds and parameters, one dataclass per hazard, with the evidence for every default.

Evidence tags are those of docs/science/README.md: [src] read in the cited source, [mem] textbook value not
re-checked in a primary source, [run] reproduced here, [design] our own choice (no source).
Colour tuples are (blue, yellow, orange, red); ``raise_`` thresholds start a level, ``clear``
thresholds (below them the level may be lowered) are lower, giving hysteresis (docs/science/alerts.md 5).
Values are in the units named in each field; components convert them to SI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

INF = float("inf")


@dataclass(frozen=True, kw_only=True)
class AlertTiming:
    """Delays of the level state machine, in seconds of twin time (never ticks).

    ``for_s`` [s]: raise delay (Prometheus ``for``) [src]: a level is entered once the metric has
    stayed at or above *that level's* raise threshold for this long, counted from the first sample at
    or above it. One number for every level, or four (blue, yellow, orange, red). Default 3 s
    [design; 3 is docs/science/alerts.md 5 test 1; the former 3 ticks at the live twin's 1 s tick].
    ``keep_s`` [s]: clear delay (Prometheus ``keep_firing_for``) [src]: a level steps down one colour
    once the metric has stayed below its clear threshold for this long, and one more colour each
    further ``keep_s``. Default 10 s [design; the former 10 ticks at a 1 s tick].
    ``flap_window_s`` [s]: while a hazard flaps, a level one step above what the metric says is held
    this long (instead of ``keep_s``, if longer) after the metric fell below it. Default 60 s [design].
    ``flap_high`` / ``flap_low`` [%]: Nagios percent-state-change thresholds 20 / 5 % [mem, sample config].
    ``flap_sample_s`` [s]: one sample of the 21-sample flap history per this much twin time, so the tick
    length does not change what counts as flapping (21 samples = 200 s of history). Default 10 s [design: the
    longest tick the twin is run with, and the usual period of a counter].
    Keyword-only: the former positional form (for_ticks, keep_ticks, ...) fails loudly instead of being
    read as seconds.
    """

    for_s: float | tuple[float, float, float, float] = 3.0
    keep_s: float = 10.0
    flap_window_s: float = 60.0
    flap_high: float = 20.0
    flap_low: float = 5.0
    flap_sample_s: float = 10.0

    def __post_init__(self) -> None:
        for name, value in (("for_s", self.raise_delays()), ("keep_s", (self.keep_s,)),
                            ("flap_window_s", (self.flap_window_s,)), ("flap_sample_s", (self.flap_sample_s,))):
            if not all(v >= 0.0 for v in value):  # NaN fails too
                raise ValueError(f"AlertTiming.{name} must be >= 0 seconds, got {value}")

    def raise_delays(self) -> tuple[float, float, float, float]:
        """Raise delays of blue, yellow, orange and red [s]."""
        if isinstance(self.for_s, int | float):
            return (float(self.for_s),) * 4
        delays = tuple(float(x) for x in self.for_s)
        if len(delays) != 4:
            raise ValueError(f"AlertTiming.for_s: one delay or four (blue, yellow, orange, red), got {self.for_s}")
        return delays


@dataclass(frozen=True)
class CrowdConfig:
    """Crowd thresholds.

    density_raise / density_clear [person m-2], (blue, yellow, orange, red):
      blue 1.08 / 0.72 = Fruin walkway LOS E / LOS D lower edges [src, docs/science/crowd.md 1.1];
      yellow 2.0 / 1.5: start of the crowd hazard ramp (docs/science/risk.md 4) [src] / [design];
      orange 4.0 / 3.0: Still's critical density of a moving crowd, docs/science/alerts.md 5 example [src];
      red 5.0 / 4.5: Still "uncomfortable at 5, above that dangerous" [src] / [design].
    hazard_low / hazard_high: hazard 0 at 2 and 1 at 5 person m-2 (docs/science/risk.md 4) [src].
    trend_horizon [s]: the crowd forecast level is the level of rho + max(rate, 0) x horizon, 300 s
      [design] (Still: monitor density and its trend, throttle before 4-5 p/m2 [src]); the trend
      never raises the observed crowd level.
    trend_alpha: EWMA weight of the newest density difference, 0.3 [design].
      The trend takes one sample per reading (`models.kernels.crowd.density_trend`), never per tick.
    pressure_crit [s-2]: Helbing crowd pressure of turbulence, 0.02 [mem]; only counts where
      density >= pressure_min_density = 4.0 (docs/science/crowd.md 1.3 caution) [src]. It raises the observed
      crowd level one step (pressure is observed, not a forecast).
    pressure_alpha: EWMA weight for the time-averaged velocity U, 0.1 per tick [design].
    walkway_los_space_ft2: Fruin walkway LOS A-E lower space bounds 35/25/15/10/5 ft2 per person
      [src]; queue_los_density: Fruin queuing LOS edges 0.83/1.08/1.54/3.57/5.26 p/m2 [mem].
    weidmann: v0 1.34 m/s, gamma 1.913 p/m2, rho_max 5.4 p/m2 (Weidmann 1993) [mem].
    """

    density_raise: tuple[float, float, float, float] = (1.08, 2.0, 4.0, 5.0)
    density_clear: tuple[float, float, float, float] = (0.72, 1.5, 3.0, 4.5)
    hazard_low: float = 2.0
    hazard_high: float = 5.0
    trend_horizon: float = 300.0
    trend_alpha: float = 0.3
    pressure_crit: float = 0.02
    pressure_min_density: float = 4.0
    pressure_alpha: float = 0.1
    walkway_los_space_ft2: tuple[float, ...] = (35.0, 25.0, 15.0, 10.0, 5.0)
    queue_los_density: tuple[float, ...] = (0.83, 1.08, 1.54, 3.57, 5.26)
    weidmann_v0: float = 1.34
    weidmann_gamma: float = 1.913
    weidmann_rho_max: float = 5.4
    timing: AlertTiming = field(default_factory=AlertTiming)

    def walkway_density_edges(self) -> np.ndarray:
        """Fruin walkway LOS density edges [person m-2] from the ft2 table (1 ft2 = 0.09290304 m2)."""
        return np.array([1.0 / (s * 0.09290304) for s in self.walkway_los_space_ft2])


@dataclass(frozen=True)
class FloodConfig:
    """Flood model parameters and thresholds.

    depth_raise / depth_clear [m], (blue, yellow, orange, red):
      blue 0.05 / 0.03: water standing on the carriageway [design, no source];
      yellow 0.15 / 0.10: GB 50014 / GB 51222 "not waterlogged" limit (<= 15 cm in one lane) [mem],
        docs/science/alerts.md 5 hysteresis example;
      orange 0.27 / 0.20: Beijing underpass closure rule [mem] (Shenyang closes at 0.25 [src]);
      red 0.50 / 0.40: cars start to float, unsafe for pedestrians [mem].
    hv_raise / hv_clear [m2 s-1]: depth x velocity, orange 0.3 / 0.2 (vehicles) and red 0.5 / 0.4
      (people) [mem; clear values design]. Blue and yellow do not use h v.
    hazard ramps: depth 0.15 -> 0.50 m (docs/science/risk.md 4) [src]; h v 0.3 -> 0.5 m2 s-1 [mem].
    Scheme (landlab defaults [run]): alpha 0.7, theta 0.8, manning 0.03 s m-1/3, g 9.80665 m s-2.
    h_min [m]: faces shallower carry no flow, 1e-6 [design]. dt_max [s]: cap on the CFL step, 10.
    wall_fraction: building_fraction at or above which a cell is a wall, 0.5 [design].
    boundary: "closed" or "open" grid edges.
    bore_ratio: a face with depths below this ratio (both > 1 cm, carrying flow) marks rapidly
      varied flow, out of the scheme's validity, 0.5 [design].
    weir_cd: discharge coefficient of the broad-crested weir on barrier (flood-wall) faces,
      q = weir_cd (2/3)^1.5 sqrt(g) H^1.5 [m2 s-1]; 1.0 is the ideal critical-flow weir, 1.705 H^1.5
      (Chow 1959; Henderson 1966 ch. 6 [mem]); measured broad-crested weirs lie about 0.85-1.0 (Bos 1989 [mem]).
    inflow_courant, inflow_h_ref [m]: a sub-step gives no inflow cell more than inflow_courant x its depth (at
      least inflow_h_ref): 1.0 and 0.05 m [design; docs/science/flood.md 2.1 "Stepping" has the run behind it].
    """

    depth_raise: tuple[float, float, float, float] = (0.05, 0.15, 0.27, 0.50)
    depth_clear: tuple[float, float, float, float] = (0.03, 0.10, 0.20, 0.40)
    hv_raise: tuple[float, float, float, float] = (INF, INF, 0.3, 0.5)
    hv_clear: tuple[float, float, float, float] = (INF, INF, 0.2, 0.4)
    hazard_depth_low: float = 0.15
    hazard_depth_high: float = 0.50
    hazard_hv_low: float = 0.3
    hazard_hv_high: float = 0.5
    alpha: float = 0.7
    theta: float = 0.8
    manning: float = 0.03
    g: float = 9.80665
    h_min: float = 1e-6
    dt_max: float = 10.0
    wall_fraction: float = 0.5
    boundary: str = "closed"
    bore_ratio: float = 0.5
    weir_cd: float = 1.0
    inflow_courant: float = 1.0
    inflow_h_ref: float = 0.05
    timing: AlertTiming = field(default_factory=AlertTiming)


@dataclass(frozen=True)
class RainConfig:
    """Rolling rain accumulations and rainstorm signals (docs/science/risk.md 4).

    Shanghai signals [src] (raise, mm): blue 1 h >= 35 or 6 h >= 50; yellow 1 h >= 50 or 6 h >= 80;
    orange 1 h >= 80 or 6 h >= 100; red 1 h >= 100 or 6 h >= 150 -- red is NOT confirmed in the
    source [mem, open item docs/science/README.md 7]. Clear thresholds 5 mm below raise [design].
    National CMA signals [src]: blue >= 50 mm / 12 h; yellow >= 50 / 6 h; orange >= 50 / 3 h;
    red >= 100 / 3 h. Windows 1, 3, 6, 12 h; bins of ``bin_seconds`` (600 s) [design].
    hazard ramp of the 1 h total 50 -> 100 mm (yellow to red) [design].
    """

    bin_seconds: float = 600.0
    shanghai_1h: tuple[float, float, float, float] = (35.0, 50.0, 80.0, 100.0)
    shanghai_6h: tuple[float, float, float, float] = (50.0, 80.0, 100.0, 150.0)
    clear_margin: float = 5.0
    cma_12h: tuple[float, float, float, float] = (50.0, INF, INF, INF)
    cma_6h: tuple[float, float, float, float] = (INF, 50.0, INF, INF)
    cma_3h: tuple[float, float, float, float] = (INF, INF, 50.0, 100.0)
    hazard_1h_low: float = 50.0
    hazard_1h_high: float = 100.0


@dataclass(frozen=True)
class RiverConfig:
    """The river level warning at the reference tide gauge (docs/science/river.md 4), [m] on the grid's datum
    (the Wusong datum, 吴淞高程, for the bundled grids).

    level_raise (blue, yellow, orange, red) at Huangpu Park (黄浦公园): blue 4.80, the gauge's warning level
    警戒水位 [mem]; red 5.60, the lowest crest of the bundled Bund flood wall (the Suzhou Creek mouth, an assumed
    crest: data/bund/flood-wall.geojson), where water starts to come over the wall; orange 0.20 m below red
    [design: about half an hour of a spring tide's rise near its peak]; yellow halfway from blue to orange
    [design]. `twin.district.river.river_config` makes these from the gauge file and the lowest crest of the wall
    actually loaded. China's storm-surge warnings likewise key their colours to each station's warning tide
    levels (GB/T 17839-2011, 警戒潮位核定规范 [mem]); Huangpu Park's four colour levels are not in the bundled data.
    clear_margin [m]: a colour clears when the level falls this far below its raise threshold, 0.10 [design].
    """

    level_raise: tuple[float, float, float, float] = (4.80, 5.10, 5.40, 5.60)
    clear_margin: float = 0.10

    def __post_init__(self) -> None:
        up = _bands("RiverConfig", "level_raise", self.level_raise)
        if any(b < a for a, b in pairwise(up)):
            raise ValueError(f"RiverConfig.level_raise must not decrease from blue to red, got {up}")
        if not (isinstance(self.clear_margin, int | float) and 0 < self.clear_margin < INF):
            raise ValueError(f"RiverConfig.clear_margin must be a positive number of metres, got {self.clear_margin!r}")
        object.__setattr__(self, "level_raise", up)

    @property
    def level_clear(self) -> tuple[float, float, float, float]:
        """Clear thresholds (blue .. red) [m]: raise minus ``clear_margin``."""
        return tuple(round(v - self.clear_margin, 9) for v in self.level_raise)


# GB/T 33171-2016 upper speed bounds [km h-1] of basically smooth, light, moderate, severe [src].
KMH_TO_MS = 1000.0 / 3600.0
"""m s-1 per km h-1, the factor `models.units.parse_units` gives for ``km h-1``."""
GBT33171_KMH = {
    1: (65.0, 50.0, 35.0, 20.0),  # expressway
    2: (40.0, 30.0, 20.0, 15.0),  # arterial
    3: (35.0, 25.0, 15.0, 10.0),  # secondary
    4: (35.0, 25.0, 15.0, 10.0),  # branch
}


@dataclass(frozen=True)
class TrafficConfig:
    """Traffic parameters and thresholds.

    Levels: GB/T 33171 light -> blue, moderate -> yellow, severe -> orange (speed bounds by road
    class, ``GBT33171_KMH``) [src]; red where severe and v / v_free <= red_ratio 0.2 [design].
    Clear: the bound + clear_margin 5 km/h, red ratio 0.25 [design].
    hazard ramp: speed ratio 0.7 -> 0.3 (docs/science/risk.md 4) [src].
    min_samples 3 and min_probe_seconds 60 s per bin (docs/science/traffic.md 3.4: 3-5 probes or 60 s) [src].
    ewma_alpha 0.5 per bin [design]. tpi_breaks: extra travel time 0, 0.2, 0.5, 0.8, 1.1, 2.0 at
    index 0, 2, 4, 6, 8, 10 (Beijing TPI bands [src]; 2.0 at index 10 [design]) -- "TPI-like".
    California algorithm T1 0.08, T2 0.5, T3 0.15, persistence 2 [mem]; speed-drop ratio 0.5 and
    persistence 2 bins (docs/science/alerts.md 5 speed-drop on 0.5) [src] / [design].
    """

    gbt_kmh: dict = field(default_factory=lambda: dict(GBT33171_KMH))
    clear_margin_kmh: float = 5.0
    red_ratio: float = 0.2
    red_ratio_clear: float = 0.25
    hazard_ratio_low: float = 0.7
    hazard_ratio_high: float = 0.3
    min_samples: int = 3
    min_probe_seconds: float = 60.0
    ewma_alpha: float = 0.5
    tpi_breaks: tuple[float, ...] = (0.0, 0.2, 0.5, 0.8, 1.1, 2.0)
    california: tuple[float, float, float] = (0.08, 0.5, 0.15)
    california_persist: int = 2
    drop_ratio: float = 0.5
    drop_persist: int = 2
    timing: AlertTiming = field(default_factory=AlertTiming)

    def gbt_edges_ms(self, margin_kmh: float = 0.0) -> np.ndarray:
        """(5, 4) GB/T bounds in m s-1 by road class code (row 0 = no road: -inf).

        Converted as the components convert an input in km h-1 (times 1000 / 3600, not divided by 3.6: the two
        differ in the last bit for 35 and 65 km/h), so a speed equal to a bound is in the worse level."""
        e = np.full((5, 4), -np.inf)
        for c, row in self.gbt_kmh.items():
            e[c] = (np.asarray(row, float) + margin_kmh) * KMH_TO_MS
        return e


MAX_PLACE_BANDS = 122
"""Most places with bands of their own: the risk kernel's crowd row of place j is 4 + j, an int8 (<= 127)."""
PLACE_KINDS = ("stair", "ramp", "bridge", "other")
"""Kinds of place that may have crowd density bands of their own (`PlaceBands.kind`)."""


def _bands(owner: str, name: str, values: object) -> tuple[float, float, float, float]:
    """Four thresholds (blue, yellow, orange, red) as floats; ValueError naming ``owner.name`` otherwise."""
    if isinstance(values, str | bytes) or not hasattr(values, "__len__") or len(values) != 4:
        raise ValueError(f"{owner}.{name}: four thresholds (blue, yellow, orange, red) expected, got {values!r}")
    out = []
    for colour, v in zip(("blue", "yellow", "orange", "red"), values, strict=True):
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            raise ValueError(f"{owner}.{name}: {colour} must be a number or inf, got {v!r}")
        out.append(float(v))
    return tuple(out)  # type: ignore[return-value]


@dataclass(frozen=True)
class PlaceBands:
    """Crowd density bands of one place that needs stricter ones than the district's (a stair, ramp, bridge).

    Which cells are the place is a grid layer (``crowd_band``, `twin.district.thresholds`); this is the bands.
    name: what the alert's evidence calls the place (``densityBands``), e.g. "Lujiazui Exit 1 stair".
    kind: one of ``PLACE_KINDS`` (stair, ramp, bridge, other).
    density_raise / density_clear [person m-2], (blue, yellow, orange, red), as ``CrowdConfig``'s: a colour is
      raised at or above its raise threshold and held while the density stays at or above its clear
      threshold. ``inf`` marks a colour the place does not use (raise and clear both inf). A used colour
      needs 0 < clear < raise; the used raise thresholds, and the used clear ones, must not decrease from
      blue to red. NaN, -inf and negative values are refused (ValueError naming the place and the colour).
    source: where the bands come from, with an evidence tag ([src], [mem], [run], [design]), e.g. the
      stairway table of Fruin (1971) (docs/science/crowd.md 1.1): blue 1.11 (LOS D), yellow 1.43 (LOS E),
      orange 2.5 (LOS F) [mem], red 3.5 [design], clear about 0.8 x raise [design].
    """

    name: str
    kind: str
    density_raise: tuple[float, float, float, float]
    density_clear: tuple[float, float, float, float]
    source: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"PlaceBands.name must be a non-empty string, got {self.name!r}")
        where = f"PlaceBands {self.name!r}"
        if self.kind not in PLACE_KINDS:
            raise ValueError(f"{where}: kind must be one of {', '.join(PLACE_KINDS)}, got {self.kind!r}")
        if not isinstance(self.source, str):
            raise ValueError(f"{where}: source must be a string, got {self.source!r}")
        up = _bands(where, "density_raise", self.density_raise)
        down = _bands(where, "density_clear", self.density_clear)
        object.__setattr__(self, "density_raise", up)
        object.__setattr__(self, "density_clear", down)
        problems = []
        for colour, r, c in zip(("blue", "yellow", "orange", "red"), up, down, strict=True):
            if not (r > 0.0 and c >= 0.0):  # NaN and -inf fail here
                problems.append(f"{colour}: thresholds must be > 0 (raise) and >= 0 (clear) or inf, "
                                f"got raise {r} clear {c}")
            elif r == INF and c != INF:
                problems.append(f"{colour}: unused (raise inf) but clear {c}; an unused colour has clear inf too")
            elif r < INF and not c < r:
                problems.append(f"{colour}: clear {c} must be below raise {r} (hysteresis)")
        for label, values in (("density_raise", up), ("density_clear", down)):
            used = [v for v in values if v < INF]
            if any(b < a for a, b in pairwise(used)):
                problems.append(f"{label} {values} decreases from blue to red")
        if all(v == INF for v in up):
            problems.append("no colour is used (every raise threshold is inf)")
        if problems:
            raise ValueError(f"{where}: " + "; ".join(problems))

    def label(self) -> str:
        """``name (kind)``, as the alert's evidence names the place."""
        return f"{self.name} ({self.kind})"


@dataclass(frozen=True)
class RiskConfig:
    """Composite risk: R = H x E x V per cell and hazard (docs/science/risk.md 4), levels, compounding.

    exposure_density_ref [person m-2]: E = min(1, rho / ref), 1.0 [design]; road_exposure by road
    class (none, expressway, arterial, secondary, branch) = (0, 1, 0.8, 0.6, 0.4) [design].
    E and V weight the risk score only; they never change a level (docs/science/risk.md 4.6).
    compound_min_level: two hazards at this level or above in one cell raise the *overall* level one
    step (waterlogging in a crowded cell; docs/science/risk.md 4 [src]), 2 = yellow [design]; at
    least 1 (blue), so that cells where nothing is raised stay at none.
    place_bands: crowd density bands of places that need stricter ones than ``crowd`` (stairs, ramps,
    bridges), one `PlaceBands` each [src/mem/design as each place's ``source`` says]. The grid layer
    ``crowd_band`` says which cells use which: 0 the district's (``crowd.density_raise``), j >= 1 the j-th
    of these (docs/science/alerts.md, "Per-place bands"). Default none: every cell uses the district's.
    At most ``MAX_PLACE_BANDS`` (the kernel's rows are int8).
    river: the river level warning at the reference tide gauge (`RiverConfig`).
    """

    crowd: CrowdConfig = field(default_factory=CrowdConfig)
    flood: FloodConfig = field(default_factory=FloodConfig)
    rain: RainConfig = field(default_factory=RainConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    river: RiverConfig = field(default_factory=RiverConfig)
    exposure_density_ref: float = 1.0
    road_exposure: tuple[float, float, float, float, float] = (0.0, 1.0, 0.8, 0.6, 0.4)
    compound_min_level: int = 2
    place_bands: tuple[PlaceBands, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.compound_min_level <= 4:
            raise ValueError(f"RiskConfig.compound_min_level must be 1 (blue) to 4 (red), "
                             f"got {self.compound_min_level}")
        bands = tuple(self.place_bands)
        bad = [b for b in bands if not isinstance(b, PlaceBands)]
        if bad:
            raise ValueError(f"RiskConfig.place_bands: PlaceBands expected, got {bad[0]!r}")
        if len(bands) > MAX_PLACE_BANDS:
            raise ValueError(f"RiskConfig.place_bands: at most {MAX_PLACE_BANDS} places, got {len(bands)}")
        object.__setattr__(self, "place_bands", bands)


@dataclass(frozen=True)
class CrowdFlowConfig:
    """Macroscopic crowd-flow model (:class:`models.crowdflow.CrowdFlow`).

    v0 1.34 m s-1, gamma 1.913 person m-2, rho_max 5.4 person m-2: Weidmann (1993) speed-density law
      [mem] (docs/science/crowd.md 1.2; the values of CrowdConfig). J_max and rho_c are computed from them.
    cfl: sub-step = cfl dx / (sqrt(2) v0); at cfl <= 1 a cell never sends more than it holds, 0.9 [design].
    routing: "density" = travel time at the local Weidmann speed (Hughes 2002) [src for the model],
      "free" = at v0, geometry only [design choice of the default: "density"].
    min_speed: speed floor of the routing cost so jammed cells stay routable, 0.10 m s-1 = IMO
      MSC.1/Circ.1238 corridor speed at >= 3.5 p/m2 (docs/science/crowd.md 1.2) [src].
    potential_every: sub-steps between potential updates with density routing, 5 [design]
      (about 24 s at 10 m cells, 12 s at 5 m).
    wall_fraction: building_fraction at or above which a cell is a wall, 0.5 [design, as FloodConfig];
    min_walkable_area: cells with less walkable area are walls, 0.1 m2 (less than one standing person,
      Fruin's 0.14 m2 body ellipse [mem]) [design].
    sweep_tol: fast sweeping stops when a round lowers no travel time by more than this, 1e-9 s [design];
    sweep_max_rounds: at most this many rounds of four sweeps, 200 [design].
    min_passage_width: a cell whose walking width (walkable area / dx, or its passage_width) is narrower is a wall,
      0.6 m: Fruin's (1971) body ellipse is 0.46 x 0.61 m, 0.61 m across the shoulders [mem]; nobody walks along a
      narrower strip, and a flow routed through it would pile up in the cell before it (the 10 m grid's slivers
      of open ground between buildings, docs/science/crowd.md "Macroscopic crowd flow").
    exits_last: while a gathering place has room, people head for the places, and the exits are destinations only
      for those who cannot reach one, False [design: on the Bund grid, whose riverside is walled off from the
      streets by East Zhongshan No. 1 Road but for sub-metre gaps, it jams the streets; docs/science/crowd.md].
    settle_share: a cell of a filling gathering is taken (no more a destination: people walk through it to the cells
      behind that still have room) once it holds this share of its hold, 0.98 [design, as the runner's FULL_SHARE];
    stand_share: of a taken cell's hold x area, the people who stand and stay, 0.90; those above walk on
      [design: 10 % of a hold (at most 0.54 person/m2) is the walkers' share of the standing crowd's ground].
    """

    v0: float = 1.34
    gamma: float = 1.913
    rho_max: float = 5.4
    cfl: float = 0.9
    routing: str = "density"
    min_speed: float = 0.10
    potential_every: int = 5
    wall_fraction: float = 0.5
    min_walkable_area: float = 0.1
    sweep_tol: float = 1e-9
    sweep_max_rounds: int = 200
    min_passage_width: float = 0.6
    exits_last: bool = False
    settle_share: float = 0.98
    stand_share: float = 0.90
