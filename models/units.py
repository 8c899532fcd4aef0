"""A small UDUNITS-2 string parser for the units the twin uses.

Units are products of ``symbol[exponent]`` tokens separated by spaces, e.g. ``m``, ``m2``,
``m s-1``, ``km h-1``, ``mm h-1``, ``person m-2``, ``m2 s-1``; ``1`` is dimensionless.
:func:`parse_units` returns the factor to SI and the dimension vector, :func:`conversion_factor`
the factor that converts values from one unit to another (and raises if they are incompatible).
"""

from __future__ import annotations

import re
from functools import lru_cache

# Dimension order: length, time, person (a counted dimension, as in UDUNITS "count").
_SYMBOLS: dict[str, tuple[float, tuple[int, int, int]]] = {
    "m": (1.0, (1, 0, 0)),
    "cm": (1e-2, (1, 0, 0)),
    "mm": (1e-3, (1, 0, 0)),
    "km": (1e3, (1, 0, 0)),
    "s": (1.0, (0, 1, 0)),
    "min": (60.0, (0, 1, 0)),
    "h": (3600.0, (0, 1, 0)),
    "d": (86400.0, (0, 1, 0)),
    "person": (1.0, (0, 0, 1)),
    "1": (1.0, (0, 0, 0)),
    "%": (1e-2, (0, 0, 0)),
}
_TOKEN = re.compile(r"^([A-Za-z%]+|1)(-?\d+)?$")


class UnitsError(ValueError):
    """A units string that is not valid or not convertible."""


@lru_cache(maxsize=256)
def parse_units(units: str) -> tuple[float, tuple[int, int, int]]:
    """Parse a UDUNITS string.

    Parameters
    ----------
    units : str
        Units string, e.g. ``"mm h-1"``.

    Returns
    -------
    factor : float
        Multiply a value in ``units`` by this to get SI. [1]
    dims : tuple of int
        Exponents of (length, time, person).
    """
    if not isinstance(units, str) or not units.strip():
        raise UnitsError(f"empty or non-string units {units!r}")
    factor, dims = 1.0, [0, 0, 0]
    for token in units.split():
        match = _TOKEN.match(token)
        if match is None or match.group(1) not in _SYMBOLS:
            raise UnitsError(f"unknown unit token {token!r} in {units!r}")
        f, d = _SYMBOLS[match.group(1)]
        power = int(match.group(2)) if match.group(2) else 1
        if match.group(1) == "1" and match.group(2):
            raise UnitsError(f"'1' takes no exponent in {units!r}")
        factor *= f**power
        for k in range(3):
            dims[k] += d[k] * power
    return factor, tuple(dims)


def conversion_factor(from_units: str, to_units: str) -> float:
    """Factor converting a value in ``from_units`` to ``to_units`` (raises if incompatible)."""
    f1, d1 = parse_units(from_units)
    f2, d2 = parse_units(to_units)
    if d1 != d2:
        raise UnitsError(f"cannot convert {from_units!r} to {to_units!r}")
    return f1 / f2


def to_si(units: str) -> float:
    """Factor converting a value in ``units`` to SI units."""
    return parse_units(units)[0]
