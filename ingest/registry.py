"""Device registry: a GeoJSON FeatureCollection of sensors, vehicles and field units.

Feature properties: ``id`` (str, no ``/ + #``), ``kind`` (``crowd``, ``rain``, ``water``, ``traffic``,
``vehicle``, ``unit``), ``quantities`` (list of str; sensors: those of their kind, see
``ingest.decoders.units.SENSOR_KINDS``; vehicles and units: ``["position"]``), ``name`` (str), and for
units ``unit_type`` (``police``, ``fire``, ``medical``). Geometry in WGS84 lon/lat: a Point for point
devices; a crowd counter's Polygon is its coverage area (``coverage: "polygon"``); vehicles and units
may have a null geometry (home position otherwise). Crowd counters may state ``walkable_area_m2`` (a number
> 0: the walkable area its count covers [m2], which then divides the count instead of the twin's walkable
layer under the polygon) and ``count_rel_error`` (a number in [0, 1): the relative standard error of its
count [1]); docs/science/crowd.md 1.4.

Parsing (``registry_from_geojson``) is separate from file I/O (``load_registry``); all problems are
collected and raised once in a ``RegistryError``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from ingest.decoders.units import POSITION_KINDS, SENSOR_KINDS

DEVICE_KINDS = (*SENSOR_KINDS, *POSITION_KINDS)
UNIT_TYPES = ("police", "fire", "medical")
_FORBIDDEN = set("/+#") | {" "}


class RegistryError(ValueError):
    """The registry file is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} registry problem(s): " + "; ".join(problems[:20]))
        self.problems = problems


@dataclass(frozen=True)
class Device:
    """One registered device."""

    id: str
    kind: str
    quantities: tuple[str, ...]
    name: str = ""
    unit_type: str = ""
    geometry: dict[str, Any] | None = None
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Registry:
    """Registered devices by id."""

    devices: dict[str, Device]

    def __contains__(self, device_id: object) -> bool:
        return device_id in self.devices

    def __len__(self) -> int:
        return len(self.devices)

    def get(self, device_id: str) -> Device | None:
        """The device, or None if unknown."""
        return self.devices.get(device_id)

    @property
    def ids(self) -> tuple[str, ...]:
        """Device ids in file order."""
        return tuple(self.devices)

    def of_kind(self, kind: str) -> list[Device]:
        """Devices of one kind, in file order."""
        return [d for d in self.devices.values() if d.kind == kind]


def expected_quantities(kind: str) -> tuple[str, ...]:
    """Quantities a device of ``kind`` may report."""
    return SENSOR_KINDS.get(kind, ("position",))


def _check_position(pos: Any) -> bool:
    return (
        isinstance(pos, list | tuple)
        and len(pos) >= 2
        and all(isinstance(x, int | float) for x in pos[:2])
        and -180 <= pos[0] <= 180
        and -90 <= pos[1] <= 90
    )


def _check_geometry(geom: Any, kind: str, where: str, problems: list[str]) -> None:
    if geom is None:
        if kind not in POSITION_KINDS:
            problems.append(f"{where}: a {kind} sensor needs a geometry")
        return
    gtype = geom.get("type") if isinstance(geom, dict) else None
    if gtype == "Point":
        if not _check_position(geom.get("coordinates")):
            problems.append(f"{where}: bad Point coordinates")
    elif gtype == "Polygon":
        rings = geom.get("coordinates")
        if not (
            isinstance(rings, list) and rings and all(isinstance(r, list) and len(r) >= 4 for r in rings)
        ):
            problems.append(f"{where}: a Polygon needs closed rings of >= 4 positions")
        elif not all(_check_position(p) for r in rings for p in r) or any(r[0] != r[-1] for r in rings):
            problems.append(f"{where}: Polygon positions out of range or ring not closed")
        elif kind != "crowd":
            problems.append(f"{where}: only crowd counters have a coverage Polygon")
    else:
        problems.append(f"{where}: geometry type {gtype!r} not supported (Point or Polygon)")


CROWD_NUMBERS = {"walkable_area_m2": ("> 0", lambda v: v > 0), "count_rel_error": ("in [0, 1)", lambda v: 0 <= v < 1)}
"""Optional numeric properties of a crowd counter: what they must be, and the test."""


def _check_crowd_numbers(props: dict, kind: str, where: str, problems: list[str]) -> None:
    for name, (rule, ok) in CROWD_NUMBERS.items():
        if name not in props:
            continue
        value = props[name]
        if kind != "crowd":
            problems.append(f"{where}: only crowd counters have {name}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or not ok(value):
            problems.append(f"{where}: {name} must be a number {rule} (got {value!r})")


def _parse_feature(i: int, feat: Any, problems: list[str]) -> Device | None:
    where = f"feature {i}"
    if not isinstance(feat, dict) or feat.get("type") != "Feature":
        problems.append(f"{where}: not a GeoJSON Feature")
        return None
    props = feat.get("properties") or {}
    dev_id, kind = props.get("id"), props.get("kind")
    if not isinstance(dev_id, str) or not dev_id or _FORBIDDEN & set(dev_id):
        problems.append(f"{where}: id {dev_id!r} must be a non-empty string without '/', '+', '#', ' '")
        return None
    where = f"device {dev_id}"
    if kind not in DEVICE_KINDS:
        problems.append(f"{where}: kind {kind!r} not one of {DEVICE_KINDS}")
        return None
    quantities = props.get("quantities", list(expected_quantities(kind)))
    if (
        not isinstance(quantities, list)
        or not quantities
        or not set(quantities) <= set(expected_quantities(kind))
    ):
        problems.append(f"{where}: quantities {quantities!r} not a subset of {expected_quantities(kind)}")
    unit_type = props.get("unit_type", "")
    if kind == "unit" and unit_type not in UNIT_TYPES:
        problems.append(f"{where}: unit_type {unit_type!r} not one of {UNIT_TYPES}")
    _check_geometry(feat.get("geometry"), kind, where, problems)
    _check_crowd_numbers(props, kind, where, problems)
    return Device(
        dev_id,
        kind,
        tuple(quantities) if isinstance(quantities, list) else (),
        str(props.get("name", "")),
        str(unit_type),
        feat.get("geometry"),
        dict(props),
    )


def registry_from_geojson(doc: Any) -> Registry:
    """Build a ``Registry`` from a parsed GeoJSON FeatureCollection; raises ``RegistryError``."""
    problems: list[str] = []
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise RegistryError(["not a GeoJSON FeatureCollection"])
    devices: dict[str, Device] = {}
    for i, feat in enumerate(doc.get("features") or []):
        dev = _parse_feature(i, feat, problems)
        if dev is None:
            continue
        if dev.id in devices:
            problems.append(f"device {dev.id}: duplicate id")
        devices[dev.id] = dev
    if problems:
        raise RegistryError(problems)
    return Registry(devices)


def load_registry(path: str | os.PathLike) -> Registry:
    """Read and check a registry GeoJSON file; raises ``RegistryError`` or ``OSError``."""
    with open(path, encoding="utf-8") as f:
        try:
            doc = json.load(f)
        except ValueError as exc:
            raise RegistryError([f"{path}: invalid JSON: {exc}"]) from exc
    return registry_from_geojson(doc)
