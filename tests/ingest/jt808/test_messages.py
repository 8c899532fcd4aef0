"""Link-level messages: registration (2011/2013/2019 layouts and vendor quirks), replies, authentication, text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.jt808.header import Header
from ingest.jt808.messages import (
    REG_NO_TERMINAL,
    REG_OK,
    REGISTRATION_LAYOUTS,
    RESULT_UNSUPPORTED,
    TEXT_DISPLAY,
    TEXT_SERVICE,
    TEXT_TTS,
    Authentication,
    GeneralReply,
    Registration,
    RegistrationReply,
    TextMessage,
    decode_authentication,
    decode_general_reply,
    decode_registration,
    decode_registration_reply,
    decode_text,
    encode_authentication,
    encode_general_reply,
    encode_registration,
    encode_registration_reply,
    encode_text,
    gbk_cut,
    registration_layout,
)
from ingest.rejection import Reason, Refusal


def header(version: int = 2013, msg_id: int = 0x0100) -> Header:
    phone = "013912345678" if version == 2013 else "00000000013912345678"
    return Header(msg_id, phone, 1, version, 1 if version == 2019 else 0, False, 0)


PLATE = "京A12345"  # GBK: bea9 41 3132333435


def test_hand_written_2013_registration():
    body = bytes.fromhex(
        "002c 0064"  # province 44 (Guangdong), city 100
        "3730313031"  # maker "70101"
        + "424a2d3031".ljust(40, "0")  # model "BJ-01", 0x00-padded to 20
        + "43303030303031"  # terminal id "C000001"
        + "01"  # blue plate
        + "bea941313233343500"  # 京A12345, a vendor's trailing NUL
    )
    reg = decode_registration(body, header())
    assert reg == Registration(44, 100, "70101", "BJ-01", "C000001", 1, PLATE, 2013)


@pytest.mark.parametrize("layout", [2011, 2013, 2019])
@pytest.mark.parametrize("version", [2013, 2019])
def test_registration_layouts_by_length(layout, version):
    n_maker, n_model, n_id = REGISTRATION_LAYOUTS[layout]
    reg = Registration(44, 100, "M" * n_maker, "型号" + "x" * (n_model - 4), "T" * n_id, 1, PLATE, layout)
    assert decode_registration(encode_registration(reg), header(version)) == reg


def test_registration_layout_choice():
    assert registration_layout(37 + 8, 2013) == 2013
    assert registration_layout(25 + 8, 2013) == 2011
    assert registration_layout(76 + 8, 2013) == 2019  # 2019 body behind a 2013 header (vendor quirk)
    assert registration_layout(76 + 8, 2019) == 2019
    assert registration_layout(37 + 8, 2019) == 2013  # 2013 body from a 2019 terminal (vendor quirk)
    assert registration_layout(37 + 200, 2013) == 2013  # nothing plausible: the header's layout
    with pytest.raises(Refusal) as err:
        registration_layout(24, 2019)
    assert err.value.reason == Reason.BAD_SYNTAX


def test_registration_strips_nul_and_spaces():
    body = bytes(4) + b"AB   " + b"\0" * 8 + b" ID\0\0\0\0" + b"\x00" + b"LSVAB12"
    reg = decode_registration(body, header())
    assert (reg.maker, reg.model, reg.terminal_id, reg.plate_colour, reg.plate, reg.layout) == (
        "AB",
        "",
        "ID",
        0,
        "LSVAB12",  # colour 0: the VIN
        2011,
    )


def test_registration_bad_gbk():
    body = bytes(4) + b"\xff\xff\x00\x00\x00" + bytes(20 + 7 + 1)
    with pytest.raises(Refusal) as err:
        decode_registration(body, header())
    assert err.value.reason == Reason.BAD_SYNTAX and err.value.field == "registration.maker"


def test_registration_encode_refuses_what_does_not_fit():
    with pytest.raises(ValueError):
        encode_registration(Registration(1, 1, "TOOLONG", "", "", 1, ""))
    with pytest.raises(ValueError):
        encode_registration(Registration(1, 1, "", "", "", 1, "🚗"))
    with pytest.raises(ValueError):
        encode_registration(Registration(70000, 1, "", "", "", 1, ""))


def test_registration_reply():
    ok = RegistrationReply(7, REG_OK, "ABC123")
    assert encode_registration_reply(ok) == bytes.fromhex("0007 00 414243313233")
    assert decode_registration_reply(encode_registration_reply(ok)) == ok
    no = RegistrationReply(8, REG_NO_TERMINAL, "ignored")
    assert encode_registration_reply(no) == bytes.fromhex("0008 04")
    assert decode_registration_reply(bytes.fromhex("0008 04")) == RegistrationReply(8, REG_NO_TERMINAL, "")
    with pytest.raises(Refusal):
        decode_registration_reply(b"\x00\x01")


def test_general_reply():
    reply = GeneralReply(0x1234, 0x0200, RESULT_UNSUPPORTED)
    body = encode_general_reply(reply)
    assert body == bytes.fromhex("1234 0200 03")
    assert decode_general_reply(body) == reply
    assert decode_general_reply(body + b"\x00") == reply  # a vendor's extra byte
    with pytest.raises(Refusal):
        decode_general_reply(body[:4])
    with pytest.raises(ValueError):
        encode_general_reply(GeneralReply(1, 2, 256))


def test_authentication_2013_and_2019():
    auth = Authentication("ABC123", "860123456789012", "V1.2.3")
    body19 = encode_authentication(auth, 2019)
    assert body19[:7] == b"\x06ABC123" and len(body19) == 1 + 6 + 15 + 20
    assert decode_authentication(body19, header(2019)) == auth
    assert decode_authentication(encode_authentication(auth), header(2013)) == Authentication("ABC123")
    # a 2019 terminal sending the 2013 body
    assert decode_authentication(b"ABC123", header(2019)) == Authentication("ABC123")
    # a 2019 body behind a 2013 header: the length byte cannot start a text code
    assert decode_authentication(body19, header(2013)) == auth


def test_authentication_bad_gbk():
    with pytest.raises(Refusal) as err:
        decode_authentication(b"\x81", header())
    assert err.value.reason == Reason.BAD_SYNTAX


def test_text_2013_and_2019():
    msg = TextMessage(TEXT_DISPLAY | TEXT_TTS, "红色预警：内涝，人民路，请绕行", TEXT_SERVICE)
    body13 = encode_text(msg)
    assert body13[0] == 0x0C and body13[1:] == msg.text.encode("gbk")
    assert decode_text(body13, header(2013, 0x8300)) == TextMessage(0x0C, msg.text)
    body19 = encode_text(msg, version=2019)
    assert body19[:2] == b"\x0c\x02"
    assert decode_text(body19, header(2019, 0x8300)) == msg


def test_text_cut_and_replaced():
    text = "暴雨" * 600  # 2,400 GBK bytes
    body = encode_text(TextMessage(0, text), max_bytes=1001)
    assert len(body) == 1 + 1000 and body[1:].decode("gbk") == "暴雨" * 250
    assert gbk_cut("a暴", 2) == b"a"  # never half a character
    assert encode_text(TextMessage(0, "ok🚗")) == b"\x00ok?"
    with pytest.raises(ValueError):
        encode_text(TextMessage(256, ""))
    for bad in (b"", b"\x00"):
        with pytest.raises(Refusal):
            decode_text(bad, header(2019, 0x8300))
    with pytest.raises(Refusal):
        decode_text(b"", header(2013, 0x8300))


def gbk_text(chars: int) -> st.SearchStrategy[str]:
    """GBK text of at most ``chars`` characters (2 bytes at most each), no edge spaces (stripped on decoding)."""
    return st.text(st.sampled_from("ABCxyz0129 京沪粤警报预暴雨路"), max_size=chars).map(str.strip)


@given(
    province=st.integers(0, 0xFFFF),
    city=st.integers(0, 0xFFFF),
    maker=gbk_text(2),
    model=gbk_text(4),
    terminal_id=gbk_text(3),
    colour=st.integers(1, 255),
    plate=gbk_text(5),  # 2011 and 2013 bodies look alike from a 2011 plate of 12 bytes on
    layout=st.sampled_from([2011, 2013, 2019]),
)
def test_registration_round_trip(province, city, maker, model, terminal_id, colour, plate, layout):
    reg = Registration(province, city, maker, model, terminal_id, colour, plate, layout)
    assert decode_registration(encode_registration(reg), header(2019 if layout == 2019 else 2013)) == reg


@given(st.binary(max_size=120), st.sampled_from([2013, 2019]))
def test_arbitrary_bodies_only_refused(body, version):
    for decode in (
        decode_registration,
        decode_authentication,
        decode_text,
        decode_general_reply,
        decode_registration_reply,
    ):
        try:
            decode(body, header(version))
        except Refusal as bad:
            assert bad.reason == Reason.BAD_SYNTAX
