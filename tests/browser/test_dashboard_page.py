"""The dashboard's own behaviour on a quiet twin: offline loading, layers, map interaction, the token
rules as the operator meets them, and the WebSocket coming back after the server went away.

The twin here is a real service that never connects to a broker (`idle_service`); alerts are fed
to the page through its test hook (the same code path as the WebSocket's events).
"""

from __future__ import annotations

import time

import pytest

from tests.browser.conftest import TOKEN
from twin.api import serve

pytestmark = pytest.mark.slow

READY = "body[data-ready=true][data-ws=live]"
CHEN_YI_SQUARE = (121.4855, 31.2405)


def synthetic_alert(ident: str = "bund-crowd-test-1", level: int = 4) -> dict:
    """An ``alert`` event as ``/ws`` sends it: a crowd alert on a 60 m square at Chen Yi Square."""
    lon, lat = CHEN_YI_SQUARE
    d = 0.0003
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]
    props = {"identifier": ident, "hazard": "crowd", "level": level, "level_name": "red", "state": "active",
             "message_id": ident, "status": "Actual", "event": "Crowd density warning", "raised_at": 1_767_189_600,
             "area_desc": "陈毅广场 Chen Yi Square", "area_m2": 3600.0, "acknowledged_by": [], "units_on_scene": []}
    feature = {"type": "Feature", "id": ident, "geometry": {"type": "MultiPolygon", "coordinates": [[ring]]},
               "properties": props}
    return {"type": "alert", "kind": "raised", "t": 1_767_189_600, "feature": feature}


@pytest.fixture
def api(idle_service):
    """The API of the quiet twin, with a token."""
    handle = serve(idle_service, port=0, token=TOKEN)
    yield handle
    handle.stop()


def open_page(page, url: str, fragment: str = "") -> None:
    page.goto(f"{url}/{fragment}")
    page.wait_for_selector(READY, timeout=15_000)


def test_the_page_loads_everything_from_the_twin_itself(page, api):
    requested = []
    page.on("request", lambda r: requested.append(r.url))
    response = page.goto(api.url + "/")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector(READY, timeout=15_000)
    page.wait_for_selector("#risk[data-layer=level]", state="attached")
    assert page.locator("#buildings path.bldg").count() >= 3
    assert page.locator("#basemap").get_attribute("href").startswith("/api/basemap.png")
    assert page.evaluate("document.querySelector('#basemap').getBBox().width") > 1000  # grid metres
    legend = page.locator("#legend").inner_text()
    assert all(word in legend for word in ("blue", "yellow", "orange", "red", "police", "vehicle"))
    outside = [u for u in requested if not u.startswith((api.url, "data:", "blob:"))]
    assert outside == [], "the page asked for something outside the twin"
    assert page.errors == []


def test_the_layer_switcher_changes_the_risk_overlay_and_its_legend(page, api):
    open_page(page, api.url)
    page.check('input[name=layer][value="level_flood"]')
    page.wait_for_selector("#risk[data-layer=level_flood]", state="attached")
    page.wait_for_function("() => document.querySelector('#legend').textContent.toLowerCase().includes('flood')")
    page.check('input[name=layer][value=""]')
    page.wait_for_function("() => !document.querySelector('#risk').hasAttribute('href')")


def test_pan_zoom_and_a_click_for_the_values_at_a_point(page, api):
    open_page(page, api.url)
    world = page.locator("#world")
    before = world.get_attribute("transform")
    page.mouse.move(700, 450)
    page.mouse.wheel(0, -400)  # zoom in at the cursor
    page.wait_for_function("([b]) => document.querySelector('#world').getAttribute('transform') !== b", arg=[before])
    zoomed = world.get_attribute("transform")
    assert float(zoomed.split()[0].removeprefix("matrix(")) > float(before.split()[0].removeprefix("matrix("))
    page.mouse.move(700, 450)
    page.mouse.down()
    page.mouse.move(600, 400, steps=5)
    page.mouse.up()
    assert world.get_attribute("transform") != zoomed, "dragging pans"
    assert page.locator("#point-info").is_hidden(), "a drag is not a click"
    page.click("#zoom-fit")
    page.mouse.click(500, 500)
    page.wait_for_selector("#point-info:not([hidden])")
    assert "Beidou N51" in page.locator("#point-info").inner_text()


def test_a_live_alert_shows_in_the_list_and_on_the_map_and_selecting_it_highlights_both(page, api):
    open_page(page, api.url, f"#token={TOKEN}")
    page.evaluate("e => window.citytwin.handleEvent(e)", synthetic_alert())
    item = '#alert-list li[data-id="bund-crowd-test-1"]'
    page.wait_for_selector(item)
    assert "Chen Yi Square" in page.locator(f"{item} .area").inner_text()
    page.click(f"{item} .area")
    page.wait_for_selector('#areas path.alert-area.selected[data-id="bund-crowd-test-1"]')
    assert "selected" in page.locator(item).get_attribute("class")
    page.evaluate("e => window.citytwin.handleEvent(e)", {**synthetic_alert(), "kind": "cancelled"})
    page.wait_for_selector(item, state="detached")
    page.wait_for_selector('#areas path[data-id="bund-crowd-test-1"]', state="detached")


def test_without_a_token_the_page_says_how_to_get_one_and_asks_no_name(page, api):
    open_page(page, api.url)
    assert "Read-only" in page.locator("#operator-line").inner_text()
    assert "#token=" in page.locator("#operator-line").inner_text(), "it says how to get one"
    page.evaluate("e => window.citytwin.handleEvent(e)", synthetic_alert())
    button = page.locator('#alert-list li[data-id="bund-crowd-test-1"] button.ack')
    button.wait_for()
    # issue 18: the button is disabled before anything is filled in, and its title says how to get a token
    assert button.is_disabled()
    assert "Read-only" in button.get_attribute("title") and "#token=" in button.get_attribute("title")
    button.click(force=True)  # a click on it does nothing: no name is asked for
    assert page.locator("#operator-dialog[open]").count() == 0


def _acknowledge_as_zhang(page, url: str, fragment: str) -> str:
    """Open the page, show a synthetic alert, acknowledge it as Zhang; returns the notice shown."""
    open_page(page, url, fragment)
    page.evaluate("e => window.citytwin.handleEvent(e)", synthetic_alert())
    page.click('#alert-list li[data-id="bund-crowd-test-1"] button.ack')
    page.fill("#operator-name", "Zhang")
    page.click("#operator-ok")
    page.wait_for_selector("#notice.error")
    return page.locator("#notice").inner_text()


def test_a_wrong_token_is_refused_with_a_clear_message(page, api):
    assert "refused (403)" in _acknowledge_as_zhang(page, api.url, "#token=not-the-right-token")
    assert page.evaluate("sessionStorage.getItem('citytwin.token')") is None, "the bad token is forgotten"


def test_a_read_only_twin_says_so(page, idle_service):
    handle = serve(idle_service, port=0)  # no token: the API only reads
    try:
        assert "read-only" in _acknowledge_as_zhang(page, handle.url, "#token=whatever-token")
    finally:
        handle.stop()


def test_the_page_reconnects_when_the_server_comes_back(page, idle_service):
    first = serve(idle_service, port=0, token=TOKEN)
    port = first.port
    open_page(page, first.url)
    page.evaluate("e => window.citytwin.handleEvent(e)", synthetic_alert())
    page.wait_for_selector("#alert-list li")
    first.stop()
    page.wait_for_selector("body[data-ws=retrying]", timeout=10_000)
    assert "reconnecting" in page.locator("#st-link").inner_text().lower()
    time.sleep(1.0)  # deliberate: the server stays away 1 s, a failed attempt or two, so the backoff grows
    second = serve(idle_service, port=port, token=TOKEN)
    try:
        page.wait_for_selector(READY, timeout=20_000)
        # the snapshot of the new connection replaces what the page had: the twin has no alert
        page.wait_for_selector("#alert-list li", state="detached")
    finally:
        second.stop()
