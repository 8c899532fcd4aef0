"""Location report 0x0200 and batch upload 0x0704: hand-written bodies, additional items, vendor quirks."""

from __future__ import annotations

import math
from calendar import timegm

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.jt808.location import (
    BATCH_BLIND_AREA,
    BATCH_NORMAL,
    Location,
    bcd_time,
    decode_batch_location,
    decode_location,
    encode_batch_location,
    encode_bcd_time,
    encode_location,
)
from ingest.rejection import Reason, Refusal

T0 = timegm((2024, 5, 17, 0, 30, 15))  # 2024-05-17 08:30:15 GMT+8


def basic(
    status: str = "000c0002",
    lat: str = "0260f554",
    lon: str = "06f015a5",
    direction: str = "0167",
    time: str = "240517083015",
    alt: str = "0032",
) -> bytes:
    """A 28-byte basic information block, hex fields written out."""
    return bytes.fromhex("00000001" + status + lat + lon + alt + "025d" + direction + time)


def test_hand_written_basic_information_and_items():
    body = basic() + bytes.fromhex("010400003039 020201f4 30011f 31010b")
    loc = decode_location(body)
    assert (loc.alarm, loc.status, loc.lat, loc.lon) == (1, 0x000C0002, 39.908692, 116.397477)
    assert (loc.altitude_m, loc.speed_kmh, loc.direction_deg, loc.time) == (50, 60.5, 359, T0)
    assert loc.fixed and loc.gnss == {"GPS", "BDS"} and loc.datum == "WGS84"
    assert (loc.mileage_km, loc.fuel_l, loc.signal, loc.satellites, loc.extra) == (1234.5, 50.0, 31, 11, ())
    assert encode_location(loc) == body


def test_south_west_and_bds_only():
    # status: positioned, south, west, BDS only
    loc = decode_location(basic(status="0008000e"))
    assert (loc.lat, loc.lon, loc.gnss, loc.datum) == (-39.908692, -116.397477, {"BDS"}, "CGCS2000")


def test_not_positioned_and_gnss_bits():
    loc = decode_location(basic(status="003c0000"))
    assert not loc.fixed and loc.gnss == {"GPS", "BDS", "GLONASS", "Galileo"} and loc.datum == "WGS84"


def test_unknown_and_zero_length_items_kept_raw():
    items = bytes.fromhex("25 04 00000001  e1 00  2a 02 0003  00 00  fe 03 414243")
    loc = decode_location(basic() + items)
    assert loc.extra == ((0x25, b"\0\0\0\1"), (0xE1, b""), (0x2A, b"\0\3"), (0, b""), (0xFE, b"ABC"))
    assert loc.mileage_km is None
    assert decode_location(encode_location(loc)) == loc


def test_known_items_of_vendor_lengths_kept_raw():
    # mileage sent as a WORD, signal as two bytes, an empty satellites item: kept raw, never refused
    items = bytes.fromhex("01 02 0102  30 02 0001  31 00  02 02 0064")
    loc = decode_location(basic() + items)
    assert (loc.mileage_km, loc.signal, loc.satellites, loc.fuel_l) == (None, None, None, 10.0)
    assert loc.extra == ((0x01, b"\1\2"), (0x30, b"\0\1"), (0x31, b""))


def test_repeated_known_item_first_wins_rest_raw():
    loc = decode_location(basic() + bytes.fromhex("30 01 05  30 01 07"))
    assert loc.signal == 5 and loc.extra == ((0x30, b"\x07"),)


@pytest.mark.parametrize("items", ["01", "01 04 0000", "30 05 00", "25 ff" + "00" * 10])
def test_item_running_past_body(items):
    with pytest.raises(Refusal) as err:
        decode_location(basic() + bytes.fromhex(items))
    assert err.value.reason == Reason.BAD_SYNTAX


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"lat": "055d4a81"}, Reason.OUT_OF_RANGE),  # 90.000001
        ({"lon": "0aba9501"}, Reason.OUT_OF_RANGE),  # 180.000001
        ({"direction": "0169"}, Reason.OUT_OF_RANGE),  # 361
        ({"time": "240230083015"}, Reason.OUT_OF_RANGE),  # 30 February
        ({"time": "230229000000"}, Reason.OUT_OF_RANGE),  # 2023 is not a leap year
        ({"time": "241301000000"}, Reason.OUT_OF_RANGE),  # month 13
        ({"time": "240100000000"}, Reason.OUT_OF_RANGE),  # day 0
        ({"time": "240101240000"}, Reason.OUT_OF_RANGE),  # hour 24
        ({"time": "240101006000"}, Reason.OUT_OF_RANGE),  # minute 60
        ({"time": "2401010000a0"}, Reason.BAD_SYNTAX),  # nibble above 9
        ({"time": "f40101000000"}, Reason.BAD_SYNTAX),
    ],
)
def test_refusals(kwargs, reason):
    with pytest.raises(Refusal) as err:
        decode_location(basic(**kwargs))
    assert err.value.reason == reason


def test_short_body():
    with pytest.raises(Refusal) as err:
        decode_location(basic()[:27])
    assert err.value.reason == Reason.BAD_SYNTAX


def test_vendor_quirks():
    assert decode_location(basic(direction="0168")).direction_deg == 0  # 360 read as 0
    assert math.isnan(decode_location(basic(time="000000000000")).time)  # no time before the first fix
    assert decode_location(basic(alt="ff9c")).altitude_m == -100  # two's complement below sea level
    assert decode_location(basic(alt="fc17")).altitude_m == 0xFC17  # beyond -1000 m: read as sent
    assert decode_location(basic(lat="055d4a80", lon="0aba9500")).lat == 90.0  # the limits themselves


def test_bcd_time():
    assert bcd_time(bytes.fromhex("240229235959")) == timegm((2024, 2, 29, 15, 59, 59))
    assert bcd_time(bytes.fromhex("000101000000")) == timegm((1999, 12, 31, 16, 0, 0))
    assert encode_bcd_time(T0) == bytes.fromhex("240517083015")
    assert encode_bcd_time(math.nan) == bytes(6)
    with pytest.raises(ValueError):
        encode_bcd_time(0.0)  # 1970


def test_encode_bad_values():
    for loc in (
        Location(lat=91.0, time=T0),
        Location(direction_deg=360, time=T0),
        Location(speed_kmh=7000.0, time=T0),
        Location(mileage_km=1e10, time=T0),
        Location(extra=((0x25, bytes(256)),), time=T0),
    ):
        with pytest.raises(ValueError):
            encode_location(loc)
    with pytest.raises(ValueError):
        Location(gnss=frozenset({"QZSS"}))


def test_fields_set_status_bits():
    loc = Location(status=0x1, lat=-1.0, lon=-2.0, fixed=True, gnss=frozenset({"BDS"}))
    assert loc.status == 0x1 | 0x2 | 0x4 | 0x8 | (1 << 19)
    assert Location(status=0x000C0002).fixed and Location(status=0x000C0002).gnss == {"GPS", "BDS"}


locations = st.builds(
    Location,
    alarm=st.integers(0, 2**32 - 1),
    status=st.integers(0, 2**32 - 1),
    lat=st.integers(-90_000_000, 90_000_000).map(lambda x: x / 1e6),
    lon=st.integers(-180_000_000, 180_000_000).map(lambda x: x / 1e6),
    altitude_m=st.integers(-1000, 0xFC17),
    speed_kmh=st.integers(0, 0xFFFF).map(lambda x: x / 10),
    direction_deg=st.integers(0, 359),
    time=st.one_of(st.just(math.nan), st.integers(T0 - 10**8, T0 + 10**8).map(float)),
    fixed=st.booleans(),
    gnss=st.frozensets(st.sampled_from(["GPS", "BDS", "GLONASS", "Galileo"])),
    mileage_km=st.one_of(st.none(), st.integers(0, 2**32 - 1).map(lambda x: x / 10)),
    fuel_l=st.one_of(st.none(), st.integers(0, 0xFFFF).map(lambda x: x / 10)),
    signal=st.one_of(st.none(), st.integers(0, 255)),
    satellites=st.one_of(st.none(), st.integers(0, 255)),
    extra=st.lists(st.tuples(st.integers(0x03, 0x2F), st.binary(max_size=8)), max_size=4).map(
        tuple
    ),  # ids no known item uses
)


def _same(a: Location, b: Location) -> bool:
    nan = math.isnan(a.time) and math.isnan(b.time)
    return (a == b) if not nan else a.__dict__ | {"time": 0} == b.__dict__ | {"time": 0}


@given(locations)
def test_location_round_trip(loc):
    assert _same(decode_location(encode_location(loc)), loc)


@given(st.sampled_from([BATCH_NORMAL, BATCH_BLIND_AREA]), st.lists(locations, max_size=5))
def test_batch_round_trip(kind, locs):
    got_kind, got = decode_batch_location(encode_batch_location(kind, locs))
    assert got_kind == kind and len(got) == len(locs)
    assert all(_same(a, b) for a, b in zip(got, locs, strict=True))


def test_hand_written_blind_area_batch():
    one, two = basic(), basic(status="0008000e") + bytes.fromhex("3101 07")
    body = bytes.fromhex("0002 01") + len(one).to_bytes(2, "big") + one + len(two).to_bytes(2, "big") + two
    kind, locs = decode_batch_location(body)
    assert kind == BATCH_BLIND_AREA
    assert [(x.lat, x.satellites) for x in locs] == [(39.908692, None), (-39.908692, 7)]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("0001", Reason.BAD_SYNTAX),
        ("0001 02 001c" + basic().hex(), Reason.BAD_SCHEMA),  # type 2
        ("0002 00 001c" + basic().hex(), Reason.BAD_SYNTAX),  # one item of two
        ("0001 00 001d" + basic().hex(), Reason.BAD_SYNTAX),  # item length past the body
        ("0001 00 001c" + basic().hex() + "00", Reason.BAD_SYNTAX),  # trailing byte
        ("0001 00 001b" + basic().hex()[:-2], Reason.BAD_SYNTAX),  # item shorter than basic information
        ("0001 00 001c" + basic(direction="0200").hex(), Reason.OUT_OF_RANGE),
    ],
)
def test_batch_refusals(body, reason):
    with pytest.raises(Refusal) as err:
        decode_batch_location(bytes.fromhex(body))
    assert err.value.reason == reason


def test_empty_batch():
    assert decode_batch_location(bytes.fromhex("0000 00")) == (0, [])
    with pytest.raises(ValueError):
        encode_batch_location(2, [])


@given(st.binary(max_size=120))
def test_arbitrary_bodies_only_refused(body):
    for decode in (decode_location, decode_batch_location):
        try:
            decode(body)
        except Refusal as bad:
            assert bad.reason in (Reason.BAD_SYNTAX, Reason.BAD_SCHEMA, Reason.OUT_OF_RANGE)
