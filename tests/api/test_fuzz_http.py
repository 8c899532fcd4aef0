"""Fuzzing the HTTP API from its own OpenAPI description (issue 13): no 5xx, the declared answers, JSON errors.

- `test_every_operation_answers_within_its_schema_and_errors_are_json`: schemathesis, in process
  through the ASGI app, over every operation of ``/openapi.json``: its coverage phase (boundary and
  invalid values: wrong types, missing required parameters, out-of-range numbers) and a bounded
  fuzzing phase, valid and invalid data alike. The app runs over the scenario of
  ``tests/api/conftest.py`` (a live core with an active crowd alert) with a write token, so the ack
  is exercised too; half of the cases of the routes that need a real alert, layer or place get one.
- `test_hostile_values_in_every_parameter`: each parameter of each operation, the others valid,
  set to hostile text (NaN and infinities, numbers beyond float, very long strings, NUL, unicode
  controls and bidi overrides, path tricks), and hostile ack bodies.

Every answer must be: no 5xx (``/api/health``'s 503 cannot happen here: the scenario's ticks are
fresh); of the declared media type and JSON schema where the description has them; and, for every
4xx, JSON ``{"error": "<code>", "detail": ...}`` (docs/contract/http.md, "Errors").

Bounded for CI (about 25 s on 2 cores; 35 s at 40 examples): ``MAX_EXAMPLES`` per operation, no deadline, a fixed
seed (``FUZZ_SEED`` in the environment picks another), no example database.
"""

from __future__ import annotations

import json
import os
import zlib
from urllib.parse import quote

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.api.conftest import TOKEN
from twin.api import ApiConfig, create_app

pytestmark = [pytest.mark.slow,
              # numpy's overflow and division warnings in a route are errors here (a 500): a hostile range
              # once drew a whole layer in one colour that way
              pytest.mark.filterwarnings("error::RuntimeWarning")]

MAX_EXAMPLES = 25
"""Fuzzing-phase cases per operation (the coverage phase adds its own, a few dozen at most)."""
SEED = int(os.environ.get("FUZZ_SEED", "20250101"))
CONFIG = {
    "seed": SEED,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
    "phases": {"examples": {"enabled": False}, "stateful": {"enabled": False}},
}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def error_problem(status: int, media: str, text: str) -> str | None:
    """What is wrong with an answer's error format, or None: a 4xx/5xx must be JSON ``{"error", "detail"}``
    with a non-empty code."""
    if status < 400:
        return None
    if media.split(";")[0].strip().lower() != "application/json":
        return f"{status} is {media!r}, not JSON: {text[:200]!r}"
    try:
        body = json.loads(text)
    except ValueError:
        return f"{status} is not JSON: {text[:200]!r}"
    if not (isinstance(body, dict) and set(body) == {"error", "detail"} and isinstance(body["error"], str)
            and body["error"]):
        return f"{status} is not {{'error', 'detail'}}: {text[:200]!r}"
    return None


def json_errors(_ctx, response, case) -> None:
    """Schemathesis check: an error answer is JSON ``{"error": "<code>", "detail": ...}``."""
    if response.status_code < 400:
        return
    media = response.headers.get("content-type", [""])
    problem = error_problem(response.status_code, media[0] if isinstance(media, list) else media, response.text)
    assert problem is None, f"{case.operation.label}: {problem}"


CHECKS = [not_a_server_error, content_type_conformance, response_schema_conformance, json_errors]


@pytest.fixture(scope="module")
def fuzz_app(scenario):
    """The app over the shared scenario, with a write token; its lifespan is stopped at the end."""
    svc, _, _ = scenario
    app = create_app(svc, ApiConfig(token=TOKEN))
    yield app
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()  # schemathesis runs an app's lifespan once and keeps it until exit
    assert app.state.api.on_tick not in svc.listeners, "the app's tick listener is gone"


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app):
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app, config=schemathesis.Config.from_dict(CONFIG))


schema = schemathesis.pytest.from_fixture("fuzz_schema")


def steer(case, alert: str, layers: list[str], inside: tuple[float, float]) -> None:
    """Send half of the cases of the routes that need a real name or place to one (random names and points
    rarely hit one): the real alert for the ack, a served layer for the layer routes, a point on the grid
    for ``/api/point``. The other parameters stay as generated. The half is picked from the case's own
    data, so a run is reproducible."""
    pick = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode())
    if pick % 2 == 0:
        return
    path = case.operation.path
    if path == "/api/alerts/{identifier}/ack":
        case.path_parameters = {**(case.path_parameters or {}), "identifier": alert}
    elif path.startswith("/api/layers/{name}"):
        case.path_parameters = {**(case.path_parameters or {}), "name": layers[(pick >> 1) % len(layers)]}
    elif path == "/api/point":
        case.query = {**(case.query or {}), "lon": inside[0], "lat": inside[1]}


@pytest.fixture(scope="module")
def point_inside(scenario):
    """``driver.cell_inside(alert)`` of the shared scenario, worked out once per area of the alert: it is the same
    point for the same cells (the cell centres' lon/lat of the whole grid, which it computes, take longer than a
    case's request), and the cells only change on a tick, which fuzzing never runs."""
    _, driver, alert = scenario
    points: dict[bytes, tuple[float, float]] = {}

    def point() -> tuple[float, float]:
        key = np.asarray(driver.core.book.active[alert].cells).tobytes()
        if key not in points:
            points[key] = driver.cell_inside(alert)
        return points[key]

    return point


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_schema_and_errors_are_json(case, scenario, fuzz_app, point_inside):
    _, _, alert = scenario
    steer(case, alert, sorted(fuzz_app.state.api.view.layer_names()), point_inside())
    case.call_and_validate(headers=AUTH, checks=CHECKS)


def test_the_openapi_description_gives_every_error_the_json_error_body(api):
    doc = api.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas, "FastAPI's own 422 body is not what the API sends"
    assert set(schemas["ErrorBody"]["required"]) == {"error", "detail"}
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert responses["4XX"]["content"]["application/json"]["schema"] == error_ref, (method, path)
            for code, response in responses.items():
                if code[0] in "45" and (method, path, code) != ("get", "/api/health", "503"):
                    assert response["content"]["application/json"]["schema"] == error_ref, (method, path, code)
    stale = doc["paths"]["/api/health"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]
    assert stale == {"$ref": "#/components/schemas/Health"}, "a stale health answer is the health document"


HOSTILE = ["nan", "NaN", "-inf", "Infinity", "1e309", "-1e309", "1.7976931348623157e308", "5e-324",
           "99999999999999999999999999999", "-0", "0x10", "1_0", "", " ", "null", "true", "[]", "{}",
           "\x00", "%00", "é", "雨", "😀", "\u202e", "\u2028", "\ufeff", "../../etc/passwd", "a" * 10_000,
           "121.4,31.2,121.5", "-180,-90,180,90", "1,2,3,4,5"]
"""Text put in one parameter at a time (query values and path segments)."""
HOSTILE_BODIES = [b"", b"null", b"[]", b"{", b'{"operator": null}', b'{"operator": 1e999}',
                  b'{"operator": "\\ud800"}', b'{"operator": "\\u202eevil"}', b'{"operator": "a\\u2028b"}',
                  b'{"operator": "\\u0000"}', b'{"operator": "' + "雨".encode() * 65 + b'"}',
                  b'{"operator": "ok", "note": "' + b"n" * 100_000 + b'"}', b'{"operator": ["Wang"]}',
                  b'{"operator": "Wang", "note": {"a": 1}}', b"\xff\xfe", b'{"operator": "Wang", "operator": ""}']


def _valid_params(op: dict, alert: str, inside: tuple[float, float], silence: str) -> tuple[dict, dict]:
    """Path and query values that make a request of the operation valid (required ones only)."""
    path_values = {"name": "elevation", "identifier": alert, "silence_id": silence, "case_id": "bund-20250101-0001",
                   "unit": "unit-police-04"}
    query = {p["name"]: dict(zip(("lon", "lat"), inside, strict=True))[p["name"]]
             for p in op.get("parameters", []) if p["in"] == "query" and p.get("required")}
    return {p["name"]: path_values[p["name"]] for p in op.get("parameters", []) if p["in"] == "path"}, query


def _check(r, where: str, doc_op: dict) -> None:
    assert r.status_code < 500, f"{where}: {r.status_code} {r.text[:300]!r}"
    problem = error_problem(r.status_code, r.headers.get("content-type", ""), r.text)
    assert problem is None, f"{where}: {problem}"
    if r.status_code == 200:
        declared = list(doc_op["responses"]["200"].get("content", {}))
        media = r.headers["content-type"].split(";")[0]
        assert any(d.split(";")[0] == media for d in declared), f"{where}: {media} is not one of {declared}"


def test_hostile_values_in_every_parameter(api, scenario):
    _, driver, alert = scenario
    inside = driver.cell_inside(alert)
    doc = api.get("/openapi.json").json()
    made = api.post("/api/silences", headers=AUTH, json={  # a real silence for the silence routes (no crowd alert)
        "matchers": [{"label": "hazard", "op": "=", "value": "flood"}], "duration_s": 3600,
        "created_by": "fuzz", "comment": "hostile values"})
    assert made.status_code == 201, made.text[:300]
    silence = made.json()["id"]
    sent = 0
    for template, item in doc["paths"].items():
        for method, op in item.items():
            path_values, query = _valid_params(op, alert, inside, silence)
            for param in op.get("parameters", []):
                if param["in"] not in ("path", "query"):
                    continue
                for value in HOSTILE:
                    values, params = dict(path_values), dict(query)
                    (values if param["in"] == "path" else params)[param["name"]] = value
                    url = template.format(**{k: quote(v, safe="") for k, v in values.items()})
                    body = {"json": {"operator": "fuzz"}} if method == "post" else {}
                    r = api.request(method.upper(), url, params=params, headers=AUTH, **body)
                    _check(r, f"{method.upper()} {template} {param['name']}={value[:40]!r}", op)
                    sent += 1
    ack = doc["paths"]["/api/alerts/{identifier}/ack"]["post"]
    for content in HOSTILE_BODIES:
        r = api.post(f"/api/alerts/{alert}/ack", content=content,
                     headers={**AUTH, "Content-Type": "application/json"})
        _check(r, f"ack body {content[:40]!r}", ack)
        assert r.status_code in (400, 422), (content[:40], r.status_code, r.text[:200])
        sent += 1
    assert sent > 400
