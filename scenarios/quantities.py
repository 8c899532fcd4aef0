"""Quantities with explicit units as written in scenario files: durations, times, lengths and rates.

Each parser takes the value as YAML gave it and returns SI numbers, or raises ``ValueError`` with a
message that says what was expected and what was found (the scenario validator prefixes the field path).

- Durations: a number of seconds, or a string of number-unit pairs: ``"90s"``, ``"30min"``, ``"6h"``,
  ``"1h30min"``, ``"1.5 h"`` (units ``ms s sec min h hr d`` and their long forms). [s]
- Times: an offset from the start written as a duration (``"45min"``), an ISO 8601 date-time with a zone
  (``"2014-12-31T23:35:00+08:00"``, or the datetime YAML makes of it unquoted), or a clock time
  ``"HH:MM[:SS]"``: its first occurrence at or after the start, in the start's zone; ``"HH:MM +1d"`` is that
  time on the day after the start's day (``+2d`` two days after), written out when an ``until`` falls on the next
  day (`clock_of`). [s from the start]
- Lengths: a number of metres, or ``"30m"``, ``"0.5km"``, ``"250 cm"``. [m]
- Rates of people: a number of people per second, or ``"1200/min"``, ``"20/s"``, ``"36000/h"``. [person s-1]
"""

from __future__ import annotations

import datetime as dt
import math
import re

DURATION_UNITS = {
    "ms": 1e-3, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}
"""Seconds per unit of a duration."""
LENGTH_UNITS = {"m": 1.0, "km": 1000.0, "cm": 0.01}
"""Metres per unit of a length."""
RATE_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}
"""Seconds per unit of the denominator of a rate."""

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_PAIR = re.compile(rf"\s*({_NUMBER})\s*([a-zA-Z]+)\s*")
_CLOCK = re.compile(r"^\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*(?:\+\s*(\d+)\s*(?:d|day|days))?\s*$")
_RATE = re.compile(rf"^\s*({_NUMBER})\s*/\s*([a-zA-Z]+)\s*$")
_LENGTH = re.compile(rf"^\s*({_NUMBER})\s*([a-zA-Z]+)\s*$")


def _plain_number(value: object) -> float | None:
    """The value as a finite float if it is a YAML number (never a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number (got {value})")
    return value


def parse_duration(value: object) -> float:
    """A non-negative duration. [s]"""
    number = _plain_number(value)
    if number is not None:
        if number < 0:
            raise ValueError(f"must not be negative (got {value})")
        return number
    hint = "expected a duration such as 90s, 30min, 6h or a number of seconds"
    if not isinstance(value, str):
        raise ValueError(f"{hint} (got {value!r})")
    pairs, end = [], 0
    for match in _PAIR.finditer(value):
        if match.start() != end:
            break
        pairs.append((float(match.group(1)), match.group(2).lower()))
        end = match.end()
    if not pairs or end != len(value):
        raise ValueError(f"{hint} (got {value!r})")
    unknown = [unit for _, unit in pairs if unit not in DURATION_UNITS]
    if unknown:
        raise ValueError(f"unknown time unit {unknown[0]!r} in {value!r}; use s, min or h")
    if any(number < 0 for number, _ in pairs):
        raise ValueError(f"must not be negative (got {value!r})")
    return sum(number * DURATION_UNITS[unit] for number, unit in pairs)


def parse_datetime(value: object) -> dt.datetime:
    """An ISO 8601 date-time with a zone (a string, or the datetime YAML reads from it)."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"expected an ISO date-time such as 2014-12-31T22:30:00+08:00 (got {value!r})") from None
    if not isinstance(value, dt.datetime):
        raise ValueError(f"expected an ISO date-time such as 2014-12-31T22:30:00+08:00 (got {value!r})")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"needs a zone, e.g. +08:00 for Shanghai (got {value.isoformat()})")
    return value


def parse_time(value: object, start: dt.datetime | None) -> float:
    """A moment of the scenario as seconds from its start. [s]

    ``start`` is the scenario's start time; absolute and clock times need it.
    """
    if isinstance(value, str) and (clock := _CLOCK.match(value)):
        return _clock_offset(clock, start)
    if isinstance(value, dt.datetime) or (isinstance(value, str) and re.match(r"^\s*\d{4}-\d\d-\d\d", value)):
        moment = parse_datetime(value)
        if start is None:
            raise ValueError("an absolute time needs start_time (or write an offset such as 45min)")
        offset = (moment - start).total_seconds()
        if offset < 0:
            raise ValueError(f"{moment.isoformat()} is before start_time {start.isoformat()}")
        return offset
    if isinstance(value, dt.date):
        raise ValueError(f"a date alone is not a time (got {value}); write a date-time with a zone")
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError("expected an offset from the start (90s, 30min, 6h), a clock time (23:35) or an "
                         f"ISO date-time with a zone (got {value!r})") from None


def _clock_offset(clock: re.Match, start: dt.datetime | None) -> float:
    if start is None:
        raise ValueError(f"a clock time ({clock.group(0).strip()}) needs start_time")
    hour, minute, second = int(clock.group(1)), int(clock.group(2)), int(clock.group(3) or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"not a clock time: {clock.group(0).strip()!r}")
    moment = start.replace(hour=hour, minute=minute, second=second, microsecond=0)
    if clock.group(4) is not None:  # "HH:MM +Nd": N days after the start's day, as written
        moment += dt.timedelta(days=int(clock.group(4)))
        if moment < start:
            raise ValueError(f"{clock.group(0).strip()} is before start_time {start.isoformat()}")
    elif moment < start:
        moment += dt.timedelta(days=1)
    return (moment - start).total_seconds()


def clock_of(value: object) -> float | None:
    """Seconds after midnight of a bare clock time (``"23:35"``; not ``"00:10 +1d"``, not an offset or a
    date-time), else None."""
    clock = _CLOCK.match(value) if isinstance(value, str) else None
    if clock is None or clock.group(4) is not None:
        return None
    return int(clock.group(1)) * 3600.0 + int(clock.group(2)) * 60.0 + int(clock.group(3) or 0)


def _with_unit(value: object, pattern: re.Pattern, units: dict[str, float], scale: str, expected: str,
               known: str) -> float:
    """A non-negative number, plain or with a unit matched by ``pattern``; ``scale`` "mul" multiplies by the
    unit's factor (lengths), "div" divides by it (rates per time unit)."""
    number = _plain_number(value)
    if number is None and isinstance(value, str) and (match := pattern.match(value)):
        unit = match.group(2).lower()
        if unit not in units:
            raise ValueError(f"unknown unit {unit!r} in {value!r}; use {known}")
        factor = units[unit]
        number = float(match.group(1)) * factor if scale == "mul" else float(match.group(1)) / factor
    if number is None:
        raise ValueError(f"expected {expected} (got {value!r})")
    if number < 0:
        raise ValueError(f"must not be negative (got {value})")
    return number


def parse_length(value: object) -> float:
    """A non-negative length. [m]"""
    return _with_unit(value, _LENGTH, LENGTH_UNITS, "mul", "a length such as 30m, 0.5km or a number of metres",
                      "m or km")


def parse_person_rate(value: object) -> float:
    """A non-negative flow of people. [person s-1]"""
    return _with_unit(value, _RATE, RATE_UNITS, "div",
                      "people per second, or a rate such as 1200/min or 20/s", "/s, /min or /h")


def format_offset(seconds: float) -> str:
    """An offset as ``+1h05min`` style text, for messages and timelines."""
    seconds = round(seconds)
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes:02d}min" if hours else f"{minutes}min" if minutes else "")
    text += f"{secs}s" if secs or not text else ""
    return ("-" if seconds < 0 else "+") + text
