"""The river-level (``level``) and pump-discharge (``pump``) sensor kinds: decoding, units, ranges, routing and the
registry (docs/contract/mqtt.md 3.1)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.decoders import decode_senml
from ingest.decoders.units import QUANTITIES, SENSOR_KINDS
from ingest.registry import RegistryError, registry_from_geojson
from ingest.rejection import Reason, Rejection
from ingest.routing import route
from twin.district.sources import data_dir

NOW = 1_780_000_000.0
LEVEL = "city/sensors/level/level-01"
PUMP = "city/sensors/pump/pump-01"
UNIT_FACTOR = {"level": {"m": 1.0, "cm": 0.01}, "discharge": {"m3/s": 1.0, "l/s": 0.001, "L/s": 0.001}}
"""The accepted units, written out by hand from docs/contract/mqtt.md (not read from the code)."""


def _pack(device: str, quantity: str, value, unit: str | None, t=None) -> bytes:
    rec = {"bn": f"urn:dev:{device}:", "n": quantity, "v": value}
    if unit is not None:
        rec["u"] = unit
    if t is not None:
        rec["bt"] = t
    return json.dumps([rec]).encode()


def test_the_kinds_and_their_canonical_units():
    assert SENSOR_KINDS["level"] == ("level",) and SENSOR_KINDS["pump"] == ("discharge",)
    assert (QUANTITIES["level"].unit, QUANTITIES["level"].low, QUANTITIES["level"].high) == ("m", -2.0, 12.0)
    assert (QUANTITIES["discharge"].unit, QUANTITIES["discharge"].low) == ("m3/s", 0.0)


def test_a_huangpu_park_level_in_metres_and_in_centimetres():
    m = decode_senml(_pack("level-01", "level", 4.62, "m", NOW), topic=LEVEL, received_at=NOW)
    cm = decode_senml(_pack("level-01", "level", 462, "cm", NOW), topic=LEVEL, received_at=NOW)
    for b in (m, cm):
        assert isinstance(b, Batch) and b.quantity.tolist() == ["level"] and b.device.tolist() == ["level-01"]
        assert b.value[0] == pytest.approx(4.62) and b.t[0] == NOW


def test_a_pump_discharge_in_cubic_metres_and_litres_per_second():
    for value, unit in ((12.5, "m3/s"), (12500, "l/s"), (12500, "L/s")):
        b = decode_senml(_pack("pump-01", "discharge", value, unit, NOW), topic=PUMP, received_at=NOW)
        assert isinstance(b, Batch) and b.quantity.tolist() == ["discharge"]
        assert b.value[0] == pytest.approx(12.5)


@pytest.mark.parametrize(("topic", "device", "quantity", "value", "unit", "reason"), [
    (LEVEL, "level-01", "level", 13.0, "m", Reason.OUT_OF_RANGE),  # above any tide: a depth or another datum
    (LEVEL, "level-01", "level", -250, "cm", Reason.OUT_OF_RANGE),
    (LEVEL, "level-01", "level", 4.6, None, Reason.BAD_UNIT),  # metres or centimetres: the unit is required
    (LEVEL, "level-01", "level", 4.6, "ft", Reason.BAD_UNIT),
    (LEVEL, "level-01", "discharge", 4.6, "m3/s", Reason.BAD_SCHEMA),  # not a quantity of the kind
    (PUMP, "pump-01", "discharge", -0.5, "m3/s", Reason.OUT_OF_RANGE),
    (PUMP, "pump-01", "discharge", 250.0, "m3/s", Reason.OUT_OF_RANGE),
    (PUMP, "pump-01", "discharge", 3.0, "m3/h", Reason.BAD_UNIT),
    (PUMP, "pump-01", "level", 3.0, "m", Reason.BAD_SCHEMA),
    (PUMP, "pump-02", "discharge", 3.0, "m3/s", Reason.IDENTITY_MISMATCH),  # not the topic's device
])
def test_hostile_values_are_refused_with_a_reason(topic, device, quantity, value, unit, reason):
    out = decode_senml(_pack(device, quantity, value, unit, NOW), topic=topic, received_at=NOW)
    assert isinstance(out, Rejection) and out.reason == reason and out.detail


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["level", "pump"]), data=st.data())
def test_valid_records_decode_to_the_canonical_value(kind, data):
    quantity = SENSOR_KINDS[kind][0]
    unit = data.draw(st.sampled_from(sorted(UNIT_FACTOR[quantity])))
    factor = UNIT_FACTOR[quantity][unit]
    low, high = (-2.0, 12.0) if kind == "level" else (0.0, 200.0)
    canonical = data.draw(st.floats(low, high, allow_nan=False))
    value = canonical / factor
    n = data.draw(st.integers(1, 5))
    recs = [{"bn": f"urn:dev:{kind}-01:", "bt": NOW, "bu": unit, "n": quantity, "v": value}]
    recs += [{"n": quantity, "t": float(i), "v": value} for i in range(1, n)]
    out = decode_senml(json.dumps(recs).encode(), topic=f"city/sensors/{kind}/{kind}-01", received_at=NOW)
    if not low <= value * factor <= high:  # the value sent, times the factor, rounded just outside the range
        assert isinstance(out, Rejection) and out.reason == Reason.OUT_OF_RANGE
        return
    assert isinstance(out, Batch), out
    assert out.quantity.tolist() == [quantity] * n
    assert out.value.tolist() == pytest.approx([canonical] * n, rel=1e-12, abs=1e-12)
    assert out.t.tolist() == [NOW + i for i in range(n)]


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(["level", "pump"]),
       payload=st.one_of(st.binary(max_size=200),
                         st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=8)
                                      | st.integers(-10**20, 10**20),
                                      lambda c: st.lists(c, max_size=4)
                                      | st.dictionaries(st.sampled_from(["bn", "n", "v", "u", "t", "bt", "bu", "vs",
                                                                         "s", "bver"]), c, max_size=6),
                                      max_leaves=12).map(lambda d: json.dumps(d).encode())))
def test_garbage_is_a_rejection_with_a_reason_never_an_exception(kind, payload):
    out = decode_senml(payload, topic=f"city/sensors/{kind}/{kind}-01", received_at=NOW)
    if isinstance(out, Batch):  # garbage that happens to be a valid pack: then it is one, in range
        spec = QUANTITIES[SENSOR_KINDS[kind][0]]
        assert all(spec.low <= v <= spec.high and math.isfinite(v) for v in out.value.tolist())
        return
    assert isinstance(out, Rejection) and out.reason in set(Reason) and out.detail


def test_the_topics_route_to_the_senml_decoder():
    assert route(LEVEL).family == "sensor" and route(LEVEL).sensor_kind == "level"
    assert route(PUMP).device == "pump-01" and route(PUMP).sensor_kind == "pump"
    assert route("city/sensors/tide/level-01") is None


def _feature(props: dict, geometry: dict) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": props}


POINT = {"type": "Point", "coordinates": [121.487, 31.2436]}
LINE = {"type": "LineString", "coordinates": [[121.4864, 31.2398], [121.4865, 31.2404]]}


def test_the_registry_takes_a_tide_gauge_with_a_datum_offset_and_a_pump_with_a_spread_outfall():
    reg = registry_from_geojson({"type": "FeatureCollection", "features": [
        _feature({"id": "level-09", "kind": "level", "datum_offset_m": 1.63}, POINT),
        _feature({"id": "pump-09", "kind": "pump", "quantities": ["discharge"]}, LINE)]})
    assert reg.get("level-09").quantities == ("level",) and reg.get("level-09").properties["datum_offset_m"] == 1.63
    assert reg.get("pump-09").geometry["type"] == "LineString"


@pytest.mark.parametrize(("feature", "problem"), [
    (_feature({"id": "w", "kind": "water"}, LINE), "only pump stations have a LineString"),
    (_feature({"id": "p", "kind": "pump"}, {"type": "LineString", "coordinates": [[121.4, 31.2]]}), ">= 2 positions"),
    (_feature({"id": "l", "kind": "level", "datum_offset_m": "1.6"}, POINT), "datum_offset_m must be a number"),
    (_feature({"id": "l", "kind": "level", "datum_offset_m": 99.0}, POINT), "datum_offset_m must be a number"),
    (_feature({"id": "r", "kind": "rain", "datum_offset_m": 1.0}, POINT), "only level gauges have a datum_offset_m"),
    (_feature({"id": "p", "kind": "pump", "quantities": ["level"]}, POINT), "not a subset of ('discharge',)"),
])
def test_the_registry_refuses_bad_level_and_pump_entries(feature, problem):
    with pytest.raises(RegistryError) as err:
        registry_from_geojson({"type": "FeatureCollection", "features": [feature]})
    assert any(problem in p for p in err.value.problems), err.value.problems


def test_the_bund_registry_has_the_huangpu_park_gauge_and_a_pump_station():
    from ingest.registry import load_registry

    reg = load_registry(data_dir() / "bund" / "registry.geojson")
    gauge = reg.get("level-01")
    assert gauge.kind == "level" and "黄浦公园" in gauge.name and "Huangpu Park" in gauge.name
    assert [d.kind for d in reg.of_kind("pump")] and all(d.geometry["type"] in ("Point", "LineString")
                                                        for d in reg.of_kind("pump"))
