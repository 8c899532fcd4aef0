"""Citizen reports (``ingest.decoders.report``, ``city/reports/{source}``): any bytes give a batch or a rejection,
valid reports round-trip through the record and its note, each bad field is refused with its reason."""

from __future__ import annotations

import inspect
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.decoders import decode_report, encode_report, report_note, report_records
from ingest.decoders.report import MAX_ADDRESS, MAX_CONTACT, MAX_DESCRIPTION, MAX_MEDIA, MAX_URL
from ingest.rejection import MAX_DETAIL, Reason, Refusal, Rejection

NOW = 1_767_225_600.0  # 2026-01-01 00:00 UTC
TOPIC = "city/reports/hotline-12345"
VALID = {
    "id": "12345-20260101-000017",
    "t": NOW,
    "category": "road_damage",
    "lon": 121.4905,
    "lat": 31.2402,
    "datum": "GCJ02",
    "description": "中山东一路人行道塌陷 / sidewalk collapsed",
    "address": "中山东一路 12 号",
    "media_url": ["https://img.example.cn/r/17.jpg", "http://img.example.cn/r/17b.jpg"],
    "contact": "138 0000 0000",
}
MINIMAL = {k: VALID[k] for k in ("id", "t", "category", "lon", "lat", "description")}
HUGE_INT = b"1" + b"0" * 400
plain_text = st.characters(exclude_categories=("Cs",))
"""Characters without lone surrogates (what a JSON encoder of valid Unicode can carry)."""


def decode(doc: object, topic: str = TOPIC) -> Batch | Rejection:
    return decode_report(json.dumps(doc, ensure_ascii=False).encode(), topic=topic, received_at=NOW)


def test_signature():
    params = inspect.signature(decode_report).parameters
    assert list(params) == ["payload", "topic", "received_at"]
    assert params["topic"].kind is inspect.Parameter.KEYWORD_ONLY


def test_a_report_is_one_record_of_its_source_with_its_text_in_the_note():
    b = decode(VALID)
    assert isinstance(b, Batch) and len(b) == 1
    r = next(iter(b.records()))
    assert (r["device"], r["t"], r["quantity"], r["ref"], r["lon"], r["lat"], r["datum"]) == (
        "hotline-12345", NOW, "report", "12345-20260101-000017", 121.4905, 31.2402, "GCJ02")
    assert math.isnan(r["value"]) and r["fix"] == -1
    assert r["note"] == (
        '{"address":"中山东一路 12 号","category":"road_damage","contact":"138 0000 0000",'
        '"description":"中山东一路人行道塌陷 / sidewalk collapsed",'
        '"media_url":["https://img.example.cn/r/17.jpg","http://img.example.cn/r/17b.jpg"]}'
    )
    assert report_note(r["note"]) == {k: VALID[k] for k in ("category", "description", "address", "media_url",
                                                            "contact")}


def test_absent_optional_fields_are_left_out_of_the_note_and_the_datum_is_wgs84():
    b = decode(MINIMAL)
    assert isinstance(b, Batch)
    assert b.datum.tolist() == ["WGS84"]
    assert b.note.tolist() == ['{"category":"road_damage","description":"中山东一路人行道塌陷 / sidewalk collapsed"}']
    assert report_note(b.note[0]) == {"category": "road_damage", "description": MINIMAL["description"]}


@pytest.mark.parametrize("datum", ["CGCS2000", "WGS84", "GCJ02"])
def test_each_datum_is_kept(datum):
    b = decode(MINIMAL | {"datum": datum})
    assert isinstance(b, Batch) and b.datum.tolist() == [datum]


def test_the_records_api_takes_the_parsed_document():
    assert report_records(dict(MINIMAL), source="app").device.tolist() == ["app"]
    with pytest.raises(Refusal) as bad:
        report_records(MINIMAL | {"lat": 91}, source="app")
    assert (bad.value.reason, bad.value.field) == (Reason.OUT_OF_RANGE, "lat")


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"id": ""}, Reason.BAD_SCHEMA, "id"),
        ({"id": "a" * 65}, Reason.BAD_SCHEMA, "id"),
        ({"id": "a b"}, Reason.BAD_SCHEMA, "id"),
        ({"id": "报告1"}, Reason.BAD_SCHEMA, "id"),
        ({"id": "r1\n"}, Reason.BAD_SCHEMA, "id"),
        ({"id": 17}, Reason.BAD_SCHEMA, "id"),
        ({"t": "now"}, Reason.BAD_SCHEMA, "t"),
        ({"t": 1e400}, Reason.OUT_OF_RANGE, "t"),  # json.dumps writes Infinity: refused as syntax below
        ({"category": "Road_Damage"}, Reason.BAD_SCHEMA, "category"),
        ({"category": ""}, Reason.BAD_SCHEMA, "category"),
        ({"category": "c" * 65}, Reason.BAD_SCHEMA, "category"),
        ({"category": "road-damage"}, Reason.BAD_SCHEMA, "category"),
        ({"category": 3}, Reason.BAD_SCHEMA, "category"),
        ({"lon": 180.0001}, Reason.OUT_OF_RANGE, "lon"),
        ({"lon": -181}, Reason.OUT_OF_RANGE, "lon"),
        ({"lat": 90.5}, Reason.OUT_OF_RANGE, "lat"),
        ({"lat": -91}, Reason.OUT_OF_RANGE, "lat"),
        ({"lon": "121.49"}, Reason.BAD_SCHEMA, "lon"),
        ({"lat": None}, Reason.BAD_SCHEMA, "lat"),
        ({"datum": "BD09"}, Reason.BAD_SCHEMA, "datum"),
        ({"datum": "wgs84"}, Reason.BAD_SCHEMA, "datum"),
        ({"datum": None}, Reason.BAD_SCHEMA, "datum"),
        ({"description": ""}, Reason.BAD_SCHEMA, "description"),
        ({"description": "d" * (MAX_DESCRIPTION + 1)}, Reason.BAD_SCHEMA, "description"),
        ({"description": ["d"]}, Reason.BAD_SCHEMA, "description"),
        ({"address": "a" * (MAX_ADDRESS + 1)}, Reason.BAD_SCHEMA, "address"),
        ({"address": 12}, Reason.BAD_SCHEMA, "address"),
        ({"contact": "c" * (MAX_CONTACT + 1)}, Reason.BAD_SCHEMA, "contact"),
        ({"contact": {"phone": "1"}}, Reason.BAD_SCHEMA, "contact"),
        ({"media_url": "https://a.cn/x.jpg"}, Reason.BAD_SCHEMA, "media_url"),
        ({"media_url": ["https://a.cn/x.jpg"] * (MAX_MEDIA + 1)}, Reason.BAD_SCHEMA, "media_url"),
        ({"media_url": ["ftp://a.cn/x.jpg"]}, Reason.BAD_SCHEMA, "media_url[0]"),
        ({"media_url": ["https://a.cn/1.jpg", "javascript:alert(1)"]}, Reason.BAD_SCHEMA, "media_url[1]"),
        ({"media_url": ["https:///x.jpg"]}, Reason.BAD_SCHEMA, "media_url[0]"),
        ({"media_url": ["https://a.cn/a b.jpg"]}, Reason.BAD_SCHEMA, "media_url[0]"),
        ({"media_url": ["https://a.cn/\n.jpg"]}, Reason.BAD_SCHEMA, "media_url[0]"),
        ({"media_url": ["http://[::1/x"]}, Reason.BAD_SCHEMA, "media_url[0]"),
        ({"media_url": ["https://a.cn/" + "x" * MAX_URL]}, Reason.BAD_SCHEMA, "media_url[0]"),
        ({"media_url": [7]}, Reason.BAD_SCHEMA, "media_url[0]"),
        ({"source": "app"}, Reason.BAD_SCHEMA, "source"),  # unknown fields
        ({"crs": "WGS84"}, Reason.BAD_SCHEMA, "crs"),
        ({"lng": 121.49}, Reason.BAD_SCHEMA, "lng"),
    ],
)
def test_each_bad_field_is_refused_with_its_reason(change, reason, field):
    if change.get("t") == 1e400:
        out = decode_report(json.dumps(MINIMAL).replace(repr(NOW), "1e400").encode(), topic=TOPIC, received_at=NOW)
    else:
        out = decode(VALID | change)
    assert isinstance(out, Rejection), out
    assert (out.reason, out.field) == (reason, field), out
    assert out.detail and len(out.detail) <= MAX_DETAIL and len(out.digest) == 16
    assert field.split("[")[0] in out.detail, "the dead letter's detail names the field"


@pytest.mark.parametrize("missing", ["id", "t", "category", "lon", "lat", "description"])
def test_a_missing_field_is_named(missing):
    out = decode({k: v for k, v in MINIMAL.items() if k != missing})
    assert isinstance(out, Rejection) and (out.reason, out.field) == (Reason.BAD_SCHEMA, missing)
    assert missing in out.detail


def test_the_limits_themselves_pass():
    longest_url = "https://a.cn/" + "x" * (MAX_URL - 13)
    doc = MINIMAL | {
        "id": "A.z_0:-" + "9" * 57, "category": "a" * 64, "lon": -180, "lat": 90, "description": "述" * MAX_DESCRIPTION,
        "address": "址" * MAX_ADDRESS, "contact": "c" * MAX_CONTACT, "media_url": [longest_url] * MAX_MEDIA,
    }
    assert len(longest_url) == MAX_URL and len(doc["id"]) == 64
    b = decode(doc)
    assert isinstance(b, Batch), b
    assert (b.ref[0], b.lon[0], b.lat[0]) == (doc["id"], -180.0, 90.0)
    assert report_note(b.note[0])["media_url"] == doc["media_url"]
    assert isinstance(decode(MINIMAL | {"media_url": [], "address": ""}), Batch)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", Reason.BAD_SYNTAX),
        (json.dumps(MINIMAL).replace("121.4905", "NaN").encode(), Reason.BAD_SYNTAX),
        (json.dumps(MINIMAL).replace("121.4905", HUGE_INT.decode()).encode(), Reason.OUT_OF_RANGE),
        (json.dumps(MINIMAL).replace("121.4905", "-1E999").encode(), Reason.OUT_OF_RANGE),
        (json.dumps(MINIMAL | {"description": "\ud800x"}).encode(), Reason.BAD_SCHEMA),  # a lone surrogate
        (b"[" * 100_000, Reason.BAD_SYNTAX),
        (b"[" + json.dumps(MINIMAL).encode() + b"]", Reason.BAD_SCHEMA),  # one report per message
        (b"null", Reason.BAD_SCHEMA),
        (b"\xff\xfe", Reason.BAD_SYNTAX),
        (json.dumps(MINIMAL | {"x" * 70_000: 1}).encode(), Reason.BAD_SCHEMA),
    ],
)
def test_hostile_payloads_are_refused_not_crashed(payload, reason):
    out = decode_report(payload, topic=TOPIC, received_at=NOW)
    assert isinstance(out, Rejection) and out.reason is reason, out
    assert not out.detail.startswith("internal") and len(out.detail) <= MAX_DETAIL


@pytest.mark.parametrize("topic", ["city/reports/", "city/reports", "reports", "city/reports/a/b"])
def test_a_topic_that_names_no_source_is_refused(topic):
    out = decode(MINIMAL, topic)
    assert isinstance(out, Rejection) and (out.reason, out.field) == (Reason.BAD_SCHEMA, "topic")


# --- properties ------------------------------------------------------------------------------------------------

FIELD_NAMES = ["id", "t", "category", "lon", "lat", "datum", "description", "address", "media_url", "contact", "x"]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(FIELD_NAMES), inner, max_size=8),
    max_leaves=12,
).map(lambda doc: json.dumps(doc).encode()), st.sampled_from([TOPIC, "city/reports/app", "", "a/b"]))
def test_any_bytes_give_a_batch_or_a_rejection(payload, topic):
    out = decode_report(payload, topic=topic, received_at=NOW)
    assert type(out) in (Batch, Rejection)
    if isinstance(out, Rejection):
        assert out.reason in Reason and not out.detail.startswith("internal")
    else:
        assert len(out) == 1 and out.quantity[0] == "report"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELD_NAMES[:-1]), st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
       | st.text(max_size=8) | st.lists(st.text(max_size=8), max_size=7))
def test_a_valid_report_with_one_field_replaced_is_a_batch_or_refused_for_that_field(name, value):
    """Infinity is written as ``1e400`` (a literal too large for a float), never as the non-standard ``Infinity``."""
    payload = json.dumps(VALID | {name: value}).replace("-Infinity", "-1e400").replace("Infinity", "1e400")
    out = decode_report(payload.encode(), topic=TOPIC, received_at=NOW)
    if isinstance(out, Rejection):
        assert out.field.split("[")[0] == name and out.reason in (Reason.BAD_SCHEMA, Reason.OUT_OF_RANGE), out
    else:
        assert isinstance(out, Batch) and len(out) == 1


urls = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}/{path}",
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9]{1,20}\.(cn|com|org)", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9._~/%-]{0,60}", fullmatch=True),
)
reports = st.fixed_dictionaries(
    {
        "id": st.from_regex(r"[A-Za-z0-9._:-]{1,64}", fullmatch=True),
        "t": st.floats(0, 4e9) | st.integers(0, 4_000_000_000),
        "category": st.from_regex(r"[a-z0-9_]{1,64}", fullmatch=True),
        "lon": st.floats(-180, 180) | st.integers(-180, 180),
        "lat": st.floats(-90, 90) | st.integers(-90, 90),
        "description": st.text(plain_text, min_size=1, max_size=80),
    },
    optional={
        "datum": st.sampled_from(["CGCS2000", "WGS84", "GCJ02"]),
        "address": st.text(plain_text, max_size=MAX_ADDRESS),
        "media_url": st.lists(urls, max_size=MAX_MEDIA),
        "contact": st.text(plain_text, max_size=40),
    },
)


@settings(max_examples=300, deadline=None)
@given(reports, st.booleans())
def test_valid_reports_round_trip(doc, ascii_only):
    b = decode_report(json.dumps(doc, ensure_ascii=ascii_only).encode(), topic=TOPIC, received_at=NOW)
    assert isinstance(b, Batch), b
    expected = doc | {"t": float(doc["t"]), "lon": float(doc["lon"]) + 0.0, "lat": float(doc["lat"]) + 0.0,
                      "datum": doc.get("datum", "WGS84")}
    assert json.loads(encode_report(b)) == expected
    note = report_note(b.note[0])
    assert note == {k: doc[k] for k in ("category", "description", "address", "media_url", "contact") if k in doc}
    assert b.note[0] == json.dumps(note, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    b2 = decode_report(encode_report(b), topic=TOPIC, received_at=NOW)
    assert isinstance(b2, Batch)
    assert _same_rows(b2, b)


def _same_rows(a: Batch, b: Batch) -> bool:
    """Rows equal, NaN equal to NaN (the absent float columns)."""
    for x, y in zip(a.records(), b.records(), strict=True):
        for k in x:
            if x[k] != y[k] and not (isinstance(x[k], float) and math.isnan(x[k]) and math.isnan(y[k])):
                return False
    return True


def test_report_note_refuses_what_is_not_a_report_note():
    for note in ['{"category":"x"}', "[]", '{"category":"x","description":"d","phone":"1"}']:
        with pytest.raises(ValueError):
            report_note(note)


def test_encoding_an_empty_batch_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        encode_report(Batch.empty())
