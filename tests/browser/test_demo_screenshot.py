"""``twin demo --http 0`` serves the dashboard, and ``screenshot.py`` (which makes the README's picture)
works: the same code, at double speed, into ``tests/browser/artifacts/``."""

from __future__ import annotations

import pytest

from tests.browser.conftest import ARTIFACTS, report
from tests.browser.screenshot import take_demo_screenshot

pytestmark = pytest.mark.slow


def test_the_readme_screenshot_is_taken_during_a_demo_run(browser, bund_file):
    out = ARTIFACTS / "demo-dashboard.png"
    shot = take_demo_screenshot(out, speed=60.0, duration=150.0, grid=bund_file, min_alerts=3, browser=browser,
                                enough=3)
    assert shot.alerts >= 3
    assert shot.units >= 40, "the demo's vehicles and field units are on the map"
    assert out.stat().st_size > 50_000
    report(f"demo screenshot: {shot.alerts} active alerts, {shot.units} units at {shot.twin_time}",
           demo_screenshot_alerts=shot.alerts)
