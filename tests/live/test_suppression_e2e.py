"""Silences and inhibition end to end through a real Mosquitto (issue 16).

One crowd counter (Chen Yi Square, ``crowd-bund-05``) reports a dense, steady crowd; a police unit stands in the
square. A silence on crowd alerts at that place, made before the crowd builds up:

- the observed crowd alert is raised, stored and published (retained) on ``city/alerts/{id}`` with CAP scope
  Public, but nothing of it reaches ``city/units/unit-police-04/alerts``; the live state says why;
- once the silence is expired, the unit gets the alert's current message, with scope Restricted;
- with a rules file (``CoreConfig.output.inhibit_rules``, ``twin run --inhibit``) saying that an alert at the
  square inhibits one on the promenade next to it, the promenade's crowd alert (the square's counter covers part
  of it) is published but not delivered, and the live state names the rule and the source alert.
"""

from __future__ import annotations

import time

import pytest

from tests.live.conftest import REGISTRY, CrowdFeed, Observer, wait_for
from twin.alerting.cap import info_block
from twin.live.alert_output import OutputConfig
from twin.live.core import CoreConfig
from twin.live.query import LiveQuery
from twin.live.service import LiveService, ServiceConfig

pytestmark = pytest.mark.slow

CHEN_YI_SQUARE = (121.4855, 31.2405)
SQUARE = "crowd-bund-05"
PLACE = f"crowd:area:{SQUARE}"
NEIGHBOUR = "crowd:area:crowd-bund-04"  # the Bank of China promenade section, which the square's counter also covers
RULES = """
inhibit_rules:
  - name: square-covers-promenade
    source_matchers: ['place="crowd:area:crowd-bund-05"']
    target_matchers: ['place="crowd:area:crowd-bund-04"']
    equal: [hazard]
"""
UNIT = "unit-police-04"


def _hazard(message: dict) -> str:
    return {p["valueName"]: p["value"] for p in info_block(message)["parameter"]}["hazard"]


def _raised(observer: Observer, hazard: str) -> list[dict]:
    return [m for m in observer.json_on("city/alerts/") if m["msgType"] == "Alert" and _hazard(m) == hazard]


def _at_unit(observer: Observer, ident: str) -> list[dict]:
    return [m for m in observer.json_on(f"city/units/{UNIT}/alerts") if m["identifier"].startswith(ident)]


def test_silenced_and_inhibited_alerts_are_published_not_delivered(broker, observer, bund_file, tmp_path):
    rules = tmp_path / "inhibit.yaml"
    rules.write_text(RULES, encoding="utf-8")
    svc = LiveService(ServiceConfig(broker=broker.url, grid=bund_file, registry=REGISTRY,
                                    state_dir=tmp_path / "state", tick_s=0.2, client_id="twin-silences",
                                    core=CoreConfig(tick_s=0.2, clear_s=0.4,
                                                    output=OutputConfig(inhibit_rules=str(rules)))))
    assert svc.start(10)
    crowd = CrowdFeed(observer, {UNIT: CHEN_YI_SQUARE}, square=SQUARE)
    crowd.thread.start()
    query = LiveQuery(svc)
    try:
        wait_for(lambda: svc.core.status()["units_tracked"] >= 1, 20, "the unit located")
        silence = query.silences().create([("hazard", "=", "crowd"), ("place", "=", PLACE)], time.time() + 3600,
                                          "Wang Fang", "stewards already on site", time.time())
        crowd.count = 25000.0  # about 3.7 person/m2 over the counter's walkable area
        ident = wait_for(lambda: [i for i, v in query.alert_live().items()
                                  if v["place"] == PLACE and i.split(".")[2] == "crowd"], 30,
                         "the observed crowd alert of the square")[0]
        alert = wait_for(lambda: [m for m in _raised(observer, "crowd") if m["identifier"] == ident], 10,
                         "its Alert on the broker")[0]
        assert alert["scope"] == "Public" and "restriction" not in alert
        live = query.alert_live()[ident]
        assert live["suppressed"]["by"] == "silence" and live["suppressed"]["id"] == silence.id
        assert live["place"] == PLACE and live["value"] > 1.0, live
        assert [a["identifier"] for a in svc.store.alerts("active")].count(ident) == 1, "recorded"
        # the promenade next to the square: inhibited by the square's alert (the test's rules file)
        neighbour = wait_for(lambda: [i for i, v in query.alert_live().items() if v["place"] == NEIGHBOUR
                                      and i.split(".")[2] == "crowd"], 30, "the promenade's crowd alert")[0]
        why = wait_for(lambda: query.alert_live()[neighbour]["suppressed"], 10, "the promenade's alert inhibited")
        assert why["by"] == "inhibition" and why["id"] == ident and "square-covers-promenade" in why["reason"]
        assert [m for m in _raised(observer, "crowd") if m["identifier"] == neighbour], "published all the same"
        observer.sync()
        assert _at_unit(observer, ident) == [], "a silenced alert is not delivered"
        assert _at_unit(observer, neighbour) == [], "an inhibited alert is not delivered"
        # end the silence: the unit gets the current message, restricted
        query.silences().expire(silence.id, "Wang Fang", "stewards left", time.time())
        got = wait_for(lambda: _at_unit(observer, ident), 15, "the alert at the unit after the silence")
        assert got[0]["scope"] == "Restricted" and got[0]["restriction"]
        assert query.alert_live()[ident]["suppressed"] is None
        audit = [row["action"] for row in query.silences().audit(silence.id)]
        assert audit == ["create", "expire"]
    finally:
        crowd.close()
        svc.stop()
