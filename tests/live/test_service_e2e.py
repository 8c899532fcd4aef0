"""The live service end to end through a real Mosquitto, driven only by the MQTT contract."""

from __future__ import annotations

import threading
import time

import pytest

from ingest.batch import Batch
from ingest.decoders.nmea import encode_nmea
from ingest.decoders.senml import encode_senml
from ingest.registry import load_registry
from ingest.rejection import payload_digest
from tests.live.conftest import REGISTRY, Observer, wait_for
from tests.support.waits import TickWatch
from twin.alerting import cap
from twin.alerting.cap import info_block
from twin.live.core import CoreConfig
from twin.live.service import LiveService, ServiceConfig

pytestmark = pytest.mark.slow

CHEN_YI_SQUARE = (121.4855, 31.2405)
LUJIAZUI = (121.5100, 31.2380)


def _service(broker, bund_file, tmp_path, tick=0.2, client_id="twin-e2e", clear_s=None, **extra):
    """A started live service on the Bund at 10 m (``extra``: more ServiceConfig fields, e.g. clock, db)."""
    cfg = ServiceConfig(broker=broker.url, grid=bund_file, registry=REGISTRY, state_dir=tmp_path / "state",
                        tick_s=tick, client_id=client_id, snapshot_every_s=1.0,
                        core=CoreConfig(tick_s=tick, clear_s=2 * tick if clear_s is None else clear_s), **extra)
    svc = LiveService(cfg)
    assert svc.start(10)
    return svc


class Feed:
    """Publishes crowd counts and unit positions as NMEA with BeiDou talkers: ``count`` at Chen Yi Square's
    counter, 200 at the others (one crowd alert per place, issue 16)."""

    def __init__(self, observer: Observer) -> None:
        self.obs = observer
        self.crowd = [d.id for d in load_registry(REGISTRY).of_kind("crowd")]
        self.count = 200.0
        self.units = {"unit-police-04": CHEN_YI_SQUARE, "unit-fire-05": LUJIAZUI}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        k = 0
        while not self.stop.is_set():
            t = round(time.time(), 3)
            for d in self.crowd:
                b = Batch.build(1, device=d, t=t, quantity="count", value=self.count if d == "crowd-bund-05" else 200.0)
                self.obs.publish(f"city/sensors/crowd/{d}", encode_senml(b))
            for i, (u, (lon, lat)) in enumerate(self.units.items()):
                b = Batch.build(1, device=u, t=float(int(t)), lon=lon, lat=lat, speed_kmh=3.0, course_deg=90.0,
                                fix=1, hdop=0.9, quantity="position")
                talker = ("GB", "BD")[(i + k) % 2]
                self.obs.publish(f"city/beidou/{u}", encode_nmea(b, talker=talker))
            k += 1
            self.stop.wait(0.2)


def test_crowd_alert_lifecycle_through_the_broker(broker, observer, bund_file, tmp_path):
    svc = _service(broker, bund_file, tmp_path, receiver="process")  # twin run's receiver: a child process
    feed = Feed(observer)
    ticks = TickWatch(svc)
    feed.thread.start()
    try:
        # the quiet evening first: both units located (so routing can choose), then two ticks on it
        wait_for(lambda: svc.core.status()["units_tracked"] >= 2, 20, "both units located by the twin")
        ticks.next(2, 10, "two ticks on the quiet crowd")
        feed.count = 40000.0  # the evening crowd arrives at Chen Yi Square (5.9 person/m2)
        alerts = wait_for(lambda: [m for m in observer.json_on("city/alerts/") if m["msgType"] == "Alert"
                                   and info_block(m, "en-US")["category"] == "Safety"], 30, "a crowd alert")
        alert = alerts[0]
        assert cap.problems(alert) == []
        info = info_block(alert, "en-US")
        params = {p["valueName"]: p["value"] for p in info["parameter"]}
        assert info["severity"] == cap.LEVEL_SEVERITY[list(cap.LEVEL_COLOUR.values()).index(params["warningLevel"]) + 1]
        poly = [tuple(map(float, p.split(","))) for p in info["area"][0]["polygon"][0].split()]
        lats, lons = zip(*poly, strict=True)
        assert min(lats) > 31.22 and max(lats) < 31.26 and min(lons) > 121.47 and max(lons) < 121.53
        assert all(g["value"].startswith("N51H") for g in info["area"][0]["geocode"])
        ident = alert["identifier"]
        # routed to the unit on the promenade, not to the one across the river
        wait_for(lambda: observer.on("city/units/unit-police-04/alerts"), 10, "the alert at unit-police-04")
        assert not observer.on("city/units/unit-fire-05/alerts")
        # the unit acknowledges
        observer.publish("city/units/unit-police-04/ack",
                         f'{{"alert":"{ident}","status":"ack","t":{time.time():.0f}}}'.encode())
        wait_for(lambda: svc.store.acks(ident), 10, "the stored ack")
        # the crowd disperses: cancelled after the clear delay, then the retained message is removed
        feed.count = 100.0
        cancel = wait_for(lambda: [m for m in observer.json_on(f"city/alerts/{ident}") if m["msgType"] == "Cancel"],
                          60, "the cancel")[0]
        assert ident in cancel["references"]
        wait_for(lambda: observer.on(f"city/alerts/{ident}")[-1] == b"", 10, "the retained message removed")
        assert any(b'"Cancel"' in p for p in observer.on("city/units/unit-police-04/alerts"))
        late = Observer(broker.port, f"city/alerts/{ident}")
        late.sync()  # a retained message would have come before the marker
        assert late.on(f"city/alerts/{ident}") == [], "no retained alert left behind"
        late.close()
    finally:
        feed.stop.set()
        feed.thread.join(5)
        svc.stop()


def test_bad_messages_go_to_the_dead_letter_topic_and_the_counters(broker, observer, bund_file, tmp_path):
    svc = _service(broker, bund_file, tmp_path)
    try:
        now = time.time()
        observer.publish("city/sensors/crowd/crowd-bund-01", b"\x00garbage")
        observer.publish("city/sensors/crowd/nobody", encode_senml(
            Batch.build(1, device="nobody", t=now, quantity="count", value=1.0)))
        outside = (b'{"id":"unit-police-01","t":%d,"lon":121.7,"lat":31.1,"speed_kmh":10,"course":0,"crs":"WGS84"}'
                   % int(now))
        observer.publish("city/beidou/unit-police-01", outside)
        letters = wait_for(lambda: len(observer.json_on("city/deadletter")) >= 3 \
                           and observer.json_on("city/deadletter"),
                           20, "three dead letters")
        reasons = {m["topic"].split("/")[-1]: m["reason"] for m in letters}
        assert reasons == {"crowd-bund-01": "bad_syntax", "nobody": "unknown_device", "unit-police-01": "outside_grid"}
        refused = next(m for m in letters if m["reason"] == "outside_grid")
        assert refused["digest"] == payload_digest(outside), "the dead letter names the raw log's record"
        status = wait_for(lambda: [s for s in observer.json_on("city/twin/status")
                                   if sum(s["rejected"].values()) >= 3], 10, "the status counters")[-1]
        assert status["rejected"]["bad_syntax"] == 1 and status["rejected"]["unknown_device"] == 1
        assert status["rejected"]["outside_grid"] == 1
        assert status["received"] == status["accepted"] + status["duplicates"] + sum(status["rejected"].values())
        for key in ("t", "uptime_s", "received", "accepted", "duplicates", "devices_seen", "units_tracked",
                    "alerts_active", "tick_ms", "lag_ms"):
            assert key in status
    finally:
        svc.stop()


def test_the_same_service_runs_on_the_embedded_mqtt_311_broker(bund_file, tmp_path):
    import paho.mqtt.client as mqtt

    from twin.live.broker import EmbeddedBroker

    with EmbeddedBroker() as embedded:
        cfg = ServiceConfig(broker=embedded.url, grid=bund_file, registry=REGISTRY, state_dir=tmp_path / "state",
                            tick_s=0.2, client_id="twin-amqtt", protocol="3.1.1", core=CoreConfig(tick_s=0.2))
        svc = LiveService(cfg)
        assert svc.start(10)
        observer = Observer(embedded.port, protocol=mqtt.MQTTv311)
        feed = Feed(observer)
        feed.count = 9000.0
        feed.thread.start()
        try:
            wait_for(lambda: [m for m in observer.json_on("city/alerts/") if m["msgType"] == "Alert"], 30,
                     "a crowd alert through amqtt")
            wait_for(lambda: observer.on("city/units/unit-police-04/alerts"), 10, "the unit's copy")
            assert wait_for(lambda: observer.json_on("city/twin/status"), 10, "status")[-1]["received"] > 0
        finally:
            feed.stop.set()
            feed.thread.join(5)
            observer.close()
            svc.stop()


def test_a_compressed_clock_runs_ticks_and_receive_times_in_twin_time(broker, observer, bund_file, tmp_path):
    import numpy as np

    from twin.live.service import TwinClock

    clock = TwinClock(speed=30.0)
    svc = _service(broker, bund_file, tmp_path, tick=10.0, client_id="twin-fast", clock=clock)
    ticks = TickWatch(svc)
    try:
        # 12 ticks of 10 twin seconds take 4 wall seconds at 30x (2 minutes if they ran in wall time); 60x (167 ms a
        # tick) left a Bund tick of 65-80 ms too little room on a slower 2-core machine, where every other tick
        # was skipped
        reports = ticks.next(12, 30, "12 ticks of 10 twin seconds, 4 wall seconds at 30x")
        gaps = np.diff([r.t for r in reports])
        # ticks come every 10 twin s (333 ms of wall time; in wall time they would be 300 twin s apart); on a loaded
        # machine a tick that takes longer than that makes the ticker skip the next one (`ticks_skipped`), and a late
        # ticker catches up, so single gaps vary: the median is the period
        assert 7.0 <= float(np.median(gaps)) <= 13.0 and gaps.max() < 100.0, gaps.round(1).tolist()
        t = clock()  # a reading stamped in twin time is neither early nor late for the twin
        observer.publish("city/sensors/crowd/crowd-bund-01", encode_senml(
            Batch.build(1, device="crowd-bund-01", t=t, quantity="count", value=123.0)))
        wait_for(lambda: svc.ingestor.metrics.accepted >= 1, 10, "the reading accepted")
        assert svc.ingestor.metrics.snapshot()["rejected"]["time_skew"] == 0
        value, when = svc.core.state.readings["crowd"].latest("count")
        assert value[0] == 123.0 and abs(when[0] - t) < 1e-3
    finally:
        svc.stop()


def test_the_service_stores_alerts_in_postgresql(broker, observer, bund_file, tmp_path):
    import uuid

    import psycopg

    from tests.test_store import PG_URL

    name = f"citytwin_svc_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    svc = _service(broker, bund_file, tmp_path, client_id="twin-pg", db=url)
    feed = Feed(observer)
    feed.count = 9000.0
    feed.thread.start()
    try:
        msg = wait_for(lambda: [m for m in observer.json_on("city/alerts/") if m["msgType"] == "Alert"], 30,
                       "a crowd alert")[0]
    finally:
        feed.stop.set()
        feed.thread.join(5)
        svc.stop()
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT identifier FROM messages WHERE msg_type = 'Alert'").fetchall()
        pending = conn.execute("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL").fetchone()[0]
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    assert (msg["identifier"],) in stored
    assert pending == 0, "everything stored was published and confirmed"


def test_a_five_year_storm_over_mqtt_floods_the_underpasses_first(broker, observer, bund_file, tmp_path):
    """Rain gauges at the Shanghai 5-year, 60-minute rate (58.1 mm/h, docs/science/flood.md 2.2) in compressed
    time."""
    import numpy as np

    from twin.alerting.store import Store
    from twin.district.dataset import load_twin
    from twin.live.service import TwinClock

    clock = TwinClock(speed=60.0)
    svc = _service(broker, bund_file, tmp_path, tick=10.0, client_id="twin-storm", clock=clock)
    gauges = [d.id for d in load_registry(REGISTRY).of_kind("rain")]
    stop = threading.Event()

    def rain():
        while not stop.is_set():
            t = clock()
            for g in gauges:
                observer.publish(f"city/sensors/rain/{g}", encode_senml(
                    Batch.build(1, device=g, t=t, quantity="rain", value=58.1)))
            stop.wait(0.5)  # pacing the gauges: a reading every half wall second

    thread = threading.Thread(target=rain, daemon=True)
    thread.start()
    try:
        first = wait_for(lambda: [m for m in observer.json_on("city/alerts/") if m["msgType"] == "Alert"
                                  and info_block(m, "en-US")["event"] == "Urban waterlogging warning"], 90,
                         "a waterlogging alert")
    finally:
        stop.set()
        thread.join(5)
        svc.stop()
    static, _ = load_twin(bund_file)
    under = static["underpass"].values.ravel() == 1
    first_ids = {m["identifier"] for m in first}
    store = Store.open(tmp_path / "state" / "alerts.db")
    first_cells = [np.array(a["cells"]) for a in store.alerts() if a["identifier"] in first_ids]
    store.close()
    assert first_cells and all(under[c].any() for c in first_cells), "the first flooded cells are underpasses"


def test_a_silent_sensor_turns_cells_to_no_data_without_clearing_over_mqtt(broker, observer, bund_file, tmp_path):
    from twin.live.service import TwinClock

    clock = TwinClock(speed=30.0)
    svc = _service(broker, bund_file, tmp_path, tick=5.0, client_id="twin-silent", clock=clock)
    crowd = [d.id for d in load_registry(REGISTRY).of_kind("crowd")]
    ticks = TickWatch(svc)
    try:
        for _ in range(12):  # a dense crowd for a while, then every counter falls silent
            t = clock()
            for d in crowd:
                observer.publish(f"city/sensors/crowd/{d}", encode_senml(
                    Batch.build(1, device=d, t=t, quantity="count", value=9000.0)))
            time.sleep(0.3)  # deliberate: pacing the counters, 9 twin seconds apart at 30x
        ident = wait_for(lambda: [m["identifier"] for m in observer.json_on("city/alerts/")
                                  if m["msgType"] == "Alert"], 30, "a crowd alert")[0]
        # the 180 s staleness limit passes: the counters' cells turn to no data
        wait_for(lambda: (svc.core.models.layers["level_nodata"].values & 1).any(), 60,
                 "the silent counters' cells to turn to no data")
        # and the silence goes on to 6 twin minutes (twice the limit), tick by tick
        ticks.until(lambda r: r.t >= t + 360.0, 60, "a tick 6 twin minutes into the silence (12 wall s at 30x)")
        layers = svc.core.models.layers
        silent = (layers["level_nodata"].values & 1) == 1
        assert silent.any(), "the silent counters' cells are no data"
        assert (layers["level_crowd"].values[silent] > 0).any(), "and keep the level they had"
        assert not [m for m in observer.json_on(f"city/alerts/{ident}") if m["msgType"] == "Cancel"]
        assert svc.core.book.active, "silence neither raises nor clears"
    finally:
        svc.stop()
