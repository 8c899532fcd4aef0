"""Fixtures for the HTTP API tests: a real `LiveService` on the Bund at 10 m, driven without a broker.

The service is built as ``twin run`` builds it but never started: no broker, no threads. A
`Driver` plays the ingest thread: it applies real ingest batches to the core and runs ticks,
then calls ``service.listeners`` with each tick's report, exactly as the service does after a
live tick. Alerts, CAP messages, the store and its outbox are the real ones.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ingest.batch import Batch
from ingest.pipeline import batch_of
from twin.api import ApiConfig, create_app
from twin.district.sources import data_dir
from twin.live.core import CoreConfig, TickReport
from twin.live.service import LiveService, ServiceConfig, TwinClock

T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z
TOKEN = "test-token-0123456789"
CHEN_YI_SQUARE = (121.4855, 31.2405)  # on the Bund promenade, WGS84
LUJIAZUI = (121.5100, 31.2380)  # across the river, 1.8 km away
SQUARE_COUNTER = "crowd-bund-05"
"""The counter of Chen Yi Square (陈毅广场): the one the tests' evening crowd gathers at."""
SQUARE = "crowd:area:crowd-bund-05"
"""The key of Chen Yi Square's crowd alerts (`twin.alerting.units`): one alert per named place."""
NEIGHBOUR = "crowd:area:crowd-bund-04"
"""The Bank of China promenade north of the square: its polygon shares a row of cells with the square's, so the
square's crowd also raises an alert there (a cell two counter areas overlap is the first area's)."""
QUIET = 300.0
"""People per counter area away from the square, and on the square before the crowd arrives (far below blue)."""
CROWD = 40000.0
"""People on Chen Yi Square in the evening crowd: 5.9 person/m2, red (the promenade's row beside it red too)."""
REGISTRY = data_dir() / "bund" / "registry.geojson"


class Driver:
    """Feeds real batches and ticks to a service's core, as its ingest thread would."""

    def __init__(self, service: LiveService) -> None:
        self.service = service
        self.core = service.core
        self.counters = [d.id for d in service.registry.of_kind("crowd")]
        self.k = 0
        self.neighbour: str | None = None
        """The identifier of the Bank of China promenade's crowd alert (`raise_crowd_alert`)."""

    def crowd(self, t: float, count: float) -> None:
        """Every counter reports: Chen Yi Square's ``count``, the others ``count`` up to `QUIET`."""
        ids = np.array(self.counters, dtype=object)
        values = np.array([count if d == SQUARE_COUNTER else min(count, QUIET) for d in self.counters])
        self.core.on_batch(Batch.build(len(ids), device=ids, t=t, quantity="count", value=values))

    def position(self, device: str, t: float, lon: float, lat: float, speed: float = 4.0) -> None:
        self.core.on_batch(Batch.build(1, device=device, t=t, quantity="position", lon=lon, lat=lat,
                                       datum="CGCS2000", speed_kmh=speed, course_deg=90.0))

    def message(self, topic: str, payload: bytes, t: float) -> None:
        """One MQTT message through the service's real ingest checks, counters and decoders (no raw log)."""
        got = self.service.ingestor.process(topic, payload, t)
        if got is not None:
            self.service.ingestor.sink(batch_of([got]))

    def unit_ack(self, unit: str, alert: str, t: float, status: str = "ack") -> None:
        self.core.on_batch(Batch.build(1, device=unit, t=t, quantity=status, ref=alert))

    def tick(self, t: float) -> TickReport:
        """One live tick, then the service's listeners (what ``LiveService`` does after a logged tick)."""
        report = self.core.on_tick(t)
        self.service.last_report = report
        for listener in list(self.service.listeners):
            listener(report)
        return report

    def run(self, counts: list[float], positions: dict[str, tuple[float, float, float]] | None = None) -> list:
        """Ticks 10 s apart with the crowd counts and positions (lon, lat, speed [km h-1]) given; returns
        the alert events."""
        events = []
        for n in counts:
            t = T0 + 10 * self.k
            self.crowd(t, n)
            for dev, (lon, lat, speed) in (positions or {}).items():
                self.position(dev, t, lon, lat, speed)
            events += self.tick(t).events
            self.k += 1
        return events

    @property
    def t(self) -> float:
        """Time of the last tick. [unix s]"""
        return T0 + 10 * (self.k - 1)

    def raise_crowd_alert(self) -> str:
        """Evening crowd on Chen Yi Square until its crowd alert is raised; its identifier. The Bank of China
        promenade's alert raised with it (see `NEIGHBOUR`) is ``self.neighbour``."""
        events = self.run([QUIET] * 3 + [CROWD] * 12, {"unit-police-04": (*CHEN_YI_SQUARE, 4.0),
                                                      "unit-fire-05": (*LUJIAZUI, 4.0),
                                                      "veh-001": (121.4880, 31.2330, 40.0)})
        raised = {e.alert.place.key if e.alert.place else e.alert.hazard: e.alert.identifier
                  for e in events if e.kind == "raised"}
        assert len(raised) == sum(e.kind == "raised" for e in events), "one alert per place"
        assert set(raised) == {SQUARE, NEIGHBOUR}, [(e.kind, e.alert.hazard, e.alert.place) for e in events]
        self.neighbour = raised[NEIGHBOUR]
        return raised[SQUARE]

    def cell_inside(self, alert: str) -> tuple[float, float]:
        """lon, lat of a cell centre in the middle of an active alert's area."""
        cells = self.core.book.active[alert].cells
        row, col = np.divmod(cells[len(cells) // 2], self.core.state.grid.nx)
        lon, lat = self.core.state.grid.cell_centres_lonlat()
        return float(lon[row, col]), float(lat[row, col])


OBSERVED = ("crowd", "flood", "traffic", "rain")
"""The API tests follow one observed crowd alert; the crowd forecast's alerts are tested in tests/test_one_tick.py."""


def build_service(grid, state_dir) -> LiveService:
    """A live service over the Bund twin file (a broker URL it never connects to)."""
    cfg = ServiceConfig(broker="mqtt://127.0.0.1:9", grid=grid, registry=REGISTRY, state_dir=state_dir,
                        core=CoreConfig(tick_s=10.0, clear_s=20.0, alert_hazards=OBSERVED), clock=TwinClock(start=T0))
    return LiveService(cfg)


def close_service(service: LiveService) -> None:
    """Release what a never-started service holds (its log and store)."""
    service.raw_log.close()
    service.store.close()


@pytest.fixture
def service(bund_file, tmp_path):
    """A fresh live service, no tick yet."""
    svc = build_service(bund_file, tmp_path / "state")
    yield svc
    close_service(svc)


@pytest.fixture
def driver(service):
    return Driver(service)


@pytest.fixture(scope="module")
def scenario(bund_file, tmp_path_factory):
    """A service with Chen Yi Square's crowd alert active (and the Bank of China promenade's beside it),
    unit-police-04 on the square (it had the alert and acknowledged it), unit-fire-06 on scene in it,
    unit-fire-05 across the river, one vehicle; shared by the read-only tests of a module: (service, driver,
    the square's alert identifier)."""
    svc = build_service(bund_file, tmp_path_factory.mktemp("api-state") / "state")
    drv = Driver(svc)
    alert = drv.raise_crowd_alert()
    drv.unit_ack("unit-police-04", alert, drv.t + 1)
    drv.position("unit-fire-06", drv.t + 2, *drv.cell_inside(alert))
    drv.run([CROWD])
    yield svc, drv, alert
    close_service(svc)


def client_for(service: LiveService, **config) -> TestClient:
    """A test client of the API over ``service`` (use it in a ``with`` block: it runs the lifespan)."""
    return TestClient(create_app(service, ApiConfig(**config)))


@pytest.fixture(scope="module")
def api(scenario):
    """A running test client over the shared scenario, with a token."""
    svc, _, _ = scenario
    with client_for(svc, token=TOKEN) as c:
        yield c
