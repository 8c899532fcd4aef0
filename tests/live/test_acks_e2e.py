"""Acknowledgements end to end through a real Mosquitto (issue 13).

- An operator's acknowledgement over HTTP survives a SIGKILL of ``twin run``. The next Update still lists
  ``acknowledgedBy``, and the same operator's second acknowledgement answers ``already``.
- A unit may acknowledge only an alert it was sent. Otherwise it gets an answer on
  ``city/units/{id}/ack/errors`` and a dead letter is sent (counted), and nothing is stored.
- ``city/twin/status`` carries ``alarms``.
"""

from __future__ import annotations

import base64
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.live.conftest import REGISTRY, CrowdFeed, Observer, wait_for
from tests.support.checkout import checkout_env
from twin.alerting.cap import info_block
from twin.alerting.compose import acknowledged_by
from twin.live.core import CoreConfig
from twin.live.query import AckUnavailableError, LiveQuery
from twin.live.service import LiveService, ServiceConfig

pytestmark = pytest.mark.slow

CHEN_YI_SQUARE = (121.4855, 31.2405)
LUJIAZUI = (121.5100, 31.2380)  # across the river, 1.8 km away
TOKEN = "acks-e2e-token-0123456789"


def _alerts(observer: Observer) -> list[dict]:
    """The observed crowd alerts raised so far (a rising crowd also raises forecast alerts, `crowd_forecast`)."""
    return [m for m in observer.json_on("city/alerts/") if m["msgType"] == "Alert"
            and {"valueName": "hazard", "value": "crowd"} in info_block(m, "en-US")["parameter"]]


def _unit_ack(observer: Observer, unit: str, alert: str, status: str = "ack") -> bytes:
    """Publish a unit's acknowledgement; returns its payload."""
    payload = json.dumps({"alert": alert, "status": status, "t": round(time.time(), 3)}).encode()
    observer.publish(f"city/units/{unit}/ack", payload)
    return payload


def test_units_acknowledge_only_alerts_they_were_sent_and_hear_why_not(broker, observer, bund_file, tmp_path):
    svc = LiveService(ServiceConfig(broker=broker.url, grid=bund_file, registry=REGISTRY,
                                    state_dir=tmp_path / "state", tick_s=0.2, client_id="twin-acks",
                                    core=CoreConfig(tick_s=0.2, clear_s=0.4)))
    assert svc.start(10)
    crowd = CrowdFeed(observer, {"unit-police-04": CHEN_YI_SQUARE, "unit-fire-05": LUJIAZUI},
                      square="crowd-bund-05")
    crowd.thread.start()
    try:
        wait_for(lambda: svc.core.status()["units_tracked"] >= 2, 20, "both units located")
        crowd.count = 40000.0
        ident = wait_for(lambda: _alerts(observer), 30, "a crowd alert")[0]["identifier"]
        wait_for(lambda: observer.on("city/units/unit-police-04/alerts"), 10, "the alert at unit-police-04")
        # an operator, through the running ingest thread: applied, published, and "already" the second time
        query = LiveQuery(svc)
        event = query.acknowledge(ident, "Li Wei", "stewards sent")
        assert event.message["identifier"] == f"{ident}.ack1"
        assert query.acknowledge(ident, "Li Wei") is None
        wait_for(lambda: [m for m in observer.json_on(f"city/alerts/{ident}") if acknowledged_by(m) == ["Li Wei"]],
                 10, "the acknowledged Update on the broker")
        # units: across the river (never sent it), a message identifier, then the right one
        sent = {_unit_ack(observer, "unit-fire-05", ident), _unit_ack(observer, "unit-police-04", f"{ident}.ack1")}
        _unit_ack(observer, "unit-police-04", ident)
        wait_for(lambda: [a for a in svc.store.acks(ident) if a["kind"] == "unit"]
                 and len(observer.json_on("/ack/errors")) >= 2, 10, "the unit's stored ack and two answers")
        [fire] = observer.json_on("city/units/unit-fire-05/ack/errors")
        assert fire["alert"] == ident and fire["status"] == "ack" and fire["error"] == "not_sent"
        assert "never sent" in fire["detail"]
        [police] = observer.json_on("city/units/unit-police-04/ack/errors")
        assert police["alert"] == f"{ident}.ack1" and police["error"] == "unknown_alert"
        letters = wait_for(lambda: [d for d in observer.json_on("city/deadletter") if d["topic"].endswith("/ack")]
                           if len(observer.json_on("city/deadletter")) >= 2 else None, 10, "two dead letters")
        assert sorted((d["topic"], d["reason"], d["field"]) for d in letters) == [
            ("city/units/unit-fire-05/ack", "not_sent", "alert"),
            ("city/units/unit-police-04/ack", "unknown_alert", "alert")]
        assert {base64.b64decode(d["payload_b64"]) for d in letters} == sent, "the unit's own bytes, as logged"
        acks = [(a["actor"], a["kind"]) for a in svc.store.acks(ident)]
        assert acks == [("Li Wei", "operator"), ("unit-police-04", "unit")], "refused acks are stored nowhere"
        status = wait_for(lambda: [s for s in observer.json_on("city/twin/status")
                                   if s["rejected"]["not_sent"] + s["rejected"]["unknown_alert"] >= 2], 10,
                          "the counted refusals")[-1]
        assert status["rejected"]["not_sent"] == 1 == status["rejected"]["unknown_alert"]
        assert status["rejected"]["identity_mismatch"] == 0 and status["alarms"]["session_taken_over"] == 0
        observer.sync()
        assert len(observer.json_on("/ack/errors")) == 2, "no answer to the accepted ack"
    finally:
        crowd.close()
        svc.stop()
    with pytest.raises(AckUnavailableError, match="stopped"):
        LiveQuery(svc).acknowledge(ident, "Zhao Min")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post_ack(port: int, ident: str, operator: str) -> tuple[int, dict]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/alerts/{ident}/ack", method="POST",
                                 data=json.dumps({"operator": operator}).encode(),
                                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_an_operators_ack_survives_sigkill_and_the_next_update_lists_it(broker, observer, bund_file, tmp_path):
    state, port, env = tmp_path / "state", _free_port(), checkout_env(PYTHONUNBUFFERED="1")
    # one snapshot only (at the first tick): after the kill, the acknowledgement can come back only from the log
    cmd = [sys.executable, "-m", "twin.cli", "run", "--broker", broker.url, "--grid", str(bund_file), "--state",
           str(state), "--tick", "0.2", "--snapshot-every", "3600", "--client-id", "twin-acks-kill",
           "--http", str(port), "--http-token", TOKEN]
    crowd = CrowdFeed(observer, {"unit-police-04": CHEN_YI_SQUARE})
    with open(tmp_path / "first.log", "w") as first_log:
        first = subprocess.Popen(cmd, env=env, stdout=first_log, stderr=subprocess.STDOUT, text=True)
    second = None
    try:
        wait_for(lambda: _up(port), 60, lambda: f"the first service's HTTP API: {(tmp_path / 'first.log').read_text()}")
        crowd.thread.start()
        crowd.count = 40000.0
        ident = wait_for(lambda: _alerts(observer), 60, "a crowd alert")[0]["identifier"]
        code, body = _post_ack(port, ident, "Li Wei")
        assert code == 200 and body["already"] is False and body["message"].startswith(f"{ident}.ack"), body
        first.send_signal(signal.SIGKILL)  # right after the answer: no snapshot holds the acknowledgement
        first.wait(10)
        before = {m["identifier"] for m in observer.json_on(f"city/alerts/{ident}")}
        second = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: _up(port), 60, "the second service's HTTP API")
        code, again = _post_ack(port, ident, "Li Wei")
        assert code == 200 and again["already"] is True and again["message"] is None, again
        assert again["t"] == body["t"], "the time of the first acknowledgement"
        crowd.count = 100.0  # the crowd disperses: the alert changes, then clears
        later = wait_for(lambda: [m for m in observer.json_on(f"city/alerts/{ident}")
                                  if m["identifier"] not in before and m["msgType"] in ("Update", "Cancel")],
                         90, "a new message of the alert after the restart")
        assert acknowledged_by(later[0]) == ["Li Wei"], later[0]["identifier"]
    finally:
        crowd.close()
        if first.poll() is None:
            first.kill()
        if second is not None:
            second.send_signal(signal.SIGTERM)
            out, _ = second.communicate(timeout=60)
            assert second.returncode == 0, out
            assert "recovered: last snapshot loaded" in out
