"""JT/T 808 message header (JT/T 808-2013 section 4.4.3, JT/T 808-2019 section 4.5.3), whole frames.

2013 header, 12 bytes (16 when sub-packaged)::

    msg id WORD | attributes WORD | phone BCD[6] | serial WORD | [packet total WORD | packet index WORD]

2019 header, 17 bytes (21 when sub-packaged): a protocol version BYTE after the attributes, phone BCD[10].

Message attributes (消息体属性): bits 0-9 body length [byte], 10-12 encryption (bit 10 RSA; 11-12 reserved),
13 sub-package, 14 version flag (1 = 2019), 15 reserved. 2011 frames have the 2013 layout and parse as 2013.

Vendor quirk: some terminals set the 2019 version bit but send a 6-byte phone (or the reverse); a frame whose
length fits only the other layout is parsed by the layout that fits, and ``Header.version`` tells that layout.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ingest.jt808.framing import MAX_BODY, check_code, escape, unescape
from ingest.rejection import Reason, Refusal


def phone_key(phone: str) -> str:
    """A terminal phone number as terminals are compared: leading zeros stripped (``"0"`` for all zeros); a 2013
    terminal sends ``13900000001`` as 12 BCD digits, a 2019 one as 20."""
    return phone.lstrip("0") or "0"


LENGTH_MASK = 0x03FF
ENCRYPTION_MASK = 0x1C00
RSA_BIT = 0x0400
SUBPACKAGE_BIT = 0x2000
VERSION_BIT = 0x4000
PHONE_DIGITS = {2013: 12, 2019: 20}
"""BCD digits of the terminal phone number by layout [digit]."""
HEADER_LENGTH = {2013: 12, 2019: 17}
"""Header length without the sub-package fields [byte]."""
PACKET_FIELDS = 4
"""Length of packet total + packet index [byte]."""

_PREFIX = struct.Struct(">HH")
_WORD = struct.Struct(">H")
_PACKET = struct.Struct(">HH")


@dataclass(frozen=True, slots=True)
class Header:
    """A parsed header; see the module docstring for the layouts.

    Attributes
    ----------
    msg_id : int
        Message id (消息ID), e.g. 0x0200.
    phone : str
        Terminal phone number, BCD digits as sent: 12 (2013) or 20 (2019).
    serial : int
        Message serial number (消息流水号), 0-65535.
    version : int
        2013 or 2019: the layout the frame was parsed with.
    protocol_version : int
        2019 protocol version byte; 0 for 2013.
    encrypted : bool
        An encryption bit (10 RSA, 11-12 reserved) is set: the body is left as sent.
    body_length : int
        Body length [byte].
    packet_total, packet_index : int
        Sub-package count and 1-based index; 0 and 0 when not sub-packaged.
    """

    msg_id: int
    phone: str
    serial: int
    version: int
    protocol_version: int
    encrypted: bool
    body_length: int
    packet_total: int = 0
    packet_index: int = 0

    @property
    def terminal(self) -> str:
        """The phone number as terminals are compared (`phone_key`): 2013 and 2019 numbers compare."""
        return phone_key(self.phone)

    @property
    def subpackaged(self) -> bool:
        """The message is one piece of several."""
        return self.packet_total > 0


@dataclass(frozen=True, slots=True)
class Message:
    """A header and its body (unescaped, without the check code)."""

    header: Header
    body: bytes


def parse_frame(escaped: bytes) -> Message:
    """The message in the escaped bytes between two flags (without them).

    Unescapes, checks the check code (``Refusal(bad_checksum)``), parses the header and cuts the body; a body
    length that disagrees with the attributes, BCD nibbles above 9 in the phone and bad packet fields are
    ``Refusal(bad_syntax)``.
    """
    data = unescape(escaped)
    n = len(data)
    if n < HEADER_LENGTH[2013] + 1:
        raise Refusal(Reason.BAD_SYNTAX, f"frame of {n} bytes is shorter than a header", "frame")
    if check_code(data[:-1]) != data[-1]:
        raise Refusal(
            Reason.BAD_CHECKSUM, f"check code {data[-1]:02x} != {check_code(data[:-1]):02x}", "frame.check_code"
        )
    msg_id, attributes = _PREFIX.unpack_from(data)
    body_length = attributes & LENGTH_MASK
    packets = PACKET_FIELDS if attributes & SUBPACKAGE_BIT else 0
    version = _layout(attributes, n - 1 - body_length - packets)
    head = HEADER_LENGTH[version]
    if version == 2019:
        protocol_version, phone_end = data[4], 15
        phone = data[5:15].hex()
    else:
        protocol_version, phone_end = 0, 10
        phone = data[4:10].hex()
    if not phone.isdigit():
        raise Refusal(Reason.BAD_SYNTAX, f"phone BCD {phone!r} has nibbles above 9", "header.phone")
    (serial,) = _WORD.unpack_from(data, phone_end)
    total = index = 0
    if packets:
        total, index = _PACKET.unpack_from(data, head)
        if not 1 <= index <= total:
            raise Refusal(Reason.BAD_SYNTAX, f"packet {index} of {total}", "header.packet")
    header = Header(
        msg_id, phone, serial, version, protocol_version, bool(attributes & ENCRYPTION_MASK), body_length, total, index
    )
    start = head + packets
    return Message(header, data[start : start + body_length])


def _layout(attributes: int, header_bytes: int) -> int:
    """2013 or 2019: the layout the version bit names if the frame length fits it, else the other one if it fits
    (vendor quirk); raises ``Refusal(bad_syntax)`` when neither fits the body length of the attributes."""
    named = 2019 if attributes & VERSION_BIT else 2013
    other = 2013 if named == 2019 else 2019
    for version in (named, other):
        if header_bytes == HEADER_LENGTH[version]:
            return version
    raise Refusal(
        Reason.BAD_SYNTAX,
        f"body length {attributes & LENGTH_MASK} leaves {header_bytes} header bytes, not "
        f"{HEADER_LENGTH[named]} ({named})",
        "header.body_length",
    )


def build_frame(
    msg_id: int,
    phone: str,
    serial: int,
    body: bytes,
    *,
    version: int = 2013,
    protocol_version: int = 1,
    packet: tuple[int, int] = (0, 0),
    encrypted: bool = False,
) -> bytes:
    """The whole escaped frame, with both flags. ``phone`` is any digit string, padded with leading zeros to 12
    (2013) or 20 (2019) digits; ``packet`` is (total, 1-based index), (0, 0) when not sub-packaged;
    ``encrypted`` sets the RSA bit (the body is taken as already encrypted).

    Raises ``ValueError`` for bad arguments (body over ``MAX_BODY`` bytes, phone too long or not digits...).
    """
    if version not in HEADER_LENGTH:
        raise ValueError(f"version must be 2013 or 2019, not {version}")
    if len(body) > MAX_BODY:
        raise ValueError(f"body of {len(body)} bytes is longer than {MAX_BODY}")
    digits = PHONE_DIGITS[version]
    if not (phone.isascii() and phone.isdigit()) or len(phone) > digits:
        raise ValueError(f"phone {phone!r} is not 1-{digits} digits")
    if not (0 <= msg_id <= 0xFFFF and 0 <= serial <= 0xFFFF):
        raise ValueError(f"msg id {msg_id} and serial {serial} must be WORDs (0-65535)")
    total, index = packet
    if (total, index) != (0, 0) and not 1 <= index <= total <= 0xFFFF:
        raise ValueError(f"packet {packet} is not (total, 1-based index)")
    attributes = len(body) | (SUBPACKAGE_BIT if total else 0) | (RSA_BIT if encrypted else 0)
    head = _PREFIX.pack(msg_id, attributes | (VERSION_BIT if version == 2019 else 0))
    if version == 2019:
        head += bytes((protocol_version,))
    head += bytes.fromhex(phone.zfill(digits)) + _WORD.pack(serial)
    if total:
        head += _PACKET.pack(total, index)
    data = head + bytes(body)
    return b"\x7e" + escape(data + bytes((check_code(data),))) + b"\x7e"
