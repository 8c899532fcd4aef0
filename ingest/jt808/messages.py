"""JT/T 808 link-level message bodies: ids, dataclasses, ``decode_*(body, header)`` and ``encode_*`` (bodies only).

Sections of JT/T 808-2013 (-2019): general replies 8.1/8.2, heartbeat 8.3, registration 8.5 (0x0100) and its
reply 8.6 (0x8100), deregistration 8.7, authentication 8.8 (0x0102; 2019 8.9), text delivery 8.34 (0x8300).
Strings (STRING, BYTE[n]) are GBK; fixed-length fields are right-padded with 0x00, which is stripped with spaces
on decoding. ``decode_*`` raise only ``Refusal`` (GBK errors are ``bad_syntax``); ``encode_*`` raise
``ValueError`` for values that do not fit.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ingest.jt808.header import Header
from ingest.rejection import Reason, Refusal

TERMINAL_REPLY = 0x0001
HEARTBEAT = 0x0002
DEREGISTRATION = 0x0003
REGISTRATION = 0x0100
AUTHENTICATION = 0x0102
LOCATION = 0x0200
BATCH_LOCATION = 0x0704
PLATFORM_REPLY = 0x8001
REGISTRATION_REPLY = 0x8100
TEXT = 0x8300

RESULT_OK, RESULT_FAILURE, RESULT_BAD_MESSAGE, RESULT_UNSUPPORTED, RESULT_ALARM_CONFIRMED = 0, 1, 2, 3, 4
"""General reply results (0x8001; the terminal's 0x0001 uses 0-3)."""
REG_OK, REG_VEHICLE_TAKEN, REG_NO_VEHICLE, REG_TERMINAL_TAKEN, REG_NO_TERMINAL = 0, 1, 2, 3, 4
"""Registration reply results (0x8100)."""
TEXT_EMERGENCY, TEXT_DISPLAY, TEXT_TTS = 0x01, 0x04, 0x08
"""Text flag bits (0x8300): emergency, terminal display, TTS read-out."""
TEXT_NOTICE, TEXT_SERVICE = 1, 2
"""2019 text types."""

REGISTRATION_LAYOUTS = {2011: (5, 8, 7), 2013: (5, 20, 7), 2019: (11, 30, 30)}
"""Lengths of maker id, model, terminal id by version [byte]."""
MAX_PLATE = 32
"""Longest plausible plate (or VIN) [byte]: a body that leaves more is taken for another layout first."""
IMEI_LENGTH, SOFTWARE_LENGTH = 15, 20
"""2019 authentication fields [byte]."""

_WORD2 = struct.Struct(">HH")
_REPLY = struct.Struct(">HHB")
_REG_REPLY = struct.Struct(">HB")


def _gbk(raw: bytes, field_name: str) -> str:
    """GBK text with NUL padding and spaces stripped; ``Refusal(bad_syntax)`` if it is not GBK."""
    try:
        return raw.decode("gbk").strip("\x00 ")
    except UnicodeDecodeError:
        raise Refusal(Reason.BAD_SYNTAX, f"{field_name} is not GBK text", field_name) from None


def _to_gbk(text: str, field_name: str, length: int | None = None) -> bytes:
    """``text`` in GBK, right-padded with 0x00 to ``length`` when given; ``ValueError`` if it does not fit."""
    try:
        raw = text.encode("gbk")
    except UnicodeEncodeError:
        raise ValueError(f"{field_name} {text!r} is not GBK") from None
    if length is None:
        return raw
    if len(raw) > length:
        raise ValueError(f"{field_name} {text!r} is longer than {length} bytes")
    return raw.ljust(length, b"\x00")


@dataclass(frozen=True)
class GeneralReply:
    """General reply, terminal 0x0001 or platform 0x8001: the serial and id of the message answered, a result."""

    reply_serial: int
    reply_id: int
    result: int


def decode_general_reply(body: bytes, header: Header | None = None) -> GeneralReply:
    """0x0001/0x8001 body (5 bytes; vendors' extra bytes are ignored)."""
    if len(body) < _REPLY.size:
        raise Refusal(Reason.BAD_SYNTAX, f"general reply of {len(body)} bytes, needs 5", "reply")
    return GeneralReply(*_REPLY.unpack_from(body))


def encode_general_reply(reply: GeneralReply) -> bytes:
    """0x0001/0x8001 body."""
    try:
        return _REPLY.pack(reply.reply_serial, reply.reply_id, reply.result)
    except struct.error as exc:
        raise ValueError(f"general reply field out of range: {exc}") from None


@dataclass(frozen=True)
class Registration:
    """Terminal registration 0x0100. ``layout`` is the field-length set read or written (2011, 2013, 2019);
    ``plate_colour`` 0 means no plate and ``plate`` is then the vehicle's VIN."""

    province: int
    city: int
    maker: str
    model: str
    terminal_id: str
    plate_colour: int
    plate: str
    layout: int = 2013


def registration_layout(body_length: int, version: int) -> int:
    """The field-length set of a registration body: the header version's (2019, else 2013 then 2011) when the
    body fits it, else the first other that fits (vendor quirk); a layout that leaves a plate longer than
    ``MAX_PLATE`` is taken only when none leaves a shorter one. Raises ``Refusal(bad_syntax)`` if none fits.

    2011 and 2013 headers look alike: a 2011 body with a plate (or VIN) of 12 bytes or more reads as 2013."""
    order = (2019, 2013, 2011) if version == 2019 else (2013, 2011, 2019)
    fitting = [v for v in order if body_length >= _fixed_length(v)]
    if not fitting:
        raise Refusal(Reason.BAD_SYNTAX, f"registration of {body_length} bytes fits no layout", "registration")
    plausible = [v for v in fitting if body_length - _fixed_length(v) <= MAX_PLATE]
    return (plausible or fitting)[0]


def _fixed_length(layout: int) -> int:
    return 4 + sum(REGISTRATION_LAYOUTS[layout]) + 1


def decode_registration(body: bytes, header: Header) -> Registration:
    """0x0100 body, by ``registration_layout``."""
    layout = registration_layout(len(body), header.version)
    maker_n, model_n, id_n = REGISTRATION_LAYOUTS[layout]
    province, city = _WORD2.unpack_from(body)
    at = 4
    texts = []
    for name, n in (("maker", maker_n), ("model", model_n), ("terminal_id", id_n)):
        texts.append(_gbk(body[at : at + n], f"registration.{name}"))
        at += n
    colour = body[at]
    plate = _gbk(body[at + 1 :], "registration.plate")
    return Registration(province, city, *texts, colour, plate, layout)


def encode_registration(reg: Registration, version: int | None = None) -> bytes:
    """0x0100 body with the field lengths of ``version`` (default ``reg.layout``)."""
    layout = reg.layout if version is None else version
    if layout not in REGISTRATION_LAYOUTS:
        raise ValueError(f"registration layout {layout} is not 2011, 2013 or 2019")
    maker_n, model_n, id_n = REGISTRATION_LAYOUTS[layout]
    try:
        head = _WORD2.pack(reg.province, reg.city)
    except struct.error as exc:
        raise ValueError(f"province/city out of range: {exc}") from None
    if not 0 <= reg.plate_colour <= 255:
        raise ValueError(f"plate colour {reg.plate_colour} is not a byte")
    return b"".join(
        (
            head,
            _to_gbk(reg.maker, "maker", maker_n),
            _to_gbk(reg.model, "model", model_n),
            _to_gbk(reg.terminal_id, "terminal_id", id_n),
            bytes((reg.plate_colour,)),
            _to_gbk(reg.plate, "plate"),
        )
    )


@dataclass(frozen=True)
class RegistrationReply:
    """Registration reply 0x8100; ``auth_code`` is sent only with result 0."""

    reply_serial: int
    result: int
    auth_code: str = ""


def decode_registration_reply(body: bytes, header: Header | None = None) -> RegistrationReply:
    """0x8100 body."""
    if len(body) < _REG_REPLY.size:
        raise Refusal(Reason.BAD_SYNTAX, f"registration reply of {len(body)} bytes, needs 3", "registration_reply")
    serial, result = _REG_REPLY.unpack_from(body)
    code = _gbk(body[3:], "registration_reply.auth_code") if result == REG_OK else ""
    return RegistrationReply(serial, result, code)


def encode_registration_reply(reply: RegistrationReply) -> bytes:
    """0x8100 body (the auth code only with result 0)."""
    try:
        head = _REG_REPLY.pack(reply.reply_serial, reply.result)
    except struct.error as exc:
        raise ValueError(f"registration reply field out of range: {exc}") from None
    return head + (_to_gbk(reply.auth_code, "auth_code") if reply.result == REG_OK else b"")


@dataclass(frozen=True)
class Authentication:
    """Authentication 0x0102: the code of the registration reply; 2019 adds the IMEI and software version."""

    auth_code: str
    imei: str = ""
    software_version: str = ""


def decode_authentication(body: bytes, header: Header) -> Authentication:
    """0x0102 body: the 2019 form (length BYTE, code, IMEI[15], software version[20]) when its lengths add up
    and the header is 2019 (or the first byte cannot start a text code), else the 2013 form (the whole body is
    the code): 2019 terminals that send the 2013 body are accepted."""
    n = len(body)
    if n and n == 1 + body[0] + IMEI_LENGTH + SOFTWARE_LENGTH and (header.version == 2019 or body[0] < 0x20):
        end = 1 + body[0]
        return Authentication(
            _gbk(body[1:end], "authentication.auth_code"),
            _gbk(body[end : end + IMEI_LENGTH], "authentication.imei"),
            _gbk(body[end + IMEI_LENGTH :], "authentication.software_version"),
        )
    return Authentication(_gbk(body, "authentication.auth_code"))


def encode_authentication(auth: Authentication, version: int = 2013) -> bytes:
    """0x0102 body in the 2013 or 2019 form."""
    code = _to_gbk(auth.auth_code, "auth_code")
    if version != 2019:
        return code
    if len(code) > 255:
        raise ValueError(f"auth code of {len(code)} bytes does not fit 2019's length byte")
    return b"".join(
        (
            bytes((len(code),)),
            code,
            _to_gbk(auth.imei, "imei", IMEI_LENGTH),
            _to_gbk(auth.software_version, "software_version", SOFTWARE_LENGTH),
        )
    )


@dataclass(frozen=True)
class TextMessage:
    """Text delivery 0x8300: flag bits (``TEXT_*``), the text, and 2019's text type (1 notice, 2 service)."""

    flags: int
    text: str
    text_type: int = TEXT_NOTICE


def decode_text(body: bytes, header: Header) -> TextMessage:
    """0x8300 body: flags BYTE, [2019: text type BYTE], GBK text."""
    if header.version == 2019:
        if len(body) < 2:
            raise Refusal(Reason.BAD_SYNTAX, f"2019 text of {len(body)} bytes, needs 2", "text")
        return TextMessage(body[0], _gbk(body[2:], "text.text"), body[1])
    if not body:
        raise Refusal(Reason.BAD_SYNTAX, "empty text body", "text")
    return TextMessage(body[0], _gbk(body[1:], "text.text"))


def encode_text(message: TextMessage, version: int = 2013, max_bytes: int = 1000) -> bytes:
    """0x8300 body. Characters GBK lacks become "?"; text beyond ``max_bytes`` GBK bytes is cut (never inside a
    character) so the body fits a frame. Raises ``ValueError`` for flags or type outside a byte."""
    if not (0 <= message.flags <= 255 and 0 <= message.text_type <= 255):
        raise ValueError(f"text flags {message.flags} / type {message.text_type} are not bytes")
    head = bytes((message.flags, message.text_type)) if version == 2019 else bytes((message.flags,))
    return head + gbk_cut(message.text, max_bytes)


def gbk_cut(text: str, max_bytes: int) -> bytes:
    """``text`` in GBK ("?" for characters GBK lacks), cut to at most ``max_bytes`` bytes between characters."""
    raw = text.encode("gbk", errors="replace")
    if len(raw) <= max_bytes:
        return raw
    cut = raw[:max_bytes]
    while cut:
        try:
            cut.decode("gbk")
            return cut
        except UnicodeDecodeError:
            cut = cut[:-1]
    return cut
