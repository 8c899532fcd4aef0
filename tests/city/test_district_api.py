"""A district twin's HTTP API (twin.live.district_view.DistrictService under twin.api.serve; `twin district --http`)
over a real DistrictTwin of the built four-district city, and the city tier reading it (`twin city-tier
--district-api CODE=URL`), and `twin run --city` wiring the two.

The twin is fed the story of tests/live/test_district_twin.py (a crowd swelling to red, a storm, loops slowing to a
jam, probe vehicles and a field unit) through a MemoryStream, so it holds alerts of several hazards; the API must
answer what the twin itself holds. One test reads the API while the twin's reader thread applies ticks.
"""

from __future__ import annotations

import argparse
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.stream import MemoryStream
from tests.live.test_district_twin import T0, TICK_S, publish_ticks
from twin.api import serve
from twin.api.app import create_app
from twin.api.config import ApiConfig
from twin.api.metrics import TwinCollector
from twin.live.district_twin import Counts, DistrictConfig, DistrictTwin, Faults, district_core_config
from twin.live.district_view import READ_ONLY, DistrictService, ingest_metrics

DISTRICT = "310101"
TICKS = 14
TOKEN = "district-api-token-01"


def get(url: str) -> tuple[int, dict | str]:
    """GET a URL: (status, JSON body or text)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            code, body, kind = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        code, body, kind = exc.code, exc.read(), exc.headers.get("content-type", "")
    return code, json.loads(body) if kind.startswith("application/json") else body.decode()


def district_twin(city, stream: MemoryStream, state: Path, partition: str = DISTRICT) -> DistrictTwin:
    district = city.district(partition)
    config = DistrictConfig(partition, core=district_core_config(partition, tick_s=TICK_S, clear_s=TICK_S),
                            dedupe_keys=50_000)
    return DistrictTwin.from_files(district.grid_path, district.registry_path, stream, state, config)


@pytest.fixture(scope="module")
def fed(bund4_built, tmp_path_factory):
    """Huangpu's district twin after the story's 14 ticks, its API on a free loopback port: (twin, service,
    server)."""
    city, _ = bund4_built
    stream = MemoryStream()
    twin = district_twin(city, stream, tmp_path_factory.mktemp("district") / DISTRICT)
    publish_ticks(stream, DISTRICT, twin.registry, range(TICKS))
    twin.catch_up(120)
    service = DistrictService(twin, city.district(DISTRICT).grid_path)
    server = serve(service, port=0)
    yield twin, service, server
    server.stop()
    service.close()
    twin.close()


def test_the_district_api_answers_what_the_twin_holds(fed):
    twin, _, server = fed
    last = T0 + TICK_S * (TICKS - 1)
    code, health = get(f"{server.url}/api/health")
    assert code == 200 and health["status"] == "ok" and health["last_tick"] == last
    assert 0 <= health["tick_age_s"] < 60, "the district's clock is its last tick plus the wall time since"
    code, vitals = get(f"{server.url}/api/indicators?level=district")
    assert code == 200 and vitals == json.loads(json.dumps(twin.core.indicators("district")))
    assert vitals["t"] == last and vitals["nodes"][0]["indicators"]["people"]["value"] > 0
    code, alerts = get(f"{server.url}/api/alerts")
    active = {a.identifier for a in twin.core.active_alerts()}
    assert code == 200 and {f["properties"]["identifier"] for f in alerts["features"]} == active
    assert {f["properties"]["hazard"] for f in alerts["features"]} >= {"crowd", "flood", "traffic"}
    assert all(i.startswith(f"citytwin.{DISTRICT}.") for i in active)
    code, status = get(f"{server.url}/api/status")
    assert code == 200 and (status["partition"], status["ticks"], status["alerts_active"]) == (DISTRICT, TICKS,
                                                                                             len(active))
    assert status["accepted"] == twin.counts.records and status["lag"] == 0
    first = sorted(active)[0]
    code, one = get(f"{server.url}/api/alerts/{first}")
    assert code == 200 and one == twin.store.messages(first)[-1], "the alert's current CAP message"
    code, metrics = get(f"{server.url}/metrics")
    assert code == 200 and f"citytwin_alerts_active {len(active)}" in metrics.replace(".0\n", "\n")
    code, page = get(f"{server.url}/")
    assert code == 200 and "/static/app.js" in page, "the district twin's own dashboard is the drill-down page"
    code, devices = get(f"{server.url}/api/devices?kind=crowd&limit=5")
    assert code == 200 and devices["total"] == len(twin.registry.of_kind("crowd")) and len(devices["features"]) == 5


def test_the_district_api_only_reads(fed):
    twin, service, server = fed
    alert = twin.core.active_alerts()[0].identifier
    request = urllib.request.Request(f"{server.url}/api/alerts/{alert}/ack", method="POST",
                                     data=b'{"operator": "op"}', headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403 and json.loads(refused.value.read())["error"] == "writes_disabled"
    with TestClient(create_app(service, ApiConfig(token=TOKEN))) as client:  # with a token: still refused
        r = client.post(f"/api/alerts/{alert}/ack", json={"operator": "op"},
                        headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 503 and r.json() == {"error": "ack_unavailable", "detail": READ_ONLY}
    assert alert in {a.identifier for a in twin.core.active_alerts()} and twin.store.acks(alert) == []


def test_health_turns_stale_when_the_city_clock_stops(fed):
    twin, _, _ = fed
    wall = {"now": 1000.0}
    service = DistrictService(twin, wall=lambda: wall["now"])
    try:
        with TestClient(create_app(service)) as client:
            assert service.clock() == twin.core.last_tick
            wall["now"] += 42.0
            assert service.clock() == twin.core.last_tick + 42.0
            assert client.get("/api/health").json()["status"] == "ok"
            wall["now"] += 5 * TICK_S  # five ticks without one
            r = client.get("/api/health")
            assert r.status_code == 503 and r.json()["status"] == "stale"
    finally:
        service.close()
    assert service._on_tick not in twin.listeners


def test_reads_are_safe_while_the_reader_thread_applies_ticks(bund4_built, tmp_path):
    city, _ = bund4_built
    stream = MemoryStream()
    twin = district_twin(city, stream, tmp_path / DISTRICT)
    service = DistrictService(twin)
    server = serve(service, port=0)
    answers: list[int] = []
    failures: list[str] = []
    done = threading.Event()

    def reader() -> None:
        paths = ["/api/indicators?level=district", "/api/alerts", "/api/status", "/api/health", "/api/units",
                 "/api/layers/level?bbox=121.48,31.23,121.49,31.24"]
        while not done.is_set():
            for path in paths:
                code, body = get(server.url + path)
                answers.append(code)
                if code >= 500 and path != "/api/health":
                    failures.append(f"{path}: {code} {body}")

    thread = threading.Thread(target=reader, daemon=True)
    try:
        twin.start(warm=False)
        thread.start()
        for k in range(TICKS):
            publish_ticks(stream, DISTRICT, twin.registry, range(k, k + 1))
            assert twin.wait_applied(stream.last_seq(DISTRICT), 30), f"tick {k} not applied within 30 s"
    finally:
        done.set()
        thread.join(30)
        server.stop()
        service.close()
        twin.stop()
    assert not failures and len(answers) >= 6
    assert twin.counts.ticks == TICKS and service.clock() >= T0 + TICK_S * (TICKS - 1)


@settings(max_examples=60, deadline=None)
@given(records=st.integers(0, 10**6), rows=st.integers(0, 10**7), duplicates=st.integers(0, 10**6),
       bad=st.dictionaries(st.sampled_from(["bad_batch", "bad_tick", "unknown_kind"]), st.integers(0, 1000)),
       refused=st.dictionaries(st.sampled_from(["outside_grid", "not_sent", "bad_value"]), st.integers(0, 1000)),
       buffered=st.integers(0, 5000))
def test_the_counters_read_as_ingest_metrics(records, rows, duplicates, bad, refused, buffered):
    counts = Counts(records=records, rows=rows, duplicates=duplicates, refused=refused, bad_records=bad)
    doc = ingest_metrics(counts, Faults(apply_errors=3), buffered)
    assert doc["received"] == records + sum(bad.values()) and doc["accepted"] == records
    assert doc["rejected_total"] == sum(bad.values()) + sum(refused.values()) == sum(doc["rejected"].values())
    assert (doc["accepted_records"], doc["duplicates"], doc["queue_depth"], doc["internal_errors"]) == (
        rows, duplicates, buffered, 3)
    families = {m.name: m for m in TwinCollector(None)._ingest(doc)}  # the Prometheus exporter takes it
    assert families["citytwin_ingest_received"].samples[0].value == doc["received"]


# ---------------------------------------------------------------- the city tier reads it
def test_the_city_api_shows_the_district_values_over_district_api(fed, bund4_built):
    from twin.cli.city_tier import add_serve_parser, tier_from_args

    twin, _, server = fed
    city, _ = bund4_built
    parser = argparse.ArgumentParser()
    add_serve_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["city-tier", "--city", str(city.manifest.path), "--cache", str(city.cache),
                              "--no-clock", "--http", "0", "--broker", "mqtt://127.0.0.1:9", "--settle", "0",
                              "--district-api", f"{DISTRICT}={server.url}/"])
    tier = tier_from_args(args).start()
    try:
        code, body = get(f"{tier.server.url}/api/city/indicators")
        rows = {d["partition"]: d for d in body["districts"]}
        assert code == 200 and rows[DISTRICT]["status"] == "ok" and rows[DISTRICT]["api"] == server.url
        assert rows[DISTRICT]["nodes"] == json.loads(json.dumps(twin.core.indicators("district")))["nodes"]
        assert rows[DISTRICT]["t"] == T0 + TICK_S * (TICKS - 1)
        assert {p: r["status"] for p, r in rows.items() if p != DISTRICT} == dict.fromkeys(
            ("310109", "310110", "310115"), "unknown")
        code, body = get(f"{tier.server.url}/api/city/districts")
        huangpu = next(d for d in body["districts"] if d["partition"] == DISTRICT)
        assert (huangpu["status"], huangpu["api"], huangpu["name_en"]) == ("ok", server.url, "Huangpu")
        code, shapes = get(f"{tier.server.url}/api/city/map")
        kinds = [(f["properties"]["kind"], f["properties"].get("code")) for f in shapes["features"]]
        assert code == 200 and sorted(kinds) == sorted([(k, c) for k in ("district", "twin")
                                                        for c in ("310101", "310109", "310110", "310115")])
        code, page = get(f"{tier.server.url}/")
        assert code == 200 and '<script type="module" src="/static/city.js">' in page
        for name in ("city.js", "city.css", "palette.css", "levels.js"):
            assert get(f"{tier.server.url}/static/{name}")[0] == 200, name
        assert get(f"{tier.server.url}/static/app.js")[0] == 404, "only the city page's files"
    finally:
        tier.stop()


# ---------------------------------------------------------------- twin run --city and twin district --http
def test_twin_run_city_gives_every_district_twin_an_api_and_the_tier_its_address(bund4, tmp_path):
    from twin.cli.city_run import city_children

    args = argparse.Namespace(workers=1, city=bund4.manifest.path, city_http=8090, no_district_api=False)
    children = {c.name: c.argv for c in city_children(bund4, args, "nats://x:4222", "mqtt://x:1883", tmp_path)}
    ports = {}
    for partition in bund4.partitions:
        argv = children[f"district-{partition}"]
        ports[partition] = int(argv[argv.index("--http") + 1])
    assert len(set(ports.values())) == len(ports) and all(p > 0 for p in ports.values())
    tier = children["city-tier"]
    links = [tier[i + 1] for i, a in enumerate(tier) if a == "--district-api"]
    assert links == [f"{p}=http://127.0.0.1:{port}" for p, port in ports.items()]
    off = argparse.Namespace(**{**vars(args), "no_district_api": True})
    children = {c.name: c.argv for c in city_children(bund4, off, "nats://x:4222", "mqtt://x:1883", tmp_path)}
    assert not any("--http" in argv for name, argv in children.items() if name.startswith("district-"))
    assert "--district-api" not in children["city-tier"] and children["city-tier"].count("--http") == 1


def test_twin_district_refuses_an_api_beyond_loopback_without_a_token(bund4_built, capsys, monkeypatch):
    from twin.cli.district import main

    monkeypatch.delenv("TWIN_HTTP_TOKEN", raising=False)
    district = bund4_built[0].district(DISTRICT)
    common = ["--grid", str(district.grid_path), "--registry", str(district.registry_path), "--partition", DISTRICT,
              "--nats", "nats://127.0.0.1:9", "--http", "0"]
    assert main([*common, "--http-host", "0.0.0.0"]) == 2
    assert "refusing to serve the district API on 0.0.0.0, beyond loopback, without a token" in capsys.readouterr().err
    assert main([*common, "--http-token", "short"]) == 2
    assert "--http-token must be at least 8 characters long" in capsys.readouterr().err
