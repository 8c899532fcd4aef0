"""Device registry: sensors, vehicles and field units, from a GeoJSON FeatureCollection or a CSV table.

Feature properties: ``id`` (str of at most 200 printable characters, no ``/ + #`` or space), ``kind`` (``crowd``,
``rain``, ``water``, ``traffic``, ``level``, ``pump``, ``vehicle``, ``unit``), ``quantities`` (list of str; sensors:
those of their kind, see ``ingest.decoders.units.SENSOR_KINDS``; vehicles and units: ``["position"]``), ``name``
(str), and for units ``unit_type`` (``police``, ``fire``, ``medical``). Geometry in WGS84 lon/lat: a Point for point
devices; a crowd counter's Polygon is its coverage area (``coverage: "polygon"``); vehicles and units may have a
null geometry (home position otherwise); a pump station's geometry is its outfall, a Point, or a LineString for an
outfall spread along the bank. A river-level gauge (``level``) may state ``datum_offset_m``, added to its readings
to give Wusong-datum metres (`DATUM_OFFSET`). Crowd counters may state ``walkable_area_m2`` (a number > 0: the
walkable area its count covers [m2], which then divides the count instead of the twin's walkable layer under the
polygon) and ``count_rel_error`` (a number in [0, 1): the relative standard error of its count [1]);
docs/science/crowd.md 1.4. Vehicles and units with a JT/T 808 terminal state ``jt808_phone``: the terminal phone
number it reports with (text of 1 to 20 digits; unique in the registry once leading zeros are stripped,
`terminal_phone`; docs/guides/jt808.md).

CSV (`devices_from_csv`, docs/guides/devices.md): a header row, then one device a row. Columns ``id``, ``kind``,
``quantities`` (``;``-separated; empty: the kind's quantities), ``name``, ``unit_type``, ``lon``, ``lat`` [degree,
WGS84; both empty: no geometry]; an optional ``geometry`` column holds a GeoJSON geometry as JSON (a crowd
counter's Polygon) and wins over lon/lat; every other column is a property (empty: left out; a finite number:
a number; otherwise text).

Parsing (``registry_from_geojson``, ``device_from_feature``, ``devices_from_csv``) is separate from file I/O
(``load_registry``); all problems are collected and raised once in a ``RegistryError``.

A registry changes at run time (docs/guides/devices.md): `Registry.apply` takes new versions of devices (added,
updated or retired) from the registry database's change log (`ingest.registry_db`). Look-ups stay one dict
look-up: ``devices`` holds the active devices only; ``retired`` those taken out of service (their messages are
refused as ``retired_device``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ingest.decoders.units import POSITION_KINDS, SENSOR_KINDS
from ingest.jt808.header import phone_key

DEVICE_KINDS = (*SENSOR_KINDS, *POSITION_KINDS)
UNIT_TYPES = ("police", "fire", "medical")
STATUSES = ("active", "retired")
"""A device is ``active`` (its messages are admitted) or ``retired`` (refused as ``retired_device``; kept, with
its history)."""
CSV_COLUMNS = ("id", "kind", "quantities", "name", "unit_type", "lon", "lat")
"""The columns of a registry CSV (all but ``id`` and ``kind`` may be empty); ``geometry`` and any other column are
optional."""
_FORBIDDEN = set("/+#") | {" "}
MAX_ID = 200
"""Longest device id [character] (an MQTT topic level; ids are keys of the registry database)."""
JT808_PHONE = "jt808_phone"
"""The property holding a vehicle's or unit's JT/T 808 terminal phone number (docs/guides/jt808.md)."""
TEXT_PROPERTIES = frozenset({JT808_PHONE})
"""CSV columns kept as text even when they look like numbers (a phone number is a code)."""


class RegistryError(ValueError):
    """The registry file is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} registry problem(s): " + "; ".join(problems[:20]))
        self.problems = problems


@dataclass(frozen=True)
class Device:
    """One registered device.

    ``status``, ``version`` and ``added`` come from the registry database (`ingest.registry_db`): the device is
    ``active`` or ``retired``; ``version`` is the registry version of its last change (0: read from a file);
    ``added`` orders devices by when they were first registered (the version of that first change, or the
    feature's place in its file)."""

    id: str
    kind: str
    quantities: tuple[str, ...]
    name: str = ""
    unit_type: str = ""
    geometry: dict[str, Any] | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    status: str = "active"
    version: int = 0
    added: int = 0

    @property
    def active(self) -> bool:
        """Not retired: its messages are admitted."""
        return self.status == "active"

    def feature(self) -> dict[str, Any]:
        """The device as a GeoJSON Feature (lon/lat), its registry properties as given."""
        return {"type": "Feature", "geometry": self.geometry, "properties": dict(self.properties)}


@dataclass
class Registry:
    """Registered devices by id: the active ones in ``devices`` (the hot path's one look-up), the retired ones in
    ``retired``; ``version`` is the registry version they are at (0: read from a file)."""

    devices: dict[str, Device]
    retired: dict[str, Device] = field(default_factory=dict)
    version: int = 0

    def __contains__(self, device_id: object) -> bool:
        return device_id in self.devices

    def __len__(self) -> int:
        return len(self.devices)

    def get(self, device_id: str) -> Device | None:
        """The active device, or None if unknown or retired."""
        return self.devices.get(device_id)

    def find(self, device_id: str) -> Device | None:
        """The device, active or retired, or None if unknown."""
        return self.devices.get(device_id) or self.retired.get(device_id)

    @property
    def ids(self) -> tuple[str, ...]:
        """Active device ids in file order."""
        return tuple(self.devices)

    def of_kind(self, kind: str) -> list[Device]:
        """Active devices of one kind, in file order."""
        return [d for d in self.devices.values() if d.kind == kind]

    def known(self, kind: str | None = None) -> list[Device]:
        """Active and retired devices (of one kind, or all), in the order they were first registered (``added``):
        the rows of the live twin's per-sensor tables, which keep a retired device's row."""
        devices = [*self.devices.values(), *self.retired.values()]
        if kind is not None:
            devices = [d for d in devices if d.kind == kind]
        return sorted(devices, key=lambda d: d.added)  # stable: devices of one file keep the file's order

    def apply(self, changes: Iterable[Device], version: int) -> list[tuple[Device | None, Device]]:
        """Take new versions of devices (``status`` saying active or retired), in order; the registry is then at
        ``version``. Returns (before, after) per change, ``before`` None for a device new to the registry."""
        out = []
        for new in changes:
            old = self.find(new.id)
            if new.active:
                self.retired.pop(new.id, None)
                self.devices[new.id] = new
            else:
                self.devices.pop(new.id, None)
                self.retired[new.id] = new
            out.append((old, new))
        self.version = max(self.version, int(version))
        return out


def expected_quantities(kind: str) -> tuple[str, ...]:
    """Quantities a device of ``kind`` may report."""
    return SENSOR_KINDS.get(kind, ("position",))


def _number(x: Any) -> bool:
    kind = type(x)
    return kind is float or kind is int or (kind is not bool and isinstance(x, int | float))


def _check_position(pos: Any) -> bool:
    """A [lon, lat, ...] position within the WGS84 ranges (runs for every device of an import: type tests first)."""
    if not (type(pos) is list or isinstance(pos, list | tuple)) or len(pos) < 2:
        return False
    lon, lat = pos[0], pos[1]
    return _number(lon) and _number(lat) and -180 <= lon <= 180 and -90 <= lat <= 90


def _check_geometry(geom: Any, kind: str, where: str, problems: list[str]) -> None:
    if geom is None:
        if kind not in POSITION_KINDS:
            problems.append(f"{where}: a {kind} sensor needs a geometry")
        return
    gtype = geom.get("type") if isinstance(geom, dict) else None
    if gtype == "Point":
        if not _check_position(geom.get("coordinates")):
            problems.append(f"{where}: bad Point coordinates")
    elif gtype == "LineString":
        line = geom.get("coordinates")
        if kind != "pump":
            problems.append(f"{where}: only pump stations have a LineString (a spread outfall)")
        elif not (isinstance(line, list) and len(line) >= 2 and all(_check_position(p) for p in line)):
            problems.append(f"{where}: a LineString needs >= 2 positions within the WGS84 ranges")
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
        problems.append(f"{where}: geometry type {str(gtype)[:40]!r} not supported (Point, Polygon, LineString)")


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
            problems.append(f"{where}: {name} must be a number {rule} (got {str(value)[:40]!r})")


DATUM_OFFSET = "datum_offset_m"
"""The property of a level gauge that does not read Wusong-datum metres: added to its readings to give them (a gauge
on its own zero: the Wusong height of that zero) [m]; docs/contract/mqtt.md."""
DATUM_OFFSET_LIMIT_M = 20.0
"""Largest datum offset taken [m] (Shanghai's datums differ by about 2 m [mem]; a larger one is a mistake)."""


def _check_datum_offset(props: dict, kind: str, where: str, problems: list[str]) -> None:
    if DATUM_OFFSET not in props:
        return
    value = props[DATUM_OFFSET]
    if kind != "level":
        problems.append(f"{where}: only level gauges have a {DATUM_OFFSET}")
    elif (isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
          or abs(value) > DATUM_OFFSET_LIMIT_M):
        problems.append(f"{where}: {DATUM_OFFSET} must be a number of metres within +-{DATUM_OFFSET_LIMIT_M:g} "
                        f"(got {str(value)[:40]!r})")


def terminal_phone(device: Device) -> str | None:
    """The device's JT/T 808 terminal phone number as compared (`phone_key`), or None when it has none."""
    phone = device.properties.get(JT808_PHONE)
    return phone_key(phone) if isinstance(phone, str) else None


def _check_terminal_phone(props: dict, kind: str, where: str, problems: list[str]) -> None:
    if JT808_PHONE not in props:
        return
    phone = props[JT808_PHONE]
    if kind not in POSITION_KINDS:
        problems.append(f"{where}: only vehicles and units have a {JT808_PHONE}")
    elif not (isinstance(phone, str) and 1 <= len(phone) <= 20 and phone.isascii() and phone.isdigit()):
        problems.append(f"{where}: {JT808_PHONE} must be text of 1 to 20 digits (got {str(phone)[:40]!r})")


def _checked_id(dev_id: Any, where: str, problems: list[str]) -> str | None:
    if (not isinstance(dev_id, str) or not dev_id or len(dev_id) > MAX_ID or _FORBIDDEN & set(dev_id)
            or not dev_id.isprintable()):
        problems.append(f"{where}: id {str(dev_id)[:80]!r} must be a non-empty string of at most {MAX_ID} printable "
                        "characters without '/', '+', '#', ' '")
        return None
    return dev_id


def _plain(value: Any) -> bool:
    """Plain JSON: no NaN or infinite number anywhere inside (JSON has none; Python's parser lets them in)."""
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    if kind is dict:
        return _plain_members(value, ())
    if kind is list or kind is tuple:
        return all(_plain(v) for v in value)
    return True


def _plain_members(members: dict, skip: tuple[str, ...]) -> bool:
    """`_plain` of an object's members (those named in ``skip`` left out: checked elsewhere); strings, whole numbers
    and null, the common case, cost one type test."""
    for name, v in members.items():
        kind = type(v)
        if kind is str or kind is int or kind is bool or v is None or name in skip:
            continue
        if not _plain(v):
            return False
    return True


def device_from_feature(feat: Any, where: str, problems: list[str], added: int = 0) -> Device | None:
    """The ``Device`` of one GeoJSON Feature, checked; every problem found is appended to ``problems`` (prefixed
    with ``where``, e.g. ``feature 3``, then with the device's id once known). None if the feature has no usable
    id or kind; otherwise a Device (its ``added`` given), valid only when no problem was added."""
    if not isinstance(feat, dict) or feat.get("type") != "Feature":
        problems.append(f"{where}: not a GeoJSON Feature")
        return None
    props = feat.get("properties") or {}
    if not isinstance(props, dict):
        problems.append(f"{where}: properties must be a JSON object")
        return None
    dev_id = _checked_id(props.get("id"), where, problems)
    if dev_id is None:
        return None
    where = f"device {dev_id}"
    kind = props.get("kind")
    if kind not in DEVICE_KINDS:
        problems.append(f"{where}: kind {str(kind)[:40]!r} not one of {DEVICE_KINDS}")
        return None
    quantities = props.get("quantities", list(expected_quantities(kind)))
    if (
        not isinstance(quantities, list)
        or not quantities
        or not all(isinstance(q, str) for q in quantities)
        or not set(quantities) <= set(expected_quantities(kind))
    ):
        problems.append(f"{where}: quantities {str(quantities)[:80]!r} not a subset of {expected_quantities(kind)}")
        quantities = []
    unit_type = props.get("unit_type", "")
    if kind == "unit" and unit_type not in UNIT_TYPES:
        problems.append(f"{where}: unit_type {str(unit_type)[:40]!r} not one of {UNIT_TYPES}")
    name = props.get("name", "")
    if not isinstance(name, str):
        problems.append(f"{where}: name must be text")
    _check_geometry(feat.get("geometry"), kind, where, problems)
    _check_crowd_numbers(props, kind, where, problems)
    _check_terminal_phone(props, kind, where, problems)
    _check_datum_offset(props, kind, where, problems)
    geometry = feat.get("geometry")
    if not (_plain_members(props, ()) and (type(geometry) is not dict or _plain_members(geometry, ("coordinates",)))):
        problems.append(f"{where}: NaN or infinite numbers are not JSON")  # coordinates: range-checked above
    return Device(dev_id, kind, tuple(quantities), str(name), str(unit_type or ""), geometry, dict(props),
                  added=added)


def registry_from_geojson(doc: Any) -> Registry:
    """Build a ``Registry`` from a parsed GeoJSON FeatureCollection; raises ``RegistryError``."""
    devices, problems = devices_from_geojson(doc)
    if problems:
        raise RegistryError(problems)
    return Registry({d.id: d for d in devices})


def devices_from_geojson(doc: Any) -> tuple[list[Device], list[str]]:
    """The valid devices of a parsed GeoJSON FeatureCollection, in file order (``added`` = place in the file), and
    every problem found (invalid features and repeated ids: the later ones are left out)."""
    problems: list[str] = []
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        return [], ["not a GeoJSON FeatureCollection"]
    features = doc.get("features")
    if not isinstance(features, list):
        return [], ["a FeatureCollection needs a list of features"]
    return _unique(((f"feature {i}", feat) for i, feat in enumerate(features)), device_from_feature, problems)


def _unique(items: Iterable[tuple[str, Any]], parse, problems: list[str]) -> tuple[list[Device], list[str]]:
    """Parse each (where, item); keep the valid devices, first of each id; ``added`` is the item's place."""
    devices: list[Device] = []
    seen: set[str] = set()
    phones: dict[str, str] = {}
    for i, (where, item) in enumerate(items):
        mine: list[str] = []
        dev = parse(item, where, mine, i)
        if dev is not None and dev.id in seen:
            mine.append(f"device {dev.id}: duplicate id ({where})")
        phone = terminal_phone(dev) if dev is not None and not mine else None
        if phone is not None and phone in phones:
            mine.append(f"device {dev.id}: {JT808_PHONE} {phone} is already device {phones[phone]}'s ({where})")
        if mine:
            problems += mine
            continue
        if dev is not None:
            seen.add(dev.id)
            devices.append(dev)
            if phone is not None:
                phones[phone] = dev.id
    return devices, problems


_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
"""A number as a CSV cell writes it (no leading zeros: ``007`` is a code, kept as text)."""


def _csv_value(text: str) -> Any:
    """An extra CSV column's value: a number if it is written as one (``12``, ``-0.5``, ``1e3``; `_NUMBER`), else the
    text."""
    if not _NUMBER.fullmatch(text):
        return text
    if text.lstrip("-").isdigit():
        return int(text)
    value = float(text)
    return value if math.isfinite(value) else text


def _csv_geometry(row: dict[str, str], where: str, problems: list[str]) -> dict | None:
    text = (row.get("geometry") or "").strip()
    if text:
        try:
            return json.loads(text)
        except ValueError:
            problems.append(f"{where}: geometry is not JSON")
            return None
    lon, lat = (row.get("lon") or "").strip(), (row.get("lat") or "").strip()
    if not lon and not lat:
        return None
    try:
        return {"type": "Point", "coordinates": [float(lon), float(lat)]}
    except ValueError:
        problems.append(f"{where}: lon {lon[:20]!r} and lat {lat[:20]!r} must be numbers (degrees, WGS84)")
        return {"type": "Point", "coordinates": None}


def feature_from_csv_row(row: dict[str, str | None], where: str, problems: list[str]) -> dict:
    """The GeoJSON Feature of one CSV row (see the module docstring); geometry problems appended."""
    props: dict[str, Any] = {"id": (row.get("id") or "").strip(), "kind": (row.get("kind") or "").strip()}
    quantities = [q.strip() for q in (row.get("quantities") or "").split(";") if q.strip()]
    if quantities:
        props["quantities"] = quantities
    props["name"] = (row.get("name") or "").strip()
    if (row.get("unit_type") or "").strip():
        props["unit_type"] = row["unit_type"].strip()
    for column, text in row.items():
        if column is None:  # more cells than columns: csv puts them under None
            problems.append(f"{where}: more cells than the header has columns")
            continue
        if column in CSV_COLUMNS or column == "geometry" or text is None or not text.strip():
            continue
        props[column] = text.strip() if column in TEXT_PROPERTIES else _csv_value(text.strip())
    return {"type": "Feature", "geometry": _csv_geometry(row, f"{where} ({props['id'][:80]})", problems),
            "properties": props}


def _device_from_csv_row(row: dict, where: str, problems: list[str], added: int = 0) -> Device | None:
    feature = feature_from_csv_row(row, where, problems)
    return device_from_feature(feature, where, problems, added)


def devices_from_csv(lines: Iterable[str]) -> tuple[list[Device], list[str]]:
    """The valid devices of a registry CSV (lines of text, the header first), in file order, and every problem
    found, each naming its line (the header is line 1)."""
    reader = csv.DictReader(iter(lines))
    header = reader.fieldnames or []
    missing = [c for c in ("id", "kind") if c not in header]
    if missing:
        return [], [f"line 1: the header has no column {', '.join(missing)} (columns: {', '.join(CSV_COLUMNS)})"]
    rows = ((f"line {reader.line_num}", row) for row in reader)
    return _unique(rows, _device_from_csv_row, [])


def read_devices(path: str | os.PathLike) -> tuple[list[Device], list[str]]:
    """The devices and problems of a registry file: CSV when its name ends in ``.csv``, else GeoJSON. Raises
    ``OSError`` when it cannot be read."""
    if str(path).lower().endswith(".csv"):
        with open(path, encoding="utf-8-sig", newline="") as f:
            return devices_from_csv(f)
    with open(path, encoding="utf-8") as f:
        try:
            doc = json.load(f)
        except ValueError as exc:
            return [], [f"{path}: invalid JSON: {exc}"]
    return devices_from_geojson(doc)


def load_registry(path: str | os.PathLike) -> Registry:
    """Read and check a registry GeoJSON (or CSV) file; raises ``RegistryError`` or ``OSError``."""
    devices, problems = read_devices(path)
    if problems:
        raise RegistryError(problems)
    return Registry({d.id: d for d in devices})
