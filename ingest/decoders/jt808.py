"""JT/T 808 location frames from the JT/T 808 gateway (``city/beidou/{device}`` payloads starting with 0x7e).

A payload is one whole escaped frame with both flags (``ingest.jt808``), or several back to back (a reassembled
batch too long for one frame, ``ingest.jt808.reassembly.frame_payload``). Location report 0x0200 gives one
``position`` record, batch upload 0x0704 one per item; reports without a fix (status bit 1 clear) or with
encrypted latitude/longitude (status bit 5) are skipped and counted in ``Batch.ignored``. Other message ids,
sub-packaged pieces and encrypted bodies are ``bad_schema``; a frame of another terminal than the registry's
``jt808_phone`` (compared without leading zeros) is ``identity_mismatch``.

Columns: ``lat``/``lon`` [degree] signed by status bits 2/3, ``speed_kmh`` (WORD / 10), ``course_deg``,
``alt_m`` (the terminal's altitude [m]), ``fix`` 1, ``datum`` ``CGCS2000`` when Beidou is the only constellation
(status bits 18-21) else ``WGS84``, ``t`` from the BCD time (GMT+8). ``note`` is compact JSON (sorted keys) of
the rest: ``alarm``, ``status``, ``gnss`` (sorted), and when present ``mileage_km``, ``fuel_l``, ``signal``,
``satellites``, ``extra`` (``[[item id, hex value], ...]``) and ``batch_type`` (0x0704: 0 normal, 1 blind area).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from ingest.batch import Batch
from ingest.jt808.header import build_frame, parse_frame, phone_key
from ingest.jt808.location import (
    BATCH_NORMAL,
    Location,
    decode_batch_location,
    decode_location,
    encode_batch_location,
    encode_location,
)
from ingest.jt808.messages import BATCH_LOCATION, LOCATION
from ingest.rejection import Reason, Refusal

_FLAG = b"\x7e"


def jt808_records(payload: bytes, *, device: str, received_at: float, terminal: str | None = None) -> Batch:
    """The ``position`` records of ``device`` in a JT/T 808 payload (see module docstring); raises ``Refusal``
    for bad input. ``terminal`` is the registry's phone number of the device, checked when given.
    ``received_at`` is not needed: the frame carries its time."""
    rows: list[tuple] = []
    ignored = 0
    for k, escaped in enumerate(_frames(payload)):
        batch_type, locations = _locations(escaped, terminal, k)
        for loc in locations:
            if not loc.fixed or loc.latlon_encrypted:
                ignored += 1
                continue
            if math.isnan(loc.time):
                raise Refusal(Reason.OUT_OF_RANGE, "positioned report with an all-zero time", f"frame[{k}].time")
            rows.append(_row(loc, batch_type))
    n = len(rows)
    if n == 0:
        return Batch.empty(ignored=ignored)
    cols: Any = rows[0] if n == 1 else [list(c) for c in zip(*rows, strict=True)]
    return Batch.build(
        n,
        device=device,
        t=cols[0],
        quantity="position",
        lat=cols[1],
        lon=cols[2],
        speed_kmh=cols[3],
        course_deg=cols[4],
        alt_m=cols[5],
        fix=1,
        datum=cols[6],
        note=cols[7],
        ignored=ignored,
    )


def _frames(payload: bytes) -> list[bytes]:
    """The escaped frames of a payload ``7e ... 7e [7e ... 7e ...]``."""
    if len(payload) < 2 or payload[:1] != _FLAG or payload[-1:] != _FLAG:
        raise Refusal(Reason.BAD_SYNTAX, "JT/T 808 payload must start and end with 0x7e", "payload")
    frames = [f for f in bytes(payload[1:-1]).split(_FLAG) if f]
    if not frames:
        raise Refusal(Reason.BAD_SYNTAX, "no frame between the flags", "payload")
    return frames


def _locations(escaped: bytes, terminal: str | None, k: int) -> tuple[int | None, list[Location]]:
    msg = parse_frame(escaped)
    h = msg.header
    if terminal is not None and phone_key(terminal) != h.terminal:
        raise Refusal(
            Reason.IDENTITY_MISMATCH, f"frame of terminal {h.terminal}, device is {terminal}", f"frame[{k}].phone"
        )
    if h.msg_id not in (LOCATION, BATCH_LOCATION):
        raise Refusal(Reason.BAD_SCHEMA, f"message 0x{h.msg_id:04x} is not a location", f"frame[{k}].msg_id")
    if h.encrypted or h.packet_total:
        what = "an encrypted body" if h.encrypted else "a sub-package piece"
        raise Refusal(Reason.BAD_SCHEMA, f"message 0x{h.msg_id:04x} is {what}", f"frame[{k}].attributes")
    if h.msg_id == LOCATION:
        return None, [decode_location(msg.body)]
    return decode_batch_location(msg.body)


def _row(loc: Location, batch_type: int | None) -> tuple:
    """(t, lat, lon, speed_kmh, course_deg, alt_m, datum, note)."""
    note: dict[str, Any] = {"alarm": loc.alarm, "status": loc.status, "gnss": sorted(loc.gnss)}
    for name in ("mileage_km", "fuel_l", "signal", "satellites"):
        value = getattr(loc, name)
        if value is not None:
            note[name] = value
    if loc.extra:
        note["extra"] = [[item, value.hex()] for item, value in loc.extra]
    if batch_type is not None:
        note["batch_type"] = batch_type
    text = orjson.dumps(note, option=orjson.OPT_SORT_KEYS).decode()
    return (loc.time, loc.lat, loc.lon, loc.speed_kmh, float(loc.direction_deg), float(loc.altitude_m), loc.datum, text)


def encode_jt808(batch: Batch, *, phone: str, serial: int = 0, version: int = 2013) -> bytes:
    """One whole frame of a ``position`` batch: 0x0200 for one row, 0x0704 (type 0, or ``batch_type`` of the
    first row's note) for several. Absent speed, course and altitude are sent as 0; ``datum`` CGCS2000 sends
    BDS only, else GPS and BDS; a ``note`` as ``jt808_records`` writes it gives alarm, status, items and
    constellations back. Raises ``ValueError`` for an empty batch or a body over one frame (about 25 rows)."""
    if len(batch) == 0:
        raise ValueError("cannot encode an empty batch")
    locations, batch_type = [], BATCH_NORMAL
    for row in batch.records():
        note = _note(row["note"])
        batch_type = note.get("batch_type", batch_type) if not locations else batch_type
        locations.append(_location(row, note))
    if len(locations) == 1:
        return build_frame(LOCATION, phone, serial, encode_location(locations[0]), version=version)
    body = encode_batch_location(batch_type, locations)
    return build_frame(BATCH_LOCATION, phone, serial, body, version=version)


def _note(text: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _location(row: dict[str, Any], note: dict[str, Any]) -> Location:
    def num(name: str) -> float:
        return 0.0 if math.isnan(row[name]) else row[name]

    gnss = note["gnss"] if "gnss" in note else (["BDS"] if row["datum"] == "CGCS2000" else ["GPS", "BDS"])
    return Location(
        alarm=int(note.get("alarm", 0)),
        status=int(note.get("status", 0)),
        lat=row["lat"],
        lon=row["lon"],
        altitude_m=round(num("alt_m")),
        speed_kmh=num("speed_kmh"),
        direction_deg=round(num("course_deg")) % 360,
        time=row["t"],
        fixed=True,
        gnss=frozenset(gnss),
        mileage_km=note.get("mileage_km"),
        fuel_l=note.get("fuel_l"),
        signal=note.get("signal"),
        satellites=note.get("satellites"),
        extra=tuple((int(i), bytes.fromhex(v)) for i, v in note.get("extra", ())),
    )
