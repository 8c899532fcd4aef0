"""Self-tests of the independent JT/T 808 encoder (tests/support/jt808_encoder.py): the standard's escaping example,
hand-computed check codes and frames, field lengths of every body, and its own round trips."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import jt808_encoder as enc

QUICK = settings(max_examples=200, deadline=None)


def test_escaping_example_of_the_standard():
    """JT/T 808-2013 section 4.4.2: 0x30 0x7e 0x08 0x7d 0x55 is sent as 0x7e 0x30 0x7d 0x02 0x08 0x7d 0x01 0x55 0x7e."""
    assert enc.escape(bytes([0x30, 0x7E, 0x08, 0x7D, 0x55])) == bytes([0x30, 0x7D, 0x02, 0x08, 0x7D, 0x01, 0x55])
    assert enc.unescape(bytes([0x30, 0x7D, 0x02, 0x08, 0x7D, 0x01, 0x55])) == bytes([0x30, 0x7E, 0x08, 0x7D, 0x55])


@pytest.mark.parametrize("bad", [b"\x7d", b"\x01\x7d\x03", b"\x7d\x00", b"\x7d\x7e"])
def test_bad_escapes_are_refused(bad):
    with pytest.raises(ValueError):
        enc.unescape(bad)


@given(st.binary(max_size=300))
@QUICK
def test_escape_round_trip_and_no_flag_inside(data):
    escaped = enc.escape(data)
    assert 0x7E not in escaped
    assert len(escaped) == len(data) + data.count(0x7E) + data.count(0x7D)
    assert enc.unescape(escaped) == data


def test_heartbeat_2013_by_hand():
    """Header 00 02 | 00 00 | 01 39 12 34 56 78 | 00 01; XOR = 02^01^39^12^34^56^78^01 = 0x33."""
    expected = bytes.fromhex("7e 0002 0000 013912345678 0001 33 7e")
    assert enc.frame(0x0002, "13912345678", 1) == expected
    assert enc.xor(expected[1:-2]) == 0x33


def test_heartbeat_2019_by_hand():
    """Attributes 0x4000 (version bit), protocol version 1, BCD[10] phone; XOR = 0x72."""
    expected = bytes.fromhex("7e 0002 4000 01 00000000013912345678 0001 72 7e")
    assert enc.frame(0x0002, "13912345678", 1, version=2019) == expected


def test_check_code_that_needs_escaping():
    """A serial 0x007e: 02 ^ 01 ^ 39 ^ 12 ^ 34 ^ 56 ^ 78 ^ 7e = 0x4c; serial 0x007d escapes as 7d 01."""
    assert enc.frame(0x0002, "13912345678", 0x7E) == bytes.fromhex("7e 0002 0000 013912345678 007d02 4c 7e")
    assert enc.frame(0x0002, "13912345678", 0x7D) == bytes.fromhex("7e 0002 0000 013912345678 007d01 4f 7e")


def test_subpackage_header_layout():
    frames = enc.subpackages(0x0704, "13912345678", 9, bytes(range(250)), 100)
    assert len(frames) == 3
    parsed = [enc.parse(f) for f in frames]
    assert [(p.packet_total, p.packet_index, p.serial) for p in parsed] == [(3, 1, 9), (3, 2, 10), (3, 3, 11)]
    assert b"".join(p.body for p in parsed) == bytes(range(250))
    raw = enc.unescape(frames[0][1:-1])
    assert raw[2:4] == (0x2000 | 100).to_bytes(2, "big") and raw[12:16] == bytes.fromhex("00030001")


def test_bcd_time_is_beijing_time():
    stamp = datetime(2024, 1, 1, 19, 4, 5, tzinfo=UTC).timestamp()  # 2024-01-02 03:04:05 in GMT+8
    assert enc.bcd_time(int(stamp)) == bytes.fromhex("240102030405")
    assert enc.time_of_bcd(bytes.fromhex("240102030405")) == stamp


def test_location_body_layout():
    fix = enc.Fix(
        alarm=1,
        status=enc.STATUS_FIXED | enc.GNSS_BITS["BDS"],
        lat_e6=31_240_500,
        lon_e6=121_485_500,
        altitude_m=12,
        speed_dkmh=456,
        direction_deg=270,
        time=1_704_135_845,
        items=(enc.mileage_item(12345), enc.fuel_item(500), enc.signal_item(20), enc.satellites_item(9)),
    )
    body = enc.location_body(fix)
    assert body[:8] == bytes.fromhex("00000001 00080002")
    assert body[8:16] == (31_240_500).to_bytes(4, "big") + (121_485_500).to_bytes(4, "big")
    assert body[16:22] == bytes.fromhex("000c 01c8 010e")
    assert body[28:] == bytes.fromhex("0104 00003039 0202 01f4 3001 14 3101 09")
    assert enc.read_location(body) == fix


@pytest.mark.parametrize(("edition", "fixed"), [(2011, 25), (2013, 37), (2019, 76)])
def test_registration_field_lengths(edition, fixed):
    body = enc.registration_body(31, 100, "ABCDE", "M1", "ID1", 1, "沪A12345", edition=edition)
    assert len(body) == fixed + len("沪A12345".encode("gbk"))
    assert body[4:9] == b"ABCDE"
    assert enc.read_registration(body, edition)["plate"] == "沪A12345"


def test_authentication_bodies():
    assert enc.authentication_body("abc") == b"abc"
    body = enc.authentication_body("abc", version=2019, imei="123456789012345", software_version="v1")
    assert body == b"\x03abc" + b"123456789012345" + b"v1" + b"\0" * 18
    assert enc.read_authentication(body, 2019) == {
        "auth_code": "abc",
        "imei": "123456789012345",
        "software_version": "v1",
    }


def test_replies_and_text():
    assert enc.general_reply_body(0x1234, 0x0200, 0) == bytes.fromhex("1234 0200 00")
    assert enc.read_general_reply(bytes.fromhex("1234 0200 04")) == (0x1234, 0x0200, 4)
    assert enc.registration_reply_body(7, 0, "KEY") == b"\x00\x07\x00KEY"
    assert enc.registration_reply_body(7, 4, "KEY") == b"\x00\x07\x04"
    assert enc.read_registration_reply(b"\x00\x07\x00KEY") == (7, 0, "KEY")
    assert enc.text_body(0x08, "暴雨") == b"\x08" + "暴雨".encode("gbk")
    assert enc.read_text(enc.text_body(0x08, "暴雨", version=2019, text_type=2), 2019) == (0x08, 2, "暴雨")


def test_quirk_layouts():
    short = enc.unescape(enc.quirk_2019_bit_short_phone(0x0002, "13912345678", 1)[1:-1])
    assert len(short) == 13 and short[2:4] == b"\x40\x00" and short[4:10] == bytes.fromhex("013912345678")
    long = enc.unescape(enc.quirk_2013_bit_long_phone(0x0002, "13912345678", 1)[1:-1])
    assert len(long) == 18 and long[2:4] == b"\x00\x00" and long[5:15] == bytes.fromhex("00000000013912345678")
    reg = enc.parse(
        enc.quirk_registration_2019_short_fields(
            "13912345678",
            1,
            province=31,
            city=100,
            maker="ABCDE",
            model="M",
            terminal_id="T",
            plate_colour=2,
            plate="沪A1",
        )
    )
    assert reg.version == 2019 and len(reg.body) == 37 + 4


@given(
    st.text("0123456789", min_size=1, max_size=20),
    st.integers(0, 0xFFFF),
    st.sampled_from([2013, 2019]),
    st.binary(max_size=200),
)
@QUICK
def test_parse_reads_back_frame(phone, serial, version, body):
    if version == 2013 and len(phone) > 12:
        phone = phone[-12:]
    got = enc.parse(enc.frame(0x0200, phone, serial, body, version=version))
    assert (got.msg_id, got.serial, got.version, got.body) == (0x0200, serial, version, body)
    assert got.phone == phone.rjust(12 if version == 2013 else 20, "0")
