"""The city tier end to end over the real Mosquitto at 127.0.0.1:1883: two district CAP alerts either side of the
Huangpu-Hongkou border become one retained city alert, routed to a field unit across the river in Pudong (and not
to the units the district twins reach themselves), and cancelling both cancels it; the clock ticks into every
partition; the city API shows it. Plus the command line's refusals.

Every test uses a topic prefix of its own. "No more messages" is an event: an observer publishes a marker on its
own topic and waits for it (the broker delivers a client's messages in order, retained ones of a subscription
first).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import paho.mqtt.client as mqtt
import pytest
import shapely

from ingest.stream import MemoryStream, tick_time
from tests.city.test_merge import T0, district_message
from tests.support.checkout import checkout_env
from tests.support.mqtt import REPO, broker_listening, end_session
from tests.support.waits import wait_until
from twin.city.boundaries import lonlat, projected, read_boundaries
from twin.city.tier import TierConfig, tier_from_city
from twin.cli.city_tier import main as city_tier_main

BROKER = "mqtt://127.0.0.1:1883"
broker_here = pytest.mark.skipif(not broker_listening(), reason="no MQTT broker on 127.0.0.1:1883 (CI starts one)")


class Observer:
    """Subscribes to a topic filter and keeps (topic, payload, retained) of what arrives; ``sync`` waits for a marker
    of its own, after which everything the broker held for it before has arrived."""

    def __init__(self, pattern: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.sync_topic = f"citytwin-test/sync/{uuid.uuid4().hex}"
        self.synced: set[bytes] = set()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(pattern, 1), (self.sync_topic, 1)])
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        assert subscribed.wait(10), "the observer's subscription was not acknowledged"

    def _on_message(self, c, u, m) -> None:
        with self.cond:
            if m.topic == self.sync_topic:
                self.synced.add(bytes(m.payload))
            else:
                self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))
            self.cond.notify_all()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

    def sync(self, timeout_s: float = 10.0) -> None:
        marker = uuid.uuid4().hex.encode()
        self.publish(self.sync_topic, marker)
        with self.cond:
            assert self.cond.wait_for(lambda: marker in self.synced, timeout_s), "the sync marker did not come back"

    def json_on(self, part: str, retained: bool | None = None) -> list[dict]:
        with self.cond:
            return [json.loads(p) for t, p, r in self.messages if part in t and p and retained in (None, r)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def retained_city_alerts(prefix: str) -> list[dict]:
    """The city alerts the broker holds retained now."""
    fresh = Observer(f"{prefix}cityalerts/#")
    try:
        fresh.sync()
        return fresh.json_on("cityalerts/", retained=True)
    finally:
        fresh.close()


@pytest.fixture(scope="module")
def border_scene():
    """Two flood areas either side of the border at Waibaidu Bridge, and unit positions: in Pudong across the
    river, in Hongkou and in Huangpu near their own district's part (lon, lat)."""
    bounds = read_boundaries()
    huangpu, hongkou, pudong = (projected(bounds[c].geometry) for c in ("310101", "310109", "310115"))
    border = shapely.intersection(huangpu.boundary, hongkou.boundary.buffer(0.5))
    at = shapely.Point(shapely.shortest_line(projected(shapely.Point(121.4880, 31.2446)), border).coords[-1])
    square = at.buffer(30.0, cap_style="square")
    shore = shapely.Point(shapely.shortest_line(at, pudong).coords[-1])
    step = ((shore.x - at.x) / at.distance(shore), (shore.y - at.y) / at.distance(shore))
    units = {"unit-pudong": shapely.Point(shore.x + 150 * step[0], shore.y + 150 * step[1]),
             "unit-hongkou": shapely.Point(at.x, at.y + 150), "unit-huangpu": shapely.Point(at.x, at.y - 150)}
    return (shapely.intersection(square, huangpu), shapely.intersection(square, hongkou),
            {u: (lonlat(p).x, lonlat(p).y) for u, p in units.items()})


@pytest.fixture
def start_tier(bund4):
    """Starts city tiers on one topic prefix of the test's own (each with a MemoryStream for its clock)."""
    prefix = f"citytwin-test-{uuid.uuid4().hex[:8]}/"
    started = []

    def start():
        config = TierConfig(BROKER, prefix=prefix, client_id=f"city-tier-{uuid.uuid4().hex[:8]}", settle_s=0.3,
                            http_port=0, end_session_on_stop=True,
                            units=frozenset({"unit-pudong", "unit-hongkou", "unit-huangpu"}))
        stream = MemoryStream()
        started.append(tier_from_city(bund4, config, stream=stream).start())
        return started[-1], stream

    yield start
    for running in started:
        running.stop()


@pytest.fixture
def tier(start_tier):
    return start_tier()


def _members(message: dict) -> set[str]:
    return {r.split(",")[1] for r in message.get("references", "").split() if not r.startswith("twin.city@")}


@pytest.mark.broker
@broker_here
def test_a_flood_across_the_border_is_one_retained_city_alert_routed_across_districts_and_cancelled(
        tier, border_scene):
    running, stream = tier
    prefix = running.config.prefix
    south, north, units = border_scene
    obs = Observer(f"{prefix}#")
    try:
        wait_until(running.released.is_set, 10, "the tier's start-up hold to end")
        wait_until(lambda: all(stream.records(p) for p in running.city_clock.partitions), 10, "a tick everywhere")
        obs.publish(f"{prefix}twin/status/999999", b"{}")  # handled before the next: one consumer, in order
        obs.publish(f"{prefix}twin/status/310109", json.dumps({"partition": "310109", "t": time.time(), "lag": 0,
                                                              "alerts_active": 1}).encode())
        wait_until(lambda: running.board.twin_status("310109"), 10, "Hongkou's twin status")
        assert running.board.twin_status("310109")["status"] == "ok"
        assert running.stats.refused["status_unknown_partition"] == 1
        clock = running.city_clock
        assert {tick_time(stream.records(p)[0]) % clock.tick_s for p in clock.partitions} == {0.0}
        huangpu = district_message("310101", "flood", 3, south, 3, place=("Waibaidu Bridge south", "外白渡桥南"))
        hongkou = district_message("310109", "flood", 8, north, 4, raised=T0 + 40,
                                   place=("Waibaidu Bridge north", "外白渡桥北"))
        keys = {huangpu["identifier"], hongkou["identifier"]}
        for m in (huangpu, hongkou):
            obs.publish(f"{prefix}alerts/{m['identifier']}", json.dumps(m).encode(), retain=True)
        wait_until(lambda: any(_members(m) == keys for m in obs.json_on("cityalerts/")), 10,
                   lambda: f"a city alert covering both; got {[m['identifier'] for m in obs.json_on('cityalerts/')]}")
        retained = retained_city_alerts(prefix)
        assert len(retained) == 1 and _members(retained[0]) == keys
        cid = "citytwin.city.310101.flood.20251231T142201Z.00003"
        assert retained[0]["identifier"] == f"{cid}.update1"
        assert retained[0]["info"][1]["headline"].startswith("Red waterlogging warning, Waibaidu Bridge south")

        for unit, (lon, lat) in units.items():
            obs.publish(f"{prefix}beidou/{unit}", json.dumps({"id": unit, "t": time.time(), "lon": lon,
                                                              "lat": lat}).encode())
        wait_until(lambda: len(running.router.fixes) == 3, 10, "the three units' positions")
        assert {u: f.district for u, f in running.router.fixes.items()} == {
            "unit-pudong": "310115", "unit-hongkou": "310109", "unit-huangpu": "310101"}
        wait_until(lambda: obs.json_on(f"{prefix}units/unit-pudong/alerts"), 10, "the Pudong unit's copy")
        assert obs.json_on(f"{prefix}units/unit-pudong/alerts")[-1]["scope"] == "Restricted"
        had = {u["unit"]: u["alerts"] for u in running.board.units()}  # read under the tier's lock
        assert had == {"unit-pudong": [cid], "unit-hongkou": [], "unit-huangpu": []}  # the others: their twins' job
        with urllib.request.urlopen(f"{running.server.url}/api/city/alerts", timeout=5) as r:
            features = json.loads(r.read())["features"]
        assert [(f["id"], sorted(f["properties"]["members"])) for f in features] == [(cid, sorted(keys))]

        for m in (huangpu, hongkou):  # as a district twin clears: Cancel, then the retained message removed
            cancel = district_message(m["identifier"].split(".")[1], "flood", int(m["identifier"][-5:]),
                                      south if m is huangpu else north, raised=T0 if m is huangpu else T0 + 40,
                                      kind="Cancel", n=1)
            obs.publish(f"{prefix}alerts/{m['identifier']}", json.dumps(cancel).encode(), retain=True)
            obs.publish(f"{prefix}alerts/{m['identifier']}", b"", retain=True)
        wait_until(lambda: any(m["msgType"] == "Cancel" for m in obs.json_on(f"{prefix}cityalerts/{cid}")), 10,
                   "the city alert's Cancel")
        assert retained_city_alerts(prefix) == []
        wait_until(lambda: obs.json_on(f"{prefix}units/unit-pudong/alerts")[-1]["msgType"] == "Cancel", 10,
                   "the Pudong unit's Cancel")
        assert running.merger.cities == {} and running.board.alerts() == {}
    finally:
        obs.close()


@pytest.mark.broker
@broker_here
def test_a_restarted_tier_cancels_the_retained_city_alert_whose_members_cleared_while_it_was_down(
        start_tier, border_scene):
    first, _ = start_tier()
    prefix = first.config.prefix
    south, north, _ = border_scene
    obs = Observer(f"{prefix}#")
    try:
        wait_until(first.released.is_set, 10, "the first tier's start-up hold to end")
        alerts = [district_message("310101", "flood", 3, south), district_message("310109", "flood", 8, north)]
        for m in alerts:
            obs.publish(f"{prefix}alerts/{m['identifier']}", json.dumps(m).encode(), retain=True)
        wait_until(lambda: [m for m in retained_city_alerts(prefix) if len(_members(m)) == 2], 10, "the city alert")
        first.stop()
        for m in alerts:  # cleared while the tier is down: the Cancel goes by, the retained message is removed
            obs.publish(f"{prefix}alerts/{m['identifier']}", b"", retain=True)
        second, _ = start_tier()
        wait_until(second.released.is_set, 10, "the second tier's start-up hold to end")
        wait_until(lambda: any(m["msgType"] == "Cancel" for m in obs.json_on("cityalerts/")), 10, "the Cancel")
        cancel = next(m for m in obs.json_on("cityalerts/") if m["msgType"] == "Cancel")
        assert cancel["identifier"] == "citytwin.city.310101.flood.20251231T142201Z.00003.cancel2"
        assert retained_city_alerts(prefix) == [] and second.merger.counts["adopted"] == 1
    finally:
        obs.close()


def test_the_command_line_refuses_bad_options_in_one_line(tmp_path, capsys):
    bad = tmp_path / "city.yaml"
    bad.write_text("districts: []\n")
    assert city_tier_main(["--city", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("twin: error: ")
    manifest = REPO / "data" / "city" / "bund4.yaml"
    for options, words in ((["--clock", "replay"], "--start"), (["--speed", "4"], "--clock replay"),
                           (["--clock", "replay", "--start", "2025-12-31T22:00:00+08:00", "--speed", "-1"], "--speed"),
                           (["--district-api", "999999=http://127.0.0.1:1"], "no district 999999"),
                           (["--token", "short"], "8 characters")):
        assert city_tier_main(["--city", str(manifest), "--cache", str(tmp_path), "--no-clock", *options]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1


@pytest.mark.broker
@broker_here
def test_the_command_runs_and_stops_on_sigterm(bund4, tmp_path):
    bund4.raster()  # built once for the session's cache
    cmd = [sys.executable, "-m", "twin.cli.city_tier", "--city", str(bund4.manifest.path), "--cache",
           str(bund4.cache), "--no-clock", "--http", "0", "--settle", "0.2",
           "--client-id", f"city-tier-cli-{uuid.uuid4().hex[:8]}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env=checkout_env())
    try:
        line = proc.stdout.readline()
        assert line.startswith("city tier running: 4 districts, clock off, API http://127.0.0.1:"), line
        proc.terminate()
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        end_session(cmd[-1])


