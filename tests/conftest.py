"""Shared fixtures, built once per test session and only read by the tests that use them:

* ``bund_sources``: the bundled Bund district's source data;
* ``bund10``: the Bund twin at 10 m, (dataset, buildings) (about 8 s to build);
* ``bund_file``: that twin written once as a NetCDF file (with its buildings beside it), for the live
  service, the API, the browser tests, ``twin demo --grid`` and scenario runs;
* ``shared_dem``: the SRTM GL3 test tile in tests/data;
* ``interrupted_demo``: ``twin demo``'s first run after installing (empty numba cache), stopped with Ctrl-C, which
  tests/live/test_demo_e2e.py judges (`tests.support.demo.InterruptedDemo`). Its kernels compile for 40-60 s on one
  core, so a session that runs that test starts it with its first test (``_interrupted_demo_early``): the compile
  takes the core the test process leaves idle instead of a minute of the suite's wall time.

Before each test module the heap is collected and frozen (``_settled_heap``): a test process accumulates over a
million objects, and Python's full garbage collections over them (about 1 s each) would land inside the live
services' tick-gap measurements and cost the suite minutes; frozen, they are walked no more, as `twin run` does for
its own heap (`twin.live.warmup.settle_heap`).

Test data comes only from inside the repository (tests/data).
"""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module", autouse=True)
def _settled_heap():
    """Collect and freeze what earlier modules left (see the module docstring)."""
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session")
def bund_sources():
    from twin.district.sources import bundled_district, read_district

    return read_district(bundled_district("bund"))


@pytest.fixture(scope="session")
def bund10(bund_sources):
    """The Bund at 10 m: (dataset, buildings)."""
    from twin.district.build import twin_from_sources

    return twin_from_sources(bund_sources, 10.0)


@pytest.fixture(scope="session")
def bund_file(bund10, tmp_path_factory):
    """The Bund at 10 m as a twin file (read-only: services, the demo and scenarios only read it)."""
    from twin.district.dataset import save_twin

    ds, buildings = bund10
    return save_twin(tmp_path_factory.mktemp("grid") / "bund10.nc", ds, buildings)


@pytest.fixture(scope="session")
def bund_network(bund10, bund_sources):
    """The Bund's directed road links on the 10 m grid (`twin.district.roads`), in memory: not written beside
    ``bund_file``, so the services that tests start on that file keep running without links unless a test asks."""
    from twin.district.dataset import grid_of
    from twin.district.roads import road_network_from_sources

    return road_network_from_sources(bund_sources, grid_of(bund10[0]))


@pytest.fixture(scope="session")
def shared_dem():
    """The SRTM GL3 tile in tests/data/dem (lon/lat, around Nederland, Colorado; tests/data/PROVENANCE.md)."""
    path = DATA / "dem" / "srtmgl3_nederland_co_144x144.asc"
    assert path.is_file(), f"{path} is missing from the checkout"
    return path


INTERRUPTED_DEMO_TEST = ("test_demo_e2e.py", "test_ctrl_c_stops_the_demo_cleanly_with_a_summary")
"""(file name, test name) of the test that judges ``interrupted_demo``."""


@pytest.fixture(scope="session")
def interrupted_demo(bund_file, tmp_path_factory):
    """``twin demo`` on the session's Bund twin with an empty numba cache, interrupted with Ctrl-C once its first
    crowd alert is out, running in the background (`tests.support.demo.InterruptedDemo`)."""
    from tests.support.demo import InterruptedDemo

    demo = InterruptedDemo(bund_file, tmp_path_factory.mktemp("demo-interrupted")).start()
    yield demo
    demo.stop()


@pytest.fixture(scope="session", autouse=True)
def _interrupted_demo_early(request):
    """Start ``interrupted_demo`` with the session's first test when the session runs its test later on (a run of
    tests/live/test_demo_e2e.py alone keeps the order of old: the demo starts when its test asks for it, and does
    not compile beside the module's other demo run)."""
    items = request.session.items
    wanted = any((item.path.name, getattr(item, "originalname", item.name)) == INTERRUPTED_DEMO_TEST
                 for item in items)
    if wanted and items[0].path.name != INTERRUPTED_DEMO_TEST[0]:
        request.getfixturevalue("interrupted_demo")
