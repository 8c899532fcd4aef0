"""The case loop end to end through a real Mosquitto (issue 17).

Chen Yi Square's counter reports a dense crowd; a rules file opens cases only for the square's crowd alerts. The
twin opens a case and sends its task to the nearest police unit on ``city/units/{unit}/tasks``; the unit answers on
``city/units/{unit}/tasks/status`` (another unit's answer is refused: an answer on its ``tasks/errors`` topic and a
dead letter); its Beidou position inside the square puts the case on scene; it reports the case disposed; a
citizen report on ``city/reports/12345`` near the promenade opens a case of its own, linked to the promenade's
alert and sent to the nearest free police unit; the crowd goes, the alert is cancelled, and the sensors verify and close
the square's case. Every state is retained on ``city/cases/{case}``.
"""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from models.config import AlertTiming, CrowdConfig, RiskConfig
from tests.live.conftest import REGISTRY, CrowdFeed, Observer, wait_for
from twin.cases.model import CaseError
from twin.live.case_desk import CaseConfig
from twin.live.core import CoreConfig
from twin.live.models import LiveConfig
from twin.live.query import LiveQuery
from twin.live.service import LiveService, ServiceConfig

pytestmark = pytest.mark.slow

SQUARE = "crowd-bund-05"
CHEN_YI_SQUARE = (121.4859, 31.2405)
POLICE, OTHER_POLICE = "unit-police-04", "unit-police-01"
START = {POLICE: (121.4880, 31.2380), OTHER_POLICE: (121.48217, 31.23675)}
PROMENADE_POINT = (121.4861, 31.2419)
RULES = """
case_rules:
  - name: chen-yi-square-crowd
    hazard: crowd
    min_level: yellow
    place: "crowd:area:crowd-bund-05"
    category: crowd_safety
    priority: {yellow: 2, orange: 1, red: 1}
"""
FAST_CLEAR = RiskConfig(crowd=dataclasses.replace(CrowdConfig(), timing=AlertTiming(keep_s=0.5)))
"""Levels step down after half a second (not 10 s): the test sees the alert cancelled in seconds."""


def _answer(observer: Observer, unit: str, case: str, status: str, note: str = "") -> bytes:
    doc = {"case": case, "status": status, "t": round(time.time(), 3), **({"note": note} if note else {})}
    payload = json.dumps(doc, ensure_ascii=False).encode()
    assert observer.publish(f"city/units/{unit}/tasks/status", payload)
    return payload


def _on(observer: Observer, topic: str) -> list[dict]:
    """The JSON messages on exactly ``topic`` (`Observer.json_on` matches parts of topics)."""
    with observer.lock:
        return [json.loads(p) for t, p, _ in observer.messages if t == topic and p]


def _states(observer: Observer, case: str) -> list[dict]:
    return _on(observer, f"city/cases/{case}")


def _reached(observer: Observer, case: str, status: str) -> list[dict]:
    return [s for s in _states(observer, case) if s["status"] == status]


def test_the_disposal_loop_over_mqtt(broker, observer, bund_file, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    cases = CaseConfig(rules=str(rules), verify_s=1.0)
    svc = LiveService(ServiceConfig(broker=broker.url, grid=bund_file, registry=REGISTRY,
                                    state_dir=tmp_path / "state", tick_s=0.2, client_id="twin-cases",
                                    core=CoreConfig(tick_s=0.2, clear_s=0.4, live=LiveConfig(risk=FAST_CLEAR),
                                                    cases=cases)))
    assert svc.start(10)
    crowd = CrowdFeed(observer, dict(START), square=SQUARE)
    crowd.thread.start()
    query = LiveQuery(svc)
    try:
        wait_for(lambda: svc.core.status()["units_tracked"] >= 2, 20, "both police units located")
        crowd.count = 40000.0
        task = wait_for(lambda: _on(observer, f"city/units/{POLICE}/tasks"), 30, "the task at the nearest unit")[0]
        case = task["case"]
        assert task["status"] == "dispatched" and task["category"] == "crowd_safety"
        assert task["summary_zh"].endswith("人群拥挤 陈毅广场：请前往处置") and "Chen Yi Square" in task["summary_en"]
        wait_for(lambda: _reached(observer, case, "dispatched"), 10, "the case dispatched on city/cases")
        # another unit's answer: refused, answered and dead-lettered
        wrong = _answer(observer, OTHER_POLICE, case, "accepted")
        error = wait_for(lambda: _on(observer, f"city/units/{OTHER_POLICE}/tasks/errors"), 10,
                         "the refusal on the unit's errors topic")[0]
        assert (error["case"], error["status"], error["error"]) == (case, "accepted", "not_assigned")
        letter = wait_for(lambda: [d for d in observer.json_on("city/deadletter")
                                   if d["topic"] == f"city/units/{OTHER_POLICE}/tasks/status"], 10, "its dead letter")
        assert letter[0]["reason"] == "not_assigned" and letter[0]["field"] == "case"
        assert "payload_b64" in letter[0] and wrong
        # the unit accepts and goes; its Beidou position in the square puts it on scene
        _answer(observer, POLICE, case, "accepted", "收到")
        _answer(observer, POLICE, case, "en_route")
        wait_for(lambda: _reached(observer, case, "en_route"), 10, "en route on city/cases")
        crowd.units[POLICE] = CHEN_YI_SQUARE
        on_scene = wait_for(lambda: _reached(observer, case, "on_scene"), 15, "on scene on city/cases")[0]
        assert on_scene["assignee"] == POLICE
        assert ("on_scene", "beidou") in [(e["kind"], e["actor"]) for e in query.case(case)["events"]]
        _answer(observer, POLICE, case, "disposed", "人群已疏导")
        wait_for(lambda: _reached(observer, case, "disposed"), 10, "disposed on city/cases")
        # a citizen report near the promenade: a case of its own, linked to the promenade's alert
        lon, lat = PROMENADE_POINT
        doc = {"id": "e2e-1", "t": round(time.time(), 3), "category": "crowd_safety", "lon": lon, "lat": lat,
               "datum": "WGS84", "description": "外滩人太多 / too crowded", "contact": "138-0000-0000"}
        assert observer.publish("city/reports/12345", json.dumps(doc, ensure_ascii=False).encode())
        stored = wait_for(lambda: query.report("R-12345-e2e-1"), 10, "the report stored")
        report_case = stored["case"]
        assert report_case != case and "contact" not in stored
        state = wait_for(lambda: [s for s in _states(observer, report_case) if s["status"] == "dispatched"], 10,
                         "the report's case dispatched")[0]
        assert state["source"] == "report" and state["reports"] == ["R-12345-e2e-1"] and len(state["alerts"]) == 1
        assert state["assignee"] == POLICE, "the unit that disposed of its case is free again, and the nearest"
        second = wait_for(lambda: _on(observer, f"city/units/{POLICE}/tasks")[1:], 10, "the report case's task")
        assert second[0]["case"] == report_case and second[0]["summary_zh"].endswith("：请前往处置")
        # an operator's note through the running service, and a refused action
        noted = query.case_command("note", {"case": report_case, "actor": "王芳", "reason": "已电话回访"})
        assert noted["case"]["n_events"] == state["n_events"] + 1
        with pytest.raises(CaseError) as err:
            query.case_command("transition", {"case": report_case, "kind": "closed", "actor": "王芳"})
        assert err.value.code == "bad_transition"
        # the crowd goes: the alert is cancelled, the sensors verify, the twin closes the case
        crowd.count = 100.0
        closed = wait_for(lambda: _reached(observer, case, "closed"), 60, "the square's case closed")[0]
        assert [(e["kind"], e["actor"]) for e in query.case(case)["events"]][-2:] == [("verified", "sensors"),
                                                                                      ("closed", "twin")]
        assert closed["open"] is False
        observer.sync()
        published = [p.decode(errors="replace") for t, p, _ in observer.messages if not t.startswith("city/reports/")]
        assert not any("138-0000" in p for p in published), "the reporter's contact is published nowhere"
    finally:
        crowd.close()
        svc.stop()
    # the last state of every case stays retained
    late = Observer(broker.port, "city/cases/#")
    try:
        late.sync()
        retained = {t: (json.loads(p), r) for t, p, r in late.messages}
        assert retained[f"city/cases/{case}"][1] and retained[f"city/cases/{case}"][0]["status"] == "closed"
        assert retained[f"city/cases/{report_case}"][0]["status"] == "dispatched"
    finally:
        late.close()
