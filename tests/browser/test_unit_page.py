"""The field unit's page (/unit) in Debian's Chromium at 390 x 844 (a phone): its task appears with the map, distance
and bearing; the buttons walk accept -> en route with a note; refusals and missing or wrong tokens are explained in
Chinese and English; the page follows the twin by polling. Writes docs/field-unit-390.png (the guide's picture).

The twin is a real live service that is never started (its commands are applied on the caller's thread); the test
opens and dispatches cases over the real HTTP API, as an operator would.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import ARTIFACTS, REGISTRY, TOKEN
from twin.api import ApiConfig, serve
from twin.live.core import CoreConfig
from twin.live.service import LiveService, ServiceConfig, TwinClock

pytestmark = pytest.mark.slow

T0 = 1_767_225_600.0  # 2026-01-01 08:00 in Shanghai
PHONE = {"width": 390, "height": 844}
UNIT, OTHER = "unit-police-01", "unit-police-02"
UNIT_TOKENS = {UNIT: "police-01-field-token", OTHER: "police-02-field-token"}
CHEN_YI_SQUARE = (121.4855, 31.2405)
START = (121.4850, 31.2380)
"""Where the unit waits: about 280 m south of the square."""
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "field-unit-390.png"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def twin(bund_file, tmp_path):
    """A live service on the Bund with the unit located, and its API with the dashboard's and the units' tokens."""
    config = ServiceConfig(broker="mqtt://127.0.0.1:9", grid=bund_file, registry=REGISTRY, state_dir=tmp_path / "state",
                           tick_s=1.0, core=CoreConfig(tick_s=1.0, clear_s=2.0), clock=TwinClock(start=T0))
    svc = LiveService(config)
    locate(svc, UNIT, *START)
    locate(svc, OTHER, 121.4880, 31.2330)
    svc.core.on_tick(T0)
    handle = serve_twin(svc, unit_tokens=UNIT_TOKENS)
    yield svc, handle
    handle.stop()
    svc.raw_log.close()
    svc.store.close()


def serve_twin(svc: LiveService, **config):
    """`serve` with these `ApiConfig` settings (set on the app's state as well: serve copies only some)."""
    handle = serve(svc, port=0, token=TOKEN, config=ApiConfig(**config))
    state = handle.server.config.app.state.api
    state.config = dataclasses.replace(state.config, **config)
    return handle


def locate(svc: LiveService, unit: str, lon: float, lat: float) -> None:
    from ingest.batch import Batch

    svc.core.on_batch(Batch.build(1, device=unit, t=T0, quantity="position", lon=lon, lat=lat, datum="CGCS2000",
                                  speed_kmh=0.0, course_deg=0.0))


def dispatched_case(url: str, unit: str = UNIT, priority: int = 1) -> str:
    """A crowd case on Chen Yi Square opened and dispatched to ``unit`` over HTTP (as the dashboard does)."""
    body = {"operator": "Wang Fang", "category": "crowd_safety", "priority": priority, "lon": CHEN_YI_SQUARE[0],
            "lat": CHEN_YI_SQUARE[1], "name_zh": "陈毅广场", "name_en": "Chen Yi Square",
            "reason": "crowd building up at the steps"}
    r = httpx.post(f"{url}/api/cases", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    ident = r.json()["id"]
    r = httpx.post(f"{url}/api/cases/{ident}/dispatch", json={"operator": "Wang Fang", "unit": unit}, headers=AUTH)
    assert r.status_code == 200, r.text
    return ident


def case(url: str, ident: str) -> dict:
    return httpx.get(f"{url}/api/cases/{ident}").json()


@pytest.fixture
def phone(browser):
    """A page the size of a phone (390 x 844 CSS px), page errors collected."""
    context = browser.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True)
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    yield pg
    context.close()


def open_unit_page(page, url: str, token: str | None = UNIT_TOKENS[UNIT], unit: str | None = UNIT) -> None:
    fragment = "&".join(f"{k}={v}" for k, v in (("unit", unit), ("token", token)) if v)
    page.goto(f"{url}/unit#{fragment}")


def task(ident: str, status: str | None = None) -> str:
    return f'#task-list li.task[data-case="{ident}"]' + (f'[data-status="{status}"]' if status else "")


def test_a_unit_sees_its_task_on_the_map_and_walks_it_to_en_route(phone, twin):
    _, handle = twin
    ident = dispatched_case(handle.url)
    open_unit_page(phone, handle.url)
    phone.wait_for_selector(task(ident, "dispatched"), timeout=15_000)
    assert phone.evaluate("location.hash") == f"#unit={UNIT}", "the token left the address bar"
    card = phone.locator(task(ident))
    text = card.inner_text()
    for words in ("紧急", "urgent", "人群拥挤", "Crowding", "陈毅广场", "Chen Yi Square", "已派遣", "dispatched",
                  "接受", "Accept", "拒绝", "Decline"):
        assert words in text, words
    assert phone.locator(f"{task(ident)} button.step").count() == 2, "dispatched: accept or decline"

    phone.wait_for_function("() => document.querySelector('#unit-map').dataset.view !== undefined")
    assert phone.locator("#map-me circle.me").count() == 1
    assert phone.locator("#map-target circle.target-area").count() == 1
    assert phone.locator("#map-line").get_attribute("hidden") is None
    distance, bearing = phone.evaluate("([a, b]) => window.citytwinUnit.distanceBearing(a, b)",
                                       [list(START), list(CHEN_YI_SQUARE)])
    assert 250 < distance < 320 and (bearing > 337.5 or bearing < 22.5), "north of the unit"
    nav = phone.locator("#nav-line").inner_text()
    assert f"{round(distance)} m" in nav and "北 N" in nav
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "no sideways scrolling"

    phone.fill(f"{task(ident)} textarea.note", "2 名警员，3 分钟到 · 2 officers, 3 min away")
    phone.click(f"{task(ident)} button.step[data-status=accepted]")
    phone.wait_for_selector(task(ident, "accepted"))
    assert "Sent" in phone.locator("#notice.ok").inner_text()
    assert phone.input_value(f"{task(ident)} textarea.note") == "", "the note went with the answer"
    after = case(handle.url, ident)
    assert after["status"] == "accepted"
    accepted = after["events"][-1]
    assert (accepted["kind"], accepted["actor"]) == ("accepted", UNIT)
    assert "2 officers, 3 min away" in accepted["reason"] + str(accepted["data"])

    phone.click(f"{task(ident)} button.step[data-status=en_route]")
    phone.wait_for_selector(task(ident, "en_route"))
    assert case(handle.url, ident)["status"] == "en_route"
    assert [b.get_attribute("data-status") for b in phone.locator(f"{task(ident)} button.step").all()] == ["on_scene"]
    phone.fill(f"{task(ident)} textarea.note", "人很多，从南侧进入 · crowded, going in from the south")
    phone.wait_for_selector("#unit-map[data-basemap=loaded]", timeout=30_000)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    phone.screenshot(path=SCREENSHOT)
    ARTIFACTS.mkdir(exist_ok=True)
    phone.screenshot(path=ARTIFACTS / "field-unit-390.png")
    assert SCREENSHOT.stat().st_size > 20_000
    assert phone.errors == []


def test_a_refused_step_and_the_page_following_the_twin_are_shown_in_both_languages(phone, twin):
    _, handle = twin
    ident = dispatched_case(handle.url)
    phone.clock.install()  # the page's 5 s polling runs only when the test lets the clock run
    open_unit_page(phone, handle.url)
    phone.wait_for_selector(task(ident, "dispatched"), timeout=15_000)
    polls = int(phone.evaluate("document.body.dataset.polls"))
    r = httpx.post(f"{handle.url}/api/cases/{ident}/dispatch", json={"operator": "Wang Fang", "unit": OTHER},
                   headers=AUTH)
    assert r.status_code == 200, "the operator gave the case to another unit"
    phone.click(f"{task(ident)} button.step[data-status=accepted]")  # the page still shows it as this unit's
    phone.wait_for_selector("#notice.error")
    notice = phone.locator("#notice").inner_text()
    assert "该任务已不属于本单位" in notice and "no longer this unit's" in notice and "409" in notice
    phone.wait_for_selector(task(ident), state="detached")  # after a refusal it reads its tasks again
    assert int(phone.evaluate("document.body.dataset.polls")) == polls + 1
    assert "No tasks" in phone.locator("#task-empty").inner_text() and phone.locator("#task-empty").is_visible()

    fresh = dispatched_case(handle.url)
    phone.clock.run_for(5_100)  # the next poll brings the new task
    phone.wait_for_selector(task(fresh, "dispatched"))
    assert int(phone.evaluate("document.body.dataset.polls")) == polls + 2
    assert phone.errors == []


@pytest.mark.parametrize(("token", "unit", "state", "words"), [
    (None, UNIT, "no-token", ("没有令牌", "No token")),
    ("wrong-token-12345", UNIT, "refused", ("令牌无效", "refused", "403")),
    (UNIT_TOKENS[OTHER], UNIT, "refused", ("令牌无效", "refused")),
    (UNIT_TOKENS[UNIT], None, "no-unit", ("地址中没有单位", "No unit in the address")),
])
def test_a_missing_or_wrong_token_is_explained(phone, twin, token, unit, state, words):
    _, handle = twin
    open_unit_page(phone, handle.url, token, unit)
    phone.wait_for_selector(f"body[data-state={state}]", timeout=15_000)
    notice = phone.locator("#notice").inner_text()
    assert all(w in notice for w in words), notice
    assert phone.locator("#task-list li").count() == 0
    assert phone.errors == []


def test_the_page_is_served_with_the_same_origin_policy(twin):
    _, handle = twin
    r = httpx.get(f"{handle.url}/unit")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer"
    assert '<script type="module" src="/static/unit.js">' in r.text
    for name in ("unit.js", "unit.css"):
        assert httpx.get(f"{handle.url}/static/{name}").status_code == 200


def test_distance_and_bearing_match_the_twin(phone, twin):
    _, handle = twin
    phone.goto(f"{handle.url}/unit#unit={UNIT}")
    phone.wait_for_function("() => window.citytwinUnit !== undefined")
    d, b = phone.evaluate("() => window.citytwinUnit.distanceBearing([121.4855, 31.2405], [121.4855, 31.2414])")
    assert d == pytest.approx(0.0009 * math.pi / 180 * 6_371_008.8, rel=1e-6) and b == pytest.approx(0.0, abs=1e-6)
    _, east = phone.evaluate("() => window.citytwinUnit.distanceBearing([121.4855, 31.2405], [121.4955, 31.2405])")
    assert east == pytest.approx(90.0, abs=0.1)
