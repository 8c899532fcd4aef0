"""NMEA 0183 sentences from Beidou/GNSS terminals (``city/beidou/{device}``).

Accepted: GGA, RMC, GNS (and VTG for speed/course) with talker ``GB``, ``BD``, ``GN``, ``GP``, ``GL``,
``GA`` (any constellation passes as GNSS), one or many sentences per payload separated by CR/LF.
Every sentence must carry a valid ``*hh`` checksum; a payload with one bad sentence is refused whole.
Satellite-only and other sentences (GSV, GSA, GLL, ZDA, GST, TXT...), proprietary ``$P...`` sentences and
sentences of other talkers are skipped and counted in ``Batch.ignored``; so are epochs without a fix
(GGA quality 0, RMC status V, GNS mode all N).

Sentences with the same UTC time-of-day are merged into one ``position`` record: latitude/longitude from
GGA (else GNS, else RMC), fix quality, HDOP and altitude from GGA/GNS, speed and course from RMC (or a
following VTG), date from RMC (two-digit year: the century nearest ``received_at``). Without an RMC date, the
date is the one that puts the fix nearest ``received_at``.
NMEA 4.10 trailing fields (RMC nav status, GGA/GNS extra fields) are accepted.

Altitude: GGA field 9 (GNS field 9) is the antenna altitude above the geoid (mean sea level) [m]; it goes to
``Batch.alt_m`` as sent (GGA's wins over GNS's). The geoid separation (GGA field 11, GNS field 10) is not kept:
the ellipsoidal height would be altitude + separation. An empty altitude, or a GGA altitude whose unit (field 10)
is not ``M``, is unknown (NaN); a malformed one refuses the payload like any other number, and one outside
[``MIN_ALT_M``, ``MAX_ALT_M``] is out of range.

Datum: BDS-only talkers (``BD``, ``GB``) are tagged ``CGCS2000``, the others ``WGS84`` (the two agree to
a few centimetres); no conversion happens here.
"""

from __future__ import annotations

import math
import time
from calendar import timegm
from dataclasses import dataclass

import numpy as np

from ingest.batch import Batch
from ingest.decoders._common import guarded, last_segment
from ingest.rejection import Reason, Refusal

TALKERS = frozenset({"GB", "BD", "GN", "GP", "GL", "GA"})
POSITION_TYPES = frozenset({"GGA", "RMC", "GNS", "VTG"})
KNOT_KMH = 1.852
"""One knot [km h-1]."""
MIN_ALT_M = -1000.0
"""Lowest altitude accepted (a receiver in a deep tunnel or mine; the Dead Sea shore is -430 m). [m]"""
MAX_ALT_M = 20000.0
"""Highest altitude accepted (above any road; receivers for vehicles stop well below). [m]"""
MAX_SENTENCE = 120
"""Longest sentence accepted, without CR/LF [byte]; NMEA allows 82, real receivers go beyond."""

_GNS_MODE_FIX = {"A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8}
_HEX = frozenset("0123456789ABCDEF")  # NMEA checksums are upper-case hex


@dataclass
class _Fix:
    tod: float
    lat: float = math.nan
    lon: float = math.nan
    src: int = 9  # 0 GGA, 1 GNS, 2 RMC: lower wins for lat/lon
    fix: int = -1
    hdop: float = math.nan
    alt: float = math.nan  # altitude above the geoid [m]
    speed: float = math.nan
    course: float = math.nan
    date: tuple[int, int, int] | None = None


def checksum(body: str) -> int:
    """XOR of the characters between ``$`` and ``*``."""
    c = 0
    for ch in body.encode("ascii"):
        c ^= ch
    return c


@guarded
def decode_nmea(payload: bytes, *, topic: str, received_at: float) -> Batch:
    """Decode NMEA sentences into ``position`` records of the topic's device (see module docstring)."""
    return nmea_records(payload, device=last_segment(topic), received_at=received_at)


def nmea_records(payload: bytes, *, device: str, received_at: float) -> Batch:
    """The ``position`` records of ``device`` in an NMEA payload; raises ``Refusal`` for bad input."""
    try:
        text = payload.decode("ascii")
    except UnicodeDecodeError:
        raise Refusal(Reason.BAD_SYNTAX, "NMEA is ASCII text", "payload") from None
    fixes, ignored, talker = _parse_all(text)
    rows = _rows(fixes, received_at)
    ignored += len(fixes) - len(rows)
    n = len(rows)
    if n == 0:
        return Batch.empty(ignored=ignored)
    cols = list(zip(*rows, strict=True))
    datum = "CGCS2000" if talker in ("BD", "GB") else "WGS84"
    return Batch.build(
        n,
        device=device,
        t=cols[0],
        quantity="position",
        lat=cols[1],
        lon=cols[2],
        speed_kmh=cols[3],
        course_deg=cols[4],
        hdop=cols[5],
        fix=cols[6],
        alt_m=cols[7],
        datum=datum,
        ignored=ignored,
    )


def _parse_all(text: str) -> tuple[list[_Fix], int, str]:
    lines = [ln.strip() for ln in text.replace("\r", "\n").split("\n")]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise Refusal(Reason.BAD_SYNTAX, "no sentence", "payload")
    fixes: dict[str, _Fix] = {}
    last: _Fix | None = None
    ignored = 0
    talker = ""
    for k, line in enumerate(lines):
        fields = _split_checked(line, k)
        address = fields[0]
        kind = address[2:] if len(address) == 5 else ""
        if address.startswith("P") or address[:2] not in TALKERS or kind not in POSITION_TYPES:
            ignored += 1
            continue
        talker = talker or address[:2]
        if kind == "VTG":
            if last is None:
                ignored += 1
            else:
                _apply_vtg(last, fields, k)
            continue
        last = _apply(fixes, kind, fields, k)
    return list(fixes.values()), ignored, talker


def _split_checked(line: str, k: int) -> list[str]:
    """Fields of one sentence after checking framing and checksum (cheapest first)."""
    if len(line) > MAX_SENTENCE:
        raise Refusal(Reason.BAD_SYNTAX, f"sentence {k} longer than {MAX_SENTENCE}", f"sentence[{k}]")
    star = line.rfind("*")
    if star < 0:
        raise Refusal(Reason.BAD_CHECKSUM, f"sentence {k} has no checksum", f"sentence[{k}]")
    if line[0] != "$":
        raise Refusal(Reason.BAD_SYNTAX, f"sentence {k} does not start with $", f"sentence[{k}]")
    given = line[star + 1 :]
    if len(given) != 2 or not set(given) <= _HEX:
        raise Refusal(
            Reason.BAD_SYNTAX, f"sentence {k} checksum {given!r} is not two hex digits", f"sentence[{k}]"
        )
    body = line[1:star]
    if checksum(body) != int(given, 16):
        raise Refusal(
            Reason.BAD_CHECKSUM, f"sentence {k} checksum {given} != {checksum(body):02X}", f"sentence[{k}]"
        )
    fields = body.split(",")
    if not fields[0].isalnum():
        raise Refusal(Reason.BAD_SYNTAX, f"sentence {k} has a bad address {fields[0]!r}", f"sentence[{k}]")
    return fields


def _apply(fixes: dict[str, _Fix], kind: str, f: list[str], k: int) -> _Fix:
    need = {"GGA": 15, "RMC": 12, "GNS": 13}[kind]
    if len(f) < need:
        raise Refusal(Reason.BAD_SCHEMA, f"{kind} has {len(f) - 1} fields, needs {need - 1}", f"sentence[{k}]")
    tod = _tod(f[1], k)
    fx = fixes.setdefault(f[1], _Fix(tod))
    if kind == "GGA":
        _gga(fx, f, k)
    elif kind == "GNS":
        _gns(fx, f, k)
    else:
        _rmc(fx, f, k)
    return fx


def _gga(fx: _Fix, f: list[str], k: int) -> None:
    quality = _int(f[6], k, "quality") if f[6] else 0
    if not 0 <= quality <= 9:
        raise Refusal(Reason.OUT_OF_RANGE, f"GGA fix quality {quality}", f"sentence[{k}].quality")
    fx.fix = quality
    if quality == 0:
        return
    fx.hdop = _float(f[8], k, "hdop") if f[8] else math.nan
    if f[10] in ("M", ""):
        fx.alt = _altitude(f[9], k, fx.alt)
    _set_position(fx, f[2:6], 0, k)


def _gns(fx: _Fix, f: list[str], k: int) -> None:
    mode = f[6]
    quality = next((_GNS_MODE_FIX[c] for c in mode if c in _GNS_MODE_FIX), 0)
    if any(c not in _GNS_MODE_FIX and c != "N" for c in mode):
        raise Refusal(Reason.BAD_SCHEMA, f"GNS mode {mode!r}", f"sentence[{k}].mode")
    if fx.fix < 0 or fx.src > 0:
        fx.fix = quality
    if quality == 0:
        return
    if math.isnan(fx.hdop) and f[8]:
        fx.hdop = _float(f[8], k, "hdop")
    alt = _altitude(f[9], k, math.nan)
    if not math.isnan(alt) and (fx.src > 0 or math.isnan(fx.alt)):  # a GGA altitude wins
        fx.alt = alt
    _set_position(fx, f[2:6], 1, k)


def _rmc(fx: _Fix, f: list[str], k: int) -> None:
    status = f[2]
    if status not in ("A", "V"):
        raise Refusal(Reason.BAD_SCHEMA, f"RMC status {status!r}", f"sentence[{k}].status")
    if f[9]:
        fx.date = _date(f[9], k)
    if status == "V" or (len(f) > 12 and f[12] == "N"):
        if fx.fix < 0:
            fx.fix = 0
        return
    if fx.fix < 0:
        fx.fix = -2  # valid RMC, quality unknown (no GGA/GNS)
    fx.speed = _float(f[7], k, "speed") * KNOT_KMH if f[7] else math.nan
    fx.course = _float(f[8], k, "course") if f[8] else math.nan
    _check_motion(fx, k)
    _set_position(fx, f[3:7], 2, k)


def _apply_vtg(fx: _Fix, f: list[str], k: int) -> None:
    if len(f) < 9:
        raise Refusal(Reason.BAD_SCHEMA, "VTG has too few fields", f"sentence[{k}]")
    if math.isnan(fx.course) and f[1]:
        fx.course = _float(f[1], k, "course")
    if math.isnan(fx.speed) and f[7]:
        fx.speed = _float(f[7], k, "speed")
    _check_motion(fx, k)


def _check_motion(fx: _Fix, k: int) -> None:
    if not math.isnan(fx.speed) and not 0 <= fx.speed <= 2000:
        raise Refusal(Reason.OUT_OF_RANGE, f"speed {fx.speed} km/h", f"sentence[{k}].speed")
    if not math.isnan(fx.course) and not 0 <= fx.course <= 360:
        raise Refusal(Reason.OUT_OF_RANGE, f"course {fx.course} deg", f"sentence[{k}].course")


def _set_position(fx: _Fix, f: list[str], src: int, k: int) -> None:
    """Set lat/lon from ``[lat, N|S, lon, E|W]`` if ``src`` is better than what ``fx`` has."""
    lat_s, ns, lon_s, ew = f
    if not (lat_s and lon_s):
        raise Refusal(Reason.BAD_SCHEMA, "fix without position", f"sentence[{k}].lat")
    if ns not in ("N", "S") or ew not in ("E", "W"):
        raise Refusal(Reason.BAD_SCHEMA, f"hemisphere {ns!r}/{ew!r}", f"sentence[{k}].hemisphere")
    lat = _angle(lat_s, 2, 90.0, k, "lat") * (1 if ns == "N" else -1)
    lon = _angle(lon_s, 3, 180.0, k, "lon") * (1 if ew == "E" else -1)
    if src < fx.src:
        fx.lat, fx.lon, fx.src = lat, lon, src


def _angle(s: str, deg_digits: int, limit: float, k: int, name: str) -> float:
    """``ddmm.mmmm`` / ``dddmm.mmmm`` to degrees."""
    dot = s.find(".")
    head = s if dot < 0 else s[:dot]
    if len(head) != deg_digits + 2 or not head.isdigit():
        raise Refusal(
            Reason.BAD_SYNTAX, f"{name} {s!r} is not {'d' * deg_digits}mm.mmm", f"sentence[{k}].{name}"
        )
    deg = int(head[:deg_digits])
    minutes = _float(s[deg_digits:], k, name)
    value = deg + minutes / 60.0
    if minutes >= 60.0 or value > limit:
        raise Refusal(Reason.OUT_OF_RANGE, f"{name} {s!r}", f"sentence[{k}].{name}")
    return value


def _altitude(s: str, k: int, default: float) -> float:
    """Altitude field [m] (``default`` when empty)."""
    if not s:
        return default
    alt = _float(s, k, "altitude")
    if not MIN_ALT_M <= alt <= MAX_ALT_M:
        raise Refusal(Reason.OUT_OF_RANGE, f"altitude {alt} m", f"sentence[{k}].altitude")
    return alt


def _tod(s: str, k: int) -> float:
    """``hhmmss[.ss]`` to seconds of the UTC day."""
    if len(s) < 6 or not s[:6].isdigit():
        raise Refusal(Reason.BAD_SYNTAX, f"time {s!r} is not hhmmss.ss", f"sentence[{k}].time")
    h, m = int(s[:2]), int(s[2:4])
    sec = _float(s[4:], k, "time")
    if h > 23 or m > 59 or sec >= 61.0:
        raise Refusal(Reason.OUT_OF_RANGE, f"time {s!r}", f"sentence[{k}].time")
    return h * 3600 + m * 60 + sec


def _date(s: str, k: int) -> tuple[int, int, int]:
    """RMC ``ddmmyy`` to (two-digit year, month, day); the century is chosen in ``_absolute``."""
    if len(s) != 6 or not s.isdigit():
        raise Refusal(Reason.BAD_SYNTAX, f"date {s!r} is not ddmmyy", f"sentence[{k}].date")
    d, mo, y = int(s[:2]), int(s[2:4]), int(s[4:])
    if not (1 <= d <= 31 and 1 <= mo <= 12):
        raise Refusal(Reason.OUT_OF_RANGE, f"date {s!r}", f"sentence[{k}].date")
    return y, mo, d


def _float(s: str, k: int, name: str) -> float:
    try:
        x = float(s)
    except ValueError:
        raise Refusal(Reason.BAD_SYNTAX, f"{name} {s[:20]!r} is not a number", f"sentence[{k}].{name}") from None
    if not math.isfinite(x) or s.strip().lower() in ("inf", "nan", "infinity", "-inf", "+inf"):
        raise Refusal(Reason.BAD_SYNTAX, f"{name} {s[:20]!r} is not a number", f"sentence[{k}].{name}")
    if any(c not in "0123456789.-+" for c in s):
        raise Refusal(Reason.BAD_SYNTAX, f"{name} {s[:20]!r} is not a plain decimal", f"sentence[{k}].{name}")
    return x


def _int(s: str, k: int, name: str) -> int:
    if not s.isdigit():
        raise Refusal(Reason.BAD_SYNTAX, f"{name} {s[:20]!r} is not an integer", f"sentence[{k}].{name}")
    return int(s)


def _rows(fixes: list[_Fix], received_at: float) -> list[tuple]:
    """One row per epoch with a fix: (t, lat, lon, speed_kmh, course_deg, hdop, fix, alt_m)."""
    known = [fx.date for fx in fixes if fx.date is not None]
    rows = []
    for fx in fixes:
        if fx.fix == 0 or math.isnan(fx.lat):
            continue
        date = fx.date or (known[0] if known else None)
        t = _absolute(fx.tod, date, received_at)
        rows.append((t, fx.lat, fx.lon, fx.speed, fx.course, fx.hdop, max(fx.fix, -1), fx.alt))
    return rows


def _absolute(tod: float, date: tuple[int, int, int] | None, received_at: float) -> float:
    """Unix time of ``tod`` on ``date``, or on the UTC day that puts it nearest ``received_at``.

    A two-digit RMC year is put in the century nearest the receive time.
    """
    if date is not None:
        yy, mo, d = date
        ry = time.gmtime(max(received_at, 0.0)).tm_year
        year = min((ry - ry % 100 + c + yy for c in (-100, 0, 100)), key=lambda y: abs(y - ry))
        try:
            return timegm((year, mo, d, 0, 0, 0)) + tod
        except (ValueError, OverflowError):
            raise Refusal(Reason.OUT_OF_RANGE, f"date {date}", "date") from None
    day = math.floor(received_at / 86400.0) * 86400.0
    candidates = np.array([day - 86400.0, day, day + 86400.0]) + tod
    return float(candidates[np.argmin(np.abs(candidates - received_at))])


# --------------------------------------------------------------------------------------------
# Encoder


def _dm(value: float, deg_digits: int) -> tuple[str, bool]:
    a = abs(value)
    deg = int(a)
    minutes = round((a - deg) * 60.0, 7)
    if minutes >= 60.0:
        deg, minutes = deg + 1, 0.0
    return f"{deg:0{deg_digits}d}{minutes:010.7f}", value >= 0


def sentence(body: str) -> str:
    """``$body*hh`` with its checksum."""
    return f"${body}*{checksum(body):02X}"


def encode_nmea(batch: Batch, *, talker: str = "GN", types: tuple[str, ...] = ("GGA", "RMC")) -> bytes:
    """Encode ``position`` rows as NMEA sentences (CRLF-terminated), times to 1/100 s.

    GGA carries fix quality (1 if absent), HDOP and altitude (``alt_m`` to 0.1 m; empty when NaN, the geoid
    separation always empty), RMC date, speed and course. Raises ``ValueError`` for unknown sentence types.
    """
    out = []
    for row in batch.records():
        t = round(row["t"], 2)
        day, tod = divmod(t, 86400.0)
        y, mo, d = _ymd(day)
        hh, rem = divmod(tod, 3600.0)
        mm, ss = divmod(rem, 60.0)
        hms = f"{int(hh):02d}{int(mm):02d}{ss:05.2f}"
        lat, north = _dm(row["lat"], 2)
        lon, east = _dm(row["lon"], 3)
        pos = f"{lat},{'N' if north else 'S'},{lon},{'E' if east else 'W'}"
        fix = row["fix"] if row["fix"] > 0 else 1
        hdop = "" if math.isnan(row["hdop"]) else f"{row['hdop']:.2f}"
        knots = "" if math.isnan(row["speed_kmh"]) else f"{row['speed_kmh'] / KNOT_KMH:.4f}"
        course = "" if math.isnan(row["course_deg"]) else f"{row['course_deg']:.3f}"
        alt = "" if math.isnan(row["alt_m"]) else f"{row['alt_m']:.1f}"
        for typ in types:
            if typ == "GGA":
                out.append(sentence(f"{talker}GGA,{hms},{pos},{fix},12,{hdop},{alt},M,,M,,"))
            elif typ == "RMC":
                out.append(
                    sentence(f"{talker}RMC,{hms},A,{pos},{knots},{course},{d:02d}{mo:02d}{y % 100:02d},,,A,V")
                )
            else:
                raise ValueError(f"cannot encode {typ}")
    return ("\r\n".join(out) + "\r\n").encode("ascii")


def _ymd(day: float) -> tuple[int, int, int]:
    st = time.gmtime(day * 86400.0)
    return st.tm_year, st.tm_mon, st.tm_mday
