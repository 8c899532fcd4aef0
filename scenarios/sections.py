"""The ``forcing`` and ``interventions`` sections of a scenario file, checked entry by entry.

A section is a mapping of kinds, each one entry or a list of entries (``interventions: {close_road:
[...]}``), or a list of one-kind mappings (``interventions: [{close_road: {...}}, {drainage: {...}}]``).
Each entry becomes a `scenarios.model` object that keeps the path of its field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from scenarios import quantities as q
from scenarios.checks import (
    Context,
    entry_place,
    grouped,
    join,
    non_negative,
    number,
    place,
    road,
    step_series,
    window,
)
from scenarios.model import (
    Arrival,
    Closure,
    DemandChange,
    DesignStorm,
    DrainageChange,
    Forcings,
    Gathering,
    Interventions,
    OneWay,
    Rain,
    Steps,
    Window,
)
from scenarios.water_sections import RiverSpec, flood_wall, inflow, river, unique_inflow_names

FORCING_KINDS = ("rain", "crowd", "traffic", "inflow", "river")
CROWD_KINDS = ("arrivals", "gathering")
INTERVENTION_KINDS = ("drainage", "tide_locked", "close_road", "close_exit", "one_way", "flood_wall")
MAX_RETURN_PERIOD_YR = 1000.0
"""Beyond this the Shanghai formula (fitted on 1-100 years) is not even an extrapolation."""
MAX_STORM_MIN = 1440.0
FORMULA_RETURN_PERIODS_YR = (1.0, 100.0)
"""Return periods the Shanghai storm-intensity formula (DB31/T 1043-2017, docs/science/flood.md 2.2) is fitted on:
the 1- to 100-year storms of its annual-maximum series [mem]; outside, a design storm is an extrapolation and the
scenario says so."""
FORMULA_DURATIONS_MIN = (5.0, 180.0)
"""Storm durations the formula is fitted on, 5 to 180 min [mem: the standard durations of a Chinese
storm-intensity fit, GB 50014]; outside, a warning."""


# ---------------------------------------------------------------- forcing
def parse_sections(ctx: Context, forcing: Any, interventions: Any) -> tuple[Forcings, Interventions]:
    """The ``forcing`` and ``interventions`` sections."""
    groups = grouped(ctx, forcing, "forcing", FORCING_KINDS)
    crowd = {kind: [] for kind in CROWD_KINDS}
    for path, value in groups["crowd"]:
        for kind, items in grouped(ctx, value, path, CROWD_KINDS).items():
            crowd[kind] += items
    forcings = Forcings(
        rain=_all(ctx, groups["rain"], rain),
        arrivals=_all(ctx, crowd["arrivals"], arrival),
        gatherings=_all(ctx, crowd["gathering"], gathering),
        traffic=_all(ctx, groups["traffic"], demand_change),
        inflow=unique_inflow_names(ctx, _all(ctx, groups["inflow"], inflow)),
        river=_one_river(ctx, groups["river"]))
    river_given = bool(groups["river"])
    groups = grouped(ctx, interventions, "interventions", INTERVENTION_KINDS)
    walls = _all(ctx, groups["flood_wall"], flood_wall)
    if groups["flood_wall"] and not river_given:
        ctx.fail("interventions.flood_wall", "changes the flood wall, which only stands in a run with a river "
                 "level: add forcing.river")
    return forcings, Interventions(
        drainage=_all(ctx, groups["drainage"], drainage),
        tide_locked=_all(ctx, groups["tide_locked"], tide_locked),
        close_road=_all(ctx, groups["close_road"], close_road),
        close_exit=_all(ctx, groups["close_exit"], close_exit),
        one_way=_all(ctx, groups["one_way"], one_way),
        flood_wall=walls)


def _one_river(ctx: Context, items: list[tuple[str, Any]]) -> RiverSpec | None:
    """The river level of ``forcing.river`` (`scenarios.water_sections.river`): one entry, a list is an error."""
    rivers = _all(ctx, items, river)
    if len(items) > 1:
        ctx.fail("forcing.river", "give one river level (one entry), not a list")
    return rivers[0] if rivers else None


def _all(ctx: Context, items: list[tuple[str, Any]], parse: Callable[[Context, Any, str], Any]) -> tuple:
    out = [parse(ctx, value, path) for path, value in items]
    return tuple(x for x in out if x is not None)


def rain(ctx: Context, entry: Any, path: str) -> Rain | None:
    if not ctx.known(entry, path, ("design_storm", "series", "area", "radius", "polygon", "name")):
        return None
    if ("design_storm" in entry) == ("series" in entry):
        ctx.fail(path, "give either 'design_storm' or 'series'")
        return None
    area = None
    if entry.get("area", "uniform") != "uniform" or "polygon" in entry:
        area = entry_place(ctx, entry, path, "area")
    storm = series = None
    if "design_storm" in entry:
        storm = design_storm(ctx, entry["design_storm"], join(path, "design_storm"))
    else:
        series = step_series(ctx, entry["series"], join(path, "series"), non_negative)
    return Rain(path, storm, series, area) if storm or series else None


def _return_period(value: Any) -> float:
    if isinstance(value, str) and value.strip().lower().rstrip("s").endswith(("yr", "year")):
        value = value.strip().lower().rstrip("s").removesuffix("year").removesuffix("yr").strip()
        try:
            value = float(value)
        except ValueError:
            raise ValueError("expected a number of years such as 5 or '5yr'") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number of years such as 5 or '5yr' (got {value!r})")
    if value < 1:
        raise ValueError(f"must be >= 1 (got {value:g})")
    if value > MAX_RETURN_PERIOD_YR:
        raise ValueError(f"must be <= {MAX_RETURN_PERIOD_YR:g} years (got {value:g})")
    return float(value)


def _storm_duration(value: Any) -> float:
    if not isinstance(value, str):
        raise ValueError(f"write the unit, e.g. 60min (a bare number would be seconds; got {value!r})")
    seconds = q.parse_duration(value)
    if not 60.0 <= seconds <= MAX_STORM_MIN * 60.0:
        raise ValueError(f"must be between 1min and {MAX_STORM_MIN / 60:g}h (got {value!r})")
    return seconds / 60.0


def design_storm(ctx: Context, entry: Any, path: str) -> DesignStorm | None:
    fields = ("return_period", "duration", "peak_ratio", "start")
    if not ctx.known(entry, path, fields, required=("return_period", "duration")):
        return None
    period = ctx.value(entry, "return_period", _return_period, None, path=path)
    minutes = ctx.value(entry, "duration", _storm_duration, None, path=path)
    ratio = number(ctx, entry, "peak_ratio", path, above=0.0, maximum=1.0, default=0.4)
    if ratio == 1.0:
        ctx.fail(join(path, "peak_ratio"), "must be < 1 (got 1)")
    start = ctx.time(entry, "start", 0.0, path)
    if None in (period, minutes, ratio, start) or ratio == 1.0:
        return None
    _formula_range(ctx, path, period, minutes)
    return DesignStorm(period, minutes, ratio, start)


def _formula_range(ctx: Context, path: str, period: float, minutes: float) -> None:
    """Warn when a design storm is outside the return periods and durations its formula was fitted on."""
    (p_lo, p_hi), (d_lo, d_hi) = FORMULA_RETURN_PERIODS_YR, FORMULA_DURATIONS_MIN
    if not p_lo <= period <= p_hi:
        ctx.warn(join(path, "return_period"), f"a {period:g}-year storm is outside the {p_lo:g}-{p_hi:g} years the "
                 "Shanghai storm-intensity formula (DB31/T 1043-2017) is fitted on: its rain is an extrapolation")
    if not d_lo <= minutes <= d_hi:
        ctx.warn(join(path, "duration"), f"a {minutes:g}-min storm is outside the {d_lo:g}-{d_hi:g} min the "
                 "Shanghai storm-intensity formula is fitted on: its rain is an extrapolation")


# ---------------------------------------------------------------- crowd and traffic
def arrival(ctx: Context, entry: Any, path: str) -> Arrival | None:
    if not ctx.known(entry, path, ("at", "radius", "polygon", "name", "rate", "from", "until", "to"),
                     required=("rate", "to")):
        return None
    at = entry_place(ctx, entry, path, "at")
    to = place(ctx, entry["to"], join(path, "to")) if "to" in entry else None
    rate = None
    if isinstance(entry.get("rate"), list):
        rate = step_series(ctx, entry["rate"], join(path, "rate"), q.parse_person_rate)
    elif "rate" in entry:
        value = ctx.value(entry, "rate", q.parse_person_rate, None, path=path)
        rate = None if value is None else Steps((0.0,), (value,))
    span = window(ctx, entry, path)
    return None if None in (at, to, rate) else Arrival(path, at, rate, span, to)


def gathering(ctx: Context, entry: Any, path: str) -> Gathering | None:
    fields = ("at", "radius", "polygon", "name", "peak", "peak_time", "rise", "hold", "fall")
    if not ctx.known(entry, path, fields, required=("peak", "peak_time")):
        return None
    at = entry_place(ctx, entry, path, "at")
    peak = number(ctx, entry, "peak", path, minimum=0.0, required=False)
    peak_time = ctx.time(entry, "peak_time", None, path)
    rise, hold, fall = (ctx.value(entry, key, q.parse_duration, 0.0, path=path) for key in ("rise", "hold", "fall"))
    if None in (at, peak, peak_time, rise, hold, fall):
        return None
    return Gathering(path, at, peak, peak_time, rise, hold, fall)


def demand_change(ctx: Context, entry: Any, path: str) -> DemandChange | None:
    if not ctx.known(entry, path, ("road", "factor", "from", "until"), required=("factor",)):
        return None
    name, where = road(ctx, entry, path)
    factor = number(ctx, entry, "factor", path, minimum=0.0)
    span = window(ctx, entry, path)
    return None if where is None or factor is None else DemandChange(path, name, where, factor, span)


# ---------------------------------------------------------------- interventions
def drainage(ctx: Context, entry: Any, path: str) -> DrainageChange | None:
    if not ctx.known(entry, path, ("area", "radius", "polygon", "name", "capacity", "factor")):
        return None
    area = entry_place(ctx, entry, path, "area")
    if ("capacity" in entry) == ("factor" in entry):
        ctx.fail(path, "give either 'capacity' (mm/h) or 'factor'")
        return None
    capacity = number(ctx, entry, "capacity", path, minimum=0.0)
    factor = number(ctx, entry, "factor", path, minimum=0.0)
    if area is None or (capacity is None and factor is None):
        return None
    return DrainageChange(path, area, capacity, factor)


def tide_locked(ctx: Context, entry: Any, path: str) -> Window | None:
    if entry is True:
        return Window(0.0, ctx.duration_s or math.inf)
    if not ctx.known(entry, path, ("from", "until")):
        return None
    return window(ctx, entry, path)


def close_road(ctx: Context, entry: Any, path: str) -> Closure | None:
    if not ctx.known(entry, path, ("road", "from", "until"), required=("road",)):
        return None
    name, where = road(ctx, entry, path)
    span = window(ctx, entry, path)
    return None if where is None else Closure(path, where, span, road=name)


def close_exit(ctx: Context, entry: Any, path: str) -> Closure | None:
    if not ctx.known(entry, path, ("at", "radius", "polygon", "name", "from", "until")):
        return None
    at = entry_place(ctx, entry, path, "at")
    span = window(ctx, entry, path)
    return None if at is None else Closure(path, at, span)


def one_way(ctx: Context, entry: Any, path: str) -> OneWay | None:
    fields = ("area", "radius", "polygon", "name", "bearing", "from", "until")
    if not ctx.known(entry, path, fields, required=("bearing",)):
        return None
    area = entry_place(ctx, entry, path, "area")
    bearing = number(ctx, entry, "bearing", path, minimum=0.0)
    if bearing is not None and bearing >= 360:
        ctx.fail(join(path, "bearing"), f"must be < 360 degrees (got {bearing:g})")
        bearing = None
    span = window(ctx, entry, path)
    return None if area is None or bearing is None else OneWay(path, area, bearing, span)
