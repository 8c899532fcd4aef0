"""The dashboard's cases panel in Debian's Chromium: a case opened over the API appears with its place, status and
deadline; the operator dispatches the suggested unit; an overdue case is highlighted and counted; today's ledger
line; read-only pages show the buttons disabled.

The twin is a real live service that is never started; ticks are run by the test and reach the page over /ws.
"""

from __future__ import annotations

import httpx
import pytest

from ingest.batch import Batch
from tests.browser.conftest import ARTIFACTS, REGISTRY, TOKEN
from twin.api import ApiConfig, serve
from twin.live.core import CoreConfig
from twin.live.service import LiveService, ServiceConfig, TwinClock

pytestmark = pytest.mark.slow

READY = "body[data-ready=true][data-ws=live]"
T0 = 1_767_225_600.0  # 2026-01-01 08:00 in Shanghai
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPILL = (121.4862, 31.2391)
UNITS = {"unit-police-01": (121.4866, 31.2394), "unit-police-02": (121.4880, 31.2330),
         "unit-fire-05": (121.4863, 31.2392)}
"""police-01 40 m from the spill, police-02 700 m; a fire unit beside it (not a road obstruction's duty)."""


@pytest.fixture
def twin(bund_file, tmp_path):
    """A quiet live service with three located units, and its API with a token."""
    config = ServiceConfig(broker="mqtt://127.0.0.1:9", grid=bund_file, registry=REGISTRY, state_dir=tmp_path / "state",
                           tick_s=1.0, core=CoreConfig(tick_s=1.0, clear_s=2.0), clock=TwinClock(start=T0))
    svc = LiveService(config)
    for unit, (lon, lat) in UNITS.items():
        svc.core.on_batch(Batch.build(1, device=unit, t=T0, quantity="position", lon=lon, lat=lat, datum="CGCS2000",
                                      speed_kmh=0.0, course_deg=0.0))
    svc.core.on_tick(T0)
    handle = serve(svc, port=0, token=TOKEN, config=ApiConfig())
    yield svc, handle
    handle.stop()
    svc.raw_log.close()
    svc.store.close()


def tick(svc: LiveService) -> None:
    """One tick at the twin's clock, then the tick listeners (the API's: /ws sends its events)."""
    report = svc.core.on_tick(svc.config.clock())
    svc.last_report = report
    for listener in list(svc.listeners):
        listener(report)


def open_case(url: str, priority: int = 2, name_en: str = "East Zhongshan No. 1 Rd at Jiujiang Rd") -> str:
    body = {"operator": "Wang Fang", "category": "road_obstruction", "priority": priority, "lon": SPILL[0],
            "lat": SPILL[1], "name_zh": "中山东一路近九江路", "name_en": name_en, "reason": "CCTV: spilled load"}
    r = httpx.post(f"{url}/api/cases", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def row(ident: str) -> str:
    return f'#case-list li.case[data-id="{ident}"]'


def test_a_case_appears_and_is_dispatched_to_the_suggested_unit(page, twin):
    _, handle = twin
    ident = open_case(handle.url)
    page.goto(f"{handle.url}/#token={TOKEN}")
    page.wait_for_selector(READY, timeout=15_000)
    page.wait_for_selector(row(ident))
    text = page.locator(row(ident)).inner_text()
    page.wait_for_function(f"() => document.querySelector('{row(ident)}').textContent.includes('Road obstruction')")
    for words in ("Road obstruction · 道路障碍", "中山东一路近九江路", "Jiujiang Rd", "new · 待派遣", "unassigned",
                  "dispatch due in"):
        assert words in text, words
    assert page.locator("#case-count").inner_text() == "1"
    page.wait_for_function("() => document.querySelector('#ledger-line').textContent.includes('opened 1')")
    assert "open 1" in page.locator("#ledger-line").inner_text()

    page.click(f"{row(ident)} button.dispatch")
    page.wait_for_selector("#dispatch-dialog[open] #dispatch-units[data-loaded]")
    choices = page.locator("#dispatch-units input[name=dispatch-unit]")
    assert choices.first.get_attribute("value") == "unit-police-01" and choices.first.is_checked()
    assert "unit-fire-05" not in page.locator("#dispatch-units").inner_text(), "not a road obstruction's duty"
    page.fill("#dispatch-by", "Wang Fang")
    page.fill("#dispatch-why", "nearest free unit")
    page.click("#dispatch-ok")
    page.wait_for_selector(f'{row(ident)}[data-status="dispatched"]')
    assert "→ unit-police-01" in page.locator(row(ident)).inner_text()
    assert "dispatched to unit-police-01" in page.locator("#notice.ok").inner_text()
    sent = httpx.get(f"{handle.url}/api/cases/{ident}").json()
    assert (sent["status"], sent["assignee"]) == ("dispatched", "unit-police-01")
    assert (sent["events"][-1]["actor"], sent["events"][-1]["reason"]) == ("Wang Fang", "nearest free unit")
    assert page.evaluate("sessionStorage.getItem('citytwin.operator')") == "Wang Fang"
    assert page.errors == []


def test_an_overdue_case_is_highlighted_and_counted(page, twin):
    svc, handle = twin
    late = open_case(handle.url, priority=1, name_en="first report")
    page.goto(f"{handle.url}/#token={TOKEN}")
    page.wait_for_selector(READY, timeout=15_000)
    page.wait_for_selector(row(late))
    assert "overdue" not in (page.locator(row(late)).get_attribute("class") or "")
    assert page.locator("#case-overdue").is_hidden()
    svc.config.clock.sim0 += 300.0  # five minutes on: past a priority-1 case's 2 min to dispatch
    fresh = open_case(handle.url, priority=3, name_en="second report")
    tick(svc)
    page.wait_for_selector(f"{row(late)}.overdue")
    page.wait_for_selector(row(fresh))
    assert "overdue" not in (page.locator(row(fresh)).get_attribute("class") or "")
    assert page.locator("#case-overdue").inner_text() == "1 overdue · 超时"
    assert "dispatch overdue" in page.locator(row(late)).inner_text()
    ids = [li.get_attribute("data-id") for li in page.locator("#case-list li.case").all()]
    assert ids == [late, fresh], "overdue cases first"
    colour = page.eval_on_selector(f"{row(late)}", "el => getComputedStyle(el).outlineColor")
    assert colour == page.evaluate("""() => { const p = document.createElement('div'); p.style.color = 'var(--bad)';
        document.body.append(p); const c = getComputedStyle(p).color; p.remove(); return c; }""")
    page.wait_for_function("() => document.querySelector('#ledger-line').textContent.includes('overdue 1')")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "cases-panel.png")


def test_the_operator_verifies_and_closes_and_the_case_leaves_the_list(page, twin):
    _, handle = twin
    ident = open_case(handle.url)
    httpx.post(f"{handle.url}/api/cases/{ident}/dispatch", json={"operator": "W", "unit": "unit-police-01"},
               headers=AUTH)
    for kind in ("accepted", "on_scene", "disposed"):
        r = httpx.post(f"{handle.url}/api/cases/{ident}/transition",
                       json={"operator": "W", "kind": kind, "reason": "radio"}, headers=AUTH)
        assert r.status_code == 200, (kind, r.text)
    page.goto(f"{handle.url}/#token={TOKEN}")
    page.wait_for_selector(READY, timeout=15_000)
    page.wait_for_selector(f'{row(ident)}[data-status="disposed"]')
    assert [b.inner_text() for b in page.locator(f"{row(ident)} .case-actions button").all()] == \
        ["Verify · 核查", "Cancel · 撤销"]
    page.click(f"{row(ident)} button[data-kind=verified]")
    page.fill("#step-by", "Li Wei")
    page.click("#step-ok")
    assert page.eval_on_selector("#step-why", "el => el.validity.valueMissing"), "a reason is required"
    assert page.locator("#step-dialog[open]").count() == 1, "so the dialog stays"
    page.fill("#step-why", "road clear on CCTV")
    page.click("#step-ok")
    page.wait_for_selector(f'{row(ident)}[data-status="verified"]')
    page.click(f"{row(ident)} button[data-kind=closed]")
    page.fill("#step-why", "all clear")
    assert page.input_value("#step-by") == "Li Wei", "the operator's name is remembered"
    page.click("#step-ok")
    page.wait_for_selector(row(ident), state="detached")
    assert page.locator("#case-empty").is_visible()
    assert httpx.get(f"{handle.url}/api/cases/{ident}").json()["status"] == "closed"
    page.wait_for_function("() => document.querySelector('#ledger-line').textContent.includes('closed 1')")
    assert page.errors == []


def test_without_a_token_the_case_buttons_are_disabled(page, twin):
    _, handle = twin
    ident = open_case(handle.url)
    page.goto(f"{handle.url}/")
    page.wait_for_selector(READY, timeout=15_000)
    page.wait_for_selector(row(ident))
    buttons = page.locator(f"{row(ident)} .case-actions button")
    assert buttons.count() >= 2 and all(b.is_disabled() for b in buttons.all())
    assert "Read-only" in buttons.first.get_attribute("title")


def test_the_ledger_csv_link_downloads_the_file(page, twin):
    _, handle = twin
    open_case(handle.url)
    page.goto(f"{handle.url}/#token={TOKEN}")
    page.wait_for_selector("#ledger-line a.csv")
    with page.expect_download() as got:
        page.click("#ledger-line a.csv")
    assert got.value.suggested_filename == "ledger-bund-2026-01-01.csv"
