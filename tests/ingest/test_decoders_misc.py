"""Batch, JSON positions, unit acks, the decoder contract (names, signatures, reasons)."""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ingest.decoders as dec
from ingest.batch import COLUMNS, Batch
from ingest.decoders import decode_ack, decode_beidou, decode_position, encode_ack, encode_position
from ingest.rejection import Reason, Rejection

REASONS = [
    "too_large",
    "bad_checksum",
    "bad_syntax",
    "bad_schema",
    "out_of_range",
    "bad_unit",
    "time_skew",
    "unknown_device",
    "identity_mismatch", "retired_device",
    "outside_grid",
    "rate_limited",
    "unknown_alert",
    "not_sent",
    "unknown_case",
    "not_assigned",
    "bad_transition",
    "unknown_source",
    "unknown_category",
]
DECODERS = [dec.decode_senml, dec.decode_nmea, dec.decode_position, dec.decode_ack, dec.decode_beidou]


def test_reason_values_are_the_contract_strings():
    assert [r.value for r in Reason] == REASONS


@pytest.mark.parametrize("decoder", DECODERS, ids=lambda f: f.__name__)
def test_decoder_signature(decoder):
    params = inspect.signature(decoder).parameters
    assert list(params) == ["payload", "topic", "received_at"]
    assert params["topic"].kind is inspect.Parameter.KEYWORD_ONLY


def test_decoders_import_no_paho_or_pyproj():
    import ast
    import pathlib

    for path in pathlib.Path(dec.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [
            m for m in names if m.split(".")[0] in ("paho", "pyproj", "twin", "models", "scenarios")
        ], path


def test_batch_build_concat_take_keys():
    a = Batch.build(2, device="d", t=[1.0, 2.0], quantity="count", value=[3, 4])
    b = Batch.build(1, device="e", t=5.0, quantity="ack", ref="A1")
    c = Batch.concat([a, b])
    assert len(c) == 3 and set(c.columns()) == set(COLUMNS)
    assert c.keys() == [("d", 1.0, "count", ""), ("d", 2.0, "count", ""), ("e", 5.0, "ack", "A1")]
    assert np.isnan(c.lon).all() and c.fix.tolist() == [-1] * 3 and c.datum.tolist() == [""] * 3
    assert c.take(c.t > 1.5).device.tolist() == ["d", "e"]
    assert len(Batch.concat([])) == 0
    with pytest.raises(ValueError, match="length"):
        Batch(**(a.columns() | {"t": np.zeros(5)}))


def test_position_json():
    doc = {
        "id": "v1",
        "t": 1.7e9,
        "lon": 121.4855,
        "lat": 31.2405,
        "speed_kmh": 32.5,
        "course": 181.0,
        "crs": "GCJ02",
    }
    b = decode_beidou(json.dumps(doc).encode(), topic="city/beidou/v1", received_at=1.7e9)
    assert isinstance(b, Batch)
    r = next(iter(b.records()))
    assert (r["lon"], r["lat"], r["speed_kmh"], r["course_deg"], r["datum"]) == (
        121.4855,
        31.2405,
        32.5,
        181.0,
        "GCJ02",
    )
    doc.pop("crs")
    assert (
        decode_position(json.dumps(doc).encode(), topic="city/beidou/v1", received_at=0).datum[0]
        == "CGCS2000"
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"id": "v2"}, Reason.IDENTITY_MISMATCH),
        ({"lat": 91}, Reason.OUT_OF_RANGE),
        ({"speed_kmh": -1}, Reason.OUT_OF_RANGE),
        ({"crs": "BD09"}, Reason.BAD_SCHEMA),
        ({"lon": "121"}, Reason.BAD_SCHEMA),
        ({"extra": 1}, Reason.BAD_SCHEMA),
    ],
)
def test_position_rejections(change, reason):
    doc = {"id": "v1", "t": 1.7e9, "lon": 121.4855, "lat": 31.2405} | change
    r = decode_position(json.dumps(doc).encode(), topic="city/beidou/v1", received_at=1.7e9)
    assert isinstance(r, Rejection) and r.reason is reason


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(1e9, 2e9),
            st.floats(-180, 180),
            st.floats(-90, 90),
            st.floats(0, 300) | st.just(math.nan),
            st.sampled_from(["CGCS2000", "WGS84", "GCJ02"]),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_position_round_trip(rows):
    t, lon, lat, spd, crs = zip(*rows, strict=True)
    b = Batch.build(
        len(rows), device="v1", t=t, quantity="position", lon=lon, lat=lat, speed_kmh=spd, datum=crs
    )
    out = decode_position(encode_position(b), topic="city/beidou/v1", received_at=0)
    for c in ("t", "lon", "lat", "datum"):
        assert getattr(out, c).tolist() == getattr(b, c).tolist()
    np.testing.assert_array_equal(out.speed_kmh, b.speed_kmh)


def test_ack():
    b = decode_ack(
        b'{"alert":"cap-2026-0001","status":"on_scene","t":1700000000}',
        topic="city/units/u0/ack",
        received_at=1.7e9,
    )
    assert b.keys() == [("u0", 1.7e9, "on_scene", "cap-2026-0001")]
    assert decode_ack(encode_ack(b), topic="city/units/u0/ack", received_at=0).keys() == b.keys()
    for bad in (b'{"alert":"a","status":"done","t":1}', b'{"alert":"a","t":1}', b"[1]", b'{"alert":"",'):
        r = decode_ack(bad, topic="city/units/u0/ack", received_at=0)
        assert isinstance(r, Rejection) and r.reason in (Reason.BAD_SCHEMA, Reason.BAD_SYNTAX)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_never_raise(payload):
    for decoder, topic in (
        (decode_position, "city/beidou/v1"),
        (decode_ack, "city/units/u0/ack"),
        (decode_beidou, "city/beidou/v1"),
    ):
        assert isinstance(decoder(payload, topic=topic, received_at=0.0), Batch | Rejection)


def test_unexpected_error_becomes_counted_bad_syntax(monkeypatch):
    from ingest.decoders import position

    def boom(*a, **k):
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(position, "_row", boom)
    r = position.decode_position(b'{"id":"v1"}', topic="city/beidou/v1", received_at=0)
    assert isinstance(r, Rejection) and r.reason is Reason.BAD_SYNTAX and "internal" in r.detail
