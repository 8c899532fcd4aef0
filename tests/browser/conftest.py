"""Browser tests: Playwright's sync API driving Debian's Chromium (docs/maintainers/recipes.md 1; no browser
download).

``.ci/run`` installs ``/usr/bin/chromium``; without it (or without playwright) these tests are
skipped, saying why. Chromium runs headless with every name but 127.0.0.1 unresolvable
(`tests.browser.chromium`), so a page that tried to load anything from the internet would fail
visibly instead of quietly working.

Screenshots and measured figures go to ``tests/browser/artifacts/`` (ignored by git); the figures are
also shown at the end of the pytest run (`pytest_terminal_summary`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.browser.chromium import CHROMIUM, VIEWPORT, launch_chromium
from twin.district.sources import data_dir
from twin.live.core import CoreConfig
from twin.live.service import LiveService, ServiceConfig, TwinClock

ARTIFACTS = Path(__file__).parent / "artifacts"
REGISTRY = data_dir() / "bund" / "registry.geojson"
TOKEN = "browser-test-token-0123"

_figures: list[str] = []


def report(line: str, **figures: object) -> None:
    """Keep a line for the end-of-run summary and its figures in ``artifacts/figures.json``."""
    _figures.append(line)
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "figures.json"
    known = json.loads(path.read_text()) if path.is_file() else {}
    known.update(figures)
    path.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")


def pytest_terminal_summary(terminalreporter) -> None:
    if _figures:
        terminalreporter.section("browser figures")
        for line in _figures:
            terminalreporter.write_line(line)


@pytest.fixture(scope="package")
def browser():
    """One headless Chromium for the browser tests. Package scope, not session: Playwright's sync API runs an asyncio
    loop in the main thread while it is open, and tests after these that run their own (``asyncio.run``) need it
    gone."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[dev])")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install --no-install-recommends chromium (.ci/run does)")
    with sync_api.sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page (own storage, so no token or operator name carries over) with page errors collected."""
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    yield pg
    context.close()


def service_config(grid: Path, state_dir: Path, broker_url: str, tick_s: float, **extra) -> ServiceConfig:
    """The live service on the Bund at 10 m, ticking every ``tick_s`` and cancelling after two clear ticks."""
    return ServiceConfig(broker=broker_url, grid=grid, registry=REGISTRY, state_dir=state_dir, tick_s=tick_s,
                         core=CoreConfig(tick_s=tick_s, clear_s=2 * tick_s), **extra)


@pytest.fixture(scope="session")
def idle_service(bund_file, tmp_path_factory):
    """A live service that is never started (no broker, no ticker) after one tick of its core, so its
    live and risk layers exist: the page gets a quiet twin and the test feeds the page events itself.
    Shared by the session's tests: they only read it (alerts reach the page through its test hook)."""
    clock = TwinClock(start=1_767_189_600.0)  # 2025-12-31 22:00 in Shanghai
    state_dir = tmp_path_factory.mktemp("idle") / "state"
    svc = LiveService(service_config(bund_file, state_dir, "mqtt://127.0.0.1:9", 1.0, clock=clock))
    svc.core.on_tick(clock())
    yield svc
    svc.raw_log.close()
    svc.store.close()
