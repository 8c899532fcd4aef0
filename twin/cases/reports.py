"""Citizen reports (市民上报: the 12345 hotline, an app, Open311): checked, in CGCS2000, ready to open or join a case.

A report arrives as an ingest Batch row (MQTT ``city/reports/{source}``: device = source, ref = the source's id,
lon/lat/datum, note = compact JSON of category, description, address, media_url, contact) or as an Open311
GeoReport v2 form (`from_open311`). `from_record` checks it (CaseError ``bad_request`` names the problem) and brings
its position to CGCS2000 (`twin.district.geo.to_cgcs2000`, GCJ-02 inverted). The twin's id of a report is
``R-{source}-{source_id}``, so the same report sent twice is one report.

A report near an open case of its category opened within `DEDUPE_WINDOW_S` (`twin.cases.book.CaseBook.near`, within
`DEDUPE_RADIUS_M`) joins that case instead of opening one. ``contact`` is stored, never published.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass

from twin.cases.model import CaseError, CasePlace, check_url
from twin.cases.services import Catalogue
from twin.district.geo import DATUMS, to_cgcs2000

DEDUPE_RADIUS_M = 100.0
"""Reports of one category within this distance of an open case's place join it [m] [design: one street corner;
a location typed or tapped on a phone map is often 20-50 m off]."""
DEDUPE_WINDOW_S = 1800.0
"""... when that case was opened at most this long before [s] [design: half an hour; a hazard still there later is
worth a fresh look]."""
REPORT_RADIUS_M = 50.0
"""The case area of a report's case [m] [design]."""
MAX_MEDIA = 5
MAX_DESCRIPTION = 2000
MAX_FIELD = 200
ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
NOTE_KEYS = ("category", "description", "address", "media_url", "contact")


@functools.lru_cache(maxsize=1)
def bundled_catalogue() -> Catalogue:
    """The bundled services catalogue, read once."""
    return Catalogue.load()


def _bad(detail: str) -> CaseError:
    return CaseError("bad_request", detail)


@dataclass(frozen=True)
class CitizenReport:
    """A checked report: position in CGCS2000 [deg], time twin time [unix s]; ``contact`` never published."""

    id: str
    source: str
    source_id: str
    t: float
    category: str
    lon: float
    lat: float
    description: str
    address: str = ""
    media_url: tuple[str, ...] = ()
    contact: str = ""

    def public(self) -> dict:
        """What may be shown or published: everything but ``contact``."""
        return {"id": self.id, "source": self.source, "source_id": self.source_id, "t": self.t,
                "category": self.category, "lon": self.lon, "lat": self.lat, "description": self.description,
                "address": self.address, "media_url": list(self.media_url)}

    def to_row(self, case_id: str | None = None) -> dict:
        """The row of `twin.alerting.store.Store.record_report` (body: description, address, media_url,
        contact)."""
        return {"id": self.id, "source": self.source, "source_id": self.source_id, "case_id": case_id,
                "category": self.category, "t": self.t, "lon": self.lon, "lat": self.lat,
                "body": {"description": self.description, "address": self.address, "media_url": list(self.media_url),
                         "contact": self.contact}}

    @classmethod
    def from_row(cls, row: dict) -> CitizenReport:
        """Take back `to_row` (a stored row)."""
        body = row["body"]
        return cls(row["id"], row["source"], row["source_id"], float(row["t"]), row["category"], float(row["lon"]),
                   float(row["lat"]), body.get("description", ""), body.get("address", ""),
                   tuple(body.get("media_url", ())), body.get("contact", ""))

    def place(self) -> CasePlace:
        """The case area of a report's case: a disc of `REPORT_RADIUS_M` around it, named by its address."""
        name = self.address or f"{self.lon:.5f}, {self.lat:.5f}"
        return CasePlace(f"report:{self.id}", name, name, self.lon, self.lat, REPORT_RADIUS_M)


def _text(what: str, value: object, limit: int, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise _bad(f"{what} must be a string, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise _bad(f"{what} must not be empty")
    if len(value) > limit:
        raise _bad(f"{what} is too long ({len(value)} characters, at most {limit})")
    return value


def _media(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    urls = [value] if isinstance(value, str) else value
    if not isinstance(urls, list) or len(urls) > MAX_MEDIA:
        raise _bad(f"media_url must be a URL or a list of at most {MAX_MEDIA} URLs")
    try:
        return tuple(check_url(u) for u in urls)
    except CaseError as exc:
        raise _bad(f"media_url: {exc.detail}") from None


def _position(lon: object, lat: object, datum: object) -> tuple[float, float]:
    for what, v in (("lon", lon), ("lat", lat)):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise _bad(f"{what} must be a finite number [deg], got {v!r}")
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise _bad(f"lon/lat out of range: {lon}, {lat}")
    if datum is not None and not isinstance(datum, str):
        raise _bad(f"datum must be one of {', '.join(DATUMS)}, got {datum!r}")
    try:
        x, y = to_cgcs2000(float(lon), float(lat), datum or "WGS84")
    except ValueError:
        raise _bad(f"datum must be one of {', '.join(DATUMS)}, got {datum!r}") from None
    return float(x), float(y)


def from_record(device: str, ref: str, t: float, lon: float, lat: float, datum: str | None, note: str,
                catalogue: Catalogue | None = None) -> CitizenReport:
    """A checked report from a Batch row (see the module docstring); ``catalogue`` (the bundled one when None) says
    which sources and categories are known. CaseError ``bad_request`` names the first problem."""
    catalogue = catalogue if catalogue is not None else bundled_catalogue()
    if not isinstance(device, str) or device not in catalogue.sources:
        raise _bad(f"unknown report source {device!r}; sources: {', '.join(catalogue.sources)}")
    if not isinstance(ref, str) or not ID_RE.match(ref):
        raise _bad(f"the report id must be 1-64 of A-Z a-z 0-9 _ . : -, got {ref!r}")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise _bad(f"t must be a finite time [unix s], got {t!r}")
    try:
        body = json.loads(note) if isinstance(note, str | bytes) else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _bad("the report's note must be a JSON object with category, description, address, media_url, contact")
    unknown = sorted(set(body) - set(NOTE_KEYS))
    if unknown:
        raise _bad(f"unknown report field(s) {', '.join(unknown)}; fields: {', '.join(NOTE_KEYS)}")
    category = body.get("category")
    if not isinstance(category, str) or catalogue.get(category) is None:
        codes = ", ".join(s.code for s in catalogue.all())
        raise _bad(f"unknown category {category!r}; categories: {codes}")
    x, y = _position(lon, lat, datum)
    return CitizenReport(f"R-{device}-{ref}", device, ref, float(t), category, x, y,
                         _text("description", body.get("description"), MAX_DESCRIPTION, required=True),
                         _text("address", body.get("address"), MAX_FIELD), _media(body.get("media_url")),
                         _text("contact", body.get("contact"), MAX_FIELD))


def note_of(category: str, description: str, address: str = "", media_url: tuple[str, ...] | list[str] = (),
            contact: str = "") -> str:
    """A Batch row's note for a report: compact JSON (sorted keys, not ASCII-escaped) of its fields."""
    body = {"category": category, "description": description, "address": address, "media_url": list(media_url),
            "contact": contact}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def from_open311(form: dict, t: float, request_id: str, source: str = "open311",
                 catalogue: Catalogue | None = None) -> CitizenReport:
    """A checked report from an Open311 GeoReport v2 ``POST requests`` form (``service_code``, ``lat``, ``long``,
    ``description``, ``address_string``, ``media_url``, ``email`` / ``phone`` / ``first_name`` / ``last_name``; an
    extra ``datum``, default WGS84), its id ``request_id`` given by the server."""
    if not isinstance(form, dict):
        raise _bad("the request must be a form of fields")

    def number(name: str) -> float:
        value = form.get(name)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _bad(f"{name} must be a number [deg], got {value!r}") from None

    for name in ("service_code", "description", "address_string", "media_url"):
        if not isinstance(form.get(name), str | None):
            raise _bad(f"{name} must be text, got {form.get(name)!r}")
    contact = " ".join(str(form[k]).strip() for k in ("first_name", "last_name", "email", "phone")
                       if isinstance(form.get(k), str | int) and str(form[k]).strip())
    media = form.get("media_url")
    note = note_of(form.get("service_code") or "", form.get("description") or "", form.get("address_string") or "",
                   [media] if media else [], contact)
    return from_record(source, request_id, t, number("long"), number("lat"), form.get("datum"), note, catalogue)
