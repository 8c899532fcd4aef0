"""``jt808_records``: position records from JT/T 808 frames, and ``encode_jt808`` for simulators."""

from __future__ import annotations

import json
import math
from calendar import timegm

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.decoders.jt808 import encode_jt808, jt808_records
from ingest.jt808.header import build_frame
from ingest.jt808.location import Location, encode_batch_location, encode_location
from ingest.rejection import Reason, Refusal

PHONE = "13912345678"
T0 = timegm((2024, 5, 17, 0, 30, 15))
# The hand-written 0x0200 of test_header.py: 39.908692 N 116.397477 E, 50 m, 60.5 km/h, 359 degree, GPS + BDS
HAND_WIRE = bytes.fromhex(
    "7e 0200 002c 013912345678 007d02"
    "00000000 000c0002 0260f554 06f015a5 0032 025d 0167 240517083015"
    " 01 04 00003039  02 02 01f4  30 01 1f  31 01 0b  17 7e"
)


def records(payload: bytes, **kw) -> list[dict]:
    return list(jt808_records(payload, device="bus-7", received_at=T0 + 5.0, **kw).records())


def test_hand_written_frame():
    (r,) = records(HAND_WIRE, terminal="013912345678")
    assert (r["device"], r["quantity"], r["t"], r["fix"], r["datum"]) == ("bus-7", "position", T0, 1, "WGS84")
    assert (r["lat"], r["lon"], r["speed_kmh"], r["course_deg"], r["alt_m"]) == (
        39.908692,
        116.397477,
        60.5,
        359.0,
        50.0,
    )
    assert math.isnan(r["hdop"]) and r["ref"] == ""
    assert json.loads(r["note"]) == {
        "alarm": 0,
        "status": 0x000C0002,
        "gnss": ["BDS", "GPS"],
        "mileage_km": 1234.5,
        "fuel_l": 50.0,
        "signal": 31,
        "satellites": 11,
    }
    assert " " not in r["note"]


def frame(*locs: Location, kind: int | None = None, version: int = 2013, phone: str = PHONE) -> bytes:
    if kind is None:
        return build_frame(0x0200, phone, 1, encode_location(locs[0]), version=version)
    return build_frame(0x0704, phone, 1, encode_batch_location(kind, list(locs)), version=version)


def loc(**kw) -> Location:
    base = {"lat": 22.5, "lon": 114.05, "time": T0, "fixed": True, "gnss": frozenset({"BDS"}), "speed_kmh": 0.3}
    return Location(**(base | kw))


def test_signs_datum_and_extra_items():
    (r,) = records(frame(loc(lat=-33.9, lon=-70.6, extra=((0x25, b"\x00\x01"), (0xE1, b"")))))
    assert (r["lat"], r["lon"], r["datum"], r["speed_kmh"]) == (-33.9, -70.6, "CGCS2000", 0.3)
    note = json.loads(r["note"])
    assert note["extra"] == [[0x25, "0001"], [0xE1, ""]] and note["gnss"] == ["BDS"]
    assert "mileage_km" not in note


def test_blind_area_batch_skips_unfixed():
    payload = frame(loc(time=T0 - 60), loc(fixed=False, time=math.nan), loc(time=T0 - 30), kind=1, version=2019)
    b = jt808_records(payload, device="bus-7", received_at=T0)
    assert len(b) == 2 and b.ignored == 1
    assert b.t.tolist() == [T0 - 60, T0 - 30]
    assert [json.loads(n)["batch_type"] for n in b.note.tolist()] == [1, 1]


def test_unfixed_and_encrypted_latlon_ignored():
    b = jt808_records(frame(loc(fixed=False)), device="d", received_at=T0)
    assert len(b) == 0 and b.ignored == 1
    b = jt808_records(frame(loc(status=1 << 5)), device="d", received_at=T0)
    assert len(b) == 0 and b.ignored == 1


def test_fixed_without_time_refused():
    with pytest.raises(Refusal) as err:
        records(frame(loc(time=math.nan)))
    assert err.value.reason == Reason.OUT_OF_RANGE


@pytest.mark.parametrize("terminal", ["13912345678", "013912345678", "0000000013912345678"])
def test_identity_matches_without_leading_zeros(terminal):
    assert len(records(frame(loc(), version=2019), terminal=terminal)) == 1


def test_identity_mismatch():
    with pytest.raises(Refusal) as err:
        records(frame(loc()), terminal="13912345679")
    assert err.value.reason == Reason.IDENTITY_MISMATCH


@pytest.mark.parametrize(
    "payload",
    [
        build_frame(0x0002, PHONE, 1, b""),  # heartbeat
        build_frame(0x0200, PHONE, 1, encode_location(loc()), encrypted=True),
        build_frame(0x0200, PHONE, 1, encode_location(loc()), packet=(2, 1)),
    ],
)
def test_bad_schema(payload):
    with pytest.raises(Refusal) as err:
        records(payload)
    assert err.value.reason == Reason.BAD_SCHEMA


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", Reason.BAD_SYNTAX),
        (b"\x7e", Reason.BAD_SYNTAX),
        (b"\x7e\x7e", Reason.BAD_SYNTAX),
        (b"$GNGGA", Reason.BAD_SYNTAX),
        (frame(loc())[:-1], Reason.BAD_SYNTAX),
        (frame(loc())[:-2] + b"\x00\x7e", Reason.BAD_CHECKSUM),
    ],
)
def test_bad_payloads(payload, reason):
    with pytest.raises(Refusal) as err:
        records(payload)
    assert err.value.reason == reason


def test_several_frames_in_one_payload():
    payload = frame(loc(time=T0 - 10)) + frame(loc(time=T0), kind=0)
    assert [r["t"] for r in records(payload)] == [T0 - 10, T0]


def test_encode_one_row_is_0200_several_0704():
    one = jt808_records(HAND_WIRE, device="bus-7", received_at=T0)
    wire = encode_jt808(one, phone=PHONE, serial=0x7E)
    assert wire == HAND_WIRE  # alarm, status and items come back from the note
    two = Batch.concat([one, one])
    wire = encode_jt808(two, phone=PHONE, version=2019)
    assert wire[1:3] == b"\x07\x04"
    back = jt808_records(wire, device="bus-7", received_at=T0, terminal=PHONE)
    assert back.lat.tolist() == two.lat.tolist() and back.note.tolist() == [
        json.dumps(json.loads(n) | {"batch_type": 0}, sort_keys=True, separators=(",", ":")) for n in two.note
    ]
    with pytest.raises(ValueError):
        encode_jt808(Batch.empty(), phone=PHONE)


def test_encode_keeps_no_constellation_from_the_note():
    b = jt808_records(frame(loc(gnss=frozenset())), device="d", received_at=T0)
    assert json.loads(b.note[0])["gnss"] == [] and b.datum[0] == "WGS84"
    again = jt808_records(encode_jt808(b, phone=PHONE), device="d", received_at=T0)
    assert again.note.tolist() == b.note.tolist()


def test_encode_plain_position_rows():
    b = Batch.build(
        1,
        device="car",
        t=float(T0),
        quantity="position",
        lat=31.5,
        lon=-0.25,
        speed_kmh=float("nan"),
        datum="WGS84",
    )
    (r,) = records(encode_jt808(b, phone="42"))
    assert (r["lat"], r["lon"], r["speed_kmh"], r["course_deg"], r["alt_m"], r["datum"]) == (
        31.5,
        -0.25,
        0.0,
        0.0,
        0.0,
        "WGS84",
    )


@given(
    st.lists(
        st.tuples(
            st.integers(-90_000_000, 90_000_000),
            st.integers(-180_000_000, 180_000_000),
            st.integers(0, 2000),
            st.integers(0, 359),
            st.sampled_from(["CGCS2000", "WGS84"]),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_encode_decode_round_trip(rows):
    lat, lon, speed, course, datum = zip(*rows, strict=True)
    n = len(rows)
    b = Batch.build(
        n,
        device="car",
        t=[T0 + k for k in range(n)],
        quantity="position",
        lat=[x / 1e6 for x in lat],
        lon=[x / 1e6 for x in lon],
        speed_kmh=[x / 10 for x in speed],
        course_deg=[float(c) for c in course],
        alt_m=[float(k) for k in range(n)],
        datum=list(datum),
    )
    back = jt808_records(encode_jt808(b, phone=PHONE), device="car", received_at=T0, terminal=PHONE)
    for col in ("t", "lat", "lon", "speed_kmh", "course_deg", "alt_m", "datum"):
        assert getattr(back, col).tolist() == getattr(b, col).tolist(), col
    assert back.fix.tolist() == [1] * n
