"""An independent JT/T 808 encoder/decoder for the tests, written from the standard alone (JT/T 808-2013 and
JT/T 808-2019); it imports nothing of ``ingest.jt808`` so that the codec is checked against a second reading.

Frames (2013 section 4.4 / 2019 section 4.4): ``0x7e | header | body | check code | 0x7e``; the check code is the
XOR of header and body; header, body and check code are escaped (0x7e -> 0x7d 0x02, 0x7d -> 0x7d 0x01).
Header (4.4.3): message id WORD, body attributes WORD (bits 0-9 body length [byte], bit 10 RSA, bit 13
sub-package, bit 14 version flag of 2019), [2019: protocol version BYTE], terminal phone BCD[6] (2013) or BCD[10]
(2019), serial WORD, [sub-package: packet total WORD, packet index WORD, 1-based]. Integers are big-endian.
Times are BCD[6] ``YYMMDDhhmmss`` in GMT+8; strings are GBK.

Bodies: 0x0200 location (2013 8.18, 28 bytes of basic information and additional items ``id BYTE, length BYTE,
value``), 0x0704 batch (8.51), 0x0100 registration (8.5; 2011/2013/2019 field lengths), 0x0102 authentication
(8.7; 2019 adds IMEI and software version), 0x0001/0x8001 general replies (8.1/8.2), 0x8100 registration reply
(8.6), 0x8300 text (8.31; 2019 adds a text type). Heartbeat 0x0002 and deregistration 0x0003 have empty bodies.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

FLAG, ESC = 0x7E, 0x7D
BEIJING = timezone(timedelta(hours=8))
PHONE_BYTES = {2013: 6, 2019: 10}
"""Length of the terminal phone BCD per version [byte]."""
VERSION_BIT, SUBPACKAGE_BIT, RSA_BIT = 1 << 14, 1 << 13, 1 << 10
STATUS_FIXED, STATUS_SOUTH, STATUS_WEST = 1 << 1, 1 << 2, 1 << 3
GNSS_BITS = {"GPS": 1 << 18, "BDS": 1 << 19, "GLONASS": 1 << 20, "Galileo": 1 << 21}
REGISTRATION_LENGTHS = {2011: (5, 8, 7), 2013: (5, 20, 7), 2019: (11, 30, 30)}
"""(maker id, terminal model, terminal id) field lengths of a 0x0100 body per edition [byte]."""
ITEM_MILEAGE, ITEM_FUEL, ITEM_SIGNAL, ITEM_SATELLITES = 0x01, 0x02, 0x30, 0x31


# --- framing -------------------------------------------------------------------------------------------------


def escape(data: bytes) -> bytes:
    """Escape 0x7d first, then 0x7e (order matters: the escape of 0x7e brings a 0x7d of its own)."""
    return bytes(data).replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data: bytes) -> bytes:
    """Undo ``escape``; ValueError on a 0x7d not followed by 0x01 or 0x02."""
    out, i = bytearray(), 0
    while i < len(data):
        if data[i] == ESC:
            if i + 1 >= len(data) or data[i + 1] not in (1, 2):
                raise ValueError(f"bad escape at {i}")
            out.append(ESC if data[i + 1] == 1 else FLAG)
            i += 2
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def xor(data: bytes) -> int:
    """The check code: XOR of every byte."""
    code = 0
    for b in data:
        code ^= b
    return code


def wrap(content: bytes, check: int | None = None) -> bytes:
    """``content`` (header + body) with its check code (or ``check``), escaped, between two flags."""
    code = xor(content) if check is None else check
    return bytes([FLAG]) + escape(content + bytes([code])) + bytes([FLAG])


# --- BCD -----------------------------------------------------------------------------------------------------


def bcd(digits: str, size: int) -> bytes:
    """``digits`` left-padded with zeros to ``2 * size`` digits, packed two per byte (high nibble first)."""
    if len(digits) > 2 * size or not set(digits) <= set("0123456789"):
        raise ValueError(f"cannot pack {digits!r} in BCD[{size}]")
    padded = digits.rjust(2 * size, "0")
    return bytes(int(padded[i]) << 4 | int(padded[i + 1]) for i in range(0, len(padded), 2))


def bcd_digits(raw: bytes) -> str:
    """Digits of a BCD field."""
    return "".join(f"{b >> 4:x}{b & 15:x}" for b in raw)


def bcd_time(unix_s: int) -> bytes:
    """BCD[6] ``YYMMDDhhmmss`` in GMT+8 of ``unix_s`` [s]; the year must lie in 2000-2099."""
    t = datetime.fromtimestamp(unix_s, BEIJING)
    if not 2000 <= t.year <= 2099:
        raise ValueError(f"year {t.year} is not representable")
    return bcd(t.strftime("%y%m%d%H%M%S"), 6)


def time_of_bcd(raw: bytes) -> float:
    """Unix time [s] of a BCD[6] GMT+8 time."""
    d = bcd_digits(raw)
    t = datetime(2000 + int(d[0:2]), int(d[2:4]), int(d[4:6]), int(d[6:8]), int(d[8:10]), int(d[10:12]),
                 tzinfo=BEIJING)
    return t.astimezone(UTC).timestamp()


# --- header and frames ---------------------------------------------------------------------------------------


def header(msg_id: int, phone: str, serial: int, body_length: int, *, version: int = 2013, protocol_version: int = 1,
           packet: tuple[int, int] = (0, 0), rsa: bool = False, version_bit: bool | None = None,
           phone_bytes: int | None = None) -> bytes:
    """Message header (2013/2019 section 4.4.3). ``version_bit``/``phone_bytes`` override the version's own (quirks);
    the protocol version byte is present when the phone is 10 bytes long."""
    flag = version == 2019 if version_bit is None else version_bit
    size = PHONE_BYTES[version] if phone_bytes is None else phone_bytes
    attributes = body_length | (VERSION_BIT if flag else 0) | (RSA_BIT if rsa else 0)
    attributes |= SUBPACKAGE_BIT if packet[0] else 0
    head = struct.pack(">HH", msg_id, attributes)
    head += (bytes([protocol_version]) if size == 10 else b"") + bcd(phone, size) + struct.pack(">H", serial)
    return head + (struct.pack(">HH", *packet) if packet[0] else b"")


def frame(msg_id: int, phone: str, serial: int, body: bytes = b"", *, length: int | None = None, **kw) -> bytes:
    """A whole frame with flags; ``length`` overrides the body length written in the attributes."""
    return wrap(header(msg_id, phone, serial, len(body) if length is None else length, **kw) + body)


def subpackages(msg_id: int, phone: str, first_serial: int, body: bytes, piece: int, **kw) -> list[bytes]:
    """``body`` cut into pieces of ``piece`` bytes, one frame each (serials consecutive, packet index 1-based)."""
    parts = [body[i:i + piece] for i in range(0, len(body), piece)] or [b""]
    return [frame(msg_id, phone, (first_serial + i) & 0xFFFF, part, packet=(len(parts), i + 1), **kw)
            for i, part in enumerate(parts)]


@dataclass(frozen=True)
class Frame:
    """A frame read back by ``parse``."""

    msg_id: int
    phone: str
    serial: int
    version: int
    protocol_version: int
    rsa: bool
    packet_total: int
    packet_index: int
    body: bytes


def parse(data: bytes) -> Frame:
    """Read a whole frame (flags optional); ValueError on a bad escape, check code or length."""
    raw = unescape(data[1:-1] if data[:1] == b"\x7e" else data)
    if len(raw) < 13 or xor(raw[:-1]) != raw[-1]:
        raise ValueError("short frame or bad check code")
    msg_id, attributes = struct.unpack_from(">HH", raw)
    version = 2019 if attributes & VERSION_BIT else 2013
    at, protocol_version = 4, 0
    if version == 2019:
        protocol_version, at = raw[4], 5
    phone = bcd_digits(raw[at:at + PHONE_BYTES[version]])
    at += PHONE_BYTES[version]
    (serial,) = struct.unpack_from(">H", raw, at)
    total = index = 0
    if attributes & SUBPACKAGE_BIT:
        total, index = struct.unpack_from(">HH", raw, at + 2)
        at += 4
    body = raw[at + 2:-1]
    if len(body) != attributes & 0x3FF:
        raise ValueError(f"body of {len(body)} bytes, attributes say {attributes & 0x3FF}")
    return Frame(msg_id, phone, serial, version, protocol_version, bool(attributes & RSA_BIT), total, index, body)


# --- location 0x0200 and batch 0x0704 ------------------------------------------------------------------------


@dataclass(frozen=True)
class Fix:
    """The fields of a 0x0200 body as sent: unsigned lat/lon [1e-6 degree], speed [0.1 km/h], time [unix s]."""

    alarm: int
    status: int
    lat_e6: int
    lon_e6: int
    altitude_m: int
    speed_dkmh: int
    direction_deg: int
    time: int
    items: tuple[tuple[int, bytes], ...] = ()


def item(item_id: int, value: bytes) -> tuple[int, bytes]:
    """An additional item (id, value)."""
    return item_id, bytes(value)


def mileage_item(tenth_km: int) -> tuple[int, bytes]:
    """Item 0x01: mileage DWORD [0.1 km]."""
    return ITEM_MILEAGE, struct.pack(">I", tenth_km)


def fuel_item(tenth_l: int) -> tuple[int, bytes]:
    """Item 0x02: fuel WORD [0.1 L]."""
    return ITEM_FUEL, struct.pack(">H", tenth_l)


def signal_item(level: int) -> tuple[int, bytes]:
    """Item 0x30: wireless signal strength BYTE."""
    return ITEM_SIGNAL, bytes([level])


def satellites_item(count: int) -> tuple[int, bytes]:
    """Item 0x31: GNSS satellites in view BYTE."""
    return ITEM_SATELLITES, bytes([count])


def location_body(fix: Fix) -> bytes:
    """0x0200 body: basic information (28 bytes) then the additional items."""
    basic = struct.pack(">IIIIHHH", fix.alarm, fix.status, fix.lat_e6, fix.lon_e6, fix.altitude_m, fix.speed_dkmh,
                        fix.direction_deg) + bcd_time(fix.time)
    return basic + b"".join(bytes([i, len(v)]) + v for i, v in fix.items)


def read_location(body: bytes) -> Fix:
    """Inverse of ``location_body``; ValueError when an item runs past the end."""
    alarm, status, lat, lon, alt, speed, direction = struct.unpack_from(">IIIIHHH", body)
    items, at = [], 28
    while at < len(body):
        if at + 2 > len(body) or at + 2 + body[at + 1] > len(body):
            raise ValueError(f"item at {at} runs past the end")
        items.append((body[at], body[at + 2:at + 2 + body[at + 1]]))
        at += 2 + body[at + 1]
    return Fix(alarm, status, lat, lon, alt, speed, direction, int(time_of_bcd(body[22:28])), tuple(items))


def batch_body(kind: int, bodies: list[bytes]) -> bytes:
    """0x0704 body: count WORD, type BYTE (0 normal, 1 blind-area supplement), then length WORD + body each."""
    return struct.pack(">HB", len(bodies), kind) + b"".join(struct.pack(">H", len(b)) + b for b in bodies)


def read_batch(body: bytes) -> tuple[int, list[bytes]]:
    """Inverse of ``batch_body``: (type, location bodies)."""
    count, kind = struct.unpack_from(">HB", body)
    bodies, at = [], 3
    for _ in range(count):
        (size,) = struct.unpack_from(">H", body, at)
        bodies.append(body[at + 2:at + 2 + size])
        at += 2 + size
    return kind, bodies


# --- registration 0x0100, authentication 0x0102 --------------------------------------------------------------


def padded(text: str, size: int) -> bytes:
    """GBK ``text`` padded with NUL to ``size`` bytes."""
    raw = text.encode("gbk")
    if len(raw) > size:
        raise ValueError(f"{text!r} does not fit in {size} bytes")
    return raw.ljust(size, b"\0")


def registration_body(province: int, city: int, maker: str, model: str, terminal_id: str, plate_colour: int,
                      plate: str, *, edition: int = 2013) -> bytes:
    """0x0100 body with the field lengths of ``edition`` (2011, 2013 or 2019)."""
    maker_len, model_len, id_len = REGISTRATION_LENGTHS[edition]
    return (struct.pack(">HH", province, city) + padded(maker, maker_len) + padded(model, model_len)
            + padded(terminal_id, id_len) + bytes([plate_colour]) + plate.encode("gbk"))


def read_registration(body: bytes, edition: int) -> dict:
    """Inverse of ``registration_body`` (trailing NULs stripped)."""
    province, city = struct.unpack_from(">HH", body)
    fields, at = [], 4
    for size in REGISTRATION_LENGTHS[edition]:
        fields.append(body[at:at + size].rstrip(b"\0").decode("gbk"))
        at += size
    return {"province": province, "city": city, "maker": fields[0], "model": fields[1], "terminal_id": fields[2],
            "plate_colour": body[at], "plate": body[at + 1:].rstrip(b"\0").decode("gbk")}


def authentication_body(auth_code: str, *, version: int = 2013, imei: str = "", software_version: str = "") -> bytes:
    """0x0102 body: 2013 the code alone; 2019 code length BYTE, code, IMEI BYTE[15], software version BYTE[20]."""
    code = auth_code.encode("gbk")
    if version == 2013:
        return code
    return bytes([len(code)]) + code + padded(imei, 15) + padded(software_version, 20)


def read_authentication(body: bytes, version: int) -> dict:
    """Inverse of ``authentication_body``."""
    if version == 2013:
        return {"auth_code": body.rstrip(b"\0").decode("gbk")}
    n = body[0]
    return {"auth_code": body[1:1 + n].decode("gbk"), "imei": body[1 + n:16 + n].rstrip(b"\0").decode("gbk"),
            "software_version": body[16 + n:36 + n].rstrip(b"\0").decode("gbk")}


# --- replies and text ----------------------------------------------------------------------------------------


def general_reply_body(reply_serial: int, reply_id: int, result: int) -> bytes:
    """0x0001 (terminal) / 0x8001 (platform) body: reply serial WORD, reply id WORD, result BYTE."""
    return struct.pack(">HHB", reply_serial, reply_id, result)


def read_general_reply(body: bytes) -> tuple[int, int, int]:
    """(reply serial, reply id, result) of a 0x0001/0x8001 body (exactly 5 bytes)."""
    if len(body) != 5:
        raise ValueError(f"general reply of {len(body)} bytes")
    return struct.unpack(">HHB", body)


def registration_reply_body(reply_serial: int, result: int, auth_code: str = "") -> bytes:
    """0x8100 body: reply serial WORD, result BYTE, auth code STRING (only when the result is 0)."""
    return struct.pack(">HB", reply_serial, result) + (auth_code.encode("gbk") if result == 0 else b"")


def read_registration_reply(body: bytes) -> tuple[int, int, str]:
    """(reply serial, result, auth code) of a 0x8100 body."""
    reply_serial, result = struct.unpack_from(">HB", body)
    return reply_serial, result, body[3:].rstrip(b"\0").decode("gbk")


def text_body(flags: int, text: str, *, version: int = 2013, text_type: int = 1) -> bytes:
    """0x8300 body: flags BYTE, [2019: text type BYTE], GBK text."""
    return bytes([flags]) + (bytes([text_type]) if version == 2019 else b"") + text.encode("gbk")


def read_text(body: bytes, version: int) -> tuple[int, int, str]:
    """(flags, text type, text) of a 0x8300 body; the text type is 1 for 2013 (which has none)."""
    if version == 2019:
        return body[0], body[1], body[2:].rstrip(b"\0").decode("gbk")
    return body[0], 1, body[1:].rstrip(b"\0").decode("gbk")


# --- vendor quirks -------------------------------------------------------------------------------------------


def quirk_2019_bit_short_phone(msg_id: int, phone: str, serial: int, body: bytes = b"") -> bytes:
    """A frame with the 2019 version bit but the 2013 layout (no protocol version byte, 6-byte phone)."""
    return frame(msg_id, phone, serial, body, version=2013, version_bit=True)


def quirk_2013_bit_long_phone(msg_id: int, phone: str, serial: int, body: bytes = b"") -> bytes:
    """A frame without the version bit but the 2019 layout (protocol version byte, 10-byte phone)."""
    return frame(msg_id, phone, serial, body, version=2019, version_bit=False)


def quirk_registration_2019_short_fields(phone: str, serial: int, **fields) -> bytes:
    """A 2019 frame whose 0x0100 body has the 2013 field lengths."""
    return frame(0x0100, phone, serial, registration_body(**fields, edition=2013), version=2019)


def quirk_odd_items(fix: Fix, odd: list[tuple[int, bytes]]) -> bytes:
    """0x0200 body of ``fix`` followed by items of unexpected lengths (e.g. a 2-byte mileage, an empty signal)."""
    return location_body(fix) + b"".join(bytes([i, len(v)]) + v for i, v in odd)
