"""The city page (served by the city tier at ``/``, twin/api/static/city.*) in a real browser.

The city API runs over a board of the bundled four-district city (data/city/bund4.yaml: its boundaries, no build
needed) with two district alerts either side of the Huangpu-Hongkou border merged into one city alert. Huangpu's
twin answers (a small district API: health and vital signs), Hongkou's address accepts connections and never
answers, Yangpu and Pudong have none. The page must draw the four districts with their names, coloured by status,
Huangpu's people count and drill-down links to its twin's page and API, the city alert on the map and in the list,
switch to English, and load nothing from other sites. Every wait is on a condition of the page.
"""

from __future__ import annotations

import json

import pytest

from tests.browser.conftest import ARTIFACTS
from tests.city.test_city_http import twins  # noqa: F401 - the fixture, shared
from tests.city.test_merge import CONTEXT, T0, box, district_message, feed
from twin.city.city import load_city
from twin.city.citymap import city_map
from twin.city.http import CityBoard, DistrictLink, DistrictProbe, serve_city
from twin.city.merge import AlertMerger
from twin.district.sources import data_dir

pytestmark = pytest.mark.slow

NAMES_ZH = {"310101": "黄浦区", "310109": "虹口区", "310110": "杨浦区", "310115": "浦东新区"}
NAMES_EN = {"310101": "Huangpu", "310109": "Hongkou", "310110": "Yangpu", "310115": "Pudong New Area"}


@pytest.fixture(scope="module")
def city_api(twins, tmp_path_factory):  # noqa: F811 - the imported fixture, by name
    up, silent = twins  # Huangpu's twin API (answers) and an address that never answers
    city = load_city(data_dir() / "city" / "bund4.yaml", cache=tmp_path_factory.mktemp("bund4-page"))
    apis = {"310101": up, "310109": silent}
    links = [DistrictLink(s.partition, s.code, s.name, s.name_en, apis.get(s.partition, ""))
             for s in city.manifest.districts]
    merger = AlertMerger(CONTEXT)
    feed(merger, [district_message("310101", "flood", 1, box(-1, 0), 3),
                  district_message("310109", "flood", 2, box(0, 0), 4, raised=T0 + 5)])
    board = CityBoard(city.manifest.code, city.name, city.name_en, links, tick_s=60.0, now=lambda: T0 + 100,
                      map=city_map(city))
    board.set_alerts([(c.identifier, c.last, sorted(c.refs)) for c in merger.city_alerts()],
                     {"310101": 1, "310109": 1})
    probe = DistrictProbe(links, timeout_s=0.5)
    handle = serve_city(board, probe, port=0)
    yield handle, up, merger
    handle.stop()
    probe.close()


def test_the_city_page_shows_the_districts_their_alerts_and_drill_down(page, city_api):
    handle, up, merger = city_api
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{handle.url}/")
    page.wait_for_selector("body[data-link=live]", timeout=15_000)
    page.wait_for_selector('.district-card[data-partition="310101"] [data-indicator=people] .v', timeout=15_000)

    cards = page.eval_on_selector_all(".district-card", "els => els.map(e => [e.dataset.partition, "
                                      "e.dataset.status, e.querySelector('.name').textContent])")
    assert cards == [["310101", "ok", "黄浦区"], ["310109", "unavailable", "虹口区"], ["310110", "unknown", "杨浦区"],
                     ["310115", "unknown", "浦东新区"]]
    drawn = page.eval_on_selector_all("#city-map path.district", "els => els.map(e => [e.dataset.code, "
                                      "e.getAttribute('class')])")
    assert sorted(drawn) == sorted([[c, f"district status-{s}"] for c, s in (
        ("310101", "ok"), ("310109", "unavailable"), ("310110", "unknown"), ("310115", "unknown"))])
    labels = page.eval_on_selector_all("#city-map text.label", "els => els.map(e => e.firstChild.textContent)")
    assert sorted(labels) == sorted(NAMES_ZH.values())
    assert page.text_content('#city-map text.label[data-code="310101"] .badge') == "预警 1"

    huangpu = '.district-card[data-partition="310101"]'
    assert page.get_attribute(f"{huangpu} a.drill", "href") == f"{up}/", "the drill-down is the district twin"
    assert page.get_attribute(f"{huangpu} a.drill-api", "href") == f"{up}/api/indicators?level=district"
    assert page.text_content(f"{huangpu} [data-indicator=people] .v") == "1,234 人"
    assert page.query_selector('.district-card[data-partition="310110"] a.drill') is None

    city_alert = merger.city_alerts()[0]
    assert page.eval_on_selector_all(".alert-item", "els => els.map(e => e.dataset.alert)") == [city_alert.identifier]
    assert page.query_selector(f'#city-map circle.alert-marker[data-alert="{city_alert.identifier}"]') is not None
    assert "虹口区" in page.text_content(".alert-item") and "黄浦区" in page.text_content(".alert-item")

    page.click("#lang-toggle")
    page.wait_for_selector("html[lang=en]")
    names = page.eval_on_selector_all(".district-card .name", "els => els.map(e => e.textContent)")
    assert names == [NAMES_EN[c] for c in ("310101", "310109", "310110", "310115")]
    assert page.text_content(f"{huangpu} [data-indicator=people] .v") == "1,234"
    assert page.text_content("#alerts-title") == "City alerts 1"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "city-page.png"))

    assert page.errors == []
    assert all(u.startswith(handle.url) or u.startswith("data:") for u in requests), requests
    shown = json.loads(page.evaluate("() => JSON.stringify(localStorage.getItem('citytwin.lang'))"))
    assert shown == "en", "the language choice is kept, as on the dashboard"
