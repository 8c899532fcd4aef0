"""The demo's disposal loop without a broker: simulated units follow their tasks (`scenarios.feeds.units`), the
story's citizens report (`scenarios.demo.story.CALLS`), and the offline story (`scenarios.demo.offline`) opens cases
from its alerts, dispatches, verifies and closes them, with the ledger at 0 open at the end."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.batch import Batch
from ingest.decoders.report import decode_report, report_note
from ingest.decoders.task import decode_task
from ingest.registry import load_registry
from scenarios.demo.story import CALLS, Story
from scenarios.feeds.simulator import FeedConfig, Publisher, Simulator
from scenarios.feeds.units import HAZARD_WORK_MAX_S, HAZARD_WORK_MIN_S, REPORT_WORK_S
from tests.scenarios.test_demo_story import offline_story
from twin.cases.services import Catalogue
from twin.district.geo import to_cgcs2000, to_projected
from twin.district.sources import data_dir

PORTAL = (121.4818, 31.2331)
"""The Yan'an Rd E. Tunnel Puxi portal's water gauge (water-03) [degree]."""
FIRE = "unit-fire-05"
ORDER = ["accepted", "en_route", "on_scene", "disposed"]


def quiet_sim(seed: int = 3) -> Simulator:
    """The units only: no vehicles, no storm, no bad messages."""
    return Simulator(FeedConfig(seed=seed, vehicles=0, bad_share=0, storm_return_period_yr=None))


def task(case: str, lon: float = PORTAL[0], lat: float = PORTAL[1], status: str = "dispatched",
         category: str = "waterlogging", radius_m: float = 50.0, key: str = "flood:point:water-03",
         t: float = 0) -> str:
    """A task message of the case desk (docs/guides/cases.md), abridged; ``key``: the place's (an alert's place, a
    report's ``report:…``); ``t``: when the desk sent it (a new dispatch of a case has a new one)."""
    return json.dumps({"case": case, "kind": "task", "status": status, "category": category, "priority": 2,
                       "place": {"key": key, "name_zh": "延安东路隧道浦西口",
                                 "name_en": "Yan'an Rd E. Tunnel Puxi portal", "lon": lon, "lat": lat,
                                 "radius_m": radius_m},
                       "summary_zh": "请前往处置", "summary_en": "please go and deal with it", "t": t})


def cap(identifier: str, msg_type: str = "Alert", hazard: str = "flood", lon: float = PORTAL[0],
        lat: float = PORTAL[1]) -> str:
    """A public CAP message with a small square area around (lon, lat)."""
    d = 0.0003
    ring = [(lat - d, lon - d), (lat - d, lon + d), (lat + d, lon + d), (lat + d, lon - d), (lat - d, lon - d)]
    return json.dumps({"identifier": identifier, "msgType": msg_type, "info": [{
        "parameter": [{"valueName": "hazard", "value": hazard}],
        "area": [{"areaDesc": "test", "polygon": [" ".join(f"{a},{o}" for a, o in ring)]}]}]})


def answers(sim: Simulator, seconds: int, unit: str = FIRE) -> list[tuple[float, str, str, str]]:
    """(simulated s from the start, case, status, note) of ``unit``'s task answers over ``seconds`` 1-s steps,
    each decoded as the twin's ingest does."""
    out = []
    for _ in range(seconds):
        for topic, payload in sim.step(1.0):
            if topic == f"city/units/{unit}/tasks/status":
                b = decode_task(payload, topic=topic, received_at=sim.t)
                assert isinstance(b, Batch), b
                out.append((sim.t - sim.config.start, b.ref[0], b.quantity[0].removeprefix("task_"), b.note[0]))
    return out


def positions(sim: Simulator, seconds: int, unit: str = FIRE) -> list[tuple[float, tuple[float, float], list[str]]]:
    """(s from the start, the unit's position [EPSG:4549 m] if one was sent, the task answers) of each step."""
    out = []
    for _ in range(seconds):
        msgs = sim.step(1.0)
        u = sim.units.units[unit]
        sent = [t for t, _ in msgs if t == f"city/beidou/{unit}"]
        status = [json.loads(p)["status"] for t, p in msgs if t == f"city/units/{unit}/tasks/status"]
        out.append((sim.t - sim.config.start, (u.x, u.y) if sent else None, status))
    return out


# ---------------------------------------------------------------- a unit and its tasks
def test_a_unit_answers_its_task_in_order_and_reports_on_scene_only_after_a_position_from_inside():
    sim = quiet_sim()
    sim.follow_task(FIRE, task("C-1", key="report:R-12345-1"))
    steps = positions(sim, 600)
    status = [(t, s) for t, _, ss in steps for s in ss]
    assert [s for _, s in status] == ORDER
    assert status[0][0] == 1 and status[1][0] == 2, "accepted in the step after the task, en route in the next"
    on_scene = next(t for t, s in status if s == "on_scene")
    place = to_projected(*PORTAL)
    inside = [t for t, pos, _ in steps if pos is not None and math.dist(pos, place) <= 25.0]
    assert inside and inside[0] < on_scene, "the twin has a Beidou position from inside before the unit's claim"
    assert next(t for t, s in status if s == "disposed") - on_scene == REPORT_WORK_S, "a report's case"


def test_the_disposed_answer_carries_a_note_in_chinese_and_english():
    sim = quiet_sim()
    sim.follow_task(FIRE, task("C-1"))
    disposed = [note for _, _, status, note in answers(sim, 600) if status == "disposed"]
    assert len(disposed) == 1 and " / " in disposed[0]
    zh, en = disposed[0].split(" / ")
    assert re.search(r"[\u4e00-\u9fff]", zh) and re.fullmatch(r"[ -~]+", en)


def test_a_hazard_task_is_disposed_once_its_alert_is_cancelled_after_the_least_work():
    sim = quiet_sim()
    sim.observe_alert(cap("A-1"))
    sim.follow_task(FIRE, task("C-1"))
    first = answers(sim, 400)
    on_scene = next(t for t, _, s, _ in first if s == "on_scene")
    assert "disposed" not in [s for _, _, s, _ in first], "the alert is still active"
    sim.observe_alert(cap("A-1.cancel2", "Cancel"))
    later = answers(sim, 5)
    assert [s for _, _, s, _ in later] == ["disposed"] and later[0][0] == 401
    assert 401 - on_scene >= HAZARD_WORK_MIN_S


def test_a_hazard_task_is_disposed_after_the_longest_work_with_its_alert_still_on():
    sim = quiet_sim()
    sim.observe_alert(cap("A-1"))
    sim.observe_alert(cap("T-1", hazard="traffic"))  # another hazard's alert there does not count
    sim.follow_task(FIRE, task("C-1"))
    got = answers(sim, 900)
    on_scene, disposed = (next(t for t, _, s, _ in got if s == k) for k in ("on_scene", "disposed"))
    assert disposed - on_scene == HAZARD_WORK_MAX_S


@pytest.mark.parametrize(("key", "work"), [("flood:point:water-03", HAZARD_WORK_MIN_S),
                                           ("report:R-12345-1", REPORT_WORK_S),
                                           ("operator:121.4818,31.2331", REPORT_WORK_S)])
def test_a_hazard_case_whose_alert_is_over_takes_the_least_work_a_report_s_case_its_own(key, work):
    """An alert far from the place is not the case's: the hazard case's alert is over when the unit comes."""
    sim = quiet_sim()
    sim.observe_alert(cap("A-far", lon=PORTAL[0] + 0.01))
    sim.follow_task(FIRE, task("C-1", key=key))
    got = answers(sim, 600)
    on_scene, disposed = (next(t for t, _, s, _ in got if s == k) for k in ("on_scene", "disposed"))
    assert disposed - on_scene == work


def test_tasks_wait_their_turn_and_a_repeated_task_is_taken_once():
    sim = quiet_sim()
    sim.follow_task(FIRE, task("C-1"))
    sim.follow_task(FIRE, task("C-2", lon=PORTAL[0] + 0.002))
    sim.follow_task(FIRE, task("C-1"))  # QoS 1 redelivers: at least once
    got = answers(sim, 1200)
    assert [(c, s) for _, c, s, _ in got] == [("C-1", s) for s in ORDER] + [("C-2", s) for s in ORDER]
    assert sim.units.units[FIRE].task is None, "free again after its last task"
    sim.follow_task(FIRE, task("C-1"))  # redelivered late: done already
    assert answers(sim, 10) == []
    sim.follow_task(FIRE, task("C-1", t=1800.0))  # dispatched again (the case was reopened)
    assert [s for _, _, s, _ in answers(sim, 600)] == ORDER
    assert sim.units.tasks == {"dispatched": 3, "repeated": 2}


def test_a_withdrawn_task_stops_the_unit_and_a_withdrawn_waiting_task_is_dropped():
    sim = quiet_sim()
    sim.follow_task(FIRE, task("C-1"))
    sim.follow_task(FIRE, task("C-2"))
    sim.follow_task(FIRE, task("C-3"))
    early = answers(sim, 30)
    sim.follow_task(FIRE, task("C-1", status="cancelled"))
    sim.follow_task(FIRE, task("C-2", status="cancelled"))
    got = early + answers(sim, 900)
    assert [s for _, c, s, _ in got if c == "C-1"] == ["accepted", "en_route"], "nothing after the withdrawal"
    assert [s for _, c, s, _ in got if c == "C-2"] == []
    assert [s for _, c, s, _ in got if c == "C-3"] == ORDER


def test_a_unit_on_a_task_takes_on_no_alert_and_a_task_ends_its_alert_response():
    sim = quiet_sim()
    police = "unit-police-01"
    sim.respond(police, cap("A-1", hazard="crowd", lon=121.4855, lat=31.2405))
    sim.step(1.0)
    assert sim.units.units[police].alert == "A-1"
    sim.follow_task(police, task("C-1", category="crowd_safety"))
    assert sim.units.units[police].alert == "", "the task comes first"
    sim.respond(police, cap("A-2", hazard="crowd", lon=121.4855, lat=31.2405))
    acks = [json.loads(p) for _ in range(600) for t, p in sim.step(1.0) if t == f"city/units/{police}/ack"]
    assert acks == [], "no ack of a new alert while on a task, no resolved of the dropped one"
    assert sim.units.units[police].task is None, "the task is done"
    for ident in ("A-1", "A-2"):  # updates of alerts left to the case desk: not taken up later
        sim.respond(police, cap(f"{ident}.update3", "Update", hazard="crowd", lon=121.4855, lat=31.2405))
    sim.respond(police, cap("A-3", hazard="crowd", lon=121.4855, lat=31.2405))
    acks = [json.loads(p) for _ in range(5) for t, p in sim.step(1.0) if t == f"city/units/{police}/ack"]
    assert [(a["alert"], a["status"]) for a in acks] == [("A-3", "ack")], "a new alert it answers as before"


def test_the_same_seed_and_tasks_give_the_same_bytes():
    def play() -> list[tuple[str, bytes]]:
        sim = Simulator(FeedConfig(seed=11, vehicles=5, bad_share=0.02))
        sim.observe_alert(cap("A-1"))
        sim.follow_task(FIRE, task("C-1"))
        sim.follow_task("unit-police-02", task("C-2", category="congestion", lon=121.4855, lat=31.2405))
        return [m for _ in range(400) for m in sim.step(1.0)]

    assert play() == play()


@settings(max_examples=25, deadline=None)
@given(script=st.lists(st.tuples(st.sampled_from(["task", "cancel", "alert", "clear", "wait"]),
                                 st.integers(1, 3), st.integers(1, 240)), max_size=12))
def test_whatever_the_desk_sends_every_case_s_answers_are_a_prefix_of_the_loop(script):
    """The units' task state machine: for any sequence of tasks, withdrawals, alerts and waits, each case gets its
    answers in the loop's order, each at most once, none after its withdrawal; and a unit follows one task at a
    time."""
    sim = quiet_sim()
    got, withdrawn = [], {}
    for n, (what, k, wait) in enumerate(script):
        case = f"C-{k}"
        if what == "task":
            sim.follow_task(FIRE, task(case, lon=PORTAL[0] + 0.001 * k, t=float(n % 3)))
        elif what == "cancel":
            sim.follow_task(FIRE, task(case, status="cancelled"))
            withdrawn.setdefault(case, len(got))
        elif what == "alert":
            sim.observe_alert(cap(f"A-{k}", lon=PORTAL[0] + 0.001 * k))
        elif what == "clear":
            sim.observe_alert(cap(f"A-{k}.cancel1", "Cancel"))
        got += [(c, s) for _, c, s, _ in answers(sim, wait)]
        u = sim.units.units[FIRE]
        assert u.task is None or u.task.case not in [q.case for q in u.queue]
    for case in {c for c, _ in got}:
        statuses = [s for c, s in got if c == case]
        assert ORDER[: len(statuses)] == statuses or _two_rounds(statuses), (case, statuses)
    for case, at in withdrawn.items():
        later = [s for c, s in got[at:] if c == case]
        # only a new task of the case answers again, and each new task's answers are a round of the loop
        assert later == [] or _two_rounds(later), ("only a new task of the case answers again", case, later)


def _two_rounds(statuses: list[str]) -> bool:
    """A case withdrawn and given again answers the loop anew: each round a prefix of the loop."""
    rounds, cur = [], []
    for s in statuses:
        if s == "accepted" and cur:
            rounds.append(cur)
            cur = []
        cur.append(s)
    rounds.append(cur)
    return all(r == ORDER[: len(r)] for r in rounds)


# ---------------------------------------------------------------- citizens' reports
def test_a_posted_report_goes_out_with_the_next_step_and_decodes():
    sim = quiet_sim()
    CALLS[0].post(sim)
    msgs = sim.step(1.0)
    topic, payload = msgs[0]
    assert topic == "city/reports/12345"
    b = decode_report(payload, topic=topic, received_at=sim.t)
    assert isinstance(b, Batch) and b.ref[0] == CALLS[0].ref and b.t[0] == sim.t and b.datum[0] == "WGS84"
    note = report_note(b.note[0])
    assert note["category"] == "waterlogging" and re.search(r"[\u4e00-\u9fff]", note["description"])
    assert "(Water on the road" in note["description"], "an English gloss"
    assert not [t for t, _ in sim.step(1.0) if t.startswith("city/reports/")], "posted once"


def test_the_two_citizens_report_the_same_water_by_the_portal_in_two_datums():
    """The hotline call (WGS84) and the app report (GCJ-02, about 500 m off as sent) are within the twin's
    de-duplication radius of each other and of the portal's gauge once in CGCS2000 (twin.cases.reports)."""
    from twin.cases.reports import DEDUPE_RADIUS_M

    sim = quiet_sim()
    where = []
    for call in CALLS:
        call.post(sim)
        topic, payload = sim.step(1.0)[0]
        b = decode_report(payload, topic=topic, received_at=sim.t)
        lon, lat = to_cgcs2000(b.lon[0], b.lat[0], b.datum[0])
        where.append(to_projected(lon, lat))
        assert Catalogue.load().get(report_note(b.note[0])["category"]).hazard == "flood"
        assert topic.removeprefix("city/reports/") in Catalogue.load().sources
    assert [c.gcj02 for c in CALLS] == [False, True]
    portal = to_projected(*PORTAL)
    assert all(math.dist(w, portal) < 60.0 for w in where)
    assert math.dist(*where) < DEDUPE_RADIUS_M


def test_the_story_s_calls_come_at_22_12_and_a_minute_later():
    story = Story()
    texts = {b.at_s: b.text for b in story.beats()}
    assert "12345" in texts[720.0] and "延安东路隧道浦西口" in texts[720.0]
    assert "app" in texts[780.0]
    assert [b.at_s for b in Story(report_again_s=None).calls()] == [720.0]
    with pytest.raises(ValueError, match="citizen's call"):
        Story(report_at_s=99999.0).check()


def test_the_publisher_hands_tasks_and_public_alerts_to_the_units():
    """Without a broker: what the feed's client queued from its subscriptions goes to the right unit call."""
    sim = quiet_sim()
    pub = Publisher("mqtt://test@127.0.0.1:1", respond_prefix="city/")
    queued = [("city/alerts/A-1", cap("A-1").encode()), (f"city/units/{FIRE}/tasks", task("C-1").encode()),
              (f"city/units/{FIRE}/tasks/status", b"{}"), ("city/units/nobody/tasks", task("C-9").encode()),
              (f"city/units/{FIRE}/tasks", b"")]
    for topic, payload in queued:
        pub.alerts.put((topic, payload))
    pub._respond(sim)
    assert pub.tasks_received == 1 and sim.units.units[FIRE].task.case == "C-1"
    assert set(sim.units.public) == {"A-1"} and sim.units.units[FIRE].task.alerts == ("A-1",)
    assert pub.alerts.empty()


# ---------------------------------------------------------------- the story's cases, offline
@pytest.fixture(scope="module")
def cases_run(bund10, bund_network):
    """The offline story as ``twin demo`` runs it (10-s ticks, the Bund's road links), run once per session."""
    return offline_story(bund10, bund_network)


def _unit_types() -> dict[str, str]:
    registry = load_registry(data_dir() / "bund" / "registry.geojson")
    return {d.id: str(d.properties.get("unit_type")) for d in registry.of_kind("unit")}


def test_the_story_opens_cases_from_crowd_flood_and_traffic_alerts(cases_run):
    cases = cases_run.tally.cases.values()
    from_alerts = [c for c in cases if c["source"] == "alert"]
    assert {c["category"] for c in from_alerts} == {"crowd_safety", "waterlogging", "congestion"}
    assert all(c["alerts"] for c in from_alerts)
    hazards = {c["category"]: {cases_run.tally.hazard_of.get(a) for a in c["alerts"]} for c in from_alerts}
    assert hazards == {"crowd_safety": {"crowd"}, "waterlogging": {"flood"}, "congestion": {"traffic"}}


def test_every_case_is_dispatched_to_a_unit_of_its_duty_that_follows_it(cases_run):
    types, catalogue = _unit_types(), Catalogue.load()
    for c in cases_run.tally.cases.values():
        assert c["assignee"] and types[c["assignee"]] in catalogue.get(c["category"]).duty, c
        assert {"dispatched", "on_scene", "disposed", "verified", "closed"} <= c["reached"].keys(), c
    answers_ = cases_run.task_answers
    n = len(cases_run.tally.cases)
    assert answers_.get("on_scene", 0) >= n and answers_.get("disposed", 0) >= n
    assert cases_run.task_messages >= n


def test_the_hotline_report_is_linked_to_the_portal_s_flood_case_and_closed(cases_run):
    reports = cases_run.tally.reports()
    call, app = (f"R-{c.source}-{c.ref}" for c in CALLS)
    assert call in reports, reports.keys()
    case = reports[call]
    assert case["category"] == "waterlogging" and case["status"] == "closed"
    assert case["source"] == "report" or "Puxi portal" in case["place"]["name_en"], "linked to the flood's case"
    assert reports.get(app, {}).get("id") == case["id"], "the app report of the same water joins the same case"


def test_the_ledger_ends_with_every_case_closed_within_the_story(cases_run):
    tally, story = cases_run.tally, Story()
    n = tally.case_counts()["opened"]
    assert n >= 3 and tally.ledger_line() == f"ledger: {n} opened, {n} closed, 0 open"
    closed = max(c["reached"]["closed"] for c in tally.cases.values())
    last_cancel = max(t for t, e in cases_run.events if e.kind == "cancelled")
    assert closed <= story.start + story.length_s - 60, "closed with time to spare"
    assert closed - last_cancel <= 420.0, "verified 5 minutes after the last alert cleared, closed at once"
