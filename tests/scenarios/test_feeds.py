"""The synthetic feeds of ``twin simulate`` (issue 6 item 2): valid on the wire, plausible, deterministic."""

from __future__ import annotations

import argparse
import json
import threading
import uuid

import numpy as np
import pynmea2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely import STRtree
from shapely.geometry import LineString, Point

from ingest.batch import Batch
from ingest.decoders import decode_ack, decode_nmea, decode_position
from ingest.routing import DECODERS, route
from models.design_storm import shanghai_storm_intensity
from scenarios.feeds.roads import SPEED_KMH
from scenarios.feeds.sensors import Storm, storm_mean
from scenarios.feeds.simulator import FeedConfig, Publisher, Simulator
from scenarios.feeds.vehicles import district_exits
from tests.support.waits import wait_until
from twin.district.geo import gcj02_to_wgs84, to_projected

START = 1767189600.0


def run(sim: Simulator, seconds: int, dt: float = 1.0) -> list[tuple[float, str, bytes]]:
    out = []
    for _ in range(int(seconds / dt)):
        out += [(sim.t, topic, p) for topic, p in sim.step(dt)]
    return out


@pytest.fixture(scope="module")
def clean():
    """Ten simulated minutes without bad messages: (simulator, [(t, topic, payload)])."""
    sim = Simulator(FeedConfig(seed=7, bad_share=0.0, gcj_share=0.3))
    return sim, run(sim, 600)


@pytest.fixture(scope="module")
def roads(clean):
    sim, _ = clean
    lines = [LineString(np.column_stack([e.x, e.y])) for e in sim.graph.edges]
    return lines, STRtree(lines)


def distance_to_road(roads, lon: float, lat: float) -> float:
    lines, tree = roads
    x, y = to_projected(lon, lat)
    p = Point(float(x), float(y))
    return float(p.distance(lines[int(tree.nearest(p))]))


def test_nmea_passes_our_decoder_and_pynmea2(clean):
    _sim, msgs = clean
    talkers = set()
    nmea = [(t, topic, p) for t, topic, p in msgs if p.startswith(b"$")]
    assert len(nmea) > 500
    for t, topic, payload in nmea:
        batch = decode_nmea(payload, topic=topic, received_at=t)
        assert isinstance(batch, Batch) and len(batch) == 1, batch
        assert batch.t[0] == pytest.approx(t, abs=0.01)
        for line in payload.decode().split("\r\n")[:-1]:
            msg = pynmea2.parse(line, check=True)
            talkers.add(msg.talker)
            assert msg.latitude == pytest.approx(batch.lat[0], abs=1e-6)
            assert msg.longitude == pytest.approx(batch.lon[0], abs=1e-6)
    assert {"GB", "BD", "GN"} <= talkers


def test_gcj02_json_positions_lie_on_the_roads_after_conversion(clean, roads):
    _sim, msgs = clean
    js = [(t, topic, p) for t, topic, p in msgs if p.startswith(b"{") and "/beidou/" in topic]
    assert len(js) > 100
    for t, topic, payload in js[::7]:
        batch = decode_position(payload, topic=topic, received_at=t)
        assert isinstance(batch, Batch) and batch.datum[0] == "GCJ02"
        lon, lat = gcj02_to_wgs84(batch.lon[0], batch.lat[0])
        assert distance_to_road(roads, float(lon), float(lat)) < 3.0
        # the raw GCJ-02 point carries the 456-500 m Shanghai offset of docs/science/spatial.md 6.3
        x0, y0 = to_projected(lon, lat)
        x1, y1 = to_projected(batch.lon[0], batch.lat[0])
        assert 450.0 < np.hypot(x1 - x0, y1 - y0) < 510.0


def test_every_good_message_decodes_for_a_registered_device(clean):
    sim, msgs = clean
    families = set()
    for t, topic, payload in msgs:
        r = route(topic)
        assert r is not None, topic
        families.add(r.family if r.family != "sensor" else r.sensor_kind)
        batch = DECODERS[r.family](payload, topic=topic, received_at=t)
        assert isinstance(batch, Batch) and len(batch) >= 1, (topic, batch)
        assert set(batch.device.tolist()) == {r.device}
        dev = sim.registry.get(r.device)
        assert dev is not None, r.device
        if r.family == "sensor":
            assert dev.kind == r.sensor_kind
        elif r.family == "beidou":
            assert dev.kind in ("vehicle", "unit")
    assert families == {"beidou", "crowd", "rain", "water", "traffic"}


def test_bad_messages_are_rejected_or_unknown_at_the_configured_share():
    sim = Simulator(FeedConfig(seed=3, bad_share=0.1, vehicles=20))
    msgs = run(sim, 600)
    bad = 0
    reasons = set()
    for t, topic, payload in msgs:
        r = route(topic)
        res = DECODERS[r.family](payload, topic=topic, received_at=t)
        if not isinstance(res, Batch):
            bad += 1
            reasons.add(str(res.reason))
        elif r.device not in sim.registry:
            bad += 1
            reasons.add("unknown_device")
    assert bad == sum(sim.bad.counts.values())
    assert bad / len(msgs) == pytest.approx(0.1, abs=0.02)
    assert {"bad_checksum", "bad_syntax", "out_of_range", "unknown_device"} <= reasons


def test_vehicles_stay_on_roads_at_class_speeds(clean, roads):
    sim, msgs = clean
    for v in sim.fleet.vehicles:
        edge = sim.graph.edges[v.edge]
        assert v.speed_kmh / edge.speed_kmh == pytest.approx(1.0, abs=0.1001)
    top = max(SPEED_KMH.values()) * 1.1
    ends = np.asarray(sim.graph.node_xy, float)[sorted(district_exits(sim.graph))]
    last: dict[str, tuple[float, float, float]] = {}
    reentries = 0
    for t, topic, payload in msgs:
        if not topic.split("/")[-1].startswith("veh-") or not payload.startswith(b"$"):
            continue
        b = decode_nmea(payload, topic=topic, received_at=t)
        lon, lat = float(b.lon[0]), float(b.lat[0])
        assert distance_to_road(roads, lon, lat) < 1.0
        assert 0 < b.speed_kmh[0] <= top
        dev = b.device[0]
        x, y = to_projected(lon, lat)
        if dev in last:
            t0, x0, y0 = last[dev]
            reach = top / 3.6 * (t - t0) + 1.0
            if np.hypot(x - x0, y - y0) > reach:  # no jumps, but a vehicle that reached a dead end left the district
                assert np.hypot(*(ends - [x0, y0]).T).min() <= reach, "a jump only from the district's edge"
                reentries += 1
        last[dev] = (t, float(x), float(y))
    # the district is about 2 km across: in ten minutes a vehicle leaves at its edge about once (measured 42 of 40)
    assert 0 < reentries <= 2 * len(sim.fleet.vehicles), "vehicles leave at the district's edge, now and then"


def test_congestion_slows_vehicles_and_loops():
    road = "East Zhongshan No. 1 Road"
    free = Simulator(FeedConfig(seed=1, vehicles=0, bad_share=0))
    jam = Simulator(FeedConfig(seed=1, vehicles=0, bad_share=0, congestion={road: 0.3}))

    def loop01(sim):
        for t, topic, payload in run(sim, 120):
            if topic.endswith("/loop-01"):
                b = DECODERS["sensor"](payload, topic=topic, received_at=t)
                return dict(zip(b.quantity.tolist(), b.value.tolist(), strict=True))

    f, j = loop01(free), loop01(jam)
    assert j["speed"] < 0.4 * f["speed"] and j["occ"] > 3 * f["occ"]
    edge = next(i for i, e in enumerate(jam.graph.edges) if e.name == road)
    assert jam.fleet.speed_of(edge) == pytest.approx(0.3 * jam.graph.edges[edge].speed_kmh)


def test_crowd_profile_peaks_where_configured():
    peak_at = START + 1800.0
    sim = Simulator(FeedConfig(seed=2, vehicles=0, bad_share=0, crowd_peak=4.0, crowd_peak_at=peak_at,
                               crowd_span_s=3600.0, sensor_report_s=20.0, storm_return_period_yr=None))
    best = (0.0, 0.0)
    areas = {d.id: a for d, a, w in sim.sensors.crowd if w == 1.0}
    assert areas, "no Chen Yi Square counter"
    for t, topic, payload in run(sim, 3600, dt=5.0):
        dev = topic.split("/")[-1]
        if dev in areas:
            b = DECODERS["sensor"](payload, topic=topic, received_at=t)
            best = max(best, (b.value[0] / areas[dev], t))
    assert best[0] == pytest.approx(4.0, rel=0.1)
    assert abs(best[1] - peak_at) <= 3600.0 / 24  # within one profile hour of the configured peak


def test_rain_gauges_follow_the_shanghai_design_storm():
    assert storm_mean(Storm(5.0, 60.0, 0.0)) == pytest.approx(shanghai_storm_intensity(5.0, 60.0), rel=1e-9)
    assert shanghai_storm_intensity(5.0, 60.0) == pytest.approx(58.1, abs=0.05)
    sim = Simulator(FeedConfig(seed=4, vehicles=0, bad_share=0, storm_return_period_yr=5.0,
                               storm_duration_min=60.0, storm_start=START + 600.0))
    rain, depth = [], []
    for t, topic, payload in run(sim, 5400, dt=10.0):
        b = DECODERS["sensor"](payload, topic=topic, received_at=t)
        if topic.endswith("/rain-01"):
            rain.append((t, b.value[0]))
        if topic.endswith("/water-01"):
            depth.append((t, b.value[0]))
    during = [v for t, v in rain if START + 600 < t <= START + 4200]
    assert len(during) == 60
    assert np.mean(during) == pytest.approx(58.1, abs=0.05)
    assert all(v == 0 for t, v in rain if t <= START + 600 or t > START + 4200)
    d = np.array([v for _, v in depth])
    assert d.max() > 0.15 and d[-1] < d.max()  # floods beyond the drainage, then drains


def test_deterministic_for_a_seed():
    a = run(Simulator(FeedConfig(seed=11, bad_share=0.05)), 120)
    b = run(Simulator(FeedConfig(seed=11, bad_share=0.05)), 120)
    c = run(Simulator(FeedConfig(seed=12, bad_share=0.05)), 120)
    assert a == b
    assert a != c


def cap(identifier: str, lon: float, lat: float, msg_type: str = "Alert") -> str:
    d = 0.0005
    ring = [(lat - d, lon - d), (lat - d, lon + d), (lat + d, lon + d), (lat + d, lon - d), (lat - d, lon - d)]
    return json.dumps({"identifier": identifier, "msgType": msg_type, "references": "",
                       "info": [{"area": [{"areaDesc": "test", "polygon": [" ".join(f"{a},{o}" for a, o in ring)]}]}]})


def test_unit_responds_acknowledges_and_arrives():
    sim = Simulator(FeedConfig(seed=5, vehicles=0, bad_share=0, storm_return_period_yr=None))
    unit = "unit-police-01"
    sim.respond(unit, cap("A-1", 121.4855, 31.2405))
    statuses = []
    for t, topic, payload in run(sim, 900):
        if topic == f"city/units/{unit}/ack":
            b = decode_ack(payload, topic=topic, received_at=t)
            assert isinstance(b, Batch) and b.ref[0] == "A-1"
            statuses.append(b.quantity[0])
    assert statuses == ["ack", "on_scene"]
    sim.respond(unit, cap("A-1", 121.4855, 31.2405, "Cancel"))
    acks = [p for _, topic, p in run(sim, 5) if topic.endswith("/ack")]
    assert [json.loads(p)["status"] for p in acks] == ["resolved"]


def test_bad_arguments_raise_value_error():
    from scenarios.simulate_cli import add_parser
    from scenarios.simulate_cli import run as cli_run

    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers())
    for extra in (["--gcj-share", "2"], ["--speed", "0"], ["--congestion", "nonsense"], ["--vehicles", "99"]):
        args = p.parse_args(["simulate", "--broker", "mqtt://x@127.0.0.1:1", "--duration", "1", *extra])
        with pytest.raises(ValueError):
            cli_run(args)
    args = p.parse_args(["simulate", "--broker", "http://nowhere", "--duration", "1"])
    with pytest.raises(ValueError):
        cli_run(args)


def _mosquitto_up() -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", 1883), timeout=1).close()
    except OSError:
        return False
    return True


def test_publish_through_the_embedded_broker_loses_nothing():
    from twin.live.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        _count_published(broker.port, broker.url, "3.1.1")


@pytest.mark.skipif(not _mosquitto_up(), reason="no Mosquitto on 127.0.0.1:1883")
def test_publish_through_mosquitto_over_mqtt5_loses_nothing():
    _count_published(1883, "mqtt://simtest@127.0.0.1:1883", "5")


def _count_published(port: int, url: str, protocol: str) -> None:
    import paho.mqtt.client as mqtt

    prefix = f"simtest-{uuid.uuid4().hex[:8]}/"
    got: list[str] = []
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{prefix[:-1]}",
                      protocol=mqtt.MQTTv311)
    sub.username_pw_set("test")
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{prefix}#", qos=1)
    sub.on_subscribe = lambda c, u, mid, rc, p: subscribed.set()
    sub.on_message = lambda c, u, m: got.append(m.topic)
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        sim = Simulator(FeedConfig(seed=9, vehicles=10, bad_share=0.05, prefix=prefix))
        with Publisher(url, protocol=protocol) as pub:
            n = pub.run(sim, 60.0, speed=120.0)
        assert n == sim.sent > 100 and pub.acked == n
        wait_until(lambda: len(got) >= n, 10, lambda: f"all {n} messages at the subscriber ({len(got)} came)")
        assert len(got) == n
    finally:
        sub.disconnect()
        sub.loop_stop()


def test_units_answer_alerts_routed_to_them_through_the_broker():
    import paho.mqtt.client as mqtt

    from twin.live.broker import EmbeddedBroker

    prefix = f"simtest-{uuid.uuid4().hex[:8]}/"
    acks: list[dict] = []
    ready = threading.Event()
    with EmbeddedBroker() as broker:
        twin = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"twin-{prefix[:-1]}",
                           protocol=mqtt.MQTTv311)
        twin.username_pw_set("test")
        twin.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{prefix}units/+/ack", qos=1)
        twin.on_subscribe = lambda c, u, mid, rc, p: ready.set()
        twin.on_message = lambda c, u, m: acks.append(json.loads(m.payload))
        twin.connect("127.0.0.1", broker.port)
        twin.loop_start()
        try:
            assert ready.wait(10)
            sim = Simulator(FeedConfig(seed=9, vehicles=0, bad_share=0, prefix=prefix))
            # retained, so it reaches the publisher whenever its subscription is in place
            twin.publish(f"{prefix}units/unit-police-01/alerts", cap("A-9", 121.4855, 31.2405), qos=1,
                         retain=True).wait_for_publish(10)
            with Publisher(broker.url, protocol="3.1.1", respond_prefix=prefix) as pub:
                wait_until(lambda: not pub.alerts.empty(), 10, "the alert at the feed publisher")
                pub.run(sim, 600.0, speed=600.0)
            wait_until(lambda: len(acks) >= 2, 5, lambda: f"the unit's ack and on-scene report (got {acks})")
            assert pub.alerts_received == 1
            assert [(a["alert"], a["status"]) for a in acks] == [("A-9", "ack"), ("A-9", "on_scene")]
        finally:
            twin.disconnect()
            twin.loop_stop()


def test_cli_publishes_and_summarises(capsys):
    from scenarios.simulate_cli import add_parser
    from twin.live.broker import EmbeddedBroker

    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers())
    with EmbeddedBroker() as broker:
        args = p.parse_args(["simulate", "--broker", broker.url, "--duration", "30", "--speed", "300",
                             "--protocol", "3.1.1", "--prefix", f"simtest-{uuid.uuid4().hex[:8]}/",
                             "--congestion", "East Zhongshan No. 1 Road=0.3"])
        assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("simulate: ") and "messages published" in out


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), gcj=st.floats(0, 1), vehicles=st.integers(0, 40))
def test_any_seed_gives_decodable_messages(seed, gcj, vehicles):
    sim = Simulator(FeedConfig(seed=seed, gcj_share=gcj, vehicles=vehicles, bad_share=0.0))
    for t, topic, payload in run(sim, 20):
        r = route(topic)
        batch = DECODERS[r.family](payload, topic=topic, received_at=t)
        assert isinstance(batch, Batch) and r.device in sim.registry, (topic, batch)
