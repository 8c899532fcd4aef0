"""The admission step (``ingest.admission``): never raises, agrees with the bytes decoders, parses a payload
once, looks a device up once, and tells bugs from bad input by type."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest import admission as admission_mod
from ingest.admission import Admission, batch_of
from ingest.batch import COLUMNS, FLOAT_COLUMNS, Batch
from ingest.decoders import encode_ack, encode_nmea, encode_position, encode_senml, senml_records
from ingest.decoders.units import ACK_STATUSES, SENSOR_KINDS
from ingest.dedupe import Deduper
from ingest.pipeline import Ingestor
from ingest.registry import Registry, registry_from_geojson
from ingest.rejection import Reason, Refusal, Rejection
from ingest.routing import DECODERS, route
from ingest.validation import Limits
from tests.ingest.conftest import feature
from tests.ingest.fakes import FakeSource
from tests.ingest.strategies import device_ids, sensor_batches

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC
WIDE = Limits(max_age_s=1e12, max_future_s=1e12, rate_per_s=0)
"""No time skew and no rate limit: what is left is decoding, device and quantity checks, dedupe."""


def senml(dev: str, t: float, v: float = 10, n: str = "count", u: str | None = None) -> bytes:
    rec = {"bn": f"urn:dev:{dev}:", "n": n, "v": v, "t": t} | ({} if u is None else {"u": u})
    return json.dumps([rec]).encode()


# --- never raises -----------------------------------------------------------------------------------

topics = st.text(max_size=40) | st.sampled_from(
    ["city/sensors/crowd/c0", "city/sensors/traffic/t0", "city/sensors/traffic/t1", "city/sensors/rain/r0",
     "city/sensors/water/w0", "city/beidou/v0", "city/beidou/u0", "city/units/u0/ack", "city/units/v0/ack",
     "city/sensors/crowd/", "city/sensors/noise/c0", "city/deadletter", "city/", "", "other/beidou/v0"]
)
payloads = st.binary(max_size=300) | st.sampled_from([
    senml("c0", NOW), senml("c0", 0.0), senml("t0", NOW, 30, "speed"), senml("t1", NOW, 30, "flow", "1/h"),
    b'[{"bn":"urn:dev:t0:","bt":1.7e9,"bu":"km/h","bver":11,"n":"speed","v":30},{"n":"speed","v":31,"t":1}]',
    b'{"id":"v0","t":1.7e9,"lon":121.49,"lat":31.24}', b'[{"id":"v0","t":1.7e9,"lon":121.49,"lat":31.24}]',
    b'{"alert":"a","status":"ack","t":1.7e9}', b"$GNGGA,*00", b"[]", b"{}", b"null", b"[NaN]", b"\xff\xfe",
]) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["bn", "bt", "bu", "bver", "n", "v", "t", "u", "s", "vs", "id", "lon", "lat", "alert", "status"]),
        inner, max_size=4),
    max_leaves=10,
).map(lambda doc: json.dumps(doc).encode())


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(topics, payloads, st.floats(0, 2e9), st.booleans()), min_size=1, max_size=10),
       st.booleans())
def test_admit_never_raises_and_gives_a_batch_or_a_known_reason(registry, msgs, with_registry):
    adm = Admission(registry if with_registry else None, Limits(rate_per_s=5, burst=3))
    for topic, payload, received_at, redelivered in msgs:
        out = adm.admit(topic, payload, received_at, redelivered)
        assert type(out) in (Batch, Rejection)
        if isinstance(out, Rejection):
            assert out.reason in Reason and out.digest
    m = adm.metrics.snapshot()
    assert m["internal_errors"] == 0
    assert m["received"] == len(msgs) == m["accepted"] + m["duplicates"] + m["rejected_total"]


# --- agrees with the bytes decoders on valid messages ---------------------------------------------------

@st.composite
def sensor_messages(draw):
    kind, batch = draw(sensor_batches(st.integers(-86_400_000, 300_000), NOW))  # [ms] around NOW
    device = batch.device[0]
    payload = encode_senml(batch, relative=draw(st.booleans()))
    return f"city/sensors/{kind}/{device}", payload, feature(device, kind, list(SENSOR_KINDS[kind]))


@st.composite
def nmea_messages(draw):
    device = draw(device_ids)
    n = draw(st.integers(1, 4))
    t0 = NOW - draw(st.integers(0, 86_000_00)) / 100
    batch = Batch.build(
        n,
        device=device,
        t=[t0 + i for i in range(n)],
        quantity="position",
        lat=draw(st.lists(st.floats(-89.9, 89.9), min_size=n, max_size=n)),
        lon=draw(st.lists(st.floats(-179.9, 179.9), min_size=n, max_size=n)),
        speed_kmh=draw(st.lists(st.floats(0, 300), min_size=n, max_size=n)),
        course_deg=draw(st.lists(st.floats(0, 359.9), min_size=n, max_size=n)),
        hdop=draw(st.lists(st.floats(0.5, 50).map(lambda x: round(x, 2)), min_size=n, max_size=n)),
        fix=draw(st.lists(st.sampled_from([1, 2, 4, 5]), min_size=n, max_size=n)),
    )
    payload = encode_nmea(batch, talker=draw(st.sampled_from(["GN", "GP", "GB", "BD"])))
    return f"city/beidou/{device}", payload, feature(device, "vehicle", ["position"])


@st.composite
def position_messages(draw):
    device = draw(device_ids)
    n = draw(st.integers(1, 5))
    batch = Batch.build(
        n,
        device=device,
        t=draw(st.lists(st.floats(NOW - 86_000, NOW + 200), min_size=n, max_size=n)),
        quantity="position",
        lon=draw(st.lists(st.floats(-180, 180), min_size=n, max_size=n)),
        lat=draw(st.lists(st.floats(-90, 90), min_size=n, max_size=n)),
        speed_kmh=draw(st.lists(st.floats(0, 300) | st.just(math.nan), min_size=n, max_size=n)),
        datum=draw(st.lists(st.sampled_from(["CGCS2000", "WGS84", "GCJ02"]), min_size=n, max_size=n)),
    )
    return f"city/beidou/{device}", encode_position(batch), feature(device, "unit", ["position"], unit_type="fire")


@st.composite
def ack_messages(draw):
    device = draw(device_ids)
    batch = Batch.build(
        1,
        device=device,
        t=draw(st.floats(NOW - 86_000, NOW + 200)),
        quantity=draw(st.sampled_from(ACK_STATUSES)),
        ref=draw(st.text(min_size=1, max_size=40)),
    )
    return f"city/units/{device}/ack", encode_ack(batch), feature(device, "unit", ["position"], unit_type="police")


def same_columns(a: Batch, b: Batch) -> None:
    assert len(a) == len(b)
    for c in COLUMNS:
        x, y = getattr(a, c), getattr(b, c)
        if c in FLOAT_COLUMNS:
            assert np.array_equal(x, y, equal_nan=True), c
        else:
            assert x.tolist() == y.tolist(), c


@settings(max_examples=300, deadline=None)
@given(sensor_messages() | nmea_messages() | position_messages() | ack_messages(), st.booleans())
def test_admit_equals_the_bytes_decoders_on_valid_messages(message, with_registry):
    topic, payload, feat = message
    registry = registry_from_geojson({"type": "FeatureCollection", "features": [feat]}) if with_registry else None
    old = DECODERS[route(topic).family](payload, topic=topic, received_at=NOW)
    assert isinstance(old, Batch), old
    expected, _ = Deduper().filter(old)  # records repeated inside one message count once
    got = Admission(registry, WIDE).admit(topic, payload, NOW)
    assert isinstance(got, Batch), got
    same_columns(got, expected)
    fast = Admission(registry, WIDE).admit_fast(topic, payload, NOW)
    same_columns(batch_of([fast]), expected)


def test_checks_around_the_decoder_use_the_registry_entry(registry):
    adm = Admission(registry, Limits(rate_per_s=1, burst=1))
    assert adm.admit("city/sensors/crowd/c0", senml("c0", NOW), NOW).device.tolist() == ["c0"]
    cases = {
        ("city/sensors/crowd/c1", senml("c1", NOW + 3600)): Reason.TIME_SKEW,
        ("city/sensors/traffic/t1", senml("t1", NOW, 5, "flow", "1/h")): Reason.BAD_SCHEMA,  # registered for speed only
        ("city/sensors/crowd/nobody", senml("nobody", NOW)): Reason.UNKNOWN_DEVICE,
        ("city/sensors/rain/c2", senml("c2", NOW, 1, "rain")): Reason.IDENTITY_MISMATCH,
        ("city/units/v0/ack", b'{"alert":"a","status":"ack","t":1}'): Reason.IDENTITY_MISMATCH,
        ("city/sensors/crowd/c0", senml("c0", NOW + 0.5)): Reason.RATE_LIMITED,  # 1/s of its own time
        ("city/sensors/crowd/c3", b"[" + b" " * 70_000 + b"]"): Reason.TOO_LARGE,
    }
    for (topic, payload), reason in cases.items():
        out = adm.admit(topic, payload, NOW)
        assert isinstance(out, Rejection) and out.reason is reason, (topic, out)
    assert adm.admit("city/sensors/crowd/c0", senml("c0", NOW + 2), NOW + 2).t.tolist() == [NOW + 2]  # 2 s later
    dup = adm.admit("city/sensors/crowd/c0", senml("c0", NOW), NOW + 2)  # a redelivery: a duplicate, not charged
    assert isinstance(dup, Batch) and len(dup) == 0
    m = adm.metrics.snapshot()
    assert (m["accepted"], m["accepted_records"], m["duplicates"], m["rejected_total"]) == (2, 2, 1, len(cases))
    assert m["received"] == 2 + 1 + len(cases)


# --- parsed once, looked up once --------------------------------------------------------------------------


@pytest.fixture
def json_parses(monkeypatch):
    """Every JSON document parsed (``json.loads``, ``json.load``, the decoders' own decoder and orjson)."""
    parsed: list[str] = []
    decode = json.JSONDecoder.decode

    def counting(self, s, *a, **k):
        parsed.append(s)
        return decode(self, s, *a, **k)

    monkeypatch.setattr(json.JSONDecoder, "decode", counting)
    fast = orjson.loads  # ingest.decoders._common.load_json parses with orjson first (issue 19)

    def counting_fast(data, *a, **k):
        parsed.append(bytes(data).decode())
        return fast(data, *a, **k)

    monkeypatch.setattr(orjson, "loads", counting_fast)
    return parsed


PACK = [{"bn": "urn:dev:t0:", "bt": NOW, "bu": "km/h", "n": "speed", "v": 40.0}] + [
    {"n": "speed", "v": 40.0 + i % 30, "t": i} for i in range(1, 100)
]
SENML_SHAPES = {
    "one record": senml("t0", NOW - 1, 30, "speed", "km/h"),
    "pack (fast path)": json.dumps(PACK).encode(),
    "pack (general path)": json.dumps([{"bn": "urn:dev:t0:", "bver": 10, "bt": NOW, "n": "speed", "u": "m/s", "v": 10},
                                       {"n": "flow", "u": "1/h", "v": 900}]).encode(),
    "refused (bad unit)": json.dumps([{"bn": "urn:dev:t0:", "n": "speed", "u": "mph", "v": 3}]).encode(),
    "refused (version)": json.dumps([{"bn": "urn:dev:t0:", "bver": 11, "n": "speed", "v": 3}]).encode(),
}


@pytest.mark.parametrize("payload", SENML_SHAPES.values(), ids=SENML_SHAPES.keys())
def test_a_senml_payload_is_parsed_once(registry, json_parses, payload):
    Admission(registry, WIDE).admit("city/sensors/traffic/t0", payload, NOW)
    assert json_parses == [payload.decode()]


def test_the_parsed_pack_entry_point_decodes_without_parsing(json_parses):
    pack = json.loads(SENML_SHAPES["pack (general path)"])
    json_parses.clear()
    out = senml_records(pack, kind="traffic", device="t0", received_at=NOW)
    assert json_parses == []
    assert out.quantity.tolist() == ["speed", "flow"] and out.value.tolist() == [36.0, 900.0]
    with pytest.raises(Refusal) as bad:
        senml_records(json.loads(SENML_SHAPES["refused (bad unit)"]), kind="traffic", device="t0", received_at=NOW)
    assert bad.value.reason is Reason.BAD_UNIT


def test_json_positions_and_acks_are_parsed_once(registry, json_parses):
    adm = Admission(registry, WIDE)
    for topic, payload in [("city/beidou/v0", b'[{"id":"v0","t":1.7e9,"lon":121.49,"lat":31.24}]'),
                           ("city/units/u0/ack", b'{"alert":"a","status":"ack","t":1.7e9}')]:
        json_parses.clear()
        assert len(adm.admit(topic, payload, NOW)) == 1
        assert json_parses == [payload.decode()]


def test_one_senml_version_check_on_every_path():
    """A too-new ``bver`` gets the same refusal from the one-record, the fast-pack and the general path."""
    one = [{"bn": "urn:dev:t0:", "bver": 11, "n": "speed", "v": 3}]
    fast = [one[0] | {"bt": NOW}, {"n": "speed", "v": 4, "t": 1}]
    general = [one[0] | {"bt": NOW}, {"n": "speed", "v": 4, "t": 1, "u": "km/h"}]
    refusals = []
    for pack in (one, fast, general):
        with pytest.raises(Refusal) as bad:
            senml_records(pack, kind="traffic", device="t0", received_at=NOW)
        refusals.append((bad.value.reason, bad.value.detail, bad.value.field))
    assert refusals == [(Reason.BAD_SCHEMA, "SenML version 11 > supported 10", "[0].bver")] * 3


T1_FLOW = json.dumps([{"bn": "urn:dev:t1:", "n": "speed", "u": "km/h", "v": 1, "t": NOW},
                      {"n": "flow", "u": "1/h", "v": 2, "t": NOW}]).encode()


class CountingRegistry:
    """A registry that records every look-up."""

    def __init__(self, registry: Registry) -> None:
        self.registry, self.looked_up = registry, []

    def get(self, device_id: str):
        self.looked_up.append(device_id)
        return self.registry.get(device_id)


def test_the_registry_is_looked_up_once_per_message(registry):
    stub = CountingRegistry(registry)
    adm = Admission(stub, Limits(rate_per_s=0))  # type: ignore[arg-type] - duck-typed stand-in
    fix = Batch.build(3, device="v0", t=[NOW - 2, NOW - 1, NOW], quantity="position", lat=31.24, lon=121.49, fix=1)
    messages = [
        ("city/sensors/traffic/t0", SENML_SHAPES["one record"]),
        ("city/sensors/traffic/t0", json.dumps(PACK).encode()),  # 100 records
        ("city/sensors/traffic/t1", T1_FLOW),  # refused after decoding: t1 is registered for speed only
        ("city/sensors/crowd/c0", senml("c0", NOW + 3600)),  # time skew, after decoding
        ("city/beidou/v0", encode_nmea(fix)),
        ("city/units/u0/ack", json.dumps({"alert": "a", "status": "ack", "t": NOW}).encode()),
        ("city/sensors/crowd/nobody", senml("nobody", NOW)),
    ]
    reasons = []
    for topic, payload in messages:
        stub.looked_up.clear()
        out = adm.admit(topic, payload, NOW)
        reasons.append(out.reason.value if isinstance(out, Rejection) else "")
        assert stub.looked_up == [topic.split("/")[-1] if "units" not in topic else "u0"], topic
    assert reasons == ["", "", "bad_schema", "time_skew", "", "", "unknown_device"]
    assert adm.metrics.accepted_records == 1 + 100 + 3 + 1


# --- bugs and bad input are told apart by type --------------------------------------------------------


def test_a_bug_is_an_internal_error_and_a_refusal_is_not(monkeypatch, registry):
    def bug(*a, **k):
        raise ZeroDivisionError("bug")

    def refusal_that_looks_like_a_bug(*a, **k):
        raise Refusal(Reason.BAD_SCHEMA, "internal decoder error: not really", "n")

    adm = Admission(registry, WIDE)
    monkeypatch.setattr(admission_mod, "senml_records", bug)
    out = adm.admit("city/sensors/crowd/c0", senml("c0", NOW), NOW)
    assert isinstance(out, Rejection) and out.reason is Reason.BAD_SYNTAX and out.field == "payload"
    assert adm.metrics.internal_errors == 1
    monkeypatch.setattr(admission_mod, "senml_records", refusal_that_looks_like_a_bug)
    out = adm.admit("city/sensors/crowd/c0", senml("c0", NOW), NOW)
    assert isinstance(out, Rejection) and out.reason is Reason.BAD_SCHEMA
    assert adm.metrics.internal_errors == 1, "a refusal is bad input whatever its text"
    assert adm.metrics.rejected["bad_syntax"] == 1 and adm.metrics.rejected["bad_schema"] == 1


def test_the_ingestor_needs_a_raw_log(registry):
    with pytest.raises(TypeError, match="Admission"):
        Ingestor(FakeSource(), None, registry, lambda b: None)  # type: ignore[arg-type]


def test_batch_of_keeps_the_order_of_rows_and_batches():
    b = Batch.build(2, device="p", t=[3.0, 4.0], quantity="position", lon=1.0, lat=2.0)
    out = batch_of([("a", 1.0, "count", 5.0), ("b", 2.0, "count", 6.0), b, ("c", 5.0, "depth", 0.1)])
    assert out.device.tolist() == ["a", "b", "p", "p", "c"] and out.t.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert np.isnan(out.value[2]) and out.lon.tolist()[2:4] == [1.0, 1.0]
