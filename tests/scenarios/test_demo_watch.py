"""The demo's watcher (`scenarios.demo.watch.Tally`): what it counts as still active, fed topic by topic.

The demo ends on "all clear" when the tally holds no active alert, so an operator's acknowledgement (an Update
``{id}.ack{k}`` on ``city/alerts/{id}``) must never keep an alert active after its Cancel.
"""

from __future__ import annotations

import json

import pytest

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
