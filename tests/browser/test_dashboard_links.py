"""Issue 15 (part): the dashboard's "Road links · 路段" layer, in a real browser.

A live service on the Bund with its road network, served over HTTP; the page is opened first, then four probes
drive the longest link of East Zhongshan No. 1 Road at 36 km/h through the real core, and a tick reaches the
page over the real ``/ws`` (the service's tick listeners, as `twin run` calls them). The page must then fetch
the links' speeds and draw the driven link in the colour of its congestion level (basically smooth for an
arterial at 36 km/h), thicker than the links without data; a click on it shows its name and speeds.
Every wait is on a condition of the page, never a sleep.
"""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from tests.browser.conftest import ARTIFACTS, REGISTRY, TOKEN, report
from tests.test_probe_links import T0, _drive, _long_link
from twin.api import serve
from twin.district import geo
from twin.district.dataset import grid_of
from twin.district.roads import road_network_from_sources
from twin.live.core import CoreConfig
from twin.live.models import LiveConfig
from twin.live.service import LiveService, ServiceConfig, TwinClock

pytestmark = pytest.mark.slow

READY = "body[data-ready=true][data-ws=live]"
VEHICLES = ["veh-001", "veh-002", "veh-003", "veh-004"]
REDRAW_MS = 100.0
"""Longest redraw allowed: the load test's frame budget (tests/browser/test_dashboard_load.py, FRAME_P95_MS)."""


@pytest.fixture(scope="module")
def network(bund10, bund_sources):
    return road_network_from_sources(bund_sources, grid_of(bund10[0]))


@pytest.fixture
def roads_service(bund_file, network, tmp_path):
    """A live service with the road network, never started (no broker): the test drives its core."""
    config = ServiceConfig(broker="mqtt://127.0.0.1:9", grid=bund_file, registry=REGISTRY, state_dir=tmp_path / "state",
                           tick_s=5.0, core=CoreConfig(tick_s=5.0, live=LiveConfig(road_network=network)),
                           clock=TwinClock(start=T0))
    svc = LiveService(config)
    svc.core.on_tick(T0 - 5.0)
    yield svc
    svc.raw_log.close()
    svc.store.close()


def tick_with_listeners(svc: LiveService, t: float) -> None:
    """One tick, then the service's tick listeners (the HTTP API's: its ``tick`` event goes out on /ws)."""
    report = svc.core.on_tick(t)
    svc.last_report = report
    for listener in list(svc.listeners):
        listener(report)


def test_the_link_layer_colours_the_driven_link_by_its_level_and_shows_it_on_click(page, roads_service, network):
    handle = serve(roads_service, port=0, token=TOKEN)
    try:
        page.goto(f"{handle.url}/#token={TOKEN}")
        page.wait_for_selector(READY, timeout=15_000)
        assert page.evaluate("async () => (await window.citytwin.links()).available") is True
        page.wait_for_selector("#links-toggle:not([hidden])")
        link = _long_link(network)
        group = f'#links path.road-link[data-links~="{link}"]'
        page.wait_for_selector(group, state="attached")
        assert page.get_attribute(group, "data-level") == "-1", "nobody has driven it yet: grey, no data"
        before = page.eval_on_selector(group, "el => parseFloat(getComputedStyle(el).strokeWidth)")

        _drive(roads_service.core, network, link, VEHICLES, 240.0, 5.0)
        tick_with_listeners(roads_service, T0 + 245.0)
        driven = f'#links path.road-link.lvl-1[data-links~="{link}"]'
        page.wait_for_selector(driven, state="attached", timeout=15_000)

        style = page.eval_on_selector(driven, """el => { const s = getComputedStyle(el);
            const probe = document.createElement('div'); probe.style.color = 'var(--link-1)';
            document.body.append(probe); const want = getComputedStyle(probe).color; probe.remove();
            return {stroke: s.stroke, want, width: parseFloat(s.strokeWidth), display: s.display}; }""")
        assert style["stroke"] == style["want"] == "rgb(164, 214, 94)", style
        assert style["width"] > before, "a link with a speed is drawn thicker than one without"
        grey = page.eval_on_selector('#links path.road-link[data-level="-1"]', "el => getComputedStyle(el).stroke")
        assert grey != style["stroke"]
        info = page.evaluate("async () => await window.citytwin.links()")
        assert info["t"] == pytest.approx(T0 + 245.0) and info["withSpeed"] >= 1
        # the frames that drew every link (the first) and re-styled them after the tick stay in the page's budget
        longest = max(page.evaluate("() => window.citytwin.stats().render"))
        report(f"road links: {len(network.links)} links, longest redraw {longest:.1f} ms",
               links_longest_redraw_ms=round(longest, 1))
        assert longest < REDRAW_MS, f"a redraw took {longest:.0f} ms"

        # a click on the middle of the link shows it
        mid = shapely.line_interpolate_point(network.links.geometry.iloc[link], 0.5, normalized=True)
        crs = network.links.crs.to_string()
        lon, lat = (float(v[0]) for v in geo.to_lonlat(np.array([mid.x]), np.array([mid.y]), crs))
        page.evaluate("([lon, lat]) => window.citytwin.lookAt(lon, lat, 3)", [lon, lat])
        x, y = page.evaluate("([lon, lat]) => window.citytwin.pageXY(lon, lat)", [lon, lat])
        page.mouse.click(x, y)
        page.wait_for_selector("#point-info:not([hidden]) .link-name")
        panel = page.inner_text("#point-info")
        assert "中山东一路" in panel and "road link" in panel.lower()
        speed = page.inner_text('#point-info tr[data-k="speed"] td')
        assert abs(float(speed.split()[0]) - 36.0) <= 2.0, speed
        assert page.inner_text('#point-info tr[data-k="free-flow speed"] td').endswith("km/h")
        assert int(page.inner_text('#point-info tr[data-k="vehicles"] td')) >= 2
        assert int(page.inner_text('#point-info tr[data-k="samples"] td')) >= 2
        assert 0.0 < float(page.inner_text('#point-info tr[data-k="confidence"] td')) <= 1.0
        congestion = page.inner_text('#point-info tr[data-k="congestion speed"] td')  # no stop: the window's speed
        assert abs(float(congestion.split()[0]) - 36.0) <= 2.0, congestion
        assert 2.0 < float(page.inner_text('#point-info tr[data-k="TPI-like index"] td')) < 4.0  # r 0.39 of 50 km/h
        assert page.inner_text('#point-info tr[data-k="loop detectors"] td') == "0"
        chips = page.inner_text("#point-info .point-levels")
        assert "basically smooth" in chips and "yellow" not in chips and "incident" not in chips
        page.wait_for_selector(f'#links path.road-link-selected[data-link="{link}"]', state="attached")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "dashboard-links.png")

        # the toggle hides the layer
        page.uncheck("#show-links")
        page.wait_for_function("() => getComputedStyle(document.getElementById('links')).display === 'none'")
        assert page.errors == []
    finally:
        handle.stop()


def test_without_a_road_network_the_toggle_stays_hidden(page, idle_service):
    handle = serve(idle_service, port=0, token=TOKEN)
    try:
        page.goto(f"{handle.url}/#token={TOKEN}")
        page.wait_for_selector(READY, timeout=15_000)
        assert page.evaluate("async () => (await window.citytwin.links()).available") is False
        assert page.locator("#links-toggle").is_hidden()
        assert page.locator("#links path").count() == 0
        assert page.errors == []
    finally:
        handle.stop()
