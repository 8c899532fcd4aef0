"""Location report 0x0200 and batch upload 0x0704 (JT/T 808-2013 sections 8.18 and 8.50 [tables 23-27, 84];
JT/T 808-2019 sections 8.18 and 8.56).

Basic information, 28 bytes::

    alarm DWORD | status DWORD | lat DWORD | lon DWORD [1e-6 degree] | altitude WORD [m] |
    speed WORD [0.1 km/h] | direction WORD [degree, 0-359] | time BCD[6] YYMMDDhhmmss, GMT+8

then additional items ``id BYTE | length BYTE | value``: 0x01 mileage DWORD [0.1 km], 0x02 fuel WORD [0.1 L],
0x30 signal strength BYTE, 0x31 GNSS satellites BYTE. Every other item, and a known item whose length is not
its standard one (vendors disagree), is kept raw in ``Location.extra``: extension items never refuse a report.
An item whose length runs past the body is ``bad_syntax``.

Status bits: 1 positioned, 2 south, 3 west, 5 lat/lon encrypted, 18 GPS, 19 BDS, 20 GLONASS, 21 Galileo.
Vendor quirks accepted: direction 360 (read as 0); an all-zero time (sent before the first fix; read as NaN);
an altitude of 0xFC18-0xFFFF (a 16-bit two's complement below sea level, -1000..-1 m).

Batch upload 0x0704: count WORD | type BYTE (0 normal, 1 blind-area supplement) | count x (length WORD | basic
information and items).
"""

from __future__ import annotations

import math
import struct
import time as _time
from calendar import timegm
from dataclasses import dataclass, field

from ingest.rejection import Reason, Refusal

BASIC_LENGTH = 28
"""Length of the basic information [byte]."""
GMT8 = 8 * 3600
"""Offset of the terminal's clock (Beijing time) from UTC [s]."""
FIXED_BIT = 1 << 1
SOUTH_BIT = 1 << 2
WEST_BIT = 1 << 3
ENCRYPTED_LATLON_BIT = 1 << 5
GNSS_BITS = {"GPS": 1 << 18, "BDS": 1 << 19, "GLONASS": 1 << 20, "Galileo": 1 << 21}
_DERIVED_BITS = FIXED_BIT | SOUTH_BIT | WEST_BIT | sum(GNSS_BITS.values())
ITEM_MILEAGE, ITEM_FUEL, ITEM_SIGNAL, ITEM_SATELLITES = 0x01, 0x02, 0x30, 0x31
BATCH_NORMAL, BATCH_BLIND_AREA = 0, 1
MIN_ALTITUDE_M = -1000
"""Lowest altitude read from a two's complement WORD (vendor quirk) [m]."""

_BASIC = struct.Struct(">IIIIHHH6s")
_DWORD = struct.Struct(">I")
_WORD = struct.Struct(">H")
_ITEM_LENGTHS = {ITEM_MILEAGE: 4, ITEM_FUEL: 2, ITEM_SIGNAL: 1, ITEM_SATELLITES: 1}
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class Location:
    """A location report (basic information and additional items).

    ``fixed``, ``gnss`` and the signs of ``lat``/``lon`` mirror status bits 1, 18-21, 2 and 3: when given they
    set those bits of ``status``, when left None ``fixed`` and ``gnss`` are read from it.

    Attributes
    ----------
    alarm, status : int
        Alarm flags and status bits (DWORDs).
    lat, lon : float
        Latitude and longitude [degree], negative south/west.
    altitude_m : int
        Altitude [m].
    speed_kmh : float
        Speed [km h-1], to 0.1.
    direction_deg : int
        Direction, clockwise from north [degree], 0-359.
    time : float
        Time of the report [s since 1970-01-01 UTC], whole seconds; NaN when the terminal sent zeros.
    fixed : bool
        Positioned (status bit 1).
    gnss : frozenset[str]
        Constellations used: "GPS", "BDS", "GLONASS", "Galileo" (status bits 18-21).
    mileage_km, fuel_l : float | None
        Items 0x01 [km] and 0x02 [L], to 0.1; None when absent.
    signal, satellites : int | None
        Items 0x30 (wireless signal strength) and 0x31 (GNSS satellites in view); None when absent.
    extra : tuple[tuple[int, bytes], ...]
        Every other additional item as (id, raw value), in the order sent.
    """

    alarm: int = 0
    status: int = 0
    lat: float = 0.0
    lon: float = 0.0
    altitude_m: int = 0
    speed_kmh: float = 0.0
    direction_deg: int = 0
    time: float = math.nan
    fixed: bool | None = None
    gnss: frozenset[str] | None = None
    mileage_km: float | None = None
    fuel_l: float | None = None
    signal: int | None = None
    satellites: int | None = None
    extra: tuple[tuple[int, bytes], ...] = field(default=())

    def __post_init__(self) -> None:
        status = self.status
        fixed = bool(status & FIXED_BIT) if self.fixed is None else bool(self.fixed)
        gnss = frozenset(n for n, bit in GNSS_BITS.items() if status & bit) if self.gnss is None else self.gnss
        unknown = set(gnss) - GNSS_BITS.keys()
        if unknown:
            raise ValueError(f"unknown constellations {sorted(unknown)}")
        bits = (FIXED_BIT if fixed else 0) | (SOUTH_BIT if math.copysign(1.0, self.lat) < 0 else 0)
        bits |= WEST_BIT if math.copysign(1.0, self.lon) < 0 else 0
        bits |= sum(GNSS_BITS[n] for n in gnss)
        object.__setattr__(self, "status", (status & ~_DERIVED_BITS) | bits)
        object.__setattr__(self, "fixed", fixed)
        object.__setattr__(self, "gnss", frozenset(gnss))
        object.__setattr__(self, "extra", tuple((int(i), bytes(v)) for i, v in self.extra))

    @property
    def datum(self) -> str:
        """ "CGCS2000" when Beidou is the only constellation, else "WGS84" (they agree to a few centimetres)."""
        return "CGCS2000" if self.gnss == {"BDS"} else "WGS84"

    @property
    def latlon_encrypted(self) -> bool:
        """Status bit 5: latitude and longitude were encrypted by a privacy plug-in and mean nothing here."""
        return bool(self.status & ENCRYPTED_LATLON_BIT)


def decode_location(body: bytes, field_name: str = "location") -> Location:
    """The ``Location`` of a 0x0200 body (or of one 0x0704 item); raises ``Refusal`` for bad input."""
    if len(body) < BASIC_LENGTH:
        raise Refusal(Reason.BAD_SYNTAX, f"location of {len(body)} bytes, needs {BASIC_LENGTH}", field_name)
    alarm, status, lat_u, lon_u, alt, speed, direction, bcd = _BASIC.unpack_from(body)
    if lat_u > 90_000_000 or lon_u > 180_000_000:
        raise Refusal(Reason.OUT_OF_RANGE, f"lat/lon {lat_u}/{lon_u} x 1e-6 degree", f"{field_name}.latlon")
    if direction > 360:
        raise Refusal(Reason.OUT_OF_RANGE, f"direction {direction} degree", f"{field_name}.direction")
    lat = lat_u / 1e6 * (-1.0 if status & SOUTH_BIT else 1.0)
    lon = lon_u / 1e6 * (-1.0 if status & WEST_BIT else 1.0)
    items, extra = _items(body, field_name)
    mileage, fuel = items.get(ITEM_MILEAGE), items.get(ITEM_FUEL)
    return Location(
        alarm,
        status,
        lat,
        lon,
        alt - 0x10000 if alt > 0xFFFF + MIN_ALTITUDE_M else alt,
        speed / 10.0,
        0 if direction == 360 else direction,
        bcd_time(bcd, f"{field_name}.time"),
        None,
        None,
        None if mileage is None else mileage / 10.0,
        None if fuel is None else fuel / 10.0,
        items.get(ITEM_SIGNAL),
        items.get(ITEM_SATELLITES),
        tuple(extra),
    )


def _items(body: bytes, field_name: str) -> tuple[dict[int, int], list[tuple[int, bytes]]]:
    """Known items (id → integer value) and raw ones of the additional information after byte 28."""
    known: dict[int, int] = {}
    extra: list[tuple[int, bytes]] = []
    at, end = BASIC_LENGTH, len(body)
    while at < end:
        if at + 2 > end:
            raise Refusal(Reason.BAD_SYNTAX, f"additional item header cut at byte {at}", f"{field_name}.items")
        item, length = body[at], body[at + 1]
        at += 2
        if at + length > end:
            raise Refusal(
                Reason.BAD_SYNTAX, f"item 0x{item:02x} of {length} bytes runs past the body", f"{field_name}.items"
            )
        value = body[at : at + length]
        at += length
        if _ITEM_LENGTHS.get(item) == length and item not in known:
            known[item] = int.from_bytes(value, "big")
        else:
            extra.append((item, value))
    return known, extra


def bcd_time(bcd: bytes, field_name: str = "time") -> float:
    """Unix time [s] of a BCD[6] ``YYMMDDhhmmss`` in GMT+8 (year 20YY); NaN for all zeros.

    Raises ``Refusal``: ``bad_syntax`` for nibbles above 9, ``out_of_range`` for an impossible date or time.
    """
    digits = bcd.hex()
    if not digits.isdigit():
        raise Refusal(Reason.BAD_SYNTAX, f"BCD time {digits!r} has nibbles above 9", field_name)
    if digits == "000000000000":
        return math.nan
    yy, mo, dd, hh, mi, ss = (int(digits[k : k + 2]) for k in range(0, 12, 2))
    leap = yy % 4 == 0  # 2000-2099
    if not (1 <= mo <= 12 and 1 <= dd <= _DAYS[mo - 1] - (mo == 2 and not leap) and hh < 24 and mi < 60 and ss < 60):
        raise Refusal(Reason.OUT_OF_RANGE, f"time {digits} is not a date and time", field_name)
    return float(timegm((2000 + yy, mo, dd, hh, mi, ss)) - GMT8)


def encode_bcd_time(t: float) -> bytes:
    """BCD[6] ``YYMMDDhhmmss`` in GMT+8 of unix time ``t`` (rounded to the second); zeros for NaN.

    Raises ``ValueError`` outside 2000-2099 (Beijing time).
    """
    if math.isnan(t):
        return bytes(6)
    st = _time.gmtime(round(t) + GMT8)
    if not 2000 <= st.tm_year <= 2099:
        raise ValueError(f"time {t} is outside 2000-2099")
    text = f"{st.tm_year % 100:02d}{st.tm_mon:02d}{st.tm_mday:02d}{st.tm_hour:02d}{st.tm_min:02d}{st.tm_sec:02d}"
    return bytes.fromhex(text)


def encode_location(loc: Location) -> bytes:
    """The 0x0200 body of ``loc``: basic information, then items 0x01, 0x02, 0x30, 0x31 (those not None) and
    ``extra`` in order. Raises ``ValueError`` for values the fields cannot hold."""
    lat_u, lon_u = round(abs(loc.lat) * 1e6), round(abs(loc.lon) * 1e6)
    if lat_u > 90_000_000 or lon_u > 180_000_000:
        raise ValueError(f"lat/lon {loc.lat}/{loc.lon} out of range")
    if not 0 <= loc.direction_deg < 360:
        raise ValueError(f"direction {loc.direction_deg} is not 0-359")
    alt = loc.altitude_m + 0x10000 if MIN_ALTITUDE_M <= loc.altitude_m < 0 else loc.altitude_m
    try:
        out = _BASIC.pack(
            loc.alarm, loc.status, lat_u, lon_u, alt, round(loc.speed_kmh * 10), loc.direction_deg,
            encode_bcd_time(loc.time),
        )  # fmt: skip
    except struct.error as exc:
        raise ValueError(f"location field out of range: {exc}") from None
    items = []
    if loc.mileage_km is not None:
        items.append(_item(ITEM_MILEAGE, round(loc.mileage_km * 10)))
    if loc.fuel_l is not None:
        items.append(_item(ITEM_FUEL, round(loc.fuel_l * 10)))
    if loc.signal is not None:
        items.append(_item(ITEM_SIGNAL, loc.signal))
    if loc.satellites is not None:
        items.append(_item(ITEM_SATELLITES, loc.satellites))
    for item, value in loc.extra:
        if not (0 <= item <= 255 and len(value) <= 255):
            raise ValueError(f"item 0x{item:x} of {len(value)} bytes does not fit")
        items.append(bytes((item, len(value))) + value)
    return out + b"".join(items)


def _item(item: int, value: int) -> bytes:
    length = _ITEM_LENGTHS[item]
    try:
        return bytes((item, length)) + value.to_bytes(length, "big")
    except OverflowError:
        raise ValueError(f"item 0x{item:02x} value {value} does not fit {length} bytes") from None


def decode_batch_location(body: bytes) -> tuple[int, list[Location]]:
    """(type, locations) of a 0x0704 body; raises ``Refusal`` for bad input (one bad item refuses the batch)."""
    if len(body) < 3:
        raise Refusal(Reason.BAD_SYNTAX, f"batch of {len(body)} bytes, needs 3", "batch")
    count, kind = _WORD.unpack_from(body)[0], body[2]
    if kind not in (BATCH_NORMAL, BATCH_BLIND_AREA):
        raise Refusal(Reason.BAD_SCHEMA, f"batch type {kind} is not 0 or 1", "batch.type")
    locations = []
    at = 3
    for k in range(count):
        if at + 2 > len(body):
            raise Refusal(Reason.BAD_SYNTAX, f"batch of {count} items ends after {k}", f"batch.item[{k}]")
        (length,) = _WORD.unpack_from(body, at)
        at += 2
        if at + length > len(body):
            raise Refusal(Reason.BAD_SYNTAX, f"item {k} of {length} bytes runs past the body", f"batch.item[{k}]")
        locations.append(decode_location(body[at : at + length], f"batch.item[{k}]"))
        at += length
    if at != len(body):
        raise Refusal(Reason.BAD_SYNTAX, f"{len(body) - at} bytes after {count} items", "batch")
    return kind, locations


def encode_batch_location(kind: int, locations: list[Location]) -> bytes:
    """The 0x0704 body of ``locations`` of type ``kind`` (0 normal, 1 blind-area supplement)."""
    if kind not in (BATCH_NORMAL, BATCH_BLIND_AREA):
        raise ValueError(f"batch type {kind} is not 0 or 1")
    if len(locations) > 0xFFFF:
        raise ValueError(f"{len(locations)} locations do not fit a batch")
    parts = [_WORD.pack(len(locations)), bytes((kind,))]
    for loc in locations:
        item = encode_location(loc)
        parts.append(_WORD.pack(len(item)) + item)
    return b"".join(parts)
