"""The scenario report in a real browser (issue 21): at 1366 x 768 px the summary (question, answer, the three
largest effects) is on the first screen; printed (A4, Chromium's print emulation) the first page holds it.

The report is the synthetic run's of `tests.scenarios.test_report` (no simulation), opened from its folder."""

from __future__ import annotations

import re

import pytest

from tests.scenarios.test_report import write_report

pytestmark = pytest.mark.slow

FIRST_SCREEN = {"width": 1366, "height": 768}


@pytest.fixture(scope="module")
def report_file(tmp_path_factory):
    return write_report(tmp_path_factory.mktemp("report") / "synthetic")


def test_the_summary_is_on_the_first_screen(browser, report_file):
    context = browser.new_context(viewport=FIRST_SCREEN)
    page = context.new_page()
    try:
        page.goto(report_file.as_uri())
        for selector in (".question", "#answer", ".effect >> nth=2", ".warnings"):
            box = page.locator(selector).bounding_box()
            assert box is not None and box["height"] > 0, f"{selector} is shown"
            assert box["y"] + box["height"] <= FIRST_SCREEN["height"], f"{selector} ends within the first 768 px"
        assert page.locator(".effect").count() == 3
        answer = page.locator("#answer").inner_text()
        assert "Yan'an Rd E. Tunnel Puxi portal at 00:06" in answer and "Chen Yi Square from 23:20" in answer
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], "nothing runs off to the right"
    finally:
        context.close()


def test_printed_the_first_page_holds_the_summary(browser, report_file, tmp_path):
    context = browser.new_context(viewport=FIRST_SCREEN)
    page = context.new_page()
    try:
        page.goto(report_file.as_uri())
        page.emulate_media(media="print")
        pdf = page.pdf(format="A4", print_background=True)
        pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
        assert pages >= 3, "the summary, the charts and maps, the tables"
        # print layout, A4 at 96 px/in minus the page margins (@page 11 mm x 10 mm): the summary ends on page 1
        a4_px = (297 - 2 * 11) / 25.4 * 96
        page.set_viewport_size({"width": round((210 - 2 * 10) / 25.4 * 96), "height": round(a4_px)})
        bottom = page.evaluate("document.querySelector('.summary').getBoundingClientRect().bottom")
        assert bottom <= a4_px, f"the summary ({bottom:.0f} px) fits page 1 ({a4_px:.0f} px)"
        after = page.evaluate("getComputedStyle(document.querySelector('.summary')).breakAfter")
        assert after == "page", "the charts start on page 2"
        widths = page.evaluate("[...document.querySelectorAll('table')].map(t => t.scrollWidth <= t.parentElement"
                               ".clientWidth + 1)")
        assert all(widths), "no table is cut at the page's edge"
    finally:
        context.close()
