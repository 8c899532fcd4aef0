"""The demo's watcher (`scenarios.demo.watch.Tally`): what it counts as still active, fed topic by topic; the cases
it sees on ``city/cases/{id}`` and the escalations, and the console's lines and ledger from them.

The demo ends on "all clear" when the tally holds no active alert, so an operator's acknowledgement (an Update
``{id}.ack{k}`` on ``city/alerts/{id}``) must never keep an alert active after its Cancel.
"""

from __future__ import annotations

import io
import json

import pytest

from scenarios.demo.console import Console, case_summary
from scenarios.demo.watch import Tally, alert_root

ROOT = "citytwin.bund.crowd.20251231T142201Z.00001"
TOPIC = f"city/alerts/{ROOT}"
ZH_HEADLINE, EN_HEADLINE = "陈毅广场人群密度红色预警", "Red crowd density warning, Chen Yi Square"


def cap_message(identifier: str, msg_type: str, sent: str, level: str = "red", hazard: str = "crowd") -> bytes:
    """A two-language CAP message as the twin publishes it (abridged)."""
    params = [{"valueName": "warningLevel", "value": level}, {"valueName": "hazard", "value": hazard}]
    area = [{"areaDesc": "陈毅广场 Chen Yi Square"}]
    infos = [{"language": lang, "headline": text, "parameter": params, "area": area}
             for lang, text in (("zh-CN", ZH_HEADLINE), ("en-US", EN_HEADLINE))]
    return json.dumps({"identifier": identifier, "msgType": msg_type, "sent": sent, "info": infos}).encode()


RAISE = cap_message(ROOT, "Alert", "2025-12-31T22:22:01+08:00")
ACK = cap_message(f"{ROOT}.ack1", "Update", "2025-12-31T22:23:00+08:00")
CANCEL = cap_message(f"{ROOT}.cancel2", "Cancel", "2025-12-31T22:30:00+08:00")


def feed(*payloads: bytes, topic: str = TOPIC) -> Tally:
    tally = Tally()
    for payload in payloads:
        tally.on_message(topic, payload)
    return tally


def test_an_acknowledged_alert_that_is_cancelled_is_all_clear():
    tally = feed(RAISE, ACK, CANCEL)
    assert tally.active == {} and tally.counts("crowd") == {"raised": 1, "updated": 1, "cancelled": 1}


@pytest.mark.parametrize("late", [ACK, RAISE], ids=["acknowledgement", "raise"])
def test_a_message_of_a_cancelled_alert_arriving_late_does_not_make_it_active_again(late):
    """QoS 1 is at least once: a redelivered acknowledgement Update (or raise) after the Cancel is old news."""
    tally = feed(RAISE, ACK, CANCEL, late)
    assert tally.active == {}, "a Cancel is final: the alert stays cleared"


def test_the_alert_is_the_topic_s_whatever_the_message_identifier():
    """The topic ``city/alerts/{id}`` names the alert; an identifier suffix the watcher does not know (a future
    message kind) must not make it a second alert that is never cancelled."""
    tally = feed(RAISE, cap_message(f"{ROOT}.refresh3", "Update", "2025-12-31T22:24:00+08:00"), CANCEL)
    assert tally.active == {} and set(tally.hazard_of) == {ROOT}


def test_an_alert_raised_and_still_active_is_counted_once():
    tally = feed(RAISE, ACK)
    assert tally.active == {ROOT: "crowd"} and tally.levels == {ROOT: "red"}


def test_the_event_lines_show_both_headlines():
    tally = feed(RAISE)
    assert tally.events[-1][1].endswith(f"{ZH_HEADLINE} / {EN_HEADLINE}")


def test_alert_root_strips_every_message_suffix():
    assert {alert_root(f"{ROOT}{s}") for s in ("", ".update1", ".ack2", ".cancel7")} == {ROOT}


# ---------------------------------------------------------------- cases and escalations
CASE = "bund-20251231-0007"
T0 = 1767190260.0  # 22:11:00 in Shanghai
PLACE = {"key": "flood:point:water-03", "name_zh": "延安东路隧道浦西口", "name_en": "Yan'an Rd E. Tunnel Puxi portal",
         "lon": 121.4818, "lat": 31.2331, "radius_m": 60.0}
LOOP = ["new", "dispatched", "accepted", "en_route", "on_scene", "disposed", "verified", "closed"]


def case_state(upto: str, *, n_events: int | None = None, reports: tuple[str, ...] = (), assignee: str = "unit-fire-05",
               reached: dict[str, float] | None = None) -> bytes:
    """The retained ``city/cases/{id}`` state of a waterlogging case that has gone through the loop up to ``upto``
    (one minute a status), as ``Case.as_dict`` gives it (abridged)."""
    k = LOOP.index(upto)
    reached = reached if reached is not None else {s: T0 + 60.0 * i for i, s in enumerate(LOOP[: k + 1])}
    return json.dumps({"id": CASE, "district": "bund", "category": "waterlogging", "priority": 2, "place": PLACE,
                       "source": "alert", "verify": "sensors", "status": upto, "open": upto != "closed",
                       "assignee": assignee if k else "", "alerts": ["citytwin.bund.flood.20251231T140910Z.00027"],
                       "reports": list(reports), "opened_at": T0, "updated_at": max(reached.values()),
                       "reached": reached, "escalated": [],
                       "n_events": n_events if n_events is not None else k + 1 + len(reports)}).encode()


def case_lines(tally: Tally) -> list[str]:
    return [text for _, text in tally.events if text.startswith("case ")]


def feed_cases(*payloads: bytes) -> Tally:
    return feed(*payloads, topic=f"city/cases/{CASE}")


def test_a_case_through_the_loop_logs_each_step_of_note_once_and_ends_in_the_ledger():
    states = [case_state(s) for s in LOOP]
    tally = feed_cases(*states, states[3])  # a retained state seen again changes nothing
    words = [line.split()[1:3] for line in case_lines(tally)]
    assert words == [["opened", CASE], ["dispatched", CASE], ["on", "scene"], ["disposed", CASE], ["verified", CASE],
                     ["closed", CASE]]
    assert all("延安东路隧道浦西口 / Yan'an Rd E. Tunnel Puxi portal" in line for line in case_lines(tally))
    assert "unit unit-fire-05" in case_lines(tally)[1] and "unit" not in case_lines(tally)[-1].split("portal")[1]
    assert [t for t, text in tally.events] == [T0 + 60.0 * i for i in (0, 1, 4, 5, 6, 7)], "at the twin's times"
    assert tally.ledger_line() == "ledger: 1 opened, 1 closed, 0 open" and tally.open_cases() == []


def test_a_state_that_skips_steps_logs_them_in_order_and_a_late_older_state_changes_nothing():
    tally = feed_cases(case_state("new"), case_state("disposed"), case_state("dispatched"))
    assert [line.split()[1] for line in case_lines(tally)] == ["opened", "dispatched", "on", "disposed"]
    assert tally.cases[CASE]["status"] == "disposed" and tally.open_cases() == [CASE]
    assert tally.ledger_line() == "ledger: 1 opened, 0 closed, 1 open"


def test_a_linked_report_is_logged_and_found_by_its_id():
    tally = feed_cases(case_state("dispatched"), case_state("dispatched", reports=("R-12345-HL-1",)),
                       case_state("closed", reports=("R-12345-HL-1",)))
    assert any("linked" in line and "report R-12345-HL-1" in line for line in case_lines(tally))
    assert tally.reports()["R-12345-HL-1"]["status"] == "closed"


def test_a_reopened_case_logs_the_reopening_and_its_new_round():
    again = {"new": T0 + 900.0}
    tally = feed_cases(case_state("disposed"), case_state("new", n_events=9, reached=again, assignee=""))
    assert [line.split()[1] for line in case_lines(tally)][-2:] == ["reopened", "opened"]
    assert tally.open_cases() == [CASE]


def test_escalations_are_counted_by_step_and_logged():
    doc = {"case": CASE, "step": "dispatch", "deadline": T0 + 120, "t": T0 + 130, "place": PLACE, "assignee": "",
           "text_en": "Escalation: overdue"}
    tally = feed(json.dumps(doc).encode(), json.dumps(doc | {"step": "on_scene", "assignee": "unit-fire-05"}).encode(),
                 topic="city/supervisor/escalations")
    assert tally.escalations == {"dispatch": 1, "on_scene": 1}
    where = "延安东路隧道浦西口 / Yan'an Rd E. Tunnel Puxi portal"
    assert [text for _, text in tally.events] == [f"escalated dispatch  {CASE} {where}  due 22:13, no unit yet",
                                                  f"escalated on_scene  {CASE} {where}  due 22:13, unit unit-fire-05"]


def test_a_cancelled_case_is_neither_closed_nor_open_in_the_ledger():
    state = json.loads(case_state("dispatched"))
    reached = state["reached"] | {"cancelled": T0 + 200}
    state |= {"status": "cancelled", "open": False, "n_events": 5, "reached": reached}
    tally = feed_cases(json.dumps(state).encode())
    assert tally.ledger_line() == "ledger: 1 opened, 0 closed, 0 open (1 cancelled)"
    assert case_lines(tally)[-1].split()[1] == "cancelled"


def test_the_console_shows_case_lines_older_than_an_alert_line_already_shown():
    """Case states come after the alert of the same tick: the console shows every new line, whatever its time."""
    out = io.StringIO()
    console = Console(out, speed=60.0, plain_every_s=0.0)
    tally = feed(RAISE)
    console.show(tally, 1767190900.0)
    tally.on_message(f"city/cases/{CASE}", case_state("new"))
    console.show(tally, 1767190910.0)
    console.show(tally, 1767190920.0)
    text = out.getvalue()
    assert text.count(f"case opened     {CASE}") == 1 and text.count(EN_HEADLINE) == 1
    assert "cases open 1, closed 0" in text


def test_the_summary_ends_with_the_ledger_and_names_the_report_s_case():
    tally = feed_cases(case_state("closed", reports=("R-12345-HL-1",)))
    tally.on_message("city/supervisor/escalations", json.dumps(
        {"case": CASE, "step": "dispatch", "deadline": T0, "t": T0 + 10}).encode())
    lines = case_summary(tally)
    assert lines[-1] == "ledger: 1 opened, 1 closed, 0 open"
    assert "cases waterlogging: opened 1, closed 1" in lines
    assert f"report R-12345-HL-1: case {CASE} (waterlogging, Yan'an Rd E. Tunnel Puxi portal), closed, unit " \
           "unit-fire-05" in lines
    assert "escalations to the supervisor: 1 (dispatch 1)" in lines


def test_a_retained_state_of_a_case_not_seen_live_is_an_earlier_run_s_and_left_out():
    """``twin demo --broker`` run twice on one broker: the first run's closed cases stay retained under the same ids;
    the watcher (subscribed before the twin starts) gets them with the retain flag and leaves them out, and takes
    this run's states, which the broker forwards live (retain flag cleared)."""
    tally = Tally()
    tally.on_message(f"city/cases/{CASE}", case_state("closed", n_events=12), retained=True)
    assert tally.cases == {} and tally.stale == 1
    tally.on_message(f"city/cases/{CASE}", case_state("new"))
    tally.on_message(f"city/cases/{CASE}", case_state("dispatched"), retained=True)  # after a reconnect: this run's
    assert tally.cases[CASE]["status"] == "dispatched" and tally.ledger_line() == "ledger: 1 opened, 0 closed, 1 open"
