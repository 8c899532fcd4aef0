"""Sensor kinds, the quantities each measures, accepted SenML units and plausible ranges.

Values are converted to the canonical unit of their quantity (first unit listed) on decoding.
Units are SenML unit symbols (RFC 8428 section 12.1 and RFC 8798); ``1/h`` follows docs/contract/mqtt.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuantitySpec:
    """One measured quantity.

    Attributes
    ----------
    name : str
        SenML record name after the base name (``n``).
    unit : str
        Canonical unit of ``Batch.value``.
    factors : dict
        Accepted unit -> factor to the canonical unit (``""`` means the unit may be omitted).
    low, high : float
        Plausible range, in the canonical unit; values outside are ``out_of_range``.
    """

    name: str
    unit: str
    factors: dict[str, float]
    low: float
    high: float


QUANTITIES: dict[str, QuantitySpec] = {
    # people in the device's coverage area [person]
    "count": QuantitySpec("count", "count", {"count": 1.0, "": 1.0, "/": 1.0}, 0.0, 1_000_000.0),
    # rainfall rate [mm h-1]; 500 mm/h is above any recorded 1-min rate
    "rain": QuantitySpec("rain", "mm/h", {"mm/h": 1.0, "m/h": 1000.0, "m/s": 3.6e6}, 0.0, 500.0),
    # water over ground at the gauge [m]
    "depth": QuantitySpec("depth", "m", {"m": 1.0, "cm": 0.01, "mm": 0.001}, 0.0, 20.0),
    # spot speed at a loop detector [km h-1]
    "speed": QuantitySpec("speed", "km/h", {"km/h": 1.0, "m/s": 3.6}, 0.0, 300.0),
    # vehicle flow [vehicle h-1]
    "flow": QuantitySpec("flow", "1/h", {"1/h": 1.0, "1/min": 60.0, "1/s": 3600.0}, 0.0, 20_000.0),
    # detector occupancy [%]
    "occ": QuantitySpec("occ", "%", {"%": 1.0, "/": 100.0}, 0.0, 100.0),
    # river or tide level at a gauge [m above the Wusong datum, 吴淞高程]: what Shanghai's tide gauges publish
    # (docs/contract/mqtt.md). Huangpu Park's highest recorded tide is about 5.7 m (Typhoon Winnie, 1997) and low
    # water is above 0 m [mem: Shanghai water authority tide tables]; -2 ... 12 m leaves room for any gauge on
    # the Huangpu and its creeks and refuses a depth or a reading on another datum sent in error [design]
    "level": QuantitySpec("level", "m", {"m": 1.0, "cm": 0.01}, -2.0, 12.0),
    # a pump station's outfall discharge into the river [m3 s-1]; SenML "m3/s" and "l/s" (RFC 8428 12.1; "L/s"
    # accepted too). The largest storm pump stations of central Shanghai pump some tens of m3/s [mem];
    # 200 m3/s is above any of them [design]
    "discharge": QuantitySpec("discharge", "m3/s", {"m3/s": 1.0, "l/s": 0.001, "L/s": 0.001}, 0.0, 200.0),
}

SENSOR_KINDS: dict[str, tuple[str, ...]] = {
    "crowd": ("count",),
    "rain": ("rain",),
    "water": ("depth",),
    "traffic": ("speed", "flow", "occ"),
    "level": ("level",),
    "pump": ("discharge",),
}
"""Sensor kind (the ``{kind}`` of ``city/sensors/{kind}/{device}``) -> quantities it may send."""

POSITION_KINDS = ("vehicle", "unit")
"""Registry kinds that publish positions on ``city/beidou/{device}``."""

DEVICE_KINDS = (*SENSOR_KINDS, *POSITION_KINDS)

DATUMS = ("CGCS2000", "WGS84", "GCJ02")
"""Datums a JSON position may declare in ``crs`` (CGCS2000 is the default)."""

ACK_STATUSES = ("ack", "on_scene", "resolved")

TASK_STATUSES = ("accepted", "en_route", "on_scene", "disposed", "declined")
"""A field unit's answers to a task, on ``city/units/{unit}/tasks/status``; each becomes a record of quantity
``task_{status}`` (``ingest.decoders.task``)."""
