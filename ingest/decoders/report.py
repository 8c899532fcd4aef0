"""Citizen reports (the 12345 hotline, a city app...), from ``city/reports/{source}``: one JSON object
``{"id", "t", "category", "lon", "lat"[, "datum"], "description"[, "address", "media_url", "contact"]}``.

Each report becomes one record: ``device`` = the source, ``quantity`` = ``report``, ``ref`` = the source's own
report id, ``t`` [s since epoch], ``lon``/``lat`` [degree] in ``datum`` (``WGS84`` when not given), and
``note`` = the report's text fields as compact JSON (``report_note`` reads it back); ``value`` is NaN.
Whether the source and the category are known is the twin's to decide.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from ingest.batch import Batch
from ingest.decoders._common import guarded, load_json, number, preview
from ingest.decoders.task import check_fields, text_field
from ingest.decoders.units import DATUMS
from ingest.rejection import Reason, Refusal

QUANTITY = "report"
DEFAULT_DATUM = "WGS84"
"""Datum of a report without ``datum`` (what phone browsers and most apps give)."""
MAX_DESCRIPTION = 2000
"""Longest description [character]."""
MAX_ADDRESS = 200
"""Longest address [character]."""
MAX_CONTACT = 200
"""Longest contact [character]."""
MAX_MEDIA = 5
"""Most media URLs per report [URL]."""
MAX_URL = 500
"""Longest media URL [character]."""
ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
CATEGORY_PATTERN = re.compile(r"[a-z0-9_]{1,64}")
REQUIRED = ("id", "t", "category", "lon", "lat", "description")
OPTIONAL_TEXT = {"address": MAX_ADDRESS, "contact": MAX_CONTACT}
FIELDS = frozenset((*REQUIRED, "datum", "media_url", *OPTIONAL_TEXT))
NOTE_FIELDS = ("category", "description", "address", "media_url", "contact")
"""The fields kept in a report record's ``note`` (the others have columns of their own)."""


@guarded
def decode_report(payload: bytes, *, topic: str, received_at: float) -> Batch:
    """Decode one citizen report; the source is the topic segment after ``reports``."""
    parts = topic.split("/")
    if len(parts) < 2 or parts[-2] != "reports" or not parts[-1]:
        raise Refusal(Reason.BAD_SCHEMA, f"topic {topic[:120]!r} is not .../reports/{{source}}", "topic")
    return report_records(load_json(payload), source=parts[-1])


def report_records(doc: Any, *, source: str) -> Batch:
    """The record of a parsed report of ``source``; raises ``Refusal`` for bad input."""
    check_fields(doc, "a report", REQUIRED, FIELDS)
    report_id = _matching(doc["id"], "id", ID_PATTERN, "1 to 64 of A-Z a-z 0-9 . _ : -")
    t = number(doc["t"], "t", "t")
    lon = _within(doc["lon"], "lon", 180.0)
    lat = _within(doc["lat"], "lat", 90.0)
    datum = doc.get("datum", DEFAULT_DATUM)
    if datum not in DATUMS:
        raise Refusal(Reason.BAD_SCHEMA, f"datum {preview(datum)} not in {DATUMS}", "datum")
    details = {
        "category": _matching(doc["category"], "category", CATEGORY_PATTERN, "1 to 64 of a-z 0-9 _"),
        "description": text_field(doc["description"], "description", low=1, high=MAX_DESCRIPTION),
    }
    details |= {k: text_field(doc[k], k, low=0, high=n) for k, n in OPTIONAL_TEXT.items() if k in doc}
    if "media_url" in doc:
        details["media_url"] = _media_urls(doc["media_url"])
    return Batch.build(
        1, device=source, t=t, quantity=QUANTITY, ref=report_id, lon=lon, lat=lat, datum=datum, note=_compact(details)
    )


def report_note(note: str) -> dict[str, Any]:
    """The text fields of a report record, from its ``note``: ``category`` and ``description``, and those of
    ``address``, ``media_url`` (a list) and ``contact`` the report had. Raises ``ValueError`` if ``note`` is
    not a report's note."""
    doc = json.loads(note)
    if not isinstance(doc, dict) or not {"category", "description"} <= doc.keys() <= set(NOTE_FIELDS):
        raise ValueError(f"not a report note: {note[:80]!r}")
    return doc


def encode_report(batch: Batch) -> bytes:
    """Encode the first row of a report batch as JSON (``datum`` always given). Raises ``ValueError`` on an
    empty batch."""
    if len(batch) == 0:
        raise ValueError("cannot encode an empty batch")
    r = next(iter(batch.records()))
    doc = {"id": r["ref"], "t": r["t"], "lon": r["lon"], "lat": r["lat"], "datum": r["datum"] or DEFAULT_DATUM}
    doc |= report_note(r["note"])
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _compact(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _matching(x: Any, field: str, pattern: re.Pattern[str], allowed: str) -> str:
    """``x`` as text matching ``pattern`` in full; else ``Refusal(bad_schema)`` naming what is ``allowed``."""
    if type(x) is not str or pattern.fullmatch(x) is None:
        raise Refusal(Reason.BAD_SCHEMA, f"{field} {preview(x)} must be {allowed}", field)
    return x


def _within(x: Any, field: str, bound: float) -> float:
    """``x`` as a number within [-bound, bound] [degree]; ``out_of_range`` outside."""
    v = number(x, field, field)
    if not -bound <= v <= bound:
        raise Refusal(Reason.OUT_OF_RANGE, f"{field} {v:g} is outside -{bound:g} to {bound:g} degrees", field)
    return v


def _media_urls(x: Any) -> list[str]:
    """``x`` as a list of at most ``MAX_MEDIA`` http(s) URLs of at most ``MAX_URL`` characters each."""
    if type(x) is not list:
        raise Refusal(Reason.BAD_SCHEMA, f"media_url must be a list of URLs, not {preview(x)}", "media_url")
    if len(x) > MAX_MEDIA:
        raise Refusal(Reason.BAD_SCHEMA, f"media_url has {len(x)} URLs, at most {MAX_MEDIA}", "media_url")
    return [_url(u, f"media_url[{i}]") for i, u in enumerate(x)]


def _url(x: Any, field: str) -> str:
    """One media URL: ``http://`` or ``https://`` with a host, no spaces or control characters."""
    url = text_field(x, field, low=1, high=MAX_URL)
    if not _is_web_url(url):
        raise Refusal(Reason.BAD_SCHEMA, f"{field} {preview(url)} is not an http(s) URL", field)
    return url


def _is_web_url(url: str) -> bool:
    if " " in url or not url.isprintable():
        return False
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # a malformed IPv6 host, for one
        return False
