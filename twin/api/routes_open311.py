"""Citizen reports (市民端) over Open311 GeoReport v2: the service list, posting a service request, reading requests.

JSON only (``.json``). Errors are Open311's: a JSON list ``[{"code": <HTTP status>, "description": "..."}]`` with
that HTTP status (400 a missing or invalid field, 403 a bad ``api_key``, 404 an unknown id). A posted request
becomes a citizen report exactly like one on MQTT ``city/reports/open311``: ``LiveQuery.case_command("report",
{"source": "open311", "doc": ...})`` logs it in the twin's raw log, the report decoder of the MQTT path validates
it (a refused one is dead-lettered, and the client gets 400 with the decoder's reason), and the twin de-duplicates
it by place and category and links it to a case. Positions are WGS84 (Open311's); times ISO 8601 in Shanghai time
(+08:00). Names: Chinese and English (``?locale=zh-CN`` or ``en-US`` for one). See docs/contract/http.md, "Open311".
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import uuid
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from twin.alerting.cap import SHANGHAI_TZ
from twin.api.errors import ApiError
from twin.api.routes_cases import run_case_command
from twin.api.state import ApiState

SOURCE = "open311"
"""The report source of Open311 requests (reports' ids are ``R-open311-{id}``)."""
LOCALES = ("zh-CN", "en-US")
MAX_BODY = 64 * 1024
"""Largest request body [byte]."""
MAX_REQUESTS = 1000
"""Most requests one ``GET /requests.json`` answers (Open311's suggested maximum)."""
DEFAULT_WINDOW_S = 90 * 86400.0
"""Without ``start_date``/``end_date``, ``GET /requests.json`` answers the last 90 days (Open311's default). [s]"""
MAX_PAST_S = 86400.0
"""A posted ``requested_datetime`` may be at most this long before the twin's time [s] (400 otherwise)."""
MAX_AHEAD_S = 300.0
"""... and at most this long after it [s] (clocks differ a little; a report from the future is refused)."""
MAX_CONTACT = 200
"""The decoder's longest ``contact`` [character]; longer contact details are cut to it."""
CLOSED = ("closed", "cancelled")
STATUS_NAMES = {"new": "待派遣", "dispatched": "已派遣", "accepted": "已接单", "en_route": "在途", "on_scene": "已到场",
                "disposed": "已处置", "verified": "已核查", "closed": "已结案", "cancelled": "已撤销"}
"""Case status -> its Chinese name (the English one is the status with spaces)."""
CENTRE = ("城市运行管理中心", "city operations centre")
"""Who is responsible for a request no unit has been sent to yet."""


class Open311Error(Exception):
    """An Open311 error answer: ``[{"code": status, "description": ...}]`` with the HTTP ``status``."""

    def __init__(self, status: int, description: str) -> None:
        super().__init__(f"{status}: {description}")
        self.status, self.description = status, description


async def open311_error(_request: Request, exc: Open311Error) -> JSONResponse:
    """The exception handler of `Open311Error` (installed by `twin.api.app.create_app`)."""
    return JSONResponse([{"code": exc.status, "description": exc.description}], status_code=exc.status)


# ---------------------------------------------------------------- text and times
def localised(zh: str, en: str, locale: str | None) -> str:
    """``zh`` for zh-CN, ``en`` for en-US, both (Chinese first: ``道路积水 · Waterlogging``) without a locale."""
    if locale == "zh-CN" or not en:
        return zh or en
    if locale == "en-US" or not zh:
        return en
    return f"{zh} · {en}"


def check_locale(locale: str | None) -> str | None:
    """The locale if it is one of `LOCALES` (or None); 400 otherwise."""
    if locale is not None and locale not in LOCALES:
        raise Open311Error(400, f"locale {locale[:20]!r} is not one of {', '.join(LOCALES)}")
    return locale


def iso(t: float | None) -> str | None:
    """ISO 8601 in Shanghai time with its offset, e.g. ``2025-01-01T08:00:00+08:00``; None for None and for a value
    that is no time a date can show (never raises: one bad stored time must not break every read of a request)."""
    if t is None:
        return None
    try:
        return dt.datetime.fromtimestamp(float(t), SHANGHAI_TZ).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def parse_time(text: str, field: str) -> float:
    """An ISO 8601 date-time as unix seconds (without an offset: Shanghai time); 400 if it is not one."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise Open311Error(400, f"{field} {str(text)[:40]!r} is not an ISO 8601 date-time "
                                "(e.g. 2025-01-01T08:00:00+08:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=SHANGHAI_TZ)
    return when.timestamp()


def status_notes(status: str, locale: str | None) -> str:
    """The case's status in words (both languages without a locale)."""
    return localised(STATUS_NAMES.get(status, status), status.replace("_", " "), locale)


# ---------------------------------------------------------------- the posted form
async def read_fields(request: Request) -> dict:
    """The posted fields: a form (``application/x-www-form-urlencoded``) or a JSON object, over the query's.

    Repeated form fields keep their last value, but ``media_url`` keeps all. 400 for a body that is too large,
    not UTF-8, not a JSON object, or of another media type."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise Open311Error(400, f"the request body is larger than {MAX_BODY} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: dict = {k: v for k, v in request.query_params.items()}
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Open311Error(400, "the request body is not UTF-8") from None
    if kind == "application/json":
        try:
            doc = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            raise Open311Error(400, f"the JSON body cannot be read: {exc}") from None
        if not isinstance(doc, dict):
            raise Open311Error(400, "the JSON body must be an object of the request's fields")
        return fields | doc
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise Open311Error(400, f"send the fields as application/x-www-form-urlencoded or application/json, "
                                f"not {kind[:60]}")
    form = parse_qs(text, keep_blank_values=True)
    fields |= {k: (v if k == "media_url" else v[-1]) for k, v in form.items()}
    return fields


def check_api_key(keys: tuple[str, ...], given: object) -> None:
    """403 unless ``given`` is one of ``keys`` (constant-time comparison)."""
    if not keys:
        raise Open311Error(403, "this twin takes no Open311 reports: it was started without an Open311 api_key "
                                "(twin run --open311-key KEY)")
    if not isinstance(given, str) or not given:
        raise Open311Error(403, "api_key is required to post a service request")
    if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise Open311Error(403, "invalid api_key")


def _coordinate(value: object) -> object:
    """A number from a form's text; anything else as given (the report decoder then says what is wrong)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _media(value: object) -> list:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [v for v in values if v != ""]


def _contact(fields: dict) -> str:
    """The reporter's name, e-mail and phone on one line (kept with the report, never published or returned)."""
    name = " ".join(str(fields.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
    parts = [name] + [str(fields.get(k) or "").strip() for k in ("email", "phone")]
    return "; ".join(p for p in parts if p)[:MAX_CONTACT]


def report_doc(fields: dict, now: float) -> dict:
    """The citizen report (as on MQTT ``city/reports/open311``) of a posted service request; 400 when a field
    Open311 requires is missing. Everything else is checked by the report decoder."""
    code = fields.get("service_code")
    if not isinstance(code, str) or not code.strip():
        raise Open311Error(400, "service_code is required (GET /open311/v2/services.json lists them)")
    if fields.get("lat") in (None, "") or fields.get("long") in (None, ""):
        raise Open311Error(400, "lat and long are required: this twin places a report by its coordinates "
                                "(WGS84); address_string alone is not enough")
    when = fields.get("requested_datetime")
    t = parse_time(when, "requested_datetime") if isinstance(when, str) and when else now
    if not now - MAX_PAST_S <= t <= now + MAX_AHEAD_S:
        raise Open311Error(400, f"requested_datetime {str(when)[:40]!r} is more than {MAX_PAST_S / 3600:.0f} h before "
                                f"or {MAX_AHEAD_S / 60:.0f} min after the twin's time {iso(now)}")
    doc = {"id": uuid.uuid4().hex[:16], "t": t,
           "category": code.strip(), "lon": _coordinate(fields["long"]), "lat": _coordinate(fields["lat"]),
           "datum": "WGS84", "description": fields.get("description", "")}
    if fields.get("address_string"):
        doc["address"] = fields["address_string"]
    if media := _media(fields.get("media_url")):
        doc["media_url"] = media
    if contact := _contact(fields):
        doc["contact"] = contact
    return doc


def submit(state: ApiState, doc: dict) -> dict:
    """Have the twin take the report; Open311 errors for its refusals (400 with the reason, 503/504 when busy)."""
    try:
        return run_case_command(state, "report", {"source": SOURCE, "doc": doc})
    except ApiError as exc:
        status = exc.status if exc.status in (503, 504) else 400
        raise Open311Error(status, exc.detail if isinstance(exc.detail, str) else str(exc.detail)) from None


# ---------------------------------------------------------------- answers
def split_text(text: str, locale: str | None) -> str:
    """A catalogue text written ``中文 / English`` in one language (all of it without a locale, or when it has no
    `` / ``)."""
    zh, sep, en = (text or "").partition(" / ")
    return localised(zh.strip(), en.strip(), locale) if locale and sep else text or ""


def service_doc(service: dict, locale: str | None) -> dict:
    """One entry of ``services.json``."""
    zh, en = service.get("name_zh", ""), service.get("name_en", "")
    words = [service["code"], zh, en, service.get("hazard") or ""]
    return {"service_code": service["code"], "service_name": localised(zh, en, locale),
            "description": split_text(service.get("description", ""), locale), "metadata": False,
            "type": "realtime", "keywords": ", ".join(w for w in words if w),
            "group": split_text(service.get("group", ""), locale)}


def request_doc(report: dict, case: dict | None, services: dict[str, dict], locale: str | None) -> dict:
    """One service request as Open311 gives it (no contact details)."""
    service = services.get(report.get("category"), {})
    status = (case or {}).get("status") or report.get("case_status") or "new"
    assignee = (case or {}).get("assignee") or ""
    media = report.get("media_url") or []
    case_id = (case or {}).get("id") or report.get("case") or report.get("case_id")
    deadlines = (case or {}).get("deadlines") or {}
    return {
        "service_request_id": report["id"],
        "status": "closed" if status in CLOSED else "open",
        "status_notes": status_notes(status, locale),
        "service_name": localised(service.get("name_zh", ""), service.get("name_en", report.get("category", "")),
                                  locale),
        "service_code": report.get("category"),
        "description": report.get("description", ""),
        "agency_responsible": assignee or localised(*CENTRE, locale),
        "service_notice": notice(case_id, locale),
        "requested_datetime": iso(report.get("t")),
        "updated_datetime": iso((case or {}).get("updated_at") or report.get("t")),
        "expected_datetime": iso(deadlines.get("dispose")),
        "address": report.get("address") or "",
        "lat": report.get("lat"),
        "long": report.get("lon"),
        "media_url": media[0] if isinstance(media, list) and media else (media or None),
    }


def notice(case_id: str | None, locale: str | None) -> str:
    """What the citizen is told: the case the request is handled in."""
    if not case_id:
        return localised("已受理", "received", locale)
    return localised(f"已受理，案件 {case_id}", f"received, case {case_id}", locale)


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def open311_routes(state: ApiState) -> APIRouter:
    """The router of Open311 GeoReport v2."""
    view = state.view
    r = APIRouter(prefix="/open311/v2", tags=["open311"], include_in_schema=False)  # Open311's own spec and errors

    def catalogue() -> dict[str, dict]:
        return {s["code"]: s for s in view.services()}

    def request_of(report: dict, services: dict[str, dict], locale: str | None) -> dict:
        case_id = report.get("case") or report.get("case_id")
        return request_doc(report, view.case(case_id) if case_id else None, services, locale)

    @r.get("/services.json")
    def services(locale: str | None = None) -> JSONResponse:
        """The service list (GeoReport v2 GET Service List): ``service_code``, ``service_name``, ``description``,
        ``metadata`` (false: no attributes), ``type`` (realtime: the request id comes at once), ``keywords``,
        ``group``. Names in Chinese and English, or one with ``locale=zh-CN`` / ``en-US``."""
        locale = check_locale(locale)
        return JSONResponse([service_doc(s, locale) for s in view.services()])

    @r.get("/services/{code}.json")
    def service_definition(code: str) -> JSONResponse:
        """A service's definition (GeoReport v2 GET Service Definition): no attributes. 404 for an unknown
        code."""
        if code not in catalogue():
            raise Open311Error(404, f"no service {code[:64]!r}")
        return JSONResponse({"service_code": code, "attributes": []})

    @r.post("/requests.json", status_code=201)
    async def post_request(request: Request) -> JSONResponse:
        """Post a service request (GeoReport v2 POST Service Request), as a form or JSON: ``api_key``,
        ``service_code``, ``lat``, ``long`` (WGS84), ``description``, and optionally ``address_string``,
        ``media_url``, ``requested_datetime`` (ISO 8601; default now), ``email``, ``phone``, ``first_name``,
        ``last_name`` (kept as the report's contact, never published or returned). **201** and
        ``[{"service_request_id", "service_notice", "account_id": null}]``."""
        fields = await read_fields(request)
        check_api_key(state.config.open311_keys, fields.get("api_key"))
        doc = report_doc(fields, view.now())
        result = await run_in_threadpool(submit, state, doc)
        report, case = result.get("report") or {}, result.get("case") or {}
        locale = fields.get("locale") if fields.get("locale") in LOCALES else None
        answer = {"service_request_id": report.get("id", f"R-{SOURCE}-{doc['id']}"),
                  "service_notice": notice(case.get("id"), locale), "account_id": None}
        return JSONResponse([answer], status_code=201)

    @r.get("/requests/{request_id}.json")
    def get_request(request_id: str, locale: str | None = None) -> JSONResponse:
        """One service request (GeoReport v2 GET Service Request): a list of one, or 404."""
        locale = check_locale(locale)
        report = view.report(request_id)
        if report is None:
            raise Open311Error(404, f"no service request {request_id[:80]!r}")
        return JSONResponse([request_of(report, catalogue(), locale)])

    @r.get("/requests.json")
    def get_requests(service_request_id: str | None = None, service_code: str | None = None,
                     start_date: str | None = None, end_date: str | None = None, status: str | None = None,
                     locale: str | None = None) -> JSONResponse:
        """Service requests (GeoReport v2 GET Service Requests), newest first, at most 1000. With
        ``service_request_id`` (comma-separated) those requests and no other filter; else by ``service_code``,
        ``status`` (open, closed; comma-separated) and ``start_date``/``end_date`` (ISO 8601; default the last
        90 days)."""
        locale, services = check_locale(locale), catalogue()
        if service_request_id is not None:
            reports = [rep for rid in _split(service_request_id) if (rep := view.report(rid)) is not None]
            return JSONResponse([request_of(rep, services, locale) for rep in reports[:MAX_REQUESTS]])
        statuses = set(_split(status))
        if statuses - {"open", "closed"}:
            raise Open311Error(400, f"status {status[:40]!r}: open, closed or both (comma-separated)")
        end = parse_time(end_date, "end_date") if end_date else view.now()
        start = parse_time(start_date, "start_date") if start_date else end - DEFAULT_WINDOW_S
        codes = set(_split(service_code))
        out = []
        for report in sorted(view.reports(limit=100_000), key=lambda rep: -float(rep.get("t", 0.0))):
            if not start <= float(report.get("t", 0.0)) <= end or (codes and report.get("category") not in codes):
                continue
            doc = request_of(report, services, locale)
            if not statuses or doc["status"] in statuses:
                out.append(doc)
            if len(out) >= MAX_REQUESTS:
                break
        return JSONResponse(out)

    return r
