"""Forecast alerts and held (no-data) cells on the dashboard (issue 14), in a real browser.

- An alert whose CAP certainty is not "Observed" (the crowd trend's forecast: Likely, urgency Expected) is
  drawn with a dashed outline and a hatch in its level's colour, and listed with a "Forecast · 预测" tag and
  what it expects, after the observed alerts of its level; an observed alert looks as before.
- Cells whose level is held because their hazard has no fresh data (``level_nodata``) are hatched grey: on
  a hazard's layer where its bit is set and it has a level (not where it never had data); on the overall
  layer where the level shown comes from a silent hazard.

The twin is the quiet `idle_service`; alerts reach the page through its test hook (the WebSocket's code
path) and the held cells are set in the twin's live layers for the test, then put back.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import ARTIFACTS, TOKEN
from twin.api import serve

pytestmark = pytest.mark.slow

READY = "body[data-ready=true][data-ws=live]"
CHEN_YI_SQUARE = (121.4855, 31.2405)
BLOCK = 8
"""Cells a side of each test block."""
HAZARD_BIT = {"level_crowd": 1, "level_flood": 2, "level_traffic": 4}


@pytest.fixture
def api(idle_service):
    handle = serve(idle_service, port=0, token=TOKEN)
    yield handle
    handle.stop()


def open_page(page, url: str) -> None:
    page.goto(f"{url}/#token={TOKEN}")
    page.wait_for_selector(READY, timeout=15_000)


def alert_event(ident: str, level: int, *, certainty: str = "Observed", offset_m: tuple[float, float] = (0, 0),
                raised_at: float = 1_767_189_600, acked: bool = False, params: dict | None = None) -> dict:
    """An ``alert`` event as ``/ws`` sends it: a crowd alert on a 60 m square near Chen Yi Square."""
    lon = CHEN_YI_SQUARE[0] + offset_m[0] / 95_000
    lat = CHEN_YI_SQUARE[1] + offset_m[1] / 111_000
    d = 0.0003
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]
    forecast = certainty != "Observed"
    name = {1: "blue", 2: "yellow", 3: "orange", 4: "red"}[level]
    props = {"identifier": ident, "hazard": "crowd_forecast" if forecast else "crowd", "level": level,
             "level_name": name, "state": "active", "message_id": ident, "status": "Actual",
             "event": "Crowd density forecast" if forecast else "Crowd density warning",
             "urgency": "Expected" if forecast else "Immediate", "certainty": certainty,
             "headline": "crowd expected to reach 5.3 person/m² in 5 min" if forecast else "crowd density",
             "parameters": params or {}, "raised_at": raised_at, "area_desc": "陈毅广场 Chen Yi Square",
             "area_m2": 3600.0, "acknowledged_by": ["Zhang"] if acked else [], "units_on_scene": []}
    feature = {"type": "Feature", "id": ident, "geometry": {"type": "MultiPolygon", "coordinates": [[ring]]},
               "properties": props}
    return {"type": "alert", "kind": "raised", "t": raised_at, "feature": feature}


def test_a_forecast_alert_is_dashed_hatched_tagged_and_listed_after_the_observed_ones(page, api):
    open_page(page, api.url)
    events = [
        alert_event("observed-red", 4, acked=True, raised_at=1_767_189_600),
        alert_event("forecast-red", 4, certainty="Likely", offset_m=(120, 0), raised_at=1_767_189_900,
                    params={"expectedDensity": "5.30 person/m2", "expectedInMinutes": "5", "warningLevel": "red"}),
        alert_event("observed-yellow", 2, offset_m=(-120, 0), raised_at=1_767_190_000),
    ]
    for e in events:
        page.evaluate("e => window.citytwin.handleEvent(e)", e)
    page.wait_for_function("() => document.querySelectorAll('#alert-list li').length === 3")

    # the list: the observed red first (although older and acknowledged), then the forecast red, then yellow
    order = page.eval_on_selector_all("#alert-list li", "els => els.map(e => e.dataset.id)")
    assert order == ["observed-red", "forecast-red", "observed-yellow"]
    forecast_li = page.locator('#alert-list li[data-id="forecast-red"]')
    observed_li = page.locator('#alert-list li[data-id="observed-red"]')
    assert "forecast" in forecast_li.get_attribute("class").split()
    assert "forecast" not in observed_li.get_attribute("class").split()
    assert forecast_li.locator(".tag-forecast").is_visible()
    assert forecast_li.locator(".tag-forecast").inner_text() == "Forecast · 预测"
    expected = forecast_li.locator(".expected").inner_text()
    assert "expected to reach 5.3 person/m² in 5 min" in expected and "预计 5 分钟内达到 5.3 人/m²" in expected
    assert observed_li.locator(".tag-forecast").is_hidden() and observed_li.locator(".expected").is_hidden()
    assert "Forecast" not in observed_li.inner_text()

    # the map: the forecast area dashed and hatched in red, the observed one solid and filled as before
    style = """el => { const s = getComputedStyle(el);
                       return {dash: s.strokeDasharray, fill: s.fill, stroke: s.stroke,
                               cls: el.getAttribute('class')}; }"""
    f = page.eval_on_selector('#areas path[data-id="forecast-red"]', style)
    o = page.eval_on_selector('#areas path[data-id="observed-red"]', style)
    assert "forecast" in f["cls"].split() and "forecast" not in o["cls"].split()
    assert f["dash"] not in ("none", "") and o["dash"] == "none"
    assert "forecast-hatch-4" in f["fill"], f
    assert o["fill"] == "rgba(220, 24, 24, 0.28)" and o["stroke"] == f["stroke"] == "rgb(220, 24, 24)"
    hatch = page.eval_on_selector("#forecast-hatch-4 rect", "el => getComputedStyle(el).fill")
    assert hatch == "rgb(220, 24, 24)", "hatched in the level's colour"
    badge = page.locator('#badges g[data-id="forecast-red"]').get_attribute("class").split()
    assert "forecast" in badge and "forecast" not in page.locator('#badges g[data-id="observed-red"]').get_attribute(
        "class").split()
    # forecast areas lie under the observed ones
    drawn = page.eval_on_selector_all("#areas path", "els => els.map(e => e.dataset.id)")
    assert drawn.index("forecast-red") < drawn.index("observed-yellow") < drawn.index("observed-red")
    assert "forecast · 预测" in page.locator("#legend").inner_text()
    page.evaluate("([lon, lat]) => window.citytwin.lookAt(lon, lat, 2.5)", list(CHEN_YI_SQUARE))
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "dashboard-forecast.png")

    # the same alert updated to observed is drawn as observed
    page.evaluate("e => window.citytwin.handleEvent(e)",
                  {**alert_event("forecast-red", 4, offset_m=(120, 0)), "kind": "updated"})
    page.wait_for_function("""() =>
        !document.querySelector('#areas path[data-id="forecast-red"]').classList.contains('forecast')
        && document.querySelector('#alert-list li[data-id="forecast-red"] .tag-forecast').hidden""")
    assert page.errors == []


# ---------------------------------------------------------------------------- held cells
def held_reference(layers: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The held cells of a level layer (the rule of twin/api/static/held.js, written again)."""
    nodata = layers["level_nodata"]
    hazards = list(HAZARD_BIT) if name == "level" else [name]
    held = np.full(nodata.shape, -1)
    fresh = np.full(nodata.shape, -1)
    for h in hazards:
        silent = (nodata & HAZARD_BIT[h]) != 0
        held = np.where(silent, np.maximum(held, layers[h]), held)
        fresh = np.where(silent, fresh, np.maximum(fresh, layers[h]))
    return (held >= 0) & (held > fresh)


@contextlib.contextmanager
def live_layers_set(service, blocks: dict[str, dict[str, int]], origin: tuple[int, int]):
    """The twin's live layers with square blocks of cells set (``blocks``: block -> {layer: value}), put
    back afterwards. Yields {block: (row, col) of its corner}."""
    core = service.core
    row0, col0 = origin
    corners = {"A": (row0, col0), "B": (row0, col0 + 12), "C": (row0 + 12, col0), "D": (row0 + 12, col0 + 12)}
    with core.lock:
        before = core.models.layers
        layers = before.copy(deep=True)
        for block, values in blocks.items():
            r, c = corners[block]
            for name, value in values.items():
                arr = layers[name].values
                cells = (slice(r, r + BLOCK), slice(c, c + BLOCK))
                arr[cells] = value
        core.models.layers = layers
    try:
        yield corners
    finally:
        with core.lock:
            core.models.layers = before


def chroma_at(page, xy: tuple[float, float], half: int = 14) -> float:
    """Mean colourfulness (max - min of R, G, B) of the screen around a page point."""
    png = page.screenshot(clip={"x": xy[0] - half, "y": xy[1] - half, "width": 2 * half, "height": 2 * half})
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)
    return float((rgb.max(axis=2) - rgb.min(axis=2)).mean())


def wait_until(check, timeout: float = 10.0):
    """Poll ``check()`` until it returns something true; the last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_cells_whose_level_is_held_without_data_are_hatched_grey(page, api, idle_service):
    svc = idle_service
    grid = svc.core.state.grid
    row, col = (int(v) for v in grid.cell_of_lonlat(*CHEN_YI_SQUARE))
    blocks = {
        # crowd red, its counters silent: held (flood never had data there: bit 2, level -1)
        "A": {"level_crowd": 4, "level_flood": -1, "level": 4, "level_nodata": 1 | 2},
        # crowd red and fresh; flood never had data: not held
        "B": {"level_crowd": 4, "level_flood": -1, "level": 4, "level_nodata": 2},
        # crowd never had data: nothing to hold, nothing drawn
        "C": {"level_crowd": -1, "level_flood": -1, "level": 0, "level_nodata": 1 | 2},
        # crowd orange and fresh, traffic silent at none: the overall orange is fresh, the traffic layer held
        "D": {"level_crowd": 3, "level_flood": -1, "level_traffic": 0, "level": 3, "level_nodata": 2 | 4},
    }
    with live_layers_set(svc, blocks, (row - 10, col - 10)) as corners:
        layers = {n: svc.core.live_layers()[n].values for n in ("level", *HAZARD_BIT, "level_nodata")}
        expected = {name: held_reference(layers, name) for name in ("level", *HAZARD_BIT)}
        lon, lat = grid.cell_centres_lonlat()

        def centre(block: str) -> tuple[float, float]:
            r, c = corners[block]
            return float(lon[r + BLOCK // 2, c + BLOCK // 2]), float(lat[r + BLOCK // 2, c + BLOCK // 2])

        def held_in(name: str, block: str) -> bool:
            r, c = corners[block]
            return bool(expected[name][r:r + BLOCK, c:c + BLOCK].all())

        assert held_in("level", "A") and held_in("level_crowd", "A") and held_in("level_traffic", "D")
        rb, cb = corners["B"]
        assert not expected["level"][rb:rb + BLOCK, cb:cb + BLOCK].any(), "fresh red: not held"

        open_page(page, api.url)
        mid = ((centre("A")[0] + centre("D")[0]) / 2, (centre("A")[1] + centre("D")[1]) / 2)
        page.evaluate("([lon, lat]) => window.citytwin.lookAt(lon, lat, 2.0)", list(mid))
        for name in ("level", "level_crowd", "level_traffic"):
            if name != "level":
                page.check(f'input[name=layer][value="{name}"]')
            page.wait_for_selector(f'#risk[data-layer="{name}"]', state="attached")
            n = int(expected[name].sum())
            page.wait_for_selector(f'#held[data-cells="{n}"]', state="attached", timeout=10_000)
            assert page.locator("#held").evaluate("el => getComputedStyle(el).display") != "none"
            assert "no data, level held · 无数据，等级保持" in page.locator("#legend").inner_text()

        # what is drawn: the held red is grey, the fresh red stays red (overall layer)
        page.check('input[name=layer][value="level"]')
        page.wait_for_selector('#risk[data-layer="level"]', state="attached")
        page.wait_for_selector(f'#held[data-cells="{int(expected["level"].sum())}"]', state="attached")
        xy = {b: page.evaluate("([lon, lat]) => window.citytwin.pageXY(lon, lat)", list(centre(b))) for b in "ABD"}
        wait_until(lambda: chroma_at(page, xy["B"]) > 100)
        fresh = chroma_at(page, xy["B"])
        assert fresh > 100, f"a fresh red cell is drawn red (chroma {fresh:.0f})"
        wait_until(lambda: chroma_at(page, xy["A"]) < 0.4 * fresh)
        held = chroma_at(page, xy["A"])
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "dashboard-held.png")
        assert held < 0.4 * fresh, f"held red greyed: chroma {held:.0f} against {fresh:.0f} fresh"
        assert chroma_at(page, xy["D"]) > 0.7 * fresh, "a fresh orange beside a silent detector is not greyed"

        # a click in the held block says which levels are held
        page.mouse.click(*xy["A"])
        page.wait_for_selector("#point-info:not([hidden]) .chip.held")
        chips = page.locator("#point-info .chip.held").all_inner_texts()
        assert sorted(chips) == ["crowd: red (held, no data)", "overall: red (held, no data)"], chips
        page.click("#point-info .close")

        # the mask picture itself: opaque exactly on the held cells
        mask = page.evaluate("""async () => {
            const img = new Image();  // the page's CSP lets images, not fetch(), read blob: URLs
            img.src = document.querySelector('#held-mask-image').getAttribute('href');
            await img.decode();
            const bitmap = await createImageBitmap(img);
            const c = new OffscreenCanvas(bitmap.width, bitmap.height);
            const ctx = c.getContext('2d');
            ctx.drawImage(bitmap, 0, 0);
            const d = ctx.getImageData(0, 0, c.width, c.height).data;
            const out = [];
            for (let i = 3; i < d.length; i += 4) out.push(d[i] > 127 ? 1 : 0);
            return {w: c.width, h: c.height, alpha: out};
        }""")
        got = np.array(mask["alpha"], dtype=bool).reshape(mask["h"], mask["w"])
        assert (got == expected["level"]).all()

        # switched off, the layer takes its hatch with it
        page.check('input[name=layer][value=""]')
        page.wait_for_selector('#held[data-cells="0"]', state="attached")
        assert page.locator("#held").evaluate("el => getComputedStyle(el).display") == "none"
    assert page.errors == []


def test_the_bitmask_picture_and_its_legend_name_every_bit(api):
    def get(path: str) -> bytes:
        with urllib.request.urlopen(api.url + path, timeout=10) as r:
            return r.read()

    legend = json.loads(get("/api/layers/level_nodata/legend"))
    assert legend["mode"] == "bits" and [b["label"] for b in legend["bits"]] == ["crowd", "flood", "traffic"]
    assert [e["value"] for e in legend["entries"]] == list(range(1, 8))
    assert legend["entries"][2]["label"] == "crowd + flood"
    img = np.asarray(Image.open(io.BytesIO(get("/api/layers/level_nodata.png"))).convert("RGBA"))
    colours = {tuple(e["rgba"]): e["value"] for e in legend["entries"]} | {(0, 0, 0, 0): 0}
    assert {tuple(p) for p in img.reshape(-1, 4)} <= set(colours), "every pixel is a legend entry"
