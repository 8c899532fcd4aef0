"""SenML decoding: RFC 8428 examples (expected values written by hand), project kinds, properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.decoders import decode_senml, encode_senml, resolve_pack
from ingest.decoders import senml as senml_mod
from ingest.rejection import Reason, Rejection
from tests.ingest.strategies import sensor_batches as sensor_batches_around

NOW = 1_700_000_000.0

# --- RFC 8428 section 5 examples -----------------------------------------------------------------

RFC_SINGLE = b'[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]'
RFC_TWO = (
    b'[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},{"n":"current","u":"A","v":1.2}]'
)
RFC_RELATIVE = b"""[
 {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},
 {"n":"current","t":-5,"v":1.2},
 {"n":"current","t":-4,"v":1.3},
 {"n":"current","t":-3,"v":1.4},
 {"n":"current","t":-2,"v":1.5},
 {"n":"current","t":-1,"v":1.6},
 {"n":"current","v":1.7}]"""
RFC_MULTI_TYPES = b"""[
 {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,"bu":"%RH","v":20},
 {"u":"lon","v":24.30621},
 {"u":"lat","v":60.07965},
 {"t":60,"v":20.3},
 {"u":"lon","t":60,"v":24.30622},
 {"u":"lat","t":60,"v":60.07965},
 {"t":120,"v":20.7},
 {"u":"lon","t":120,"v":24.30623},
 {"u":"lat","t":120,"v":60.07966},
 {"u":"%EL","t":150,"v":98},
 {"t":180,"v":21.2},
 {"u":"lon","t":180,"v":24.30628},
 {"u":"lat","t":180,"v":60.07967}]"""


def test_rfc_single_datapoint_time_is_now():
    (rec,) = resolve_pack(json.loads(RFC_SINGLE), NOW)
    assert rec == {"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1, "t": NOW}


def test_rfc_multiple_datapoints_base_name_concatenated():
    recs = resolve_pack(json.loads(RFC_TWO), NOW)
    assert recs == [
        {"n": "urn:dev:ow:10e2073a01080063:voltage", "u": "V", "v": 120.1, "t": NOW},
        {"n": "urn:dev:ow:10e2073a01080063:current", "u": "A", "v": 1.2, "t": NOW},
    ]


def test_rfc_relative_times_base_unit_and_version():
    recs = resolve_pack(json.loads(RFC_RELATIVE), NOW)
    assert [r["n"] for r in recs] == ["urn:dev:ow:10e2073a0108006:voltage"] + [
        "urn:dev:ow:10e2073a0108006:current"
    ] * 6
    assert [r["u"] for r in recs] == ["V"] + ["A"] * 6  # bu applies where u is absent
    assert [r["v"] for r in recs] == [120.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7]
    # bt 1276020076.001 s is absolute (>= 2**28); t -5..-1 are added to it
    expected_t = [
        1276020076.001,
        1276020071.001,
        1276020072.001,
        1276020073.001,
        1276020074.001,
        1276020075.001,
        1276020076.001,
    ]
    assert [r["t"] for r in recs] == pytest.approx(expected_t, abs=1e-6)


def test_rfc_multiple_data_types_name_is_base_name():
    recs = resolve_pack(json.loads(RFC_MULTI_TYPES), NOW)
    assert len(recs) == 13
    assert {r["n"] for r in recs} == {"urn:dev:ow:10e2073a01080063"}
    assert (recs[0]["u"], recs[0]["v"], recs[0]["t"]) == ("%RH", 20, 1320067464.0)
    assert (recs[1]["u"], recs[1]["v"]) == ("lon", 24.30621)
    assert (recs[2]["u"], recs[2]["v"]) == ("lat", 60.07965)
    assert (recs[3]["u"], recs[3]["v"], recs[3]["t"]) == ("%RH", 20.3, 1320067524.0)
    assert (recs[9]["u"], recs[9]["v"], recs[9]["t"]) == ("%EL", 98, 1320067614.0)
    assert (recs[12]["u"], recs[12]["v"], recs[12]["t"]) == ("lat", 60.07967, 1320067644.0)


def test_rfc_resolved_form_resolves_to_itself():
    resolved = resolve_pack(json.loads(RFC_MULTI_TYPES), NOW)
    again = resolve_pack(json.loads(json.dumps(resolved)), NOW + 999)
    assert again == resolved


@pytest.mark.parametrize(
    ("pack", "reason"),
    [
        (b'[{"bn":"urn:dev:x:","bver":11,"n":"count","v":1}]', Reason.BAD_SCHEMA),  # newer version
        (b'[{"bn":"urn:dev:x:","n":"count","v":1,"foo_":2}]', Reason.BAD_SCHEMA),  # must-understand
        (b'[{"bn":"urn:dev:x:","n":"count"}]', Reason.BAD_SCHEMA),  # no value
        (b'[{"bn":"urn:dev:x:","n":"count","v":1,"vs":"a"}]', Reason.BAD_SCHEMA),  # two values
        (b'[{"bn":"urn:dev:x:","n":"count","v":"1"}]', Reason.BAD_SCHEMA),  # string v
        (b'[{"bn":"-bad","n":"count","v":1}]', Reason.BAD_SCHEMA),  # name charset
        (b'{"bn":"urn:dev:x:"}', Reason.BAD_SCHEMA),  # not an array
        (b"[]", Reason.BAD_SCHEMA),
        (b'[{"n":', Reason.BAD_SYNTAX),
        (b'[{"bn":"urn:dev:x:","n":"count","v":NaN}]', Reason.BAD_SYNTAX),
    ],
)
def test_rfc_rules_enforced(pack, reason):
    r = decode_senml(pack, topic="city/sensors/crowd/x", received_at=NOW)
    assert isinstance(r, Rejection)
    assert r.reason is reason
    assert r.digest


def test_rfc_examples_are_not_city_sensors():
    r = decode_senml(RFC_TWO, topic="city/sensors/traffic/ow:10e2073a01080063", received_at=NOW)
    assert isinstance(r, Rejection) and r.reason is Reason.BAD_SCHEMA  # voltage is no traffic quantity
    r = decode_senml(RFC_TWO, topic="city/sensors/crowd/cc-01", received_at=NOW)
    assert isinstance(r, Rejection) and r.reason is Reason.IDENTITY_MISMATCH


# --- the project's kinds (docs/contract/mqtt.md) ----------------------------------------------


def test_crowd_count():
    b = decode_senml(
        b'[{"bn":"urn:dev:cc-01:","bt":1700000000,"n":"count","u":"count","v":412}]',
        topic="city/sensors/crowd/cc-01",
        received_at=NOW,
    )
    assert isinstance(b, Batch)
    assert list(b.records()) == [
        {
            "device": "cc-01",
            "t": 1.7e9,
            "quantity": "count",
            "value": 412.0,
            "lon": pytest.approx(math.nan, nan_ok=True),
            "lat": pytest.approx(math.nan, nan_ok=True),
            "speed_kmh": pytest.approx(math.nan, nan_ok=True),
            "course_deg": pytest.approx(math.nan, nan_ok=True),
            "hdop": pytest.approx(math.nan, nan_ok=True),
            "alt_m": pytest.approx(math.nan, nan_ok=True),
            "fix": -1,
            "datum": "",
            "ref": "",
            "note": "",
        }
    ]


def test_traffic_pack_relative_times_and_units():
    pack = [
        {"bn": "urn:dev:ld-03:", "bt": 1700000000, "n": "speed", "u": "km/h", "v": 38.5},
        {"n": "flow", "u": "1/h", "v": 1320},
        {"n": "occ", "u": "%", "v": 17},
        {"n": "speed", "u": "m/s", "t": 60, "v": 10},  # 36 km/h
        {"n": "flow", "u": "1/min", "t": 60, "v": 20},  # 1200 /h
        {"n": "occ", "u": "/", "t": 60, "v": 0.25},
    ]  # 25 %
    b = decode_senml(json.dumps(pack).encode(), topic="city/sensors/traffic/ld-03", received_at=NOW)
    assert isinstance(b, Batch)
    assert b.quantity.tolist() == ["speed", "flow", "occ"] * 2
    assert b.value.tolist() == pytest.approx([38.5, 1320, 17, 36, 1200, 25])
    assert b.t.tolist() == [1.7e9] * 3 + [1.7e9 + 60] * 3


def test_water_depth_in_cm_is_metres_and_relative_time_is_from_now():
    b = decode_senml(
        b'[{"bn":"urn:dev:wg-02:","n":"depth","u":"cm","v":12,"t":-30}]',
        topic="city/sensors/water/wg-02",
        received_at=NOW,
    )
    assert b.value.tolist() == [0.12]
    assert b.t.tolist() == [NOW - 30]


@pytest.mark.parametrize(
    ("pack", "reason", "field"),
    [
        (b'[{"bn":"urn:dev:rg-1:","n":"rain","u":"mm","v":3}]', Reason.BAD_UNIT, "u"),
        (b'[{"bn":"urn:dev:rg-1:","n":"rain","v":3}]', Reason.BAD_UNIT, "u"),  # unit required
        (b'[{"bn":"urn:dev:rg-1:","n":"rain","u":"mm/h","v":-1}]', Reason.OUT_OF_RANGE, "v"),
        (b'[{"bn":"urn:dev:rg-1:","n":"rain","u":"mm/h","v":1e400}]', Reason.OUT_OF_RANGE, "[0].v"),  # parses to inf
        (b'[{"bn":"urn:dev:rg-1:","n":"rain","u":"mm/h","v":1' + b"0" * 400 + b'}]', Reason.OUT_OF_RANGE, "[0].v"),
        (b'[{"bn":"urn:dev:rg-1:","n":"rain","u":"mm/h","v":NaN}]', Reason.BAD_SYNTAX, "payload"),
        (b'[{"bn":"urn:dev:rg-1:","n":"depth","u":"m","v":1}]', Reason.BAD_SCHEMA, "n"),
        (b'[{"bn":"urn:dev:rg-2:","n":"rain","u":"mm/h","v":1}]', Reason.IDENTITY_MISMATCH, "bn"),
        (b'[{"bn":"urn:xx:rg-1:","n":"rain","u":"mm/h","v":1}]', Reason.BAD_SCHEMA, "bn"),
    ],
)
def test_rain_rejections(pack, reason, field):
    r = decode_senml(pack, topic="city/sensors/rain/rg-1", received_at=NOW)
    assert isinstance(r, Rejection)
    assert (r.reason, r.field) == (reason, field)


def test_unknown_kind_in_topic():
    r = decode_senml(b'[{"n":"urn:dev:x:count","v":1}]', topic="city/sensors/noise/x", received_at=NOW)
    assert isinstance(r, Rejection) and r.field == "topic"


# --- properties -----------------------------------------------------------------------------------

def sensor_batches():
    return sensor_batches_around(st.integers(1_500_000_000_000, 2_000_000_000_000))


@settings(max_examples=150, deadline=None)
@given(sensor_batches(), st.booleans())
def test_encode_decode_round_trip(kind_batch, relative):
    kind, batch = kind_batch
    device = batch.device[0]
    out = decode_senml(
        encode_senml(batch, relative=relative), topic=f"city/sensors/{kind}/{device}", received_at=NOW
    )
    assert isinstance(out, Batch), out
    assert out.device.tolist() == batch.device.tolist()
    assert out.quantity.tolist() == batch.quantity.tolist()
    assert out.value.tolist() == batch.value.tolist()
    if relative:
        np.testing.assert_allclose(out.t, batch.t, rtol=0, atol=1e-6)
    else:
        assert out.t.tolist() == batch.t.tolist()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
senml_keys = st.sampled_from(["bn", "bt", "bu", "bv", "bver", "n", "u", "v", "t", "s", "vs", "vb", "x_"])
senml_records = st.dictionaries(
    senml_keys,
    json_values | st.sampled_from(["urn:dev:d1:", "speed", "flow", "km/h", "1/h", "%", 1.7e9, 12.5, 3, -2]),
    max_size=6,
)
fast_records = st.fixed_dictionaries(
    {
        "n": st.sampled_from(["speed", "flow", "occ", 3]),
        "v": st.one_of(st.floats(-10, 400), st.integers(-5, 30000), st.text(max_size=2)),
        "t": st.one_of(st.floats(-100, 100), st.integers(0, 100), st.none()),
    }
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(senml_records, max_size=5)
    | st.lists(fast_records, min_size=1, max_size=6).map(
        lambda recs: [{"bn": "urn:dev:d1:", "bt": 1.7e9, "bu": "km/h", **recs[0]}, *recs[1:]]
    )
)
def test_fast_path_agrees_with_general_path(pack):
    payload = json.dumps(pack).encode()
    fast = decode_senml(payload, topic="city/sensors/traffic/d1", received_at=NOW)
    orig = senml_mod._fast_columns, senml_mod._single
    senml_mod._fast_columns = senml_mod._single = lambda *a: None
    try:
        slow = decode_senml(payload, topic="city/sensors/traffic/d1", received_at=NOW)
    finally:
        senml_mod._fast_columns, senml_mod._single = orig
    assert type(fast) is type(slow)
    if isinstance(fast, Rejection):
        assert fast.reason is slow.reason
    else:
        for c in ("device", "t", "quantity", "value"):
            assert getattr(fast, c).tolist() == getattr(slow, c).tolist()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.lists(senml_records, max_size=4).map(lambda p: json.dumps(p).encode()))
def test_any_bytes_give_batch_or_rejection(payload):
    r = decode_senml(payload, topic="city/sensors/traffic/d1", received_at=NOW)
    assert isinstance(r, Batch | Rejection)
    if isinstance(r, Rejection):
        assert r.reason in Reason and "internal" not in r.detail


def test_fast_path_speed():
    pack = [{"bn": "urn:dev:ld-1:", "bt": 1.7e9, "bu": "km/h", "n": "speed", "v": 40.0, "t": 0}]
    pack += [{"n": "speed", "v": 40.0 + i % 30, "t": i} for i in range(1, 1000)]
    b = decode_senml(json.dumps(pack).encode(), topic="city/sensors/traffic/ld-1", received_at=NOW)
    assert len(b) == 1000 and b.t[-1] == 1.7e9 + 999
