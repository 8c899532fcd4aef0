"""The water entries of a scenario file: discharges onto the ground (``forcing.inflow``), the Huangpu's level
(``forcing.river``) and the flood wall's crests (``interventions.flood_wall``), checked entry by entry.

`scenarios.sections.parse_sections` calls `inflow`, `river` and `flood_wall` on each entry of their kinds; the
results (`InflowSpec`, `RiverSpec`, `WallChange`) are the ``inflow`` and ``river`` of `scenarios.model.Forcings` and
the ``flood_wall`` of `scenarios.model.Interventions`. Times are seconds from the scenario start, discharges m3 s-1,
levels and crests metres above the Wusong datum; `scenarios.forcing` puts them on a grid.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scenarios import quantities as q
from scenarios.checks import Context, entry_place, join, lonlat, number, time_value_pairs, window
from scenarios.places import Part, Place


@dataclass(frozen=True)
class Linear:
    """A piecewise-linear function of time: ``values[i]`` at ``times[i]`` [s from the start], linear between, the
    end values held outside (as `models.flood.Hydrograph`). ``times`` never decrease; a repeated time is a jump
    (a square pulse is ``(t0, t0, t1, t1)``, ``(0, q, q, 0)``)."""

    times: tuple[float, ...]
    values: tuple[float, ...]

    def at(self, t: float) -> float:
        """The value at ``t`` (at a jump, the value after it)."""
        ts, vs = self.times, self.values
        i = bisect.bisect_right(ts, t)
        if i == 0:
            return vs[0]
        if i == len(ts):
            return vs[-1]
        a, b = ts[i - 1], ts[i]
        return vs[i - 1] + (vs[i] - vs[i - 1]) * (t - a) / (b - a)

    def cumulative(self, t: float) -> float:
        """Integral from the first time to ``t`` (negative before it: the first value held). [value x s]"""
        ts, vs = self.times, self.values
        if t <= ts[0]:
            return vs[0] * (t - ts[0])
        total = 0.0
        for i in range(1, len(ts)):
            a, b = ts[i - 1], min(ts[i], t)
            if b > a:
                vb = vs[i - 1] + (vs[i] - vs[i - 1]) * (b - a) / (ts[i] - a)
                total += 0.5 * (vs[i - 1] + vb) * (b - a)
            if t <= ts[i]:
                return total
        return total + vs[-1] * (t - ts[-1])

    def integral(self, t0: float, t1: float) -> float:
        """Exact integral over [t0, t1]. [value x s]"""
        return self.cumulative(t1) - self.cumulative(t0) if t1 > t0 else 0.0


@dataclass(frozen=True)
class InflowSpec:
    """A discharge onto the ground (a pump station's outfall, a burst main): ``name`` (unique in the run), at
    ``place`` (its cells share the discharge equally) or along ``line`` ([lon, lat] vertices: the cells it crosses,
    each by the length of line in it), discharge ``hydrograph`` [m3 s-1]."""

    field: str
    name: str
    place: Place | None
    line: tuple[tuple[float, float], ...] | None
    hydrograph: Linear

    @property
    def label(self) -> str:
        return self.name


@dataclass(frozen=True)
class Tide:
    """A harmonic tide: ``high`` and ``low`` water [m, Wusong], ``period_s`` [s], a high water at ``high_at_s``
    [s from the start]: level = mid + amp cos(2 pi (t - high_at) / period)."""

    high_m: float
    low_m: float
    period_s: float
    high_at_s: float

    def level(self, t: float) -> float:
        mid, amp = 0.5 * (self.high_m + self.low_m), 0.5 * (self.high_m - self.low_m)
        return mid + amp * math.cos(2.0 * math.pi * (t - self.high_at_s) / self.period_s)


@dataclass(frozen=True)
class Surge:
    """A storm surge [m] on the tide: a cos² pulse of height ``peak_m`` at ``at_s`` [s from the start], 0 beyond
    ``duration_s`` / 2 either side: peak cos²(pi (t - at) / duration)."""

    peak_m: float
    at_s: float
    duration_s: float

    def level(self, t: float) -> float:
        x = (t - self.at_s) / self.duration_s
        return self.peak_m * math.cos(math.pi * x) ** 2 if abs(x) < 0.5 else 0.0


@dataclass(frozen=True)
class RiverSpec:
    """The Huangpu's level [m, Wusong datum] over time: a ``series`` (linear between its points) or a ``tide``,
    plus an optional ``surge``; ``source`` says where it comes from (the file, or "tide")."""

    field: str
    series: Linear | None
    tide: Tide | None
    surge: Surge | None
    source: str = ""

    def level(self, t: float) -> float:
        """The river level at ``t`` [s from the start]. [m, Wusong]"""
        base = self.series.at(t) if self.series is not None else self.tide.level(t)
        return base + (self.surge.level(t) if self.surge is not None else 0.0)


@dataclass(frozen=True)
class WallChange:
    """The crest of flood-wall section ``section`` (its id or name) set to ``crest_m`` [m, Wusong] for the whole run
    (temporary flood barriers, 防汛挡板, or a lowered section)."""

    field: str
    section: str
    crest_m: float


DISCHARGE_UNITS = {"m3/s": 1.0, "m³/s": 1.0, "m^3/s": 1.0, "m3/min": 1 / 60, "m³/min": 1 / 60, "m3/h": 1 / 3600,
                   "m³/h": 1 / 3600, "l/s": 1e-3}
"""Cubic metres per second per unit of a discharge."""
_DISCHARGE = re.compile(r"^\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S+)\s*$")
LEVEL_RANGE_M = (-5.0, 12.0)
"""River levels a file may give [m, Wusong]: the Huangpu's record high at Huangpu Park is 5.99 m (1997) and its
lows are about 0 m [mem]; outside this range a value is a mistake (a wrong datum or unit)."""


def parse_discharge(value: Any) -> float:
    """A discharge: a number of m3/s or ``"2.5 m3/s"``, ``"300 L/s"``, ``"9000 m3/h"``. [m3 s-1]"""
    if isinstance(value, bool):
        raise ValueError(f"expected a discharge such as 2.5 m3/s (got {value!r})")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and (match := _DISCHARGE.match(value)):
        unit = match.group(2).lower()
        if unit not in DISCHARGE_UNITS:
            raise ValueError(f"unknown unit {match.group(2)!r} in {value!r}; use m3/s, m3/min, m3/h or L/s")
        number = float(match.group(1)) * DISCHARGE_UNITS[unit]
    else:
        raise ValueError(f"expected a discharge such as 2.5 m3/s, 300 L/s or a number of m3/s (got {value!r})")
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number (got {value!r})")
    if number < 0:
        raise ValueError(f"must not be negative (got {value!r}): a discharge goes onto the ground")
    return number


def _series_time(ctx: Context, value: Any) -> float:
    """A time of a river series [s from the start]: as `scenarios.quantities.parse_time`, and an ISO date-time may be
    before the start (a tide record begins before the run)."""
    if ctx.start is not None and (isinstance(value, dt.datetime) or (
            isinstance(value, str) and re.match(r"^\s*\d{4}-\d\d-\d\d", value))):
        return (q.parse_datetime(value) - ctx.start).total_seconds()
    return q.parse_time(value, ctx.start)


def _linear(ctx: Context, value: Any, path: str, parse_value: Callable[[Any], float],
            parse_t: Callable[[Context, Any], float] | None = None) -> Linear | None:
    """``[[time, value], ...]`` with non-decreasing times (a repeated time is a jump) as a `Linear`; None unless every
    pair is good."""
    pairs = time_value_pairs(ctx, value, path, parse_value, parse_t, strict=False)
    return Linear(tuple(pairs[0]), tuple(pairs[1])) if pairs and len(pairs[0]) == len(value) else None


def inflow(ctx: Context, entry: Any, path: str) -> InflowSpec | None:
    """One ``forcing.inflow`` entry: where (``at``/``polygon``/``line``) and a ``discharge`` [m3 s-1] from/until or a
    ``hydrograph`` ([[time, m3/s], ...]); None (and a failure in ``ctx``) when it is not valid."""
    fields = ("name", "at", "radius", "polygon", "line", "discharge", "from", "until", "hydrograph")
    if not ctx.known(entry, path, fields):
        return None
    if sum(k in entry for k in ("at", "polygon", "line")) != 1:
        ctx.fail(path, "give one of 'at' (a place), 'polygon' or 'line' ([[lon, lat], ...])")
        return None
    if ("discharge" in entry) == ("hydrograph" in entry):
        ctx.fail(path, "give either 'discharge' (with from/until) or 'hydrograph' ([[time, m3/s], ...])")
        return None
    where, line = None, None
    if "line" in entry:
        line = _line(ctx, entry["line"], join(path, "line"))
        if "radius" in entry:
            ctx.fail(join(path, "radius"), "a line source has no radius: it goes onto the cells the line crosses")
    else:
        where = entry_place(ctx, entry, path, "at")
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip() or len(name) > 80):
        ctx.fail(join(path, "name"), f"must be a name of 1 to 80 characters (got {name!r})")
        name = None
    if "hydrograph" in entry:
        for key in ("from", "until"):
            if key in entry:
                ctx.fail(join(path, key), "goes with 'discharge'; a hydrograph gives its own times")
        hydro = _linear(ctx, entry["hydrograph"], join(path, "hydrograph"), parse_discharge)
    else:
        rate = ctx.value(entry, "discharge", parse_discharge, None, path=path)
        span = window(ctx, entry, path)
        hydro = None if rate is None else Linear((span.start_s, span.start_s, span.end_s, span.end_s),
                                                 (0.0, rate, rate, 0.0))
    if hydro is None or (where is None and line is None):
        return None
    label = str(name).strip() if name else (where.label if where is not None else f"line source {path}")
    return InflowSpec(path, label, where, line, hydro)


def unique_inflow_names(ctx: Context, items: tuple[InflowSpec, ...]) -> tuple[InflowSpec, ...]:
    """The inflows with unique names (the model keeps their volumes by name): a repeated name is an error."""
    seen: dict[str, str] = {}
    for item in items:
        if item.name in seen:
            ctx.fail(join(item.field, "name"), f"{item.name!r} is already the name of {seen[item.name]}: "
                     "give each inflow its own name")
        seen.setdefault(item.name, item.field)
    return items


def _line(ctx: Context, value: Any, path: str) -> tuple[tuple[float, float], ...] | None:
    if not isinstance(value, list) or len(value) < 2:
        ctx.fail(path, f"must be a list of at least 2 [lon, lat] points (got {value!r})")
        return None
    try:
        return tuple(lonlat(p) for p in value)
    except ValueError as exc:
        ctx.fail(path, str(exc))
        return None


def line_place(spec: InflowSpec) -> Place:
    """An inflow's line as a `Place` (for maps and place metrics)."""
    import shapely

    return Place(spec.name, (Part(shapely.LineString(spec.line), 0.0),))


def _level(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a river level in metres (Wusong datum) (got {value!r})")
    lo, hi = LEVEL_RANGE_M
    if not lo <= value <= hi:
        raise ValueError(f"must be between {lo:g} and {hi:g} m above the Wusong datum (got {value!r}); "
                         "a wrong datum or unit?")
    return float(value)


def river(ctx: Context, entry: Any, path: str) -> RiverSpec | None:
    """The ``forcing.river`` entry: the level [m, Wusong] as a ``series`` (a CSV file or [[time, m], ...]) or a
    ``tide``, with an optional ``surge``; None (and a failure in ``ctx``) when it is not valid."""
    if not ctx.known(entry, path, ("series", "tide", "surge")):
        return None
    if ("series" in entry) == ("tide" in entry):
        ctx.fail(path, "give either 'series' (a CSV file of time, level or [[time, m], ...]) or 'tide'")
        return None
    series = tide = surge = None
    source = "tide"
    if "series" in entry:
        value = entry["series"]
        if isinstance(value, str):
            source = value
            value = _read_series(ctx, value, join(path, "series"))
        series = None if value is None else _linear(ctx, value, join(path, "series"), _level, _series_time)
        if series is None:
            return None
    else:
        tide = _tide(ctx, entry["tide"], join(path, "tide"))
        if tide is None:
            return None
    if "surge" in entry:
        surge = _surge(ctx, entry["surge"], join(path, "surge"))
        if surge is None:
            return None
    return RiverSpec(path, series, tide, surge, source)


def _read_series(ctx: Context, name: str, path: str) -> list | None:
    """A CSV file of (time, level [m, Wusong]) rows, a header allowed, relative to the scenario file."""
    file = ctx.base_dir / name
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        ctx.fail(path, f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}")
        return None
    rows = [r for r in csv.reader(text.splitlines()) if r and not r[0].lstrip().startswith("#")]
    out = []
    for i, row in enumerate(rows):
        if len(row) < 2:
            ctx.fail(path, f"{file} line {i + 1}: expected time,level (got {','.join(row)!r})")
            return None
        try:
            level = float(row[1])
        except ValueError:
            if i == 0:
                continue  # the header
            ctx.fail(path, f"{file} line {i + 1}: level {row[1]!r} is not a number")
            return None
        t = row[0].strip()
        out.append([float(t) if re.fullmatch(r"[-+]?\d+(\.\d*)?", t) else t, level])
    if not out:
        ctx.fail(path, f"{file} has no (time, level) rows")
        return None
    return out


def _tide(ctx: Context, entry: Any, path: str) -> Tide | None:
    if not ctx.known(entry, path, ("high", "low", "period", "high_at"), required=("high", "low", "high_at")):
        return None
    high = ctx.value(entry, "high", _level, None, path=path)
    low = ctx.value(entry, "low", _level, None, path=path)
    period = ctx.value(entry, "period", q.parse_duration, 12 * 3600 + 25 * 60, path=path)
    high_at = ctx.value(entry, "high_at", lambda v: q.parse_time(v, ctx.start), None, path=path)
    if period is not None and period <= 0:
        ctx.fail(join(path, "period"), f"must be > 0 (got {period:g} s)")
        return None
    if high is not None and low is not None and high < low:
        ctx.fail(join(path, "low"), f"must not be above high water ({low:g} m > {high:g} m)")
        return None
    return None if None in (high, low, period, high_at) else Tide(high, low, period, high_at)


def _surge(ctx: Context, entry: Any, path: str) -> Surge | None:
    if not ctx.known(entry, path, ("peak", "at", "duration"), required=("peak", "at", "duration")):
        return None
    peak = number(ctx, entry, "peak", path, minimum=-3.0, maximum=5.0)
    at = ctx.value(entry, "at", lambda v: q.parse_time(v, ctx.start), None, path=path)
    duration = ctx.value(entry, "duration", q.parse_duration, None, path=path)
    if duration is not None and duration <= 0:
        ctx.fail(join(path, "duration"), f"must be > 0 (got {duration:g} s)")
        return None
    return None if None in (peak, at, duration) else Surge(peak, at, duration)


def flood_wall(ctx: Context, entry: Any, path: str) -> WallChange | None:
    """One ``interventions.flood_wall`` entry: a ``section`` (id or name) and its ``crest`` [m, Wusong] for the run;
    None (and a failure in ``ctx``) when it is not valid. Whether the section exists is checked on the grid
    (`scenarios.forcing.river_setup`)."""
    if not ctx.known(entry, path, ("section", "crest"), required=("section", "crest")):
        return None
    section = entry.get("section")
    if not isinstance(section, str) or not section.strip():
        ctx.fail(join(path, "section"), f"must be a flood-wall section's id or name (got {section!r})")
        return None
    crest = ctx.value(entry, "crest", _level, None, path=path)
    return None if crest is None else WallChange(path, section.strip(), crest)
