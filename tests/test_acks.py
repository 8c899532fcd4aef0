"""Acknowledgements (issue 13): an operator's is logged in the raw log before it is applied, so a crash
and a restart keep it; a second one says it was already made; the status carries the alarms.

The service here is never started (no broker): `LogFeed` plays the broker and the ingest thread. It puts
MQTT messages and ticks on the service's ingest queue and runs the ingest loop, so every record goes
through the raw log as in a live run. A crash is a service dropped without `stop()`, so no final
snapshot is written. A fresh service on the same state folder then restores the last snapshot and
replays the log.
"""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pytest

from ingest.batch import Batch
from ingest.decoders.senml import encode_senml
from ingest.pipeline import control_message
from ingest.rawlog import read_log
from ingest.transport.client import InboundMessage
from tests.api.conftest import TOKEN, client_for
from tests.support.waits import wait_until as wait_for
from twin.alerting.compose import acknowledged_by
from twin.district.sources import data_dir
from twin.live.core import CoreConfig
from twin.live.query import AckTimeoutError, LiveQuery
from twin.live.service import ACK_TOPIC, TICK_TOPIC, LiveService, ServiceConfig, TwinClock

T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z
REGISTRY = data_dir() / "bund" / "registry.geojson"
CHEN_YI_SQUARE = (121.4855, 31.2405)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def build(grid, state_dir) -> LiveService:
    """A live service as ``twin run`` builds it (a broker it never connects to), snapshots every 60 s."""
    return LiveService(ServiceConfig(broker="mqtt://127.0.0.1:9", grid=grid, registry=REGISTRY, state_dir=state_dir,
                                     tick_s=10.0, core=CoreConfig(tick_s=10.0, clear_s=20.0),
                                     clock=TwinClock(start=T0)))


def crash(service: LiveService) -> None:
    """Drop a service without stopping it (no final snapshot), releasing only its files."""
    service.raw_log.close()
    service.store.close()


SQUARE = "crowd-bund-05"
"""Chen Yi Square's counter."""


class LogFeed:
    """MQTT messages and ticks through a never-started service's ingest queue, raw log and ingest loop."""

    def __init__(self, service: LiveService, k: int = 0) -> None:
        self.service, self.k = service, k
        self.counters = [d.id for d in service.registry.of_kind("crowd")]

    def put(self, topic: str, payload: bytes, t: float) -> None:
        self.service.transport.queue.put(InboundMessage(topic, payload, 0, 0, False, False, t, 0))

    def drain(self) -> None:
        while self.service.ingestor.run_once(0.0):
            pass

    def run(self, counts: list[float], units: dict[str, tuple[float, float]] | None = None) -> None:
        """Ticks 10 s apart, each after the crowd counts (and unit positions) of its time: the count at Chen Yi
        Square's counter, 300 at the others (one crowd alert per place, issue 16)."""
        for n in counts:
            t = T0 + 10 * self.k
            for d in self.counters:
                value = float(n) if d == SQUARE else 300.0
                self.put(f"city/sensors/crowd/{d}", encode_senml(Batch.build(1, device=d, t=t, quantity="count",
                                                                             value=value)), t)
            for u, (lon, lat) in (units or {}).items():
                self.put(f"city/beidou/{u}", json.dumps({"id": u, "t": t, "lon": lon, "lat": lat}).encode(), t)
            self.service.transport.queue.put(control_message(TICK_TOPIC, f"{t:.3f}".encode(), t))
            self.drain()
            self.k += 1

    def raise_crowd_alert(self) -> str:
        self.run([300] * 3 + [20000] * 12, {"unit-police-04": CHEN_YI_SQUARE})
        [ident] = [i for i, a in self.service.core.book.active.items()
                   if a.hazard == "crowd" and a.place is not None and a.place.key == f"crowd:area:{SQUARE}"]
        return ident


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state"


def test_an_operators_ack_survives_a_kill_and_the_next_update_still_lists_it(bund_file, state):
    first = build(bund_file, state)
    feed = LogFeed(first)
    ident = feed.raise_crowd_alert()
    snapshot_t = first._last_snapshot_t
    event = LiveQuery(first).acknowledge(ident, "Li Wei", "stewards sent")
    assert event.message["identifier"] == f"{ident}.ack1" and acknowledged_by(event.message) == ["Li Wei"]
    logged = [json.loads(r.payload) for r in read_log(state / "rawlog") if r.topic == ACK_TOPIC]
    assert [(d["alert"], d["operator"], d["note"], d["t"]) for d in logged] == [(ident, "Li Wei", "stewards sent",
                                                                                None)], "in the log first"
    assert snapshot_t < event.t, "the last snapshot is older than the acknowledgement: only the log has it"
    crash(first)

    second = build(bund_file, state)
    try:
        assert second.restored and second.replayed > 0
        assert second.core.book.active[ident].acknowledged_by == ["Li Wei"], "replayed from the raw log"
        stored = [m["identifier"] for m in second.store.messages(ident)]
        outbox = second.store.outbox_depth()
        # the same operator again: nothing new, and the answer says so
        assert LiveQuery(second).acknowledge(ident, "Li Wei") is None
        with client_for(second, token=TOKEN) as c:
            again = c.post(f"/api/alerts/{ident}/ack", json={"operator": "Li Wei"}, headers=AUTH)
            assert again.status_code == 200, again.json()
            body = again.json()
            assert body["already"] is True and body["message"] is None and body["t"] == event.t
        assert [m["identifier"] for m in second.store.messages(ident)] == stored, "no second Update"
        assert second.store.outbox_depth() == outbox, "nothing more to publish"
        # the crowd disperses: the next Update (and every later message) still lists the operator
        later: list[dict] = []
        for _ in range(60):
            LogFeed(second, feed.k).run([100])
            feed.k += 1
            later = second.store.messages(ident)[len(stored):]
            if later:
                break
        assert later and later[0]["msgType"] == "Update", [m["identifier"] for m in later]
        assert acknowledged_by(later[0]) == ["Li Wei"], "acknowledgedBy survives the crash"
    finally:
        crash(second)


def test_an_ack_not_applied_in_time_times_out_clearly_and_is_applied_later(bund_file, state, monkeypatch):
    service = build(bund_file, state)
    try:
        feed = LogFeed(service)
        ident = feed.raise_crowd_alert()
        query = LiveQuery(service)
        with monkeypatch.context() as stalled:  # an ingest loop that does not get to the record
            stalled.setattr(service.ingestor, "run_once", lambda poll_s=None: 0)
            with pytest.raises(AckTimeoutError, match=r"not applied within 0\.2 s .* stays queued"):
                query.acknowledge(ident, "Zhao Min", timeout_s=0.2)
            stalled.setattr("twin.live.service.ACK_TIMEOUT_S", 0.2)
            with client_for(service, token=TOKEN) as c:
                r = c.post(f"/api/alerts/{ident}/ack", json={"operator": "Zhao Min"}, headers=AUTH)
            assert r.status_code == 503 and r.json()["error"] == "ack_timeout" and r.headers["retry-after"] == "5"
            assert service.core.book.active[ident].acknowledged_by == []
        feed.drain()  # the ingest loop catches up: both requests are applied in order, the second is "already"
        assert service.core.book.active[ident].acknowledged_by == ["Zhao Min"]
        assert [m["identifier"] for m in service.store.messages(ident)][-1] == f"{ident}.ack1"
        with client_for(service, token=TOKEN) as c:
            r = c.post(f"/api/alerts/nothing-{ident}/ack", json={"operator": "Zhao Min"}, headers=AUTH)
        assert r.status_code == 404, "an unknown alert is answered at once, nothing logged"
        assert [json.loads(r.payload)["alert"] for r in read_log(state / "rawlog") if r.topic == ACK_TOPIC] == [
            ident, ident]
    finally:
        crash(service)


def test_refused_unit_acks_are_counted_and_the_status_carries_the_alarms(bund_file, state, monkeypatch):
    service = build(bund_file, state)
    try:
        feed = LogFeed(service)
        ident = feed.raise_crowd_alert()
        t = T0 + 10 * feed.k
        for unit, alert in [("unit-fire-05", ident), ("unit-police-04", f"{ident}.update1"),
                            ("unit-police-04", "citytwin.bund.crowd.nothing"), ("unit-police-04", ident)]:
            feed.put(f"city/units/{unit}/ack", json.dumps({"alert": alert, "status": "ack", "t": t}).encode(), t)
        feed.drain()
        status = service.status()
        assert (status["rejected"]["not_sent"], status["rejected"]["unknown_alert"]) == (1, 2), "refused acks counted"
        assert status["received"] == status["accepted"] + status["duplicates"] + sum(status["rejected"].values())
        assert [a["actor"] for a in service.store.acks(ident)] == ["unit-police-04"]
        assert service.core.refused_acks == {"not_sent": 1, "unknown_alert": 2}
        assert status["alarms"] == {"session_taken_over": 0, "session_lost": 0, "tls_failures": 0,
                                    "deadletters_dropped": 0, "ticks_skipped": 0}
        monkeypatch.setattr(service.transport, "stats", SimpleNamespace(session_taken_over=3))
        assert service.status()["alarms"]["session_taken_over"] == 3
    finally:
        crash(service)


def test_a_twin_slower_than_its_clock_skips_ticks_and_says_so(bund_file, state):
    """Liveness: the ticker queues a tick only when the last one was handled, so a core slower than the clock
    builds no backlog of ticks (a stop would have to drain it); the skipped ticks are an operator alarm."""
    service = LiveService(ServiceConfig(broker="mqtt://127.0.0.1:9", grid=bund_file, registry=REGISTRY,
                                        state_dir=state, tick_s=10.0, core=CoreConfig(tick_s=10.0),
                                        clock=TwinClock(speed=500.0, start=T0)))  # a tick every 20 ms of wall time
    ticker = threading.Thread(target=service._ticker, daemon=True)
    try:
        ticker.start()
        wait_for(lambda: service.ticks_skipped >= 5, 10, "ticks skipped while the first waits")
        assert service.ingestor.controls.qsize() == 1, "one tick waits, no backlog"
        assert service.ingestor.run_once(0.0) == 1  # the core handles it: the ticker may queue the next
        wait_for(lambda: service.ingestor.controls.qsize() == 1, 10, "the next tick")
        assert service.status()["alarms"]["ticks_skipped"] == service.ticks_skipped
    finally:
        service._tick_stop.set()
        ticker.join(5)
        crash(service)
