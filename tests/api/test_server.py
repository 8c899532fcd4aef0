"""`serve`: uvicorn in a background thread on loopback, its refusals, its WebSocket, a clean stop."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.api.conftest import CHEN_YI_SQUARE, OBSERVED, REGISTRY, TOKEN, Driver
from tests.ingest.conftest import own_broker  # noqa: F401 - the fixture, shared
from tests.live.conftest import Observer, wait_for
from twin.alerting.cap import info_block
from twin.api import serve
from twin.api.server import is_loopback
from twin.live.core import CoreConfig
from twin.live.service import LiveService, ServiceConfig


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _post(url: str, body: dict, token: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    return _get(req)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _can_bind(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


def test_serve_refuses_to_listen_beyond_loopback_without_a_token(service):
    for host in ("0.0.0.0", "::", "192.0.2.10", "twin.example.org", ""):
        with pytest.raises(ValueError, match="beyond loopback, without a token"):
            serve(service, host=host, port=0)
        with pytest.raises(ValueError, match="without a token"):
            serve(service, host=host, port=0, token="")
    with pytest.raises(ValueError, match="at least 8 characters"):
        serve(service, port=0, token="1234")
    assert service.listeners == []


def test_loopback_hosts():
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.org", "127.0.0.1.example.org"]))


def test_serve_on_port_0_reports_the_real_port_serves_and_frees_it_on_stop(service):
    handle = serve(service, port=0, token=TOKEN)
    try:
        assert handle.url == f"http://127.0.0.1:{handle.port}" and handle.port > 0
        assert _listening(handle.port) and not _can_bind(handle.port)
        status, body = _get(f"{handle.url}/api/health")
        assert status == 200 and body["status"] == "starting"
        assert len(service.listeners) == 1, "the app listens to ticks while it runs"
        status, body = _post(f"{handle.url}/api/alerts/nope/ack", {"operator": "Li Wei"}, None)
        assert status == 401 and body["error"] == "unauthorized"
    finally:
        handle.stop()
    assert not handle.thread.is_alive() and service.listeners == []
    assert not _listening(handle.port) and _can_bind(handle.port), "the port is free again"


def test_a_busy_port_is_an_os_error_and_foreign_host_headers_are_refused(service):
    with serve(service, port=0) as handle:
        with pytest.raises(OSError):
            serve(service, port=handle.port)
        conn = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=10)
        conn.request("GET", "/api/status", headers={"Host": "rebound.example.com"})
        refused = conn.getresponse()
        assert refused.status == 400, "DNS rebinding: only loopback host names"
        assert refused.getheader("Content-Type") == "application/json"
        assert json.loads(refused.read())["error"] == "invalid_host"
        conn.close()
        status, _ = _get(f"http://localhost:{handle.port}/api/status")
        assert status == 200


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_unexpected_error_under_uvicorn_is_a_json_500_and_one_log_line(service, monkeypatch):
    def broken() -> dict:
        raise RuntimeError("secret state")

    keep = _Records()
    with serve(service, port=0) as handle:
        loggers = [logging.getLogger(), logging.getLogger("uvicorn")]  # uvicorn's own do not propagate to root
        for logger in loggers:
            logger.addHandler(keep)
        try:
            monkeypatch.setattr(handle.server.config.app.state.api.view, "status", broken)
            status, body = _get(f"{handle.url}/api/status")
            assert _get(f"{handle.url}/api/health")[0] == 200, "the server goes on"
        finally:
            for logger in loggers:
                logger.removeHandler(keep)
    assert status == 500 and body["error"] == "internal_error" and "secret" not in json.dumps(body)
    lines = [r.getMessage() for r in keep.records]
    assert len(lines) == 1 and "\n" not in lines[0] and "RuntimeError" in lines[0], lines
    assert keep.records[0].exc_info is None, "no traceback in the log either: one line"


@pytest.mark.timeout(120)
def test_ws_over_a_real_socket_gets_an_alert_raised_on_another_thread_and_stop_closes_it(service):
    driver = Driver(service)
    with serve(service, port=0, token=TOKEN) as handle:
        ws = connect(f"ws://127.0.0.1:{handle.port}/ws", open_timeout=10)
        assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
        feeder = threading.Thread(target=driver.raise_crowd_alert)  # plays the service's ingest thread
        feeder.start()
        feeder.join(60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            event = json.loads(ws.recv(timeout=10))
            if event["type"] == "alert" and event["kind"] == "raised":
                break
        assert event["feature"]["properties"]["hazard"] == "crowd"
        ident = event["feature"]["id"]
        status, body = _post(f"{handle.url}/api/alerts/{ident}/ack", {"operator": "Li Wei"}, TOKEN)
        assert status == 200 and body["message"] == f"{ident}.ack1"
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 8, "stop does not hang on an open WebSocket"
    with pytest.raises(ConnectionClosed):
        while True:
            ws.recv(timeout=5)
    ws.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_end_to_end_over_mqtt_an_alert_reaches_ws_and_the_ack_reaches_the_retained_cap(own_broker, bund_file,  # noqa: F811
                                                                                      tmp_path):
    cfg = ServiceConfig(broker=own_broker.url, grid=bund_file, registry=REGISTRY, state_dir=tmp_path / "state",
                        tick_s=0.2, client_id="twin-api-e2e",
                        core=CoreConfig(tick_s=0.2, clear_s=0.4, alert_hazards=OBSERVED))
    svc = LiveService(cfg)
    assert svc.start(10)
    observer = Observer(own_broker.port)
    handle = serve(svc, port=0, token=TOKEN)
    stop = threading.Event()

    def feed() -> None:
        from ingest.batch import Batch
        from ingest.decoders.senml import encode_senml

        counters = [d.id for d in svc.registry.of_kind("crowd")]
        while not stop.is_set():
            t = round(time.time(), 3)
            for d in counters:
                observer.publish(f"city/sensors/crowd/{d}", encode_senml(
                    Batch.build(1, device=d, t=t, quantity="count", value=9000.0)))
            observer.publish("city/beidou/unit-police-04", json.dumps(
                {"id": "unit-police-04", "t": t, "lon": CHEN_YI_SQUARE[0], "lat": CHEN_YI_SQUARE[1],
                 "speed_kmh": 3.0, "course": 90.0, "crs": "WGS84"}).encode())
            stop.wait(0.2)

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        with connect(f"ws://127.0.0.1:{handle.port}/ws", open_timeout=10) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "snapshot"
            feeder.start()
            deadline = time.monotonic() + 60
            event: dict = {}
            while time.monotonic() < deadline and event.get("kind") != "raised":
                event = json.loads(ws.recv(timeout=30))
            ident = event["feature"]["id"]
            status, body = _post(f"{handle.url}/api/alerts/{ident}/ack", {"operator": "Li Wei", "note": "on it"},
                                 TOKEN)
            assert status == 200 and not body["already"]
            retained = wait_for(lambda: [m for m in observer.json_on(f"city/alerts/{ident}")
                                         if m["identifier"] == f"{ident}.ack1"], 20, "the acknowledged CAP")[-1]
            params = {p["valueName"]: p["value"] for p in info_block(retained, "en-US")["parameter"]}
            assert params["acknowledgedBy"] == "Li Wei" and retained["note"].endswith("on it")
            assert {"actor": "Li Wei", "kind": "operator"}.items() <= svc.store.acks(ident)[0].items()
            mqtt_status = wait_for(lambda: observer.json_on("city/twin/status"), 10, "status")[-1]
            status, api_status = _get(f"{handle.url}/api/status")
            assert api_status["received"] >= mqtt_status["received"] > 0
    finally:
        stop.set()
        feeder.join(5)
        handle.stop()
        observer.close()
        svc.stop()
