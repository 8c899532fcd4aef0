"""The checks scenario files are made of: a `Context` that collects problems by field path, numbers
within bounds, time windows, step series and places (used by `scenarios.spec` and `scenarios.sections`).

Every check adds a problem to the `Context` under the dotted path of its field and goes on, so a file
with many mistakes gets them all in one `scenarios.spec.ScenarioError`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely

from scenarios import quantities as q
from scenarios.model import Steps, Window
from scenarios.places import Gazetteer, Part, Place, gazetteer, union
from twin.district.cim import POINT_RADIUS_M


@dataclass
class Context:
    """What the checks need to know (the start, the duration, the district) and the problems found."""

    base_dir: Path
    start: dt.datetime | None = None
    duration_s: float | None = None
    district: Path | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Things that run but that a planner should know (a storm beyond its formula's range), by field path."""

    def fail(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}")

    def known(self, value: Any, path: str, fields: tuple[str, ...], required: tuple[str, ...] = ()) -> bool:
        """Whether ``value`` is a mapping; fails on unknown and missing fields."""
        if not isinstance(value, dict):
            self.fail(path or "(top)", f"must be a mapping with fields {', '.join(fields)} (got {value!r})")
            return False
        for key in value:
            if key not in fields:
                self.fail(join(path, str(key)), f"unknown field; known here: {', '.join(fields)}")
        for key in required:
            if key not in value:
                self.fail(join(path, key), "required")
        return True

    def value(self, mapping: dict, key: str, parser: Callable[[Any], Any], default: Any, *, path: str = "",
              required: bool = False) -> Any:
        """``parser(mapping[key])``, the default if absent, None (and a problem) if it does not parse."""
        if key not in mapping:
            if required:
                self.fail(join(path, key), "required")
            return default
        try:
            return parser(mapping[key])
        except ValueError as exc:
            self.fail(join(path, key), str(exc))
            return None

    def time(self, mapping: dict, key: str, default: float | None, path: str) -> float | None:
        """A time of the scenario [s from the start]; it must fall before the end."""
        t = self.value(mapping, key, lambda v: q.parse_time(v, self.start), default, path=path)
        if key in mapping and t is not None and self.duration_s is not None and t > self.duration_s:
            self.fail(join(path, key), f"is {q.format_offset(t)}, after the end of the scenario "
                      f"({q.format_offset(self.duration_s)})")
        return t

    def gazetteer(self) -> Gazetteer | None:
        return gazetteer(self.district) if self.district is not None else None


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def entries(ctx: Context, value: Any, path: str) -> list[tuple[str, Any]]:
    """One entry or a list of entries, with their paths."""
    if isinstance(value, list):
        return [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    return [(path, value)]


def grouped(ctx: Context, value: Any, path: str, kinds: tuple[str, ...]) -> dict[str, list[tuple[str, Any]]]:
    """A section's entries by kind, from either of its two forms (see the module docstring)."""
    out: dict[str, list[tuple[str, Any]]] = {kind: [] for kind in kinds}
    if value is None:
        return out
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, dict) or len(item) != 1 or next(iter(item)) not in kinds:
                ctx.fail(f"{path}[{i}]", f"must be a mapping of one of {', '.join(kinds)} (got {item!r})")
                continue
            kind, entry = next(iter(item.items()))
            out[kind] += entries(ctx, entry, f"{path}[{i}].{kind}")
        return out
    if ctx.known(value, path, kinds):
        for kind in kinds:
            if kind in value:
                out[kind] += entries(ctx, value[kind], f"{path}.{kind}")
    return out


# ---------------------------------------------------------------- numbers, windows, series
def number(ctx: Context, mapping: dict, key: str, path: str, *, minimum: float | None = None,
           maximum: float | None = None, default: float | None = None, required: bool = False,
           above: float | None = None) -> float | None:
    """A plain number within bounds."""
    if key not in mapping:
        if required:
            ctx.fail(join(path, key), "required")
        return default
    value = mapping[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        ctx.fail(join(path, key), f"must be a number (got {value!r})")
        return None
    bounds = [(minimum, lambda v, b: v >= b, ">="), (above, lambda v, b: v > b, ">"),
              (maximum, lambda v, b: v <= b, "<=")]
    for bound, ok, word in bounds:
        if bound is not None and not ok(value, bound):
            ctx.fail(join(path, key), f"must be {word} {bound:g} (got {value!r})")
            return None
    return float(value)


def window(ctx: Context, entry: dict, path: str) -> Window:
    """``from`` (default the start) and ``until`` (default the end) of an entry. ``until`` must come after ``from``;
    a bare clock time ``until`` earlier on the clock than ``from`` is an error (it would silently mean the next
    day): the next day is written out, ``"00:10 +1d"``."""
    end = ctx.duration_s or math.inf  # unknown when the duration itself is wrong (reported there)
    t0 = ctx.time(entry, "from", 0.0, path)
    t1 = ctx.value(entry, "until", lambda v: q.parse_time(v, ctx.start), end, path=path)
    if t0 is not None and t1 is not None and t1 <= t0 and (t0 < end or "until" in entry):
        ctx.fail(join(path, "until"), f"must be after 'from' ({q.format_offset(t0)}; got {q.format_offset(t1)})")
    elif t0 is not None and t1 is not None and _rolls_over(ctx, entry, t0):
        until = str(entry["until"]).strip()
        ctx.fail(join(path, "until"), f"{until} is earlier on the clock than the window's start "
                 f"({_clock_text(ctx, t0)}); write '{until} +1d' if it ends the next day")
    return Window(t0 or 0.0, end if t1 is None else t1)


def _rolls_over(ctx: Context, entry: dict, t0: float) -> bool:
    """Whether a bare clock ``until`` is at or before the clock time of the window's start (``t0``)."""
    until = q.clock_of(entry.get("until"))
    if until is None or ctx.start is None:
        return False
    begin = ctx.start + dt.timedelta(seconds=t0)
    return until <= begin.hour * 3600.0 + begin.minute * 60.0 + begin.second


def _clock_text(ctx: Context, t: float) -> str:
    return (ctx.start + dt.timedelta(seconds=t)).strftime("%H:%M") if ctx.start is not None else q.format_offset(t)


def time_value_pairs(ctx: Context, value: Any, path: str, parse_value: Callable[[Any], float],
                     parse_t: Callable[[Context, Any], float] | None = None,
                     strict: bool = True) -> tuple[list[float], list[float]] | None:
    """``[[time, value], ...]`` as (times [s from the start], values), times increasing (``strict``) or never going
    back (a repeated time is a jump); None when the list is not one, and a failure in ``ctx`` for every bad pair
    (the pair is left out). ``parse_t`` reads a time (default: a clock time or an offset, `quantities.parse_time`)."""
    if not isinstance(value, list) or not value:
        ctx.fail(path, f"must be a non-empty list of [time, value] pairs (got {value!r})")
        return None
    times: list[float] = []
    values: list[float] = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list) or len(pair) != 2:
            ctx.fail(f"{path}[{i}]", f"must be a [time, value] pair (got {pair!r})")
            continue
        try:
            t = parse_t(ctx, pair[0]) if parse_t is not None else q.parse_time(pair[0], ctx.start)
        except ValueError as exc:
            ctx.fail(f"{path}[{i}][0]", str(exc))
            continue
        try:
            v = parse_value(pair[1])
        except ValueError as exc:
            ctx.fail(f"{path}[{i}][1]", str(exc))
            continue
        if times and (t <= times[-1] if strict else t < times[-1]):
            rule = "must increase" if strict else "must not go back"
            ctx.fail(f"{path}[{i}][0]", f"times {rule} ({q.format_offset(t)} after {q.format_offset(times[-1])})")
            continue
        times.append(t)
        values.append(v)
    return times, values


def step_series(ctx: Context, value: Any, path: str, parse_value: Callable[[Any], float]) -> Steps | None:
    """``[[time, value], ...]`` with increasing times, as a step function."""
    pairs = time_value_pairs(ctx, value, path, parse_value)
    return Steps(tuple(pairs[0]), tuple(pairs[1])) if pairs and pairs[0] else None


def non_negative(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"must be a number >= 0 (got {value!r})")
    return float(value)


# ---------------------------------------------------------------- places
def lonlat(value: Any) -> tuple[float, float]:
    """A ``[lon, lat]`` pair in degrees."""
    ok = isinstance(value, list | tuple) and len(value) == 2 and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    if not ok:
        raise ValueError(f"expected [lon, lat] in degrees (got {value!r})")
    lon, lat = float(value[0]), float(value[1])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValueError(f"[lon, lat] out of range (got {value!r}; lon first)")
    return lon, lat


def polygon(value: Any) -> shapely.Polygon:
    """A ring ``[[lon, lat], ...]`` (closed or not) as a valid polygon."""
    if not isinstance(value, list) or len(value) < 3:
        raise ValueError(f"expected a ring of at least 3 [lon, lat] points (got {value!r})")
    ring = [lonlat(p) for p in value]
    poly = shapely.Polygon(ring)
    if not poly.is_valid or poly.area == 0:
        raise ValueError(f"the ring is not a simple polygon ({shapely.is_valid_reason(poly)})")
    return poly


def place(ctx: Context, value: Any, path: str, radius_m: float | None = None,
          sources: tuple[str, ...] | None = None) -> Place | None:
    """A place: a name, ``[lon, lat]``, ``{polygon: ring}``, ``{at: place, radius: length}`` or a list of these."""
    if isinstance(value, str):
        return named(ctx, value, path, radius_m, sources)
    if isinstance(value, list) and value and all(isinstance(v, str | dict) for v in value):
        parts = [place(ctx, v, f"{path}[{i}]", radius_m, sources) for i, v in enumerate(value)]
        if None in parts:
            return None
        label = " + ".join(p.label for p in parts) if len(parts) <= 2 else \
            f"{parts[0].label} and {len(parts) - 1} more places"
        return union(label, parts)
    if isinstance(value, list):
        try:
            lon, lat = lonlat(value)
        except ValueError as exc:
            ctx.fail(path, f"{exc}; a polygon goes under 'polygon:'")
            return None
        radius = POINT_RADIUS_M if radius_m is None else radius_m
        point = shapely.Point(lon, lat)
        return Place(_near(ctx, point, f"{radius:g} m around {lon:.5f} E {lat:.5f} N"), (Part(point, radius),))
    if isinstance(value, dict) and ctx.known(value, path, ("polygon", "at", "radius")):
        return _place_mapping(ctx, value, path, radius_m, sources)
    if not isinstance(value, dict):
        ctx.fail(path, f"expected a place: a name, [lon, lat], {{polygon: ...}} or {{at: ..., radius: ...}} "
                 f"(got {value!r})")
    return None


def _near(ctx: Context, geometry: shapely.Geometry, what: str) -> str:
    """A place given by coordinates, named after the nearest named place: ``near Chen Yi Square (10 m around
    121.48600 E 31.24000 N)``."""
    places = ctx.gazetteer()
    nearest = places.nearest(geometry) if places is not None else None
    return f"near {nearest} ({what})" if nearest else what


def _place_mapping(ctx: Context, value: dict, path: str, radius_m: float | None,
                   sources: tuple[str, ...] | None) -> Place | None:
    radius = ctx.value(value, "radius", q.parse_length, radius_m, path=path)
    if ("polygon" in value) == ("at" in value):
        ctx.fail(path, "give either 'polygon' or 'at'")
        return None
    if "at" in value:
        return place(ctx, value["at"], join(path, "at"), radius, sources)
    try:
        ring = polygon(value["polygon"])
        return Place(_near(ctx, ring, "a polygon"), (Part(ring, radius or 0.0),))
    except ValueError as exc:
        ctx.fail(join(path, "polygon"), str(exc))
        return None


def named(ctx: Context, name: str, path: str, radius_m: float | None = None,
          sources: tuple[str, ...] | None = None) -> Place | None:
    """A named place of the district (``radius`` replaces the buffer of its points and lines)."""
    gaz = ctx.gazetteer()
    if gaz is None:
        return None  # the district itself is wrong; that problem is reported under grid
    try:
        found = gaz.lookup(name, sources) if sources else gaz.lookup(name)
    except KeyError as exc:
        ctx.fail(path, exc.args[0])
        return None
    if radius_m is None:
        return found
    parts = tuple(Part(p.geometry, p.buffer_m if p.geometry.geom_type.endswith("Polygon") else radius_m,
                       p.underground) for p in found.parts)
    return Place(found.label, parts)


def entry_place(ctx: Context, entry: dict, path: str, key: str, required: bool = True) -> Place | None:
    """The place of an entry: under ``key`` (with the entry's ``radius``), or the entry's ``polygon``; the entry's
    ``name`` (text) names it in reports instead of its coordinates or its parts."""
    radius = ctx.value(entry, "radius", q.parse_length, None, path=path)
    if key in entry and "polygon" in entry:
        ctx.fail(path, f"give either '{key}' or 'polygon'")
        return None
    if "polygon" in entry:
        found = place(ctx, {"polygon": entry["polygon"]}, path, radius)
    elif key not in entry:
        if required:
            ctx.fail(join(path, key), "required (a place: a name, [lon, lat] or a polygon)")
        return None
    else:
        found = place(ctx, entry[key], join(path, key), radius)
    return _renamed(ctx, found, entry.get("name"), join(path, "name"))


PLACE_NAME_MAX = 80
"""Longest place name an entry may give (it heads report lines and CAP area descriptions)."""


def _renamed(ctx: Context, found: Place | None, name: Any, path: str) -> Place | None:
    if name is None or found is None:
        return found
    if not isinstance(name, str) or not name.strip() or len(name) > PLACE_NAME_MAX:
        ctx.fail(path, f"must be a name of 1 to {PLACE_NAME_MAX} characters (got {name!r})")
        return found
    return Place(name.strip(), found.parts)


def road(ctx: Context, entry: dict, path: str) -> tuple[str, Place | None]:
    """A named road of the district's road data."""
    name = entry.get("road")
    if not isinstance(name, str):
        ctx.fail(join(path, "road"), "required: a road name" if name is None else f"must be a name (got {name!r})")
        return "", None
    return name, named(ctx, name, join(path, "road"), sources=("road",))
