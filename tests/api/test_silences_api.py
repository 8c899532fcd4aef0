"""The silence routes over a fake view whose silence book is kept in a SQLite store: token rules, bad input, audit."""

from __future__ import annotations

import itertools

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from twin.alerting.silences import SilenceBook
from twin.alerting.store import Store
from twin.api.config import ApiConfig
from twin.api.errors import install_handlers
from twin.api.routes_silences import silence_routes
from twin.api.state import ApiState

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_735_689_600.0
FLOOD = {"matchers": [{"label": "hazard", "op": "=", "value": "flood"},
                      {"label": "place", "op": "=~", "value": "flood:point:water-0[1-3]"}],
         "duration_s": 3600, "created_by": "Wang Fang", "comment": "pump works at the Bund Tunnel"}


class FakeView:
    """What the routes read: the twin's clock and its silence book."""

    def __init__(self, book: SilenceBook | None) -> None:
        self.book, self.t = book, T0

    def now(self) -> float:
        return self.t

    def silences(self) -> SilenceBook | None:
        return self.book


class ViewWithoutSilences:
    def now(self) -> float:
        return T0


def client(view, token: str | None = TOKEN) -> TestClient:
    app = FastAPI()
    install_handlers(app)
    app.include_router(silence_routes(ApiState(view, ApiConfig(token=token), None, None)))
    return TestClient(app)


@pytest.fixture
def view(tmp_path):
    store = Store.open(tmp_path / "alerts.db")
    n = itertools.count(1)
    yield FakeView(SilenceBook(store, new_id=lambda: f"s{next(n)}"))
    store.close()


@pytest.fixture
def api(view):
    with client(view) as c:
        yield c


def test_create_list_get_expire_and_audit(api, view):
    r = api.post("/api/silences", json=FLOOD, headers=AUTH)
    assert r.status_code == 201, r.json()
    s = r.json()
    assert s["id"] == "s1" and s["state"] == "active" and s["starts_at"] == T0 and s["ends_at"] == T0 + 3600
    assert s["matchers"][1] == {"label": "place", "op": "=~", "value": "flood:point:water-0[1-3]"}
    later = api.post("/api/silences", json={**FLOOD, "starts_at": T0 + 600, "duration_s": 60}, headers=AUTH).json()
    assert later["state"] == "pending" and later["ends_at"] == T0 + 660
    assert [x["id"] for x in api.get("/api/silences").json()["silences"]] == ["s1", "s2"]
    assert [x["id"] for x in api.get("/api/silences", params={"state": "pending"}).json()["silences"]] == ["s2"]
    assert api.get("/api/silences/s1").json() == s

    view.t = T0 + 120
    r = api.request("DELETE", "/api/silences/s1", json={"who": "Zhao Min", "why": "works done"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["state"] == "expired" and r.json()["expired_at"] == T0 + 120
    r = api.delete("/api/silences/s2", params={"who": "Li Lei", "why": "not needed"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["expired_by"] == "Li Lei"
    r = api.delete("/api/silences/s2", params={"who": "Li Lei", "why": "again"}, headers=AUTH)
    assert r.status_code == 409 and r.json()["error"] == "silence_expired"
    assert [x["id"] for x in api.get("/api/silences", params={"state": "expired"}).json()["silences"]] == ["s1", "s2"]
    assert api.get("/api/silences", params={"state": "active"}).json() == {"t": T0 + 120, "silences": []}

    rows = api.get("/api/silences/audit").json()["rows"]
    assert [(a["silence_id"], a["action"], a["actor"]) for a in rows] == [
        ("s1", "create", "Wang Fang"), ("s2", "create", "Wang Fang"), ("s1", "expire", "Zhao Min"),
        ("s2", "expire", "Li Lei")]
    assert rows[2]["comment"] == "works done" and rows[2]["before"]["expired_at"] is None
    assert len(api.get("/api/silences/audit", params={"silence": "s2"}).json()["rows"]) == 2
    assert view.book.list(T0 + 120, "active") == [], "the book itself says so too"


def test_writes_need_the_token(view):
    with client(view) as api:
        r = api.post("/api/silences", json=FLOOD)
        assert r.status_code == 401 and r.json()["error"] == "unauthorized"
        r = api.post("/api/silences", json=FLOOD, headers={"Authorization": "Bearer wrong-token-123"})
        assert r.status_code == 403 and r.json()["error"] == "forbidden"
        assert api.delete("/api/silences/s1", params={"who": "a", "why": "b"}).status_code == 401
    with client(view, token=None) as read_only:
        r = read_only.post("/api/silences", json=FLOOD, headers=AUTH)
        assert r.status_code == 403 and r.json()["error"] == "writes_disabled"
        assert read_only.get("/api/silences").status_code == 200
    assert view.book.audit() == [], "nothing was written"


@pytest.mark.parametrize(("body", "status", "says"), [
    ({**FLOOD, "matchers": [{"label": "colour", "value": "red"}]}, 400, "matcher 1: unknown label 'colour'"),
    ({**FLOOD, "matchers": [{"label": "place", "op": "=~", "value": "("}]}, 400, "bad regular expression"),
    ({**FLOOD, "matchers": [{"label": "hazard", "op": "=~", "value": ".*"}]}, 400, "would silence every alert"),
    ({**FLOOD, "duration_s": None, "ends_at": T0 - 10}, 400, "must be after starts_at"),
    ({**FLOOD, "ends_at": T0 + 60}, 400, "either ends_at or duration_s"),
    ({**FLOOD, "duration_s": None}, 400, "either ends_at or duration_s"),
    ({**FLOOD, "matchers": []}, 422, "body.matchers"),
    ({**FLOOD, "matchers": [{"label": "hazard", "op": "==", "value": "flood"}]}, 422, "body.matchers.0.op"),
    ({**FLOOD, "created_by": "  "}, 422, "body.created_by"),
    ({**FLOOD, "comment": "a\u202eb"}, 422, "body.comment"),
    ({**FLOOD, "comment": "x" * 501}, 422, "body.comment"),
    ({**FLOOD, "duration_s": 40 * 86400}, 422, "body.duration_s"),
    ({k: v for k, v in FLOOD.items() if k != "created_by"}, 422, "body.created_by"),
])
def test_bad_silences_get_a_clear_400_or_422(api, view, body, status, says):
    r = api.post("/api/silences", json=body, headers=AUTH)
    assert r.status_code == status, r.json()
    err = r.json()
    assert err["error"] == ("invalid_silence" if status == 400 else "invalid_request")
    assert says in (err["detail"] if status == 400 else " ".join(p["where"] for p in err["detail"]))
    assert view.book.audit() == []


def test_non_finite_times_are_422(api):
    r = api.post("/api/silences", content=b'{"matchers": [{"label": "hazard", "value": "flood"}], "ends_at": NaN, '
                 b'"created_by": "a", "comment": "b"}', headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["where"] == "body.ends_at"


def test_expire_needs_who_and_why_and_an_existing_silence(api):
    sid = api.post("/api/silences", json=FLOOD, headers=AUTH).json()["id"]
    r = api.delete(f"/api/silences/{sid}", headers=AUTH)
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    assert {p["where"] for p in r.json()["detail"]} == {"query.who", "query.why"}
    r = api.request("DELETE", f"/api/silences/{sid}", json={"who": "x"}, headers=AUTH)
    assert r.status_code == 422 and r.json()["detail"][0]["where"] == "body.why"
    r = api.delete("/api/silences/nope", params={"who": "a", "why": "b"}, headers=AUTH)
    assert r.status_code == 404 and r.json()["error"] == "unknown_silence"
    assert api.get("/api/silences/nope").status_code == 404
    assert api.get("/api/silences/../etc").status_code == 404
    assert api.get("/api/silences/a%20b").status_code == 422
    assert api.get("/api/silences", params={"state": "current"}).status_code == 422


def test_a_view_without_silences_answers_503(tmp_path):
    with client(ViewWithoutSilences()) as api:
        for r in (api.get("/api/silences"), api.get("/api/silences/audit"), api.get("/api/silences/s1"),
                  api.post("/api/silences", json=FLOOD, headers=AUTH)):
            assert r.status_code == 503 and r.json()["error"] == "silences_unavailable", r.json()
    with client(FakeView(None)) as api:
        assert api.get("/api/silences").status_code == 503
