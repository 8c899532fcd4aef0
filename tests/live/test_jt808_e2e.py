"""Issue 20 end to end: ``twin run --jt808``'s gateway inside the live twin, through a real Mosquitto.

A police unit on Chen Yi Square, a fire unit across the river and a taxi report only over JT/T 808 (a 2013 and
a 2019 terminal, `scenarios.feeds.jt808.Terminal`); the crowd counters publish SenML. The twin locates all three
from their frames; when the square's crowd turns red, the police unit's terminal gets the alert as a 0x8300 text
in Chinese (level, hazard, place, action); the unit drives onto the square and the twin records it on scene from its
JT/T 808 reports; the unit across the river gets nothing. The frames the gateway published are in the twin's raw
log byte for byte.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

import pytest

from ingest.jt808.location import Location
from ingest.rawlog import read_log
from ingest.registry import load_registry, terminal_phone
from scenarios.feeds.jt808 import Terminal, TerminalSettings
from tests.live.conftest import REGISTRY, wait_for
from tests.live.test_service_e2e import CHEN_YI_SQUARE, LUJIAZUI, Feed, _service
from twin.cli.gateway import host_jt808, stop_jt808

pytestmark = pytest.mark.slow

MOVERS = {"unit-police-04": (CHEN_YI_SQUARE, 2013), "unit-fire-05": (LUJIAZUI, 2019),
          "veh-001": ((121.4880, 31.2360), 2013)}
"""Where each mover starts (lon, lat [degree]) and its terminal's JT/T 808 version."""
SQUARE_MIDDLE = (121.48603, 31.24052)
"""Inside the crowd counter's coverage of Chen Yi Square (where its alert is) [degree]."""


class Terminals:
    """The movers' terminals on an event loop of their own, each reporting its place every 0.5 s (whole seconds of
    the wall clock, as JT/T 808's BCD time has); ``places`` says where each is."""

    def __init__(self, host: str, port: int) -> None:
        registry = load_registry(REGISTRY)
        self.places = {dev: place for dev, (place, _) in MOVERS.items()}
        self.loop = asyncio.new_event_loop()
        self.terminals = {
            dev: Terminal(terminal_phone(registry.get(dev)), host, port,
                          settings=TerminalSettings(version=version, reply_timeout_s=2.0, heartbeat_s=5.0))
            for dev, (_, version) in MOVERS.items()}
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),), daemon=True)
        self.done = asyncio.Event()

    async def _main(self) -> None:
        tasks = [asyncio.create_task(t.run()) for t in self.terminals.values()]
        last = 0
        while not self.done.is_set():
            now = int(time.time())
            if now != last:
                for dev, (lon, lat) in self.places.items():
                    self.terminals[dev].offer(Location(lat=lat, lon=lon, speed_kmh=3.0, direction_deg=90,
                                                       time=float(now), fixed=True, gnss=frozenset({"BDS"})))
                last = now
            await asyncio.sleep(0.5)
        for t in self.terminals.values():
            t.stop()
        await asyncio.wait(tasks, timeout=5)

    def texts(self, dev: str) -> list[str]:
        return list(self.terminals[dev].texts)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.done.set)
        self.thread.join(10)


def _gateway_args(broker, tmp_path) -> argparse.Namespace:
    """``twin run --jt808 0``'s options."""
    return argparse.Namespace(jt808=0, jt808_host="127.0.0.1", jt808_allow=[], jt808_state=None,
                              state=tmp_path / "state", broker=broker.url, client_id="twin-e2e", protocol="5",
                              prefix="city/")


def test_units_with_jt808_terminals_get_their_alert_as_text_and_are_seen_on_scene(broker, observer, bund_file,
                                                                                      tmp_path):
    svc = _service(broker, bund_file, tmp_path)
    gateway = host_jt808(svc, _gateway_args(broker, tmp_path))
    terminals = Terminals("127.0.0.1", gateway.port)
    feed = Feed(observer)
    feed.units = {}  # positions come over JT/T 808 only
    terminals.thread.start()
    feed.thread.start()
    try:
        located = wait_for(lambda: {e["id"]: e for e in svc.core.located_entities()} if len(
            svc.core.located_entities()) >= 3 else None, 30, "the three movers located from their frames")
        assert located["unit-police-04"]["lon"] == pytest.approx(CHEN_YI_SQUARE[0], abs=1e-6)
        feed.count = 40000.0  # the evening crowd at Chen Yi Square: red
        text = wait_for(lambda: [t for t in terminals.texts("unit-police-04") if "人群密度预警" in t], 30,
                        "the crowd alert as text on the police terminal")[0]  # a forecast (预测) may come first
        assert text.startswith(("【红色预警】", "【橙色预警】")), text
        assert "地点：" in text and "措施：请立即限制人员进入" in text, text
        terminals.places["unit-police-04"] = SQUARE_MIDDLE  # it drives onto the square

        def arrived() -> list[str]:
            crowd = [a.identifier for a in svc.core.active_alerts() if a.hazard == "crowd"]
            return [a for a in crowd if any(r["unit_id"] == "unit-police-04" for r in svc.store.arrivals(a))]

        alert = wait_for(arrived, 20, "the police unit on scene from its JT/T 808 reports")[0]
        assert "陈毅广场" in svc.store.messages(alert)[0]["info"][0]["area"][0]["areaDesc"]
        assert terminals.texts("unit-fire-05") == []
        assert gateway.stats.texts_acked >= 1 and gateway.stats.refused == {}
    finally:
        feed.stop.set()
        feed.thread.join(5)
        terminals.stop()
        stop_jt808(gateway)
        svc.stop()
    published = gateway.stats.published
    frames = [rec.payload for rec in read_log(svc.raw_log.directory) if rec.topic.startswith("city/beidou/")]
    assert len(frames) == published > 10 and all(f[:1] == b"\x7e" for f in frames)
