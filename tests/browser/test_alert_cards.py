"""Alert cards with values, trends, sparklines and suppressed state, and the Silence form (issue 16), in a real
browser, plus the alert Feature fields the cards are built from.

The twin is the quiet `idle_service`; its API's view is given three stored alerts and their live state
(`TwinView.alert_rows` / `alert_live`, monkeypatched on the app's view), so the page gets the alerts from the
``/ws`` snapshot and their values from the real ``GET /api/alerts``, as from a running twin. The silences routes are
intercepted in the browser (Playwright's ``page.route``): the test sees the exact JSON the form sends.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import ARTIFACTS, TOKEN
from twin.alerting import cap
from twin.api import geojson, serve

pytestmark = pytest.mark.slow

READY = "body[data-ready=true][data-ws=live]"
T0 = 1_767_189_600.0  # 2025-12-31 22:00 Shanghai
CHEN_YI_SQUARE = (121.4855, 31.2405)
CROWD, FLOOD, TRAFFIC = "citytwin.bund.crowd.1", "citytwin.bund.flood.2", "citytwin.bund.traffic.3"


def ring_text(offset_m: float) -> str:
    """A CAP polygon of a 60 m square ``offset_m`` east of Chen Yi Square."""
    lon, lat, d = CHEN_YI_SQUARE[0] + offset_m / 95_000, CHEN_YI_SQUARE[1], 0.0003
    return cap.polygon_text([(lon - d, lat - d), (lon + d, lat - d), (lon + d, lat + d), (lon - d, lat + d)])


EVENTS = {"crowd": ("Crowd density warning", "人群密度预警"), "flood": ("Urban waterlogging warning", "城市内涝预警"),
          "traffic": ("Traffic congestion warning", "交通拥堵预警")}


def message(ident: str, hazard: str, level: int, headlines: tuple[str, str], params: dict, offset_m: float) -> dict:
    """A CAP message as the twin stores it after issue 16: a zh-CN info block first, then en-US."""
    parameters = cap.name_values({"warningLevel": cap.LEVEL_COLOUR[level], "hazard": hazard, "cells": 36,
                                  "areaM2": 3600, **params})
    area = [{"areaDesc": "陈毅广场 Chen Yi Square", "polygon": [ring_text(offset_m)]}]

    def info(language: str, event: str, headline: str) -> dict:
        return {"language": language, "category": "Safety", "event": event, "urgency": "Immediate",
                "severity": cap.LEVEL_SEVERITY[level], "certainty": "Observed", "headline": headline,
                "parameter": parameters, "area": area}

    return {"identifier": ident, "sender": "citytwin@bund", "sent": cap.cap_time(T0), "status": "Actual",
            "msgType": "Alert", "scope": "Public",
            "info": [info("zh-CN", EVENTS[hazard][1], headlines[1]), info("en-US", EVENTS[hazard][0], headlines[0])]}


def row(ident: str, hazard: str, level: int, headlines: tuple[str, str], params: dict, offset_m: float) -> dict:
    return {"identifier": ident, "hazard": hazard, "state": "active", "raised_at": T0, "updated_at": T0,
            "cancelled_at": None, "message": message(ident, hazard, level, headlines, params, offset_m)}


ROWS = [
    row(CROWD, "crowd", 4, ("Red crowd density warning, Chen Yi Square", "陈毅广场人群密度红色预警"),
        {"peakDensity": "4.60 person/m2"}, 0),
    row(FLOOD, "flood", 3, ("Orange waterlogging warning, Bund Tunnel north portal", "外滩隧道北口积水橙色预警"),
        {"peakDepth": "0.32 m"}, 150),
    row(TRAFFIC, "traffic", 2, ("Yellow traffic congestion warning, East Zhongshan No. 1 Road",
                                "中山东一路交通拥堵黄色预警"), {"minSpeed": "12.00 km/h"}, -150),
]
CROWD_HISTORY = [[T0 - 1740 + 60 * i, 3.1 + 0.05 * i] for i in range(30)]
LIVE = {
    CROWD: {"value": 4.6, "unit": "person/m2", "peak": 4.6, "peak_at": T0, "trend": 0.12, "trend_word": "rising",
            "trend_arrow": "↑", "history": CROWD_HISTORY, "devices": ["crowd-01", "crowd-02"],
            "place": "crowd:area:chen-yi-square", "place_name": "Chen Yi Square", "suppressed": None},
    FLOOD: {"value": 0.28, "unit": "m", "peak": 0.41, "peak_at": T0 - 600, "trend": -0.01, "trend_word": "falling",
            "trend_arrow": "↓", "history": [[T0 - 660 + 60 * i, 0.41 - 0.01 * i] for i in range(12)],
            "devices": ["water-03"], "place": "flood:point:water-03", "place_name": "Bund Tunnel north portal",
            "suppressed": {"by": "silence", "id": "sil-7", "reason": "silenced by Wang: pump crew on site"}},
}
SILENCE = {"id": "sil-9", "state": "active", "starts_at": T0, "ends_at": T0 + 1800, "created_by": "Li Wei",
           "comment": "stewards are metering the inflow", "created_at": T0, "expired_at": None, "expired_by": None,
           "expired_comment": None,
           "matchers": [{"label": "hazard", "op": "=", "value": "crowd"},
                        {"label": "place", "op": "=", "value": "crowd:area:chen-yi-square"}]}


# ---------------------------------------------------------------- the Feature (no browser)
def test_a_feature_carries_both_headlines_and_the_live_values():
    f = geojson.alert_feature(ROWS[0], [], [], LIVE[CROWD])["properties"]
    assert f["headline"] == "Red crowd density warning, Chen Yi Square"
    assert f["headline_zh"] == "陈毅广场人群密度红色预警"
    assert (f["event"], f["event_zh"]) == ("Crowd density warning", "人群密度预警")
    assert (f["value"], f["unit"], f["peak"], f["peak_at"], f["trend_arrow"]) == (4.6, "person/m2", 4.6, T0, "↑")
    assert f["history"] == CROWD_HISTORY and f["suppressed"] is None and f["place"] == "crowd:area:chen-yi-square"
    assert f["level"] == 4 and f["parameters"]["peakDensity"] == "4.60 person/m2"
    geometry = geojson.alert_feature(ROWS[0], [], [])["geometry"]
    assert len(geometry["coordinates"]) == 1, "the two info blocks' areas are one area, drawn once"
    json.dumps(f, allow_nan=False)


def test_a_feature_without_live_values_reads_them_from_its_message():
    f = geojson.alert_feature(ROWS[2], [], [])["properties"]
    assert (f["value"], f["unit"], f["peak"], f["trend_arrow"], f["history"], f["suppressed"]) == \
        (12.0, "km/h", 12.0, None, [], None)
    cancelled = {**ROWS[1], "state": "cancelled"}
    g = geojson.alert_feature(cancelled, [], [], LIVE[FLOOD])["properties"]
    assert g["suppressed"] is None and g["history"] == [] and g["value"] == 0.32, "a cancelled alert has no live state"


def test_a_suppressed_alert_says_by_what():
    f = geojson.alert_feature(ROWS[1], [], [], LIVE[FLOOD])["properties"]
    assert f["suppressed"] == {"by": "silence", "id": "sil-7", "reason": "silenced by Wang: pump crew on site"}


# ---------------------------------------------------------------- the page
@pytest.fixture
def api(idle_service, monkeypatch):
    """The quiet twin's API, its view showing `ROWS` with `LIVE` values."""
    handle = serve(idle_service, port=0, token=TOKEN)
    view = handle.server.config.app.state.api.view
    monkeypatch.setattr(view, "alert_rows", lambda state="active": [r for r in ROWS if state in (None, "active")])
    monkeypatch.setattr(view, "alert_live", lambda: LIVE)
    monkeypatch.setattr(view, "acks", lambda ident: [])
    monkeypatch.setattr(view, "arrivals", lambda ident: [])
    yield handle
    handle.stop()


class FakeSilences:
    """Answers the page's silences requests in the browser and keeps what it was sent."""

    def __init__(self, page) -> None:
        self.active: list[dict] = []
        page.route("**/api/silences**", self.handle)

    def handle(self, route) -> None:
        request = route.request
        if request.method == "GET":
            route.fulfill(json={"t": T0, "silences": self.active})
        elif request.method == "POST":
            self.active = [SILENCE]
            route.fulfill(status=201, json=SILENCE)
        elif request.method == "DELETE":
            self.active = []
            route.fulfill(json={**SILENCE, "state": "expired", "expired_at": T0 + 60})
        else:
            route.abort()


def card(ident: str) -> str:
    return f'#alert-list li[data-id="{ident}"]'


def open_with_values(page, url: str, fragment: str = f"#token={TOKEN}") -> None:
    page.goto(f"{url}/{fragment}")
    page.wait_for_selector(READY, timeout=15_000)
    # the values come from GET /api/alerts after the snapshot
    page.wait_for_function("() => document.querySelector('#alert-list li .sparkline')?.dataset.points === '30'")


def test_cards_show_value_trend_sparkline_and_suppressed_state(page, api):
    FakeSilences(page)
    open_with_values(page, api.url)
    crowd = page.locator(card(CROWD))
    assert crowd.locator(".headline").inner_text() == "Red crowd density warning, Chen Yi Square"
    assert crowd.locator(".headline-zh").inner_text() == "陈毅广场人群密度红色预警"
    assert crowd.locator(".value").inner_text() == "4.60 person/m²"
    assert crowd.locator(".trend-arrow").inner_text() == "↑"
    assert "rising" in crowd.locator(".trend-arrow").get_attribute("class")
    assert crowd.locator(".peak").inner_text() == "peak 4.60 at 22:00"
    points = crowd.locator(".sparkline polyline").get_attribute("points").split()
    assert len(points) == 30
    xs = [float(p.split(",")[0]) for p in points]
    ys = [float(p.split(",")[1]) for p in points]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True), "time runs right, a rising value climbs"

    flood = page.locator(card(FLOOD))
    assert flood.locator(".value").inner_text() == "0.28 m"
    assert flood.locator(".trend-arrow").inner_text() == "↓"
    assert flood.locator(".sparkline polyline").get_attribute("points").count(",") == 12
    assert "suppressed" in flood.get_attribute("class")
    badge = flood.locator(".badge-suppressed")
    assert badge.is_visible() and badge.inner_text() == "silenced · 静默"
    assert "pump crew on site" in badge.get_attribute("title")
    for part in (".reading", ".headline", ".lvl"):
        opacity = flood.locator(part).evaluate("e => Number(getComputedStyle(e).opacity)")
        assert opacity < 0.7, f"a suppressed card is greyed ({part})"
    assert badge.evaluate("e => Number(getComputedStyle(e).opacity)") == 1, "its badge is not"
    assert page.locator(f'#areas path.alert-area.suppressed[data-id="{FLOOD}"]').count() == 1

    traffic = page.locator(card(TRAFFIC))
    assert traffic.locator(".value").inner_text() == "12 km/h", "without live values: its message's value"
    assert traffic.locator(".trend-arrow").inner_text() == ""
    order = page.eval_on_selector_all("#alert-list li", "els => els.map(e => e.dataset.id)")
    assert order == [CROWD, TRAFFIC, FLOOD], "the suppressed orange alert after the delivered yellow one"
    page.screenshot(path=str(ARTIFACTS / "alert_cards.png"))
    assert page.errors == []


def test_the_silence_form_posts_the_alerts_matchers_and_the_list_expires_it(page, api):
    FakeSilences(page)
    open_with_values(page, api.url)
    page.click(f"{card(CROWD)} button.silence")
    page.wait_for_selector("#silence-dialog[open]")
    offered = page.eval_on_selector_all("#silence-matchers input", "els => els.map(e => [e.dataset.label, "
                                        "e.dataset.value, e.checked])")
    assert offered == [["hazard", "crowd", True], ["place", "crowd:area:chen-yi-square", True]]
    assert page.locator("#silence-duration").input_value() == "1800"
    page.fill("#silence-by", "Li Wei")
    page.fill("#silence-why", "stewards are metering the inflow")
    page.screenshot(path=str(ARTIFACTS / "silence_form.png"))
    with page.expect_request(lambda r: r.method == "POST" and "/api/silences" in r.url) as posted:
        page.click("#silence-ok")
    request = posted.value
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.post_data_json == {
        "matchers": [{"label": "hazard", "op": "=", "value": "crowd"},
                     {"label": "place", "op": "=", "value": "crowd:area:chen-yi-square"}],
        "starts_at": None, "duration_s": 1800, "created_by": "Li Wei", "comment": "stewards are metering the inflow"}
    page.wait_for_selector("#silence-dialog:not([open])", state="attached")
    page.wait_for_selector("#notice.ok")
    assert "Silenced until 22:30:00" in page.locator("#notice").inner_text()
    row_ = '#silence-list li[data-id="sil-9"]'
    page.wait_for_selector(row_)
    assert "hazard = crowd · place = crowd:area:chen-yi-square" in page.locator(row_).inner_text()
    assert page.locator("#silence-count").inner_text() == "1"

    page.click(f"{row_} button.expire")
    page.wait_for_selector("#expire-dialog[open]")
    assert page.locator("#expire-by").input_value() == "Li Wei", "the operator's name is remembered"
    page.fill("#expire-why", "crowd has thinned")
    with page.expect_request(lambda r: r.method == "DELETE") as deleted:
        page.click("#expire-ok")
    assert deleted.value.url.endswith("/api/silences/sil-9")
    assert deleted.value.post_data_json == {"who": "Li Wei", "why": "crowd has thinned"}
    page.wait_for_selector(row_, state="detached")
    assert page.errors == []


def test_the_form_refuses_a_silence_without_matchers(page, api):
    fake = FakeSilences(page)
    open_with_values(page, api.url)
    page.click(f"{card(FLOOD)} button.silence")
    page.wait_for_selector("#silence-dialog[open]")
    for box in page.locator("#silence-matchers input").all():
        box.uncheck()
    page.fill("#silence-by", "Li Wei")
    page.fill("#silence-why", "test")
    page.click("#silence-ok")
    page.wait_for_selector("#silence-problem:not([hidden])")
    assert "at least one matcher" in page.locator("#silence-problem").inner_text()
    assert page.locator("#silence-dialog[open]").count() == 1 and fake.active == []


def test_without_a_token_the_silence_and_expire_buttons_are_disabled_and_look_it(page, api):
    FakeSilences(page).active = [SILENCE]
    open_with_values(page, api.url, fragment="")
    page.wait_for_selector('#silence-list li[data-id="sil-9"]')
    for button in (page.locator(f"{card(CROWD)} button.silence"), page.locator("#silence-list button.expire")):
        assert button.is_disabled()
        assert float(button.evaluate("e => getComputedStyle(e).opacity")) < 0.6
        assert "Read-only" in button.get_attribute("title")


def test_a_twin_without_silences_shows_no_list(page, api):
    page.route("**/api/silences**", lambda route: route.fulfill(status=503, json={"error": "silences_unavailable"}))
    open_with_values(page, api.url)
    page.wait_for_selector("#silences[data-available=false]", state="attached")
    assert page.locator("#silences").is_hidden()
    assert page.locator(f"{card(CROWD)} button.silence").is_enabled()


@pytest.mark.parametrize("size", [(1920, 1080), (390, 844)], ids=["desktop", "phone"])
def test_the_cards_fit_the_screen(browser, api, size):
    width, height = size
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    try:
        FakeSilences(page)
        open_with_values(page, api.url)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        for ident in (CROWD, FLOOD, TRAFFIC):
            box = page.locator(card(ident)).bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= width
            for part in (".value", ".sparkline", "button.silence", "button.ack"):
                inner = page.locator(f"{card(ident)} {part}").bounding_box()
                assert inner["x"] + inner["width"] <= box["x"] + box["width"] + 0.5, f"{part} overflows its card"
        page.screenshot(path=str(ARTIFACTS / f"alert_cards_{width}.png"))
    finally:
        context.close()
