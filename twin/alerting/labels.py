"""Alert labels and label matchers: what silences and inhibition rules match alerts by (issue 16).

An alert's labels are flat strings, in the manner of Prometheus Alertmanager [src: Alertmanager docs,
"Configuration: matcher", "Silences"]:

=============  =========================================================================================
label          value
=============  =========================================================================================
identifier     the alert's identifier, ``citytwin.bund.flood.20250101T000000Z.00001``
hazard         ``flood``, ``crowd``, ``crowd_forecast``, ``traffic``, ``rain``
level          the level's colour: ``blue``, ``yellow``, ``orange``, ``red`` (``none`` for 0)
level_number   the level as a number, ``1`` to ``4``
place          the place's key (``flood:point:water-03``), a road segment's description, else empty
place_name     the place's short English name, else empty
device         a device reporting the alert's evidence: a matcher on ``device`` holds if it holds for
               *one* of the devices (``device="water-03"``: water-03 is among them); ``!=`` and ``!~``
               hold if it holds for none of them
district       the twin's district (``bund``)
scope          ``place`` (an operational unit), ``region`` (a region of the level grid), and for rain:
               ``district`` (the district rainstorm signal) or ``gauge`` (the area of one or a few gauges)
=============  =========================================================================================

A label an alert does not have is the empty string, as in Alertmanager. Regular expressions are anchored at
both ends (``place=~"flood:point:.*"``), Python `re` syntax.

The area (a shapely geometry in the grid's projected CRS, metres) is not a label: inhibition rules use it for
``target_within_source``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import shapely

LEVEL_NAMES = {0: "none", 1: "blue", 2: "yellow", 3: "orange", 4: "red"}
"""Level number -> its colour (GB/T 27962-2011 levels, as `twin.alerting.cap.LEVEL_COLOUR`)."""
LEVEL_OF_NAME = {v: k for k, v in LEVEL_NAMES.items()}
LABEL_NAMES = ("identifier", "hazard", "level", "level_number", "place", "place_name", "device", "district",
               "scope")
"""Every label a matcher may name."""
LABEL_ALIASES = {"devices": "device", "severity": "level"}
"""Other names accepted for a label (kept as the label's own name)."""
OPERATORS = ("=", "!=", "=~", "!~")
MAX_VALUE_LEN = 200
"""Longest matcher value [characters] (a place key or a regular expression; longer is refused)."""
DISTRICT_SIGNAL_SHARE = 0.5
"""A rain alert covering at least this share of the district's cells is the district rainstorm signal
(``scope=district``), a smaller one the area of one or a few gauges (``scope=gauge``) [design: the rain signal grid
takes each cell from its nearest gauge (Thiessen polygons, twin.live.models), so a rain alert is the area of the
gauges at blue or above; the Shanghai signal is issued for a whole district, so an area of most of the district is
that signal]."""


@dataclass(frozen=True)
class AlertLabels:
    """The labels of one active alert (see the module docstring), its area and its worst value.

    ``area``: shapely geometry in the grid CRS [m], None if unknown; ``value``: the alert's current worst value
    in its hazard's unit (NaN if unknown; storm summaries rank places by it); ``place_name_zh``: the place's
    Chinese name (storm summaries; not a label).
    """

    identifier: str
    hazard: str
    level: int
    place: str
    place_name: str
    devices: tuple[str, ...]
    area: object = None
    district: str = ""
    scope: str = ""
    value: float = math.nan
    place_name_zh: str = ""

    def get(self, label: str) -> str:
        """The value of a single-valued label (empty if the alert has none); ``device`` gives them joined by
        commas (use `Matcher.matches` to match devices)."""
        label = LABEL_ALIASES.get(label, label)
        if label == "level":
            return LEVEL_NAMES.get(int(self.level), str(self.level))
        if label == "level_number":
            return str(int(self.level))
        if label == "device":
            return ",".join(self.devices)
        return str(getattr(self, label, "") or "")

    def as_dict(self) -> dict[str, str]:
        """Every label as a string (for the API and logs)."""
        return {name: self.get(name) for name in LABEL_NAMES}


def _scope(alert, cells_total: int | None) -> str:
    if alert.hazard == "rain" and alert.place is None:
        if not cells_total:
            return "district"
        return "district" if alert.cells.size >= DISTRICT_SIGNAL_SHARE * cells_total else "gauge"
    return "place" if alert.place is not None else "region"


def _place_of(place) -> tuple[str, str, str]:
    """key, English name, Chinese name of a `twin.alerting.segments.Place` (its description where they are empty)."""
    if place is None:
        return "", "", ""
    description = str(getattr(place, "description", "") or "")
    key = str(getattr(place, "key", "") or "") or description
    name = str(getattr(place, "name_en", "") or "") or description
    return key, name, str(getattr(place, "name_zh", "") or "") or name


def labels_of(alert, devices: tuple[str, ...] = (), area=None, *, district: str = "",
              cells_total: int | None = None, value: float = math.nan) -> AlertLabels:
    """The labels of an active `twin.alerting.lifecycle.Alert`.

    ``devices``: the devices reporting its evidence; ``area``: its area in the grid CRS (e.g. `cells_area`);
    ``district``: the twin's district; ``cells_total``: the number of cells of the district's grid (to tell a
    district rainstorm signal from a gauge's area; None: every rain alert is the district signal); ``value``: its
    current worst value.
    """
    key, name, name_zh = _place_of(alert.place)
    return AlertLabels(str(alert.identifier), str(alert.hazard), int(alert.level), key, name,
                       tuple(sorted(str(d) for d in devices)), area, district, _scope(alert, cells_total),
                       float(value), name_zh)


def cells_area(cells: np.ndarray, grid) -> shapely.Geometry:
    """The union of grid cells (flat indices of a `twin.district.grid.GridSpec`) as one geometry in the grid
    CRS [m]; an empty polygon for no cells."""
    cells = np.asarray(cells, np.int64).ravel()
    if cells.size == 0:
        return shapely.Polygon()
    row, col = np.divmod(cells, grid.nx)
    x0 = grid.x0 + col * grid.cell_size
    y1 = grid.y0 - row * grid.cell_size
    boxes = shapely.box(x0, y1 - grid.cell_size, x0 + grid.cell_size, y1)
    return shapely.union_all(boxes)


# ---------------------------------------------------------------- matchers
@dataclass(frozen=True)
class Matcher:
    """One label matcher: ``label op value`` with ``op`` one of ``=``, ``!=``, ``=~``, ``!~`` (Alertmanager's).

    Build it with `Matcher.of` (it checks the label, the operator, the value and the regular expression).
    """

    label: str
    op: str
    value: str

    @classmethod
    def of(cls, label: object, op: object, value: object) -> Matcher:
        """A checked matcher; ValueError says what is wrong. ``level=3`` is kept as ``level=orange``."""
        label, op = str(label).strip(), str(op).strip()
        label = LABEL_ALIASES.get(label, label)
        if label not in LABEL_NAMES:
            raise ValueError(f"unknown label {label!r}; labels: {', '.join(LABEL_NAMES)}")
        if op not in OPERATORS:
            raise ValueError(f"unknown operator {op!r} for label {label!r}; operators: {' '.join(OPERATORS)}")
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise ValueError(f"the value of {label}{op} must be a string")
        value = str(value)
        if len(value) > MAX_VALUE_LEN:
            raise ValueError(f"the value of {label}{op} is too long ({len(value)} characters, at most "
                             f"{MAX_VALUE_LEN})")
        if not value.isprintable():
            raise ValueError(f"the value of {label}{op} must be printable (no control or line-separator characters)")
        if op in ("=~", "!~"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression for {label}{op}: {value!r}: {exc}") from None
        elif label == "level" and value.isdigit():
            level = int(value)
            if level not in LEVEL_NAMES:
                raise ValueError(f"level {value} does not exist; levels: 0 to 4 or {', '.join(LEVEL_OF_NAME)}")
            value = LEVEL_NAMES[level]
        return cls(label, op, value)

    @property
    def regex(self) -> re.Pattern | None:
        """The compiled, fully anchored expression of ``=~`` / ``!~``."""
        return _compiled(self.value) if self.op in ("=~", "!~") else None

    def _holds(self, text: str) -> bool:
        """The positive test (``=`` or ``=~``) on one value."""
        if self.op in ("=", "!="):
            return text == self.value
        return _compiled(self.value).fullmatch(text) is not None

    def matches(self, labels: AlertLabels) -> bool:
        """Whether the alert's labels satisfy this matcher (``device``: any of its devices, see the module
        docstring)."""
        if self.label == "device":
            values = labels.devices or ("",)
            hit = any(self._holds(d) for d in values)
        else:
            hit = self._holds(labels.get(self.label))
        return hit if self.op in ("=", "=~") else not hit

    def matches_empty(self) -> bool:
        """Whether an alert without this label (the empty string) satisfies it."""
        hit = self._holds("")
        return hit if self.op in ("=", "=~") else not hit

    def text(self) -> str:
        """``label op "value"``, as Alertmanager writes it."""
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.label}{self.op}"{escaped}"'

    def to_dict(self) -> dict[str, str]:
        """``{"label", "op", "value"}``."""
        return {"label": self.label, "op": self.op, "value": self.value}


_CACHE: dict[str, re.Pattern] = {}


def _compiled(pattern: str) -> re.Pattern:
    got = _CACHE.get(pattern)
    if got is None:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        got = _CACHE[pattern] = re.compile(pattern)
    return got


_MATCHER_TEXT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.S)


def parse_matcher(text: str) -> Matcher:
    """A matcher from Alertmanager's text form: ``hazard="flood"``, ``level=~"orange|red"``, ``place!=x``
    (the value in double quotes, with ``\\"`` and ``\\\\`` escapes, or bare). ValueError names the problem."""
    if not isinstance(text, str):
        raise ValueError(f"a matcher must be a string like hazard=\"flood\", got {text!r}")
    m = _MATCHER_TEXT.match(text)
    if m is None:
        raise ValueError(f"cannot read matcher {text!r}: write label op \"value\", op one of {' '.join(OPERATORS)}")
    label, op, value = m.groups()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    elif '"' in value:
        raise ValueError(f"cannot read matcher {text!r}: unbalanced double quote")
    return Matcher.of(label, op, value)


def matches_all(matchers: tuple[Matcher, ...] | list[Matcher], labels: AlertLabels) -> bool:
    """Whether every matcher holds (an empty list holds for every alert)."""
    return all(m.matches(labels) for m in matchers)
