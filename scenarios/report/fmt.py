"""Numbers and names as a planner reads them: counts as integers with thousands separators, depths in metres with
two decimals, densities with one or two, times as the local clock; places by name, the Chinese name beside."""

from __future__ import annotations

import html
import math

DASH = "–"


def fmt_int(value: float | int | None) -> str:
    """A count as an integer with thousands separators (``26`` not ``26.000``; ``81,228``)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return DASH
    return f"{round(float(value)):,}"


def fmt_value(value: float | int) -> str:
    """A compared value: whole numbers and values of 100 or more as integers with separators, else two decimals."""
    v = float(value)
    return fmt_int(v) if abs(v) >= 100 or v == int(v) else f"{v:.2f}"


def fmt_signed(value: float | int, minus: str = "-") -> str:
    """A difference with its sign (``+0.42``, ``-1,650``; ``minus`` "−" for typeset pages)."""
    v = float(value)
    return ("+" if v > 0 else minus) + fmt_value(abs(v))


def fmt_people(value: float | int | None) -> str:
    """People [person]: a whole number with thousands separators (``81,228`` not ``81228.300``)."""
    return fmt_int(value)


def fmt_depth(value: float | None) -> str:
    """A water depth [m] with two decimals: ``1.94 m``."""
    return DASH if value is None else f"{float(value):.2f} m"


def fmt_density(value: float | None) -> str:
    """A crowd density [person m-2]: two decimals below 1, one above (``0.45``, ``5.4``), with its unit."""
    if value is None:
        return DASH
    v = float(value)
    return f"{v:.2f} person/m²" if v < 1.0 else f"{v:.1f} person/m²"


def fmt_speed(value: float | None) -> str:
    """A traffic speed [km h-1] as a whole number."""
    return DASH if value is None else f"{float(value):.0f} km/h"


def fmt_minutes(value: float | None) -> str:
    """A duration [min] as a whole number of minutes."""
    return DASH if value is None else f"{float(value):.0f} min"


def place_name(row: dict) -> str:
    """A place's English name (the Chinese one beside it in HTML, `place_html`)."""
    return str(row.get("name") or row.get("name_zh") or row.get("key") or "")


def place_html(row: dict) -> str:
    """A place's name as HTML: the English name, the Chinese one beside it when it differs."""
    en, zh = place_name(row), str(row.get("name_zh") or "")
    extra = f' <span class="zh" lang="zh-CN">{html.escape(zh)}</span>' if zh and zh != en else ""
    return f"{html.escape(en)}{extra}"
