"""The case loop inside the live core, without a broker (issue 17): batches, ticks and case actions in, case
events, stored reports and outbox messages out.

The Bund at 10 m; Chen Yi Square's counter (``crowd-bund-05``) reports a dense crowd; a rules file opens cases only
for the square's crowd alerts (the promenade next to it gets an alert of its own, which opens no case), so each test
has one alert case. Twin time runs in ticks of 10 s from ``T0``.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.decoders.report import report_records
from ingest.decoders.units import TASK_STATUSES
from ingest.registry import load_registry
from twin.alerting.cap import LEVEL_COLOUR_ZH
from twin.alerting.lifecycle import AlertEvent
from twin.alerting.store import Store
from twin.cases.model import STATUSES, CaseError, CaseEvent, fold
from twin.district import geo
from twin.district.sources import data_dir
from twin.live import snapshot
from twin.live.case_desk import CaseConfig
from twin.live.core import CoreConfig, TwinCore

T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z, 08:00 in Shanghai
SQUARE = "crowd-bund-05"
SQUARE_KEY = "crowd:area:crowd-bund-05"
CHEN_YI_SQUARE = (121.4859, 31.2405)  # inside the square's counter area
POLICE, OTHER_POLICE, FIRE = "unit-police-04", "unit-police-01", "unit-fire-05"
START = {POLICE: (121.4880, 31.2380),          # 330 m south-east of the square, the nearest police unit
         OTHER_POLICE: (121.48217, 31.23675),  # 550 m away
         FIRE: (121.4857, 31.2402)}            # at the square: nearer, but not on duty for crowding
PROMENADE_POINT = (121.4861, 31.2419)  # the Bank of China promenade, 160 m north of the square's centre
RULES = """
case_rules:
  - name: chen-yi-square-crowd
    hazard: crowd
    min_level: yellow
    place: "crowd:area:crowd-bund-05"
    category: crowd_safety
    priority: {yellow: 2, orange: 1, red: 1}
    dispatch: auto
    verify: sensors
"""
VERIFY_S = 60.0


@pytest.fixture(scope="module")
def registry():
    return load_registry(data_dir() / "bund" / "registry.geojson")


@pytest.fixture
def rules(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return path


def make_core(bund10, registry, rules, store=None) -> TwinCore:
    ds, _ = bund10
    return TwinCore(ds, registry, store or Store.open(":memory:"),
                    CoreConfig(clear_s=20.0, cases=CaseConfig(rules=str(rules), verify_s=VERIFY_S)))


@pytest.fixture
def core(bund10, registry, rules):
    c = make_core(bund10, registry, rules)
    yield c
    c.store.close()


# ---------------------------------------------------------------- inputs
def crowd(registry, t, count):
    ids = [d.id for d in registry.of_kind("crowd")]
    values = [float(count) if d == SQUARE else 300.0 for d in ids]
    return Batch.build(len(ids), device=np.array(ids, dtype=object), t=t, quantity="count", value=np.array(values))


def positions(t, units):
    ids = sorted(units)
    return Batch.build(len(ids), device=np.array(ids, dtype=object), t=t, quantity="position",
                       lon=np.array([units[u][0] for u in ids]), lat=np.array([units[u][1] for u in ids]),
                       datum="CGCS2000")


def answers(t, rows):
    """Task answers: rows of (unit, case, status[, note])."""
    rows = [(*r, "")[:4] for r in rows]
    return Batch.build(len(rows), device=np.array([r[0] for r in rows], dtype=object), t=t,
                       quantity=np.array([f"task_{r[2]}" for r in rows], dtype=object),
                       ref=np.array([r[1] for r in rows], dtype=object),
                       note=np.array([r[3] for r in rows], dtype=object))


def report(source, ident, t, lon, lat, category="crowd_safety", **extra) -> Batch:
    doc = {"id": ident, "t": t, "category": category, "lon": lon, "lat": lat, "description": "人很多 / very crowded",
           **extra}
    return report_records(doc, source=source)


class Run:
    """Ticks of 10 s with the square's crowd and the units' positions every tick; ``log`` keeps every input, so a
    test can replay them."""

    def __init__(self, core, registry, units=None):
        self.core, self.registry, self.k = core, registry, 0
        self.units = dict(START if units is None else units)
        self.log: list[tuple] = []

    @property
    def t(self) -> float:
        return T0 + 10.0 * self.k

    def apply(self, op):
        self.log.append(op)
        return do(self.core, op)

    def ticks(self, count, n, until=None):
        """``n`` ticks at ``count`` people on the square (fewer if ``until(report)``); the tick reports."""
        out = []
        for _ in range(n):
            self.k += 1
            self.apply(("batch", crowd(self.registry, self.t, count)))
            if self.units:
                self.apply(("batch", positions(self.t, self.units)))
            out.append(self.apply(("tick", self.t)))
            if until is not None and until(out[-1]):
                break
        return out

    def batch(self, batch):
        return self.apply(("batch", batch))

    def command(self, action, body):
        return self.apply(("command", action, body, self.t + 1.0))


def do(core, op):
    if op[0] == "batch":
        return core.on_batch(op[1])
    if op[0] == "tick":
        return core.on_tick(op[1])
    return core.case_command(op[1], op[2], now=op[3])


def square_case(run) -> dict:
    """Bring the square's crowd to red: its alert opens a case, dispatched at once."""
    run.ticks(300, 2)
    reports = run.ticks(40000, 8, until=lambda r: any(e["kind"] == "dispatched" for e in r.case_events))
    assert any(e["kind"] == "dispatched" for e in reports[-1].case_events), "the square's case dispatched"
    [case] = run.core.cases()
    return case


def outbox(core, topic_part):
    return [(i.topic, json.loads(i.payload), i.retain) for i in core.store.pending(100000)
            if topic_part in i.topic and i.payload]


def kinds(core, case_id):
    return [(e["kind"], e["actor"]) for e in core.case(case_id)["events"]]


# ---------------------------------------------------------------- the loop
def test_an_alert_case_goes_from_dispatch_to_closed_by_the_sensors(core, registry):
    run = Run(core, registry)
    case = square_case(run)
    alert = core.active_alerts()
    [square_alert] = [a for a in alert if a.identifier in case["alerts"]]
    assert square_alert.hazard == "crowd" and square_alert.level == 4
    assert (case["category"], case["priority"], case["source"], case["verify"]) == ("crowd_safety", 1, "alert",
                                                                                     "sensors")
    assert case["place"]["key"] == SQUARE_KEY and case["place"]["name_zh"] == "陈毅广场"
    assert case["status"] == "dispatched" and case["assignee"] == POLICE, "the nearest police unit, not the fire unit"
    assert len(core.cases()) == 1, "the promenade's alert opens no case (rules file)"
    # the task, in the outbox, to the unit only
    [(topic, task, retain)] = outbox(core, "/tasks")
    assert topic == f"city/units/{POLICE}/tasks" and not retain
    assert task["case"] == case["id"] and task["status"] == "dispatched" and task["kind"] == "task"
    assert task["summary_zh"] == f"{LEVEL_COLOUR_ZH[4]} 人群拥挤 陈毅广场：请前往处置"
    assert task["summary_en"] == "Red crowding at Chen Yi Square: please go and deal with it"
    assert set(task["deadlines"]) == {"accept", "on_scene"} and task["place"] == case["place"]
    assert task["deadlines"]["accept"] == case["opened_at"] + 120.0, "priority 1: accept within 2 min"
    # the unit answers
    assert run.batch(answers(run.t + 1, [(POLICE, case["id"], "accepted", "收到")])) == []
    assert run.batch(answers(run.t + 2, [(POLICE, case["id"], "en_route")])) == []
    assert core.case(case["id"])["status"] == "en_route"
    # its Beidou position inside the square: on scene, confirmed by the twin
    run.units[POLICE] = CHEN_YI_SQUARE
    report = run.ticks(40000, 1)[0]
    assert [(e["kind"], e["actor"], e["status"]) for e in report.case_events] == [
        ("accepted", POLICE, "accepted"), ("en_route", POLICE, "en_route"), ("on_scene", "beidou", "on_scene")], \
        "the tick reports the case events since the tick before"
    assert run.batch(answers(run.t + 1, [(POLICE, case["id"], "disposed", "人群已疏导")])) == []
    # the crowd goes: the alert is cancelled, and the sensors verify once it has been clear for VERIFY_S
    reports = run.ticks(100, 60, until=lambda r: any(e["kind"] == "closed" for e in r.case_events))
    cancelled = next(r.t for r in reports if any(e.kind == "cancelled" and e.alert.identifier ==
                                                 square_alert.identifier for e in r.events))
    verified = next(r for r in reports if any(e["kind"] == "verified" for e in r.case_events))
    assert verified.t - cancelled >= VERIFY_S and verified.t - cancelled < VERIFY_S + 10.0
    done = core.case(case["id"])
    assert done["status"] == "closed" and not done["open"] and done["overdue"] == []
    assert kinds(core, case["id"]) == [
        ("opened", "twin"), ("linked", "twin"), ("dispatched", "twin"), ("accepted", POLICE), ("en_route", POLICE),
        ("on_scene", "beidou"), ("disposed", POLICE), ("verified", "sensors"), ("closed", "twin")]
    assert done["events"][-1]["reason"].startswith("verified by the sensors")
    assert done["events"][6]["reason"] == f"{POLICE}: 人群已疏导"
    # audit == state: the stored events are the case's
    assert [e["key"] for e in core.store.case_events(case["id"])] == [f"{case['id']}#{n}" for n in range(9)]
    # the retained case states, one per event, the last one closed
    states = outbox(core, f"city/cases/{case['id']}")
    assert len(states) == 9 and all(retain for _, _, retain in states)
    assert states[-1][1]["status"] == "closed" and states[-1][1]["n_events"] == 9
    assert outbox(core, "supervisor/escalations") == [], "every step in time"
    assert core.case_reads("ledger")["totals"] == {"opened": 1, "closed": 1, "cancelled": 0, "open": 0,
                                                        "overdue": 0}


def test_refused_task_answers_and_an_unconfirmed_on_scene_claim(core, registry):
    run = Run(core, registry)
    case = square_case(run)
    cid = case["id"]
    refused = run.batch(answers(run.t + 1, [(POLICE, "bund-20250101-9999", "accepted"),
                                            (OTHER_POLICE, cid, "accepted"),
                                            (POLICE, cid, "disposed"),
                                            (POLICE, cid, "accepted")]))
    assert [(r.reason, r.device, r.case, r.status, r.row, r.field) for r in refused] == [
        ("unknown_case", POLICE, "bund-20250101-9999", "accepted", 0, "case"),
        ("not_assigned", OTHER_POLICE, cid, "accepted", 1, "case"),
        ("bad_transition", POLICE, cid, "disposed", 2, "status")]
    assert all(r.is_task and not r.is_ack for r in refused)
    assert "unknown case" in refused[0].detail and f"assigned to {POLICE}" in refused[1].detail
    assert "disposed is allowed only from on_scene" in refused[2].detail
    assert core.desk.refused == {"unknown_case": 1, "not_assigned": 1, "bad_transition": 1}
    assert core.case(cid)["status"] == "accepted", "the good answer of the batch is applied"
    # on scene, says the unit 330 m away: noted, not applied, and told why on its errors topic
    assert run.batch(answers(run.t + 2, [(POLICE, cid, "on_scene")])) == []
    after = core.case(cid)
    assert after["status"] == "accepted" and after["events"][-1]["kind"] == "noted"
    reason = after["events"][-1]["reason"]
    away = float(re.search(r"on scene claimed (\d+) m away, not confirmed", reason).group(1))
    x, y = geo.to_projected(np.array([START[POLICE][0], case["place"]["lon"]]),
                            np.array([START[POLICE][1], case["place"]["lat"]]))
    assert 50.0 < away <= np.hypot(*np.diff([x, y], axis=1).ravel()) - case["place"]["radius_m"] + 1.0
    [(topic, error, _)] = outbox(core, "/tasks/errors")
    assert topic == f"city/units/{POLICE}/tasks/errors"
    assert (error["case"], error["status"], error["error"]) == (cid, "on_scene", "not_confirmed")
    assert error["detail"] == reason
    # an answer the case has reached already (on scene by Beidou first) is noted, not refused
    run.units[POLICE] = CHEN_YI_SQUARE
    run.ticks(40000, 1)
    assert core.case(cid)["status"] == "on_scene"
    assert run.batch(answers(run.t + 1, [(POLICE, cid, "on_scene")])) == []
    last = core.case(cid)["events"][-1]
    assert last["kind"] == "noted" and "already" in last["reason"]
    # a unit that declines puts the case back to new: the next free police unit is sent
    refused = run.batch(answers(run.t + 2, [(POLICE, cid, "declined")]))
    assert [r.reason for r in refused] == ["bad_transition"], "no declining once on scene"


def test_a_declined_task_goes_to_the_next_free_unit_and_the_first_hears_it_is_withdrawn(core, registry):
    run = Run(core, registry)
    cid = square_case(run)["id"]
    assert run.batch(answers(run.t + 1, [(POLICE, cid, "declined", "车辆故障")])) == []
    assert core.case(cid)["status"] == "new"
    run.ticks(40000, 1)
    case = core.case(cid)
    assert case["status"] == "dispatched" and case["assignee"] == OTHER_POLICE, "the decliner is not sent again"
    tasks = outbox(core, "/tasks")
    assert [(t.split("/")[2], p["status"]) for t, p, _ in tasks] == [(POLICE, "dispatched"),
                                                                     (OTHER_POLICE, "dispatched")]
    # the operator reassigns it to the first unit: the second one's task is withdrawn
    result = run.command("dispatch", {"case": cid, "unit": POLICE, "actor": "王芳", "reason": "车辆已修好"})
    assert result["case"]["assignee"] == POLICE
    withdrawn = outbox(core, "/tasks")[-2]
    assert withdrawn[0] == f"city/units/{OTHER_POLICE}/tasks" and withdrawn[1]["status"] == "cancelled"
    assert withdrawn[1]["summary_zh"].startswith("任务已撤回")
    assert core.case_suggestions(cid)[0]["unit"] == OTHER_POLICE, "the busy assignee is not suggested"


def test_an_operator_declining_for_the_unit_does_not_send_the_same_unit_again(core, registry):
    run = Run(core, registry)
    cid = square_case(run)["id"]
    result = run.command("transition", {"case": cid, "kind": "declined", "actor": "王芳", "reason": "电话里说车坏了"})
    assert result["case"]["status"] == "new"
    assert core.case(cid)["events"][-1]["data"] == {"unit": POLICE}, "the assignee is the decliner"
    assert [s["unit"] for s in core.case_suggestions(cid)][:1] == [OTHER_POLICE]
    run.ticks(40000, 1)
    case = core.case(cid)
    assert case["status"] == "dispatched" and case["assignee"] == OTHER_POLICE, "the decliner is not sent again"


def test_an_alert_merged_into_another_is_not_the_hazard_cleared(core, registry):
    run = Run(core, registry)
    case = square_case(run)
    cid, [square] = case["id"], case["alerts"]
    [promenade] = [a.identifier for a in core.active_alerts() if a.identifier != square and a.hazard == "crowd"]
    run.units[POLICE] = CHEN_YI_SQUARE
    run.ticks(40000, 1)
    assert run.batch(answers(run.t + 1, [(POLICE, cid, "disposed")])) == []
    assert core.case(cid)["status"] == "disposed"
    # the alert book merges the square's alert into the promenade's (which has no case): as `_fade` does
    desk, t = core.desk, run.t + 10.0
    alert = desk.alerts.active.pop(square)
    desk._on_alert(AlertEvent("cancelled", alert, t, note=f"merged into {promenade}"), t)
    after = core.case(cid)
    assert after["alerts"] == [square, promenade], "the case takes the alert its alert merged into"
    assert after["events"][-1]["kind"] == "linked" and after["events"][-1]["data"] == {"alert": promenade}
    assert square not in desk.cleared, "a merge is not the hazard cleared"
    desk._verify(t + VERIFY_S + 100.0)
    assert core.case(cid)["status"] == "disposed", "verification waits for the alert it merged into"
    gone = desk.alerts.active.pop(promenade)
    desk._on_alert(AlertEvent("cancelled", gone, t + 200.0, note="conditions back below the clear thresholds"),
                   t + 200.0)
    desk._verify(t + 200.0 + VERIFY_S)
    assert core.case(cid)["status"] == "closed"


def test_a_stale_beidou_position_neither_suggests_the_unit_nor_puts_it_on_scene(core, registry):
    run = Run(core, registry, units={POLICE: CHEN_YI_SQUARE, OTHER_POLICE: START[OTHER_POLICE]})
    run.ticks(300, 1)
    run.units = {OTHER_POLICE: START[OTHER_POLICE]}  # the unit at the square goes silent
    run.ticks(300, 31)  # 310 s: its fix is older than position_max_age_s
    assert core.desk.config.position_max_age_s == 300.0
    cid = run.command("open", {"category": "crowd_safety", "lon": CHEN_YI_SQUARE[0], "lat": CHEN_YI_SQUARE[1],
                               "actor": "王芳"})["case"]["id"]
    assert [s["unit"] for s in core.case_suggestions(cid)] == [OTHER_POLICE], "the silent unit is not suggested"
    assert run.command("dispatch", {"case": cid, "actor": "王芳"})["case"]["assignee"] == OTHER_POLICE
    # the operator sends the silent unit anyway: its old position at the square does not put it on scene
    run.command("dispatch", {"case": cid, "unit": POLICE, "actor": "王芳"})
    run.ticks(300, 1)
    assert core.case(cid)["status"] == "dispatched", "no on scene by a stale position"
    assert run.batch(answers(run.t + 1, [(POLICE, cid, "on_scene")])) == []
    assert core.case(cid)["status"] == "dispatched" and core.case(cid)["events"][-1]["kind"] == "noted"
    # a fresh fix at the square does
    run.units[POLICE] = CHEN_YI_SQUARE
    run.ticks(300, 1)
    assert core.case(cid)["status"] == "on_scene"


def test_a_case_cancelled_as_a_false_alarm_stays_cancelled_while_its_alert_lasts(core, registry):
    run = Run(core, registry)
    case = square_case(run)
    cid = case["id"]
    result = run.command("transition", {"case": cid, "kind": "cancelled", "actor": "王芳",
                                        "reason": "演练，非真实人群 / a drill"})
    assert result["case"]["status"] == "cancelled" and result["case"]["open"] is False
    [(topic, withdrawn, _)] = outbox(core, "/tasks")[1:]
    assert topic == f"city/units/{POLICE}/tasks" and withdrawn["status"] == "cancelled"
    assert withdrawn["summary_en"].startswith("Task withdrawn") and "cancelled" in withdrawn["summary_en"]
    reports = run.ticks(20000, 6)  # the alert goes on, and is updated (its level steps down)
    assert any(e.kind == "updated" and e.alert.identifier in case["alerts"] for r in reports for e in r.events)
    assert [c["id"] for c in core.cases()] == [cid], "no second case for the same alert"


def test_overdue_steps_escalate_once_each(core, registry):
    run = Run(core, registry, units={})  # no unit located: nothing can be sent
    run.ticks(300, 1)
    opened = run.command("open", {"category": "medical", "priority": 1, "lon": 121.4862, "lat": 31.2388,
                                  "name_zh": "南京东路口", "name_en": "Nanjing Road East mouth", "actor": "王芳",
                                  "reason": "游客晕倒 / a visitor fainted"})
    cid = opened["case"]["id"]
    assert opened["case"]["status"] == "new" and opened["case"]["deadlines"] == {"dispatch": run.t + 1.0 + 120.0}
    run.ticks(300, 30)  # 300 s
    escalations = outbox(core, "supervisor/escalations")
    assert [(p["case"], p["step"], p["deadline"]) for _, p, _ in escalations] == [(cid, "dispatch",
                                                                                    run.t - 300 + 1 + 120)]
    text = escalations[0][1]
    assert "派遣超时" in text["text_zh"] and "overdue for dispatch" in text["text_en"]
    assert text["assignee"] == "" and text["place"]["name_en"] == "Nanjing Road East mouth"
    assert core.case(cid)["overdue"] == ["dispatch"] and core.case(cid)["escalated"] == ["dispatch"]
    # the operator sends an ambulance that never answers: acceptance escalates, once
    run.command("dispatch", {"case": cid, "unit": "unit-medical-10", "actor": "王芳"})
    run.ticks(300, 30)
    steps = [p["step"] for _, p, _ in outbox(core, "supervisor/escalations")]
    assert steps == ["dispatch", "accept"]
    assert [k for k, _ in kinds(core, cid)].count("escalated") == 2
    with pytest.raises(CaseError) as err:
        run.command("transition", {"case": cid, "kind": "verified", "actor": "王芳"})
    assert err.value.code == "bad_transition"


def test_reports_are_deduplicated_and_linked_to_a_live_alert(core, registry):
    run = Run(core, registry)
    square = square_case(run)
    promenade = [a for a in core.active_alerts() if a.identifier not in square["alerts"] and a.hazard == "crowd"]
    assert len(promenade) == 1, "the promenade's crowd alert, which opened no case"
    lon, lat = PROMENADE_POINT
    assert run.batch(report("12345", "r1", run.t, lon, lat, contact="138-0000-0000", address="中山东一路23号")) == []
    assert run.batch(report("12345", "r2", run.t + 5, lon + 0.0002, lat)) == []   # 19 m away: the same case
    assert run.batch(report("app", "r3", run.t + 6, *CHEN_YI_SQUARE)) == []       # at the square: the alert's case
    cases = {c["source"]: c for c in core.cases()}
    new = cases["report"]
    assert new["reports"] == ["R-12345-r1", "R-12345-r2"] and new["alerts"] == [promenade[0].identifier]
    assert (new["category"], new["priority"], new["verify"]) == ("crowd_safety", 1, "manual")
    assert new["status"] == "dispatched" and new["assignee"] == OTHER_POLICE, "the nearest free police unit"
    assert new["place"]["name_zh"] == "中山东一路23号"
    assert cases["alert"]["reports"] == ["R-app-r3"]
    stored = core.case_reads("report", "R-12345-r1")
    assert stored["case"] == new["id"] and stored["case_status"] == "dispatched" and "contact" not in stored
    assert core.store.report("R-12345-r1")["body"]["contact"] == "138-0000-0000", "stored, never shown"
    assert [r["id"] for r in core.case_reads("reports", 10)] == ["R-app-r3", "R-12345-r2", "R-12345-r1"]
    assert not any("138-0000" in json.dumps(p, ensure_ascii=False) for _, p, _ in outbox(core, "city/"))
    # the same report again adds nothing
    assert run.batch(report("12345", "r1", run.t + 7, lon, lat)) == []
    assert core.case(new["id"])["reports"] == ["R-12345-r1", "R-12345-r2"]


def test_a_report_joining_a_nearby_case_links_the_live_alert_there_too(core, registry):
    run = Run(core, registry)
    square = square_case(run)
    [promenade] = [a.identifier for a in core.active_alerts() if a.identifier not in square["alerts"]
                   and a.hazard == "crowd"]
    cid = run.command("open", {"category": "crowd_safety", "lon": PROMENADE_POINT[0], "lat": PROMENADE_POINT[1],
                               "actor": "王芳"})["case"]["id"]
    assert core.case(cid)["alerts"] == []
    assert run.batch(report("12345", "p1", run.t + 2, *PROMENADE_POINT)) == []
    case = core.case(cid)
    assert case["reports"] == ["R-12345-p1"] and case["alerts"] == [promenade], "§7: the live alert nearby is linked"
    assert [(e["kind"], e["actor"]) for e in case["events"][-2:]] == [("linked", "12345"), ("linked", "twin")]


def test_reports_of_unknown_sources_or_categories_are_refused(core, registry):
    run = Run(core, registry)
    run.ticks(300, 1)
    batch = Batch.concat([report("hotline-x", "a1", run.t, *CHEN_YI_SQUARE),
                          report("12345", "a2", run.t, *CHEN_YI_SQUARE, category="ufo_sighting"),
                          report("12345", "a3", run.t, *CHEN_YI_SQUARE, category="fallen_tree")])
    refused = run.batch(batch)
    assert [(r.reason, r.device, r.case, r.row, r.field) for r in refused] == [
        ("unknown_source", "hotline-x", "a1", 0, "topic"), ("unknown_category", "12345", "a2", 1, "category")]
    assert "sources: 12345" in refused[0].detail and "ufo_sighting" in refused[1].detail
    assert [r["id"] for r in core.store.reports()] == ["R-12345-a3"], "the good report of the batch is taken"
    with pytest.raises(CaseError, match="unknown category"):
        run.command("report", {"source": "12345", "doc": {"id": "a4", "t": run.t, "category": "ufo_sighting",
                                                          "lon": 121.486, "lat": 31.24, "description": "?"}})


def test_a_report_outside_the_district_is_refused_and_dispatches_nobody(core, registry):
    run = Run(core, registry)
    run.ticks(300, 1)
    beijing = (116.3975, 39.9087)
    refused = run.batch(report("12345", "bj1", run.t, *beijing))
    assert [(r.reason, r.device, r.case, r.field) for r in refused] == [("outside_grid", "12345", "bj1", "lon,lat")]
    assert "outside the twin's district" in refused[0].detail
    assert core.cases() == [] and core.store.reports() == [] and outbox(core, "/tasks") == []
    assert core.desk.refused == {"outside_grid": 1}
    with pytest.raises(CaseError, match="outside the twin's district"):
        run.command("report", {"source": "12345", "doc": {"id": "bj2", "t": run.t, "category": "crowd_safety",
                                                          "lon": beijing[0], "lat": beijing[1], "description": "?"}})
    assert core.cases() == []


def test_without_the_case_loop_answers_and_reports_are_refused(bund10, registry):
    ds, _ = bund10
    core = TwinCore(ds, registry, Store.open(":memory:"), CoreConfig(cases=CaseConfig(enabled=False)))
    refused = core.on_batch(Batch.concat([answers(T0, [(POLICE, "bund-20250101-0001", "accepted")]),
                                          report("12345", "b1", T0, *CHEN_YI_SQUARE)]))
    assert [(r.reason, r.row) for r in refused] == [("unknown_case", 0), ("unknown_source", 1)]
    assert all("--no-cases" in r.detail for r in refused)
    assert core.cases() == [] and core.case_reads("services") == []
    assert core.on_tick(T0).case_events == []
    assert "cases" not in core.save_state()


def test_a_restored_snapshot_replays_to_the_same_cases_and_writes_nothing_twice(bund10, registry, rules, tmp_path):
    db = tmp_path / "alerts.db"
    first = make_core(bund10, registry, rules, Store.open(db))
    run = Run(first, registry)
    cid = square_case(run)["id"]
    saved = first.save_state()
    snapshot.write(tmp_path, saved, first.state.grid, (0, 0), T0)  # plain values and arrays only
    mark = len(run.log)
    run.batch(answers(run.t + 1, [(POLICE, cid, "accepted"), (OTHER_POLICE, cid, "accepted")]))
    run.batch(report("12345", "r1", run.t + 2, *PROMENADE_POINT))
    run.command("note", {"case": cid, "actor": "王芳", "reason": "增派保安 / more stewards sent"})
    run.units[POLICE] = CHEN_YI_SQUARE
    run.ticks(40000, 2)
    run.batch(answers(run.t + 1, [(POLICE, cid, "disposed")]))
    run.ticks(100, 30)
    views = [first.case(c["id"]) for c in first.cases()]
    assert len(views) == 2 and views[0]["status"] == "closed" and views[1]["reports"] == ["R-12345-r1"]
    events, messages = len(first.store.case_events()), len(first.store.pending(100000))
    first.store.close()
    # a restart: a fresh core on the same store, the snapshot restored, the same inputs again
    second = make_core(bund10, registry, rules, Store.open(db))
    second.restore_state(snapshot.read(tmp_path, second.state.grid).state)
    assert [c["id"] for c in second.cases()] == [cid]
    for op in run.log[mark:]:
        do(second, op)
    assert [second.case(c["id"]) for c in second.cases()] == views
    assert len(second.store.case_events()) == events, "no case event stored twice"
    assert len(second.store.pending(100000)) == messages, "no message queued twice"
    second.store.close()


def _shape(view: dict) -> tuple:
    """A case view without its alert ids: id, status, assignee, reports, and its events' keys, kinds and actors."""
    return (view["id"], view["status"], view["assignee"], view["reports"], len(view["alerts"]),
            [(e["key"], e["kind"], e["actor"]) for e in view["events"]])


def test_a_replay_from_the_start_without_a_snapshot_rebuilds_the_same_cases(bund10, registry, rules, tmp_path):
    db = tmp_path / "alerts.db"
    first = make_core(bund10, registry, rules, Store.open(db))
    run = Run(first, registry)
    cid = square_case(run)["id"]
    run.batch(report("12345", "r1", run.t + 2, *PROMENADE_POINT))
    run.command("open", {"category": "medical", "lon": 121.4862, "lat": 31.2388, "actor": "王芳"})
    run.ticks(40000, 2)
    views = [first.case(c["id"]) for c in first.cases()]
    assert len(views) == 3 and views[0]["id"] == cid
    events, messages = len(first.store.case_events()), len(_case_messages(first))
    first.store.close()
    # a restart without a snapshot: the service replays the raw log from its beginning
    second = make_core(bund10, registry, rules, Store.open(db))
    assert second.cases() == [], "the desk starts with an empty book; the replay rebuilds it"
    for op in run.log:
        do(second, op)
    # (the alert ids are the alert book's, which counts on from the store: compared apart from them)
    assert [_shape(second.case(c["id"])) for c in second.cases()] == [_shape(v) for v in views], \
        "the same cases under the same ids, none twice"
    assert len(second.store.case_events()) == events, "no case event stored twice"
    assert len(_case_messages(second)) == messages, "no case message queued twice"
    second.store.close()


def _case_messages(core) -> list:
    return [i for i in core.store.pending(100000) if i.topic.startswith("city/cases/") or "/tasks" in i.topic]


ANSWERS = st.lists(st.tuples(st.sampled_from([POLICE, OTHER_POLICE]), st.sampled_from(["mine", "bund-20250101-9999"]),
                             st.sampled_from(TASK_STATUSES), st.sampled_from(["", "备注 note"])), max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(ANSWERS, st.booleans())
def test_any_answers_are_applied_noted_or_refused_and_the_store_is_the_state(core, registry, answers_, located):
    """Whatever units answer, in whatever order: each answer adds exactly one event or is refused with a reason of
    the contract, the case's status stays one of the statuses, and the stored events fold to the live case."""
    t = T0 + 1000.0 * (len(core.cases()) + 1)
    core.on_batch(positions(t, {POLICE: CHEN_YI_SQUARE if located else START[POLICE]}))
    cid = core.case_command("open", {"category": "crowd_safety", "lon": CHEN_YI_SQUARE[0], "lat": CHEN_YI_SQUARE[1],
                                     "actor": "王芳"}, now=t)["case"]["id"]
    core.case_command("dispatch", {"case": cid, "unit": POLICE, "actor": "王芳"}, now=t)
    for k, (unit, which, status, note) in enumerate(answers_):
        ref = cid if which == "mine" else which
        before = core.case(cid)
        refused = core.on_batch(answers(t + k + 1, [(unit, ref, status, note)]))
        after = core.case(cid)
        if refused:
            [r] = refused
            assert r.reason == ("unknown_case" if ref != cid else "not_assigned" if unit != before["assignee"]
                                else "bad_transition")
            assert after == before, "a refused answer changes nothing"
        else:
            assert ref == cid and unit == before["assignee"]
            assert after["n_events"] == before["n_events"] + 1
            last = after["events"][-1]
            assert last["kind"] in (status, "noted") and last["actor"] == unit
            if status == "on_scene" and last["kind"] == "on_scene":
                assert located, "on scene only where the Beidou position confirms it"
        assert after["status"] in STATUSES
    stored = fold(CaseEvent.from_row(r) for r in core.store.case_events(cid))
    assert stored == core.desk.book.get(cid), "audit == state"
