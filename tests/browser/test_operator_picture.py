"""The operator's situational picture (issue 18) in a real browser, at 1920×1080 and 390×844.

A real live service on the Bund at 10 m with its HTTP API, never connected to a broker: the test plays the
ingest thread (real batches into the core) and the ticker (ticks 10 s of twin time apart, then the service's tick
listeners, so /ws sends its events). From the fourth tick the evening crowd fills Chen Yi Square (40,000 people
on its counter: red), 90 mm/h of rain falls on every gauge and the Bund Tunnel's north portal gauge reads 0.45 m:
crowd, crowd-forecast and flood alerts are active when the page opens. The page must show:

- the vital-signs tiles with the values and levels of ``GET /api/indicators`` (the city, then a district chosen in
  the drill-down, its polygon outlined); a click on the water tile shows the flood layer and only flood alerts;
- a marker of at least 16 px for every active alert, inside the viewport once the map is fitted;
- the list's filters (hazard, lowest level, place) and orders (newest, place) applied exactly;
- write buttons disabled on a read-only page, with the reason in their title and on a line;
- at 390 px: no two panels overlapping, the tiles in one scrolling row, the alert list in a drawer that opens;
- the scrubber redrawing the risk layer from a stored frame (the quiet first tick: no red at the square), and
  "Live" going back;
- a building's record (floors, height) after a click on it.

With ``CITYTWIN_SCREENSHOTS=1`` the 1920 and 390 pictures are written to docs/dashboard-1920.png and
docs/dashboard-390.png (the README's); they always go to tests/browser/artifacts/.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
import pytest
import shapely

from ingest.batch import Batch
from tests.browser.conftest import ARTIFACTS, TOKEN, report, service_config
from twin.api import serve
from twin.live.service import LiveService, TwinClock

pytestmark = pytest.mark.slow

READY = "body[data-ready=true][data-ws=live]"
DOCS = Path(__file__).resolve().parents[2] / "docs"
SCREENSHOTS = os.environ.get("CITYTWIN_SCREENSHOTS") == "1"
T0 = 1_767_189_600.0  # 2025-12-31 22:00:00 in Shanghai
TICK_S = 10.0
TICKS = 12
CHEN_YI_SQUARE = (121.4855, 31.2405)
SQUARE_COUNTER = "crowd-bund-05"
PORTAL_GAUGE = "water-02"  # Bund Tunnel north portal
READ_ONLY = "Read-only · 只读: open the #token=… link to act"
INDICATORS = ["people", "water", "traffic", "alerts", "cases", "sensors", "units"]
DIGITS = {"people": 0, "water": 2, "traffic": 1, "alerts": 0, "cases": 0, "sensors": 0, "units": 0}
"""Digits of each tile's value (vitals.js DIGITS)."""
DESKTOP, PHONE = {"width": 1920, "height": 1080}, {"width": 390, "height": 844}


def tile_text(name: str, value: float | None) -> str:
    """A tile's value as vitals.js writes it: thousands separators and the indicator's digits; "–" without one."""
    return "–" if value is None else f"{value:,.{DIGITS[name]}f}"


def feed(svc: LiveService, k: int) -> None:
    """The k-th tick's readings: quiet for three ticks, then the crowd, the rain and the water at the portal."""
    t = T0 + TICK_S * k
    busy = k >= 3
    crowd = [d.id for d in svc.registry.of_kind("crowd")]
    counts = np.array([40_000.0 if busy and d == SQUARE_COUNTER else 300.0 for d in crowd])
    svc.core.on_batch(Batch.build(len(crowd), device=np.array(crowd, dtype=object), t=t, quantity="count",
                                  value=counts))
    water = [d.id for d in svc.registry.of_kind("water")]
    depth = np.array([0.45 if busy and d == PORTAL_GAUGE else 0.0 for d in water])
    svc.core.on_batch(Batch.build(len(water), device=np.array(water, dtype=object), t=t, quantity="depth",
                                  value=depth))
    rain = [d.id for d in svc.registry.of_kind("rain")]
    svc.core.on_batch(Batch.build(len(rain), device=np.array(rain, dtype=object), t=t, quantity="rain",
                                  value=np.full(len(rain), 90.0 if busy else 0.0)))
    svc.core.on_batch(Batch.build(1, device="unit-police-04", t=t, quantity="position", lon=CHEN_YI_SQUARE[0],
                                  lat=CHEN_YI_SQUARE[1], datum="CGCS2000", speed_kmh=3.0, course_deg=90.0))
    report_ = svc.core.on_tick(t)
    svc.last_report = report_
    for listener in list(svc.listeners):
        listener(report_)


@pytest.fixture(scope="module")
def twin(bund_file, tmp_path_factory):
    """(service, API handle with a token, active alert features) after `TICKS` ticks; the tests only read it."""
    state_dir = tmp_path_factory.mktemp("picture") / "state"
    svc = LiveService(service_config(bund_file, state_dir, "mqtt://127.0.0.1:9", TICK_S, clock=TwinClock(start=T0)))
    handle = serve(svc, port=0, token=TOKEN)
    for k in range(TICKS):
        feed(svc, k)
    alerts = httpx.get(f"{handle.url}/api/alerts?state=active").json()["features"]
    hazards = {f["properties"]["hazard"] for f in alerts}
    assert {"crowd", "flood"} <= hazards, hazards
    yield svc, handle, alerts
    handle.stop()
    svc.raw_log.close()
    svc.store.close()


@pytest.fixture
def sized(browser):
    """A page factory: new_page(viewport) in its own context (no token or storage carried over)."""
    contexts = []

    def new_page(viewport: dict):
        context = browser.new_context(viewport=viewport)
        contexts.append(context)
        pg = context.new_page()
        pg.errors = []
        pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
        return pg

    yield new_page
    for context in contexts:
        context.close()


def open_page(pg, url: str, token: bool = True) -> None:
    pg.goto(f"{url}/" + (f"#token={TOKEN}" if token else ""))
    pg.wait_for_selector(READY, timeout=20_000)
    pg.wait_for_function("(n) => document.querySelectorAll('#alert-list li').length === n",
                         arg=pg.alert_count, timeout=10_000)


def page_for(sized, twin, viewport: dict, token: bool = True):
    _, handle, alerts = twin
    pg = sized(viewport)
    pg.alert_count = len(alerts)
    open_page(pg, handle.url, token)
    return pg


def next_frame(pg) -> None:
    """Until the page's next animation frame: a redraw asked for before it (app.js renderFrame) has run."""
    pg.evaluate("() => new Promise((done) => requestAnimationFrame(() => done()))")


def visible_ids(pg) -> list[str]:
    return pg.eval_on_selector_all("#alert-list li:not([hidden])", "els => els.map(e => e.dataset.id)")


def screenshot(pg, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=ARTIFACTS / name)
    if SCREENSHOTS:
        pg.screenshot(path=DOCS / name)


def tiles_match(pg, body: dict, node: str) -> None:
    """Every tile of the page shows the node's indicator of ``body`` (GET /api/indicators): value, level, text."""
    nodes = {n["id"]: n for n in body["nodes"]}
    assert node in nodes, list(nodes)
    shown = pg.eval_on_selector_all("#vital-tiles li", """els => els.map(e => ({name: e.dataset.name,
        value: e.dataset.value, level: Number(e.dataset.level), text: e.querySelector('.vital-value').textContent,
        label: e.querySelector('.vital-label').textContent}))""")
    assert [s["name"] for s in shown] == INDICATORS, "seven tiles in the brief's order"
    for tile in shown:
        ind = nodes[node]["indicators"][tile["name"]]
        value = ind["value"]
        assert tile["value"] == ("" if value is None else pg.evaluate("v => String(v)", value)), tile
        assert tile["level"] == (ind["level"] if ind["level"] is not None and ind["level"] >= 0 else -1), tile
        assert tile["text"] == tile_text(tile["name"], value), tile


# ---------------------------------------------------------------------------------------------- vital signs
def test_the_vital_signs_show_the_indicators_of_the_chosen_node_and_filter_the_map(sized, twin):
    _, handle, alerts = twin
    pg = page_for(sized, twin, DESKTOP)
    pg.wait_for_function("() => document.querySelector('#vital-tiles').dataset.shown === 'city'")
    city = httpx.get(f"{handle.url}/api/indicators?level=city").json()
    tiles_match(pg, city, "city")
    labels = pg.eval_on_selector_all("#vital-tiles .vital-label", "els => els.map(e => e.textContent)")
    assert labels == ["人流 People", "积水 Water", "交通 Traffic", "告警 Alerts", "案件 Cases", "感知设备 Sensors",
                      "力量 Units"]
    # a red crowd alert is open: the alerts tile is red, and names it
    alerts_tile = pg.locator('#vital-tiles li[data-name="alerts"]')
    assert alerts_tile.get_attribute("data-level") == "4" and "lv-4" in alerts_tile.get_attribute("class")
    by_level = city["nodes"][0]["indicators"]["alerts"]["detail"]["by_level"]
    chips = alerts_tile.locator(".lvl-count").all()
    assert [(c.get_attribute("data-level"), c.inner_text()) for c in chips] == \
        [(k, str(by_level[k])) for k in ("4", "3", "2", "1") if by_level[k]], "open alerts by level, red first"
    assert pg.locator("#st-clock .v").is_visible() and pg.locator("#st-link").is_visible(), "time and link stay"
    assert pg.locator("#st-rate").is_hidden(), "the engineering figures are folded into System · 系统"
    screenshot(pg, "dashboard-1920.png")
    pg.click("#system summary")
    assert pg.locator("#st-rate").is_visible() and pg.locator("#st-outbox").is_visible()
    pg.click("#system summary")

    # drill down to the first district: its tiles, its polygon outlined
    district = pg.eval_on_selector("#drill-district", "s => [...s.options].map(o => o.value).find(Boolean)")
    assert district and district.startswith("district:")
    pg.select_option("#drill-district", district)
    pg.wait_for_function("(id) => document.querySelector('#vital-tiles').dataset.shown === id", arg=district)
    body = httpx.get(f"{handle.url}/api/indicators", params={"level": "district", "parent": "city"}).json()
    tiles_match(pg, body, district)
    outline = pg.locator("#drill-outline")
    assert outline.get_attribute("data-node") == district and len(outline.get_attribute("d") or "") > 20
    box = outline.bounding_box()
    assert box and box["width"] > 20 and box["height"] > 20
    assert not pg.locator("#drill-street").is_disabled(), "its streets to choose from"
    pg.click("#drill-city")
    pg.wait_for_function("() => document.querySelector('#vital-tiles').dataset.shown === 'city'")
    assert not outline.get_attribute("d")

    # the water tile: the flood layer and only the flood alerts; again: everything
    pg.click('#vital-tiles li[data-name="water"]')
    pg.wait_for_selector("#risk[data-layer=level_flood]", state="attached")
    flood = sorted(f["properties"]["identifier"] for f in alerts if f["properties"]["hazard"] == "flood")
    pg.wait_for_function("(n) => document.querySelectorAll('#alert-list li:not([hidden])').length === n",
                         arg=len(flood))
    assert sorted(visible_ids(pg)) == flood
    assert pg.locator("#filter-hazard").input_value() == "flood"
    assert pg.locator('#vital-tiles li[data-name="water"]').get_attribute("aria-pressed") == "true"
    pg.click('#vital-tiles li[data-name="water"]')
    pg.wait_for_selector("#risk[data-layer=level]", state="attached")
    assert len(visible_ids(pg)) == len(alerts)
    assert pg.errors == []


# ---------------------------------------------------------------------------------------------- markers
@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1920", "390"])
def test_every_active_alert_has_a_visible_marker_of_at_least_16_px(sized, twin, viewport):
    _, _, alerts = twin
    pg = page_for(sized, twin, viewport)
    pg.evaluate("() => window.citytwin.fit()")
    pg.wait_for_function("(n) => document.querySelectorAll('#badges g[data-id]').length === n", arg=len(alerts))
    sizes = []
    for f in alerts:
        ident = f["properties"]["identifier"]
        marker = pg.locator(f'#badges g[data-id="{ident}"]')
        assert marker.is_visible(), ident
        box = marker.bounding_box()
        assert box["width"] >= 16 and box["height"] >= 16, (ident, box)
        assert box["x"] >= 0 and box["y"] >= 0, (ident, box)
        assert box["x"] + box["width"] <= viewport["width"] and box["y"] + box["height"] <= viewport["height"], box
        # nothing lies over the pin's head, not even another alert's pin: the topmost marker there is this one
        hit = pg.evaluate("""([x, y]) => {
            const e = document.elementFromPoint(x, y);
            const g = e && e.closest('#badges g[data-id]');
            return g ? g.dataset.id : null; }""", [box["x"] + box["width"] / 2, box["y"] + 11])
        assert hit == ident, f"{ident}: its marker is covered at {box} by {hit}"
        level = f["properties"]["level"]
        assert f"level-{level}" in marker.get_attribute("class").split()
        sizes.append(min(box["width"], box["height"]))
    assert pg.errors == []
    report(f"alert markers at {viewport['width']} px: {len(sizes)}, smallest side {min(sizes):.0f} px",
           **{f"marker_min_px_{viewport['width']}": round(min(sizes), 1)})


# ---------------------------------------------------------------------------------------------- the list
def test_the_filters_and_orders_of_the_alert_list(sized, twin):
    _, _, alerts = twin
    pg = page_for(sized, twin, DESKTOP)
    props = {f["properties"]["identifier"]: f["properties"] for f in alerts}

    def expect(ids: set[str]) -> None:
        pg.wait_for_function("(n) => document.querySelectorAll('#alert-list li:not([hidden])').length === n",
                             arg=len(ids))
        assert set(visible_ids(pg)) == ids

    pg.select_option("#filter-hazard", "flood")
    expect({i for i, p in props.items() if p["hazard"] == "flood"})
    assert pg.locator("#filter-line").inner_text().startswith("Showing ")
    pg.select_option("#filter-hazard", "crowd")  # observed and forecast crowd alerts
    crowd = {i for i, p in props.items() if p["hazard"] in ("crowd", "crowd_forecast")}
    assert crowd and len(crowd) < len(props)
    expect(crowd)
    pg.select_option("#filter-hazard", "")
    pg.select_option("#filter-level", "4")
    red = {i for i, p in props.items() if p["level"] >= 4}
    assert red and len(red) < len(props), "some alerts are red, some not"
    expect(red)
    pg.select_option("#filter-level", "0")
    expect(set(props))

    # a place: the flood alert's place name, in part and in another case
    flood = next(p for p in props.values() if p["hazard"] == "flood")
    word = (flood.get("place_name") or flood["area_desc"]).split()[0].lower()
    matching = {i for i, p in props.items()
                if word in " ".join(filter(None, [p.get("place_name"), p.get("area_desc"), p.get("headline"),
                                                  p.get("headline_zh"), p.get("place")])).lower()}
    pg.fill("#filter-place", word)
    expect(matching)
    pg.fill("#filter-place", "no such place anywhere")
    expect(set())
    assert "None of" in pg.locator("#filter-line").inner_text()
    pg.fill("#filter-place", "")
    expect(set(props))

    pg.select_option("#sort-alerts", "newest")
    next_frame(pg)
    order = visible_ids(pg)
    raised = [props[i]["raised_at"] for i in order]
    assert raised == sorted(raised, reverse=True), "newest first"
    pg.select_option("#sort-alerts", "place")
    next_frame(pg)
    names = [props[i].get("place_name") or props[i]["area_desc"] or "" for i in visible_ids(pg)]
    assert names == pg.evaluate("ns => ns.slice().sort((a, b) => a.localeCompare(b, 'zh-CN'))", names)
    assert pg.errors == []


def test_a_read_only_page_disables_every_write_button_and_says_why(sized, twin):
    _, _, alerts = twin
    pg = page_for(sized, twin, DESKTOP, token=False)
    line = pg.locator("#operator-line")
    assert line.is_visible() and line.inner_text() == READ_ONLY
    pg.wait_for_selector("#case-list li.case")
    buttons = pg.locator("#alert-list button.ack, #alert-list button.silence, #case-list .case-actions button")
    assert buttons.count() >= 2 * len(alerts) + 1
    for button in buttons.all():
        assert button.is_disabled(), button.inner_text()
        assert button.get_attribute("title") == READ_ONLY, button.inner_text()
    assert float(pg.locator("#alert-list button.ack").first.evaluate("e => getComputedStyle(e).opacity")) < 0.6
    # with the token the same buttons act
    pg.goto("about:blank")
    open_page(pg, twin[1].url, token=True)
    assert all(b.is_enabled() for b in pg.locator("#alert-list button.ack").all())
    assert pg.locator("#operator-line").inner_text().startswith("Operator")
    assert pg.errors == []


# ---------------------------------------------------------------------------------------------- 390 px
def overlaps(a: dict, b: dict) -> float:
    """Area [px²] two boxes share."""
    w = min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"])
    h = min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"])
    return max(0.0, w) * max(0.0, h)


PANELS = ["#topbar", "#vitals", "#layer-panel", "#map-buttons", "#scrubber", "#scale", "#credit", "#legend",
          "#point-info", "#replay-badge"]


def test_at_390_px_no_panels_overlap_and_the_alert_list_is_a_drawer(sized, twin):
    _, _, alerts = twin
    pg = page_for(sized, twin, PHONE)
    pg.wait_for_function("() => document.querySelector('#vital-tiles').dataset.shown === 'city'")
    assert pg.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    boxes = {sel: pg.locator(sel).bounding_box() for sel in PANELS if pg.locator(sel).is_visible()}
    assert {"#topbar", "#vitals", "#layer-panel", "#map-buttons"} <= set(boxes), list(boxes)
    for i, a in enumerate(boxes):
        box = boxes[a]
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] + 0.5, (a, box)
        for b in list(boxes)[i + 1:]:
            assert overlaps(box, boxes[b]) < 1.0, f"{a} {box} overlaps {b} {boxes[b]}"
    # the map takes the whole width; the seven tiles sit in one row that scrolls sideways
    pane = pg.locator("#map-pane").bounding_box()
    assert pane["x"] == 0 and pane["width"] == PHONE["width"] and pane["height"] > 400
    tiles = pg.locator("#vital-tiles li")
    assert tiles.count() == 7
    tops = {round(t.bounding_box()["y"]) for t in tiles.all()}
    assert len(tops) == 1, "one row"
    assert pg.eval_on_selector("#vital-tiles", "e => e.scrollWidth > e.clientWidth")
    assert boxes["#vitals"]["height"] < 130
    screenshot(pg, "dashboard-390.png")
    # the list is a drawer: closed, then opened by the button with the count, then closed
    assert pg.locator("#side").is_hidden()
    toggle = pg.locator("#drawer-toggle")
    assert toggle.is_visible() and toggle.locator("#drawer-count").inner_text() == str(len(alerts))
    toggle.click()
    pg.wait_for_selector("#side", state="visible")
    pg.wait_for_function("() => getComputedStyle(document.querySelector('#side')).transform === 'none'")
    side = pg.locator("#side").bounding_box()
    assert side["x"] == 0 and side["width"] == PHONE["width"] and side["y"] + side["height"] <= PHONE["height"] + 0.5
    assert overlaps(side, boxes["#topbar"]) < 1.0, "the top bar with its button stays visible"
    assert pg.locator("#alert-list li").first.is_visible()
    assert toggle.get_attribute("aria-expanded") == "true"
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=ARTIFACTS / "dashboard-390-drawer.png")
    pg.click("#drawer-close")
    pg.wait_for_selector("#side", state="hidden")
    assert pg.errors == []


# ---------------------------------------------------------------------------------------------- scrubber
PIXEL = """async ([selector, col, row]) => {
    const img = new Image();  // the page's CSP lets images, not fetch(), read blob: URLs
    img.src = document.querySelector(selector).getAttribute('href');
    await img.decode();
    const bitmap = await createImageBitmap(img);
    const c = new OffscreenCanvas(bitmap.width, bitmap.height);
    const ctx = c.getContext('2d');
    ctx.drawImage(bitmap, 0, 0);
    return [...ctx.getImageData(col, row, 1, 1).data];
}"""


def test_the_scrubber_redraws_the_risk_layer_from_a_stored_frame(sized, twin):
    svc, handle, _ = twin
    frames = httpx.get(f"{handle.url}/api/frames").json()
    # stored when they change (twin.live.vitals): the quiet first tick, then the ticks the crowd and water moved
    assert len(frames["times"]) >= 2 and frames["times"][0] == pytest.approx(T0)
    pg = page_for(sized, twin, DESKTOP)
    pg.wait_for_function("(n) => Number(document.querySelector('#scrubber').dataset.frames) === n",
                         arg=len(frames["times"]))
    pg.wait_for_selector("#risk[data-layer=level]", state="attached")
    red = next(a for a in svc.core.book.active.values() if a.hazard == "crowd" and a.level == 4)
    row, col = (int(v) for v in np.divmod(red.cells[len(red.cells) // 2], svc.core.state.grid.nx))
    assert int(svc.core.live_layers()["level"].values[row, col]) == 4, "a red cell of the square's alert"
    live = pg.evaluate(PIXEL, ["#risk", col, row])
    assert live[3] > 0 and live[0] > 150 and live[1] < 80, f"the square is red now: {live}"

    with pg.expect_response(lambda r: "/api/frames/level.png?at=" in r.url) as got:
        pg.locator("#scrubber input[type=range]").fill("0")
    assert got.value.status == 200 and float(got.value.headers["x-frame-time"]) == pytest.approx(T0)
    pg.wait_for_function("(t) => Number(document.querySelector('#risk').dataset.frame) === t", arg=T0)
    badge = pg.locator("#replay-badge")
    assert badge.is_visible() and badge.inner_text() == "Replay · 回放 22:00"
    replay = pg.evaluate(PIXEL, ["#risk", col, row])
    assert replay[3] == 0, f"the first tick was quiet: nothing drawn at the square then ({replay})"
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=ARTIFACTS / "dashboard-replay.png")

    pg.click("#scrubber .scrub-live")
    pg.wait_for_function("() => !('frame' in document.querySelector('#risk').dataset)")
    assert badge.is_hidden()
    back = pg.evaluate(PIXEL, ["#risk", col, row])
    assert back == live
    assert pg.errors == []


# ---------------------------------------------------------------------------------------------- buildings
def test_a_click_on_a_building_shows_its_record(sized, twin):
    _, handle, alerts = twin
    areas = shapely.union_all([shapely.geometry.shape(f["geometry"]) for f in alerts])
    buildings = httpx.get(f"{handle.url}/api/basemap/buildings").json()["features"]
    candidates = sorted((f for f in buildings if f["properties"].get("floors") and f["properties"].get("height")
                         and f["geometry"]["type"] == "Polygon"),
                        key=lambda f: -shapely.geometry.shape(f["geometry"]).area)
    pg = page_for(sized, twin, DESKTOP)
    for f in candidates:  # the largest building with floors and height that no alert area covers
        inside = shapely.geometry.shape(f["geometry"]).representative_point()
        lon, lat = pg.evaluate("([x, y]) => window.citytwin.toLonLat(x, y)", [inside.x, inside.y])
        if not areas.contains(shapely.Point(lon, lat)):
            break
    ident = f["properties"]["id"]
    record = httpx.get(f"{handle.url}/api/buildings/{ident}").json()
    pg.evaluate("([lon, lat]) => window.citytwin.lookAt(lon, lat, 3)", [lon, lat])
    x, y = pg.evaluate("([lon, lat]) => window.citytwin.pageXY(lon, lat)", [lon, lat])
    pg.mouse.click(x, y)
    pg.wait_for_selector(f'#point-info[data-building="{ident}"]:not([hidden]) .bldg-facts')
    facts = dict(pg.eval_on_selector_all("#point-info .bldg-facts tr",
                                         "rows => rows.map(r => [r.cells[0].textContent, r.cells[1].textContent])"))
    floors, height = record["floors"], record["height_m"]
    assert facts["Floors · 层数"] == f"{round(floors):,}"
    want = f"{round(height)} m" if float(height).is_integer() or height >= 100 else f"{height:.1f} m"
    assert facts["Height · 高度"] == want
    assert "Beidou" in pg.locator("#point-info").inner_text(), "the point's values under the record"
    assert pg.locator("#building-selected").get_attribute("d")
    pg.click("#point-info .close")
    assert not pg.locator("#building-selected").get_attribute("d")
    assert pg.errors == []


# ---------------------------------------------------------------------------------------------- controls
def test_history_tab_label_language_and_the_red_alarm_switch(sized, twin):
    _, handle, alerts = twin
    pg = page_for(sized, twin, DESKTOP)
    # History · 历史: the alerts of the last hours with their timelines
    history = httpx.get(f"{handle.url}/api/alerts/history").json()
    assert len(history["alerts"]) >= len(alerts)
    pg.click("#tab-history")
    pg.wait_for_function("(n) => Number(document.querySelector('#history').dataset.count) === n",
                         arg=len(history["alerts"]))
    assert pg.locator("#history-pane").is_visible() and pg.locator("#alert-list").is_hidden()
    assert pg.locator("#history .hist-item").count() == len(history["alerts"])
    pg.click("#tab-active")
    assert pg.locator("#alert-list").is_visible()

    # the labels' language: Chinese first, English after a click, kept over a reload
    pg.wait_for_function("() => document.querySelectorAll('#labels text').length > 0")
    zh = pg.eval_on_selector_all("#labels text", "els => els.map(e => e.textContent).join('')")
    assert pg.locator("#lang-toggle").inner_text() == "中文" and any("\u4e00" <= ch <= "\u9fff" for ch in zh)
    pg.click("#lang-toggle")
    pg.wait_for_function("() => document.querySelector('#lang-toggle').dataset.lang === 'en'")
    en = pg.eval_on_selector_all("#labels text", "els => els.map(e => e.textContent).join('')")
    assert en != zh and pg.evaluate("localStorage.getItem('citytwin.lang')") == "en"

    # a new observed red rings once (sound.js's newReds); the mute switch is kept
    red = {**alerts[0], "properties": {**alerts[0]["properties"], "identifier": "test-new-red", "level": 4,
                                       "level_name": "red", "certainty": "Observed", "message_id": "test-new-red"}}
    before = pg.evaluate("() => window.citytwin.stats().reds")
    pg.evaluate("f => window.citytwin.handleEvent({type: 'alert', kind: 'raised', t: 0, feature: f})", red)
    pg.wait_for_selector('#badges g[data-id="test-new-red"]')
    assert pg.evaluate("() => window.citytwin.stats().reds") == before + 1
    # a red raised while the socket was down comes with the snapshot of the reconnection: it rings too, once
    away = {**red, "properties": {**red["properties"], "identifier": "test-red-while-away",
                                  "message_id": "test-red-while-away"}}
    snapshot = {"type": "snapshot", "alerts": {"type": "FeatureCollection", "features": [*alerts, away]},
                "units": httpx.get(f"{handle.url}/api/units").json(),
                "status": httpx.get(f"{handle.url}/api/status").json()}
    pg.evaluate("e => window.citytwin.handleEvent(e)", snapshot)
    pg.wait_for_selector('#badges g[data-id="test-red-while-away"]')
    assert pg.evaluate("() => window.citytwin.stats().reds") == before + 2
    pg.evaluate("e => window.citytwin.handleEvent(e)", snapshot)
    assert pg.evaluate("() => window.citytwin.stats().reds") == before + 2, "the same snapshot again: nothing new"
    mute = pg.locator("#mute-toggle")
    assert mute.get_attribute("aria-pressed") == "false"
    mute.click()
    assert mute.get_attribute("aria-pressed") == "true" and "Muted" in mute.inner_text()
    pg.reload()
    pg.wait_for_selector(READY, timeout=20_000)
    assert pg.locator("#mute-toggle").get_attribute("aria-pressed") == "true", "muted stays muted"
    assert pg.locator("#lang-toggle").inner_text() == "EN", "and English stays English"
    assert pg.errors == []
