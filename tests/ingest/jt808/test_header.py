"""JT/T 808 headers and whole frames: hand-written frames, 2013/2019 layouts, vendor quirks, refusals."""

from __future__ import annotations

from functools import reduce

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.jt808.framing import MAX_BODY, check_code, escape
from ingest.jt808.header import Header, build_frame, parse_frame
from ingest.rejection import Reason, Refusal

# 0x0200 from terminal 013912345678, serial 0x007e (escaped on the wire as 00 7d 02), body 44 bytes:
# alarm 0, status 0x000c0002 (positioned, GPS + BDS), lat 39.908692 N, lon 116.397477 E, 50 m, 60.5 km/h,
# 359 degree, 2024-05-17 08:30:15 GMT+8, items mileage 1234.5 km, fuel 50.0 L, signal 31, 11 satellites.
HAND_HEADER = "0200 002c 013912345678 007e"
HAND_BODY = (
    "00000000 000c0002 0260f554 06f015a5 0032 025d 0167 240517083015 01 04 00003039  02 02 01f4  30 01 1f  31 01 0b"
)
HAND_CHECK = 0x17  # XOR of header and body, worked out byte by byte (and checked below)
HAND_WIRE = bytes.fromhex(
    "7e 0200 002c 013912345678 007d02" + HAND_BODY + "17 7e"
)  # the serial's 0x7e escaped as 0x7d 0x02


def test_hand_written_location_frame():
    raw = bytes.fromhex(HAND_HEADER + HAND_BODY)
    assert reduce(lambda a, b: a ^ b, raw) == HAND_CHECK == check_code(raw)
    msg = parse_frame(HAND_WIRE[1:-1])
    assert msg.header == Header(0x0200, "013912345678", 0x7E, 2013, 0, False, 44)
    assert msg.header.terminal == "13912345678"
    assert msg.body == bytes.fromhex(HAND_BODY)
    assert build_frame(0x0200, "13912345678", 0x7E, msg.body) == HAND_WIRE


def test_hand_written_2019_heartbeat():
    # 0x0002, attributes 0x4000 (2019, empty body), protocol version 1, phone BCD[10], serial 5
    raw = bytes.fromhex("0002 4000 01 00000000013912345678 0005")
    wire = b"\x7e" + raw + bytes([check_code(raw)]) + b"\x7e"
    assert check_code(raw) == 0x76
    msg = parse_frame(wire[1:-1])
    assert msg.header == Header(0x0002, "00000000013912345678", 5, 2019, 1, False, 0)
    assert msg.header.terminal == "13912345678"
    assert msg.body == b""
    assert build_frame(0x0002, "13912345678", 5, b"", version=2019) == wire


def _raw(header_hex: str, body: bytes = b"") -> bytes:
    raw = bytes.fromhex(header_hex) + body
    return escape(raw + bytes([check_code(raw)]))


def test_quirk_version_bit_with_six_byte_phone():
    msg = parse_frame(_raw("0002 4000 013912345678 0009"))
    assert (msg.header.version, msg.header.phone, msg.header.serial, msg.header.protocol_version) == (
        2013,
        "013912345678",
        9,
        0,
    )


def test_quirk_no_version_bit_with_ten_byte_phone():
    msg = parse_frame(_raw("0102 0003 02 00000000013912345678 0001", b"abc"))
    assert (msg.header.version, msg.header.protocol_version, msg.header.terminal) == (2019, 2, "13912345678")
    assert msg.body == b"abc"


def test_subpackage_fields():
    for version, phone in ((2013, "013912345678"), (2019, "00000000013912345678")):
        wire = build_frame(0x0704, "13912345678", 40, b"xyz", version=version, packet=(3, 2))
        h = parse_frame(wire[1:-1]).header
        assert (h.packet_total, h.packet_index, h.phone, h.body_length, h.subpackaged) == (3, 2, phone, 3, True)


@pytest.mark.parametrize("packet", ["0000 0000", "0003 0000", "0002 0003"])
def test_bad_packet_fields(packet):
    with pytest.raises(Refusal) as err:
        parse_frame(_raw("0704 2000 013912345678 0001" + packet))
    assert err.value.reason == Reason.BAD_SYNTAX


def test_encrypted_body_left_as_is():
    wire = build_frame(0x0200, "1", 1, b"\x01\x02secret", encrypted=True)
    msg = parse_frame(wire[1:-1])
    assert msg.header.encrypted and msg.body == b"\x01\x02secret"


def test_bad_check_code():
    wire = bytearray(build_frame(0x0002, "13912345678", 1, b""))
    wire[-2] ^= 0x01
    with pytest.raises(Refusal) as err:
        parse_frame(bytes(wire[1:-1]))
    assert err.value.reason == Reason.BAD_CHECKSUM


@pytest.mark.parametrize(
    ("header_hex", "body"),
    [
        ("0200 0005 013912345678 0001", b"abc"),  # length says 5, 3 sent
        ("0200 0001 013912345678 0001", b"abc"),  # length says 1, 3 sent
        ("0002 0000 01391234567a 0001", b""),  # BCD nibble above 9
        ("0002 0000 0139", b""),  # too short
    ],
)
def test_bad_syntax(header_hex, body):
    with pytest.raises(Refusal) as err:
        parse_frame(_raw(header_hex, body))
    assert err.value.reason == Reason.BAD_SYNTAX


def test_empty_and_bad_escape_refused():
    for wire in (b"", b"\x7d", b"\x00\x02\x7d\x03"):
        with pytest.raises(Refusal):
            parse_frame(wire)


def test_zero_phone_terminal():
    h = parse_frame(build_frame(0x0002, "0", 0, b"")[1:-1]).header
    assert (h.phone, h.terminal) == ("000000000000", "0")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"body": bytes(MAX_BODY + 1)},
        {"phone": "1234567890123"},
        {"phone": "12a4"},
        {"phone": "１２３"},  # full-width digits are not BCD digits
        {"serial": 70000},
        {"msg_id": -1},
        {"version": 2011},
        {"packet": (2, 3)},
        {"packet": (0, 1)},
    ],
)
def test_build_frame_bad_arguments(kwargs):
    args = {"msg_id": 2, "phone": "1", "serial": 0, "body": b""} | kwargs
    version = args.pop("version", 2013)
    with pytest.raises(ValueError):
        build_frame(**args, version=version)


@given(
    msg_id=st.integers(0, 0xFFFF),
    phone=st.text("0123456789", min_size=1, max_size=12),
    serial=st.integers(0, 0xFFFF),
    body=st.binary(max_size=MAX_BODY),
    version=st.sampled_from([2013, 2019]),
    protocol=st.integers(0, 255),
    packet=st.one_of(
        st.just((0, 0)), st.integers(1, 0xFFFF).flatmap(lambda t: st.tuples(st.just(t), st.integers(1, t)))
    ),
)
def test_build_parse_round_trip(msg_id, phone, serial, body, version, protocol, packet):
    wire = build_frame(msg_id, phone, serial, body, version=version, protocol_version=protocol, packet=packet)
    assert wire[0] == wire[-1] == 0x7E and 0x7E not in wire[1:-1]
    msg = parse_frame(wire[1:-1])
    h = msg.header
    assert (h.msg_id, h.serial, h.version, h.body_length, (h.packet_total, h.packet_index)) == (
        msg_id,
        serial,
        version,
        len(body),
        packet,
    )
    assert h.protocol_version == (protocol if version == 2019 else 0)
    assert h.terminal == (phone.lstrip("0") or "0")
    assert msg.body == body and not h.encrypted


@given(st.binary(max_size=80))
def test_arbitrary_bytes_only_refused(data):
    try:
        parse_frame(data)
    except Refusal as bad:
        assert bad.reason in (Reason.BAD_SYNTAX, Reason.BAD_CHECKSUM)
